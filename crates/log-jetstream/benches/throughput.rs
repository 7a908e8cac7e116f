//! The JetStream backend against raw async-nats doing the same work, in the same run, on the
//! same server: appends with 1,000 acknowledgements in flight, and an ordered replay of the
//! whole stream. Prints events/s for both and the ratio ours/raw (target: at least 0.8).
//!
//! Rounds alternate between the two so that a noisy neighbour hurts both alike; the median
//! round is reported. `BENCH_EVENTS` and `BENCH_ROUNDS` change the size.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use doorsync_log::{EventLog, NewMessage, ReplayRequest, StreamSpec};
use doorsync_log_jetstream::{JetStreamLog, JetStreamOptions};
use doorsync_proto::{BookingChanged, BookingId, Envelope, Event, MemberId, ResourceId, Subjects, Timestamp};
use doorsync_test_support::NatsServer;
use futures::StreamExt;

const IN_FLIGHT: usize = 1_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let events = env_number("BENCH_EVENTS", 100_000);
    let rounds = env_number("BENCH_ROUNDS", 3);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(events, rounds))
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// Realistic messages: encoded booking events for distinct members, spread over 64 partitions.
fn workload(round: usize, events: usize) -> BenchResult<Vec<(String, String, Bytes)>> {
    let subjects = Subjects::new("ds", 64)?;
    (0..events)
        .map(|n| {
            let member = MemberId((round * events + n) as u64);
            let start = 1_800_000_000_000 + n as i64 * 60_000;
            let event = Event::BookingChanged(BookingChanged {
                member,
                booking: BookingId(n as u64),
                resource: ResourceId(7),
                starts_at: Timestamp::from_unix_millis(start),
                ends_at: Timestamp::from_unix_millis(start + 3_600_000),
                tentative: false,
            });
            let envelope = Envelope::new(Timestamp::from_unix_millis(start), event)?;
            let payload = Bytes::from(doorsync_proto::encode(&envelope)?);
            Ok((subjects.event(member), envelope.id.to_string(), payload))
        })
        .collect()
}

#[derive(Default)]
struct Figures {
    append: Vec<f64>,
    replay: Vec<f64>,
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

async fn run(events: usize, rounds: usize) -> BenchResult<()> {
    let server = NatsServer::start().await?;
    let mut ours = Figures::default();
    let mut raw = Figures::default();
    for round in 0..rounds {
        let messages = workload(round, events)?;
        let ours_stream = format!("OURS_{round}");
        let raw_stream = format!("RAW_{round}");
        let specs = vec![
            StreamSpec::new(&ours_stream, [format!("ours{round}.>")]),
            StreamSpec::new(&raw_stream, [format!("raw{round}.>")]),
        ];
        let log = JetStreamLog::connect(JetStreamOptions::new(server.url(), specs)).await?;
        let context = jetstream::ContextBuilder::new().max_ack_inflight(5_000).build(log.client().clone());
        let ours_prefix = format!("ours{round}");
        let raw_prefix = format!("raw{round}");
        // Whoever goes first in a round may meet a colder server; take turns.
        if round % 2 == 0 {
            ours.append.push(append_ours(&log, &messages, &ours_prefix).await?);
            raw.append.push(append_raw(&context, &messages, &raw_prefix).await?);
            ours.replay.push(replay_ours(&log, &ours_stream, events).await?);
            raw.replay.push(replay_raw(&context, &raw_stream, events).await?);
        } else {
            raw.append.push(append_raw(&context, &messages, &raw_prefix).await?);
            ours.append.push(append_ours(&log, &messages, &ours_prefix).await?);
            raw.replay.push(replay_raw(&context, &raw_stream, events).await?);
            ours.replay.push(replay_ours(&log, &ours_stream, events).await?);
        }
    }

    let append = (median(&mut ours.append), median(&mut raw.append));
    let replay = (median(&mut ours.replay), median(&mut raw.replay));
    println!();
    println!("JetStream event log vs raw async-nats: {events} events x {rounds} rounds, median round");
    println!("{:<42} {:>14} {:>14} {:>10}", "", "ours events/s", "raw events/s", "ours/raw");
    let row =
        |name: &str, (ours, raw): (f64, f64)| println!("{name:<42} {ours:>14.0} {raw:>14.0} {:>10.2}", ours / raw);
    row(&format!("append, {IN_FLIGHT} acks in flight"), append);
    row("ordered replay of the whole stream", replay);
    // The same figures for `scripts/bench-report.py`: FIGURE <key> <value> <unit> <target> <description>.
    let size = format!("{events} events, median of {rounds} rounds");
    for (key, what, (ours, raw)) in [
        ("append", format!("append with {IN_FLIGHT} acks in flight"), append),
        ("replay", "ordered replay of the whole stream".to_owned(), replay),
    ] {
        println!("FIGURE jetstream.{key}.ours {ours:.0} events/s - JetStream log, {what} ({size})");
        println!("FIGURE jetstream.{key}.raw {raw:.0} events/s - Raw async-nats, {what}, same run");
        println!("FIGURE jetstream.{key}.ratio {:.2} ratio >=0.8 JetStream log / raw async-nats, {what}", ours / raw);
    }
    Ok(())
}

async fn append_ours(log: &JetStreamLog, messages: &[(String, String, Bytes)], prefix: &str) -> BenchResult<f64> {
    let messages: Vec<NewMessage> = messages
        .iter()
        .map(|(subject, id, payload)| NewMessage::new(format!("{prefix}.{subject}"), id, payload.clone()))
        .collect();
    let started = Instant::now();
    for chunk in messages.chunks(IN_FLIGHT) {
        for answer in log.append_batch(chunk.to_vec()).await {
            answer?;
        }
    }
    Ok(rate(messages.len(), started.elapsed()))
}

async fn append_raw(
    context: &jetstream::Context,
    messages: &[(String, String, Bytes)],
    prefix: &str,
) -> BenchResult<f64> {
    let subjects: Vec<String> = messages.iter().map(|(subject, _, _)| format!("{prefix}.{subject}")).collect();
    let started = Instant::now();
    for (chunk, subjects) in messages.chunks(IN_FLIGHT).zip(subjects.chunks(IN_FLIGHT)) {
        let mut pending = Vec::with_capacity(chunk.len());
        for ((_, id, payload), subject) in chunk.iter().zip(subjects) {
            let publish = jetstream::message::PublishMessage::build().payload(payload.clone()).message_id(id);
            pending.push(context.send_publish(subject.clone(), publish).await?.into_future());
        }
        for answer in futures::future::join_all(pending).await {
            answer?;
        }
    }
    Ok(rate(messages.len(), started.elapsed()))
}

async fn replay_ours(log: &JetStreamLog, stream: &str, events: usize) -> BenchResult<f64> {
    let started = Instant::now();
    let mut replay = log.replay(ReplayRequest::whole(stream)).await?;
    let mut count = 0;
    while let Some(message) = replay.next().await {
        message?;
        count += 1;
    }
    assert_eq!(count, events, "our replay read every event");
    Ok(rate(events, started.elapsed()))
}

async fn replay_raw(context: &jetstream::Context, stream: &str, events: usize) -> BenchResult<f64> {
    let started = Instant::now();
    let stream = context.get_stream(stream).await?;
    let consumer = stream.create_consumer(jetstream::consumer::pull::OrderedConfig::default()).await?;
    let mut messages = consumer.messages().await?;
    let mut count = 0;
    while count < events {
        match messages.next().await {
            Some(message) => {
                message?;
                count += 1;
            }
            None => break,
        }
    }
    assert_eq!(count, events, "the raw replay read every event");
    Ok(rate(events, started.elapsed()))
}

fn rate(events: usize, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
