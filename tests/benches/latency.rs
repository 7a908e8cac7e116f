//! Webhook to Kisi: how long a change made in Nexudus takes to reach Kisi through the whole
//! pipeline, against the Nexudus and Kisi simulators on loopback at their real limits, on the
//! system clock, run both ways doorsync is deployed:
//!
//! * one process: the three roles started through `doorsync_node::start` with every role, on the
//!   embedded log, as `doorsync run` starts them;
//! * split: `doorsync ingest`, `engine` and `writer` each started through `doorsync_node::start`
//!   with its own role and its own connection to a nats-server of the benchmark's own, sharing
//!   nothing but JetStream, as three processes would (in one OS process, so that one clock
//!   stamps every figure).
//!
//! Each starts from a configuration at its defaults but for where things are: Nexudus's
//! published limits in the client (1 request per 100 ms, 120 a minute, 5,000 an hour) and the
//! simulator (which answers 409 above them), the poller on its default schedule, the writer at its
//! default requests per second against Kisi's 5 (the simulator answers 429 above).
//!
//! Measured per change, from just before it is made in the Nexudus simulator (which fires the
//! webhook) to Kisi:
//!
//! * members new to Kisi: each booking is a different member's first access, so the writer
//!   finds the user by email, creates it and creates the assignment: three calls; to the
//!   `created_at` the Kisi simulator stamps on the assignment (the same clock, in milliseconds);
//! * members Kisi already holds: a second room for the same members, one call each (a new
//!   booking);
//! * updates: every room-A booking extended by half an hour, to the first look at Kisi that finds
//!   the member's assignment with another window;
//! * cancellations: every room-A booking cancelled (which fires `BookingDelete` and
//!   `AccessControlUpdate`; a read by id of the booking answers 500, so the ingestor confirms it
//!   gone with a list query); the member keeps room B, so the writer makes one call, the delete;
//! * hard deletes: every room-B booking deleted for good. It is the member's last access, so the
//!   writer suspends the Kisi user before deleting the assignment: two calls. The room's doors
//!   close to the member at the first, which is measured too.
//!
//! Every booking's window starts 16 minutes ahead, within the 15-minute lead plus a minute, so
//! Kisi holds each assignment when it changes. The Kisi simulator stamps no time on an update or a
//! deletion, so those rounds look at Kisi every 2 ms from just before the change, one change at a
//! time: their figures are late by at most the look's interval and its scheduling.
//!
//! Changes are spaced (1.5 s) so that each change's Nexudus reads and Kisi calls are done before
//! the next's begin: what is measured is one change's way through, not a queue. The Nexudus
//! requests of each round are counted from the simulator (the poller's among them) and reported
//! per change, with the 429s Kisi and the 409s Nexudus answered. The split deployment's figures
//! less one process's are reported too.
//!
//! Percentiles are nearest-rank. `BENCH_BOOKINGS` (default 15) sets the changes per round;
//! `RUST_LOG` sends the roles' logs to stderr. Besides the text, each figure is printed as a
//! `FIGURE <key> <value> <unit> <target> <description>` line for `scripts/bench-report.py`: one
//! process's as `latency.<round>.*`, the split deployment's as `latency.split.<round>.*`, their
//! difference as `latency.split_minus_one_process.<round>.*`.
#![allow(clippy::expect_used, reason = "a benchmark should fail loudly at the first surprise")]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use doorsync_clock::{SharedClock, SystemClock};
use doorsync_config::{Config, LogBackend, MappingEntry};
use doorsync_engine::EngineHandle;
use doorsync_ingest::{IngestHandle, WEBHOOK_ACTIONS, webhook_path};
use doorsync_integration_tests::Latencies;
use doorsync_kisi_sim::{CallCounts, GroupAccess, KisiSimulator, SimHandle};
use doorsync_nexudus::{Credentials, NexudusDateTime, Secret};
use doorsync_nexudus_sim::{NexudusSimulator, SimEntity};
use doorsync_node::{Context, Process, RoleSet};
use doorsync_proto::{KisiAssignmentId, KisiGroupId, KisiUserId, Timestamp};
use doorsync_test_support::NatsServer;
use doorsync_writer::WriterHandle;
use serde_json::{Value, json};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

const KISI_API_KEY: &str = "doorsync-bench-kisi-key";
const WEBHOOK_SECRET: &str = "doorsync-bench-webhook-secret";
/// The product's promise for a change reaching Kisi (issue 6's end-to-end target).
const TARGET_P99_MS: i64 = 2_000;
/// Issue 18's promise for a member new to Kisi: three calls back to back within Kisi's budget.
const TARGET_NEW_MEMBER_P50_MS: i64 = 250;
const TARGET_NEW_MEMBER_P99_MS: i64 = 1_000;
/// Issue 18's promise for a member Kisi already holds: one call.
const TARGET_KNOWN_MEMBER_P50_MS: i64 = 100;
/// The deleted-records issue's promise: a cancellation or a hard delete is out of Kisi within a
/// second of its webhook, like a creation in the design's "seconds, not minutes".
const TARGET_REMOVAL_P99_MS: i64 = 1_000;
/// Issue 18's promise: the split deployment as fast as one process, to within this.
const TARGET_SPLIT_DIFFERENCE_MS: i64 = 100;
/// Between changes: at Nexudus's 120 requests a minute, a change that costs a few reads spends
/// its share of the minute before the next begins, so that a change's figure is its own way
/// through rather than a queue behind the ones before (the poller's reads share the budget).
const SPACING: Duration = Duration::from_millis(1_500);
/// The writer's interval between Kisi calls at its default 4 requests/s: a change that took
/// longer than its spacing still leaves this long before the next change, so that the next
/// change's call is not held by the limiter.
const WRITER_CALL_INTERVAL: Duration = Duration::from_millis(250);
/// How often a round of changes looks at Kisi: the resolution of its figures.
const CHANGE_POLL: Duration = Duration::from_millis(2);
/// How long after a round's last change its other webhooks' reads are still counted as its own.
const TRAILING_READS: Duration = Duration::from_secs(1);
/// Nexudus's `CancellationReason` for a booking the customer cancelled.
const CANCELLED_BY_CUSTOMER: u64 = 1;
/// How long the last booking of a round may take before the benchmark gives up.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);
const MINUTE_MS: i64 = 60_000;

fn main() -> BenchResult<()> {
    // With RUST_LOG set, the roles' logs and spans (opened, closed) go to stderr with their times,
    // to follow a slow change.
    if std::env::var_os("RUST_LOG").is_some() {
        let filter = tracing_subscriber::EnvFilter::from_default_env();
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_span_events(
                tracing_subscriber::fmt::format::FmtSpan::NEW | tracing_subscriber::fmt::format::FmtSpan::CLOSE,
            )
            .with_writer(std::io::stderr)
            .init();
    }
    let bookings = std::env::var("BENCH_BOOKINGS").ok().and_then(|value| value.parse().ok()).unwrap_or(15);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(bookings))
}

/// The simulators with one location, two rooms mapped to two Kisi groups, and the members.
struct World {
    kisi_simulator: KisiSimulator,
    kisi: SimHandle,
    nexudus: NexudusSimulator,
    nexudus_credentials: Credentials,
    room_a: (u64, KisiGroupId),
    room_b: (u64, KisiGroupId),
    /// Nexudus coworker ids, each with the email Kisi will know them by.
    members: Vec<(u64, String)>,
}

impl World {
    async fn start(clock: &SharedClock, members: usize) -> BenchResult<Self> {
        let kisi_simulator = KisiSimulator::start(doorsync_kisi_sim::SimOptions::new(Arc::clone(clock))).await?;
        let kisi = kisi_simulator.handle();
        kisi.add_api_account("integration@example.com", "doorsync", KISI_API_KEY)?;

        // Nexudus's published limits, which the simulator answers 409 above.
        let options = doorsync_nexudus_sim::SimOptions::new(Arc::clone(clock));
        let nexudus_credentials = options.credentials.clone();
        let nexudus = NexudusSimulator::start(options).await?;
        let business = nexudus.create_location("Soho", "GMT Standard Time")?;
        let room = |name: &str| -> BenchResult<(u64, KisiGroupId)> {
            let resource = nexudus.create(SimEntity::Resource, json!({"BusinessId": business, "Name": name}))?;
            Ok((resource, kisi.add_group(name)))
        };
        let (room_a, room_b) = (room("Room A")?, room("Room B")?);
        let members = (1..=members)
            .map(|number| {
                let email = format!("member{number}@bench.invalid");
                let fields = json!({"FullName": format!("Member {number}"), "Email": email, "Active": true});
                Ok((nexudus.create(SimEntity::Coworker, fields)?, email))
            })
            .collect::<BenchResult<Vec<_>>>()?;
        Ok(Self { kisi_simulator, kisi, nexudus, nexudus_credentials, room_a, room_b, members })
    }

    /// doorsync's configuration for this world, each key at its default but for where the
    /// simulators, the secrets and the log are: Nexudus's limits, the poll schedule and the
    /// writer's requests per second are the product's own.
    fn config(&self, dir: &Path, nats: Option<&NatsServer>) -> BenchResult<Config> {
        let secret = |name: &str, value: &str| -> BenchResult<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, value)?;
            Ok(path)
        };
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let mut config = Config::default();
        config.log.subject_prefix = "bench".to_owned();
        match nats {
            Some(nats) => {
                config.log.backend = LogBackend::Jetstream;
                config.log.nats_url = nats.url();
            }
            None => {
                config.log.backend = LogBackend::Embedded;
                config.log.path = dir.join("doorsync.redb");
            }
        }
        config.nexudus.base_url = self.nexudus.base_url().to_string();
        config.nexudus.username = Some(self.nexudus_credentials.username.clone());
        config.nexudus.password_file = Some(secret("nexudus-password", self.nexudus_credentials.password.expose())?);
        config.nexudus.webhook_secret_file = Some(secret("webhook-secret", WEBHOOK_SECRET)?);
        config.nexudus.webhook_listen = loopback;
        config.kisi.base_url = self.kisi_simulator.base_url().to_string();
        config.kisi.api_key_file = Some(secret("kisi-api-key", KISI_API_KEY)?);
        config.admin.listen = loopback;
        config.mapping = [self.room_a, self.room_b]
            .into_iter()
            .map(|(resource, group)| MappingEntry {
                resource: Some(resource),
                pass_product: None,
                floor_plan_item: None,
                kisi_group: Some(group.0),
                kisi_group_name: None,
            })
            .collect();
        Ok(config)
    }

    /// A confirmed booking of `resource` by `member`, 16 minutes ahead for an hour: with the
    /// default 15-minute lead, a grant written ahead of its window, as in the end-to-end test.
    fn book(&self, member: u64, resource: u64, now: Timestamp) -> BenchResult<Booked> {
        let from = Timestamp::from_unix_millis(now.as_unix_millis() + 16 * MINUTE_MS);
        let to = Timestamp::from_unix_millis(from.as_unix_millis() + 60 * MINUTE_MS);
        let fields = json!({"ResourceId": resource, "CoworkerId": member, "Tentative": false,
            "FromTime": nexudus_time(from), "ToTime": nexudus_time(to)});
        Ok(Booked { id: self.nexudus.create(SimEntity::Booking, fields)?, ends_at: to })
    }

    /// When each member's assignment on `group` was created in Kisi, by email.
    fn assignments_created(&self, group: KisiGroupId) -> BTreeMap<String, Timestamp> {
        self.assignments_on(group).into_iter().map(|(email, held)| (email, held.created_at)).collect()
    }

    /// Each member's assignment on `group` in Kisi, by email.
    fn assignments_on(&self, group: KisiGroupId) -> BTreeMap<String, HeldAssignment> {
        let emails: BTreeMap<_, _> = self.kisi.users().into_iter().map(|user| (user.id, user.email)).collect();
        self.kisi
            .assignments()
            .into_iter()
            .filter(|assignment| assignment.group == group)
            .filter_map(|assignment| {
                let held = HeldAssignment {
                    id: assignment.id,
                    user: assignment.user,
                    created_at: assignment.created_at,
                    window: (assignment.valid_from, assignment.valid_until),
                };
                Some((emails.get(&assignment.user)?.to_lowercase(), held))
            })
            .collect()
    }

    fn holds_assignment(&self, id: KisiAssignmentId) -> bool {
        self.kisi.assignments().iter().any(|assignment| assignment.id == id)
    }

    /// Whether Kisi holds an assignment of `held`'s user on `group` with a window other than
    /// `held`'s: the one updated, or its replacement.
    fn holds_other_window(&self, held: HeldAssignment, group: KisiGroupId) -> bool {
        self.kisi.assignments().iter().any(|assignment| {
            assignment.user == held.user
                && assignment.group == group
                && (assignment.valid_from, assignment.valid_until) != held.window
        })
    }

    async fn shutdown(self) {
        self.nexudus.shutdown().await;
        self.kisi_simulator.shutdown().await;
    }
}

/// A role assignment the Kisi simulator holds.
#[derive(Debug, Clone, Copy)]
struct HeldAssignment {
    id: KisiAssignmentId,
    user: KisiUserId,
    created_at: Timestamp,
    /// From and until when it lets the user in.
    window: (Option<Timestamp>, Option<Timestamp>),
}

/// A booking the benchmark made in Nexudus.
#[derive(Debug, Clone, Copy)]
struct Booked {
    id: u64,
    ends_at: Timestamp,
}

fn nexudus_time(at: Timestamp) -> Value {
    NexudusDateTime::from_utc(at).map_or(Value::Null, |written| Value::String(written.to_string()))
}

/// How doorsync runs for a pass of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deployment {
    /// `doorsync run`: the three roles in one process on the embedded log.
    OneProcess,
    /// `doorsync ingest`, `engine` and `writer`: each role started on its own connection to a
    /// nats-server, as three processes would be, sharing nothing but the log.
    Split,
}

impl Deployment {
    fn key(self) -> &'static str {
        match self {
            Self::OneProcess => "one_process",
            Self::Split => "split",
        }
    }

    /// Where the deployment's figures are keyed: one process's keep the keys the benchmark has
    /// always printed (`latency.new_member.p50`), so that earlier reports compare.
    fn figure_prefix(self) -> &'static str {
        match self {
            Self::OneProcess => "latency",
            Self::Split => "latency.split",
        }
    }

    fn described(self) -> &'static str {
        match self {
            Self::OneProcess => "one process (doorsync run, embedded log)",
            Self::Split => "split (ingest, engine and writer each on its own connection to nats-server)",
        }
    }
}

/// doorsync's roles started through `doorsync_node::start` from a configuration, as the binary
/// starts them: every role in one process for `doorsync run`, or one role per process on
/// JetStream for the split deployment.
struct Doorsync {
    processes: Vec<Process>,
    ingest: IngestHandle,
    engine: EngineHandle,
    writer: WriterHandle,
    _nats: Option<NatsServer>,
    _dir: tempfile::TempDir,
}

impl Doorsync {
    async fn start(world: &World, clock: &SharedClock, deployment: Deployment) -> BenchResult<Self> {
        let dir = tempfile::Builder::new().prefix("doorsync-bench-").tempdir()?;
        let nats = match deployment {
            Deployment::OneProcess => None,
            Deployment::Split => Some(NatsServer::start().await?),
        };
        let config = world.config(dir.path(), nats.as_ref())?;
        let layout = doorsync_node::setup::layout(&config)?;
        let mapping = doorsync_node::setup::mapping(&config).await?;
        let roles: &[(RoleSet, &str)] = match deployment {
            Deployment::OneProcess => &[(RoleSet::ALL, "run")],
            Deployment::Split => {
                &[(RoleSet::INGEST, "ingest"), (RoleSet::ENGINE, "engine"), (RoleSet::WRITER, "writer")]
            }
        };
        let mut processes = Vec::new();
        for &(role_set, command) in roles {
            let context =
                Context { config: config.clone(), clock: Arc::clone(clock), instance: format!("bench-{command}") };
            let opened = doorsync_node::setup::open_log(&config, &layout, None, command).await?;
            let process =
                doorsync_node::start(&context, role_set, opened, layout.clone(), mapping.clone(), |_| Router::new())
                    .await?;
            processes.push(process);
        }
        let running = |role: fn(&Process) -> bool| processes.iter().find(|process| role(process));
        let ingest_process = running(|process| process.running.ingest.is_some()).ok_or("no process ingests")?;
        let ingest = ingest_process.running.ingest.clone().ok_or("no ingestor")?;
        let webhooks = ingest_process.running.webhook_address.ok_or("the ingestor serves no webhooks")?;
        let engine = running(|process| process.running.engine.is_some())
            .and_then(|process| process.running.engine.clone())
            .ok_or("no process runs the engine")?;
        let writer = running(|process| process.running.writer.is_some())
            .and_then(|process| process.running.writer.clone())
            .ok_or("no process runs the writer")?;
        for &action in WEBHOOK_ACTIONS {
            let url = url::Url::parse(&format!("http://{webhooks}{}", webhook_path(action)))?;
            world.nexudus.register_webhook(action, &url, Secret::new(WEBHOOK_SECRET))?;
        }
        Ok(Self { processes, ingest, engine, writer, _nats: nats, _dir: dir })
    }

    /// Stops the processes in the order a deployment's are stopped: webhooks first.
    async fn shutdown(self) {
        let Self { processes, ingest, engine, writer, _nats, _dir } = self;
        drop((ingest, engine, writer));
        for process in processes {
            process.shutdown().await;
        }
    }
}

/// What a round of bookings measured, and the bookings it made.
struct BookingRound {
    to_assignment: Latencies,
    /// To the Kisi user's creation, when every user was created in this round.
    to_user: Option<Latencies>,
    /// Each member's booking, by email.
    bookings: BTreeMap<String, Booked>,
    nexudus_requests: u64,
}

/// Books one room for every member, `spacing` apart, and waits until Kisi holds every
/// assignment.
async fn round(
    world: &World,
    clock: &SharedClock,
    (resource, group): (u64, KisiGroupId),
    spacing: Duration,
) -> BenchResult<BookingRound> {
    let nexudus_before = world.nexudus.stats();
    let mut booked_at = BTreeMap::new();
    let mut bookings = BTreeMap::new();
    let mut next = tokio::time::Instant::now();
    for (member, email) in &world.members {
        tokio::time::sleep_until(next).await;
        next += spacing;
        let now = clock.now();
        let booking = world.book(*member, resource, now)?;
        booked_at.insert(email.to_lowercase(), now);
        bookings.insert(email.to_lowercase(), booking);
    }
    let deadline = tokio::time::Instant::now() + SETTLE_LIMIT;
    let created = loop {
        let created = world.assignments_created(group);
        if booked_at.keys().all(|email| created.contains_key(email)) {
            break created;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "after {SETTLE_LIMIT:?}, Kisi holds {} of {} assignments",
                created.len(),
                booked_at.len()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let since_booked = |at: Timestamp, email: &str| at.as_unix_millis() - booked_at[email].as_unix_millis();
    let to_assignment = booked_at.keys().map(|email| since_booked(created[email], email)).collect();
    let users: BTreeMap<String, Timestamp> =
        world.kisi.users().into_iter().map(|user| (user.email.to_lowercase(), user.created_at)).collect();
    let users_created_now = booked_at.iter().all(|(email, at)| users.get(email).is_some_and(|user| user >= at));
    let to_user = users_created_now
        .then(|| Latencies::new(booked_at.keys().map(|email| since_booked(users[email], email)).collect()));
    // A booking's other webhooks may still be read when its assignment is there; their reads
    // belong to this round.
    tokio::time::sleep(TRAILING_READS).await;
    let nexudus_requests = world.nexudus.stats().requests - nexudus_before.requests;
    Ok(BookingRound { to_assignment: Latencies::new(to_assignment), to_user, bookings, nexudus_requests })
}

/// A change to a booking Kisi already holds the assignment of, made one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// The booking extended by half an hour: Kisi's assignment gets the new window.
    Extension,
    /// A cancellation: the booking leaves the bookings for the cancelled bookings.
    Cancellation,
    /// An admin's hard delete: the booking is gone, with nothing left to find.
    HardDelete,
}

impl Change {
    fn apply(self, nexudus: &NexudusSimulator, booking: Booked) -> BenchResult<()> {
        match self {
            Self::Extension => {
                let to = Timestamp::from_unix_millis(booking.ends_at.as_unix_millis() + 30 * MINUTE_MS);
                nexudus.update(SimEntity::Booking, booking.id, json!({"ToTime": nexudus_time(to)}))?;
            }
            Self::Cancellation => {
                nexudus.cancel_booking(booking.id, CANCELLED_BY_CUSTOMER)?;
            }
            Self::HardDelete => nexudus.delete(SimEntity::Booking, booking.id)?,
        }
        Ok(())
    }

    /// Whether Kisi shows the change done to `held`, the assignment before it.
    fn done(self, world: &World, held: HeldAssignment, group: KisiGroupId) -> bool {
        match self {
            Self::Extension => world.holds_other_window(held, group),
            Self::Cancellation | Self::HardDelete => !world.holds_assignment(held.id),
        }
    }
}

/// What a round of changes measured, and what it cost the simulators.
struct ChangeRound {
    to_done: Latencies,
    /// To the first look at which the member could no longer open the room's doors: when the
    /// writer suspends the Kisi user before deleting the assignment (the member's last access
    /// went), earlier than `to_done`. Only removals whose access was granted just before count.
    to_access_closed: Latencies,
    nexudus_requests: u64,
    webhook_deliveries: u64,
    kisi_calls: CallCounts,
}

/// Makes `change` to each of `bookings` (by member email) in Nexudus one at a time, at most one
/// per `spacing`, and measures each from just before the change to the first look at Kisi that
/// finds it done to the booking's assignment on `group`, and for a removal to the first that finds
/// the member's access to the group closed.
async fn one_at_a_time(
    world: &World,
    clock: &SharedClock,
    bookings: &BTreeMap<String, Booked>,
    group: KisiGroupId,
    change: Change,
    spacing: Duration,
) -> BenchResult<ChangeRound> {
    let held = world.assignments_on(group);
    let nexudus_before = world.nexudus.stats();
    world.kisi.reset_calls();
    let mut latencies = Vec::with_capacity(bookings.len());
    let mut access_closed = Vec::with_capacity(bookings.len());
    let mut next = tokio::time::Instant::now();
    for (email, &booking) in bookings {
        tokio::time::sleep_until(next).await;
        let slot = tokio::time::Instant::now();
        let assignment =
            *held.get(email).ok_or_else(|| format!("Kisi holds no assignment for {email} before its {change:?}"))?;
        let can_open = |at: Timestamp| world.kisi.group_access(assignment.user, group, at) == GroupAccess::Granted;
        let changed_at = clock.now();
        // An assignment whose window has not begun yet closes nothing when it goes.
        let open_before = change != Change::Extension && can_open(changed_at);
        let mut closed_at = None;
        change.apply(&world.nexudus, booking)?;
        let deadline = slot + SETTLE_LIMIT;
        let done_at = loop {
            if open_before && closed_at.is_none() && !can_open(clock.now()) {
                closed_at = Some(clock.now());
            }
            if change.done(world, assignment, group) {
                break clock.now();
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("after {SETTLE_LIMIT:?}, Kisi does not show {email}'s {change:?}").into());
            }
            tokio::time::sleep(CHANGE_POLL).await;
        };
        latencies.push(done_at.as_unix_millis() - changed_at.as_unix_millis());
        if let Some(closed_at) = closed_at {
            access_closed.push(closed_at.as_unix_millis() - changed_at.as_unix_millis());
        }
        next = (slot + spacing).max(tokio::time::Instant::now() + WRITER_CALL_INTERVAL);
    }
    // A removal's reads for its other webhook (`AccessControlUpdate`) may still be under way when
    // the assignment is gone; they belong to this round's count.
    tokio::time::sleep(TRAILING_READS).await;
    let nexudus_after = world.nexudus.stats();
    Ok(ChangeRound {
        to_done: Latencies::new(latencies),
        to_access_closed: Latencies::new(access_closed),
        nexudus_requests: nexudus_after.requests - nexudus_before.requests,
        webhook_deliveries: nexudus_after.deliveries_attempted - nexudus_before.deliveries_attempted,
        kisi_calls: world.kisi.calls(),
    })
}

/// What one deployment measured.
struct Pass {
    deployment: Deployment,
    new_to_kisi: BookingRound,
    known_to_kisi: BookingRound,
    extensions: ChangeRound,
    cancellations: ChangeRound,
    hard_deletes: ChangeRound,
    calls_new: CallCounts,
    calls_known: CallCounts,
    /// Kisi's 429 answers over every round.
    kisi_throttled: u64,
    /// Nexudus's 409 answers (its "too many requests") over every round.
    nexudus_throttled: u64,
    writer_dead_letters: u64,
}

/// Starts doorsync as `deployment` on a world of its own, runs the rounds and stops it.
async fn pass(deployment: Deployment, bookings: usize) -> BenchResult<Pass> {
    let clock: SharedClock = Arc::new(SystemClock);
    let world = World::start(&clock, bookings).await?;
    let doorsync = Doorsync::start(&world, &clock, deployment).await?;
    eprintln!("latency: {}: doorsync started; reading {bookings} members from Nexudus", deployment.key());

    // The members are read once, as at a first start; none holds anything yet, so Kisi is not
    // called beyond the writer's "who am I".
    doorsync.ingest.poll_now().await?;
    let deadline = tokio::time::Instant::now() + SETTLE_LIMIT;
    while !doorsync.engine.caught_up().await {
        if tokio::time::Instant::now() > deadline {
            return Err("the engine did not catch up with the members' first reading".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    world.kisi.reset_calls();
    let nexudus_before = world.nexudus.stats();

    eprintln!("latency: {}: {bookings} bookings by members new to Kisi", deployment.key());
    let new_to_kisi = round(&world, &clock, world.room_a, SPACING).await?;
    let calls_new = world.kisi.calls();
    world.kisi.reset_calls();
    eprintln!("latency: {}: {bookings} bookings by members Kisi holds", deployment.key());
    let known_to_kisi = round(&world, &clock, world.room_b, SPACING).await?;
    let calls_known = world.kisi.calls();

    eprintln!("latency: {}: {bookings} room A bookings extended", deployment.key());
    let extensions =
        one_at_a_time(&world, &clock, &new_to_kisi.bookings, world.room_a.1, Change::Extension, SPACING).await?;
    eprintln!("latency: {}: {bookings} cancellations of room A bookings", deployment.key());
    let cancellations =
        one_at_a_time(&world, &clock, &new_to_kisi.bookings, world.room_a.1, Change::Cancellation, SPACING).await?;
    // A removal that took another member's or another room's access with it would make the
    // figures describe a different pipeline.
    let room_b_held = world.assignments_on(world.room_b.1).len();
    if room_b_held != bookings {
        return Err(
            format!("after the cancellations in room A, Kisi holds {room_b_held} of {bookings} in room B").into()
        );
    }
    eprintln!("latency: {}: {bookings} hard deletes of room B bookings", deployment.key());
    let hard_deletes =
        one_at_a_time(&world, &clock, &known_to_kisi.bookings, world.room_b.1, Change::HardDelete, SPACING).await?;
    let writer_dead_letters = doorsync.writer.status().dead_letters;
    let nexudus_throttled = world.nexudus.stats().throttled - nexudus_before.throttled;
    doorsync.shutdown().await;
    world.shutdown().await;
    let kisi_throttled =
        [&calls_new, &calls_known, &extensions.kisi_calls, &cancellations.kisi_calls, &hard_deletes.kisi_calls]
            .iter()
            .map(|calls| calls.status(429))
            .sum();
    Ok(Pass {
        deployment,
        new_to_kisi,
        known_to_kisi,
        extensions,
        cancellations,
        hard_deletes,
        calls_new,
        calls_known,
        kisi_throttled,
        nexudus_throttled,
        writer_dead_letters,
    })
}

async fn run(bookings: usize) -> BenchResult<()> {
    let one_process = pass(Deployment::OneProcess, bookings).await?;
    let split = pass(Deployment::Split, bookings).await?;
    for pass in [&one_process, &split] {
        report(pass, bookings);
    }
    report_difference(&one_process, &split, bookings);
    Ok(())
}

/// The rounds of a pass that measure one change's way through, each with its key, what it
/// measures and its latencies.
fn rounds(pass: &Pass) -> [(&'static str, &'static str, &Latencies, u64); 5] {
    [
        ("new_member", "to the assignment", &pass.new_to_kisi.to_assignment, pass.new_to_kisi.nexudus_requests),
        ("known_member", "to the assignment", &pass.known_to_kisi.to_assignment, pass.known_to_kisi.nexudus_requests),
        ("update", "to the new window", &pass.extensions.to_done, pass.extensions.nexudus_requests),
        ("cancellation", "to the assignment gone", &pass.cancellations.to_done, pass.cancellations.nexudus_requests),
        ("hard_delete", "to the assignment gone", &pass.hard_deletes.to_done, pass.hard_deletes.nexudus_requests),
    ]
}

fn report(pass: &Pass, bookings: usize) {
    let per_change = |total: u64| total as f64 / bookings as f64;
    let deployment = pass.deployment;
    let spacing = SPACING.as_millis();
    println!();
    println!(
        "Webhook to Kisi, {}: {bookings} changes per round, one per {spacing} ms, simulators on loopback at \
         Nexudus's and Kisi's limits, the poller on its default schedule",
        deployment.described()
    );
    println!("{:<60} {:>7} {:>7} {:>7} {:>7} {:>9}", "", "p50 ms", "p90 ms", "p99 ms", "max ms", "Nexudus/change");
    let row = |name: &str, latencies: &Latencies, nexudus: Option<u64>| {
        println!(
            "{name:<60} {:>7} {:>7} {:>7} {:>7} {:>9}",
            latencies.percentile(50),
            latencies.percentile(90),
            latencies.percentile(99),
            latencies.max(),
            nexudus.map_or(String::new(), |requests| format!("{:.2}", per_change(requests)))
        );
    };
    let names = [
        "members new to Kisi: booking to the assignment",
        "members Kisi holds: booking to the assignment",
        "bookings extended: change to the new window in Kisi",
        "cancellations: change to the assignment gone",
        "hard deletes: change to the assignment gone",
    ];
    for ((round, _, latencies, nexudus), name) in rounds(pass).into_iter().zip(names) {
        row(name, latencies, Some(nexudus));
        if round == "new_member"
            && let Some(user_created) = &pass.new_to_kisi.to_user
        {
            row("  of which to the Kisi user's creation (2nd call)", user_created, None);
        }
    }
    for (name, round) in [("cancellations", &pass.cancellations), ("hard deletes", &pass.hard_deletes)] {
        if !round.to_access_closed.is_empty() {
            row(
                &format!("  {name}: to the doors closed ({} granted before)", round.to_access_closed.len()),
                &round.to_access_closed,
                None,
            );
        }
    }
    println!(
        "Kisi calls per change: {:.2} (new), {:.2} (known), {:.2} (extension), {:.2} (cancellation), {:.2} \
         (hard delete); Kisi 429 answers: {}; Nexudus 409 answers: {}; writer dead letters: {}",
        per_change(pass.calls_new.total()),
        per_change(pass.calls_known.total()),
        per_change(pass.extensions.kisi_calls.total()),
        per_change(pass.cancellations.kisi_calls.total()),
        per_change(pass.hard_deletes.kisi_calls.total()),
        pass.kisi_throttled,
        pass.nexudus_throttled,
        pass.writer_dead_letters
    );
    for (name, round) in
        [("extension", &pass.extensions), ("cancellation", &pass.cancellations), ("hard delete", &pass.hard_deletes)]
    {
        let endpoints: Vec<String> =
            round.kisi_calls.by_endpoint.iter().map(|(endpoint, count)| format!("{endpoint} ×{count}")).collect();
        println!(
            "Per {name}: {:.2} webhook deliveries; Kisi calls: {}",
            per_change(round.webhook_deliveries),
            endpoints.join(", ")
        );
    }

    let prefix = deployment.figure_prefix();
    let described = deployment.described();
    let targets = |round: &str| -> [(&str, String); 4] {
        let (p50, p99) = match round {
            "new_member" => (format!("<={TARGET_NEW_MEMBER_P50_MS}"), format!("<={TARGET_NEW_MEMBER_P99_MS}")),
            "known_member" => (format!("<={TARGET_KNOWN_MEMBER_P50_MS}"), format!("<={TARGET_P99_MS}")),
            "update" => ("-".to_owned(), format!("<={TARGET_P99_MS}")),
            _ => ("-".to_owned(), format!("<={TARGET_REMOVAL_P99_MS}")),
        };
        [("p50", p50), ("p90", "-".to_owned()), ("p99", p99), ("max", "-".to_owned())]
    };
    let whats = [
        "bookings, each by a member new to Kisi (find, create user, create assignment)",
        "bookings, each by a member Kisi already holds (one call)",
        "bookings extended by 30 minutes, each assignment held in Kisi, one at a time",
        "bookings cancelled, each assignment held in Kisi and the member keeping another room, one at a time",
        "bookings hard-deleted, each assignment held in Kisi and the member's last (the user is suspended \
         first), one at a time",
    ];
    for ((round, measure, latencies, nexudus), what) in rounds(pass).into_iter().zip(whats) {
        let values = [latencies.percentile(50), latencies.percentile(90), latencies.percentile(99), latencies.max()];
        for ((statistic, target), value) in targets(round).into_iter().zip(values) {
            println!(
                "FIGURE {prefix}.{round}.{statistic} {value} ms {target} Webhook {measure} in Kisi, \
                 {statistic}, {described}: {bookings} {what}, one per {spacing} ms"
            );
        }
        println!(
            "FIGURE {prefix}.{round}.nexudus_requests {:.2} requests - Nexudus requests per change (the \
             simulator's count, the poller's included), {described}: {bookings} {what}",
            per_change(nexudus)
        );
    }
    for (round, changes, what) in
        [("cancellation", &pass.cancellations, "cancelled"), ("hard_delete", &pass.hard_deletes, "hard-deleted")]
    {
        let closed = &changes.to_access_closed;
        if closed.is_empty() {
            continue;
        }
        for (statistic, value) in [("p50", closed.percentile(50)), ("p99", closed.percentile(99))] {
            println!(
                "FIGURE {prefix}.{round}.access_closed.{statistic} {value} ms - Webhook to the room's doors \
                 closed to the member in Kisi (user suspended or assignment gone), {statistic}, {described}: {} \
                 bookings {what} in Nexudus",
                closed.len()
            );
        }
    }
    println!(
        "FIGURE {prefix}.kisi_429 {} answers =0 Kisi 429 answers over every round, {described}, the writer \
         at its default requests per second against the simulator's 5/s",
        pass.kisi_throttled
    );
    println!(
        "FIGURE {prefix}.nexudus_409 {} answers =0 Nexudus 409 (too many requests) answers over every \
         round, {described}, the client at Nexudus's published limits",
        pass.nexudus_throttled
    );
}

/// How much longer the split deployment took than one process for the same changes, at the
/// median and at p99.
fn report_difference(one_process: &Pass, split: &Pass, bookings: usize) {
    println!();
    println!("Split minus one process (ms):");
    for ((round, measure, one, _), (_, _, two, _)) in rounds(one_process).into_iter().zip(rounds(split)) {
        let p50 = two.percentile(50) - one.percentile(50);
        let p99 = two.percentile(99) - one.percentile(99);
        println!("  {round:<14} p50 {p50:>6}   p99 {p99:>6}");
        println!(
            "FIGURE latency.split_minus_one_process.{round}.p50 {p50} ms <={TARGET_SPLIT_DIFFERENCE_MS} Webhook \
             {measure} in Kisi, p50 of the split deployment minus p50 of one process, {bookings} changes each"
        );
        println!(
            "FIGURE latency.split_minus_one_process.{round}.p99 {p99} ms - Webhook {measure} in Kisi, p99 of the \
             split deployment minus p99 of one process, {bookings} changes each"
        );
    }
}
