//! What reads do when nats-server is killed and restarted under them.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test: a failed step should stop it loudly")]

use std::time::Duration;

use doorsync_log::{EventLog, LogError, NewMessage, ReplayRequest, StreamSpec};
use doorsync_log_jetstream::{JetStreamLog, JetStreamOptions};
use doorsync_test_support::NatsServer;
use futures::StreamExt;

const STREAM: &str = "RESTART_EVT";

/// Less than the client's idle heartbeat (15 s), after which it would have found out by itself.
const NOTICED_WITHIN: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_ends_with_a_transient_error_soon_after_the_server_restarts_and_reading_again_goes_on() {
    let mut server = NatsServer::start().await.unwrap();
    let streams = vec![StreamSpec::new(STREAM, ["restart.evt.>"]).with_duplicate_window(Duration::from_secs(60))];
    let log = JetStreamLog::connect(JetStreamOptions::new(server.url(), streams)).await.unwrap();
    let message = |id: &str| NewMessage::new("restart.evt.1", id, format!("payload of {id}"));
    log.append(message("before")).await.unwrap();
    let mut follow = log.follow(ReplayRequest::whole(STREAM)).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), follow.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.id.as_deref(), Some("before"));

    // The restarted server has lost the ordered consumer behind the follow.
    server.restart().await.unwrap();
    let ended = tokio::time::timeout(NOTICED_WITHIN, follow.next()).await.unwrap_or_else(|_| {
        panic!("the follow neither delivered nor failed within {NOTICED_WITHIN:?} of the server's restart")
    });
    match ended {
        Some(Err(error @ LogError::Unavailable { .. })) => assert!(error.is_transient(), "{error}"),
        other => panic!("expected a transient error, got {other:?}"),
    }
    assert!(follow.next().await.is_none(), "the follow ends after its error");

    // Reading again from the last message delivered goes on with what was appended since.
    log.append(message("after")).await.unwrap();
    let mut again = log.follow(ReplayRequest::whole(STREAM).from_sequence(first.sequence.next())).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), again.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(next.id.as_deref(), Some("after"));
}
