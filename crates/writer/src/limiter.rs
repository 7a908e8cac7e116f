//! The request budget in Kisi's own terms: at most N requests in any rolling second.
//!
//! Kisi allows 5 requests in a second per API user, shared by all its keys, and asks for serial
//! requests. The writer makes one request at a time and asks this limiter when it may send the
//! next: at once while fewer than N requests were answered in the last second, so that a new
//! member's few calls go back to back, and otherwise a second after the answer to the N-th request
//! before it.
//!
//! A request is counted from the moment its answer came back, not from when it was sent: Kisi
//! received it no later. So each request arrives more than a second after the N-th before it
//! arrived, however long the network took either way, and no second of Kisi's arrivals holds more
//! than N. A `Retry-After` from Kisi holds every request until then, since the limit is per
//! account.

use std::collections::VecDeque;
use std::time::Duration;

use doorsync_proto::Timestamp;

use crate::status::LimiterStats;

/// The span Kisi counts requests in.
const WINDOW: Duration = Duration::from_secs(1);
/// Timestamps drop what is below a millisecond: an answer read at millisecond `t` came back
/// before `t + 1`, so the window is counted from there.
const CLOCK_RESOLUTION: Duration = Duration::from_millis(1);
const MICROS_PER_SECOND: u64 = 1_000_000;
const MICROS_PER_MILLI: u64 = 1_000;

/// Schedules serial requests, at most `per_second` in any rolling second: [`reserve`](Self::reserve)
/// says when the next may go, [`answered`](Self::answered) counts it once its answer is back.
#[derive(Debug, Clone)]
pub struct RequestLimiter {
    per_second: usize,
    /// When the latest `per_second` requests were answered, oldest first.
    answered: VecDeque<Timestamp>,
    /// A request was reserved and its answer not yet counted.
    awaiting_answer: bool,
    /// Nothing goes before this (a `Retry-After`).
    not_before: Timestamp,
    /// Requests that could not go when asked for, and their waits added up: for the status.
    waits: u64,
    waited_ms: u64,
    /// A second's budget over `per_second` for each request: the share of the budget used, over time.
    budget_used_us: u64,
}

impl RequestLimiter {
    /// At most `per_second` requests (at least 1) in any rolling second.
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second: usize::try_from(per_second.max(1)).unwrap_or(usize::MAX),
            answered: VecDeque::new(),
            awaiting_answer: false,
            not_before: Timestamp::from_unix_millis(i64::MIN / 2),
            waits: 0,
            waited_ms: 0,
            budget_used_us: 0,
        }
    }

    pub fn stats(&self) -> LimiterStats {
        LimiterStats {
            waits: self.waits,
            waited_ms: self.waited_ms,
            budget_used_ms: self.budget_used_us / MICROS_PER_MILLI,
        }
    }

    /// When a request asked for at `now` may be sent: never earlier than `now`. Once it is
    /// answered, [`answered`](Self::answered) counts it; a request reserved but never reported
    /// answered (its call abandoned) is counted as answered when the next is reserved.
    pub fn reserve(&mut self, now: Timestamp) -> Timestamp {
        self.reserve_in_a_row(now, 1)
    }

    /// As [`reserve`](Self::reserve), for the first of `in_a_row` requests that must follow each
    /// other without waiting (at most N): it waits until the budget holds them all.
    pub fn reserve_in_a_row(&mut self, now: Timestamp, in_a_row: usize) -> Timestamp {
        if self.awaiting_answer {
            self.count(1, now);
        }
        let mut send = now.max(self.not_before);
        let in_a_row = in_a_row.clamp(1, self.per_second);
        // The answers that must age out first: all but the `per_second - in_a_row` newest.
        let must_age_out = (self.answered.len() + in_a_row).saturating_sub(self.per_second);
        if let Some(last_to_age_out) = must_age_out.checked_sub(1).and_then(|index| self.answered.get(index)) {
            send = send.max(*last_to_age_out + WINDOW + CLOCK_RESOLUTION);
        }
        let wait_ms = send.as_unix_millis().saturating_sub(now.as_unix_millis());
        if wait_ms > 0 {
            self.waits += 1;
            self.waited_ms = self.waited_ms.saturating_add(wait_ms.unsigned_abs());
        }
        self.awaiting_answer = true;
        send
    }

    /// The reserved request's answer came back at `at`.
    pub fn answered(&mut self, at: Timestamp) {
        if self.awaiting_answer {
            self.count(1, at);
        }
    }

    /// Counts `requests` more, answered by `at`, that were not reserved: the extra pages a list
    /// call fetched inside one client call.
    pub fn charge(&mut self, requests: u32, at: Timestamp) {
        self.count(requests, at);
    }

    /// Holds every request until `at`.
    pub fn hold_until(&mut self, at: Timestamp) {
        self.not_before = self.not_before.max(at);
    }

    fn count(&mut self, requests: u32, at: Timestamp) {
        self.awaiting_answer = false;
        // The clock may step back; the window must not, or a request would be forgotten early.
        let at = self.answered.back().map_or(at, |latest| at.max(*latest));
        let kept = usize::try_from(requests).unwrap_or(usize::MAX).min(self.per_second);
        self.answered.extend(std::iter::repeat_n(at, kept));
        let excess = self.answered.len().saturating_sub(self.per_second);
        self.answered.drain(..excess);
        let share_us = MICROS_PER_SECOND / self.per_second as u64;
        self.budget_used_us = self.budget_used_us.saturating_add(share_us.saturating_mul(u64::from(requests)));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use doorsync_clock::{Clock, ManualClock};
    use proptest::prelude::*;

    use super::*;

    fn at(millis: i64) -> Timestamp {
        Timestamp::from_unix_millis(millis)
    }

    /// The most of `times` in any closed span of `window_ms`, spans starting at each time.
    fn most_in_any_window(times: &[i64], window_ms: i64) -> usize {
        times
            .iter()
            .map(|start| times.iter().filter(|time| **time >= *start && **time <= start + window_ms).count())
            .max()
            .unwrap_or(0)
    }

    /// Serial requests asked for at `asked` (each once the one before was answered), each
    /// answered `answer_ms` after it went: when each went and when it was answered.
    fn serial(limiter: &mut RequestLimiter, asked: &[i64], answer_ms: &[i64]) -> Vec<(i64, i64)> {
        let mut answered_at = i64::MIN;
        asked
            .iter()
            .zip(answer_ms)
            .map(|(asked, answer_ms)| {
                let sent = limiter.reserve(at((*asked).max(answered_at))).as_unix_millis();
                answered_at = sent + answer_ms;
                limiter.answered(at(answered_at));
                (sent, answered_at)
            })
            .collect()
    }

    #[test]
    fn a_new_members_calls_go_back_to_back_and_the_next_wait_for_the_window() {
        let mut limiter = RequestLimiter::new(4);
        let sent = serial(&mut limiter, &[10_000; 6], &[20; 6]);
        let times: Vec<i64> = sent.iter().map(|(sent, _)| sent - 10_000).collect();
        // The first four go as soon as the one before is answered; the fifth a second (and the
        // millisecond a timestamp drops) after the first was answered, the sixth once the fifth
        // is, the second having been answered more than a second before.
        assert_eq!(times, [0, 20, 40, 60, 1_021, 1_041]);
        assert_eq!(limiter.stats().waits, 1);
    }

    #[test]
    fn a_pair_that_must_go_back_to_back_waits_until_the_budget_holds_both() {
        let mut limiter = RequestLimiter::new(4);
        serial(&mut limiter, &[0; 3], &[10; 3]);
        // Three answered at 10, 20 and 30 ms: one more may go now, but a pair only once the
        // first has aged out, and then the second follows without waiting.
        let first = limiter.reserve_in_a_row(at(40), 2);
        assert_eq!(first, at(1_011));
        limiter.answered(at(1_020));
        assert_eq!(limiter.reserve(at(1_020)), at(1_020), "the pair's second goes at once");
        limiter.answered(at(1_030));
        assert_eq!(limiter.reserve_in_a_row(at(1_030), 9), at(2_031), "at most the budget in a row: all four age out");
    }

    #[test]
    fn requests_with_a_quiet_second_between_never_wait() {
        let mut limiter = RequestLimiter::new(4);
        for step in 0..20 {
            let slot = limiter.reserve(at(step * 1_002));
            assert_eq!(slot, at(step * 1_002));
            limiter.answered(slot);
        }
        assert_eq!(limiter.stats().waits, 0);
    }

    #[test]
    fn the_extra_pages_of_a_listing_count_and_holds_push_the_next_request_back() {
        let mut limiter = RequestLimiter::new(4);
        assert_eq!(limiter.reserve(at(0)), at(0));
        limiter.answered(at(100));
        limiter.charge(3, at(100));
        assert_eq!(limiter.reserve(at(100)), at(1_101), "four answered at 100 ms fill the second");
        limiter.answered(at(1_150));
        limiter.hold_until(at(5_000));
        assert_eq!(limiter.reserve(at(1_200)), at(5_000));
        limiter.answered(at(5_010));
        assert_eq!(limiter.reserve(at(5_010)), at(5_010), "after a hold, the window is all that counts");
    }

    #[test]
    fn an_abandoned_request_counts_from_the_next_reservation() {
        let mut limiter = RequestLimiter::new(1);
        assert_eq!(limiter.reserve(at(0)), at(0));
        assert_eq!(limiter.reserve(at(300)), at(1_301), "the first, never reported answered, counts from 300 ms");
    }

    #[test]
    fn a_clock_stepping_back_forgets_nothing_early() {
        let mut limiter = RequestLimiter::new(2);
        limiter.reserve(at(5_000));
        limiter.answered(at(5_000));
        limiter.reserve(at(4_000));
        limiter.answered(at(4_000));
        assert_eq!(limiter.reserve(at(4_000)), at(6_001));
    }

    #[test]
    fn waits_and_the_budget_used_are_counted() {
        let mut limiter = RequestLimiter::new(4);
        serial(&mut limiter, &[0; 5], &[0; 5]);
        // The fifth waited 1 001 ms; five requests used five quarters of a second's budget.
        assert_eq!(limiter.stats(), LimiterStats { waits: 1, waited_ms: 1_001, budget_used_ms: 1_250 });
        limiter.charge(2, at(1_001));
        assert_eq!(limiter.stats().budget_used_ms, 1_750);
    }

    /// The limiter as the writer uses it: reserve, sleep on the clock until the slot, send.
    #[tokio::test]
    async fn on_a_manual_clock_a_request_beyond_the_budget_waits_until_time_moves() {
        let clock = Arc::new(ManualClock::new(at(0)));
        let mut limiter = RequestLimiter::new(2);
        let mut sent = Vec::new();
        for _ in 0..3 {
            let slot = limiter.reserve(clock.now());
            let sleeper = tokio::spawn(clock.sleep_until(slot));
            tokio::task::yield_now().await;
            if slot > clock.now() {
                assert!(!sleeper.is_finished(), "went before its slot");
                clock.set(slot);
            }
            tokio::time::timeout(Duration::from_secs(5), sleeper).await.unwrap().unwrap();
            sent.push(clock.now().as_unix_millis());
            clock.set(clock.now() + Duration::from_millis(10));
            limiter.answered(clock.now());
        }
        assert_eq!(sent, [0, 10, 1_011]);
        assert_eq!((limiter.stats().waits, limiter.stats().waited_ms), (1, 991));
    }

    proptest! {
        /// Whatever the pattern of asks and however long answers take, Kisi, which receives each
        /// request somewhere between its sending and its answer, never sees more than N in a
        /// second; and a request goes at once whenever fewer than N were answered in the second
        /// before it was asked for.
        #[test]
        fn no_second_of_arrivals_holds_more_than_the_limit_and_none_waits_needlessly(
            per_second in 1_u32..=5,
            requests in proptest::collection::vec((0_i64..1_500, 0_i64..400, 0.0_f64..=1.0), 1..60),
        ) {
            let mut limiter = RequestLimiter::new(per_second);
            let mut asked_at = 0;
            let mut answered_at = i64::MIN;
            let mut answers: Vec<i64> = Vec::new();
            let mut arrivals = Vec::new();
            let mut sends = Vec::new();
            for (gap_ms, answer_ms, arrival_share) in requests {
                asked_at = (asked_at + gap_ms).max(answered_at);
                let recent = answers.iter().filter(|answer| **answer + 1_001 > asked_at).count();
                let sent = limiter.reserve(at(asked_at)).as_unix_millis();
                prop_assert!(sent >= asked_at);
                if recent < per_second as usize {
                    prop_assert_eq!(sent, asked_at, "fewer than {} answered in the last second", per_second);
                }
                answered_at = sent + answer_ms;
                limiter.answered(at(answered_at));
                answers.push(answered_at);
                sends.push(sent);
                arrivals.push(sent + (answer_ms as f64 * arrival_share).round() as i64);
            }
            prop_assert!(most_in_any_window(&arrivals, 1_000) <= per_second as usize, "arrivals {:?}", arrivals);
            prop_assert!(most_in_any_window(&sends, 1_000) <= per_second as usize, "sends {:?}", sends);
        }
    }
}
