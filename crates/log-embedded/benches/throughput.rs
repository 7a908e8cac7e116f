//! Rough numbers for the embedded log on this machine's disk: `cargo bench -p doorsync-log-embedded`.
//! Printed, not asserted: they depend on the disk's fsync latency more than on the code.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark: a failed step should stop it loudly")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use doorsync_log::{ConsumerSpec, EventLog, NewMessage, ReplayRequest, StreamSpec};
use doorsync_log_embedded::{EmbeddedLog, EmbeddedOptions, WriteStats};
use futures::StreamExt;

const PAYLOAD: &[u8] = &[b'x'; 300];

fn message(n: usize) -> NewMessage {
    NewMessage::new(format!("bench.evt.{}.{n}", n % 16), format!("bench-{n}"), Bytes::from_static(PAYLOAD))
}

/// Prints the rate, and the same as a line for `scripts/bench-report.py`:
/// `FIGURE <key> <value> <unit> <target> <description>`.
fn report(key: &str, what: &str, count: usize, elapsed: Duration) {
    let rate = count as f64 / elapsed.as_secs_f64();
    println!("{what:<48} {count:>7} in {:>8.1} ms = {rate:>9.0}/s", elapsed.as_secs_f64() * 1e3);
    println!("FIGURE embedded.{key} {rate:.0} messages/s - Embedded log (redb, fsync per commit): {what}");
}

/// How many durable commits the appends between `before` and `after` took: one each when they
/// come one at a time, far fewer when they come together and share commits.
fn report_commits(key: &str, what: &str, before: WriteStats, after: WriteStats) {
    let commits = after.commits - before.commits;
    let appends = after.appends - before.appends;
    let per_append = commits as f64 / appends.max(1) as f64;
    println!("{what:<48} {appends:>7} appends in {commits} commits = {per_append:.3} commits per append");
    println!(
        "FIGURE embedded.{key}_commits_per_append {per_append:.3} commits - Embedded log durable commits per append: \
         {what}"
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let streams = vec![StreamSpec::new("BENCH", ["bench.>"])];
    let log = EmbeddedLog::open(EmbeddedOptions::new(dir.path().join("bench.redb"), streams)).unwrap();
    let mut next = 0;

    let before = log.write_stats();
    let started = Instant::now();
    for n in next..next + 200 {
        log.append(message(n)).await.unwrap();
    }
    report("append_single", "append, one at a time", 200, started.elapsed());
    report_commits("append_single", "append, one at a time", before, log.write_stats());
    next += 200;

    let batch: Vec<_> = (next..next + 10_000).map(message).collect();
    let started = Instant::now();
    for result in log.append_batch(batch).await {
        result.unwrap();
    }
    report("append_batch", "append_batch of 10,000", 10_000, started.elapsed());
    next += 10_000;

    let shared: Arc<dyn EventLog> = Arc::new(log.clone());
    let before = log.write_stats();
    let started = Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|task| {
            let log = Arc::clone(&shared);
            tokio::spawn(async move {
                for n in 0..100 {
                    log.append(message(next + task * 100 + n)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    report("append_concurrent", "append from 100 concurrent tasks", 10_000, started.elapsed());
    report_commits("append_concurrent", "append from 100 concurrent tasks", before, log.write_stats());
    drop(shared);
    next += 10_000;

    let started = Instant::now();
    let replayed = log.replay(ReplayRequest::whole("BENCH")).await.unwrap().count().await;
    report("replay", "replay of the whole stream", replayed, started.elapsed());
    assert_eq!(replayed, next);

    let started = Instant::now();
    let partition = log.replay(ReplayRequest::whole("BENCH").filtered(["bench.evt.3.*"])).await.unwrap().count().await;
    report("replay_partition", "replay of one partition in 16 (scan)", partition, started.elapsed());

    let mut consumer = log.durable_consumer(ConsumerSpec::new("BENCH", "bench")).await.unwrap();
    let started = Instant::now();
    for _ in 0..1_000 {
        consumer.next().await.unwrap().ack().await.unwrap();
    }
    report("consumer_ack", "consumer next + ack, one at a time", 1_000, started.elapsed());
    drop(consumer);

    log.close().await;
}
