//! The envelope every message travels in, its content-derived id, and the MessagePack codec.

use std::fmt;
use std::str::FromStr;

use rmp::Marker;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::{Timestamp, WireMessage};

/// The schema version this build writes, and the newest it reads.
pub const SCHEMA_VERSION: u16 = 1;

/// Bytes of the SHA-256 digest kept in a [`MessageId`]: 128 bits make an accidental collision
/// within one stream's de-duplication window practically impossible, and the id stays short.
const MESSAGE_ID_BYTES: usize = 16;
const MESSAGE_ID_LEN: usize = 2 * MESSAGE_ID_BYTES;

/// Separates message-id hashes from any other SHA-256 use of the same bytes, and leaves room for a
/// different id scheme later.
const MESSAGE_ID_DOMAIN: &[u8] = b"doorsync/message-id/v1\0";

/// Doorsync's messages nest a handful of levels; refusing deeper input bounds the decoder's
/// recursion (and so its stack use) on hostile bytes. Leaves room for fields added later.
const MAX_NESTING: usize = 32;

/// One message with the metadata every consumer needs before looking inside it.
///
/// The field names on the wire (`v`, `id`, `at`, `msg`, and `type` inside `msg`) are frozen:
/// [`decode`] reads `v` and `msg.type` first, from any version, to decide whether it can read the
/// rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<M> {
    /// The schema version the message was written with.
    #[serde(rename = "v")]
    pub version: u16,
    /// Derived from everything else in the envelope; see [`MessageId::derive`].
    pub id: MessageId,
    /// When the fact happened (events) or the message was decided (commands, outcomes), which is
    /// not when it was appended to the log.
    #[serde(rename = "at")]
    pub occurred_at: Timestamp,
    #[serde(rename = "msg")]
    pub message: M,
    /// Commands only: the edge of an access window (a stretch of access beginning or ending)
    /// whose passing made the command necessary; `None` when an event did. Kisi is written ahead
    /// of every edge still to come, so a command carries an edge only when it is decided at or
    /// after it, and the writer reports how long after the edge Kisi held it. Left off the wire
    /// when `None`, which is also how messages written before the field existed read.
    #[serde(rename = "edge", default, skip_serializing_if = "Option::is_none")]
    pub window_edge: Option<Timestamp>,
}

impl<M: WireMessage + Serialize> Envelope<M> {
    /// Wraps `message` at the current schema version, with its id derived from its content.
    pub fn new(occurred_at: Timestamp, message: M) -> Result<Self, EncodeError> {
        Self::with_window_edge(occurred_at, None, message)
    }

    /// [`Envelope::new`] for a command that a window edge made necessary (see
    /// [`Envelope::window_edge`]).
    pub fn with_window_edge(
        occurred_at: Timestamp,
        window_edge: Option<Timestamp>,
        message: M,
    ) -> Result<Self, EncodeError> {
        let encoded_message = rmp_serde::to_vec_named(&message).map_err(EncodeError)?;
        let id =
            MessageId::derive(M::FAMILY, message.tag(), SCHEMA_VERSION, occurred_at, window_edge, &encoded_message);
        Ok(Self { version: SCHEMA_VERSION, id, occurred_at, message, window_edge })
    }
}

/// A message's stable identity: 32 lowercase hexadecimal digits.
///
/// Equal content gives an equal id, so a message published twice (a redelivered webhook, a replay,
/// a restart) is recognised as the same message. It is used as the NATS `Nats-Msg-Id` header,
/// which is why it is plain ASCII without dots; decoding checks the form so a hostile id can never
/// reach a header.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(String);

impl MessageId {
    /// The id of a message of `family` with type `tag`, written at `version`, that occurred at
    /// `occurred_at`, with `window_edge`, whose `msg` field (type tag and body) encodes to
    /// `encoded_message`.
    ///
    /// Every variable-length part is length-prefixed, so two different messages cannot hash the
    /// same bytes by shifting a boundary. The window edge comes last and only when there is one:
    /// the ids of messages without one are those derived before the field existed.
    pub fn derive(
        family: &str,
        tag: &str,
        version: u16,
        occurred_at: Timestamp,
        window_edge: Option<Timestamp>,
        encoded_message: &[u8],
    ) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(MESSAGE_ID_DOMAIN);
        for part in [family.as_bytes(), tag.as_bytes()] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        hasher.update(version.to_be_bytes());
        hasher.update(occurred_at.as_unix_millis().to_be_bytes());
        hasher.update((encoded_message.len() as u64).to_be_bytes());
        hasher.update(encoded_message);
        if let Some(edge) = window_edge {
            hasher.update(edge.as_unix_millis().to_be_bytes());
        }
        let digest = hasher.finalize();
        Self(hex::encode(&digest[..MESSAGE_ID_BYTES]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A string that is not in the form of a [`MessageId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a message id (32 lowercase hexadecimal digits)")]
pub struct InvalidMessageId(String);

impl FromStr for MessageId {
    type Err = InvalidMessageId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let well_formed =
            text.len() == MESSAGE_ID_LEN && text.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'));
        if well_formed { Ok(Self(text.to_owned())) } else { Err(InvalidMessageId(text.to_owned())) }
    }
}

impl Serialize for MessageId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A message could not be encoded. Doorsync's own types always encode; this exists because the
/// encoder's interface can fail.
#[derive(Debug, thiserror::Error)]
#[error("message could not be encoded as MessagePack")]
pub struct EncodeError(#[source] rmp_serde::encode::Error);

/// Why bytes could not be read as an envelope of the expected family.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Written with a schema version this build does not read: a newer one (upgrade this
    /// consumer) or the never-valid 0.
    #[error("message has schema version {found}, but this build reads only versions 1 to {supported}")]
    UnsupportedVersion { found: u16, supported: u16 },
    /// A well-formed envelope of a message type this build does not know, most likely written by
    /// a newer build, or a message of another family read from the wrong stream.
    #[error("{tag:?} is not a known {family} type")]
    UnknownType { family: &'static str, tag: String },
    /// Not a valid envelope: truncated, garbled, or with a field of the wrong shape.
    #[error("message is not a well-formed doorsync envelope")]
    Malformed(#[source] rmp_serde::decode::Error),
}

/// Encodes an envelope as MessagePack with field names, so that fields can later be added.
pub fn encode<M: Serialize>(envelope: &Envelope<M>) -> Result<Vec<u8>, EncodeError> {
    rmp_serde::to_vec_named(envelope).map_err(EncodeError)
}

/// Decodes an envelope of family `M`, refusing versions and message types this build does not
/// know instead of misreading them. Never panics, whatever the bytes.
///
/// One pass in the common case: the whole envelope is decoded straight from the bytes, and only
/// when that fails is the header read to tell a newer version or an unknown type from garbage.
pub fn decode<M: WireMessage + DeserializeOwned>(bytes: &[u8]) -> Result<Envelope<M>, DecodeError> {
    match from_msgpack::<Envelope<M>>(bytes) {
        Ok(envelope) if envelope.version != 0 && envelope.version <= SCHEMA_VERSION => Ok(envelope),
        // A newer version may happen to fit today's types and still mean something else.
        Ok(envelope) => Err(DecodeError::UnsupportedVersion { found: envelope.version, supported: SCHEMA_VERSION }),
        Err(error) => Err(classify::<M>(bytes, error)),
    }
}

/// Why `bytes` did not decode as an envelope of `M`: a version or type this build does not know,
/// or else `error`.
fn classify<M: WireMessage>(bytes: &[u8], error: rmp_serde::decode::Error) -> DecodeError {
    let Ok(header) = from_msgpack::<Header>(bytes) else {
        return DecodeError::Malformed(error);
    };
    if header.version == 0 || header.version > SCHEMA_VERSION {
        return DecodeError::UnsupportedVersion { found: header.version, supported: SCHEMA_VERSION };
    }
    if !M::TAGS.contains(&header.message.tag.as_str()) {
        return DecodeError::UnknownType { family: M::FAMILY, tag: header.message.tag };
    }
    DecodeError::Malformed(error)
}

/// The part of an envelope that every schema version keeps in the same place; serde skips the
/// other fields, whatever they hold.
#[derive(Deserialize)]
struct Header {
    #[serde(rename = "v")]
    version: u16,
    #[serde(rename = "msg")]
    message: TagOnly,
}

#[derive(Deserialize)]
struct TagOnly {
    #[serde(rename = "type")]
    tag: String,
}

fn from_msgpack<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    // One message per payload: anything after it means the payload is not what we think it is.
    match encoded_len(bytes) {
        Ok(length) if length == bytes.len() => {}
        Ok(_) => return Err(rmp_serde::decode::Error::Syntax("unexpected bytes after the envelope".to_owned())),
        Err(error) => return Err(error),
    }
    // Read in place: field names and strings are borrowed from `bytes`, not copied per field.
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(bytes);
    deserializer.set_max_depth(MAX_NESTING);
    T::deserialize(&mut deserializer)
}

/// The length of the first MessagePack value in `bytes`, found without decoding it; an error if
/// it is cut short, nests deeper than [`MAX_NESTING`], or uses the reserved marker.
fn encoded_len(bytes: &[u8]) -> Result<usize, rmp_serde::decode::Error> {
    walk(bytes).map_err(|problem| match problem {
        Walk::TooDeep => rmp_serde::decode::Error::DepthLimitExceeded,
        Walk::Invalid => {
            rmp_serde::decode::Error::Syntax("the MessagePack value is cut short or uses a reserved marker".to_owned())
        }
    })
}

enum Walk {
    Invalid,
    TooDeep,
}

fn walk(bytes: &[u8]) -> Result<usize, Walk> {
    let mut at = 0_usize;
    // Values still to read at each of the `open` levels of nesting, innermost last. On the
    // stack: every message read goes through here, and a heap allocation per message showed.
    let mut pending = [0_u64; MAX_NESTING];
    pending[0] = 1;
    let mut open = 1_usize;
    while open > 0 {
        let left = &mut pending[open - 1];
        if *left == 0 {
            open -= 1;
            continue;
        }
        *left -= 1;
        let marker = Marker::from_u8(*bytes.get(at).ok_or(Walk::Invalid)?);
        at += 1;
        let mut length = |width: usize| -> Result<usize, Walk> {
            let field = bytes.get(at..at + width).ok_or(Walk::Invalid)?;
            at += width;
            Ok(field.iter().fold(0_usize, |length, byte| (length << 8) | usize::from(*byte)))
        };
        let (payload, children) = match marker {
            Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => (0, 0),
            Marker::U8 | Marker::I8 => (1, 0),
            Marker::U16 | Marker::I16 => (2, 0),
            Marker::U32 | Marker::I32 | Marker::F32 => (4, 0),
            Marker::U64 | Marker::I64 | Marker::F64 => (8, 0),
            Marker::FixStr(len) => (usize::from(len), 0),
            Marker::Str8 | Marker::Bin8 => (length(1)?, 0),
            Marker::Str16 | Marker::Bin16 => (length(2)?, 0),
            Marker::Str32 | Marker::Bin32 => (length(4)?, 0),
            Marker::FixExt1 => (2, 0),
            Marker::FixExt2 => (3, 0),
            Marker::FixExt4 => (5, 0),
            Marker::FixExt8 => (9, 0),
            Marker::FixExt16 => (17, 0),
            Marker::Ext8 => (length(1)? + 1, 0),
            Marker::Ext16 => (length(2)? + 1, 0),
            Marker::Ext32 => (length(4)? + 1, 0),
            Marker::FixArray(len) => (0, u64::from(len)),
            Marker::Array16 => (0, length(2)? as u64),
            Marker::Array32 => (0, length(4)? as u64),
            Marker::FixMap(len) => (0, 2 * u64::from(len)),
            Marker::Map16 => (0, 2 * length(2)? as u64),
            Marker::Map32 => (0, 2 * length(4)? as u64),
            Marker::Reserved => return Err(Walk::Invalid),
        };
        at = at.checked_add(payload).filter(|&end| end <= bytes.len()).ok_or(Walk::Invalid)?;
        if children > 0 {
            // Every value takes at least a byte: more children than bytes left is a lie.
            if open >= MAX_NESTING {
                return Err(Walk::TooDeep);
            }
            if children > (bytes.len() - at) as u64 {
                return Err(Walk::Invalid);
            }
            pending[open] = children;
            open += 1;
        }
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Serialize;

    use super::*;
    use crate::strategies::{any_command, any_event, any_outcome};
    use crate::{BookingCancelled, BookingId, Command, Event, MemberId, MemberRemoved, Outcome, SuspendUser};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn sample_event() -> Event {
        Event::BookingCancelled(BookingCancelled { member: MemberId(17), booking: BookingId(4) })
    }

    /// An envelope written field by field, to produce what a newer (or broken) writer would.
    #[derive(Serialize)]
    struct RawEnvelope<B> {
        v: u16,
        id: &'static str,
        at: i64,
        msg: RawMessage<B>,
    }

    #[derive(Serialize)]
    struct RawMessage<B> {
        #[serde(rename = "type")]
        tag: &'static str,
        body: B,
    }

    #[derive(Serialize)]
    struct RawMemberRemoved {
        member: u64,
    }

    const SOME_ID: &str = "0123456789abcdef0123456789abcdef";

    fn raw(version: u16, tag: &'static str) -> Result<Vec<u8>, rmp_serde::encode::Error> {
        rmp_serde::to_vec_named(&RawEnvelope {
            v: version,
            id: SOME_ID,
            at: 1_000,
            msg: RawMessage { tag, body: RawMemberRemoved { member: 3 } },
        })
    }

    #[test]
    fn ids_are_32_lowercase_hex_digits_and_depend_only_on_content() -> TestResult {
        let at = Timestamp::from_unix_millis(1_700_000_000_000);
        let first = Envelope::new(at, sample_event())?;
        let second = Envelope::new(at, sample_event())?;
        assert_eq!(first.id, second.id);
        assert_eq!(first.id.as_str().len(), 32);
        assert!(first.id.as_str().bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(first.id.as_str().parse::<MessageId>()?, first.id);
        Ok(())
    }

    #[test]
    fn ids_change_with_any_part_of_the_content() -> TestResult {
        let at = Timestamp::from_unix_millis(1_700_000_000_000);
        let base = Envelope::new(at, sample_event())?.id;
        let later = Envelope::new(Timestamp::from_unix_millis(1_700_000_000_001), sample_event())?;
        let other_member = Envelope::new(
            at,
            Event::BookingCancelled(BookingCancelled { member: MemberId(18), booking: BookingId(4) }),
        )?;
        assert_ne!(base, later.id);
        assert_ne!(base, other_member.id);

        let body = rmp_serde::to_vec_named(&sample_event())?;
        let derived = MessageId::derive("event", "booking_cancelled", SCHEMA_VERSION, at, None, &body);
        assert_eq!(derived, base);
        assert_ne!(MessageId::derive("command", "booking_cancelled", SCHEMA_VERSION, at, None, &body), base);
        assert_ne!(MessageId::derive("event", "booking_cancelled", 2, at, None, &body), base);
        assert_ne!(MessageId::derive("event", "booking_cancelled", SCHEMA_VERSION, at, Some(at), &body), base);
        Ok(())
    }

    #[test]
    fn the_window_edge_is_part_of_the_id_and_left_off_the_wire_without_one() -> TestResult {
        let at = Timestamp::from_unix_millis(1_700_000_000_000);
        let command = Command::SuspendUser(SuspendUser { member: MemberId(1), basis: 2 });
        let plain = Envelope::new(at, command.clone())?;
        let edges = [at, Timestamp::from_unix_millis(1_700_000_000_001)]
            .map(|edge| Envelope::with_window_edge(at, Some(edge), command.clone()));
        let [first, second] = edges;
        let (first, second) = (first?, second?);
        assert_ne!(plain.id, first.id);
        assert_ne!(first.id, second.id);
        assert_eq!(Envelope::with_window_edge(at, None, command)?, plain);

        assert_eq!(decode::<Command>(&encode(&first)?)?.window_edge, Some(at));
        let without = encode(&plain)?;
        assert_eq!(without.first(), Some(&0x84), "four fields, as before the edge existed");
        assert_eq!(decode::<Command>(&without)?.window_edge, None);
        Ok(())
    }

    #[test]
    fn message_ids_with_other_forms_are_refused() {
        for text in ["", "0123456789ABCDEF0123456789ABCDEF", "0123456789abcdef", "0123456789abcdef.123456789abcdef"] {
            assert!(text.parse::<MessageId>().is_err(), "{text}");
        }
    }

    #[test]
    fn newer_and_zero_versions_are_refused() -> TestResult {
        for version in [0, 2, u16::MAX] {
            match decode::<Event>(&raw(version, "member_removed")?) {
                Err(DecodeError::UnsupportedVersion { found, supported }) => {
                    assert_eq!((found, supported), (version, SCHEMA_VERSION));
                }
                other => panic!("version {version}: {other:?}"),
            }
        }
        Ok(())
    }

    #[test]
    fn the_version_is_checked_before_anything_else_is_read() -> TestResult {
        // A future version may change everything but `v` and `msg.type`.
        #[derive(Serialize)]
        struct FutureEnvelope {
            v: u16,
            msg: RawMessage<&'static str>,
            id: u8,
        }
        let bytes = rmp_serde::to_vec_named(&FutureEnvelope {
            v: 2,
            msg: RawMessage { tag: "member_removed", body: "reshaped" },
            id: 0,
        })?;
        assert!(matches!(decode::<Event>(&bytes), Err(DecodeError::UnsupportedVersion { found: 2, .. })));
        Ok(())
    }

    #[test]
    fn unknown_types_are_named_in_the_error() -> TestResult {
        match decode::<Event>(&raw(1, "member_teleported")?) {
            Err(DecodeError::UnknownType { family, tag }) => {
                assert_eq!((family, tag.as_str()), ("event", "member_teleported"));
            }
            other => panic!("{other:?}"),
        }
        Ok(())
    }

    #[test]
    fn a_message_of_another_family_is_an_unknown_type() -> TestResult {
        let bytes = encode(&Envelope::new(Timestamp::from_unix_millis(0), sample_event())?)?;
        assert!(matches!(decode::<Command>(&bytes), Err(DecodeError::UnknownType { family: "command", .. })));
        Ok(())
    }

    #[test]
    fn fields_added_by_a_newer_writer_are_ignored() -> TestResult {
        #[derive(Serialize)]
        struct NewerMemberRemoved {
            member: u64,
            reason: &'static str,
        }
        #[derive(Serialize)]
        struct NewerEnvelope {
            v: u16,
            id: &'static str,
            at: i64,
            msg: RawMessage<NewerMemberRemoved>,
            trace: [u8; 3],
        }
        let bytes = rmp_serde::to_vec_named(&NewerEnvelope {
            v: 1,
            id: SOME_ID,
            at: 1_000,
            msg: RawMessage { tag: "member_removed", body: NewerMemberRemoved { member: 3, reason: "gdpr" } },
            trace: [1, 2, 3],
        })?;
        let envelope = decode::<Event>(&bytes)?;
        assert_eq!(envelope.message, Event::MemberRemoved(MemberRemoved { member: MemberId(3) }));
        assert_eq!(envelope.id.as_str(), SOME_ID);
        Ok(())
    }

    #[test]
    fn truncated_trailing_and_misshapen_input_is_malformed() -> TestResult {
        let bytes = encode(&Envelope::new(Timestamp::from_unix_millis(5), sample_event())?)?;
        let mut with_trailer = bytes.clone();
        with_trailer.push(0xc0);

        #[derive(Serialize)]
        struct BadId {
            v: u16,
            id: &'static str,
            at: i64,
            msg: RawMessage<RawMemberRemoved>,
        }
        let bad_id = rmp_serde::to_vec_named(&BadId {
            v: 1,
            id: "not\r\nan id",
            at: 0,
            msg: RawMessage { tag: "member_removed", body: RawMemberRemoved { member: 3 } },
        })?;

        let cases = [&bytes[..bytes.len() - 1], &with_trailer[..], &bad_id[..], &[][..], &[0xc1][..]];
        for case in cases {
            assert!(matches!(decode::<Event>(case), Err(DecodeError::Malformed(_))), "{case:?}");
        }
        Ok(())
    }

    #[test]
    fn the_length_of_a_value_is_found_without_decoding_it() -> TestResult {
        let encoded = rmp_serde::to_vec_named(&(1_u8, "text", vec![300_u16; 20], [("k", -5_i64)], 1.5_f64, ()))?;
        assert_eq!(encoded_len(&encoded)?, encoded.len());
        let mut longer = encoded.clone();
        longer.push(0xc0);
        assert_eq!(encoded_len(&longer)?, encoded.len(), "only the first value counts");
        for cut in 0..encoded.len() {
            assert!(encoded_len(&encoded[..cut]).is_err(), "cut at {cut} of {}", encoded.len());
        }
        assert!(encoded_len(&[0xc1]).is_err(), "the reserved marker");
        Ok(())
    }

    #[test]
    fn deeply_nested_junk_is_refused_without_deep_recursion() -> TestResult {
        // An envelope map whose last, unknown, field is 100,000 nested one-element arrays.
        let mut bytes = raw(1, "member_removed")?;
        let map_header = bytes.first().copied().ok_or("empty encoding")?;
        assert_eq!(map_header, 0x84, "a four-field fixmap");
        bytes[0] = 0x85;
        bytes.extend_from_slice(&[0xa4, b'j', b'u', b'n', b'k']);
        bytes.extend(std::iter::repeat_n(0x91, 100_000));
        bytes.push(0xc0);
        assert!(matches!(
            decode::<Event>(&bytes),
            Err(DecodeError::Malformed(rmp_serde::decode::Error::DepthLimitExceeded))
        ));
        Ok(())
    }

    #[test]
    fn errors_explain_themselves() {
        let unsupported = DecodeError::UnsupportedVersion { found: 3, supported: 1 };
        assert_eq!(unsupported.to_string(), "message has schema version 3, but this build reads only versions 1 to 1");
        let unknown = DecodeError::UnknownType { family: "command", tag: "fly".to_owned() };
        assert_eq!(unknown.to_string(), "\"fly\" is not a known command type");
    }

    #[test]
    fn every_family_knows_its_name() {
        assert_eq!(Event::FAMILY, "event");
        assert_eq!(Command::FAMILY, "command");
        assert_eq!(Outcome::FAMILY, "outcome");
        let command = Command::SuspendUser(SuspendUser { member: MemberId(1), basis: 2 });
        assert_eq!(command.tag(), "suspend_user");
    }

    fn round_trips<M>(at: i64, message: M) -> Result<(), TestCaseError>
    where
        M: WireMessage + Serialize + DeserializeOwned + PartialEq + fmt::Debug,
    {
        round_trips_with_edge(at, None, message)
    }

    fn round_trips_with_edge<M>(at: i64, edge: Option<i64>, message: M) -> Result<(), TestCaseError>
    where
        M: WireMessage + Serialize + DeserializeOwned + PartialEq + fmt::Debug,
    {
        let edge = edge.map(Timestamp::from_unix_millis);
        let envelope = Envelope::with_window_edge(Timestamp::from_unix_millis(at), edge, message)?;
        let bytes = encode(&envelope)?;
        prop_assert_eq!(decode::<M>(&bytes)?, envelope);
        Ok(())
    }

    /// Valid encodings of messages of all families, each damaged in one of several ways.
    fn damaged_encodings() -> impl Strategy<Value = Vec<u8>> {
        let valid = prop_oneof![
            (any::<i64>(), any_event())
                .prop_map(|(at, m)| Envelope::new(Timestamp::from_unix_millis(at), m).and_then(|e| encode(&e))),
            (any::<i64>(), any_command())
                .prop_map(|(at, m)| Envelope::new(Timestamp::from_unix_millis(at), m).and_then(|e| encode(&e))),
            (any::<i64>(), any_outcome())
                .prop_map(|(at, m)| Envelope::new(Timestamp::from_unix_millis(at), m).and_then(|e| encode(&e))),
        ]
        .prop_filter_map("encodes", Result::ok);
        (valid, any::<prop::sample::Index>(), any::<u8>(), 0..3_u8).prop_map(|(mut bytes, index, byte, damage)| {
            if bytes.is_empty() {
                return bytes;
            }
            let at = index.index(bytes.len());
            match damage {
                0 => bytes.truncate(at),
                1 => bytes[at] = byte,
                _ => bytes.insert(at, byte),
            }
            bytes
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn events_round_trip(at in any::<i64>(), event in any_event()) {
            round_trips(at, event)?;
        }

        #[test]
        fn commands_round_trip(at in any::<i64>(), edge in any::<Option<i64>>(), command in any_command()) {
            round_trips_with_edge(at, edge, command)?;
        }

        #[test]
        fn outcomes_round_trip(at in any::<i64>(), outcome in any_outcome()) {
            round_trips(at, outcome)?;
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Event>(&bytes);
            let _ = decode::<Command>(&bytes);
            let _ = decode::<Outcome>(&bytes);
        }

        #[test]
        fn damaged_encodings_never_panic(bytes in damaged_encodings()) {
            let _ = decode::<Event>(&bytes);
            let _ = decode::<Command>(&bytes);
            let _ = decode::<Outcome>(&bytes);
        }
    }
}
