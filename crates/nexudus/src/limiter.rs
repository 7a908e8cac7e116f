//! Nexudus's three request limits, kept all at once, on whatever clock drives the caller.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use doorsync_clock::SharedClock;
use doorsync_proto::Timestamp;

use crate::Limits;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3_600);

/// The longest a `Retry-After` holds requests back. Nexudus's own waits are seconds to a minute;
/// a longer one (a proxy's `Retry-After: 99999999`) would freeze every read, so it is cut to this
/// and tried again then.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

/// The record of recent requests against [`Limits`]: a pure calculation of when the next request
/// may go, shared by the client (to wait) and the simulator (to refuse with 409).
///
/// The windows slide: "120 per minute" means no 60 s span ever holds more than 120 requests, not
/// 120 per clock minute, so a burst at the end of one minute cannot double up with the next.
#[derive(Debug, Clone)]
pub struct RequestWindows {
    limits: Limits,
    /// When each request that may still count against a window was sent, oldest first.
    sent: VecDeque<Timestamp>,
    /// Nothing goes before this instant (set when the server said "retry after").
    held_until: Option<Timestamp>,
}

impl RequestWindows {
    pub fn new(limits: Limits) -> Self {
        Self { limits, sent: VecDeque::new(), held_until: None }
    }

    /// The earliest instant, `now` or later, at which one more request keeps within every limit.
    pub fn earliest_allowed(&mut self, now: Timestamp) -> Timestamp {
        self.forget_before(now);
        let mut earliest = now;
        if let Some(held_until) = self.held_until {
            earliest = earliest.max(held_until);
        }
        if let Some(&last) = self.sent.back() {
            earliest = earliest.max(last + self.limits.min_interval);
        }
        for (limit, window) in [(self.limits.per_minute, MINUTE), (self.limits.per_hour, HOUR)] {
            // A limit of 0 would stop every request forever; it is read as "one per window".
            let limit = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
            if let Some(oldest_counted) = self.sent.len().checked_sub(limit).and_then(|index| self.sent.get(index)) {
                earliest = earliest.max(*oldest_counted + window);
            }
        }
        earliest
    }

    /// Counts a request sent at `at`.
    pub fn record(&mut self, at: Timestamp) {
        self.sent.push_back(at);
    }

    /// Lets nothing go before `until`.
    pub fn hold_until(&mut self, until: Timestamp) {
        self.held_until = Some(self.held_until.map_or(until, |held| held.max(until)));
    }

    fn forget_before(&mut self, now: Timestamp) {
        let longest = if self.limits.min_interval > HOUR { self.limits.min_interval } else { HOUR };
        let keep = usize::try_from(self.limits.per_minute.max(self.limits.per_hour).max(1)).unwrap_or(usize::MAX);
        while self.sent.front().is_some_and(|&sent| sent + longest <= now) || self.sent.len() > keep {
            self.sent.pop_front();
        }
    }
}

/// How often, and for how long, the limits held requests back (since the limiter was made).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LimiterWaits {
    /// Requests that could not go as soon as they were asked for.
    pub waits: u64,
    /// Their waits added up (queueing behind earlier requests included), in milliseconds.
    pub waited_ms: u64,
}

/// Hands out permission to send, one request at a time, in arrival order, each when
/// [`RequestWindows`] allows. Cheap to clone; clones share the windows.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    clock: SharedClock,
    windows: Arc<Mutex<RequestWindows>>,
    /// Held by the one caller waiting for its turn, so callers are served in order.
    turn: Arc<tokio::sync::Mutex<()>>,
    waits: Arc<Mutex<LimiterWaits>>,
}

impl RateLimiter {
    pub fn new(limits: Limits, clock: SharedClock) -> Self {
        Self {
            clock,
            windows: Arc::new(Mutex::new(RequestWindows::new(limits))),
            turn: Arc::new(tokio::sync::Mutex::new(())),
            waits: Arc::new(Mutex::new(LimiterWaits::default())),
        }
    }

    /// Waits (on the clock) until one more request is allowed, and counts it as sent.
    pub async fn acquire(&self) {
        let asked_at = self.clock.now();
        let _turn = self.turn.lock().await;
        let mut slept = false;
        loop {
            let now = self.clock.now();
            let earliest = {
                let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
                let earliest = windows.earliest_allowed(now);
                if earliest <= now {
                    windows.record(now);
                    break;
                }
                earliest
            };
            // Re-checked after waking: a hold may have been added meanwhile.
            self.clock.sleep_until(earliest).await;
            slept = true;
        }
        // Only a request the limits put to sleep counts: a turn taken at once costs nothing
        // worth reporting, even if the clock ticked meanwhile.
        if slept {
            let waited = self.clock.now().as_unix_millis().saturating_sub(asked_at.as_unix_millis());
            let mut waits = self.waits.lock().unwrap_or_else(PoisonError::into_inner);
            waits.waits += 1;
            waits.waited_ms = waits.waited_ms.saturating_add(u64::try_from(waited).unwrap_or(0));
        }
    }

    /// How often and how long [`acquire`](Self::acquire) has waited, over every clone.
    pub fn waits(&self) -> LimiterWaits {
        *self.waits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes every caller wait until `until`, e.g. because the server asked to retry after it,
    /// but never longer than [`MAX_RETRY_AFTER`] from now.
    pub fn hold_until(&self, until: Timestamp) {
        let now = self.clock.now();
        let asked = Duration::from_millis(
            u64::try_from(until.as_unix_millis().saturating_sub(now.as_unix_millis())).unwrap_or(0),
        );
        self.hold_for(asked);
    }

    /// Makes every caller wait `wait` from now (a `Retry-After`), cut to [`MAX_RETRY_AFTER`]
    /// with a warning when it is longer.
    pub fn hold_for(&self, wait: Duration) {
        if wait > MAX_RETRY_AFTER {
            tracing::warn!(
                asked_s = wait.as_secs(),
                held_s = MAX_RETRY_AFTER.as_secs(),
                "nexudus (or a proxy before it) asked to wait longer than doorsync ever waits; holding requests \
                 for the longest wait instead"
            );
        }
        let until = self.clock.now() + wait.min(MAX_RETRY_AFTER);
        self.windows.lock().unwrap_or_else(PoisonError::into_inner).hold_until(until);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use doorsync_clock::{Clock, ManualClock};

    use super::*;

    const START: Timestamp = Timestamp::from_unix_millis(1_700_000_000_000);

    fn ms(millis: i64) -> Timestamp {
        Timestamp::from_unix_millis(START.as_unix_millis() + millis)
    }

    #[test]
    fn requests_are_spaced_by_the_minimum_interval() {
        let mut windows = RequestWindows::new(Limits::NEXUDUS);
        assert_eq!(windows.earliest_allowed(ms(0)), ms(0));
        windows.record(ms(0));
        assert_eq!(windows.earliest_allowed(ms(30)), ms(100));
        assert_eq!(windows.earliest_allowed(ms(250)), ms(250));
    }

    #[test]
    fn the_121st_request_in_a_minute_waits_for_the_first_to_leave_the_window() {
        let mut windows = RequestWindows::new(Limits::NEXUDUS);
        for i in 0..120 {
            let at = windows.earliest_allowed(ms(i * 100));
            assert_eq!(at, ms(i * 100), "request {i} is within every limit");
            windows.record(at);
        }
        // 120 requests span 0 ms to 11.9 s; the next may go when the first is a minute old.
        assert_eq!(windows.earliest_allowed(ms(12_000)), ms(60_000));
        windows.record(ms(60_000));
        assert_eq!(windows.earliest_allowed(ms(60_050)), ms(60_100), "the minimum interval still holds");
    }

    #[test]
    fn the_hourly_limit_holds_when_every_minute_is_within_its_own() {
        let limits = Limits { min_interval: Duration::from_millis(100), per_minute: 120, per_hour: 240 };
        let mut windows = RequestWindows::new(limits);
        let mut now = ms(0);
        for _ in 0..240 {
            now = windows.earliest_allowed(now);
            windows.record(now);
        }
        // The second batch of 120 went at 60 s; the hour is full until the first request is an
        // hour old, although the current minute would allow more.
        assert_eq!(now, ms(60_000 + 119 * 100));
        assert_eq!(windows.earliest_allowed(ms(130_000)), ms(3_600_000));
    }

    #[test]
    fn a_hold_delays_everything_until_it_ends() {
        let mut windows = RequestWindows::new(Limits::NEXUDUS);
        windows.hold_until(ms(5_000));
        windows.hold_until(ms(2_000));
        assert_eq!(windows.earliest_allowed(ms(0)), ms(5_000), "a shorter hold does not shorten a longer one");
        assert_eq!(windows.earliest_allowed(ms(6_000)), ms(6_000));
    }

    #[tokio::test]
    async fn the_limiter_waits_on_the_clock_for_the_minute_window() {
        let clock = ManualClock::new(START);
        let limits = Limits { min_interval: Duration::ZERO, per_minute: 120, per_hour: 5_000 };
        let limiter = RateLimiter::new(limits, Arc::new(clock.clone()));
        for _ in 0..120 {
            tokio::time::timeout(Duration::from_secs(5), limiter.acquire()).await.expect("within the limit");
        }
        let waiting = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.acquire().await }
        });
        clock.advance(Duration::from_secs(59));
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the 121st request waits while the window holds 120");
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("released").expect("no panic");
        assert_eq!(clock.now(), START + MINUTE);
    }

    /// Polls `future` once, as an executor would when it first runs it.
    async fn poll_once<F: std::future::Future + Unpin>(future: &mut F) -> std::task::Poll<F::Output> {
        std::future::poll_fn(|context| std::task::Poll::Ready(std::pin::Pin::new(&mut *future).poll(context))).await
    }

    #[tokio::test]
    async fn only_requests_the_limits_held_back_are_counted_with_how_long_they_waited() {
        let clock = ManualClock::new(START);
        let limiter = RateLimiter::new(Limits::NEXUDUS, Arc::new(clock.clone()));
        tokio::time::timeout(Duration::from_secs(5), limiter.acquire()).await.expect("the first goes at once");
        assert_eq!(limiter.waits(), LimiterWaits::default(), "nothing waited yet");

        let mut second = Box::pin(limiter.acquire());
        assert!(poll_once(&mut second).await.is_pending(), "the minimum interval holds the second back");
        clock.advance(Duration::from_millis(40));
        assert!(poll_once(&mut second).await.is_pending(), "still within the minimum interval");
        clock.advance(Duration::from_millis(60));
        tokio::time::timeout(Duration::from_secs(5), second).await.expect("released at its slot");
        assert_eq!(limiter.waits(), LimiterWaits { waits: 1, waited_ms: 100 });

        // A 409's Retry-After holds the next request for the rest of the hold.
        limiter.hold_until(ms(5_000));
        let clone = limiter.clone();
        let mut third = Box::pin(async move { clone.acquire().await });
        assert!(poll_once(&mut third).await.is_pending(), "held until the Retry-After has passed");
        clock.set(ms(5_000));
        tokio::time::timeout(Duration::from_secs(5), third).await.expect("released when the hold ends");
        assert_eq!(limiter.waits(), LimiterWaits { waits: 2, waited_ms: 100 + 4_900 }, "clones share the count");
    }

    #[tokio::test]
    async fn a_retry_after_longer_than_five_minutes_holds_requests_five_minutes() {
        let clock = ManualClock::new(START);
        let limiter = RateLimiter::new(Limits::NEXUDUS, Arc::new(clock.clone()));
        limiter.hold_for(Duration::from_secs(99_999_999));
        limiter.hold_until(START + Duration::from_secs(86_400));
        let mut held = Box::pin(limiter.acquire());
        assert!(poll_once(&mut held).await.is_pending(), "held for now");
        clock.advance(MAX_RETRY_AFTER - Duration::from_millis(1));
        assert!(poll_once(&mut held).await.is_pending(), "held for five minutes");
        clock.advance(Duration::from_millis(1));
        tokio::time::timeout(Duration::from_secs(5), held).await.expect("released after five minutes");
        assert_eq!(clock.now(), START + MAX_RETRY_AFTER);
    }
}
