//! Nexudus's three request limits, kept all at once, on whatever clock drives the caller.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use doorsync_clock::SharedClock;
use doorsync_proto::Timestamp;
use tokio::sync::Notify;

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

/// How urgently a request is wanted. Of the requests waiting for the limits at the same time,
/// every live one (a webhook's re-read, which a member may be waiting at the door for) goes
/// before any background one (the poller's, the sweeper's), each kind in arrival order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// What someone is waiting for now; what is not marked otherwise.
    #[default]
    Live,
    /// Bulk work that can wait its turn.
    Background,
}

tokio::task_local! {
    static PRIORITY: Priority;
}

impl Priority {
    /// Runs `work` with every Nexudus request it makes (on this task) at this priority.
    pub async fn scope<F: std::future::Future>(self, work: F) -> F::Output {
        PRIORITY.scope(self, work).await
    }

    /// The priority of the task running now: the one of the innermost [`Priority::scope`], or
    /// [`Priority::Live`] outside any.
    pub fn current() -> Self {
        PRIORITY.try_with(|priority| *priority).unwrap_or_default()
    }
}

/// The requests waiting for their turn, in the order they are to go: by priority, then by
/// arrival. A pure record, the limiter's queue.
#[derive(Debug, Default)]
struct WaitQueue {
    waiting: BTreeSet<Ticket>,
    arrivals: u64,
}

/// One waiting request's place in the [`WaitQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Ticket {
    priority: Priority,
    arrival: u64,
}

impl WaitQueue {
    fn join(&mut self, priority: Priority) -> Ticket {
        self.arrivals += 1;
        let ticket = Ticket { priority, arrival: self.arrivals };
        self.waiting.insert(ticket);
        ticket
    }

    /// Whether `ticket` is the one to go next.
    fn is_next(&self, ticket: Ticket) -> bool {
        self.waiting.first() == Some(&ticket)
    }

    fn leave(&mut self, ticket: Ticket) {
        self.waiting.remove(&ticket);
    }
}

#[derive(Debug)]
struct LimiterState {
    windows: RequestWindows,
    queue: WaitQueue,
}

/// Hands out permission to send, one request at a time, live requests before background ones
/// and each in arrival order, each when [`RequestWindows`] allows. Cheap to clone; clones share
/// the windows and the queue.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    clock: SharedClock,
    state: Arc<Mutex<LimiterState>>,
    /// Woken whenever the queue changes, so that the request now first looks at the limits.
    queue_changed: Arc<Notify>,
    waits: Arc<Mutex<LimiterWaits>>,
}

/// A place in the queue, given up when dropped (a request that is cancelled while it waits
/// must not hold up the others).
struct Place<'a> {
    limiter: &'a RateLimiter,
    ticket: Ticket,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.limiter.state().queue.leave(self.ticket);
        self.limiter.queue_changed.notify_waiters();
    }
}

impl RateLimiter {
    pub fn new(limits: Limits, clock: SharedClock) -> Self {
        Self {
            clock,
            state: Arc::new(Mutex::new(LimiterState {
                windows: RequestWindows::new(limits),
                queue: WaitQueue::default(),
            })),
            queue_changed: Arc::new(Notify::new()),
            waits: Arc::new(Mutex::new(LimiterWaits::default())),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LimiterState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits (on the clock) until this request is the first in the queue and one more request
    /// is allowed, and counts it as sent.
    pub async fn acquire(&self, priority: Priority) {
        let asked_at = self.clock.now();
        let place = Place { ticket: self.state().queue.join(priority), limiter: self };
        self.queue_changed.notify_waiters();
        let mut slept = false;
        loop {
            let changed = self.queue_changed.notified();
            tokio::pin!(changed);
            // Registered before looking at the queue, so that a change meanwhile still wakes it.
            changed.as_mut().enable();
            let now = self.clock.now();
            let wait_until = {
                let mut state = self.state();
                if state.queue.is_next(place.ticket) {
                    let earliest = state.windows.earliest_allowed(now);
                    if earliest <= now {
                        state.windows.record(now);
                        break;
                    }
                    Some(earliest)
                } else {
                    None
                }
            };
            // Woken also when the queue changes: a live request may have come in ahead of this
            // one, or a hold been added.
            match wait_until {
                Some(earliest) => {
                    tokio::select! {
                        () = self.clock.sleep_until(earliest) => {}
                        () = &mut changed => {}
                    }
                }
                None => changed.await,
            }
            slept = true;
        }
        drop(place);
        // Only a request that had to wait counts: a turn taken at once costs nothing worth
        // reporting, even if the clock ticked meanwhile.
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
        self.state().windows.hold_until(until);
        self.queue_changed.notify_waiters();
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
            tokio::time::timeout(Duration::from_secs(5), limiter.acquire(Priority::Live))
                .await
                .expect("within the limit");
        }
        let waiting = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.acquire(Priority::Live).await }
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
        tokio::time::timeout(Duration::from_secs(5), limiter.acquire(Priority::Live))
            .await
            .expect("the first goes at once");
        assert_eq!(limiter.waits(), LimiterWaits::default(), "nothing waited yet");

        let mut second = Box::pin(limiter.acquire(Priority::Live));
        assert!(poll_once(&mut second).await.is_pending(), "the minimum interval holds the second back");
        clock.advance(Duration::from_millis(40));
        assert!(poll_once(&mut second).await.is_pending(), "still within the minimum interval");
        clock.advance(Duration::from_millis(60));
        tokio::time::timeout(Duration::from_secs(5), second).await.expect("released at its slot");
        assert_eq!(limiter.waits(), LimiterWaits { waits: 1, waited_ms: 100 });

        // A 409's Retry-After holds the next request for the rest of the hold.
        limiter.hold_until(ms(5_000));
        let clone = limiter.clone();
        let mut third = Box::pin(async move { clone.acquire(Priority::Live).await });
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
        let mut held = Box::pin(limiter.acquire(Priority::Live));
        assert!(poll_once(&mut held).await.is_pending(), "held for now");
        clock.advance(MAX_RETRY_AFTER - Duration::from_millis(1));
        assert!(poll_once(&mut held).await.is_pending(), "held for five minutes");
        clock.advance(Duration::from_millis(1));
        tokio::time::timeout(Duration::from_secs(5), held).await.expect("released after five minutes");
        assert_eq!(clock.now(), START + MAX_RETRY_AFTER);
    }

    #[tokio::test]
    async fn a_live_request_waiting_with_background_ones_goes_first_and_the_limits_still_hold() {
        let clock = ManualClock::new(START);
        let limiter = RateLimiter::new(Limits::NEXUDUS, Arc::new(clock.clone()));
        limiter.acquire(Priority::Live).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let request = |name: &'static str, priority: Priority| {
            let (limiter, order, clock) = (limiter.clone(), Arc::clone(&order), clock.clone());
            async move {
                limiter.acquire(priority).await;
                order.lock().unwrap_or_else(PoisonError::into_inner).push((name, clock.now()));
            }
        };
        let mut first_poll = Box::pin(request("poll 1", Priority::Background));
        let mut second_poll = Box::pin(request("poll 2", Priority::Background));
        assert!(poll_once(&mut first_poll).await.is_pending(), "the minimum interval holds it back");
        assert!(poll_once(&mut second_poll).await.is_pending());
        let mut webhook = Box::pin(request("webhook", Priority::Live));
        assert!(poll_once(&mut webhook).await.is_pending(), "the minimum interval holds the live one back too");
        let all = async { tokio::join!(first_poll, second_poll, webhook) };
        let mut all = Box::pin(all);
        for _ in 0..3 {
            assert!(poll_once(&mut all).await.is_pending());
            clock.advance(Duration::from_millis(100));
        }
        tokio::time::timeout(Duration::from_secs(5), all).await.expect("all three went");
        let order = order.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert_eq!(order, [("webhook", ms(100)), ("poll 1", ms(200)), ("poll 2", ms(300))]);
    }

    #[tokio::test]
    async fn a_request_given_up_while_it_waits_holds_up_nobody() {
        let clock = ManualClock::new(START);
        let limiter = RateLimiter::new(Limits::NEXUDUS, Arc::new(clock.clone()));
        limiter.acquire(Priority::Live).await;
        let mut abandoned = Box::pin(limiter.acquire(Priority::Live));
        assert!(poll_once(&mut abandoned).await.is_pending());
        let mut background = Box::pin(limiter.acquire(Priority::Background));
        assert!(poll_once(&mut background).await.is_pending());
        drop(abandoned);
        clock.advance(Duration::from_millis(100));
        tokio::time::timeout(Duration::from_secs(5), background).await.expect("the next one goes at its slot");
    }

    #[tokio::test]
    async fn a_scope_sets_the_priority_of_the_work_in_it() {
        assert_eq!(Priority::current(), Priority::Live, "live unless marked");
        let inside = Priority::Background.scope(async { Priority::current() }).await;
        assert_eq!(inside, Priority::Background);
        let nested = Priority::Background.scope(Priority::Live.scope(async { Priority::current() })).await;
        assert_eq!(nested, Priority::Live);
    }

    use proptest::test_runner::TestCaseError;

    proptest::proptest! {
        /// Whatever the arrivals, the queue serves every live request before any background one,
        /// each kind in arrival order, and loses none.
        #[test]
        fn the_queue_serves_live_requests_first_each_kind_in_arrival_order(
            arrivals in proptest::collection::vec(proptest::bool::ANY, 0..40),
            served_between in proptest::collection::vec(0usize..3, 0..40),
        ) {
            let mut queue = WaitQueue::default();
            let mut waiting: Vec<Ticket> = Vec::new();
            let mut served = 0;
            // Serves the one the queue says is next, which must be the best waiting: live
            // before background, then the earliest arrival.
            let mut serve = |queue: &mut WaitQueue, waiting: &mut Vec<Ticket>| -> Result<bool, TestCaseError> {
                let next = waiting.iter().copied().filter(|ticket| queue.is_next(*ticket)).collect::<Vec<_>>();
                proptest::prop_assert!(next.len() <= 1, "one request at a time is next");
                let Some(&next) = next.first() else {
                    proptest::prop_assert!(waiting.is_empty(), "someone is next while anyone waits");
                    return Ok(false);
                };
                let best = waiting.iter().min_by_key(|ticket| (!matches!(ticket.priority, Priority::Live), ticket.arrival));
                proptest::prop_assert_eq!(Some(&next), best);
                queue.leave(next);
                waiting.retain(|ticket| *ticket != next);
                served += 1;
                Ok(true)
            };
            for (index, live) in arrivals.iter().enumerate() {
                let priority = if *live { Priority::Live } else { Priority::Background };
                waiting.push(queue.join(priority));
                for _ in 0..served_between.get(index).copied().unwrap_or(0) {
                    serve(&mut queue, &mut waiting)?;
                }
            }
            while serve(&mut queue, &mut waiting)? {}
            proptest::prop_assert_eq!(served, arrivals.len(), "every request was served once");
        }
    }
}
