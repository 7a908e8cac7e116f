//! Messages written straight to the log's streams: bytes that are no doorsync message are skipped
//! and listed, and the partition goes on; a message from a newer doorsync halts its partition.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed step should stop the test loudly")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use doorsync_clock::ManualClock;
use doorsync_engine::EngineHandle;
use doorsync_layout::Layout;
use doorsync_log::{EventLog, NewMessage, Sequence};
use doorsync_proto::{Command, Envelope, KisiGroupId, MemberId, ResourceId};
use support::*;

const ROOM: ResourceId = ResourceId(1);

async fn append_raw(log: &Arc<dyn EventLog>, subject: String, payload: &'static [u8]) -> Sequence {
    let bytes: String = payload.iter().map(|byte| format!("{byte:02x}")).collect();
    let id = format!("{subject}-{bytes}");
    let mut message = NewMessage::new(subject, id, Bytes::from_static(payload));
    message.headers.push((GARBAGE_HEADER.to_owned(), String::new()));
    log.append(message).await.unwrap().sequence
}

/// How many messages the engine skipped, and the stream and sequence of each it lists.
async fn skipped(engine: &EngineHandle) -> (u64, Vec<(String, Sequence)>) {
    let stats = engine.stats().await;
    let total = stats.iter().map(|shard| shard.skipped_messages).sum();
    let mut sequences: Vec<(String, Sequence)> = stats
        .iter()
        .flat_map(|shard| shard.latest_skipped.iter().map(|skipped| (skipped.stream.clone(), skipped.sequence)))
        .collect();
    sequences.sort_unstable();
    (total, sequences)
}

fn room_options(layout: &Layout) -> doorsync_engine::EngineOptions {
    let mut options = options("a", layout);
    options.mapping.resources.insert(ROOM, KisiGroupId(100));
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_any_stream_is_skipped_and_listed_and_the_partition_goes_on() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    let subjects = &layout.subjects;
    append(&store.log, &layout, at(0), member(1)).await;
    let stray = format!("{}.stray", subjects.events_wildcard().trim_end_matches(".>"));
    let mut garbage = vec![
        (layout.events.clone(), append_raw(&store.log, subjects.event(MemberId(1)), b"\xc1 not msgpack").await),
        (layout.events.clone(), append_raw(&store.log, stray, b"{}").await),
        (layout.commands.clone(), append_raw(&store.log, subjects.command(MemberId(1)), b"\x93\x01\x02").await),
        (layout.outcomes.clone(), append_raw(&store.log, subjects.outcome(MemberId(1)), b"hello").await),
    ];
    garbage.sort();
    append(&store.log, &layout, at(0), booking(1, 1, ROOM.0, 30, 90)).await;

    let engine = start(room_options(&layout), &store.log, &clock).await;
    let commands = settled_commands_for(&store.log, &layout, MemberId(1), 2).await;
    assert!(matches!(commands[1], Command::GrantGroup(_)), "the booking after the garbage is granted: {commands:?}");
    assert_eq!(skipped(&engine).await, (4, garbage.clone()));

    garbage.push((layout.events.clone(), append_raw(&store.log, subjects.event(MemberId(1)), b"\xc1 live").await));
    garbage.sort();
    append(&store.log, &layout, at(1), cancel(1, 1)).await;
    let commands = settled_commands_for(&store.log, &layout, MemberId(1), 3).await;
    assert!(matches!(commands[2], Command::RevokeGroup(_)), "an event after live garbage is read: {commands:?}");
    wait_until("the live garbage is listed", || {
        let engine = engine.clone();
        let expected = garbage.len() as u64;
        async move { skipped(&engine).await.0 == expected }
    })
    .await;

    engine.checkpoint().await.unwrap();
    engine.shutdown().await;
    let engine = start(room_options(&layout), &store.log, &clock).await;
    assert_eq!(skipped(&engine).await, (5, garbage), "kept with the checkpoint, each counted once");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_from_a_newer_doorsync_halts_its_partition() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    append(&store.log, &layout, at(0), member(1)).await;
    let mut newer = Envelope::new(at(0), booking(1, 1, ROOM.0, 30, 90)).unwrap();
    newer.version = doorsync_proto::SCHEMA_VERSION + 1;
    let payload = doorsync_proto::encode(&newer).unwrap();
    let message = NewMessage::new(layout.subjects.event(MemberId(1)), "newer".to_owned(), Bytes::from(payload));
    store.log.append(message).await.unwrap();
    append(&store.log, &layout, at(0), booking(1, 2, ROOM.0, 30, 90)).await;

    let started = doorsync_engine::start(room_options(&layout), Arc::clone(&store.log), Arc::new(clock.clone())).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Ok(engine) = started {
        assert!(!engine.caught_up().await, "a partition past a message it cannot read must not catch up");
        engine.shutdown().await;
    }
    assert!(commands(&store.log, &layout).await.is_empty(), "nothing is decided on a history read in part");
}
