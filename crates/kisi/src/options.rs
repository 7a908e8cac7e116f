use std::fmt;
use std::time::Duration;

use url::Url;

/// A Kisi API key ("login secret"). Its `Debug` and `Display` never show the key, so it can sit
/// in options structs and errors that get logged.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for the one place that must send it: the `Authorization` header.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How to reach Kisi, as whom.
#[derive(Debug, Clone)]
pub struct KisiOptions {
    /// `https://api.kisi.io` in production. Plain `http` is accepted only for loopback hosts
    /// (the simulator), so the key never crosses a network in clear text.
    pub base_url: Url,
    pub api_key: ApiKey,
    /// Sent as `X-Kisi-Integration-Identifier`, which Kisi asks integration partners to send.
    pub integration_identifier: String,
    /// Sent as `X-Kisi-Integration-Contact` when set: an email Kisi can reach the integrator at.
    pub integration_contact: Option<String>,
    /// The whole of one request, from connecting to the last byte of the response.
    pub request_timeout: Duration,
}

impl KisiOptions {
    /// Kisi's production API.
    pub const PRODUCTION_URL: &'static str = "https://api.kisi.io";
    /// Kisi's official JavaScript client waits 5 s; a little more leaves room for slow list pages.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

    /// Options with the default timeout and no integration contact.
    pub fn new(base_url: Url, api_key: ApiKey, integration_identifier: impl Into<String>) -> Self {
        Self {
            base_url,
            api_key,
            integration_identifier: integration_identifier.into(),
            integration_contact: None,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_never_show_in_debug_or_display() {
        let key = ApiKey::new("sk-very-secret");
        let options = KisiOptions::new(Url::parse(KisiOptions::PRODUCTION_URL).unwrap(), key.clone(), "doorsync");
        for text in [format!("{key:?}"), format!("{key}"), format!("{options:?}")] {
            assert!(!text.contains("sk-very-secret"), "{text}");
        }
        assert_eq!(key.expose_secret(), "sk-very-secret");
    }
}
