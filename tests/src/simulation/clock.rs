//! The simulation's virtual time: a manual clock that also knows who is sleeping on it and until
//! when, so that the simulation can tell "everyone waits for time to pass" from "someone has
//! work to do", and jump straight to the next instant anyone waits for.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use doorsync_clock::Clock;
use doorsync_proto::Timestamp;
use futures::future::BoxFuture;
use tokio::sync::watch;

/// A clock that stands still until the simulation moves it, like
/// [`doorsync_clock::ManualClock`], and keeps a register of its sleepers' deadlines.
#[derive(Debug, Clone)]
pub(crate) struct SimClock {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    now: watch::Sender<Timestamp>,
    /// Every pending `sleep_until`, by (deadline, registration number).
    sleepers: Mutex<BTreeMap<(Timestamp, u64), ()>>,
    next_registration: AtomicU64,
}

impl Shared {
    fn sleepers(&self) -> MutexGuard<'_, BTreeMap<(Timestamp, u64), ()>> {
        self.sleepers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps a sleeper in the register for as long as its future exists: until it wakes, or until
/// it is dropped unfinished (the other branch of a `select!` won).
struct Registration {
    shared: Arc<Shared>,
    key: (Timestamp, u64),
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.sleepers().remove(&self.key);
    }
}

impl SimClock {
    pub(crate) fn new(start: Timestamp) -> Self {
        Self {
            shared: Arc::new(Shared {
                now: watch::Sender::new(start),
                sleepers: Mutex::new(BTreeMap::new()),
                next_registration: AtomicU64::new(0),
            }),
        }
    }

    /// Moves time forward to `at` (never back), waking whoever sleeps until then.
    pub(crate) fn advance_to(&self, at: Timestamp) {
        self.shared.now.send_if_modified(|now| {
            let moved = at > *now;
            if moved {
                *now = at;
            }
            moved
        });
    }

    /// The earliest deadline anyone sleeps until; at or before now if a sleeper has not woken yet.
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.shared.sleepers().first_key_value().map(|((deadline, _), ())| *deadline)
    }

    /// Whether a sleeper's deadline has come but it has not finished waking up.
    pub(crate) fn has_due_sleepers(&self) -> bool {
        self.next_deadline().is_some_and(|deadline| deadline <= self.now())
    }
}

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        *self.shared.now.borrow()
    }

    fn sleep_until(&self, deadline: Timestamp) -> BoxFuture<'static, ()> {
        // Registered now rather than when first polled: a task that was handed the future but
        // has not run yet is still waiting for that deadline.
        let key = (deadline, self.shared.next_registration.fetch_add(1, Ordering::Relaxed));
        self.shared.sleepers().insert(key, ());
        let registration = Registration { shared: Arc::clone(&self.shared), key };
        let mut changes = self.shared.now.subscribe();
        Box::pin(async move {
            let _registered = registration;
            // The sender lives in `Shared`, which the registration keeps alive: this never fails.
            let _ = changes.wait_for(|now| *now >= deadline).await;
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use super::*;

    fn at(millis: i64) -> Timestamp {
        Timestamp::from_unix_millis(millis)
    }

    #[tokio::test]
    async fn sleepers_are_registered_until_they_wake_or_are_dropped() {
        let clock = SimClock::new(at(0));
        let early = tokio::spawn(clock.sleep_until(at(10)));
        let late = clock.sleep_until(at(50));
        assert_eq!(clock.next_deadline(), Some(at(10)));
        assert!(!clock.has_due_sleepers());
        clock.advance_to(at(20));
        assert!(clock.has_due_sleepers() || early.is_finished());
        tokio::time::timeout(Duration::from_secs(5), early).await.unwrap().unwrap();
        assert_eq!(clock.next_deadline(), Some(at(50)));
        drop(late);
        assert_eq!(clock.next_deadline(), None);
    }
}
