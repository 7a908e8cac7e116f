//! What the writer costs in Kisi calls and how much of its request budget it uses, against the
//! Kisi simulator over loopback on the system clock:
//!
//! * backlog: commands waiting for 200 members, as after an outage (a grant each, half of them
//!   moved with a revoke in between, a quarter in a second group and out again), drained with
//!   the rate limits lifted: Kisi calls against the fewest that make Kisi match (target: equal);
//! * live changes: three new windows for every member, appended while the writer works: calls
//!   against the fewest (one per member) and one per command;
//! * limiter: a backlog needing about 100 calls, drained at the writer's default of 4 requests
//!   in any rolling second against the simulator's 5 (Kisi's limit, a sliding window that
//!   answers 429): requests per second achieved between the first call and the last, against the
//!   4 a second allows (target: at least 95%), and 429s (target: none); then the same backlog
//!   with the writer at 5, Kisi's limit itself: 429s (target: none). Each runs in real time
//!   (about 25 s and 20 s): the figures are about what the writer achieves with real HTTP
//!   exchanges and intake, which a manual clock would leave out.
//!
//! The same workload as the `churn` test, printed here as figures. `BENCH_LIMITER_MEMBERS`
//! (default 33: 1 + 3 × 33 = 100 calls) sizes the limiter run. Besides the text, each figure is
//! printed as a `FIGURE <key> <value> <unit> <target> <description>` line for
//! `scripts/bench-report.py`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark should fail loudly at the first surprise")]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use doorsync_clock::SystemClock;
use doorsync_proto::KisiGroupId;
use doorsync_writer::WriterOptions;
use support::{Harness, WAIT, email, ensure, grant, home_group, outage_backlog, seconds, settled};

const MEMBERS: u64 = 200;
const LIVE_ROUNDS: u64 = 3;
/// A limit far above anything the writer reaches: the call counts are what is measured.
const UNLIMITED_REQUESTS_PER_SECOND: u32 = 100_000;
/// Kisi's own limit, which the simulator enforces.
const KISI_REQUESTS_PER_SECOND: u32 = 5;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    calls_against_the_fewest().await;
    let default_rate = WriterOptions::new("writer-bench", "main").requests_per_second;
    limiter_utilisation(default_rate).await;
    limiter_utilisation(KISI_REQUESTS_PER_SECOND).await;
}

async fn calls_against_the_fewest() {
    let harness = Harness::with(Arc::new(SystemClock), UNLIMITED_REQUESTS_PER_SECOND).await;
    let groups: [KisiGroupId; 3] = std::array::from_fn(|index| harness.kisi.add_group(&format!("Group {index}")));
    let backlog = outage_backlog(MEMBERS, &groups);
    let mut commands = backlog.len() as u64;
    for command in backlog {
        harness.send(command).await;
    }
    let mut options = harness.options("writer-bench");
    options.requests_per_second = UNLIMITED_REQUESTS_PER_SECOND;
    let writer = harness.start(options).await;
    let started = Instant::now();
    settled(&writer, commands).await;
    let backlog_seconds = started.elapsed().as_secs_f64();
    let fewest = 1 + 3 * MEMBERS;
    let backlog_calls = harness.kisi.calls().total();
    assert_eq!(harness.kisi.assignments().len(), MEMBERS as usize, "every member holds one assignment");

    harness.kisi.reset_calls();
    for round in 1..=LIVE_ROUNDS {
        for member in 1..=MEMBERS {
            let until = seconds(2_000_086_400 + i64::try_from(round).unwrap() * 3_600);
            harness.send(grant(member, home_group(member, &groups), None, until)).await;
            commands += 1;
        }
    }
    settled(&writer, commands).await;
    let live_calls = harness.kisi.calls().total();
    let live_commands = LIVE_ROUNDS * MEMBERS;
    writer.shutdown().await;

    let backlog_commands = commands - live_commands;
    println!();
    println!("Kisi writer against the Kisi simulator, {MEMBERS} members, rate limits lifted");
    println!(
        "  backlog of {backlog_commands} commands     {backlog_calls:>6} Kisi calls, fewest possible {fewest} \
         (settled in {backlog_seconds:.1} s)"
    );
    println!(
        "  {live_commands} live window changes   {live_calls:>6} Kisi calls, fewest possible {MEMBERS}, \
         one per command {live_commands}"
    );
    println!(
        "FIGURE writer.backlog_calls {backlog_calls} calls ={fewest} Kisi calls for a backlog of {backlog_commands} \
         commands for {MEMBERS} members (fewest possible: {fewest})"
    );
    println!(
        "FIGURE writer.live_calls {live_calls} calls - Kisi calls for {live_commands} live window changes for \
         {MEMBERS} members, appended while the writer works (fewest possible: {MEMBERS}; one per command: \
         {live_commands})"
    );
}

/// Drains a backlog with the writer at `per_second` requests in any rolling second against the
/// simulator at Kisi's own limit.
async fn limiter_utilisation(per_second: u32) {
    let members: u64 = std::env::var("BENCH_LIMITER_MEMBERS").ok().and_then(|value| value.parse().ok()).unwrap_or(33);
    let harness = Harness::with(Arc::new(SystemClock), KISI_REQUESTS_PER_SECOND).await;
    let group = harness.kisi.add_group("Main entrance");
    for member in 1..=members {
        harness.send(ensure(member, &email(member))).await;
        harness.send(grant(member, group, None, None)).await;
    }
    let mut options = harness.options("writer-bench");
    options.requests_per_second = per_second;
    let expected_calls = 1 + 3 * members;
    let writer = harness.start(options).await;

    // The simulator counts a call when it answers; polling every millisecond times the first
    // and the last to within a millisecond or two, alike at both ends.
    let mut first_call = None;
    let last_call = loop {
        let calls = harness.kisi.calls().total();
        let now = Instant::now();
        if calls >= 1 && first_call.is_none() {
            first_call = Some(now);
        }
        if calls >= expected_calls {
            break now;
        }
        assert!(
            first_call.is_none_or(|first| now.duration_since(first) < WAIT * 4),
            "the writer stalled after {calls} of {expected_calls} calls"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    settled(&writer, 2 * members).await;
    writer.shutdown().await;
    let calls = harness.kisi.calls();
    let first_call = first_call.expect("the loop saw the first call");
    let span = last_call.duration_since(first_call).as_secs_f64();
    // Calls after the first, over the time since it: the sustained rate. The first second's
    // calls go back to back, so a short backlog shows a little more than the limit.
    let achieved = (calls.total() - 1) as f64 / span;
    let utilisation = 100.0 * achieved / f64::from(per_second);
    let throttled = calls.status(429);

    println!();
    println!(
        "Kisi writer limiter: {members} members' backlog, {} calls, writer at {per_second} in any rolling second, \
         simulator at Kisi's {KISI_REQUESTS_PER_SECOND}, system clock",
        calls.total()
    );
    println!(
        "  achieved                {achieved:>8.3} requests/s over {span:.2} s between the first call and the last"
    );
    println!("  utilisation             {utilisation:>8.1} % of {per_second} per rolling second");
    println!("  answered 429            {throttled:>8}");
    if per_second == KISI_REQUESTS_PER_SECOND {
        println!(
            "FIGURE writer.limiter_429_at_kisi_limit {throttled} responses =0 429 answers from Kisi while draining \
             with the writer at Kisi's own {per_second} in any rolling second"
        );
        return;
    }
    println!(
        "FIGURE writer.limiter_rate {achieved:.3} requests/s - Requests/s achieved draining a backlog of {} calls \
         (writer at {per_second} in any rolling second, Kisi simulator at {KISI_REQUESTS_PER_SECOND}, real time)",
        calls.total()
    );
    println!(
        "FIGURE writer.limiter_utilisation {utilisation:.1} % >=95 Limiter utilisation: achieved requests/s over \
         the {per_second} a rolling second allows, draining a backlog"
    );
    println!(
        "FIGURE writer.limiter_429 {throttled} responses =0 429 answers from Kisi while draining at {per_second} in \
         any rolling second"
    );
}
