//! Exponential backoff with full jitter, drawn from a seeded generator so that a simulation
//! replays the same delays.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug)]
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    rng: StdRng,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration, seed: u64) -> Self {
        Self { first, max, rng: StdRng::seed_from_u64(seed) }
    }

    /// The wait before retry number `attempt` (1 for the first retry): anywhere between zero and
    /// `first * 2^(attempt - 1)`, capped at `max` ("full jitter", so that many keys failing at
    /// once do not retry in step).
    pub(crate) fn delay(&mut self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(20);
        let cap = self.first.saturating_mul(1 << doublings).min(self.max);
        let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.rng.random_range(0..=cap_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_a_doubling_cap_and_replay_from_the_seed() {
        let draw = |seed| {
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2), seed);
            (1..=12).map(|attempt| backoff.delay(attempt)).collect::<Vec<_>>()
        };
        let delays = draw(7);
        assert_eq!(delays, draw(7));
        assert_ne!(delays, draw(8));
        for (attempt, delay) in (1..=12u32).zip(&delays) {
            let cap = Duration::from_millis(100 * (1 << (attempt - 1).min(20))).min(Duration::from_secs(2));
            assert!(*delay <= cap, "attempt {attempt}: {delay:?} over {cap:?}");
        }
    }

    #[test]
    fn jitter_spreads_over_the_whole_range() {
        let mut backoff = Backoff::new(Duration::from_millis(1_000), Duration::from_secs(1), 1);
        let delays: Vec<u128> = (0..200).map(|_| backoff.delay(1).as_millis()).collect();
        assert!(delays.iter().any(|delay| *delay < 250) && delays.iter().any(|delay| *delay > 750), "{delays:?}");
    }
}
