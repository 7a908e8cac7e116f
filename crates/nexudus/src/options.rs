//! How to reach and authenticate with Nexudus, and how fast to go.

use std::fmt;
use std::time::Duration;

use url::Url;

/// A password, token or webhook secret. Its `Debug` never shows the value and it has no `Display`,
/// so it cannot leak into logs, traces or error messages by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that must send or hash it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The Nexudus admin user the service acts as (the email it signs in with and its password).
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// How each request proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// A bearer token from `POST /api/token` (password grant), cached and refreshed before it
    /// expires; Nexudus recommends this for server-to-server integrations.
    #[default]
    BearerToken,
    /// HTTP Basic with the credentials on every request.
    Basic,
}

/// Nexudus's request limits for all methods: one request per `min_interval`, `per_minute` in
/// any minute and `per_hour` in any hour. All three hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub min_interval: Duration,
    pub per_minute: u32,
    pub per_hour: u32,
}

impl Limits {
    /// The published limits: 1 request per 100 ms, 120 per minute, 5,000 per hour.
    pub const NEXUDUS: Self = Self { min_interval: Duration::from_millis(100), per_minute: 120, per_hour: 5_000 };
}

impl Default for Limits {
    fn default() -> Self {
        Self::NEXUDUS
    }
}

#[derive(Debug, Clone)]
pub struct NexudusOptions {
    /// Where the admin API lives, without `/api`: `https://spaces.nexudus.com`.
    pub base_url: Url,
    pub credentials: Credentials,
    pub auth: AuthMode,
    pub limits: Limits,
    /// How long one HTTP exchange may take before it fails as a timeout.
    pub request_timeout: Duration,
    /// How many times a request answered 409 (throttled) is retried after waiting `Retry-After`.
    pub max_throttle_retries: u32,
}

impl NexudusOptions {
    /// Options with the published limits, bearer tokens, a 30 s timeout and 5 throttling retries.
    pub fn new(base_url: Url, credentials: Credentials) -> Self {
        Self {
            base_url,
            credentials,
            auth: AuthMode::BearerToken,
            limits: Limits::NEXUDUS,
            request_timeout: Duration::from_secs(30),
            max_throttle_retries: 5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_secret() {
        let credentials = Credentials { username: "ops@example.com".into(), password: Secret::new("hunter2") };
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
