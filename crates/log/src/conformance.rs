//! The behaviour every [`EventLog`] backend must show, as one suite run unchanged against each.
//!
//! A backend's test file calls [`conformance_suite!`](crate::conformance_suite) with an async
//! function that opens a fresh, empty log with [`streams()`] and returns a [`Harness`].

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test suite: a failed step should stop the test loudly")]

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;

use crate::{
    ConsumerSpec, Delivery, EventLog, LogError, NewMessage, ReplayRequest, Sequence, StartPosition, StoredMessage,
    StreamSpec,
};

pub const EVENTS: &str = "CONF_EVT";
pub const COMMANDS: &str = "CONF_CMD";

/// The streams a conformance log must be opened with.
pub fn streams() -> Vec<StreamSpec> {
    vec![
        StreamSpec::new(EVENTS, ["conf.evt.>"]).with_duplicate_window(Duration::from_secs(300)),
        StreamSpec::new(COMMANDS, ["conf.cmd.>"]).with_duplicate_window(Duration::from_secs(300)),
    ]
}

type Reopen = Box<dyn Fn(Arc<dyn EventLog>) -> BoxFuture<'static, Result<Arc<dyn EventLog>, LogError>> + Send + Sync>;

/// A fresh log plus whatever keeps it alive (a temporary directory, a server process).
pub struct Harness {
    pub log: Arc<dyn EventLog>,
    reopen: Reopen,
    _keep_alive: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness").finish_non_exhaustive()
    }
}

impl Harness {
    /// `reopen` receives the open log (the only remaining handle to it), must close it and open
    /// the same storage again, as a process restart would.
    pub fn new(
        log: Arc<dyn EventLog>,
        keep_alive: impl Any + Send + Sync,
        reopen: impl Fn(Arc<dyn EventLog>) -> BoxFuture<'static, Result<Arc<dyn EventLog>, LogError>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self { log, reopen: Box::new(reopen), _keep_alive: Box::new(keep_alive) }
    }

    async fn reopen(&mut self) {
        let placeholder: Arc<dyn EventLog> = Arc::new(Closed);
        let open = std::mem::replace(&mut self.log, placeholder);
        self.log = (self.reopen)(open).await.expect("reopening the log");
    }
}

/// Stands in for the log between closing and reopening it.
struct Closed;

#[async_trait::async_trait]
impl EventLog for Closed {
    async fn append(&self, _: NewMessage) -> Result<crate::Appended, LogError> {
        Err(closed())
    }
    async fn append_batch(&self, messages: Vec<NewMessage>) -> Vec<Result<crate::Appended, LogError>> {
        messages.iter().map(|_| Err(closed())).collect()
    }
    async fn replay(&self, _: ReplayRequest) -> Result<crate::MessageStream, LogError> {
        Err(closed())
    }
    async fn follow(&self, _: ReplayRequest) -> Result<crate::MessageStream, LogError> {
        Err(closed())
    }
    async fn last_sequence(&self, _: &str) -> Result<Sequence, LogError> {
        Err(closed())
    }
    async fn last_on_subject(&self, _: &str, _: &str) -> Result<Option<StoredMessage>, LogError> {
        Err(closed())
    }
    async fn durable_consumer(&self, _: ConsumerSpec) -> Result<Box<dyn crate::DurableConsumer>, LogError> {
        Err(closed())
    }
    async fn key_value(&self, _: &str) -> Result<Arc<dyn crate::KeyValue>, LogError> {
        Err(closed())
    }
}

fn closed() -> LogError {
    LogError::Closed { context: "the conformance harness is reopening the log".into() }
}

/// Generates one `#[tokio::test]` per conformance case for a backend.
#[macro_export]
macro_rules! conformance_suite {
    ($open:path) => {
        $crate::conformance_suite!(@cases $open;
            append_assigns_increasing_sequences,
            duplicate_id_answers_the_original_sequence,
            expected_last_subject_sequence_guards_each_subject,
            duplicate_wins_over_stale_expectation,
            append_without_stream_is_refused,
            invalid_messages_are_refused,
            batch_answers_in_order,
            thousands_of_concurrent_batches_all_complete,
            replay_filters_and_starts_at_a_sequence,
            replay_of_nothing_ends,
            follow_delivers_history_then_new_messages,
            streams_are_separate,
            headers_round_trip,
            last_on_subject_finds_the_latest,
            consumer_ack_is_final,
            consumer_nak_redelivers_after_the_delay,
            consumer_term_never_redelivers,
            consumer_redelivers_after_ack_wait,
            consumer_respects_filters_and_start,
            consumer_specs_are_validated,
            consumer_position_survives_reopen,
            consumer_reopened_with_new_settings_uses_them,
            appended_messages_survive_reopen,
            key_value_compare_and_set,
            key_value_survives_reopen,
        );
    };
    (@cases $open:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $open().await;
                $crate::conformance::$case(harness).await;
            }
        )*
    };
}

fn message(subject: &str, id: &str) -> NewMessage {
    NewMessage::new(subject, id, Bytes::from(format!("payload of {id}")))
}

async fn read_all(log: &dyn EventLog, request: ReplayRequest) -> Vec<StoredMessage> {
    let stream = tokio::time::timeout(Duration::from_secs(10), log.replay(request))
        .await
        .expect("replay opens within 10 s")
        .expect("replay opens");
    tokio::time::timeout(Duration::from_secs(10), stream.map(|item| item.expect("replayed message")).collect())
        .await
        .expect("replay ends within 10 s")
}

async fn next_delivery(consumer: &mut Box<dyn crate::DurableConsumer>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a delivery within 10 s")
        .expect("delivery")
}

async fn assert_no_delivery(consumer: &mut Box<dyn crate::DurableConsumer>, within: Duration) {
    if let Ok(delivery) = tokio::time::timeout(within, consumer.next()).await {
        panic!("expected no delivery within {within:?}, got {delivery:?}");
    }
}

fn ids(messages: &[StoredMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.id.as_deref().unwrap_or("")).collect()
}

pub async fn append_assigns_increasing_sequences(harness: Harness) {
    let log = &*harness.log;
    assert_eq!(log.last_sequence(EVENTS).await.unwrap(), Sequence(0));
    let mut sequences = Vec::new();
    for n in 0..5 {
        let appended = log.append(message(&format!("conf.evt.{}.{n}", n % 2), &format!("m{n}"))).await.unwrap();
        assert!(!appended.duplicate);
        sequences.push(appended.sequence);
    }
    assert_eq!(sequences, [1, 2, 3, 4, 5].map(Sequence));
    assert_eq!(log.last_sequence(EVENTS).await.unwrap(), Sequence(5));
    let replayed = read_all(log, ReplayRequest::whole(EVENTS)).await;
    assert_eq!(ids(&replayed), vec!["m0", "m1", "m2", "m3", "m4"]);
    assert_eq!(replayed.iter().map(|m| m.sequence).collect::<Vec<_>>(), sequences);
    assert_eq!(replayed[2].subject, "conf.evt.0.2");
    assert_eq!(replayed[2].payload, Bytes::from("payload of m2"));
    assert_eq!(replayed[2].stream, EVENTS);
}

pub async fn duplicate_id_answers_the_original_sequence(harness: Harness) {
    let log = &*harness.log;
    let first = log.append(message("conf.evt.0.1", "same")).await.unwrap();
    log.append(message("conf.evt.0.1", "other")).await.unwrap();
    let again = log.append(message("conf.evt.0.1", "same")).await.unwrap();
    assert_eq!(again, crate::Appended { sequence: first.sequence, duplicate: true });
    assert_eq!(log.last_sequence(EVENTS).await.unwrap(), Sequence(2));
    assert_eq!(ids(&read_all(log, ReplayRequest::whole(EVENTS)).await), vec!["same", "other"]);
}

pub async fn expected_last_subject_sequence_guards_each_subject(harness: Harness) {
    let log = &*harness.log;
    let first = log.append(message("conf.evt.0.7", "a").expecting_last_subject_sequence(Sequence(0))).await.unwrap();
    let stale = log.append(message("conf.evt.0.7", "b").expecting_last_subject_sequence(Sequence(0))).await;
    assert!(
        matches!(&stale, Err(LogError::WrongLastSequence { subject, expected: Sequence(0) }) if subject == "conf.evt.0.7"),
        "{stale:?}"
    );
    // Another subject's history does not count.
    let other = log.append(message("conf.evt.0.8", "c").expecting_last_subject_sequence(Sequence(0))).await.unwrap();
    let second =
        log.append(message("conf.evt.0.7", "d").expecting_last_subject_sequence(first.sequence)).await.unwrap();
    assert!(second.sequence > other.sequence);
    let behind = log.append(message("conf.evt.0.7", "e").expecting_last_subject_sequence(first.sequence)).await;
    assert!(matches!(behind, Err(LogError::WrongLastSequence { .. })), "{behind:?}");
    assert_eq!(ids(&read_all(log, ReplayRequest::whole(EVENTS)).await), vec!["a", "c", "d"]);
}

/// A writer that retries after a lost acknowledgement must learn that its message is in, not
/// that it lost a race against itself.
pub async fn duplicate_wins_over_stale_expectation(harness: Harness) {
    let log = &*harness.log;
    let first = log.append(message("conf.evt.1.1", "x").expecting_last_subject_sequence(Sequence(0))).await.unwrap();
    let retried = log.append(message("conf.evt.1.1", "x").expecting_last_subject_sequence(Sequence(0))).await.unwrap();
    assert_eq!(retried, crate::Appended { sequence: first.sequence, duplicate: true });
}

pub async fn append_without_stream_is_refused(harness: Harness) {
    let result = harness.log.append(message("elsewhere.evt.1", "nowhere")).await;
    assert!(matches!(&result, Err(LogError::NoStream { subject }) if subject == "elsewhere.evt.1"), "{result:?}");
}

pub async fn invalid_messages_are_refused(harness: Harness) {
    let log = &*harness.log;
    for bad in [
        message("conf.evt.*", "wild"),
        message("conf..evt", "empty-token"),
        message("conf.evt.0.1", ""),
        message("conf.evt.0.1", "reserved").with_header("Nats-Msg-Id", "sneaky"),
    ] {
        let result = log.append(bad.clone()).await;
        assert!(matches!(result, Err(LogError::Invalid { .. })), "{bad:?} gave {result:?}");
    }
    assert_eq!(log.last_sequence(EVENTS).await.unwrap(), Sequence(0));
}

pub async fn batch_answers_in_order(harness: Harness) {
    let log = &*harness.log;
    log.append(message("conf.evt.0.1", "before")).await.unwrap();
    let batch: Vec<NewMessage> = (0..200)
        .map(|n| message(&format!("conf.evt.{}.{n}", n % 4), &format!("b{n}")))
        .chain([message("conf.evt.0.1", "before"), message("nowhere.x", "lost")])
        .collect();
    let results = log.append_batch(batch).await;
    assert_eq!(results.len(), 202);
    for (n, result) in results[..200].iter().enumerate() {
        let appended = result.as_ref().unwrap();
        assert_eq!(appended.sequence, Sequence(n as u64 + 2));
        assert!(!appended.duplicate);
    }
    assert_eq!(results[200].as_ref().unwrap(), &crate::Appended { sequence: Sequence(1), duplicate: true });
    assert!(matches!(results[201], Err(LogError::NoStream { .. })));
    assert_eq!(read_all(log, ReplayRequest::whole(EVENTS)).await.len(), 201);
}

/// Many callers each appending a small batch at once, more of them than acknowledgements may be
/// in flight: nobody may end up waiting forever for a slot another waiter holds.
pub async fn thousands_of_concurrent_batches_all_complete(harness: Harness) {
    let callers: Vec<_> = (0..6_000)
        .map(|n| {
            let log = Arc::clone(&harness.log);
            tokio::spawn(async move {
                let batch = vec![
                    message(&format!("conf.cmd.{}.{n}", n % 4), &format!("first-{n}")),
                    message(&format!("conf.cmd.{}.{n}", n % 4), &format!("second-{n}")),
                ];
                log.append_batch(batch).await.into_iter().filter(Result::is_err).count()
            })
        })
        .collect();
    let failed: usize = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(callers))
        .await
        .expect("every caller answered within 60 s")
        .into_iter()
        .map(|answer| answer.expect("caller task"))
        .sum();
    assert_eq!(failed, 0);
    assert_eq!(harness.log.last_sequence(COMMANDS).await.unwrap(), Sequence(12_000));
}

pub async fn replay_filters_and_starts_at_a_sequence(harness: Harness) {
    let log = &*harness.log;
    for n in 0..12 {
        log.append(message(&format!("conf.evt.{}.{n}", n % 3), &format!("r{n}"))).await.unwrap();
    }
    log.append(message("conf.evt.mapping", "map")).await.unwrap();
    let partition_one = read_all(log, ReplayRequest::whole(EVENTS).filtered(["conf.evt.1.*"])).await;
    assert_eq!(ids(&partition_one), vec!["r1", "r4", "r7", "r10"]);
    let later = read_all(log, ReplayRequest::whole(EVENTS).filtered(["conf.evt.1.*"]).from_sequence(Sequence(6))).await;
    assert_eq!(ids(&later), vec!["r7", "r10"]);
    let with_mapping = read_all(
        log,
        ReplayRequest::whole(EVENTS).filtered(["conf.evt.2.*", "conf.evt.mapping"]).from_sequence(Sequence(10)),
    )
    .await;
    assert_eq!(ids(&with_mapping), vec!["r11", "map"]);
    let exact = read_all(log, ReplayRequest::whole(EVENTS).filtered(["conf.evt.0.9"])).await;
    assert_eq!(ids(&exact), vec!["r9"]);
}

pub async fn replay_of_nothing_ends(harness: Harness) {
    let log = &*harness.log;
    assert!(read_all(log, ReplayRequest::whole(EVENTS)).await.is_empty());
    log.append(message("conf.evt.0.1", "only")).await.unwrap();
    assert!(read_all(log, ReplayRequest::whole(EVENTS).from_sequence(Sequence(2))).await.is_empty());
    assert!(read_all(log, ReplayRequest::whole(EVENTS).filtered(["conf.evt.5.*"])).await.is_empty());
    let unknown = log.replay(ReplayRequest::whole("NO_SUCH_STREAM")).await;
    assert!(matches!(unknown, Err(LogError::UnknownStream { .. })), "{:?}", unknown.map(|_| ()));
}

async fn next_followed(followed: &mut crate::MessageStream) -> String {
    let message = tokio::time::timeout(Duration::from_secs(10), followed.next())
        .await
        .expect("a followed message within 10 s")
        .expect("the follow does not end")
        .expect("followed message");
    message.id.unwrap_or_default()
}

pub async fn follow_delivers_history_then_new_messages(harness: Harness) {
    let log = &*harness.log;
    for n in 0..3 {
        log.append(message(&format!("conf.evt.{}.{n}", n % 2), &format!("h{n}"))).await.unwrap();
    }
    let mut followed =
        log.follow(ReplayRequest::whole(EVENTS).filtered(["conf.evt.0.*"]).from_sequence(Sequence(1))).await.unwrap();
    assert_eq!(next_followed(&mut followed).await, "h0");
    assert_eq!(next_followed(&mut followed).await, "h2");
    log.append(message("conf.evt.1.3", "other-partition")).await.unwrap();
    log.append(message("conf.evt.0.4", "live")).await.unwrap();
    assert_eq!(next_followed(&mut followed).await, "live");

    let mut quiet = log.follow(ReplayRequest::whole(EVENTS).filtered(["conf.evt.9.*"])).await.unwrap();
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(500), quiet.next()).await {
        panic!("a follow with nothing to deliver waits, got {item:?}");
    }
}

pub async fn streams_are_separate(harness: Harness) {
    let log = &*harness.log;
    let event = log.append(message("conf.evt.0.1", "shared-id")).await.unwrap();
    let command = log.append(message("conf.cmd.0.1", "shared-id")).await.unwrap();
    assert_eq!((event.sequence, command.sequence), (Sequence(1), Sequence(1)));
    assert!(!command.duplicate, "message ids are de-duplicated per stream");
    let commands = read_all(log, ReplayRequest::whole(COMMANDS)).await;
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0].stream, COMMANDS);
}

pub async fn headers_round_trip(harness: Harness) {
    let log = &*harness.log;
    let traced = message("conf.evt.0.1", "traced")
        .with_header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .with_header("x-doorsync-source", "webhook");
    log.append(traced.clone()).await.unwrap();
    let stored = read_all(log, ReplayRequest::whole(EVENTS)).await;
    let mut headers = stored[0].headers.clone();
    headers.sort();
    let mut expected = traced.headers;
    expected.sort();
    assert_eq!(headers, expected, "application headers come back, the log's own are hidden");
}

pub async fn last_on_subject_finds_the_latest(harness: Harness) {
    let log = &*harness.log;
    assert_eq!(log.last_on_subject(EVENTS, "conf.evt.0.1").await.unwrap(), None);
    log.append(message("conf.evt.0.1", "one")).await.unwrap();
    log.append(message("conf.evt.0.2", "two")).await.unwrap();
    log.append(message("conf.evt.0.1", "three")).await.unwrap();
    let last = log.last_on_subject(EVENTS, "conf.evt.0.1").await.unwrap().unwrap();
    assert_eq!((last.sequence, last.id.as_deref()), (Sequence(3), Some("three")));
    assert_eq!(last.payload, Bytes::from("payload of three"));
}

fn consumer(name: &str) -> ConsumerSpec {
    ConsumerSpec::new(EVENTS, name).ack_wait(Duration::from_secs(30))
}

pub async fn consumer_ack_is_final(harness: Harness) {
    let log = &*harness.log;
    for n in 0..3 {
        log.append(message(&format!("conf.evt.0.{n}"), &format!("c{n}"))).await.unwrap();
    }
    let mut reader = log.durable_consumer(consumer("acker")).await.unwrap();
    for n in 0..3 {
        let delivery = next_delivery(&mut reader).await;
        assert_eq!(delivery.message.id.as_deref(), Some(format!("c{n}").as_str()));
        assert_eq!(delivery.delivery_count, 1);
        delivery.ack().await.unwrap();
    }
    log.append(message("conf.evt.0.9", "late")).await.unwrap();
    let late = next_delivery(&mut reader).await;
    assert_eq!(late.message.id.as_deref(), Some("late"));
    late.ack().await.unwrap();
    drop(reader);
    let mut again = log.durable_consumer(consumer("acker")).await.unwrap();
    assert_no_delivery(&mut again, Duration::from_secs(1)).await;
}

pub async fn consumer_nak_redelivers_after_the_delay(harness: Harness) {
    let log = &*harness.log;
    log.append(message("conf.evt.0.1", "retry-me")).await.unwrap();
    let mut reader = log.durable_consumer(consumer("nakker")).await.unwrap();
    let first = next_delivery(&mut reader).await;
    first.nak(Duration::from_millis(1500)).await.unwrap();
    assert_no_delivery(&mut reader, Duration::from_millis(700)).await;
    let second = next_delivery(&mut reader).await;
    assert_eq!(second.message.id.as_deref(), Some("retry-me"));
    assert_eq!(second.delivery_count, 2);
    second.ack().await.unwrap();
}

pub async fn consumer_term_never_redelivers(harness: Harness) {
    let log = &*harness.log;
    log.append(message("conf.evt.0.1", "poison")).await.unwrap();
    log.append(message("conf.evt.0.2", "fine")).await.unwrap();
    let mut reader = log.durable_consumer(consumer("terminator").ack_wait(Duration::from_secs(1))).await.unwrap();
    let poison = next_delivery(&mut reader).await;
    assert_eq!(poison.message.id.as_deref(), Some("poison"));
    poison.term().await.unwrap();
    let fine = next_delivery(&mut reader).await;
    assert_eq!(fine.message.id.as_deref(), Some("fine"));
    fine.ack().await.unwrap();
    assert_no_delivery(&mut reader, Duration::from_millis(2500)).await;
}

pub async fn consumer_redelivers_after_ack_wait(harness: Harness) {
    let log = &*harness.log;
    log.append(message("conf.evt.0.1", "forgotten")).await.unwrap();
    let mut reader = log.durable_consumer(consumer("forgetful").ack_wait(Duration::from_secs(1))).await.unwrap();
    let first = next_delivery(&mut reader).await;
    assert_eq!(first.delivery_count, 1);
    drop(first);
    let second = next_delivery(&mut reader).await;
    assert_eq!(second.message.id.as_deref(), Some("forgotten"));
    assert_eq!(second.delivery_count, 2);
    second.ack().await.unwrap();
}

pub async fn consumer_respects_filters_and_start(harness: Harness) {
    let log = &*harness.log;
    for n in 0..6 {
        log.append(message(&format!("conf.evt.{}.{n}", n % 2), &format!("f{n}"))).await.unwrap();
    }
    let mut odd = log.durable_consumer(consumer("odd").filtered(["conf.evt.1.*"])).await.unwrap();
    for expected in ["f1", "f3", "f5"] {
        let delivery = next_delivery(&mut odd).await;
        assert_eq!(delivery.message.id.as_deref(), Some(expected));
        delivery.ack().await.unwrap();
    }
    assert_no_delivery(&mut odd, Duration::from_millis(500)).await;

    let mut from_four =
        log.durable_consumer(consumer("from-four").starting_at(StartPosition::Sequence(Sequence(4)))).await.unwrap();
    let delivery = next_delivery(&mut from_four).await;
    assert_eq!(delivery.message.sequence, Sequence(4));
    delivery.ack().await.unwrap();

    let mut fresh = log.durable_consumer(consumer("fresh").starting_at(StartPosition::New)).await.unwrap();
    assert_no_delivery(&mut fresh, Duration::from_millis(500)).await;
    log.append(message("conf.evt.0.6", "f6")).await.unwrap();
    let delivery = next_delivery(&mut fresh).await;
    assert_eq!(delivery.message.id.as_deref(), Some("f6"));
    delivery.ack().await.unwrap();
}

/// Messages fetched but not settled before the restart come back at the latest after the ack
/// wait (JetStream counts them as delivered); settled ones never do.
pub async fn consumer_specs_are_validated(harness: Harness) {
    let log = &*harness.log;
    for bad in [
        consumer("zero-wait").ack_wait(Duration::ZERO),
        consumer("bad.name"),
        consumer("bad-filter").filtered(["conf.>.x"]),
    ] {
        let result = log.durable_consumer(bad.clone()).await.map(|_| ());
        assert!(matches!(result, Err(LogError::Invalid { .. })), "{bad:?} gave {result:?}");
    }
    let missing = log.durable_consumer(ConsumerSpec::new("NO_SUCH_STREAM", "lost")).await.map(|_| ());
    assert!(matches!(missing, Err(LogError::UnknownStream { .. })), "{missing:?}");
}

pub async fn consumer_position_survives_reopen(mut harness: Harness) {
    for n in 0..4 {
        harness.log.append(message(&format!("conf.evt.0.{n}"), &format!("p{n}"))).await.unwrap();
    }
    let survivor = || consumer("survivor").ack_wait(Duration::from_secs(2));
    {
        let mut reader = harness.log.durable_consumer(survivor()).await.unwrap();
        for _ in 0..2 {
            next_delivery(&mut reader).await.ack().await.unwrap();
        }
    }
    harness.reopen().await;
    let mut reader = harness.log.durable_consumer(survivor()).await.unwrap();
    let mut rest = Vec::new();
    for _ in 0..2 {
        let delivery = next_delivery(&mut reader).await;
        rest.push(delivery.message.id.clone().unwrap_or_default());
        delivery.ack().await.unwrap();
    }
    rest.sort();
    assert_eq!(rest, vec!["p2", "p3"]);
    assert_no_delivery(&mut reader, Duration::from_secs(3)).await;
}

/// A consumer opened again with other settings (its configuration changed, the process
/// restarted) works with the new ones: a shorter ack wait brings an unsettled delivery back
/// sooner than the old one would have.
pub async fn consumer_reopened_with_new_settings_uses_them(mut harness: Harness) {
    let slow = Duration::from_secs(120);
    harness.log.append(message("conf.evt.0.1", "held")).await.unwrap();
    {
        let mut reader = harness.log.durable_consumer(consumer("changing").ack_wait(slow)).await.unwrap();
        let held = next_delivery(&mut reader).await;
        assert_eq!(held.message.id.as_deref(), Some("held"));
        // Neither acknowledged nor given back: as a process that died holding it.
        drop(held);
    }
    harness.reopen().await;
    let quick = consumer("changing").ack_wait(Duration::from_secs(1));
    let mut reader = harness.log.durable_consumer(quick).await.unwrap();
    // Within `next_delivery`'s 10 s, far less than the old ack wait, and again after that.
    for _ in 0..2 {
        let again = next_delivery(&mut reader).await;
        assert_eq!(again.message.id.as_deref(), Some("held"));
        drop(again);
    }
    let last = next_delivery(&mut reader).await;
    assert_eq!(last.message.id.as_deref(), Some("held"));
    last.ack().await.unwrap();
    assert_no_delivery(&mut reader, Duration::from_secs(2)).await;
}

pub async fn appended_messages_survive_reopen(mut harness: Harness) {
    let batch = (0..50).map(|n| message(&format!("conf.evt.{}.{n}", n % 5), &format!("s{n}"))).collect();
    for result in harness.log.append_batch(batch).await {
        result.unwrap();
    }
    harness.reopen().await;
    let log = &*harness.log;
    assert_eq!(log.last_sequence(EVENTS).await.unwrap(), Sequence(50));
    assert_eq!(read_all(log, ReplayRequest::whole(EVENTS)).await.len(), 50);
    let again = log.append(message("conf.evt.0.0", "s0")).await.unwrap();
    assert_eq!(again, crate::Appended { sequence: Sequence(1), duplicate: true }, "ids are remembered across a reopen");
    let next = log.append(message("conf.evt.0.1", "after")).await.unwrap();
    assert_eq!(next.sequence, Sequence(51));
}

pub async fn key_value_compare_and_set(harness: Harness) {
    let kv = harness.log.key_value("conf-leases").await.unwrap();
    assert_eq!(kv.get("lease.writer").await.unwrap(), None);
    let created = kv.create("lease.writer", Bytes::from("a")).await.unwrap();
    let taken = kv.create("lease.writer", Bytes::from("b")).await;
    assert!(
        matches!(&taken, Err(LogError::KvConflict { bucket, key }) if bucket == "conf-leases" && key == "lease.writer"),
        "{taken:?}"
    );
    let updated = kv.update("lease.writer", Bytes::from("a2"), created).await.unwrap();
    assert!(updated > created);
    let stale = kv.update("lease.writer", Bytes::from("b2"), created).await;
    assert!(matches!(stale, Err(LogError::KvConflict { .. })), "{stale:?}");
    let entry = kv.get("lease.writer").await.unwrap().unwrap();
    assert_eq!((entry.value, entry.revision), (Bytes::from("a2"), updated));

    let put = kv.put("checkpoint/7", Bytes::from("42")).await.unwrap();
    assert!(put > updated);
    kv.put("checkpoint/7", Bytes::from("43")).await.unwrap();
    assert_eq!(kv.get("checkpoint/7").await.unwrap().unwrap().value, Bytes::from("43"));
    assert_eq!(kv.keys().await.unwrap(), vec!["checkpoint/7".to_owned(), "lease.writer".to_owned()]);

    kv.delete("lease.writer").await.unwrap();
    assert_eq!(kv.get("lease.writer").await.unwrap(), None);
    assert_eq!(kv.keys().await.unwrap(), vec!["checkpoint/7".to_owned()]);
    kv.create("lease.writer", Bytes::from("c")).await.unwrap();

    let other = harness.log.key_value("conf-snapshots").await.unwrap();
    assert_eq!(other.get("checkpoint/7").await.unwrap(), None, "buckets are separate");
    assert!(matches!(kv.put("bad key", Bytes::new()).await, Err(LogError::Invalid { .. })));
    assert!(matches!(harness.log.key_value("bad.bucket").await.map(|_| ()), Err(LogError::Invalid { .. })));
}

pub async fn key_value_survives_reopen(mut harness: Harness) {
    {
        let kv = harness.log.key_value("conf-snapshots").await.unwrap();
        kv.put("member.42", Bytes::from("state")).await.unwrap();
    }
    harness.reopen().await;
    let kv = harness.log.key_value("conf-snapshots").await.unwrap();
    let entry = kv.get("member.42").await.unwrap().unwrap();
    assert_eq!(entry.value, Bytes::from("state"));
    let newer = kv.update("member.42", Bytes::from("state2"), entry.revision).await.unwrap();
    assert!(newer > entry.revision);
}
