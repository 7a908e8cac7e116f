//! An HTTP simulator of the Nexudus admin API subset doorsync reads, for tests and the demo.
//!
//! It is never friendlier than Nexudus: where Nexudus behaves badly, it does too, and what
//! Nexudus's documentation leaves open is a switch in [`SimOptions`]. Its time is that of
//! [`SimOptions::clock`], so a virtual clock drives it.
//!
//! [`NexudusSimulator::start`] serves on a free loopback port:
//!
//! * `POST /api/token` (form-encoded password and refresh-token grants, tokens that expire on
//!   the simulator's clock) and HTTP Basic; 401 on bad credentials or an expired token;
//! * `GET /api/{area}/{entity}` with Nexudus's paging envelope (`page`, `size`, `Records`,
//!   `HasNextPage`, ...; the size optionally capped lower than asked, [`SimOptions::max_page_size`]), `{Entity}_{Field}` equality and `from_/to_{Entity}_{Field}` date
//!   filters (so `from_{Entity}_UpdatedOn` watermarks work; read in each record's location's
//!   zone by default, or as UTC: [`UpdatedOnFilter`]), list records without their
//!   collection fields, the batch read by ids (`?id=[1,2]`, a bare array of full records), and
//!   `GET /api/{area}/{entity}/{id}` with the full record; a missing or deleted id answers
//!   **500** with an ASP.NET error body, as Nexudus does, or 404 ([`MissingRecord`]); parameters
//!   it does not know are ignored, as Nexudus ignores them (the names asked for are kept:
//!   [`NexudusSimulator::query_parameters_seen`]);
//! * faults on demand: reads by id of one record answer 500
//!   ([`NexudusSimulator::fail_reads_of`]) until told to stop;
//! * throttling as Nexudus does it, **409** with `Retry-After`, when a request breaks the
//!   configured [`Limits`] or when a test asks for it ([`NexudusSimulator::throttle_next`]);
//! * webhooks: every change POSTs the changed entity (and, for changes that affect a customer's
//!   access, the customer as `AccessControlUpdate`) to the hooks registered for that action,
//!   as a JSON array signed in `X-Nexudus-Hook-Signature`; failed deliveries are retried on the
//!   clock and a hook is disabled (`Active=false`) after 10 consecutive failures. Deliveries can
//!   be dropped, duplicated or delayed (and so reordered) by seeded, replayable [`WebhookFaults`].
//!
//! Records are JSON objects with Nexudus's field names, created and changed through the
//! handle ([`NexudusSimulator::create`], [`update`](NexudusSimulator::update),
//! [`cancel_booking`](NexudusSimulator::cancel_booking), [`delete`](NexudusSimulator::delete));
//! each change sets `UpdatedOn` from the clock, and bookings and contracts get their `...Local`
//! twins in their location's zone (the UTC fields are served as that wall clock with a fake `Z`
//! under [`UtcFields::LocalWithFakeZ`]). A change to a record's children or derived values
//! ([`update_children`](NexudusSimulator::update_children), [`check_in`](NexudusSimulator::check_in))
//! leaves `UpdatedOn` alone and announces nothing unless
//! [`SimOptions::parent_updated_on_moves_with_child`] says otherwise.
//!
//! Not simulated: time-based `AccessControlUpdate`s (15 min around bookings), webhook scoping
//! to a location, and sorting (`orderBy`/`dir`; records come in `Id` order).
#![forbid(unsafe_code)]

mod delivery;
mod http;
mod store;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use doorsync_clock::SharedClock;
use doorsync_nexudus::{Credentials, Limits, MAX_PAGE_SIZE, RequestWindows, Secret, WebhookAction};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use url::Url;

pub use store::SimEntity;

/// Seeded, replayable misbehaviour of webhook deliveries. Each probability is per delivery.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WebhookFaults {
    /// Never sent at all.
    pub drop_probability: f64,
    /// Sent twice.
    pub duplicate_probability: f64,
    /// Held back by up to `max_extra_delay`, so later changes may overtake it.
    pub delay_probability: f64,
    pub max_extra_delay: Duration,
}

/// How a read by id of a record the simulator does not have (never had, or deleted) is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingRecord {
    /// 500 with an ASP.NET error body, as real Nexudus answers (reference §1.6, §5).
    #[default]
    ServerError,
    /// 404, as a REST API would.
    NotFound,
}

/// How a `from_/to_{Entity}_{Field}` date filter's value (`2025-07-01T08:00`) is read: unconfirmed
/// (reference §1.5, §1.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpdatedOnFilter {
    /// As UTC, like the instants the admin API writes.
    Utc,
    /// As a wall clock in the zone of each record's location, whatever offset it is written
    /// with (a record with no location it can tell reads it as UTC): west of UTC, a filter then
    /// starts later than the instant meant and misses what changed in between.
    #[default]
    Local,
}

/// How the instants that have a `...Local` twin (`FromTime`, `ToTime`, `StartDate`,
/// `RenewalDate`, `CancellationDate`) are written. The admin API is taken to write them in UTC;
/// the member-portal and marketplace APIs write the location's wall clock with a fake `Z`, and
/// whether the admin API ever does is unconfirmed (reference §1.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UtcFields {
    /// In UTC, with a `Z`: the documented working assumption.
    #[default]
    Utc,
    /// The location's wall clock (the `...Local` twin's value) followed by a fake `Z`, for
    /// records whose location's zone the simulator knows; `UpdatedOn` stays UTC.
    LocalWithFakeZ,
}

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub clock: SharedClock,
    /// The one admin user that may sign in.
    pub credentials: Credentials,
    /// `expires_in` of issued tokens; Nexudus's is 604,799 s.
    pub token_lifetime: Duration,
    /// `None`: never throttles by itself.
    pub limits: Option<Limits>,
    /// Seeds the generator behind [`WebhookFaults`].
    pub seed: u64,
    pub faults: WebhookFaults,
    /// A failed delivery is retried after this times the attempts made so far.
    pub webhook_retry_delay: Duration,
    /// How long a webhook receiver may take to answer before the attempt counts as failed.
    pub webhook_timeout: Duration,
    /// How a read by id of a missing record is answered: 500 like Nexudus [default], or 404.
    pub missing_record: MissingRecord,
    /// Serves at most this many records a page, whatever `size` asks: Nexudus documents 1,000
    /// as its maximum, and whether it caps lower is unconfirmed (reference §1.4). `None` [default]:
    /// up to 1,000.
    pub max_page_size: Option<u32>,
    /// Whether a change to what Nexudus keeps as a record's children or derived values (a
    /// contract's `Desks`, a pass's `RemainingUses` counted down by a check-in) moves the
    /// record's `UpdatedOn` and is announced like any update. Unconfirmed (reference §1.5).
    /// `false` [default]: `UpdatedOn` stays where it was and no webhook fires, so only a read of
    /// the record itself shows the change ([`NexudusSimulator::update_children`]).
    pub parent_updated_on_moves_with_child: bool,
    /// How date filters (`from_{Entity}_UpdatedOn` among them) are read: in each record's
    /// location's zone [default], or as UTC.
    pub updated_on_filter: UpdatedOnFilter,
    /// How the instants with a `...Local` twin are written: UTC [default], or the local wall
    /// clock with a fake `Z`.
    pub utc_fields: UtcFields,
}

impl SimOptions {
    /// Nexudus's limits and token lifetime, no faults, retries 30 s apart (growing), and the
    /// user `admin@example.com` / `password`.
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            credentials: Credentials { username: "admin@example.com".into(), password: Secret::new("password") },
            token_lifetime: Duration::from_secs(604_799),
            limits: Some(Limits::NEXUDUS),
            seed: 0,
            faults: WebhookFaults::default(),
            webhook_retry_delay: Duration::from_secs(30),
            webhook_timeout: Duration::from_secs(10),
            missing_record: MissingRecord::default(),
            max_page_size: None,
            parent_updated_on_moves_with_child: false,
            updated_on_filter: UpdatedOnFilter::default(),
            utc_fields: UtcFields::default(),
        }
    }
}

/// Counts of what the simulator saw and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SimStats {
    /// API requests received, token requests included.
    pub requests: u64,
    /// Requests answered 409.
    pub throttled: u64,
    pub token_grants: u64,
    /// Webhook POSTs made (retries included).
    pub deliveries_attempted: u64,
    pub deliveries_succeeded: u64,
    /// Deliveries a fault dropped before sending.
    pub deliveries_dropped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("nexudus simulator: could not listen on 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    #[error("nexudus simulator: could not set up its webhook HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("nexudus simulator: no {entity} with id {id}")]
    NotFound { entity: &'static str, id: u64 },
    #[error("nexudus simulator: record fields must be a JSON object")]
    NotAnObject,
    #[error("nexudus simulator: {entity} {id} exists already")]
    AlreadyThere { entity: &'static str, id: u64 },
}

#[derive(Debug)]
pub(crate) struct Shared {
    store: Mutex<store::State>,
    pub(crate) clock: SharedClock,
    credentials: Credentials,
    pub(crate) token_lifetime: Duration,
    /// Woken when a delivery is queued.
    pub(crate) queued: Notify,
    pub(crate) missing_record: MissingRecord,
    pub(crate) max_page_size: u32,
    parent_updated_on_moves_with_child: bool,
    pub(crate) updated_on_filter: UpdatedOnFilter,
    pub(crate) utc_fields: UtcFields,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, store::State> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn accepts(&self, username: &str, password: &str) -> bool {
        username.eq_ignore_ascii_case(&self.credentials.username) && password == self.credentials.password.expose()
    }
}

/// A running simulator. Cheap to clone; clones control the same simulator.
#[derive(Debug, Clone)]
pub struct NexudusSimulator {
    shared: Arc<Shared>,
    base_url: Url,
    stop: Arc<watch::Sender<bool>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl NexudusSimulator {
    /// Starts serving on 127.0.0.1 on a free port, and delivering webhooks.
    pub async fn start(options: SimOptions) -> Result<Self, SimError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(SimError::Bind)?;
        let address = listener.local_addr().map_err(SimError::Bind)?;
        let base_url = Url::parse(&format!("http://{address}/"))
            .map_err(|error| SimError::Bind(std::io::Error::new(std::io::ErrorKind::InvalidData, error.to_string())))?;
        let http = reqwest::Client::builder().timeout(options.webhook_timeout).build().map_err(SimError::HttpClient)?;
        let store = store::State::new(
            options.seed,
            options.faults,
            options.webhook_retry_delay,
            options.limits.map(RequestWindows::new),
        );
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            clock: options.clock,
            credentials: options.credentials,
            token_lifetime: options.token_lifetime,
            queued: Notify::new(),
            missing_record: options.missing_record,
            max_page_size: options.max_page_size.unwrap_or(MAX_PAGE_SIZE).clamp(1, MAX_PAGE_SIZE),
            parent_updated_on_moves_with_child: options.parent_updated_on_moves_with_child,
            updated_on_filter: options.updated_on_filter,
            utc_fields: options.utc_fields,
        });
        let (stop, stopped) = watch::channel(false);
        let server = {
            let mut stopped = stopped.clone();
            let app = http::router(shared.clone());
            tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stopped.changed().await;
                };
                if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                    tracing::warn!(%error, "nexudus simulator: the HTTP server stopped");
                }
            })
        };
        let deliveries = tokio::spawn(delivery::run(shared.clone(), http, stopped));
        Ok(Self { shared, base_url, stop: Arc::new(stop), tasks: Arc::new(Mutex::new(vec![server, deliveries])) })
    }

    /// Where the API is: pass it as the client's `base_url`.
    pub fn base_url(&self) -> Url {
        self.base_url.clone()
    }

    /// Stops serving and delivering, and waits until both have stopped.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in tasks {
            if let Err(error) = task.await {
                tracing::warn!(%error, "nexudus simulator: a task ended abnormally");
            }
        }
    }

    /// Runs a change against the store at the clock's current time, then wakes the deliveries.
    fn change<T>(&self, apply: impl FnOnce(&mut store::State, doorsync_proto::Timestamp) -> T) -> T {
        let now = self.shared.clock.now();
        let result = apply(&mut self.shared.lock(), now);
        self.shared.queued.notify_one();
        result
    }

    /// Creates a record from Nexudus-named `fields` (`{"FullName": ..., "Email": ...}`); the
    /// simulator adds `Id`, `UniqueId`, `CreatedOn`, `UpdatedOn`. Returns the new id.
    pub fn create(&self, kind: SimEntity, fields: Value) -> Result<u64, SimError> {
        self.change(|store, now| store.create(kind, fields, now))
    }

    /// Sets the given fields of a record and bumps its `UpdatedOn`.
    pub fn update(&self, kind: SimEntity, id: u64, fields: Value) -> Result<(), SimError> {
        self.change(|store, now| store.update(kind, id, fields, now))
    }

    /// Sets fields Nexudus keeps as the record's children or derived values (a contract's
    /// `Desks` and their `FloorPlanDeskIds` mirror, a pass's `RemainingUses`): like
    /// [`update`](Self::update) with [`SimOptions::parent_updated_on_moves_with_child`], else
    /// silently, leaving `UpdatedOn` as it was.
    pub fn update_children(&self, kind: SimEntity, id: u64, fields: Value) -> Result<(), SimError> {
        if self.shared.parent_updated_on_moves_with_child {
            return self.update(kind, id, fields);
        }
        self.shared.lock().update_silently(kind, id, fields)
    }

    /// A check-in on a customer's pass: one of its `RemainingUses` is used (never below 0), a
    /// derived value ([`update_children`](Self::update_children)). Returns the uses left.
    pub fn check_in(&self, pass: u64) -> Result<i64, SimError> {
        let record = self
            .record(SimEntity::CoworkerTimePass, pass)
            .ok_or(SimError::NotFound { entity: SimEntity::CoworkerTimePass.name(), id: pass })?;
        let left = record.get("RemainingUses").and_then(Value::as_i64).unwrap_or(0).saturating_sub(1).max(0);
        self.update_children(SimEntity::CoworkerTimePass, pass, json!({"RemainingUses": left}))?;
        Ok(left)
    }

    /// Deletes a record for good (an admin's hard delete): gone from lists, and a read by id
    /// answers as [`SimOptions::missing_record`] says.
    pub fn delete(&self, kind: SimEntity, id: u64) -> Result<(), SimError> {
        self.change(|store, now| store.delete(kind, id, now))
    }

    /// Puts back a record [`delete`](Self::delete)d earlier, as `record` (which names its `Id`)
    /// says, announced as created and with `UpdatedOn` now: a deletion undone, or a record that
    /// only seemed gone for a while.
    pub fn restore(&self, kind: SimEntity, record: Value) -> Result<u64, SimError> {
        self.change(|store, now| store.restore(kind, record, now))
    }

    /// Cancels a booking the way Nexudus does: it leaves the bookings and a snapshot with
    /// `OriginalBookingId`, `CancelledOn` and `CancellationReason` appears among the cancelled
    /// bookings. Returns the snapshot's id.
    pub fn cancel_booking(&self, booking: u64, reason: u64) -> Result<u64, SimError> {
        self.change(|store, now| store.cancel_booking(booking, reason, now))
    }

    /// A location in the zone with Windows id `windows_zone` ("GMT Standard Time"); returns the
    /// business id.
    pub fn create_location(&self, name: &str, windows_zone: &str) -> Result<u64, SimError> {
        let existing = self
            .shared
            .lock()
            .records(SimEntity::SimpleTimeZone)
            .find(|zone| zone.get("Name").and_then(Value::as_str) == Some(windows_zone))
            .and_then(|zone| zone.get("Id").and_then(Value::as_u64));
        let zone = match existing {
            Some(zone) => zone,
            None => self.create(SimEntity::SimpleTimeZone, json!({"Name": windows_zone}))?,
        };
        self.create(SimEntity::Business, json!({"Name": name, "SimpleTimeZoneId": zone}))
    }

    /// Registers a webhook for `action` that POSTs to `url` signed with `secret`; returns its id.
    pub fn register_webhook(&self, action: WebhookAction, url: &Url, secret: Secret) -> Result<u64, SimError> {
        let fields = json!({
            "Name": format!("doorsync {action}"), "Action": action.code(), "URL": url.as_str(),
            "Active": true, "ErrorCount": 0,
        });
        self.change(|store, now| store.register_webhook(fields, secret, now))
    }

    /// The record as `GET .../{id}` would show it.
    pub fn record(&self, kind: SimEntity, id: u64) -> Option<Value> {
        self.shared.lock().record(kind, id).cloned()
    }

    /// Changes the webhook faults from now on.
    pub fn set_faults(&self, faults: WebhookFaults) {
        self.shared.lock().faults = faults;
    }

    /// Answers the next `requests` API requests with 409 and `Retry-After: 1`, whatever the limits.
    pub fn throttle_next(&self, requests: u32) {
        self.throttle_next_with_retry_after(requests, 1);
    }

    /// Answers the next `requests` API requests with 409 and `Retry-After: <seconds>`, as a proxy
    /// in front of Nexudus might, with any value.
    pub fn throttle_next_with_retry_after(&self, requests: u32, seconds: u64) {
        let mut store = self.shared.lock();
        store.forced_throttles = requests;
        store.forced_retry_after_seconds = seconds;
    }

    /// Invalidates every access and refresh token issued so far, as a password change would.
    pub fn revoke_tokens(&self) {
        let mut store = self.shared.lock();
        store.access_tokens.clear();
        store.refresh_tokens.clear();
    }

    /// Answers every read by id of this record with 500 (a real server error: the record is
    /// still listed), until [`NexudusSimulator::stop_failing_reads_of`].
    pub fn fail_reads_of(&self, kind: SimEntity, id: u64) {
        self.shared.lock().failing_reads.insert((kind, id));
    }

    pub fn stop_failing_reads_of(&self, kind: SimEntity, id: u64) {
        self.shared.lock().failing_reads.remove(&(kind, id));
    }

    /// The name of every query parameter listings were asked with (`page`, `id`,
    /// `from_Booking_UpdatedOn`, ...), known to the simulator or not.
    pub fn query_parameters_seen(&self) -> BTreeSet<String> {
        self.shared.lock().parameters_seen.clone()
    }

    pub fn stats(&self) -> SimStats {
        self.shared.lock().stats
    }
}
