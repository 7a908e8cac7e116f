//! The backend-independent suite, against a fresh file per case.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed step should stop the test loudly")]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use doorsync_log::EventLog;
use doorsync_log::conformance::{Harness, streams};
use doorsync_log_embedded::{EmbeddedLog, EmbeddedOptions};
use futures::FutureExt;

doorsync_log::conformance_suite!(open);

async fn open() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let log = open_at(path.clone());
    // The harness hands the reopen closure only the trait object, so the closure keeps its own
    // handle to close the file with.
    let current = Arc::new(Mutex::new(Some(log.clone())));
    Harness::new(Arc::new(log), dir, move |open: Arc<dyn EventLog>| {
        let current = Arc::clone(&current);
        let path = path.clone();
        async move {
            drop(open);
            let previous = current.lock().unwrap().take().expect("an open log");
            previous.close().await;
            let reopened = open_at(path);
            *current.lock().unwrap() = Some(reopened.clone());
            Ok(Arc::new(reopened) as Arc<dyn EventLog>)
        }
        .boxed()
    })
}

fn open_at(path: PathBuf) -> EmbeddedLog {
    EmbeddedLog::open(EmbeddedOptions::new(path, streams())).expect("opening the embedded log")
}
