//! Appending through outages: the same message, with the same id, until the log takes it.

use std::time::Duration;

use crate::{Appended, EventLog, LogError, NewMessage};

/// How long and how often to retry an append that failed for a transient reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Give up (returning the last error) once this much time has passed.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            give_up_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (0-based): doubling, capped.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(16));
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Appends `message`, retrying transient failures with the same message id. Because the log
/// de-duplicates by id, a retry after a lost acknowledgement cannot store the message twice:
/// it is answered with the original sequence.
pub async fn append_with_retry(
    log: &dyn EventLog,
    message: NewMessage,
    policy: RetryPolicy,
) -> Result<Appended, LogError> {
    let started = tokio::time::Instant::now();
    let mut attempt = 0;
    loop {
        match log.append(message.clone()).await {
            Err(error) if error.is_transient() && started.elapsed() < policy.give_up_after => {
                tracing::debug!(subject = %message.subject, attempt, %error, "append failed, retrying");
                tokio::time::sleep(policy.delay(attempt)).await;
                attempt += 1;
            }
            answer => return answer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let policy = RetryPolicy {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            give_up_after: Duration::from_secs(5),
        };
        let delays: Vec<u128> = (0..6).map(|n| policy.delay(n).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.delay(u32::MAX), Duration::from_secs(1));
    }
}
