//! The shared conformance suite against a real nats-server started for each test.

#![allow(clippy::expect_used, reason = "test setup: a failure should stop the test loudly")]

use std::sync::Arc;

use doorsync_log::EventLog;
use doorsync_log::conformance::{Harness, streams};
use doorsync_log_jetstream::{JetStreamLog, JetStreamOptions};
use doorsync_test_support::NatsServer;
use futures::FutureExt;

async fn open() -> Harness {
    let server = NatsServer::start().await.expect("starting nats-server");
    let url = server.url();
    let log = JetStreamLog::connect(JetStreamOptions::new(&url, streams())).await.expect("connecting");
    Harness::new(Arc::new(log), server, move |open: Arc<dyn EventLog>| {
        let url = url.clone();
        async move {
            drop(open);
            let log = JetStreamLog::connect(JetStreamOptions::new(url, streams())).await?;
            Ok(Arc::new(log) as Arc<dyn EventLog>)
        }
        .boxed()
    })
}

doorsync_log::conformance_suite!(open);
