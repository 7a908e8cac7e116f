//! The engine on a real nats-server, in one run:
//!
//! * replay: a fresh engine reads N events (M members) from JetStream until every partition has
//!   rebuilt its members' state and evaluated them (the latest `caught_up_at` the shards report),
//!   next to a raw async-nats ordered read of the same stream (target: ours at least 0.8 as fast);
//! * end to end: from the engine's start to the last of the commands those events call for, and
//!   its speed-up over `BENCH_BASELINE_EVENTS_PER_S` when given: the same figure measured with
//!   the engine before issue 18 on this machine (target: 1.5 times as fast). A baseline only
//!   means something from the same size and machine, so the bench does not guess one;
//! * memory: resident bytes per member with every member's actor alive (active), and with every
//!   member passivated, measured in a child process that starts from the checkpoint (idle).
//!
//! `BENCH_MEMBERS` (default 100,000) and `BENCH_EVENTS_PER_MEMBER` (default 10) set the size.
//! Before issue 18 the engine went from start to last command at 63,578 events/s at the default
//! size on a quiet machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use doorsync_clock::{Clock, SystemClock};
use doorsync_engine::{EngineHandle, EngineOptions};
use doorsync_layout::Layout;
use doorsync_log::{EventLog, NewMessage, ReplayRequest};
use doorsync_log_jetstream::{JetStreamLog, JetStreamOptions};
use doorsync_proto::{
    BookingChanged, BookingId, Envelope, Event, KisiGroupId, MappingChanged, MappingSource, MemberChanged, MemberId,
    ResourceId, Subjects, Timestamp,
};
use doorsync_test_support::NatsServer;
use futures::StreamExt;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn partitions() -> u32 {
    env_number("BENCH_PARTITIONS", 16) as u32
}
const MINUTE: i64 = 60_000;

fn main() -> BenchResult<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    match std::env::var("BENCH_IDLE_PHASE_URL") {
        Ok(url) => runtime.block_on(idle_phase(url)),
        Err(_) => runtime.block_on(run()),
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

fn layout() -> BenchResult<Layout> {
    Ok(Layout::new(Subjects::new("bench", partitions())?))
}

fn options(id: &str, layout: &Layout) -> EngineOptions {
    let mut options = EngineOptions::new(id, layout.clone());
    options.settings.checkpoint_every = Duration::from_secs(3_600);
    options.settings.passivate_after = Duration::from_secs(3_600);
    options
}

/// Resident set size of this process, from /proc.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|field| field.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// Per member: the member itself, then bookings that each replace the last, all in the future
/// so that every member ends up with one grant.
fn events(members: u64, per_member: u64, now: i64) -> BenchResult<Vec<(Event, Timestamp)>> {
    let mut events = vec![(
        Event::MappingChanged(MappingChanged {
            source: MappingSource::Resource(ResourceId(1)),
            group: Some(KisiGroupId(100)),
        }),
        Timestamp::from_unix_millis(now),
    )];
    for id in 1..=members {
        let member = MemberId(id);
        let at = Timestamp::from_unix_millis(now);
        events.push((
            Event::MemberChanged(MemberChanged {
                member,
                email: format!("m{id}@bench.invalid"),
                name: format!("Member {id}"),
                active: true,
            }),
            at,
        ));
        for change in 1..per_member {
            let starts = now + (60 + change as i64) * MINUTE;
            events.push((
                Event::BookingChanged(BookingChanged {
                    member,
                    booking: BookingId(id),
                    resource: ResourceId(1),
                    starts_at: Timestamp::from_unix_millis(starts),
                    ends_at: Timestamp::from_unix_millis(starts + 60 * MINUTE),
                    tentative: false,
                }),
                Timestamp::from_unix_millis(now + change as i64),
            ));
        }
    }
    Ok(events)
}

async fn run() -> BenchResult<()> {
    let members = env_number("BENCH_MEMBERS", 100_000);
    let per_member = env_number("BENCH_EVENTS_PER_MEMBER", 10).max(2);
    let server = NatsServer::start().await?;
    let layout = layout()?;
    let log: Arc<dyn EventLog> =
        Arc::new(JetStreamLog::connect(JetStreamOptions::new(server.url(), layout.streams())).await?);
    let now = SystemClock.now().as_unix_millis();

    let events = events(members, per_member, now)?;
    let total = events.len();
    let started = Instant::now();
    for chunk in events.chunks(1_000) {
        let mut batch = Vec::with_capacity(chunk.len());
        for (event, at) in chunk {
            let envelope = Envelope::new(*at, event.clone())?;
            let payload = Bytes::from(doorsync_proto::encode(&envelope)?);
            batch.push(NewMessage::new(layout.subjects.subject_for(event), envelope.id.to_string(), payload));
        }
        for answer in log.append_batch(batch).await {
            answer?;
        }
    }
    let append_rate = total as f64 / started.elapsed().as_secs_f64();

    let raw_rate = raw_ordered_read(&server, &layout, total).await?;
    let started = Instant::now();
    let mut replay = log.replay(ReplayRequest::whole(&layout.events)).await?;
    while let Some(message) = replay.next().await {
        doorsync_proto::decode::<Event>(&message?.payload)?;
    }
    let decode_rate = total as f64 / started.elapsed().as_secs_f64();

    let rss_before = resident_bytes();
    let started = Instant::now();
    let started_at = SystemClock.now();
    let engine = doorsync_engine::start(options("bench", &layout), Arc::clone(&log), Arc::new(SystemClock)).await?;
    let stats =
        wait(&engine, |stats| stats.iter().all(|shard| shard.caught_up) && stats.len() == partitions() as usize).await;
    // The shards say when they caught up: once caught up they start emitting commands, and a
    // stats call queued behind that work would count it as replay time.
    let caught_up_at = stats.iter().filter_map(|shard| shard.caught_up_at).max().unwrap_or(started_at);
    let replay_secs = (caught_up_at.as_unix_millis() - started_at.as_unix_millis()) as f64 / 1000.0;
    let expected_commands = members * 2;
    wait(&engine, |stats| stats.iter().map(|shard| shard.commands_emitted).sum::<u64>() >= expected_commands).await;
    let end_to_end_secs = started.elapsed().as_secs_f64();
    let rss_active = resident_bytes().saturating_sub(rss_before);
    let commands_in_log = count(&log, &layout.commands).await?;
    engine.checkpoint().await?;
    engine.shutdown().await;

    let idle = std::process::Command::new(std::env::current_exe()?)
        .env("BENCH_IDLE_PHASE_URL", server.url())
        .env("BENCH_MEMBERS", members.to_string())
        .output()?;
    let idle_per_member: f64 = String::from_utf8_lossy(&idle.stdout).trim().parse().unwrap_or(f64::NAN);

    let replay_rate = total as f64 / replay_secs;
    println!();
    println!("Engine on JetStream: {members} members, {total} events, {} partitions", partitions());
    println!("  append (setup)                        {append_rate:>12.0} events/s");
    println!("  raw ordered read of the stream        {raw_rate:>12.0} events/s");
    println!("  our replay of it, decoded, no engine  {decode_rate:>12.0} events/s");
    println!(
        "  engine replay until caught up         {replay_rate:>12.0} events/s   ({replay_secs:.2} s; ours/raw {:.2})",
        replay_rate / raw_rate
    );
    let end_to_end_rate = total as f64 / end_to_end_secs;
    println!(
        "  end to end, start to last command     {end_to_end_rate:>12.0} events/s   ({end_to_end_secs:.2} s, {commands_in_log} commands)"
    );
    let baseline = std::env::var("BENCH_BASELINE_EVENTS_PER_S").ok().and_then(|value| value.parse::<f64>().ok());
    if let Some(baseline) = baseline {
        println!(
            "  end to end against the baseline       {:>12.2} times   (baseline {baseline:.0} events/s)",
            end_to_end_rate / baseline
        );
    }
    println!("  resident per member, active           {:>12.0} bytes", rss_active as f64 / members as f64);
    println!("  resident per member, idle             {idle_per_member:>12.0} bytes");
    // For `scripts/bench-report.py`: FIGURE <key> <value> <unit> <target> <description>.
    let size = format!("{members} members, {total} events, {} partitions, JetStream", partitions());
    println!(
        "FIGURE engine.raw_read {raw_rate:.0} events/s - Raw async-nats ordered read of the event stream ({size})"
    );
    println!("FIGURE engine.replay {replay_rate:.0} events/s - Engine replay until every partition caught up ({size})");
    println!("FIGURE engine.replay_seconds {replay_secs:.2} s - Engine replay time ({size})");
    println!(
        "FIGURE engine.replay_ratio {:.2} ratio >=0.8 Engine replay / raw ordered read, same run ({size})",
        replay_rate / raw_rate
    );
    println!(
        "FIGURE engine.end_to_end {end_to_end_rate:.0} events/s - Engine start to the last of {commands_in_log} commands ({size})"
    );
    if let Some(baseline) = baseline {
        println!(
            "FIGURE engine.end_to_end_speedup {:.2} ratio >=1.5 Engine start to last command against {baseline:.0} events/s, \
             the engine before issue 18 measured in the same conditions ({size})",
            end_to_end_rate / baseline
        );
    }
    println!(
        "FIGURE engine.resident_active {:.0} bytes - Resident memory per member with every actor live ({members} members)",
        rss_active as f64 / members as f64
    );
    println!(
        "FIGURE engine.resident_idle {idle_per_member:.0} bytes <=2048 Resident memory per idle (passivated) member, \
         fresh process from the checkpoint ({members} members)"
    );
    Ok(())
}

/// In a fresh process: start from the checkpoint with every member passivated.
async fn idle_phase(url: String) -> BenchResult<()> {
    let members = env_number("BENCH_MEMBERS", 100_000);
    let layout = layout()?;
    let log: Arc<dyn EventLog> = Arc::new(JetStreamLog::connect(JetStreamOptions::new(url, layout.streams())).await?);
    let rss_before = resident_bytes();
    let engine =
        doorsync_engine::start(options("bench-idle", &layout), Arc::clone(&log), Arc::new(SystemClock)).await?;
    wait(&engine, |stats| {
        stats.len() == partitions() as usize
            && stats.iter().all(|shard| shard.caught_up)
            && stats.iter().map(|shard| shard.known_members as u64).sum::<u64>() >= members
    })
    .await;
    let live: usize = engine.stats().await.iter().map(|shard| shard.live_members).sum();
    let rss = resident_bytes().saturating_sub(rss_before);
    if live != 0 {
        eprintln!("{live} members are live; the idle figure includes them");
    }
    println!("{}", rss as f64 / members as f64);
    engine.shutdown().await;
    Ok(())
}

async fn wait(
    engine: &EngineHandle,
    done: impl Fn(&[doorsync_engine::ShardStats]) -> bool,
) -> Vec<doorsync_engine::ShardStats> {
    let started = Instant::now();
    loop {
        let stats = engine.stats().await;
        if done(&stats) {
            return stats;
        }
        if started.elapsed() > Duration::from_secs(60) {
            eprintln!("gave up waiting after 60 s; the shards report: {stats:#?}");
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn count(log: &Arc<dyn EventLog>, stream: &str) -> BenchResult<usize> {
    let mut replay = log.replay(ReplayRequest::whole(stream)).await?;
    let mut count = 0;
    while let Some(message) = replay.next().await {
        message?;
        count += 1;
    }
    Ok(count)
}

async fn raw_ordered_read(server: &NatsServer, layout: &Layout, total: usize) -> BenchResult<f64> {
    let client = async_nats::connect(server.url()).await?;
    let context = jetstream::new(client);
    let started = Instant::now();
    let stream = context.get_stream(&layout.events).await?;
    let consumer = stream.create_consumer(jetstream::consumer::pull::OrderedConfig::default()).await?;
    let mut messages = consumer.messages().await?;
    let mut read = 0;
    while read < total {
        match messages.next().await {
            Some(message) => {
                message?;
                read += 1;
            }
            None => break,
        }
    }
    Ok(read as f64 / started.elapsed().as_secs_f64())
}
