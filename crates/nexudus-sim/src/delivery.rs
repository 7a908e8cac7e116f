//! Sends queued webhook deliveries when they are due on the simulator's clock, one at a time.

use std::sync::Arc;

use doorsync_nexudus::webhook::{SIGNATURE_HEADER, sign};
use tokio::sync::watch;

use crate::Shared;
use crate::store::Outgoing;

pub(crate) async fn run(shared: Arc<Shared>, http: reqwest::Client, mut stop: watch::Receiver<bool>) {
    loop {
        // Registered before looking at the queue, so a delivery queued meanwhile still wakes us.
        let queued = shared.queued.notified();
        let now = shared.clock.now();
        let (outgoing, next_due) = {
            let mut store = shared.lock();
            (store.take_due(now), store.next_due())
        };
        if let Some(outgoing) = outgoing {
            let outcome = send(&http, &outgoing).await;
            let now = shared.clock.now();
            shared.lock().delivered(outgoing.delivery, outcome, now);
            continue;
        }
        let due = async {
            match next_due {
                Some(due) => shared.clock.sleep_until(due).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = due => {}
            () = queued => {}
            _ = stop.changed() => return,
        }
    }
}

async fn send(http: &reqwest::Client, outgoing: &Outgoing) -> Result<(), String> {
    let body = outgoing.delivery.body.clone();
    let response = http
        .post(&outgoing.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, sign(&outgoing.secret, &body))
        .body(body)
        .send()
        .await
        .map_err(|error| format!("request failed: {}", error.without_url()))?;
    let status = response.status();
    if status.is_success() { Ok(()) } else { Err(format!("the receiver answered {status}")) }
}
