//! A first sync and a reconcile at scale, and live bookings during both, through the whole
//! pipeline as `doorsync run` wires it (the roles started through `doorsync_node::roles` on one
//! embedded log), against the Nexudus and Kisi simulators on loopback, on the system clock.
//!
//! A space's members and their entitlements are in Nexudus before doorsync starts, and reach it by
//! its first poll. Entitlements are bookings of two rooms and unused passes of a floor's pass
//! product, each mapped to its own Kisi group, each a different (member, group): every member holds
//! one, and the members first in line a second of another kind. The first members are users in
//! Kisi already, holding nothing in the managed groups. The fewest Kisi calls that make Kisi match
//! are the user list's pages (100 users a page, the integration's own user counted), one page of
//! assignments for each managed group (they are empty), a user created for each member Kisi does not
//! hold, and an assignment for each entitlement.
//!
//! Three parts, each on a fresh site:
//!
//! 1. **Counted first sync**, 5,000 members, 4,000 in Kisi, 6,000 entitlements. At Kisi's rate it
//!    would take about half an hour, so the Kisi simulator's limit and the writer's rate are both
//!    raised (to `RAISED_RATE` a second) and the calls are counted: calls against the fewest, 429s
//!    (from the simulator), and the wall time at 4/s **computed** as calls / 4 (not measured).
//!    After it, the writer is restarted at its default rate, `BENCH_RECONCILE_REMOVED` (200)
//!    assignments are deleted in Kisi by hand, and reconciliations run back to back for
//!    `BENCH_LIVE_SECONDS` (45) while a live booking arrives every 2 s: the **live bookings during
//!    a reconcile**. The simulator keeps its raised limit in this part (it cannot be changed while
//!    running), so its 429s say nothing there; the writer runs at its real default.
//! 2. **Small first sync at Kisi's real rate**, 120 members, 90 in Kisi, 144 entitlements (the same
//!    6:5 ratio): calls against the fewest, 429s and the measured wall time, with the writer at its
//!    default 4/s and the simulator at Kisi's 5/s.
//! 3. **Live bookings during a first sync** at Kisi's real rate: the 5,000-member site again, the
//!    writer at its default 4/s, the simulator at 5/s; once the first sync is writing, a live
//!    booking every 2 s for `BENCH_LIVE_SECONDS`. The first sync does not finish.
//!
//! A live booking is a booking of a fourth room (its own managed group, held by no entitlement)
//! by a member Kisi holds, made in the Nexudus simulator, which delivers its webhooks. Its latency
//! runs from just before the booking is made to the `created_at` the Kisi simulator stamps on the
//! assignment, both from the same clock. Nexudus's request limits are lifted (simulator and
//! client) throughout: the first poll reads 11,000 records, and what is measured is the Kisi side.
//!
//! Sizes: `BENCH_FIRST_SYNC_MEMBERS` (5,000), `BENCH_FIRST_SYNC_IN_KISI` (4,000),
//! `BENCH_FIRST_SYNC_ENTITLEMENTS` (6,000), `BENCH_SMALL_MEMBERS` (120), `BENCH_SMALL_IN_KISI`
//! (90), `BENCH_LIVE_SECONDS` (45), `BENCH_RECONCILE_REMOVED` (200); `BENCH_FIRST_SYNC_PARTS`
//! (`counted,small,live`) chooses the parts. Percentiles are nearest-rank. Each figure is printed
//! as a `FIGURE <key> <value> <unit> <target> <description>` line for `scripts/bench-report.py`.
#![allow(clippy::expect_used, reason = "a benchmark should fail loudly at the first surprise")]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use doorsync_access::Mapping;
use doorsync_clock::{SharedClock, SystemClock};
use doorsync_engine::{EngineHandle, EngineOptions};
use doorsync_ingest::{IngestHandle, IngestOptions, WEBHOOK_ACTIONS, webhook_path};
use doorsync_integration_tests::Latencies;
use doorsync_kisi::{ApiKey, KisiOptions};
use doorsync_kisi_sim::{CallCounts, KisiSimulator, SimHandle};
use doorsync_layout::Layout;
use doorsync_log::EventLog;
use doorsync_log_embedded::{EmbeddedLog, EmbeddedOptions};
use doorsync_nexudus::{Limits, NexudusDateTime, NexudusOptions, Secret};
use doorsync_nexudus_sim::{NexudusSimulator, SimEntity};
use doorsync_node::{Foundation, roles};
use doorsync_proto::{KisiGroupId, PassProductId, ResourceId, Subjects, Timestamp};
use doorsync_writer::{WriterError, WriterHandle, WriterOptions};
use serde_json::{Value, json};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const KISI_API_KEY: &str = "doorsync-bench-kisi-key";
const WEBHOOK_SECRET: &str = "doorsync-bench-webhook-secret";
/// Requests a second for the Kisi simulator and the writer in the counted first sync.
const RAISED_RATE: u32 = 1_000;
/// The writer's default rate, for the wall time computed at Kisi's pace.
const DEFAULT_RATE: f64 = 4.0;
const USERS_PER_PAGE: u64 = 100;
const ASSIGNMENTS_PER_PAGE: u64 = 250;
/// Issue 18's targets: calls against the fewest, and a live booking during bulk work.
const TARGET_RATIO_LARGE: f64 = 1.05;
const TARGET_RATIO_SMALL: f64 = 1.1;
const TARGET_LIVE_P99_MS: i64 = 2_000;
const LIVE_SPACING: Duration = Duration::from_secs(2);
/// How long a first sync or a live booking may take before the benchmark gives up.
const FIRST_SYNC_LIMIT: Duration = Duration::from_secs(900);
const LIVE_LIMIT: Duration = Duration::from_secs(120);
const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

fn main() -> BenchResult<()> {
    let large = Space {
        members: env_or("BENCH_FIRST_SYNC_MEMBERS", 5_000),
        in_kisi: env_or("BENCH_FIRST_SYNC_IN_KISI", 4_000),
        entitlements: env_or("BENCH_FIRST_SYNC_ENTITLEMENTS", 6_000),
    };
    let small_members = env_or("BENCH_SMALL_MEMBERS", 120);
    let small = Space {
        members: small_members,
        in_kisi: env_or("BENCH_SMALL_IN_KISI", 90),
        entitlements: small_members * 6 / 5,
    };
    let live_for = Duration::from_secs(env_or("BENCH_LIVE_SECONDS", 45));
    let removed = env_or("BENCH_RECONCILE_REMOVED", 200);
    let parts = std::env::var("BENCH_FIRST_SYNC_PARTS").unwrap_or_else(|_| "counted,small,live".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        for part in parts.split(',').map(str::trim) {
            match part {
                "counted" => counted_first_sync_then_reconcile(large.checked()?, live_for, removed).await?,
                "small" => small_first_sync(small.checked()?).await?,
                "live" => live_during_first_sync(large.checked()?, live_for).await?,
                other => return Err(format!("BENCH_FIRST_SYNC_PARTS: unknown part {other:?}").into()),
            }
        }
        Ok(())
    })
}

/// The size of a space.
#[derive(Debug, Clone, Copy)]
struct Space {
    members: u64,
    /// The first this many members are users in Kisi before doorsync starts.
    in_kisi: u64,
    entitlements: u64,
}

impl Space {
    fn checked(self) -> BenchResult<Self> {
        if self.in_kisi > self.members || self.entitlements < self.members || self.entitlements > 3 * self.members {
            return Err(format!(
                "{self:?}: members in Kisi must be at most the members, and entitlements between one and three per \
                 member"
            )
            .into());
        }
        Ok(self)
    }

    fn label(self) -> String {
        format!("{} members, {} in Kisi, {} entitlements", self.members, self.in_kisi, self.entitlements)
    }
}

/// What an entitlement is, and the group it maps to.
#[derive(Debug, Clone, Copy)]
enum Kind {
    RoomA,
    RoomB,
    FloorPass,
}

impl Kind {
    /// A member's second entitlement is of the next kind, so that each is its own (member, group).
    fn of(entitlement: u64, members: u64) -> Self {
        match (entitlement % members + entitlement / members) % 3 {
            0 => Self::RoomA,
            1 => Self::RoomB,
            _ => Self::FloorPass,
        }
    }
}

/// How fast Kisi answers and the writer calls.
#[derive(Debug, Clone, Copy)]
enum Pace {
    Raised,
    Real,
}

/// The simulators with one location: rooms A and B and the floor's pass product for entitlements,
/// room D for live bookings, each its own Kisi group, and the space's members and entitlements.
struct World {
    kisi_simulator: KisiSimulator,
    kisi: SimHandle,
    nexudus: NexudusSimulator,
    nexudus_options: NexudusOptions,
    mapping: Mapping,
    groups: Vec<KisiGroupId>,
    room_d: (u64, KisiGroupId),
    /// Coworker ids and emails, in order: the first `in_kisi` are Kisi users.
    members: Vec<(u64, String)>,
    /// The (email, group) pairs the entitlements ask for.
    expected: BTreeSet<(String, KisiGroupId)>,
    space: Space,
    /// The fewest Kisi calls for the first sync, from what Kisi held before doorsync started.
    fewest_calls: u64,
}

impl World {
    async fn start(clock: &SharedClock, space: Space, pace: Pace) -> BenchResult<Self> {
        let mut kisi_options = doorsync_kisi_sim::SimOptions::new(Arc::clone(clock));
        if let Pace::Raised = pace {
            kisi_options.requests_per_second = RAISED_RATE;
        }
        let kisi_simulator = KisiSimulator::start(kisi_options).await?;
        let kisi = kisi_simulator.handle();
        kisi.add_api_account("integration@example.com", "doorsync", KISI_API_KEY)?;

        let mut options = doorsync_nexudus_sim::SimOptions::new(Arc::clone(clock));
        options.limits = None;
        let credentials = options.credentials.clone();
        let nexudus = NexudusSimulator::start(options).await?;
        let business = nexudus.create_location("Soho", "GMT Standard Time")?;
        let room = |name: &str| -> BenchResult<(u64, KisiGroupId)> {
            let resource = nexudus.create(SimEntity::Resource, json!({"BusinessId": business, "Name": name}))?;
            Ok((resource, kisi.add_group(name)))
        };
        let (room_a, room_b, room_d) = (room("Room A")?, room("Room B")?, room("Room D")?);
        let floor = kisi.add_group("Floor");
        let pass = nexudus.create(SimEntity::TimePass, json!({"Name": "Floor pass", "BusinessId": business}))?;
        let mut mapping = Mapping::default();
        for (resource, group) in [room_a, room_b, room_d] {
            mapping.resources.insert(ResourceId(resource), group);
        }
        mapping.pass_products.insert(PassProductId(pass), floor);

        let mut members = Vec::new();
        for number in 1..=space.members {
            let email = format!("member{number}@bench.invalid");
            let name = format!("Member {number}");
            members.push((
                nexudus.create(SimEntity::Coworker, json!({"FullName": name, "Email": email, "Active": true}))?,
                email.clone(),
            ));
            if number <= space.in_kisi {
                kisi.add_user(&email, &name)?;
            }
        }
        let now = clock.now().as_unix_millis();
        let at = |offset_ms: i64| nexudus_time(Timestamp::from_unix_millis(now + offset_ms));
        let mut expected = BTreeSet::new();
        for entitlement in 0..space.entitlements {
            let (member, email) = &members[usize::try_from(entitlement % space.members)?];
            let kind = Kind::of(entitlement, space.members);
            let group = match kind {
                Kind::RoomA | Kind::RoomB => {
                    let (resource, group) = if let Kind::RoomA = kind { room_a } else { room_b };
                    // Under way now, for an hour yet.
                    let fields = json!({"ResourceId": resource, "CoworkerId": member, "Tentative": false,
                        "FromTime": at(-60 * MINUTE_MS), "ToTime": at(60 * MINUTE_MS)});
                    nexudus.create(SimEntity::Booking, fields)?;
                    group
                }
                Kind::FloorPass => {
                    let fields = json!({"CoworkerId": member, "TimePassId": pass, "BusinessId": business,
                        "Used": false, "ExpireDate": at(30 * DAY_MS)});
                    nexudus.create(SimEntity::CoworkerTimePass, fields)?;
                    floor
                }
            };
            expected.insert((email.clone(), group));
        }
        let mut nexudus_options = NexudusOptions::new(nexudus.base_url(), credentials);
        nexudus_options.limits = Limits { min_interval: Duration::ZERO, per_minute: 1_000_000, per_hour: 10_000_000 };
        let groups = vec![room_a.1, room_b.1, floor, room_d.1];
        let fewest_calls = fewest_calls(&kisi, &groups, space, expected.len());
        Ok(Self {
            kisi_simulator,
            kisi,
            nexudus,
            nexudus_options,
            mapping,
            groups,
            room_d,
            members,
            expected,
            space,
            fewest_calls,
        })
    }

    /// Every (email, group) assignment Kisi holds, with when it was created.
    fn assignments(&self) -> BTreeMap<(String, KisiGroupId), Timestamp> {
        let emails: BTreeMap<_, _> = self.kisi.users().into_iter().map(|user| (user.id, user.email)).collect();
        self.kisi
            .assignments()
            .into_iter()
            .filter_map(|held| Some(((emails.get(&held.user)?.to_lowercase(), held.group), held.created_at)))
            .collect()
    }

    /// Makes Nexudus deliver its webhooks to doorsync from now on (the space's records are in
    /// already: they reach doorsync by its poll).
    fn register_webhooks(&self, webhooks: SocketAddr) -> BenchResult<()> {
        for &action in WEBHOOK_ACTIONS {
            let url = url::Url::parse(&format!("http://{webhooks}{}", webhook_path(action)))?;
            self.nexudus.register_webhook(action, &url, Secret::new(WEBHOOK_SECRET))?;
        }
        Ok(())
    }

    async fn shutdown(self) {
        self.nexudus.shutdown().await;
        self.kisi_simulator.shutdown().await;
    }
}

/// The fewest Kisi calls that make Kisi hold `assignments` more (see the module's documentation):
/// the user list's pages, each managed group's pages of assignments, the users Kisi lacks and the
/// assignments.
fn fewest_calls(kisi: &SimHandle, groups: &[KisiGroupId], space: Space, assignments: usize) -> u64 {
    let user_pages = (kisi.users().len() as u64).div_ceil(USERS_PER_PAGE);
    let held = kisi.assignments();
    let assignment_pages: u64 = groups
        .iter()
        .map(|group| {
            let in_group = held.iter().filter(|assignment| assignment.group == *group).count() as u64;
            in_group.div_ceil(ASSIGNMENTS_PER_PAGE).max(1)
        })
        .sum();
    user_pages + assignment_pages + (space.members - space.in_kisi) + assignments as u64
}

fn nexudus_time(at: Timestamp) -> Value {
    NexudusDateTime::from_utc(at).map_or(Value::Null, |written| Value::String(written.to_string()))
}

/// doorsync's three roles on one embedded log, started as `doorsync run` starts them.
struct Doorsync {
    foundation: Foundation,
    log: EmbeddedLog,
    ingest: IngestHandle,
    webhooks: SocketAddr,
    engine: EngineHandle,
    writer: WriterHandle,
    _dir: tempfile::TempDir,
}

impl Doorsync {
    async fn start(world: &World, clock: &SharedClock, pace: Pace) -> BenchResult<Self> {
        let dir = tempfile::Builder::new().prefix("doorsync-first-sync-").tempdir()?;
        let layout = Layout::new(Subjects::new("bench", 16)?);
        let log = EmbeddedLog::open(EmbeddedOptions::new(dir.path().join("doorsync.redb"), layout.streams()))?;
        let foundation =
            Foundation { log: Arc::new(log.clone()) as Arc<dyn EventLog>, layout, clock: Arc::clone(clock) };
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let ingest_options = IngestOptions::new(Secret::new(WEBHOOK_SECRET));
        let started = roles::start_ingest(&foundation, ingest_options, world.nexudus_options.clone(), listen).await?;
        let mut engine_options = EngineOptions::new("engine-bench", foundation.layout.clone());
        engine_options.mapping = world.mapping.clone();
        let engine = roles::start_engine(&foundation, engine_options).await?;
        let writer = Self::start_writer(&foundation, world, pace).await?;
        Ok(Self {
            foundation,
            log,
            ingest: started.handle,
            webhooks: started.webhook_address,
            engine,
            writer,
            _dir: dir,
        })
    }

    async fn start_writer(foundation: &Foundation, world: &World, pace: Pace) -> BenchResult<WriterHandle> {
        let kisi = KisiOptions::new(world.kisi_simulator.base_url(), ApiKey::new(KISI_API_KEY), "doorsync-bench");
        let mut options = WriterOptions::new("writer-bench", "main");
        options.reconcile_groups = world.groups.clone();
        // The benchmark starts its reconciliations itself.
        options.reconcile_on_schedule = false;
        if let Pace::Raised = pace {
            options.requests_per_second = RAISED_RATE;
        }
        Ok(roles::start_writer(foundation, options, kisi).await?)
    }

    /// Restarts the writer at `pace`, on the same log.
    async fn restart_writer(&mut self, world: &World, pace: Pace) -> BenchResult<()> {
        self.writer.shutdown().await;
        self.writer = Self::start_writer(&self.foundation, world, pace).await?;
        Ok(())
    }

    async fn shutdown(self) {
        let Self { foundation, log, ingest, engine, writer, .. } = self;
        ingest.shutdown().await;
        engine.shutdown().await;
        writer.shutdown().await;
        drop((foundation, ingest, writer));
        if tokio::time::timeout(Duration::from_secs(30), log.close()).await.is_err() {
            eprintln!("first_sync: the embedded log did not close within 30 s; leaving it");
        }
    }
}

/// What a first sync cost, once Kisi holds every assignment the entitlements ask for.
struct FirstSync {
    calls: CallCounts,
    fewest: u64,
    /// From doorsync's start to the last assignment's creation in Kisi.
    wall: Duration,
}

impl FirstSync {
    fn ratio(&self) -> f64 {
        self.calls.total() as f64 / self.fewest as f64
    }
}

/// Waits for Kisi to hold every expected assignment, then a moment more for stray calls.
async fn first_sync(world: &World, doorsync: &Doorsync, started: Instant) -> BenchResult<FirstSync> {
    let deadline = tokio::time::Instant::now() + FIRST_SYNC_LIMIT;
    let mut reported = Instant::now();
    loop {
        let held = world.assignments();
        let missing = world.expected.iter().filter(|pair| !held.contains_key(*pair)).count();
        if missing == 0 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(
                format!("after {FIRST_SYNC_LIMIT:?}, {missing} of the first sync's assignments are missing").into()
            );
        }
        if reported.elapsed() > Duration::from_secs(15) {
            reported = Instant::now();
            eprintln!(
                "first_sync: {missing} assignments missing after {:.0} s, {} Kisi calls so far",
                started.elapsed().as_secs_f64(),
                world.kisi.calls().total()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let wall = started.elapsed();
    // Whatever the writer still had queued (a superseded command, a read-back) counts too.
    let settle = tokio::time::Instant::now() + Duration::from_secs(60);
    while doorsync.writer.status().backlog_commands > 0 && tokio::time::Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(FirstSync { calls: world.kisi.calls(), fewest: world.fewest_calls, wall })
}

/// Books room D for a member Kisi holds every [`LIVE_SPACING`] while `busy` holds (or for
/// `live_for`), and returns each booking's latency to Kisi.
async fn live_bookings(
    world: &World,
    clock: &SharedClock,
    live_for: Duration,
    busy: &AtomicBool,
) -> BenchResult<Latencies> {
    let (room, group) = world.room_d;
    let mut booked_at = BTreeMap::new();
    let start = tokio::time::Instant::now();
    let mut next = start;
    // Members Kisi holds, from the last of them down, one booking each.
    let mut bookers = world.members[..usize::try_from(world.space.in_kisi)?].iter().rev();
    while start.elapsed() < live_for && busy.load(Ordering::Acquire) {
        tokio::time::sleep_until(next).await;
        next += LIVE_SPACING;
        let Some((member, email)) = bookers.next() else { break };
        let now = clock.now();
        let from = Timestamp::from_unix_millis(now.as_unix_millis() + 10 * MINUTE_MS);
        let to = Timestamp::from_unix_millis(from.as_unix_millis() + 60 * MINUTE_MS);
        let fields = json!({"ResourceId": room, "CoworkerId": member, "Tentative": false,
            "FromTime": nexudus_time(from), "ToTime": nexudus_time(to)});
        world.nexudus.create(SimEntity::Booking, fields)?;
        booked_at.insert(email.clone(), now);
    }
    let deadline = tokio::time::Instant::now() + LIVE_LIMIT;
    loop {
        let held = world.assignments();
        let created: BTreeMap<&String, Timestamp> =
            booked_at.keys().filter_map(|email| Some((email, *held.get(&(email.clone(), group))?))).collect();
        if created.len() == booked_at.len() {
            let latencies =
                booked_at.iter().map(|(email, at)| created[email].as_unix_millis() - at.as_unix_millis()).collect();
            return Ok(Latencies::new(latencies));
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "after {LIVE_LIMIT:?}, Kisi holds {} of {} live bookings' assignments",
                created.len(),
                booked_at.len()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn print_live(key: &str, latencies: &Latencies, what: &str) {
    println!(
        "{what}: {} live bookings, p50 {} ms, p99 {} ms, max {} ms",
        latencies.len(),
        latencies.percentile(50),
        latencies.percentile(99),
        latencies.max()
    );
    let target = format!("<={TARGET_LIVE_P99_MS}");
    for (statistic, value, target) in [
        ("p50", latencies.percentile(50), "-"),
        ("p99", latencies.percentile(99), target.as_str()),
        ("max", latencies.max(), "-"),
    ] {
        println!(
            "FIGURE {key}.{statistic} {value} ms {target} Live booking to Kisi, {statistic}, {} bookings one per {} s: \
             {what}",
            latencies.len(),
            LIVE_SPACING.as_secs()
        );
    }
}

fn print_first_sync(key: &str, sync: &FirstSync, space: Space, target: f64, measured_wall: bool) {
    let endpoints: Vec<String> =
        sync.calls.by_endpoint.iter().map(|(endpoint, count)| format!("{endpoint} ×{count}")).collect();
    println!(
        "First sync, {}: {} Kisi calls against the fewest {} ({:.2}×), {} answered 429; done {:.1} s after start; {}",
        space.label(),
        sync.calls.total(),
        sync.fewest,
        sync.ratio(),
        sync.calls.status(429),
        sync.wall.as_secs_f64(),
        endpoints.join(", ")
    );
    let pace = if measured_wall {
        "writer at its default 4/s, Kisi simulator at Kisi's 5/s".to_owned()
    } else {
        format!("Kisi simulator and writer both raised to {RAISED_RATE}/s to count the calls")
    };
    let what = format!("{}, reaching doorsync by its first poll; {pace}", space.label());
    println!(
        "FIGURE {key}.calls_ratio {:.3} ratio <={target} Kisi calls of the first sync against the fewest ({} against {}: \
         user pages + assignment pages + users created + assignments): {what}",
        sync.ratio(),
        sync.calls.total(),
        sync.fewest
    );
    println!(
        "FIGURE {key}.kisi_429 {} answers =0 Kisi 429 answers during the first sync: {what}",
        sync.calls.status(429)
    );
    if measured_wall {
        println!(
            "FIGURE {key}.wall_seconds {:.1} s - First sync wall time, measured from doorsync's start to the last \
             assignment in Kisi: {what}",
            sync.wall.as_secs_f64()
        );
    } else {
        println!(
            "FIGURE {key}.wall_seconds_at_4_per_s {:.0} s - First sync wall time at 4 requests/s, computed as the \
             calls counted / 4 (not measured): {what}",
            sync.calls.total() as f64 / DEFAULT_RATE
        );
    }
}

async fn counted_first_sync_then_reconcile(space: Space, live_for: Duration, removed: u64) -> BenchResult<()> {
    let clock: SharedClock = Arc::new(SystemClock);
    eprintln!("first_sync: counted first sync, {}", space.label());
    let world = World::start(&clock, space, Pace::Raised).await?;
    let started = Instant::now();
    let mut doorsync = Doorsync::start(&world, &clock, Pace::Raised).await?;
    let sync = first_sync(&world, &doorsync, started).await?;
    print_first_sync("first_sync.large", &sync, space, TARGET_RATIO_LARGE, false);

    eprintln!("first_sync: the writer restarted at its default rate; {removed} assignments deleted in Kisi by hand");
    doorsync.restart_writer(&world, Pace::Real).await?;
    let held = world.kisi.assignments();
    for assignment in held.iter().take(usize::try_from(removed)?) {
        world.kisi.remove_assignment(assignment.id);
    }
    world.register_webhooks(doorsync.webhooks)?;
    world.kisi.reset_calls();
    let busy = AtomicBool::new(true);
    let mut reports = Vec::new();
    let reconciling = async {
        let until = tokio::time::Instant::now() + live_for;
        while tokio::time::Instant::now() < until {
            match doorsync.writer.reconcile_now().await {
                Ok(report) => reports.push(report),
                // The restarted writer has not taken the lease or read its own Kisi user yet.
                Err(WriterError::NotActive | WriterError::Paused { refusal: None }) if reports.is_empty() => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
        busy.store(false, Ordering::Release);
        BenchResult::Ok(())
    };
    let (reconciled, live) = tokio::join!(reconciling, live_bookings(&world, &clock, live_for, &busy));
    reconciled?;
    let live = live?;
    let repaired: usize = reports.iter().map(|report| report.created).sum();
    let reconcile_calls: u64 = reports.iter().map(|report| report.calls).sum();
    let what = format!(
        "{} reconciliations back to back ({reconcile_calls} Kisi calls, {repaired} assignments deleted by hand \
         repaired) after the first sync of {}; writer at its default 4/s (the simulator's limit stayed raised, so \
         429s are not counted here)",
        reports.len(),
        space.label()
    );
    print_live("first_sync.live_during_reconcile", &live, &what);
    doorsync.shutdown().await;
    world.shutdown().await;
    Ok(())
}

async fn small_first_sync(space: Space) -> BenchResult<()> {
    let clock: SharedClock = Arc::new(SystemClock);
    eprintln!("first_sync: first sync at Kisi's real rate, {}", space.label());
    let world = World::start(&clock, space, Pace::Real).await?;
    let started = Instant::now();
    let doorsync = Doorsync::start(&world, &clock, Pace::Real).await?;
    let sync = first_sync(&world, &doorsync, started).await?;
    print_first_sync("first_sync.small", &sync, space, TARGET_RATIO_SMALL, true);
    doorsync.shutdown().await;
    world.shutdown().await;
    Ok(())
}

async fn live_during_first_sync(space: Space, live_for: Duration) -> BenchResult<()> {
    let clock: SharedClock = Arc::new(SystemClock);
    eprintln!("first_sync: live bookings during a first sync at Kisi's real rate, {}", space.label());
    let world = World::start(&clock, space, Pace::Real).await?;
    let started = Instant::now();
    let doorsync = Doorsync::start(&world, &clock, Pace::Real).await?;
    // Live bookings begin once the first sync is writing to Kisi (beyond the writer's start).
    let deadline = tokio::time::Instant::now() + FIRST_SYNC_LIMIT;
    while world.assignments().is_empty() {
        if tokio::time::Instant::now() > deadline {
            return Err("the first sync wrote nothing to Kisi".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("first_sync: the first sync is writing, {:.0} s after start", started.elapsed().as_secs_f64());
    world.register_webhooks(doorsync.webhooks)?;
    world.kisi.reset_calls();
    let busy = AtomicBool::new(true);
    let live = live_bookings(&world, &clock, live_for, &busy).await?;
    let calls = world.kisi.calls();
    let held = world.assignments();
    let synced = world.expected.iter().filter(|pair| held.contains_key(*pair)).count();
    let what = format!(
        "during the first sync of {} (writer at its default 4/s, Kisi simulator at 5/s; {} Kisi calls and {} 429s \
         meanwhile; {synced} of {} first-sync assignments in Kisi at the end)",
        space.label(),
        calls.total(),
        calls.status(429),
        world.expected.len()
    );
    print_live("first_sync.live_during_first_sync", &live, &what);
    doorsync.shutdown().await;
    world.shutdown().await;
    Ok(())
}
