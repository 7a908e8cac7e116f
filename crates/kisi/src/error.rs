use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use doorsync_proto::{KisiGroupId, KisiUserId, Timestamp};
use reqwest::Method;
use serde::Deserialize;

/// The method and path of one Kisi call, e.g. `POST /role_assignments`. Never the query string,
/// which may hold an email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub method: Method,
    pub path: String,
}

impl Endpoint {
    pub(crate) fn new(method: Method, path: impl Into<String>) -> Self {
        Self { method, path: path.into() }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// When Kisi asked us to try again, from a `Retry-After` header.
///
/// An HTTP date is kept as an instant rather than turned into a delay here, because that needs
/// the current time, which only the caller's clock may give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    Delay(Duration),
    At(Timestamp),
}

impl RetryAfter {
    /// Parses either form of `Retry-After`: delay-seconds or an HTTP date.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(Self::Delay(Duration::from_secs(seconds)));
        }
        let at = httpdate::parse_http_date(value).ok()?;
        let millis = match at.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_millis()).ok()?,
            Err(before) => -i64::try_from(before.duration().as_millis()).ok()?,
        };
        Some(Self::At(Timestamp::from_unix_millis(millis)))
    }

    /// How long to wait from `now`; zero if the instant has passed.
    pub fn delay_from(self, now: Timestamp) -> Duration {
        match self {
            Self::Delay(delay) => delay,
            Self::At(at) => {
                Duration::from_millis(u64::try_from(at.as_unix_millis() - now.as_unix_millis()).unwrap_or(0))
            }
        }
    }

    /// [`delay_from`](Self::delay_from), but never more than `ceiling`: a proxy or a broken
    /// server can send `Retry-After: 99999999` (three years), which must not stop the caller.
    pub fn clamped_delay_from(self, now: Timestamp, ceiling: Duration) -> Duration {
        self.delay_from(now).min(ceiling)
    }
}

/// One validation message from a 422 body, e.g. field `user_id`, message `has already been taken`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// What Kisi said in an error body: `{"error", "code"}` or `{"errors": {field: [messages]}}`.
/// Empty when the body was neither (a proxy's HTML page, nothing at all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorDetails {
    pub message: Option<String>,
    pub code: Option<String>,
    pub field_errors: Vec<FieldError>,
}

impl ErrorDetails {
    pub(crate) fn from_body(body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Body {
            error: Option<String>,
            code: Option<String>,
            #[serde(default)]
            errors: Option<serde_json::Value>,
        }
        let Ok(body) = serde_json::from_slice::<Body>(body) else {
            return Self::default();
        };
        let mut field_errors = Vec::new();
        match body.errors {
            Some(serde_json::Value::Object(fields)) => {
                for (field, messages) in fields {
                    let messages = match messages {
                        serde_json::Value::Array(messages) => messages,
                        single => vec![single],
                    };
                    for message in messages {
                        let message = message.as_str().map_or_else(|| message.to_string(), str::to_owned);
                        field_errors.push(FieldError { field: field.clone(), message });
                    }
                }
            }
            Some(serde_json::Value::String(message)) => {
                field_errors.push(FieldError { field: String::new(), message });
            }
            _ => {}
        }
        Self { message: body.error, code: body.code, field_errors }
    }
}

impl fmt::Display for ErrorDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .field_errors
            .iter()
            .map(|error| {
                if error.field.is_empty() {
                    error.message.clone()
                } else {
                    format!("{} {}", error.field, error.message)
                }
            })
            .collect();
        if let Some(message) = &self.message {
            parts.push(message.clone());
        }
        if parts.is_empty() {
            parts.push("no details in the response".to_owned());
        }
        f.write_str(&parts.join("; "))?;
        if let Some(code) = &self.code {
            write!(f, " (code {code})")?;
        }
        Ok(())
    }
}

/// Why a Kisi call failed, sorted by what the caller should do about it: retry
/// ([`is_retryable`](Self::is_retryable)), stop and alert ([`is_credentials_problem`](Self::is_credentials_problem)),
/// or give up on this request ([`is_permanent`](Self::is_permanent)).
#[derive(Debug, Clone, thiserror::Error)]
pub enum KisiError {
    #[error("kisi: invalid client configuration: {reason}")]
    Config { reason: String },
    #[error("kisi: cannot send {endpoint}: {reason}")]
    InvalidInput { endpoint: Endpoint, reason: String },
    #[error("kisi: 401 from {endpoint}: the API key was refused; check the API key (KISI_API_KEY)")]
    Unauthorized { endpoint: Endpoint, details: ErrorDetails },
    #[error(
        "kisi: 403 from {endpoint}: {details}; check that the API key (KISI_API_KEY) belongs to an organization owner or \
         administrator (Kisi also answers 403 for ids this key cannot see)"
    )]
    Forbidden { endpoint: Endpoint, details: ErrorDetails },
    #[error("kisi: 404 from {endpoint}: {details}")]
    NotFound { endpoint: Endpoint, details: ErrorDetails },
    #[error("kisi: 422 from {endpoint}: {details}")]
    Unprocessable { endpoint: Endpoint, details: ErrorDetails },
    #[error("kisi: 429 from {endpoint}: rate limited{}", describe_retry_after(*.retry_after))]
    RateLimited { endpoint: Endpoint, retry_after: Option<RetryAfter> },
    #[error("kisi: {status} from {endpoint}: server error{}", describe_retry_after(*.retry_after))]
    Server { endpoint: Endpoint, status: u16, retry_after: Option<RetryAfter> },
    #[error("kisi: {status} from {endpoint}: {details}")]
    UnexpectedStatus { endpoint: Endpoint, status: u16, details: ErrorDetails },
    #[error("kisi: {endpoint} timed out; the request may have been carried out")]
    Timeout { endpoint: Endpoint },
    #[error("kisi: {endpoint} failed in transit: {reason}{}", if *.request_sent { "; the request may have been carried out" } else { "" })]
    Transport {
        endpoint: Endpoint,
        reason: String,
        /// False only when no connection could be made, so Kisi certainly did nothing.
        request_sent: bool,
    },
    #[error("kisi: unexpected response to {endpoint}: {reason}")]
    Decode { endpoint: Endpoint, reason: String },
    #[error("kisi: {endpoint} has {total} results, more than Kisi lets a client page through (offset cap 20000)")]
    TooManyResults { endpoint: Endpoint, total: u64 },
    #[error("kisi: several users have this email address: {user_ids:?}")]
    AmbiguousEmail { user_ids: Vec<KisiUserId> },
    #[error("kisi: several groups are named {name:?}: {group_ids:?}; rename them in Kisi or map the group by id")]
    AmbiguousGroupName { name: String, group_ids: Vec<KisiGroupId> },
}

fn describe_retry_after(retry_after: Option<RetryAfter>) -> String {
    match retry_after {
        Some(RetryAfter::Delay(delay)) => format!(", retry after {} s", delay.as_secs()),
        Some(RetryAfter::At(at)) => format!(", retry at {at}"),
        None => String::new(),
    }
}

impl KisiError {
    /// Trying the same request again later may succeed: 429, 5xx, timeouts, lost connections.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Server { .. } | Self::Timeout { .. } | Self::Transport { .. })
    }

    /// The API key is refused or lacks rights: every further call will fail the same way, so the
    /// caller should pause and alert rather than work through its queue.
    pub fn is_credentials_problem(&self) -> bool {
        matches!(self, Self::Unauthorized { .. } | Self::Forbidden { .. })
    }

    /// Kisi answered 403. That is either a key without the rights (an observer's, or one whose
    /// user lost admin rights) or an id this key cannot see or that does not exist: Kisi uses
    /// 403 for both. A caller that has checked its key (e.g. with `GET /user` and the mapped
    /// groups at start-up) can take a 403 on one call as about that call's ids.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::Forbidden { .. })
    }

    /// This request will never succeed as it is (Kisi refused its content, or its answer cannot
    /// be used): dead-letter it with this error as the reason.
    pub fn is_permanent(&self) -> bool {
        !self.is_retryable() && !self.is_credentials_problem()
    }

    /// Kisi's `Retry-After`, when it sent one with a 429 or 5xx.
    pub fn retry_after(&self) -> Option<RetryAfter> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Kisi may have carried out the request although we saw no success (a write whose answer
    /// was lost): look before doing it again.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Server { .. } => true,
            Self::Transport { request_sent, .. } => *request_sent,
            _ => false,
        }
    }

    /// The call this error is about, when it is about one.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        match self {
            Self::InvalidInput { endpoint, .. }
            | Self::Unauthorized { endpoint, .. }
            | Self::Forbidden { endpoint, .. }
            | Self::NotFound { endpoint, .. }
            | Self::Unprocessable { endpoint, .. }
            | Self::RateLimited { endpoint, .. }
            | Self::Server { endpoint, .. }
            | Self::UnexpectedStatus { endpoint, .. }
            | Self::Timeout { endpoint }
            | Self::Transport { endpoint, .. }
            | Self::Decode { endpoint, .. }
            | Self::TooManyResults { endpoint, .. } => Some(endpoint),
            Self::Config { .. } | Self::AmbiguousEmail { .. } | Self::AmbiguousGroupName { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Endpoint {
        Endpoint::new(Method::POST, "/role_assignments")
    }

    #[test]
    fn unprocessable_names_the_call_and_kisi_field_messages() {
        let details = ErrorDetails::from_body(br#"{"errors":{"user_id":["has already been taken"]}}"#);
        let error = KisiError::Unprocessable { endpoint: endpoint(), details };
        assert_eq!(error.to_string(), "kisi: 422 from POST /role_assignments: user_id has already been taken");
        assert!(error.is_permanent());
    }

    #[test]
    fn error_bodies_of_both_shapes_and_none_are_described() {
        let single = ErrorDetails::from_body(br#"{"code":"000404","error":"The endpoint does not exist"}"#);
        assert_eq!(single.to_string(), "The endpoint does not exist (code 000404)");
        let fields = ErrorDetails::from_body(br#"{"errors":{"email":["can't be blank","is invalid"],"name":["x"]}}"#);
        assert_eq!(fields.to_string(), "email can't be blank; email is invalid; name x");
        assert_eq!(ErrorDetails::from_body(b"<html>bad gateway</html>").to_string(), "no details in the response");
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(RetryAfter::parse(" 7 "), Some(RetryAfter::Delay(Duration::from_secs(7))));
        let at = RetryAfter::parse("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(at, RetryAfter::At(Timestamp::from_unix_millis(784_111_777_000)));
        assert_eq!(at.delay_from(Timestamp::from_unix_millis(784_111_775_500)), Duration::from_millis(1_500));
        assert_eq!(at.delay_from(Timestamp::from_unix_millis(784_111_780_000)), Duration::ZERO);
        assert_eq!(RetryAfter::parse("soon"), None);
    }

    #[test]
    fn a_huge_retry_after_is_clamped_to_the_ceiling() {
        let five_minutes = Duration::from_secs(300);
        let now = Timestamp::from_unix_millis(1_735_689_600_000);
        let huge = RetryAfter::parse("99999999").unwrap();
        assert_eq!(huge.delay_from(now), Duration::from_secs(99_999_999), "delay_from is unchanged");
        assert_eq!(huge.clamped_delay_from(now, five_minutes), five_minutes);
        let short = RetryAfter::Delay(Duration::from_secs(2));
        assert_eq!(short.clamped_delay_from(now, five_minutes), Duration::from_secs(2));
        let far = RetryAfter::parse("Fri, 31 Dec 9999 23:59:59 GMT").unwrap();
        assert_eq!(far.clamped_delay_from(now, five_minutes), five_minutes);
        let past = RetryAfter::At(Timestamp::from_unix_millis(0));
        assert_eq!(past.clamped_delay_from(now, five_minutes), Duration::ZERO);
    }

    #[test]
    fn each_error_belongs_to_exactly_one_class() {
        let details = ErrorDetails::default;
        let errors = [
            KisiError::Unauthorized { endpoint: endpoint(), details: details() },
            KisiError::Forbidden { endpoint: endpoint(), details: details() },
            KisiError::NotFound { endpoint: endpoint(), details: details() },
            KisiError::RateLimited { endpoint: endpoint(), retry_after: None },
            KisiError::Server { endpoint: endpoint(), status: 503, retry_after: None },
            KisiError::Timeout { endpoint: endpoint() },
            KisiError::Decode { endpoint: endpoint(), reason: "x".into() },
        ];
        for error in &errors {
            let classes = [error.is_retryable(), error.is_credentials_problem(), error.is_permanent()];
            assert_eq!(classes.iter().filter(|class| **class).count(), 1, "{error}");
        }
        assert!(errors[0].is_credentials_problem() && errors[1].is_credentials_problem());
        assert!(errors[1].is_forbidden() && !errors[0].is_forbidden() && !errors[2].is_forbidden());
        assert!(errors[3].is_retryable() && errors[5].outcome_unknown());
        assert!(errors[0].to_string().contains("check the API key"));
        assert!(errors[1].to_string().contains("check that the API key"));
    }
}
