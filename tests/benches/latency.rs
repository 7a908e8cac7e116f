//! Webhook to Kisi: how long a booking made in Nexudus takes to become a role assignment in Kisi,
//! and a cancelled or hard-deleted one to stop being one, through the whole pipeline as `doorsync run` wires it (ingest serving signed webhooks, engine
//! and writer in one process on the embedded log), against the Nexudus and Kisi simulators on
//! loopback, on the system clock.
//!
//! Measured per booking, from just before the booking is created in the Nexudus simulator (which
//! fires the `BookingCreate` webhook) to the `created_at` the Kisi simulator stamps on the role
//! assignment, both from the same clock in milliseconds, so no polling blurs the figure:
//!
//! * round 1, members new to Kisi: each booking is a different member's first access, so the
//!   writer finds the user by email, creates it and creates the assignment: three calls, paced by
//!   its limiter at 4 requests/s, so at least 500 ms of each latency is the pacing;
//! * round 2, members Kisi already holds: a second room for the same members, one call each;
//! * round 3, cancellations: every room-A booking of round 1 is cancelled in Nexudus (which fires
//!   `BookingDelete` and `AccessControlUpdate`; a read by id of the booking now answers 500, so the
//!   ingestor confirms it gone with a list query and finds it among the cancelled bookings); the
//!   member keeps room B, so the writer makes one call, the delete;
//! * round 4, hard deletes: every room-B booking of round 2 is deleted for good (the same
//!   webhooks, and no cancelled booking to find). It is the member's last access, so the writer
//!   suspends the Kisi user before deleting the assignment: two calls, the second held by the
//!   limiter. The room's doors close to the member at the first, which is measured too.
//!
//! Every booking's window starts 16 minutes ahead, within the 15-minute lead plus a minute, so Kisi
//! holds each assignment when its booking goes and the removal has to delete it. The Kisi simulator
//! stamps no time on a deletion (its recorded exchanges carry none), so rounds 3 and 4 look for the
//! assignment every 2 ms from just before the change: a removal's figure is late by at most the
//! poll interval plus the poll's own scheduling, a few milliseconds. One removal is in flight at a
//! time: the next change waits for the previous assignment to be gone.
//!
//! Kisi's limits are real (the simulator answers 429 above 5 requests/s; the writer runs at its
//! default 4/s) and the bookings are spaced (1 s, then 500 ms, and 500 ms for removals) so that each booking's calls are
//! done before the next booking's begin: what is measured is one change's way through, not a
//! queue. Nexudus's request limits are lifted in both the simulator and the client, as in the
//! end-to-end tests: a booking costs one Nexudus read, a removal a few, far below them. The
//! Nexudus requests and webhook deliveries of the removal rounds are counted from the simulator.
//!
//! Percentiles are nearest-rank. `BENCH_BOOKINGS` (default 200) sets the bookings per round.
//! Besides the text, each figure is printed as a `FIGURE <key> <value> <unit> <target>
//! <description>` line for `scripts/bench-report.py`.
#![allow(clippy::expect_used, reason = "a benchmark should fail loudly at the first surprise")]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use doorsync_access::Mapping;
use doorsync_clock::{SharedClock, SystemClock};
use doorsync_engine::{EngineHandle, EngineOptions};
use doorsync_ingest::{IngestHandle, IngestOptions, WEBHOOK_ACTIONS, webhook_path};
use doorsync_kisi::{ApiKey, KisiClient, KisiOptions};
use doorsync_kisi_sim::{CallCounts, GroupAccess, KisiSimulator, SimHandle};
use doorsync_layout::Layout;
use doorsync_log::EventLog;
use doorsync_log_embedded::{EmbeddedLog, EmbeddedOptions};
use doorsync_nexudus::{Credentials, Limits, NexudusClient, NexudusDateTime, NexudusOptions, Secret};
use doorsync_nexudus_sim::{NexudusSimulator, SimEntity};
use doorsync_proto::{KisiAssignmentId, KisiGroupId, KisiUserId, ResourceId, Subjects, Timestamp};
use doorsync_writer::{WriterHandle, WriterOptions};
use serde_json::{Value, json};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

const KISI_API_KEY: &str = "doorsync-bench-kisi-key";
const WEBHOOK_SECRET: &str = "doorsync-bench-webhook-secret";
/// The product's promise for a change reaching Kisi (issue 6's end-to-end target).
const TARGET_P99_MS: i64 = 2_000;
/// The deleted-records issue's promise: a cancellation or a hard delete is out of Kisi within a
/// second of its webhook, like a creation in the design's "seconds, not minutes".
const TARGET_REMOVAL_P99_MS: i64 = 1_000;
/// Far above the writer's 4 requests/s budget per booking: three calls in round 1, one in round 2.
const SPACING_NEW_TO_KISI: Duration = Duration::from_millis(1_000);
const SPACING_KNOWN_TO_KISI: Duration = Duration::from_millis(500);
/// A removal costs one Kisi call, so this leaves the writer's limiter idle when the next begins.
const SPACING_REMOVALS: Duration = Duration::from_millis(500);
/// The writer's interval between Kisi calls at its default 4 requests/s: a removal that took
/// longer than its spacing still leaves this long before the next change, so that the next
/// change's call is not held by the limiter.
const WRITER_CALL_INTERVAL: Duration = Duration::from_millis(250);
/// How often a removal round looks at Kisi for the assignment: the resolution of its figures.
const REMOVAL_POLL: Duration = Duration::from_millis(2);
/// Nexudus's `CancellationReason` for a booking the customer cancelled.
const CANCELLED_BY_CUSTOMER: u64 = 1;
/// How long the last booking of a round may take before the benchmark gives up.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);
const MINUTE_MS: i64 = 60_000;

fn main() -> BenchResult<()> {
    let bookings = std::env::var("BENCH_BOOKINGS").ok().and_then(|value| value.parse().ok()).unwrap_or(200);
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

        let mut options = doorsync_nexudus_sim::SimOptions::new(Arc::clone(clock));
        options.limits = None;
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

    fn mapping(&self) -> Mapping {
        let mut mapping = Mapping::default();
        for (resource, group) in [self.room_a, self.room_b] {
            mapping.resources.insert(ResourceId(resource), group);
        }
        mapping
    }

    /// A confirmed booking of `resource` by `member`, 16 minutes ahead for an hour: with the
    /// default 15-minute lead, a grant written ahead of its window, as in the end-to-end test.
    fn book(&self, member: u64, resource: u64, now: Timestamp) -> BenchResult<u64> {
        let from = Timestamp::from_unix_millis(now.as_unix_millis() + 16 * MINUTE_MS);
        let to = Timestamp::from_unix_millis(from.as_unix_millis() + 60 * MINUTE_MS);
        let fields = json!({"ResourceId": resource, "CoworkerId": member, "Tentative": false,
            "FromTime": nexudus_time(from), "ToTime": nexudus_time(to)});
        Ok(self.nexudus.create(SimEntity::Booking, fields)?)
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
                let held =
                    HeldAssignment { id: assignment.id, user: assignment.user, created_at: assignment.created_at };
                Some((emails.get(&assignment.user)?.to_lowercase(), held))
            })
            .collect()
    }

    fn holds_assignment(&self, id: KisiAssignmentId) -> bool {
        self.kisi.assignments().iter().any(|assignment| assignment.id == id)
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
}

fn nexudus_time(at: Timestamp) -> Value {
    NexudusDateTime::from_utc(at).map_or(Value::Null, |written| Value::String(written.to_string()))
}

/// doorsync's three roles in this process, wired as `doorsync run` wires them, with each
/// component's defaults.
struct Doorsync {
    log: EmbeddedLog,
    ingest: IngestHandle,
    engine: EngineHandle,
    writer: WriterHandle,
    _dir: tempfile::TempDir,
}

impl Doorsync {
    async fn start(world: &World, clock: &SharedClock) -> BenchResult<Self> {
        let dir = tempfile::Builder::new().prefix("doorsync-bench-").tempdir()?;
        let layout = Layout::new(Subjects::new("bench", 16)?);
        let log = EmbeddedLog::open(EmbeddedOptions::new(dir.path().join("doorsync.redb"), layout.streams()))?;
        let shared_log: Arc<dyn EventLog> = Arc::new(log.clone());
        let mapping = world.mapping();

        let mut nexudus_options = NexudusOptions::new(world.nexudus.base_url(), world.nexudus_credentials.clone());
        nexudus_options.limits = Limits { min_interval: Duration::ZERO, per_minute: 100_000, per_hour: 1_000_000 };
        let nexudus = NexudusClient::new(nexudus_options, Arc::clone(clock))?;
        let ingest_options = IngestOptions::new(Secret::new(WEBHOOK_SECRET));
        let ingest =
            doorsync_ingest::start(ingest_options, nexudus, Arc::clone(&shared_log), layout.clone(), Arc::clone(clock))
                .await?;
        let webhooks = ingest.serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        for &action in WEBHOOK_ACTIONS {
            let url = url::Url::parse(&format!("http://{webhooks}{}", webhook_path(action)))?;
            world.nexudus.register_webhook(action, &url, Secret::new(WEBHOOK_SECRET))?;
        }

        let mut engine_options = EngineOptions::new("engine-bench", layout.clone());
        engine_options.mapping = mapping;
        let engine = doorsync_engine::start(engine_options, Arc::clone(&shared_log), Arc::clone(clock)).await?;

        let kisi = KisiClient::new(KisiOptions::new(
            world.kisi_simulator.base_url(),
            ApiKey::new(KISI_API_KEY),
            "doorsync-bench",
        ))?;
        let mut writer_options = WriterOptions::new("writer-bench", "main");
        writer_options.reconcile_groups = vec![world.room_a.1, world.room_b.1];
        // A scheduled reconciliation holds commands while it lists Kisi; it would be measured
        // instead of the pipeline.
        writer_options.reconcile_on_schedule = false;
        let writer =
            doorsync_writer::start(writer_options, kisi, Arc::clone(&shared_log), layout, Arc::clone(clock)).await?;
        Ok(Self { log, ingest, engine, writer, _dir: dir })
    }

    /// Stops the roles, webhooks first, then closes the log once nothing else holds it (closing
    /// waits for every handle on the file).
    async fn shutdown(self) {
        let Self { log, ingest, engine, writer, _dir } = self;
        ingest.shutdown().await;
        engine.shutdown().await;
        writer.shutdown().await;
        drop((ingest, writer));
        if tokio::time::timeout(Duration::from_secs(30), log.close()).await.is_err() {
            eprintln!("latency: the embedded log did not close within 30 s; leaving it");
        }
    }
}

/// Latencies in milliseconds, sorted.
struct Latencies(Vec<i64>);

impl Latencies {
    fn new(mut values: Vec<i64>) -> Self {
        values.sort_unstable();
        Self(values)
    }

    /// Nearest rank: the smallest value at least `percent`% of the values are at or below.
    fn percentile(&self, percent: usize) -> i64 {
        let rank = (percent * self.0.len()).div_ceil(100).max(1);
        self.0[rank - 1]
    }

    fn max(&self) -> i64 {
        self.0.last().copied().unwrap_or(0)
    }
}

/// What a round of bookings measured, and the bookings it made.
struct BookingRound {
    to_assignment: Latencies,
    /// To the Kisi user's creation, when every user was created in this round.
    to_user: Option<Latencies>,
    /// The Nexudus booking id of each member's booking, by email.
    bookings: BTreeMap<String, u64>,
}

/// Books one room for every member, `spacing` apart, and waits until Kisi holds every
/// assignment.
async fn round(
    world: &World,
    clock: &SharedClock,
    (resource, group): (u64, KisiGroupId),
    spacing: Duration,
) -> BenchResult<BookingRound> {
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
    Ok(BookingRound { to_assignment: Latencies::new(to_assignment), to_user, bookings })
}

/// How a booking leaves Nexudus.
#[derive(Debug, Clone, Copy)]
enum Removal {
    /// A cancellation: the booking leaves the bookings for the cancelled bookings.
    Cancellation,
    /// An admin's hard delete: the booking is gone, with nothing left to find.
    HardDelete,
}

impl Removal {
    fn apply(self, nexudus: &NexudusSimulator, booking: u64) -> BenchResult<()> {
        match self {
            Self::Cancellation => {
                nexudus.cancel_booking(booking, CANCELLED_BY_CUSTOMER)?;
            }
            Self::HardDelete => nexudus.delete(SimEntity::Booking, booking)?,
        }
        Ok(())
    }
}

/// What a round of removals measured, and what it cost the simulators.
struct RemovalRound {
    to_removal: Latencies,
    /// To the first look at which the member could no longer open the room's doors: when the
    /// writer suspends the Kisi user before deleting the assignment (the member's last access
    /// went), earlier than `to_removal`. Only changes whose access was granted just before count.
    to_access_closed: Latencies,
    nexudus_requests: u64,
    webhook_deliveries: u64,
    kisi_calls: CallCounts,
}

/// Removes each of `bookings` (by member email) from Nexudus one at a time, at most one per
/// `spacing`, and measures each from just before the change to the first look at Kisi that finds
/// the booking's assignment on `group` gone, and to the first that finds the member's access to
/// the group closed.
async fn removal_round(
    world: &World,
    clock: &SharedClock,
    bookings: &BTreeMap<String, u64>,
    group: KisiGroupId,
    removal: Removal,
    spacing: Duration,
) -> BenchResult<RemovalRound> {
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
            *held.get(email).ok_or_else(|| format!("Kisi holds no assignment for {email} before its {removal:?}"))?;
        let can_open = |at: Timestamp| world.kisi.group_access(assignment.user, group, at) == GroupAccess::Granted;
        let changed_at = clock.now();
        // An assignment whose window has not begun yet closes nothing when it goes.
        let open_before = can_open(changed_at);
        let mut closed_at = None;
        removal.apply(&world.nexudus, booking)?;
        let deadline = slot + SETTLE_LIMIT;
        let gone_at = loop {
            if open_before && closed_at.is_none() && !can_open(clock.now()) {
                closed_at = Some(clock.now());
            }
            if !world.holds_assignment(assignment.id) {
                break clock.now();
            }
            if tokio::time::Instant::now() > deadline {
                return Err(
                    format!("after {SETTLE_LIMIT:?}, Kisi still holds {email}'s assignment ({removal:?})").into()
                );
            }
            tokio::time::sleep(REMOVAL_POLL).await;
        };
        latencies.push(gone_at.as_unix_millis() - changed_at.as_unix_millis());
        if let Some(closed_at) = closed_at {
            access_closed.push(closed_at.as_unix_millis() - changed_at.as_unix_millis());
        }
        next = (slot + spacing).max(tokio::time::Instant::now() + WRITER_CALL_INTERVAL);
    }
    // The removals' Nexudus reads for the other webhook (`AccessControlUpdate`) may still be
    // under way when the assignment is gone; they belong to this round's count.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let nexudus_after = world.nexudus.stats();
    Ok(RemovalRound {
        to_removal: Latencies::new(latencies),
        to_access_closed: Latencies::new(access_closed),
        nexudus_requests: nexudus_after.requests - nexudus_before.requests,
        webhook_deliveries: nexudus_after.deliveries_attempted - nexudus_before.deliveries_attempted,
        kisi_calls: world.kisi.calls(),
    })
}

async fn run(bookings: usize) -> BenchResult<()> {
    let clock: SharedClock = Arc::new(SystemClock);
    let world = World::start(&clock, bookings).await?;
    let doorsync = Doorsync::start(&world, &clock).await?;
    eprintln!("latency: doorsync started; reading {bookings} members from Nexudus");

    // Read the members once, as at a first start; none holds anything yet, so Kisi is not called
    // beyond the writer's "who am I".
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

    eprintln!("latency: round 1, {bookings} bookings by members new to Kisi");
    let new_to_kisi = round(&world, &clock, world.room_a, SPACING_NEW_TO_KISI).await?;
    let calls_new = world.kisi.calls();
    world.kisi.reset_calls();
    // Round 1's last call has only just been made: without a pause, the first booking of round 2
    // would wait out the rest of the limiter's interval and measure that.
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!("latency: round 2, {bookings} bookings by members Kisi holds");
    let known_to_kisi = round(&world, &clock, world.room_b, SPACING_KNOWN_TO_KISI).await?;
    let calls_known = world.kisi.calls();
    tokio::time::sleep(Duration::from_secs(1)).await;

    eprintln!("latency: round 3, {bookings} cancellations of room A bookings");
    let cancellations =
        removal_round(&world, &clock, &new_to_kisi.bookings, world.room_a.1, Removal::Cancellation, SPACING_REMOVALS)
            .await?;
    // A removal that took another member's or another room's access with it would make the
    // figures describe a different pipeline.
    let room_b_held = world.assignments_on(world.room_b.1).len();
    if room_b_held != bookings {
        return Err(
            format!("after the cancellations in room A, Kisi holds {room_b_held} of {bookings} in room B").into()
        );
    }
    eprintln!("latency: round 4, {bookings} hard deletes of room B bookings");
    let hard_deletes =
        removal_round(&world, &clock, &known_to_kisi.bookings, world.room_b.1, Removal::HardDelete, SPACING_REMOVALS)
            .await?;
    let writer = doorsync.writer.status();
    doorsync.shutdown().await;
    world.shutdown().await;

    let per_change = |total: u64| total as f64 / bookings as f64;
    println!();
    println!(
        "Webhook to Kisi: {bookings} changes per round, one process on the embedded log, simulators on loopback, \
         writer at 4 requests/s against Kisi's 5/s"
    );
    println!("{:<76} {:>7} {:>7} {:>7} {:>7}", "", "p50 ms", "p90 ms", "p99 ms", "max ms");
    let row = |name: &str, latencies: &Latencies| {
        println!(
            "{name:<76} {:>7} {:>7} {:>7} {:>7}",
            latencies.percentile(50),
            latencies.percentile(90),
            latencies.percentile(99),
            latencies.max()
        );
    };
    row(
        &format!("members new to Kisi, 1 per {} ms: to the assignment", SPACING_NEW_TO_KISI.as_millis()),
        &new_to_kisi.to_assignment,
    );
    if let Some(user_created) = &new_to_kisi.to_user {
        row("  of which to the Kisi user's creation (2nd call)", user_created);
    }
    row(
        &format!("members Kisi holds, 1 per {} ms: to the assignment", SPACING_KNOWN_TO_KISI.as_millis()),
        &known_to_kisi.to_assignment,
    );
    let removals_every = SPACING_REMOVALS.as_millis();
    for (name, round) in [("cancellations", &cancellations), ("hard deletes", &hard_deletes)] {
        row(
            &format!("{name}, 1 per {removals_every} ms: to the assignment gone (looked for every {REMOVAL_POLL:?})"),
            &round.to_removal,
        );
        if !round.to_access_closed.0.is_empty() {
            row(
                &format!(
                    "  to the room's doors closed to the member ({} granted before)",
                    round.to_access_closed.0.len()
                ),
                &round.to_access_closed,
            );
        }
    }
    println!(
        "Kisi calls per change: {:.2} (new), {:.2} (known), {:.2} (cancellation), {:.2} (hard delete); \
         429 answers: {}; writer dead letters: {}",
        per_change(calls_new.total()),
        per_change(calls_known.total()),
        per_change(cancellations.kisi_calls.total()),
        per_change(hard_deletes.kisi_calls.total()),
        [&calls_new, &calls_known, &cancellations.kisi_calls, &hard_deletes.kisi_calls]
            .iter()
            .map(|calls| calls.status(429))
            .sum::<u64>(),
        writer.dead_letters
    );
    for (name, round) in [("cancellation", &cancellations), ("hard delete", &hard_deletes)] {
        let endpoints: Vec<String> =
            round.kisi_calls.by_endpoint.iter().map(|(endpoint, count)| format!("{endpoint} ×{count}")).collect();
        println!(
            "Per {name}: {:.2} Nexudus requests, {:.2} webhook deliveries; Kisi calls: {}",
            per_change(round.nexudus_requests),
            per_change(round.webhook_deliveries),
            endpoints.join(", ")
        );
    }

    let within_target = format!("<={TARGET_P99_MS}");
    let removal_within_target = format!("<={TARGET_REMOVAL_P99_MS}");
    let new = format!(
        "{bookings} bookings, each by a member new to Kisi (find, create user, create assignment at 4/s), \
         one per {} ms",
        SPACING_NEW_TO_KISI.as_millis()
    );
    let known = format!(
        "{bookings} bookings, each by a member Kisi already holds (one call), one per {} ms",
        SPACING_KNOWN_TO_KISI.as_millis()
    );
    let cancelled = format!(
        "{bookings} bookings cancelled in Nexudus ({:.1} Nexudus requests, {:.1} Kisi calls each), each assignment \
         held in Kisi and the member keeping another room, one at a time, at most one per {removals_every} ms",
        per_change(cancellations.nexudus_requests),
        per_change(cancellations.kisi_calls.total())
    );
    let deleted = format!(
        "{bookings} bookings hard-deleted in Nexudus ({:.1} Nexudus requests, {:.1} Kisi calls each), each \
         assignment held in Kisi and the member's last (the user is suspended first), one at a time, at most one \
         per {removals_every} ms",
        per_change(hard_deletes.nexudus_requests),
        per_change(hard_deletes.kisi_calls.total())
    );
    let rounds = [
        ("new_member", "Webhook to Kisi assignment", &new_to_kisi.to_assignment, new, &within_target),
        ("known_member", "Webhook to Kisi assignment", &known_to_kisi.to_assignment, known, &within_target),
        (
            "cancellation",
            "Webhook to Kisi assignment removed",
            &cancellations.to_removal,
            cancelled,
            &removal_within_target,
        ),
        (
            "hard_delete",
            "Webhook to Kisi assignment removed",
            &hard_deletes.to_removal,
            deleted,
            &removal_within_target,
        ),
    ];
    for (key, measure, latencies, what, target) in rounds {
        let statistics = [
            ("p50", latencies.percentile(50), "-"),
            ("p90", latencies.percentile(90), "-"),
            ("p99", latencies.percentile(99), target.as_str()),
            ("max", latencies.max(), "-"),
        ];
        for (statistic, value, target) in statistics {
            println!("FIGURE latency.{key}.{statistic} {value} ms {target} {measure}, {statistic}: {what}");
        }
    }
    for (key, round, what) in
        [("cancellation", &cancellations, "cancelled"), ("hard_delete", &hard_deletes, "hard-deleted")]
    {
        let closed = &round.to_access_closed;
        if closed.0.is_empty() {
            continue;
        }
        for (statistic, value) in [("p50", closed.percentile(50)), ("p99", closed.percentile(99))] {
            println!(
                "FIGURE latency.{key}.access_closed.{statistic} {value} ms - Webhook to the room's doors closed to \
                 the member in Kisi (user suspended or assignment gone), {statistic}: {} bookings {what} in Nexudus",
                closed.0.len()
            );
        }
    }
    Ok(())
}
