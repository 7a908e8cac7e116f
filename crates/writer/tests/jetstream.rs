//! The writer on the JetStream log with a real nats-server: the lease, the shared durable
//! consumer and the knowledge bucket across two writers.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::sync::Arc;

use doorsync_clock::SystemClock;
use doorsync_log_jetstream::{JetStreamLog, JetStreamOptions};
use doorsync_test_support::NatsServer;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_jetstream_a_standby_writer_makes_no_calls_and_takes_over() {
    let server = NatsServer::start().await.unwrap();
    let log = JetStreamLog::connect(JetStreamOptions::new(server.url(), layout().streams())).await.unwrap();
    let harness = Harness::on_log(Arc::new(SystemClock), 50, Arc::new(log), None).await;
    standby_takes_over(&harness).await;
}
