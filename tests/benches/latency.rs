//! Webhook to Kisi: how long a booking made in Nexudus takes to become a role assignment in Kisi,
//! through the whole pipeline as `doorsync run` wires it (ingest serving signed webhooks, engine
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
//! * round 2, members Kisi already holds: a second room for the same members, one call each.
//!
//! Kisi's limits are real (the simulator answers 429 above 5 requests/s; the writer runs at its
//! default 4/s) and the bookings are spaced (1 s, then 500 ms) so that each booking's calls are
//! done before the next booking's begin: what is measured is one change's way through, not a
//! queue. Nexudus's request limits are lifted in both the simulator and the client, as in the
//! end-to-end tests: a booking costs one Nexudus read, far below them.
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
use doorsync_kisi_sim::{KisiSimulator, SimHandle};
use doorsync_layout::Layout;
use doorsync_log::EventLog;
use doorsync_log_embedded::{EmbeddedLog, EmbeddedOptions};
use doorsync_nexudus::{Credentials, Limits, NexudusClient, NexudusDateTime, NexudusOptions, Secret};
use doorsync_nexudus_sim::{NexudusSimulator, SimEntity};
use doorsync_proto::{KisiGroupId, ResourceId, Subjects, Timestamp};
use doorsync_writer::{WriterHandle, WriterOptions};
use serde_json::{Value, json};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

const KISI_API_KEY: &str = "doorsync-bench-kisi-key";
const WEBHOOK_SECRET: &str = "doorsync-bench-webhook-secret";
/// The product's promise for a change reaching Kisi (issue 6's end-to-end target).
const TARGET_P99_MS: i64 = 2_000;
/// Far above the writer's 4 requests/s budget per booking: three calls in round 1, one in round 2.
const SPACING_NEW_TO_KISI: Duration = Duration::from_millis(1_000);
const SPACING_KNOWN_TO_KISI: Duration = Duration::from_millis(500);
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
        let emails: BTreeMap<_, _> = self.kisi.users().into_iter().map(|user| (user.id, user.email)).collect();
        self.kisi
            .assignments()
            .into_iter()
            .filter(|assignment| assignment.group == group)
            .filter_map(|assignment| Some((emails.get(&assignment.user)?.to_lowercase(), assignment.created_at)))
            .collect()
    }

    async fn shutdown(self) {
        self.nexudus.shutdown().await;
        self.kisi_simulator.shutdown().await;
    }
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
        writer_options.reconcile_every = None;
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

/// Books one room for every member, `spacing` apart, and waits until Kisi holds every
/// assignment; returns each booking's latency to its assignment, and to the Kisi user's
/// creation when that happened in this round.
async fn round(
    world: &World,
    clock: &SharedClock,
    (resource, group): (u64, KisiGroupId),
    spacing: Duration,
) -> BenchResult<(Latencies, Option<Latencies>)> {
    let mut booked_at = BTreeMap::new();
    let mut next = tokio::time::Instant::now();
    for (member, email) in &world.members {
        tokio::time::sleep_until(next).await;
        next += spacing;
        let now = clock.now();
        world.book(*member, resource, now)?;
        booked_at.insert(email.to_lowercase(), now);
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
    Ok((Latencies::new(to_assignment), to_user))
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
    let (new_to_kisi, user_created) = round(&world, &clock, world.room_a, SPACING_NEW_TO_KISI).await?;
    let calls_new = world.kisi.calls();
    world.kisi.reset_calls();
    // Round 1's last call has only just been made: without a pause, the first booking of round 2
    // would wait out the rest of the limiter's interval and measure that.
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!("latency: round 2, {bookings} bookings by members Kisi holds");
    let (known_to_kisi, _) = round(&world, &clock, world.room_b, SPACING_KNOWN_TO_KISI).await?;
    let calls_known = world.kisi.calls();
    let writer = doorsync.writer.status();
    doorsync.shutdown().await;
    world.shutdown().await;

    let per_booking = |total: u64| total as f64 / bookings as f64;
    println!();
    println!(
        "Webhook to Kisi: {bookings} bookings per round, one process on the embedded log, simulators on loopback, \
         writer at 4 requests/s against Kisi's 5/s"
    );
    println!("{:<58} {:>7} {:>7} {:>7}", "", "p50 ms", "p99 ms", "max ms");
    let row = |name: &str, latencies: &Latencies| {
        println!("{name:<58} {:>7} {:>7} {:>7}", latencies.percentile(50), latencies.percentile(99), latencies.max());
    };
    row(&format!("members new to Kisi, 1 per {} ms: to the assignment", SPACING_NEW_TO_KISI.as_millis()), &new_to_kisi);
    if let Some(user_created) = &user_created {
        row("  of which to the Kisi user's creation (2nd call)", user_created);
    }
    row(
        &format!("members Kisi holds, 1 per {} ms: to the assignment", SPACING_KNOWN_TO_KISI.as_millis()),
        &known_to_kisi,
    );
    println!(
        "Kisi calls per booking: {:.2} (new), {:.2} (known); 429 answers: {}; writer dead letters: {}",
        per_booking(calls_new.total()),
        per_booking(calls_known.total()),
        calls_new.status(429) + calls_known.status(429),
        writer.dead_letters
    );

    let within_target = format!("<={TARGET_P99_MS}");
    let new = format!(
        "{bookings} bookings, each by a member new to Kisi (find, create user, create assignment at 4/s), \
         one per {} ms",
        SPACING_NEW_TO_KISI.as_millis()
    );
    let known = format!(
        "{bookings} bookings, each by a member Kisi already holds (one call), one per {} ms",
        SPACING_KNOWN_TO_KISI.as_millis()
    );
    for (key, latencies, what) in [("new_member", &new_to_kisi, new), ("known_member", &known_to_kisi, known)] {
        let statistics = [
            ("p50", latencies.percentile(50), "-"),
            ("p99", latencies.percentile(99), &within_target),
            ("max", latencies.max(), "-"),
        ];
        for (statistic, value, target) in statistics {
            println!(
                "FIGURE latency.{key}.{statistic} {value} ms {target} Webhook to Kisi assignment, {statistic}: {what}"
            );
        }
    }
    Ok(())
}
