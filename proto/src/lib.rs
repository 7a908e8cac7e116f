//! doorsync's wire contract: the messages its processes exchange through the log, how they are
//! encoded, and the NATS subjects they are published on.
//!
//! Three families of messages travel between doorsync's parts, each in an [`Envelope`]:
//!
//! * [`Event`]s: facts from Nexudus, appended by the ingestor and folded by the engine;
//! * [`Command`]s: what the engine wants to be true in Kisi, for the Kisi writer;
//! * [`Outcome`]s: what the writer found or did, reported back to the engine.
//!
//! An envelope carries the schema version, the message's type tag, its [`MessageId`] and when the
//! fact happened (a command decided at or after an access window's edge also carries that edge,
//! [`Envelope::window_edge`], from which the writer measures how late Kisi was written). It is
//! encoded with [`encode`] as MessagePack with field names, and read back with [`decode`], which
//! refuses (rather than misreads) messages from a newer schema. The id is derived from the
//! content, never drawn at random or read from a clock, so the same fact appended twice, by a
//! retry, a replay or a second ingestor, is recognised as one message.
//!
//! [`Subjects`] names where each message goes (`<prefix>.evt|cmd|out|dlq.<partition>.<member>`,
//! the [`Partition`] being the one NATS's `{{partition()}}` computes) and [`Subjects::parse`] reads
//! a subject back, so nobody splits subjects by hand. [`Timestamp`] moves by a
//! [`Duration`](std::time::Duration), saturating at the ends of time.
//!
//! The crate depends on no other doorsync crate and does no I/O: it is the contract, not a
//! convenience library.
//!
//! # Compatibility rules
//!
//! Messages outlive the build that wrote them (the log is replayed, and during a rolling upgrade
//! old and new processes share it), so the encoding only ever changes in these ways:
//!
//! * **Adding a field** to a message is allowed without a version change, provided the field has
//!   `#[serde(default)]` (or is an `Option`) so that messages written before it still decode.
//!   Older readers ignore fields they do not know.
//! * **Adding a message type** (a new variant of a family) is allowed without a version change:
//!   older readers refuse it with [`DecodeError::UnknownType`] and the message is not misread.
//! * **Renaming, removing or repurposing** a field or a type tag, changing a field's type or
//!   meaning, or adding a variant to an enum nested inside a message (such as [`PassValidity`]),
//!   is a breaking change: it needs a new [`SCHEMA_VERSION`], which older readers refuse with
//!   [`DecodeError::UnsupportedVersion`].
//! * The envelope's `v` field and its message's `type` field are frozen in every version, because
//!   they are read first to decide whether the rest can be read at all.
//!
//! The golden vectors in `proto/golden/` pin the encoding of every message type; a test fails if
//! any encoding changes, so that a change is always deliberate.
#![forbid(unsafe_code)]

mod command;
mod envelope;
mod event;
mod ids;
mod outcome;
#[cfg(test)]
mod strategies;
mod subjects;
mod time;
mod wire;

pub use command::{Command, DeleteUser, EnsureUser, GrantGroup, RestoreUser, RevokeGroup, SuspendUser};
pub use envelope::{DecodeError, EncodeError, Envelope, InvalidMessageId, MessageId, SCHEMA_VERSION, decode, encode};
pub use event::{
    BookingCancelled, BookingChanged, ContractChanged, ContractRemoved, EntitlementId, EntitlementWithheld, Event,
    FloorPlanItem, FloorPlanItemKind, MappingChanged, MappingSource, MemberChanged, MemberRemoved, PassChanged,
    PassRemoved, PassValidity,
};
pub use ids::{
    BookingId, ContractId, FloorPlanItemId, KisiAssignmentId, KisiGroupId, KisiUserId, MemberId, PassId, PassProductId,
    ResourceId,
};
pub use outcome::{Failed, GrantApplied, KisiUserState, Outcome, Revoked, UserAccessChanged, UserLinked};
pub use subjects::{ParsedSubject, Partition, SubjectError, SubjectKind, Subjects};
pub use time::{CivilDate, CivilDateError, Timestamp};
pub use wire::WireMessage;
