//! Kisi's rate limit: so many requests per second per API user (all of the user's keys share
//! it), and per IP address for requests without a valid key.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use doorsync_proto::{KisiUserId, Timestamp};

const WINDOW_MS: i64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum LimitKey {
    User(KisiUserId),
    Address(IpAddr),
}

/// A sliding one-second window of admitted requests per key. Refused requests do not count.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_second: usize,
    admitted: HashMap<LimitKey, VecDeque<Timestamp>>,
}

impl RateLimiter {
    pub(crate) fn new(per_second: u32) -> Self {
        Self { per_second: usize::try_from(per_second).unwrap_or(usize::MAX), admitted: HashMap::new() }
    }

    /// Admits a request at `now`, or says how long until one would be.
    pub(crate) fn admit(&mut self, key: LimitKey, now: Timestamp) -> Result<(), Duration> {
        let admitted = self.admitted.entry(key).or_default();
        while admitted.front().is_some_and(|at| now.as_unix_millis() - at.as_unix_millis() >= WINDOW_MS) {
            admitted.pop_front();
        }
        if admitted.len() < self.per_second {
            admitted.push_back(now);
            return Ok(());
        }
        let oldest = admitted.front().map_or(now.as_unix_millis(), |at| at.as_unix_millis());
        let wait_ms = (oldest + WINDOW_MS - now.as_unix_millis()).max(1);
        Err(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sixth_request_within_a_second_waits_for_the_first_to_age_out() {
        let mut limiter = RateLimiter::new(5);
        let user = LimitKey::User(KisiUserId(1));
        for millis in [0, 100, 200, 300, 400] {
            assert_eq!(limiter.admit(user, Timestamp::from_unix_millis(millis)), Ok(()));
        }
        assert_eq!(limiter.admit(user, Timestamp::from_unix_millis(500)), Err(Duration::from_millis(500)));
        assert_eq!(limiter.admit(LimitKey::User(KisiUserId(2)), Timestamp::from_unix_millis(500)), Ok(()));
        assert_eq!(limiter.admit(user, Timestamp::from_unix_millis(1_000)), Ok(()));
        assert!(limiter.admit(user, Timestamp::from_unix_millis(1_000)).is_err());
    }
}
