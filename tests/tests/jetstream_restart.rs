//! nats-server is killed (SIGKILL) and restarted twice while events are being appended. The
//! appender retries failed appends with the same message ids. Afterwards every acknowledged
//! event is in the stream exactly once, at the sequence it was acknowledged with.

use std::collections::HashMap;
use std::time::Duration;

use doorsync_log::{EventLog, NewMessage, ReplayRequest, RetryPolicy, Sequence, StreamSpec, append_with_retry};
use doorsync_log_jetstream::{JetStreamLog, JetStreamOptions};
use doorsync_test_support::NatsServer;
use futures::StreamExt;
use tokio::sync::mpsc;

const EVENTS: u32 = 3_000;

fn event(n: u32) -> NewMessage {
    NewMessage::new(format!("fault.evt.{}.{n}", n % 8), format!("event-{n}"), format!("payload {n}"))
}

fn streams() -> Vec<StreamSpec> {
    vec![StreamSpec::new("FAULT_EVT", ["fault.evt.>"]).with_duplicate_window(Duration::from_secs(600))]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_server_restarts_exactly_once() {
    let mut server = NatsServer::start().await.unwrap();
    let mut options = JetStreamOptions::new(server.url(), streams());
    options.request_timeout = Duration::from_secs(2);
    let log = JetStreamLog::connect(options).await.unwrap();

    let (acked_tx, mut acked_rx) = mpsc::unbounded_channel();
    let appender = {
        let log = log.clone();
        tokio::spawn(async move {
            let policy = RetryPolicy { give_up_after: Duration::from_secs(60), ..RetryPolicy::default() };
            // Batches keep many acknowledgements in flight, so a kill lands between storing
            // and acknowledging some of them: their retries must be answered as duplicates.
            let ids: Vec<u32> = (0..EVENTS).collect();
            let mut retried = 0;
            for chunk in ids.chunks(250) {
                let batch: Vec<NewMessage> = chunk.iter().map(|&n| event(n)).collect();
                let answers = log.append_batch(batch.clone()).await;
                for (message, answer) in batch.into_iter().zip(answers) {
                    let appended = match answer {
                        Ok(appended) => appended,
                        Err(error) if error.is_transient() => {
                            retried += 1;
                            append_with_retry(&log, message.clone(), policy)
                                .await
                                .unwrap_or_else(|error| panic!("{} was never acknowledged: {error}", message.id))
                        }
                        Err(error) => panic!("{}: {error}", message.id),
                    };
                    acked_tx.send((message.id, appended)).unwrap();
                }
            }
            retried
        })
    };

    let mut acked: HashMap<String, Sequence> = HashMap::new();
    let mut duplicates_answered = 0;
    let mut restarts = 0;
    while let Some((id, appended)) = acked_rx.recv().await {
        duplicates_answered += usize::from(appended.duplicate);
        assert!(acked.insert(id.clone(), appended.sequence).is_none(), "{id} acknowledged twice");
        if restarts < 2 && acked.len() >= (restarts + 1) * EVENTS as usize / 3 + 50 {
            server.restart().await.unwrap_or_else(|error| panic!("restarting nats-server: {error}"));
            restarts += 1;
        }
    }
    let retried = appender.await.unwrap();
    assert_eq!(restarts, 2);
    assert_eq!(acked.len(), EVENTS as usize);

    let replay = log.replay(ReplayRequest::whole("FAULT_EVT")).await.unwrap();
    let stored: Vec<_> = tokio::time::timeout(Duration::from_secs(30), replay.collect::<Vec<_>>()).await.unwrap();
    let mut seen: HashMap<String, Sequence> = HashMap::new();
    for message in stored {
        let message = message.unwrap();
        let id = message.id.clone().unwrap();
        assert!(seen.insert(id.clone(), message.sequence).is_none(), "{id} stored twice");
    }
    assert_eq!(seen, acked, "every acknowledged event is stored once, where it was acknowledged");
    eprintln!(
        "{EVENTS} events over 2 restarts: {retried} appends retried, {duplicates_answered} answered as duplicates"
    );
}
