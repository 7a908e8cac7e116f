//! What can go wrong talking to Nexudus, phrased so an operator knows what to do.

/// A failed Nexudus request. Messages name the method and path, never a password or token.
#[derive(Debug, thiserror::Error)]
pub enum NexudusError {
    /// The credentials were refused, or (Nexudus answers 401 for both) the user lacks a role.
    #[error("nexudus: 401 from {method} {path}: {hint}")]
    Unauthorized { method: &'static str, path: String, hint: &'static str },
    #[error(
        "nexudus: 403 from {method} {path}: the Nexudus user lacks the role for this entity (e.g. Booking-List); \
         grant it or use a full administrator"
    )]
    Forbidden { method: &'static str, path: String },
    #[error("nexudus: 404 from {method} {path}: no such record (it may have been deleted)")]
    NotFound { method: &'static str, path: String },
    /// Still answered 409 after waiting `Retry-After` as many times as allowed.
    #[error(
        "nexudus: {method} {path} still throttled (409) after {attempts} attempts: another client may share \
         this user's request budget"
    )]
    Throttled { method: &'static str, path: String, attempts: u32 },
    #[error("nexudus: {status} from {method} {path}: Nexudus failed to answer; retry later")]
    Server { method: &'static str, path: String, status: u16 },
    /// Any other status, which retrying will not change.
    #[error("nexudus: unexpected {status} from {method} {path}")]
    UnexpectedStatus { method: &'static str, path: String, status: u16 },
    #[error("nexudus: {method} {path} timed out; check the network path to Nexudus or raise request_timeout")]
    Timeout { method: &'static str, path: String },
    #[error("nexudus: {method} {path} failed before an answer: {source}")]
    Transport {
        method: &'static str,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    /// The answer was not the JSON shape this client understands (not a single malformed record:
    /// those are reported per record, see [`MalformedRecord`](crate::MalformedRecord)).
    #[error("nexudus: {method} {path} answered something unreadable: {reason}")]
    Decode { method: &'static str, path: String, reason: String },
    /// A record fetched by id could not be read as its entity.
    #[error(transparent)]
    Malformed(Box<crate::MalformedRecord>),
}

impl NexudusError {
    /// Whether the same request may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled { .. } | Self::Server { .. } | Self::Timeout { .. } | Self::Transport { .. })
    }

    /// Whether this answer to a read by id may mean the record was deleted: Nexudus answers **500**,
    /// not 404, for an id it no longer has (reference §1.6), so a 500 is no proof of an outage.
    /// Confirm with a listing filtered by the id ([`ListQuery::ids`](crate::ListQuery::ids)):
    /// only an empty one means the record is gone.
    pub fn may_mean_deleted(&self) -> bool {
        matches!(self, Self::NotFound { .. } | Self::Server { status: 500, .. })
    }

    pub(crate) fn from_transport(method: &'static str, path: &str, source: reqwest::Error) -> Self {
        let path = path.to_owned();
        if source.is_timeout() {
            Self::Timeout { method, path }
        } else {
            // Without the URL: the message names the path already and a URL may carry filters.
            Self::Transport { method, path, source: source.without_url() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_are_retryable() {
        let path = || "/api/spaces/bookings".to_owned();
        assert!(NexudusError::Server { method: "GET", path: path(), status: 503 }.is_retryable());
        assert!(NexudusError::Throttled { method: "GET", path: path(), attempts: 6 }.is_retryable());
        assert!(NexudusError::Timeout { method: "GET", path: path() }.is_retryable());
        assert!(!NexudusError::NotFound { method: "GET", path: path() }.is_retryable());
        assert!(!NexudusError::Forbidden { method: "GET", path: path() }.is_retryable());
        let unauthorized = NexudusError::Unauthorized { method: "POST", path: "/api/token".into(), hint: "check" };
        assert!(!unauthorized.is_retryable());
    }

    #[test]
    fn a_404_or_a_500_may_mean_the_record_was_deleted_but_an_outage_does_not() {
        let path = || "/api/spaces/bookings/7".to_owned();
        assert!(NexudusError::NotFound { method: "GET", path: path() }.may_mean_deleted());
        assert!(NexudusError::Server { method: "GET", path: path(), status: 500 }.may_mean_deleted());
        assert!(!NexudusError::Server { method: "GET", path: path(), status: 503 }.may_mean_deleted());
        assert!(!NexudusError::Timeout { method: "GET", path: path() }.may_mean_deleted());
    }
}
