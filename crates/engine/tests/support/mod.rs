//! Shared by the engine's tests: a log, events in, commands out.
#![allow(dead_code, reason = "each test file uses its own part of this module")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed step should stop the test loudly")]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use doorsync_clock::ManualClock;
use doorsync_engine::{EngineHandle, EngineOptions};
use doorsync_layout::Layout;
use doorsync_log::{EventLog, NewMessage, ReplayRequest, Sequence};
use doorsync_log_embedded::{EmbeddedLog, EmbeddedOptions};
use doorsync_proto::{
    BookingCancelled, BookingChanged, BookingId, Command, Envelope, Event, KisiGroupId, MappingChanged, MappingSource,
    MemberChanged, MemberId, Outcome, ResourceId, Subjects, Timestamp,
};
use futures::StreamExt;

pub(crate) const MINUTE: i64 = 60_000;
/// Marks what a test writes straight to a stream that is not a doorsync message.
pub(crate) const GARBAGE_HEADER: &str = "test-garbage";
/// 2026-11-30T09:00:00Z
pub(crate) const T0: i64 = 1_796_029_200_000;

pub(crate) fn at(minutes: i64) -> Timestamp {
    Timestamp::from_unix_millis(T0 + minutes * MINUTE)
}

pub(crate) fn layout() -> Layout {
    Layout::new(Subjects::new("test", 4).unwrap())
}

pub(crate) struct Embedded {
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) dir: tempfile::TempDir,
}

pub(crate) fn embedded_log(layout: &Layout) -> Embedded {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(EmbeddedOptions::new(dir.path().join("log.redb"), layout.streams())).unwrap();
    Embedded { log: Arc::new(log), dir }
}

pub(crate) fn options(engine_id: &str, layout: &Layout) -> EngineOptions {
    let mut options = EngineOptions::new(engine_id, layout.clone());
    options.housekeeping_every = Duration::from_millis(100);
    options.settings.lease_ttl = Duration::from_secs(3);
    options
}

pub(crate) async fn start(options: EngineOptions, log: &Arc<dyn EventLog>, clock: &ManualClock) -> EngineHandle {
    let engine = doorsync_engine::start(options, Arc::clone(log), Arc::new(clock.clone())).await.unwrap();
    wait_until("the engine catches up", || {
        let engine = engine.clone();
        async move { engine.caught_up().await }
    })
    .await;
    engine
}

pub(crate) async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn append(log: &Arc<dyn EventLog>, layout: &Layout, occurred_at: Timestamp, event: Event) -> Sequence {
    let envelope = Envelope::new(occurred_at, event.clone()).unwrap();
    let payload = Bytes::from(doorsync_proto::encode(&envelope).unwrap());
    let message = NewMessage::new(layout.subjects.subject_for(&event), envelope.id.to_string(), payload);
    log.append(message).await.unwrap().sequence
}

/// Appends what the Kisi writer would report about a member.
pub(crate) async fn append_outcome(log: &Arc<dyn EventLog>, layout: &Layout, occurred_at: Timestamp, outcome: Outcome) {
    let envelope = Envelope::new(occurred_at, outcome.clone()).unwrap();
    let payload = Bytes::from(doorsync_proto::encode(&envelope).unwrap());
    let message = NewMessage::new(layout.subjects.outcome(outcome.member()), envelope.id.to_string(), payload);
    log.append(message).await.unwrap();
}

pub(crate) async fn commands(log: &Arc<dyn EventLog>, layout: &Layout) -> Vec<Command> {
    let mut replay = log.replay(ReplayRequest::whole(&layout.commands)).await.unwrap();
    let mut commands = Vec::new();
    while let Some(message) = replay.next().await {
        let message = message.unwrap();
        if message.headers.iter().any(|(name, _)| name == GARBAGE_HEADER) {
            continue;
        }
        commands.push(doorsync_proto::decode::<Command>(&message.payload).unwrap().message);
    }
    commands
}

pub(crate) async fn commands_for(log: &Arc<dyn EventLog>, layout: &Layout, member: MemberId) -> Vec<Command> {
    commands(log, layout).await.into_iter().filter(|command| command.member() == member).collect()
}

/// Waits until the member's commands stop changing for a moment and returns them.
pub(crate) async fn settled_commands_for(
    log: &Arc<dyn EventLog>,
    layout: &Layout,
    member: MemberId,
    at_least: usize,
) -> Vec<Command> {
    let mut last = Vec::new();
    let mut stable_rounds = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = commands_for(log, layout, member).await;
        if now.len() >= at_least && now == last {
            stable_rounds += 1;
            if stable_rounds >= 5 {
                return now;
            }
        } else {
            stable_rounds = 0;
        }
        last = now;
        assert!(tokio::time::Instant::now() < deadline, "commands for {member} never settled at {at_least}+: {last:?}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

pub(crate) fn mapping(resource: u64, group: u64) -> Event {
    Event::MappingChanged(MappingChanged {
        source: MappingSource::Resource(ResourceId(resource)),
        group: Some(KisiGroupId(group)),
    })
}

pub(crate) fn member(id: u64) -> Event {
    Event::MemberChanged(MemberChanged {
        member: MemberId(id),
        email: format!("m{id}@example.test"),
        name: format!("Member {id}"),
        active: true,
    })
}

pub(crate) fn booking(member: u64, booking: u64, resource: u64, from_minute: i64, to_minute: i64) -> Event {
    Event::BookingChanged(BookingChanged {
        member: MemberId(member),
        booking: BookingId(booking),
        resource: ResourceId(resource),
        starts_at: at(from_minute),
        ends_at: at(to_minute),
        tentative: false,
    })
}

pub(crate) fn cancel(member: u64, booking: u64) -> Event {
    Event::BookingCancelled(BookingCancelled { member: MemberId(member), booking: BookingId(booking) })
}
