//! An outcome is dated when Kisi answered (or the writer gave up), not when the command it
//! answers was emitted: the member's history says when Kisi changed.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::sync::Arc;

use doorsync_clock::SystemClock;
use doorsync_log::{ReplayRequest, StoredMessage};
use doorsync_proto::{Outcome, Timestamp};
use futures::TryStreamExt;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_are_dated_when_kisi_answered() {
    let harness = Harness::with(Arc::new(SystemClock), 50).await;
    let entrance = harness.kisi.add_group("Main entrance");
    let writer = harness.start(harness.options("writer-a")).await;
    let before = harness.clock.now();

    // The harness dates its commands in January 1970.
    harness.send(ensure(1, &email(1))).await;
    harness.send(grant(1, entrance, None, seconds(2_000_000_000))).await;
    settled(&writer, 2).await;

    let after = harness.clock.now();
    let stored: Vec<StoredMessage> =
        harness.log.replay(ReplayRequest::whole(&harness.layout.outcomes)).await.unwrap().try_collect().await.unwrap();
    let outcomes: Vec<(Timestamp, Outcome)> = stored
        .iter()
        .map(|message| doorsync_proto::decode::<Outcome>(&message.payload).unwrap())
        .map(|envelope| (envelope.occurred_at, envelope.message))
        .collect();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    for (at, outcome) in &outcomes {
        assert!(before <= *at && *at <= after, "{outcome:?} is dated {at}, not between {before} and {after}");
    }
    writer.shutdown().await;
}
