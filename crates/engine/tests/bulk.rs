//! Which commands the engine marks bulk work (`doorsync_layout::BULK_HEADER`), for the writer to
//! do after live changes: those from events the ingestor marked bulk, from history read at start,
//! and from a mapping's re-evaluation; never those from a webhook's event or a window edge.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed step should stop the test loudly")]

mod support;

use std::sync::Arc;

use bytes::Bytes;
use doorsync_clock::ManualClock;
use doorsync_layout::Layout;
use doorsync_log::{EventLog, NewMessage, ReplayRequest};
use doorsync_proto::{Command, Envelope, Event, MemberId, Timestamp};
use futures::StreamExt;
use support::*;

const MEMBER: MemberId = MemberId(7);

/// Appends an event as the ingestor's poller or sweeper does: marked bulk.
async fn append_bulk(log: &Arc<dyn EventLog>, layout: &Layout, occurred_at: Timestamp, event: Event) {
    let envelope = Envelope::new(occurred_at, event.clone()).unwrap();
    let payload = Bytes::from(doorsync_proto::encode(&envelope).unwrap());
    let mut message = NewMessage::new(layout.subjects.subject_for(&event), envelope.id.to_string(), payload);
    message.headers.push(doorsync_layout::bulk_header());
    log.append(message).await.unwrap();
}

/// The member's commands, each with whether it is marked bulk.
async fn marked_commands(log: &Arc<dyn EventLog>, layout: &Layout, at_least: usize) -> Vec<(Command, bool)> {
    settled_commands_for(log, layout, MEMBER, at_least).await;
    let mut replay = log.replay(ReplayRequest::whole(&layout.commands)).await.unwrap();
    let mut marked = Vec::new();
    while let Some(message) = replay.next().await {
        let message = message.unwrap();
        let command = doorsync_proto::decode::<Command>(&message.payload).unwrap().message;
        if command.member() == MEMBER {
            marked.push((command, doorsync_layout::is_bulk(&message.headers)));
        }
    }
    marked
}

fn kinds(marked: &[(Command, bool)]) -> Vec<(&'static str, bool)> {
    marked
        .iter()
        .map(|(command, bulk)| {
            let kind = match command {
                Command::EnsureUser(_) => "ensure",
                Command::GrantGroup(_) => "grant",
                Command::RevokeGroup(_) => "revoke",
                Command::SuspendUser(_) => "suspend",
                _ => "other",
            };
            (kind, *bulk)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_read_at_start_is_bulk_and_the_window_edge_after_it_is_not() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    append(&store.log, &layout, at(0), mapping(1, 100)).await;
    append(&store.log, &layout, at(0), member(7)).await;
    append(&store.log, &layout, at(0), booking(7, 1, 1, 60, 120)).await;
    let engine = start(options("a", &layout), &store.log, &clock).await;
    let granted = marked_commands(&store.log, &layout, 2).await;
    assert_eq!(kinds(&granted), [("ensure", true), ("grant", true)], "events that came before the start");

    clock.set(at(135));
    let revoked = marked_commands(&store.log, &layout, 4).await;
    assert_eq!(kinds(&revoked[2..]), [("revoke", false), ("suspend", false)], "the window's end is live");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_s_event_is_live_and_an_event_marked_bulk_stays_bulk() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    append(&store.log, &layout, at(0), mapping(1, 100)).await;
    let engine = start(options("a", &layout), &store.log, &clock).await;

    append_bulk(&store.log, &layout, at(0), member(7)).await;
    append_bulk(&store.log, &layout, at(0), booking(7, 1, 1, 60, 120)).await;
    let swept = marked_commands(&store.log, &layout, 2).await;
    assert_eq!(kinds(&swept), [("ensure", true), ("grant", true)], "a poller's events");

    append(&store.log, &layout, at(1), cancel(7, 1)).await;
    let cancelled = marked_commands(&store.log, &layout, 4).await;
    assert_eq!(kinds(&cancelled[2..]), [("revoke", false), ("suspend", false)], "a webhook's cancellation");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_s_re_evaluation_is_bulk() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    append(&store.log, &layout, at(0), mapping(1, 100)).await;
    let engine = start(options("a", &layout), &store.log, &clock).await;
    append(&store.log, &layout, at(0), member(7)).await;
    append(&store.log, &layout, at(0), booking(7, 1, 1, 60, 120)).await;
    let granted = marked_commands(&store.log, &layout, 2).await;
    assert_eq!(kinds(&granted), [("ensure", false), ("grant", false)]);

    append(&store.log, &layout, at(1), mapping(1, 200)).await;
    let remapped = marked_commands(&store.log, &layout, 4).await;
    assert!(remapped.len() >= 4, "{remapped:?}");
    assert!(remapped[2..].iter().all(|(_, bulk)| *bulk), "the mapping moved the booking's group: {remapped:?}");
    engine.shutdown().await;
}
