//! The request budget: a generic cell rate algorithm (GCRA) on the writer's clock.
//!
//! Kisi allows 5 requests per second per API user, shared by all its keys, and asks for serial
//! requests. The writer makes one request at a time and asks this limiter when it may send the
//! next: at most `rate` per second on average, with up to `burst` at once after a quiet spell.
//! A `Retry-After` from Kisi holds every request until then, since the limit is per account.

use doorsync_proto::Timestamp;

use crate::status::LimiterStats;

const MICROS_PER_MILLI: i64 = 1_000;
const MICROS_PER_SECOND: f64 = 1_000_000.0;

/// GCRA as a scheduler: [`reserve`](Self::reserve) says when a request may go and books its slot.
#[derive(Debug, Clone)]
pub(crate) struct Gcra {
    /// Time between two requests at the sustained rate.
    interval_us: i64,
    /// How far ahead of the theoretical arrival time a request may go: `(burst - 1)` intervals.
    tolerance_us: i64,
    /// The theoretical arrival time of the next request.
    tat_us: i64,
    /// Nothing goes before this (a `Retry-After`).
    not_before_us: i64,
    /// Requests that could not go when asked for, and their waits added up: for the status.
    waits: u64,
    waited_ms: u64,
    /// One interval per request slot booked: the share of the budget used, over time.
    budget_used_us: u64,
}

impl Gcra {
    /// `rate` requests per second (must be positive), `burst` at once (at least 1).
    pub(crate) fn new(rate: f64, burst: u32) -> Self {
        let interval_us = (MICROS_PER_SECOND / rate).ceil() as i64;
        Self {
            interval_us,
            tolerance_us: interval_us.saturating_mul(i64::from(burst.max(1) - 1)),
            tat_us: i64::MIN / 2,
            not_before_us: i64::MIN / 2,
            waits: 0,
            waited_ms: 0,
            budget_used_us: 0,
        }
    }

    pub(crate) fn stats(&self) -> LimiterStats {
        LimiterStats {
            waits: self.waits,
            waited_ms: self.waited_ms,
            budget_used_ms: self.budget_used_us / MICROS_PER_MILLI.unsigned_abs(),
        }
    }

    /// When a request asked for at `now` may be sent, with its slot booked. Never earlier than
    /// `now`; rounded up to the millisecond so a request never goes early.
    pub(crate) fn reserve(&mut self, now: Timestamp) -> Timestamp {
        let now_us = now.as_unix_millis().saturating_mul(MICROS_PER_MILLI);
        let send_us = now_us.max(self.tat_us - self.tolerance_us).max(self.not_before_us);
        self.tat_us = self.tat_us.max(send_us) + self.interval_us;
        let send = Timestamp::from_unix_millis(
            send_us.div_euclid(MICROS_PER_MILLI) + i64::from(send_us % MICROS_PER_MILLI != 0),
        );
        let wait_ms = send.as_unix_millis().saturating_sub(now.as_unix_millis());
        if wait_ms > 0 {
            self.waits += 1;
            self.waited_ms = self.waited_ms.saturating_add(wait_ms.unsigned_abs());
        }
        self.use_budget(1);
        send
    }

    /// Books `requests` more slots without sending anything now: the extra pages a list call
    /// fetched inside one client call.
    pub(crate) fn charge(&mut self, requests: u32) {
        self.tat_us = self.tat_us.saturating_add(self.interval_us.saturating_mul(i64::from(requests)));
        self.use_budget(requests);
    }

    fn use_budget(&mut self, requests: u32) {
        let used_us = self.interval_us.saturating_mul(i64::from(requests)).unsigned_abs();
        self.budget_used_us = self.budget_used_us.saturating_add(used_us);
    }

    /// Holds every request until `at`.
    pub(crate) fn hold_until(&mut self, at: Timestamp) {
        self.not_before_us = self.not_before_us.max(at.as_unix_millis().saturating_mul(MICROS_PER_MILLI));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use doorsync_clock::{Clock, ManualClock};

    use super::*;

    fn at(millis: i64) -> Timestamp {
        Timestamp::from_unix_millis(millis)
    }

    /// The most requests any window of `window_ms` holds, windows starting at each request.
    fn most_in_any_window(times: &[Timestamp], window_ms: i64) -> usize {
        times
            .iter()
            .map(|start| {
                times
                    .iter()
                    .filter(|time| **time >= *start && time.as_unix_millis() < start.as_unix_millis() + window_ms)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn requests_asked_for_at_once_are_spread_at_the_rate() {
        let mut gcra = Gcra::new(4.0, 1);
        let times: Vec<Timestamp> = (0..9).map(|_| gcra.reserve(at(10_000))).collect();
        let millis: Vec<i64> = times.iter().map(|time| time.as_unix_millis() - 10_000).collect();
        assert_eq!(millis, [0, 250, 500, 750, 1_000, 1_250, 1_500, 1_750, 2_000]);
        assert_eq!(most_in_any_window(&times, 1_000), 4);
    }

    #[test]
    fn a_burst_goes_at_once_after_a_quiet_spell_and_then_the_rate_holds() {
        let mut gcra = Gcra::new(4.0, 3);
        let first: Vec<i64> = (0..5).map(|_| gcra.reserve(at(0)).as_unix_millis()).collect();
        assert_eq!(first, [0, 0, 0, 250, 500]);
        // Quiet for long enough to earn the whole burst back, but not more than the burst.
        let later: Vec<i64> = (0..5).map(|_| gcra.reserve(at(10_000)).as_unix_millis()).collect();
        assert_eq!(later, [10_000, 10_000, 10_000, 10_250, 10_500]);
    }

    #[test]
    fn requests_at_the_rate_never_wait() {
        let mut gcra = Gcra::new(4.0, 1);
        for step in 0..20 {
            assert_eq!(gcra.reserve(at(step * 250)), at(step * 250));
        }
    }

    #[test]
    fn fractional_intervals_round_up_and_never_go_early() {
        let mut gcra = Gcra::new(3.0, 1);
        let times: Vec<i64> = (0..4).map(|_| gcra.reserve(at(0)).as_unix_millis()).collect();
        assert_eq!(times, [0, 334, 667, 1_001]);
    }

    #[test]
    fn charges_and_holds_push_the_next_request_back() {
        let mut gcra = Gcra::new(4.0, 1);
        assert_eq!(gcra.reserve(at(0)), at(0));
        gcra.charge(2);
        assert_eq!(gcra.reserve(at(0)), at(750));
        gcra.hold_until(at(5_000));
        assert_eq!(gcra.reserve(at(1_000)), at(5_000));
        assert_eq!(gcra.reserve(at(1_000)), at(5_250), "no burst after a hold");
    }

    /// The limiter as the writer uses it: reserve, then sleep on the clock until the slot.
    #[tokio::test]
    async fn on_a_manual_clock_the_next_request_waits_until_time_moves() {
        let clock = Arc::new(ManualClock::new(at(0)));
        let mut gcra = Gcra::new(4.0, 1);
        let mut sent = Vec::new();
        for _ in 0..3 {
            let slot = gcra.reserve(clock.now());
            let sleeper = tokio::spawn(clock.sleep_until(slot));
            tokio::task::yield_now().await;
            if slot > clock.now() {
                assert!(!sleeper.is_finished(), "went before its slot");
                clock.set(slot);
            }
            tokio::time::timeout(Duration::from_secs(5), sleeper).await.unwrap().unwrap();
            sent.push(clock.now().as_unix_millis());
        }
        assert_eq!(sent, [0, 250, 500]);
        let stats = gcra.stats();
        assert_eq!((stats.waits, stats.waited_ms), (2, 250 + 250), "each request after the first waited 250 ms");
    }

    #[test]
    fn waits_and_the_budget_booked_are_counted() {
        let mut gcra = Gcra::new(4.0, 1);
        for _ in 0..3 {
            gcra.reserve(at(0));
        }
        assert_eq!(gcra.stats(), LimiterStats { waits: 2, waited_ms: 250 + 500, budget_used_ms: 750 });
        gcra.charge(2);
        gcra.hold_until(at(5_000));
        assert_eq!(gcra.reserve(at(1_000)), at(5_000));
        assert_eq!(gcra.stats(), LimiterStats { waits: 3, waited_ms: 750 + 4_000, budget_used_ms: 1_500 });
    }

    #[test]
    fn requests_at_the_rate_use_the_whole_budget_without_waiting() {
        let mut gcra = Gcra::new(4.0, 1);
        for step in 0..20 {
            gcra.reserve(at(step * 250));
        }
        // 5 s of requests at exactly the rate: 5 s of budget used, so a utilisation of 1.
        assert_eq!(gcra.stats(), LimiterStats { waits: 0, waited_ms: 0, budget_used_ms: 5_000 });
    }
}
