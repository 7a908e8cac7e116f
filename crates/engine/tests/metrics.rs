//! What the engine reports for the operator's metrics: the window edge each command is due to,
//! and how far each partition's replay has to go.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed step should stop the test loudly")]

mod support;

use std::sync::Arc;

use doorsync_clock::ManualClock;
use doorsync_layout::Layout;
use doorsync_log::{EventLog, ReplayRequest};
use doorsync_proto::{Command, MemberId, Timestamp, WireMessage};
use futures::TryStreamExt;
use support::*;

/// Each of the member's commands in the log, by type, with the window edge it carries.
async fn edges_for(
    log: &Arc<dyn EventLog>,
    layout: &Layout,
    member: MemberId,
) -> Vec<(&'static str, Option<Timestamp>)> {
    let stored: Vec<_> = log.replay(ReplayRequest::whole(&layout.commands)).await.unwrap().try_collect().await.unwrap();
    stored
        .iter()
        .map(|message| doorsync_proto::decode::<Command>(&message.payload).unwrap())
        .filter(|envelope| envelope.message.member() == member)
        .map(|envelope| (envelope.message.tag(), envelope.window_edge))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_carry_the_window_edge_they_are_due_to() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    append(&store.log, &layout, at(0), mapping(1, 100)).await;
    append(&store.log, &layout, at(0), member(7)).await;
    // Written ahead: the window opens at minute 45 (an hour's booking, 15 minutes' lead).
    append(&store.log, &layout, at(0), booking(7, 1, 1, 60, 120)).await;
    // Arrives after its window opened at minute -5: late for that edge.
    append(&store.log, &layout, at(0), member(8)).await;
    append(&store.log, &layout, at(0), booking(8, 2, 1, 10, 30)).await;

    let engine = start(options("a", &layout), &store.log, &clock).await;
    settled_commands_for(&store.log, &layout, MemberId(7), 2).await;
    settled_commands_for(&store.log, &layout, MemberId(8), 2).await;
    assert_eq!(edges_for(&store.log, &layout, MemberId(7)).await, [("ensure_user", None), ("grant_group", None)]);
    assert_eq!(
        edges_for(&store.log, &layout, MemberId(8)).await,
        [("ensure_user", None), ("grant_group", Some(at(-5)))]
    );

    // Woken at the end of the lag, minute 135: revoked and suspended for that edge.
    clock.set(at(135));
    settled_commands_for(&store.log, &layout, MemberId(7), 4).await;
    assert_eq!(
        edges_for(&store.log, &layout, MemberId(7)).await[2..],
        [("revoke_group", Some(at(135))), ("suspend_user", Some(at(135)))]
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caught_up_partition_has_no_replay_left_and_says_when_it_started() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    append(&store.log, &layout, at(0), mapping(1, 100)).await;
    for id in 1..=12 {
        append(&store.log, &layout, at(0), member(id)).await;
    }
    let engine = start(options("a", &layout), &store.log, &clock).await;
    let stats = engine.stats().await;
    assert_eq!(stats.len(), 4, "one engine owns every partition");
    for shard in &stats {
        assert!(shard.caught_up, "{shard:?}");
        assert_eq!(shard.replay_behind_messages, Some(0), "{shard:?}");
        assert_eq!(shard.started_at, Some(at(0)), "{shard:?}");
        assert_eq!(shard.replay_seconds, 0, "the manual clock did not move while it replayed: {shard:?}");
    }
    engine.shutdown().await;
}
