//! A webhook burst on `doorsync run`: 2,000 of Nexudus's webhooks in 10 seconds for one site,
//! through the whole pipeline in one process on the embedded log (the roles started through
//! `doorsync_node::roles` on one [`Foundation`], as the binary starts them), against the Nexudus
//! and Kisi simulators on loopback, on the system clock.
//!
//! The benchmark plays Nexudus: at each of its evenly spaced instants it creates a booking in the
//! Nexudus simulator and posts that booking's signed `BookingCreate` webhook to the ingestor
//! itself, without waiting for the answers to earlier ones (the simulator's own deliveries go one
//! at a time, which would be no burst). Each webhook makes the ingestor read its booking and append
//! the event before answering.
//!
//! * Most bookings are of a room mapped to no Kisi group: they cost a Nexudus read and an append,
//!   and no Kisi call. They make the load on the ingestor and the embedded log.
//! * A few (`BENCH_BURST_GRANTS`, 20 by default, spread evenly through the burst) are of a mapped
//!   room by a member Kisi already holds: they reach Kisi as a role assignment. So few because the
//!   writer calls Kisi at 4 requests/s (Kisi answers 429 above 5/s): a burst of 2,000 access
//!   changes takes Kisi 500 s to receive however fast doorsync is, and would measure that queue.
//!
//! Nexudus's request limits are lifted, in the simulator and the client, for this benchmark only:
//! at Nexudus's real limit (a request per 100 ms) 2,000 reads take 200 s, so a burst of 2,000
//! changes in 10 s cannot be read at Nexudus's real pace; what is measured is doorsync's own
//! capacity. The Nexudus requests per webhook are reported.
//!
//! Measured: each webhook's answer time (from just before the request to its answer, as Nexudus
//! would see it), and each granting booking's change-to-Kisi time (from just before the booking is
//! created to the `created_at` the Kisi simulator stamps on the assignment, both from the same
//! clock). The embedded log's [`EmbeddedLog::write_stats`] over the burst tells how many
//! appends and other changes shared each durable commit.
//!
//! Sizes: `BENCH_BURST_WEBHOOKS` (2,000), `BENCH_BURST_SECONDS` (10), `BENCH_BURST_GRANTS` (20).
//! Percentiles are nearest-rank. Each figure is printed as a `FIGURE <key> <value> <unit>
//! <target> <description>` line for `scripts/bench-report.py`.
#![allow(clippy::expect_used, reason = "a benchmark should fail loudly at the first surprise")]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use doorsync_access::Mapping;
use doorsync_clock::{SharedClock, SystemClock};
use doorsync_engine::{EngineHandle, EngineOptions};
use doorsync_ingest::{IngestHandle, IngestOptions, webhook_path};
use doorsync_integration_tests::Latencies;
use doorsync_kisi::{ApiKey, KisiOptions};
use doorsync_kisi_sim::{KisiSimulator, SimHandle};
use doorsync_layout::Layout;
use doorsync_log::EventLog;
use doorsync_log_embedded::{EmbeddedLog, EmbeddedOptions, WriteStats};
use doorsync_nexudus::webhook::{SIGNATURE_HEADER, body_for, sign};
use doorsync_nexudus::{Limits, NexudusDateTime, NexudusOptions, Secret, WebhookAction};
use doorsync_nexudus_sim::{NexudusSimulator, SimEntity};
use doorsync_node::{Foundation, roles};
use doorsync_proto::{KisiGroupId, ResourceId, Subjects, Timestamp};
use doorsync_writer::{WriterHandle, WriterOptions};
use serde_json::{Value, json};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const KISI_API_KEY: &str = "doorsync-bench-kisi-key";
const WEBHOOK_SECRET: &str = "doorsync-bench-webhook-secret";
/// The product's promise for a change reaching Kisi.
const TARGET_CHANGE_TO_KISI_P99_MS: i64 = 2_000;
/// Members who book the unmapped room, in turn.
const UNMAPPED_BOOKERS: usize = 100;
/// How long the last booking may take to reach Kisi before the benchmark gives up.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);
const MINUTE_MS: i64 = 60_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

fn main() -> BenchResult<()> {
    let burst = Burst {
        webhooks: env_or("BENCH_BURST_WEBHOOKS", 2_000).max(1),
        seconds: env_or("BENCH_BURST_SECONDS", 10).max(1),
        grants: env_or("BENCH_BURST_GRANTS", 20).max(1),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(burst))
}

#[derive(Debug, Clone, Copy)]
struct Burst {
    webhooks: u64,
    seconds: u64,
    /// Bookings among the webhooks that reach Kisi.
    grants: u64,
}

impl Burst {
    fn spacing(self) -> Duration {
        Duration::from_secs(self.seconds) / u32::try_from(self.webhooks).unwrap_or(u32::MAX)
    }

    /// Whether the webhook at `index` is one of the granting bookings, spread evenly.
    fn grants_at(self, index: u64) -> bool {
        index.is_multiple_of(self.webhooks.div_ceil(self.grants))
    }
}

/// The simulators: one location, two rooms mapped to Kisi groups, a phone booth mapped to
/// none, and the members (the first ones already users in Kisi).
struct World {
    kisi_simulator: KisiSimulator,
    kisi: SimHandle,
    nexudus: NexudusSimulator,
    nexudus_options: NexudusOptions,
    rooms: [(u64, KisiGroupId); 2],
    booth: u64,
    /// Nexudus coworker ids with their emails.
    members: Vec<(u64, String)>,
}

impl World {
    async fn start(clock: &SharedClock, burst: Burst) -> BenchResult<Self> {
        let kisi_simulator = KisiSimulator::start(doorsync_kisi_sim::SimOptions::new(Arc::clone(clock))).await?;
        let kisi = kisi_simulator.handle();
        kisi.add_api_account("integration@example.com", "doorsync", KISI_API_KEY)?;

        let mut options = doorsync_nexudus_sim::SimOptions::new(Arc::clone(clock));
        options.limits = None;
        let credentials = options.credentials.clone();
        let nexudus = NexudusSimulator::start(options).await?;
        let business = nexudus.create_location("Soho", "GMT Standard Time")?;
        let resource = |name: &str| nexudus.create(SimEntity::Resource, json!({"BusinessId": business, "Name": name}));
        let rooms = [(resource("Room A")?, kisi.add_group("Room A")), (resource("Room B")?, kisi.add_group("Room B"))];
        let booth = resource("Phone booth")?;
        let count = usize::try_from(burst.grants)?.max(UNMAPPED_BOOKERS);
        let mut members = Vec::with_capacity(count);
        for number in 1..=count {
            let email = format!("member{number}@bench.invalid");
            let name = format!("Member {number}");
            let fields = json!({"FullName": name, "Email": email, "Active": true});
            members.push((nexudus.create(SimEntity::Coworker, fields)?, email.clone()));
            if number <= usize::try_from(burst.grants)? {
                kisi.add_user(&email, &name)?;
            }
        }
        let mut nexudus_options = NexudusOptions::new(nexudus.base_url(), credentials);
        nexudus_options.limits = Limits { min_interval: Duration::ZERO, per_minute: 1_000_000, per_hour: 10_000_000 };
        Ok(Self { kisi_simulator, kisi, nexudus, nexudus_options, rooms, booth, members })
    }

    fn mapping(&self) -> Mapping {
        let mut mapping = Mapping::default();
        for (resource, group) in self.rooms {
            mapping.resources.insert(ResourceId(resource), group);
        }
        mapping
    }

    /// A confirmed booking of `resource` by `member` starting in 10 minutes, for an hour: within
    /// the default 15-minute lead, so a mapped one is granted at once.
    fn book(&self, member: u64, resource: u64, now: Timestamp) -> BenchResult<(u64, Value)> {
        let from = Timestamp::from_unix_millis(now.as_unix_millis() + 10 * MINUTE_MS);
        let to = Timestamp::from_unix_millis(from.as_unix_millis() + 60 * MINUTE_MS);
        let fields = json!({"ResourceId": resource, "CoworkerId": member, "Tentative": false,
            "FromTime": nexudus_time(from), "ToTime": nexudus_time(to)});
        let id = self.nexudus.create(SimEntity::Booking, fields)?;
        let record = self.nexudus.record(SimEntity::Booking, id).ok_or("the booking just created is gone")?;
        Ok((id, record))
    }

    /// When each user's assignment on any mapped room was created in Kisi, by email.
    fn assignments_created(&self) -> BTreeMap<String, Timestamp> {
        let emails: BTreeMap<_, _> = self.kisi.users().into_iter().map(|user| (user.id, user.email)).collect();
        let groups = self.rooms.map(|(_, group)| group);
        self.kisi
            .assignments()
            .into_iter()
            .filter(|assignment| groups.contains(&assignment.group))
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

/// doorsync's three roles on one embedded log, started as `doorsync run` starts them.
struct Doorsync {
    log: EmbeddedLog,
    ingest: IngestHandle,
    webhooks: SocketAddr,
    engine: EngineHandle,
    writer: WriterHandle,
    _dir: tempfile::TempDir,
}

impl Doorsync {
    async fn start(world: &World, clock: &SharedClock) -> BenchResult<Self> {
        let dir = tempfile::Builder::new().prefix("doorsync-burst-").tempdir()?;
        let layout = Layout::new(Subjects::new("bench", 16)?);
        let log = EmbeddedLog::open(EmbeddedOptions::new(dir.path().join("doorsync.redb"), layout.streams()))?;
        let foundation =
            Foundation { log: Arc::new(log.clone()) as Arc<dyn EventLog>, layout, clock: Arc::clone(clock) };
        let ingest_options = IngestOptions::new(Secret::new(WEBHOOK_SECRET));
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let started = roles::start_ingest(&foundation, ingest_options, world.nexudus_options.clone(), listen).await?;

        let mut engine_options = EngineOptions::new("engine-bench", foundation.layout.clone());
        engine_options.mapping = world.mapping();
        let engine = roles::start_engine(&foundation, engine_options).await?;

        let kisi = KisiOptions::new(world.kisi_simulator.base_url(), ApiKey::new(KISI_API_KEY), "doorsync-bench");
        let mut writer_options = WriterOptions::new("writer-bench", "main");
        writer_options.reconcile_groups = world.rooms.map(|(_, group)| group).to_vec();
        // A scheduled reconciliation would list Kisi in the middle of the burst.
        writer_options.reconcile_on_schedule = false;
        let writer = roles::start_writer(&foundation, writer_options, kisi).await?;
        Ok(Self { log, ingest: started.handle, webhooks: started.webhook_address, engine, writer, _dir: dir })
    }

    async fn shutdown(self) {
        let Self { log, ingest, engine, writer, .. } = self;
        ingest.shutdown().await;
        engine.shutdown().await;
        writer.shutdown().await;
        drop((ingest, writer));
        if tokio::time::timeout(Duration::from_secs(30), log.close()).await.is_err() {
            eprintln!("burst: the embedded log did not close within 30 s; leaving it");
        }
    }
}

/// Posts one signed webhook as Nexudus would and times its answer in microseconds.
async fn post_webhook(http: reqwest::Client, url: String, body: Vec<u8>) -> BenchResult<(u16, i64)> {
    let signature = sign(&Secret::new(WEBHOOK_SECRET), &body);
    let sent = Instant::now();
    let response = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    response.bytes().await?;
    Ok((status, i64::try_from(sent.elapsed().as_micros())?))
}

async fn run(burst: Burst) -> BenchResult<()> {
    let clock: SharedClock = Arc::new(SystemClock);
    let world = World::start(&clock, burst).await?;
    let doorsync = Doorsync::start(&world, &clock).await?;
    eprintln!("burst: doorsync started; reading {} members from Nexudus", world.members.len());
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

    let url = format!("http://{}{}", doorsync.webhooks, webhook_path(WebhookAction::BookingCreate));
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let nexudus_before = world.nexudus.stats().requests;
    let log_before = doorsync.log.write_stats();
    eprintln!("burst: {} webhooks in {} s, {} of them reaching Kisi", burst.webhooks, burst.seconds, burst.grants);
    let started = Instant::now();
    let mut booked_at = BTreeMap::new();
    let mut answers = Vec::with_capacity(usize::try_from(burst.webhooks)?);
    let mut next = tokio::time::Instant::now();
    let mut granted = 0;
    for index in 0..burst.webhooks {
        tokio::time::sleep_until(next).await;
        next += burst.spacing();
        let now = clock.now();
        let record = if burst.grants_at(index) && granted < world.members.len() {
            let (member, email) = &world.members[granted];
            let (room, _) = world.rooms[granted % 2];
            granted += 1;
            booked_at.insert(email.to_lowercase(), now);
            world.book(*member, room, now)?.1
        } else {
            let (member, _) = world.members[usize::try_from(index)? % UNMAPPED_BOOKERS];
            world.book(member, world.booth, now)?.1
        };
        answers.push(tokio::spawn(post_webhook(http.clone(), url.clone(), body_for(&record))));
    }
    let mut answer_times = Vec::with_capacity(answers.len());
    let mut refused = 0;
    for answer in answers {
        let (status, micros) = answer.await??;
        if !(200..300).contains(&status) {
            refused += 1;
        }
        answer_times.push(micros);
    }
    let burst_seconds = started.elapsed().as_secs_f64();
    let log_burst = difference(doorsync.log.write_stats(), log_before);

    let deadline = tokio::time::Instant::now() + SETTLE_LIMIT;
    let created = loop {
        let created = world.assignments_created();
        if booked_at.keys().all(|email| created.contains_key(email)) {
            break created;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(
                format!("after {SETTLE_LIMIT:?}, Kisi holds {} of {} assignments", created.len(), granted).into()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let to_kisi = Latencies::new(
        booked_at.iter().map(|(email, at)| created[email].as_unix_millis() - at.as_unix_millis()).collect(),
    );
    let nexudus_requests = world.nexudus.stats().requests - nexudus_before;
    let kisi_calls = world.kisi.calls();
    let writer = doorsync.writer.status();
    doorsync.shutdown().await;
    world.shutdown().await;

    // Answer times in microseconds, shown in milliseconds with a decimal.
    let answered = Latencies::new(answer_times);
    let ms = |micros: i64| micros as f64 / 1_000.0;
    let per_append = |count: u64| count as f64 / log_burst.appends.max(1) as f64;
    println!();
    println!(
        "Webhook burst: {} webhooks in {} s ({:.1} s to the last answer), {} reaching Kisi; one process on the \
         embedded log; Nexudus limits lifted, Kisi at 4/s against its 5/s",
        burst.webhooks, burst.seconds, burst_seconds, granted
    );
    println!("{:<48} {:>8} {:>8} {:>8} {:>8}", "", "p50 ms", "p90 ms", "p99 ms", "max ms");
    println!(
        "{:<48} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
        "webhook answer",
        ms(answered.percentile(50)),
        ms(answered.percentile(90)),
        ms(answered.percentile(99)),
        ms(answered.max())
    );
    println!(
        "{:<48} {:>8} {:>8} {:>8} {:>8}",
        "booking to Kisi assignment",
        to_kisi.percentile(50),
        to_kisi.percentile(90),
        to_kisi.percentile(99),
        to_kisi.max()
    );
    println!(
        "Webhooks answered other than 2xx: {refused}; Nexudus requests per webhook: {:.2}; Kisi calls: {} ({} answered \
         429); writer dead letters: {}",
        nexudus_requests as f64 / burst.webhooks as f64,
        kisi_calls.total(),
        kisi_calls.status(429),
        writer.dead_letters
    );
    println!(
        "Embedded log during the burst: {} commits for {} appends and {} changes in all: {:.3} commits per append",
        log_burst.commits,
        log_burst.appends,
        log_burst.changes,
        per_append(log_burst.commits)
    );

    let what = format!(
        "{} BookingCreate webhooks posted in {} s without waiting for answers ({} of them reaching Kisi, for members \
         Kisi holds), doorsync run on the embedded log; Nexudus request limits lifted for this benchmark (at its real \
         10/s the reads alone would take {} s)",
        burst.webhooks,
        burst.seconds,
        granted,
        burst.webhooks / 10
    );
    for (statistic, value) in [
        ("p50", answered.percentile(50)),
        ("p90", answered.percentile(90)),
        ("p99", answered.percentile(99)),
        ("max", answered.max()),
    ] {
        println!(
            "FIGURE burst.webhook_answer.{statistic} {:.1} ms - Webhook answer time, {statistic}: {what}",
            ms(value)
        );
    }
    let target = format!("<={TARGET_CHANGE_TO_KISI_P99_MS}");
    for (statistic, value, target) in [
        ("p50", to_kisi.percentile(50), "-"),
        ("p99", to_kisi.percentile(99), target.as_str()),
        ("max", to_kisi.max(), "-"),
    ] {
        println!(
            "FIGURE burst.change_to_kisi.{statistic} {value} ms {target} Booking to Kisi assignment, {statistic}: {what}"
        );
    }
    println!("FIGURE burst.refused {refused} webhooks =0 Webhooks answered other than 2xx: {what}");
    println!("FIGURE burst.kisi_429 {} answers =0 Kisi 429 answers during the burst: {what}", kisi_calls.status(429));
    println!(
        "FIGURE burst.nexudus_per_webhook {:.2} requests - Nexudus requests per webhook: {what}",
        nexudus_requests as f64 / burst.webhooks as f64
    );
    println!(
        "FIGURE burst.commits_per_append {:.3} commits - Embedded log durable commits per message appended (events, \
         commands, outcomes) from the first webhook to the last answer ({} commits, {} appends, {} changes with \
         settlements and key-value writes): {what}",
        per_append(log_burst.commits),
        log_burst.commits,
        log_burst.appends,
        log_burst.changes
    );
    Ok(())
}

fn difference(after: WriteStats, before: WriteStats) -> WriteStats {
    WriteStats {
        commits: after.commits - before.commits,
        appends: after.appends - before.appends,
        changes: after.changes - before.changes,
    }
}
