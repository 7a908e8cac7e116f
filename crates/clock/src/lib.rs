//! The one source of time for doorsync.
//!
//! Logic never reads the time itself: it is handed `now`. The shells around it (actors, timers)
//! read it from a [`Clock`], which is the [`SystemClock`] in production and a [`ManualClock`] in
//! tests and simulation, where time moves only when the test moves it.
#![forbid(unsafe_code)]

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use doorsync_proto::Timestamp;
use futures::future::BoxFuture;
use tokio::sync::watch;

pub trait Clock: Debug + Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// Resolves once `now() >= deadline`.
    fn sleep_until(&self, deadline: Timestamp) -> BoxFuture<'static, ()>;
}

pub type SharedClock = Arc<dyn Clock>;

/// Wall-clock time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        Timestamp::from_unix_millis(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }

    fn sleep_until(&self, deadline: Timestamp) -> BoxFuture<'static, ()> {
        let clock = *self;
        Box::pin(async move {
            // Re-checked after waking: the wall clock may have been stepped meanwhile.
            loop {
                let remaining = deadline.as_unix_millis() - clock.now().as_unix_millis();
                if remaining <= 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(remaining.unsigned_abs())).await;
            }
        })
    }
}

/// A clock that stands still until told to move. Cheap to clone; clones share the time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<Timestamp>>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self { now: Arc::new(watch::Sender::new(start)) }
    }

    pub fn set(&self, now: Timestamp) {
        self.now.send_if_modified(|current| {
            let moved = now > *current;
            if moved {
                *current = now;
            }
            moved
        });
    }

    pub fn advance(&self, by: Duration) {
        self.set(self.now() + by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: Timestamp) -> BoxFuture<'static, ()> {
        let mut changes = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as any clone of the clock; if every clone is gone, time
            // can no longer reach the deadline and the sleeper waits forever, as it would.
            if changes.wait_for(|now| *now >= deadline).await.is_err() {
                futures::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_moved_past_their_deadline() {
        let clock = ManualClock::new(Timestamp::from_unix_millis(1_000));
        let sleeper = tokio::spawn(clock.sleep_until(Timestamp::from_unix_millis(5_000)));
        clock.advance(Duration::from_secs(3));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "4 s is before the deadline");
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), sleeper).await.unwrap().unwrap();
        assert_eq!(clock.now(), Timestamp::from_unix_millis(5_000));
    }

    #[test]
    fn manual_clock_never_goes_back() {
        let clock = ManualClock::new(Timestamp::from_unix_millis(10));
        clock.set(Timestamp::from_unix_millis(5));
        assert_eq!(clock.now(), Timestamp::from_unix_millis(10));
    }

    #[tokio::test]
    async fn system_clock_sleeps_until_the_deadline() {
        let clock = SystemClock;
        let deadline = Timestamp::from_unix_millis(clock.now().as_unix_millis() + 50);
        clock.sleep_until(deadline).await;
        assert!(clock.now() >= deadline);
    }
}
