//! The engine on the embedded log with a manual clock: commands from events and from time,
//! replay into a fresh engine, crashed members, passivation, restart from a checkpoint.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed step should stop the test loudly")]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use doorsync_clock::ManualClock;
use doorsync_log::Sequence;
use doorsync_proto::{Command, EnsureUser, GrantGroup, KisiGroupId, MemberId, RevokeGroup, SuspendUser};
use support::*;

fn grant(member: u64, group: u64, from: i64, until: i64, basis: Sequence) -> Command {
    Command::GrantGroup(GrantGroup {
        member: MemberId(member),
        group: KisiGroupId(group),
        valid_from: Some(at(from)),
        valid_until: Some(at(until)),
        basis: basis.0,
    })
}

fn ensure(member: u64, basis: Sequence) -> Command {
    Command::EnsureUser(EnsureUser {
        member: MemberId(member),
        email: format!("m{member}@example.test"),
        name: format!("Member {member}"),
        basis: basis.0,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_is_granted_ahead_and_revoked_after_with_lead_and_lag() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    append(&store.log, &layout, at(0), mapping(1, 100)).await;
    append(&store.log, &layout, at(0), member(7)).await;
    let basis = append(&store.log, &layout, at(0), booking(7, 1, 1, 60, 120)).await;

    let engine = start(options("a", &layout), &store.log, &clock).await;
    let granted = settled_commands_for(&store.log, &layout, MemberId(7), 2).await;
    assert_eq!(granted, vec![ensure(7, basis), grant(7, 100, 45, 135, basis)]);

    clock.set(at(134));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(commands_for(&store.log, &layout, MemberId(7)).await.len(), 2, "nothing changes before the lag ends");

    clock.set(at(135));
    let all = settled_commands_for(&store.log, &layout, MemberId(7), 4).await;
    assert_eq!(
        all[2..],
        [
            Command::RevokeGroup(RevokeGroup { member: MemberId(7), group: KisiGroupId(100), basis: basis.0 }),
            Command::SuspendUser(SuspendUser { member: MemberId(7), basis: basis.0 }),
        ]
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_while_running_change_access_at_once() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    append(&store.log, &layout, at(0), mapping(1, 100)).await;
    let engine = start(options("a", &layout), &store.log, &clock).await;

    append(&store.log, &layout, at(0), member(8)).await;
    let booked = append(&store.log, &layout, at(0), booking(8, 2, 1, 30, 90)).await;
    let granted = settled_commands_for(&store.log, &layout, MemberId(8), 2).await;
    assert_eq!(granted, vec![ensure(8, booked), grant(8, 100, 15, 105, booked)]);

    let moved = append(&store.log, &layout, at(1), booking(8, 2, 1, 200, 260)).await;
    let after_move = settled_commands_for(&store.log, &layout, MemberId(8), 3).await;
    assert_eq!(after_move[2], grant(8, 100, 185, 275, moved));

    let cancelled = append(&store.log, &layout, at(2), cancel(8, 2)).await;
    let after_cancel = settled_commands_for(&store.log, &layout, MemberId(8), 5).await;
    assert_eq!(
        after_cancel[3..],
        [
            Command::RevokeGroup(RevokeGroup { member: MemberId(8), group: KisiGroupId(100), basis: cancelled.0 }),
            Command::SuspendUser(SuspendUser { member: MemberId(8), basis: cancelled.0 }),
        ]
    );
    engine.shutdown().await;
}

/// Builds some history with the first engine, then replays the whole log into an engine with
/// no snapshot and no checkpoint: the same states, bit for bit, and not one new command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_engine_replaying_the_whole_log_reaches_the_same_state_and_emits_nothing() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    append(&store.log, &layout, at(0), mapping(1, 100)).await;
    append(&store.log, &layout, at(0), mapping(2, 200)).await;
    let first = start(options("first", &layout), &store.log, &clock).await;
    let members: Vec<u64> = (1..=24).collect();
    for &id in &members {
        append(&store.log, &layout, at(0), member(id)).await;
        append(&store.log, &layout, at(0), booking(id, id, 1 + id % 2, 10 + id as i64, 70 + id as i64)).await;
        if id % 4 == 0 {
            append(&store.log, &layout, at(1), cancel(id, id)).await;
        }
    }
    clock.set(at(50));
    for &id in &members {
        settled_commands_for(&store.log, &layout, MemberId(id), 1).await;
    }
    let before = digests(&first, &members).await;
    first.shutdown().await;
    let commands_before = commands(&store.log, &layout).await.len();

    let mut fresh_layout = layout.clone();
    fresh_layout.engine_bucket = "TEST_FRESH_ENGINE".into();
    fresh_layout.leases_bucket = "TEST_FRESH_LEASES".into();
    let fresh = start(options("fresh", &fresh_layout), &store.log, &clock).await;
    assert_eq!(digests(&fresh, &members).await, before);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(commands(&store.log, &layout).await.len(), commands_before, "the replay emitted commands");
    fresh.shutdown().await;
}

async fn digests(engine: &doorsync_engine::EngineHandle, members: &[u64]) -> BTreeMap<u64, [u8; 32]> {
    let mut digests = BTreeMap::new();
    for &id in members {
        let state = engine.member(MemberId(id)).await.unwrap().unwrap();
        digests.insert(id, doorsync_access::state_digest(&state));
    }
    digests
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_member_restarts_without_losing_or_repeating_a_command() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    append(&store.log, &layout, at(0), mapping(1, 100)).await;
    append(&store.log, &layout, at(0), member(9)).await;
    let first = append(&store.log, &layout, at(0), booking(9, 1, 1, 60, 120)).await;
    let engine = start(options("a", &layout), &store.log, &clock).await;
    settled_commands_for(&store.log, &layout, MemberId(9), 2).await;
    engine.checkpoint().await.unwrap();

    // Crash it, then give it news it must not miss, then crash it again while news arrives.
    engine.kill_member_actor(MemberId(9)).await.unwrap();
    let moved = append(&store.log, &layout, at(1), booking(9, 1, 1, 300, 360)).await;
    engine.kill_member_actor(MemberId(9)).await.unwrap();
    let second = append(&store.log, &layout, at(2), booking(9, 2, 1, 320, 420)).await;
    let commands = settled_commands_for(&store.log, &layout, MemberId(9), 4).await;
    assert_eq!(commands[..2], [ensure(9, first), grant(9, 100, 45, 135, first)]);
    assert_eq!(commands.last(), Some(&grant(9, 100, 285, 435, second)));
    assert!(
        commands[2..commands.len() - 1].is_empty()
            || commands[2..commands.len() - 1] == [grant(9, 100, 285, 375, moved)],
        "only the intermediate window may appear between: {commands:?}"
    );
    let mut unique = commands.clone();
    unique.dedup();
    assert_eq!(unique, commands, "a command was repeated");
    let stats = engine.stats().await;
    assert!(stats.iter().map(|shard| shard.member_restarts).sum::<u64>() >= 1);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_members_are_passivated_and_woken_from_their_snapshot() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    append(&store.log, &layout, at(0), mapping(1, 100)).await;
    for id in 1..=6 {
        append(&store.log, &layout, at(0), member(id)).await;
        append(&store.log, &layout, at(0), booking(id, id, 1, 30, 60)).await;
    }
    let mut options = options("a", &layout);
    options.settings.passivate_after = Duration::from_secs(60);
    let engine = start(options, &store.log, &clock).await;
    for id in 1..=6 {
        settled_commands_for(&store.log, &layout, MemberId(id), 2).await;
    }
    clock.set(at(2));
    wait_until("every member is passivated", || {
        let engine = engine.clone();
        async move {
            let stats = engine.stats().await;
            stats.iter().map(|shard| shard.live_members).sum::<usize>() == 0
                && stats.iter().map(|shard| shard.known_members).sum::<usize>() == 6
        }
    })
    .await;

    clock.set(at(75));
    for id in 1..=6 {
        let commands = settled_commands_for(&store.log, &layout, MemberId(id), 4).await;
        assert!(matches!(commands[2], Command::RevokeGroup(_)), "member {id}: {commands:?}");
        assert!(matches!(commands[3], Command::SuspendUser(_)), "member {id}: {commands:?}");
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_engine_resumes_from_its_checkpoint() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    append(&store.log, &layout, at(0), mapping(1, 100)).await;
    append(&store.log, &layout, at(0), member(3)).await;
    let first = append(&store.log, &layout, at(0), booking(3, 1, 1, 30, 60)).await;
    let engine = start(options("a", &layout), &store.log, &clock).await;
    settled_commands_for(&store.log, &layout, MemberId(3), 2).await;
    engine.shutdown().await;

    let later = append(&store.log, &layout, at(5), booking(3, 2, 1, 600, 660)).await;
    let engine = start(options("a", &layout), &store.log, &clock).await;
    let commands = settled_commands_for(&store.log, &layout, MemberId(3), 2).await;
    assert_eq!(commands, vec![ensure(3, first), grant(3, 100, 15, 75, first)], "nothing new is due yet");
    clock.set(at(75));
    let commands = settled_commands_for(&store.log, &layout, MemberId(3), 3).await;
    assert_eq!(commands[2], grant(3, 100, 585, 675, later));
    engine.shutdown().await;
}

/// The same grant, withdrawn by unmapping its group and due again when the group is mapped
/// back, is a new command: were its id the first grant's, the log would drop it as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_unmapped_and_mapped_again_is_granted_again() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    append(&store.log, &layout, at(0), mapping(1, 100)).await;
    append(&store.log, &layout, at(0), member(5)).await;
    let booked = append(&store.log, &layout, at(0), booking(5, 1, 1, 30, 90)).await;
    let engine = start(options("a", &layout), &store.log, &clock).await;
    settled_commands_for(&store.log, &layout, MemberId(5), 2).await;

    let unmapped = doorsync_proto::Event::MappingChanged(doorsync_proto::MappingChanged {
        source: doorsync_proto::MappingSource::Resource(doorsync_proto::ResourceId(1)),
        group: None,
    });
    append(&store.log, &layout, at(1), unmapped).await;
    settled_commands_for(&store.log, &layout, MemberId(5), 4).await;
    append(&store.log, &layout, at(2), mapping(1, 100)).await;
    let commands = settled_commands_for(&store.log, &layout, MemberId(5), 6).await;
    assert!(matches!(commands[2], Command::RevokeGroup(_)), "{commands:?}");
    assert!(matches!(commands[3], Command::SuspendUser(_)), "{commands:?}");
    assert_eq!(commands[1], grant(5, 100, 15, 105, booked));
    assert!(commands[4..].contains(&grant(5, 100, 15, 105, booked)), "granted again: {commands:?}");
    engine.shutdown().await;
}

/// What the writer reports comes back through the outcome stream into the member's state, live
/// and after a restart from the checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_from_the_writer_are_folded_into_the_member() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    append(&store.log, &layout, at(0), mapping(1, 100)).await;
    append(&store.log, &layout, at(0), member(4)).await;
    append(&store.log, &layout, at(0), booking(4, 1, 1, 30, 90)).await;
    let engine = start(options("a", &layout), &store.log, &clock).await;
    settled_commands_for(&store.log, &layout, MemberId(4), 2).await;

    let linked = doorsync_proto::Outcome::UserLinked(doorsync_proto::UserLinked {
        member: MemberId(4),
        kisi_user: doorsync_proto::KisiUserId(555),
        created_by_doorsync: true,
    });
    append_outcome(&store.log, &layout, at(1), linked).await;
    wait_until("the outcome is folded", || {
        let engine = engine.clone();
        async move {
            let state = engine.member(MemberId(4)).await.unwrap().unwrap();
            state.kisi().user == Some(doorsync_proto::KisiUserId(555))
        }
    })
    .await;
    engine.shutdown().await;

    let restarted = start(options("a", &layout), &store.log, &clock).await;
    let state = restarted.member(MemberId(4)).await.unwrap().unwrap();
    assert_eq!(state.kisi().user, Some(doorsync_proto::KisiUserId(555)));
    assert!(state.kisi().created_by_doorsync);
    restarted.shutdown().await;
}

/// A stopped engine lets go of the log entirely (its shards' live followers included), so the
/// embedded log's file can be closed and opened again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_engine_holds_no_handle_on_the_log() {
    let layout = layout();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let embedded =
        doorsync_log_embedded::EmbeddedLog::open(doorsync_log_embedded::EmbeddedOptions::new(&path, layout.streams()))
            .unwrap();
    let log: std::sync::Arc<dyn doorsync_log::EventLog> = std::sync::Arc::new(embedded.clone());
    let clock = ManualClock::new(at(0));
    append(&log, &layout, at(0), member(5)).await;
    let engine = start(options("a", &layout), &log, &clock).await;
    wait_until("the engine caught up", || {
        let engine = engine.clone();
        async move { engine.caught_up().await }
    })
    .await;
    engine.shutdown().await;
    drop(log);
    tokio::time::timeout(Duration::from_secs(20), embedded.close())
        .await
        .expect("every handle on the log is gone once the engine has stopped");
}

/// On a one-thread runtime the engine's lease task has not run yet when `start` returns: a
/// shutdown at once must still stop it, not wait for the next renewal.
#[tokio::test]
async fn an_engine_shut_down_right_after_it_started_stops() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    let mut options = options("a", &layout);
    options.settings.lease_ttl = Duration::from_secs(3_600);
    let engine =
        doorsync_engine::start(options, std::sync::Arc::clone(&store.log), std::sync::Arc::new(clock)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), engine.shutdown())
        .await
        .expect("the engine stops although its lease task never ran before the shutdown");
}
