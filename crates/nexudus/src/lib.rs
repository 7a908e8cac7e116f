//! A client of the Nexudus admin REST API, as doorsync's ingestor needs it.
//!
//! * [`NexudusClient`] reads the entities that make up door entitlements ([`Coworker`],
//!   [`Business`], [`Resource`], [`Booking`], [`CancelledBooking`], [`TimePass`],
//!   [`CoworkerTimePass`], [`CoworkerContract`], [`FloorPlanDesk`]) and the registered
//!   [`Webhook`]s: [`NexudusClient::list`] pages through a [`ListQuery`] (with
//!   `from_{Entity}_UpdatedOn` watermarks, or a batch of ids), [`NexudusClient::get`] re-reads
//!   one record by id. Nexudus answers a read by id of a deleted record with **500**, not 404
//!   ([`NexudusError::may_mean_deleted`]): only a listing by id tells a deletion from an outage.
//! * It signs in with a bearer token from `POST /api/token` (refreshed before it expires, and
//!   once more when refused) or with HTTP Basic; keeps all three of Nexudus's request limits at
//!   once ([`Limits`], [`RateLimiter`]), live requests before background ones ([`Priority`],
//!   set for a task with [`Priority::scope`]), on the [`Clock`](doorsync_clock::Clock) it is given; and
//!   treats Nexudus's throttling answer, **409** with `Retry-After`, as "wait and retry" (never
//!   waiting more than [`MAX_RETRY_AFTER`], five minutes, whatever the header says).
//! * Records are read one by one: a malformed record becomes a [`MalformedRecord`] naming the
//!   entity, id and field, and the rest of its page is still returned.
//! * Date-times are kept as written ([`NexudusDateTime`]): admin-API instants are UTC, the
//!   `...Local` twins are the location's wall clock (see [`datetime`]).
//! * [`webhook`] signs and verifies `X-Nexudus-Hook-Signature` (uppercase hex HMAC-SHA256,
//!   compared in constant time) and reads webhook bodies.
//!
//! Nexudus's limits ([`Limits::NEXUDUS`]) are one request per 100 ms, 120 a minute and 5,000 an
//! hour, each a sliding window. Pages are read through the `Records`/`HasNextPage` envelope,
//! never assuming the page size asked for was granted.
//!
//! The client makes no decision about what a record means: it reads Nexudus faithfully (times as
//! written, with the offset they carry) and leaves meaning to the ingestor's normalisation.
#![forbid(unsafe_code)]

mod client;
pub mod datetime;
mod error;
mod limiter;
mod models;
mod options;
mod query;
mod record;
pub mod webhook;

pub use client::{NexudusClient, SetupError, on_first_request};
pub use datetime::NexudusDateTime;
pub use error::NexudusError;
pub use limiter::{LimiterWaits, MAX_RETRY_AFTER, Priority, RateLimiter, RequestWindows};
pub use models::{
    Booking, Business, CancelledBooking, Coworker, CoworkerContract, CoworkerTimePass, Entity, FloorPlanDesk,
    FloorPlanItemType, Resource, SimpleTimeZone, TimePass, Webhook,
};
pub use options::{AuthMode, Credentials, Limits, NexudusOptions, Secret};
pub use query::{ListQuery, Listing, MAX_PAGE_SIZE, Page};
pub use record::MalformedRecord;
pub use webhook::WebhookAction;
