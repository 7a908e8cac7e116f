//! Every Kisi request goes through here: one at a time, when the limiter allows, only while this
//! writer holds the lease, counted by how it ended, and with Kisi's `Retry-After` applied to all
//! requests that follow, up to [`MAX_RETRY_AFTER`]: a proxy's `Retry-After: 99999999` would
//! otherwise freeze every write until a restart.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use doorsync_clock::SharedClock;
use doorsync_kisi::{KisiClient, KisiError};
use doorsync_log::Tenure;
use doorsync_proto::Timestamp;
use tokio::sync::watch;

use crate::limiter::RequestLimiter;
use crate::status::{RetryAfterHold, StatusCell};

/// The longest a `Retry-After` holds requests back.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

/// How long to wait for a `Retry-After` that `error` carries, clamped at [`MAX_RETRY_AFTER`],
/// with what was asked for.
pub(crate) fn retry_after_wait(error: &KisiError, now: Timestamp) -> Option<(Duration, Duration)> {
    let retry_after = error.retry_after()?;
    Some((retry_after.clamped_delay_from(now, MAX_RETRY_AFTER), retry_after.delay_from(now)))
}

/// Kisi's largest page of role assignments (see `doorsync-kisi`): a list call reads one page per
/// this many items.
pub const ASSIGNMENTS_PAGE: usize = 250;

/// Why the writer must stop calling Kisi now.
#[derive(Debug, Clone)]
pub(crate) struct Stop {
    shutdown: watch::Receiver<bool>,
    lost: watch::Receiver<bool>,
    tenure: Arc<Tenure>,
}

impl Stop {
    pub(crate) fn new(shutdown: watch::Receiver<bool>, tenure: Arc<Tenure>) -> Self {
        Self { shutdown, lost: tenure.watch_lost(), tenure }
    }

    /// Resolves once the writer is shutting down or has lost its lease.
    pub(crate) async fn stopped(&mut self) {
        tokio::select! {
            _ = self.shutdown.wait_for(|stopped| *stopped) => {}
            _ = self.lost.wait_for(|lost| *lost) => {}
        }
    }

    pub(crate) fn is_stopped(&self, now: Timestamp) -> bool {
        *self.shutdown.borrow() || !self.tenure.may_act(now)
    }
}

/// A call that was not made, or made and refused.
#[derive(Debug)]
pub(crate) enum CallError {
    Kisi(KisiError),
    /// Shutting down or the lease is gone: nothing was sent.
    Stopped,
}

#[derive(Debug)]
pub(crate) struct Gateway {
    client: KisiClient,
    limiter: RequestLimiter,
    clock: SharedClock,
    status: StatusCell,
}

impl Gateway {
    pub(crate) fn new(client: KisiClient, limiter: RequestLimiter, clock: SharedClock, status: StatusCell) -> Self {
        Self { client, limiter, clock, status }
    }

    /// Waits for a slot, then makes the request. The wait ends early when `stop` fires; a request
    /// once sent is always waited for, so its effect is known.
    pub(crate) async fn call<T, F, Fut>(&mut self, stop: &mut Stop, request: F) -> Result<T, CallError>
    where
        F: FnOnce(KisiClient) -> Fut,
        Fut: Future<Output = Result<T, KisiError>>,
    {
        self.call_in_a_row(stop, 1, request).await
    }

    /// As [`call`](Self::call), but the request waits until it and the `in_a_row - 1` that follow
    /// it may all go without waiting: for a pair that must not be a rolling second apart.
    pub(crate) async fn call_in_a_row<T, F, Fut>(
        &mut self,
        stop: &mut Stop,
        in_a_row: usize,
        request: F,
    ) -> Result<T, CallError>
    where
        F: FnOnce(KisiClient) -> Fut,
        Fut: Future<Output = Result<T, KisiError>>,
    {
        let slot = self.limiter.reserve_in_a_row(self.clock.now(), in_a_row);
        self.status.limiter(self.limiter.stats());
        tokio::select! {
            () = self.clock.sleep_until(slot) => {}
            () = stop.stopped() => return Err(CallError::Stopped),
        }
        if stop.is_stopped(self.clock.now()) {
            return Err(CallError::Stopped);
        }
        let result = request(self.client.clone()).await;
        let now = self.clock.now();
        self.limiter.answered(now);
        self.status.limiter(self.limiter.stats());
        self.status.count_call(&result, now);
        let asked_to_wait = result.as_ref().err().and_then(|error| retry_after_wait(error, now));
        match asked_to_wait {
            Some((wait, asked)) => {
                let until = now + wait;
                self.limiter.hold_until(until);
                if asked > wait {
                    tracing::warn!(
                        asked_s = asked.as_secs(),
                        held_s = wait.as_secs(),
                        "Kisi's Retry-After asked for a longer wait than doorsync holds; cut short"
                    );
                }
                self.status.lock().retry_after_hold = Some(RetryAfterHold {
                    until,
                    asked_ms: u64::try_from(asked.as_millis()).unwrap_or(u64::MAX),
                    clamped: asked > wait,
                });
            }
            None => {
                let mut status = self.status.lock();
                if status.retry_after_hold.is_some_and(|hold| hold.until <= now) {
                    status.retry_after_hold = None;
                }
            }
        }
        result.map_err(CallError::Kisi)
    }

    /// Counts the further pages a list call of `items` results read, `page` per request: they
    /// were sent, and answered by now.
    pub(crate) fn charge_pages(&mut self, items: usize, page: usize) {
        let extra_pages = (items / page.max(1)).min(u32::MAX as usize) as u32;
        self.limiter.charge(extra_pages, self.clock.now());
        self.status.limiter(self.limiter.stats());
    }
}
