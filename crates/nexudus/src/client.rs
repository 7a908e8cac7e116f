//! The HTTP client: authentication, limits, throttling, paging.

use std::sync::Arc;
use std::time::Duration;

use doorsync_clock::SharedClock;
use doorsync_proto::Timestamp;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;
use url::Url;

use crate::error::NexudusError;
use crate::limiter::{LimiterWaits, Priority, RateLimiter};
use crate::models::Entity;
use crate::query::{ListQuery, Listing, Page};
use crate::{AuthMode, NexudusOptions, Secret};

const TOKEN_PATH: &str = "/api/token";
const TOKEN_HINT: &str = "check NEXUDUS_USERNAME / NEXUDUS_PASSWORD (and that the user has API access)";
const API_HINT: &str = "check NEXUDUS_USERNAME / NEXUDUS_PASSWORD and that the user has the role for this entity \
                        (e.g. Booking-List), or is a full administrator";
/// How long to wait on a 409 that names no `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// A token is replaced this long before it expires (or at half its life, if that is sooner), so
/// no request goes out with a token that lapses on the way.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);

tokio::task_local! {
    static FIRST_REQUEST: FirstRequestHook;
}

/// Called once, as the first request of some work leaves the limiter's queue for Nexudus.
struct FirstRequestHook(std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>);

impl FirstRequestHook {
    fn fire(&self) {
        let hook = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(hook) = hook {
            hook();
        }
    }
}

/// Runs `work`, calling `hook` as the first Nexudus request it makes (on this task) goes out,
/// once the limiter has let it through: what that request reads is Nexudus as it is from then
/// on, so anyone who wanted a read and asked before it is served by it.
pub async fn on_first_request<F: std::future::Future>(hook: impl FnOnce() + Send + 'static, work: F) -> F::Output {
    FIRST_REQUEST.scope(FirstRequestHook(std::sync::Mutex::new(Some(Box::new(hook)))), work).await
}

/// A client of the Nexudus admin REST API. Cheap to clone; clones share the token and the
/// request limits, so all of them together stay within Nexudus's budget.
#[derive(Debug, Clone)]
pub struct NexudusClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    options: NexudusOptions,
    clock: SharedClock,
    limiter: RateLimiter,
    token: tokio::sync::Mutex<Option<CachedToken>>,
}

#[derive(Debug)]
struct CachedToken {
    access: Secret,
    refresh: Option<Secret>,
    /// When to get a new one, a little before it expires.
    renew_at: Timestamp,
}

/// What a request carries to prove who it is.
enum Authorization {
    Bearer(Secret),
    Basic,
    /// The token request itself, which carries the credentials in its form.
    InForm,
}

/// Failure to set up the client.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("nexudus: {0} (nexudus.base_url)")]
    BaseUrl(String),
    #[error("nexudus: could not set up the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
}

impl NexudusClient {
    /// Refuses a base URL that is not https (plain http is for a simulator on loopback), and
    /// follows no redirect, since every request carries the credentials.
    pub fn new(options: NexudusOptions, clock: SharedClock) -> Result<Self, SetupError> {
        doorsync_http_client::check_base_url("Nexudus", &options.base_url).map_err(SetupError::BaseUrl)?;
        let http =
            doorsync_http_client::builder().timeout(options.request_timeout).build().map_err(SetupError::Http)?;
        let limiter = RateLimiter::new(options.limits, clock.clone());
        Ok(Self { inner: Arc::new(Inner { http, options, clock, limiter, token: tokio::sync::Mutex::new(None) }) })
    }

    /// How often and how long requests waited for Nexudus's limits, over every clone.
    pub fn limiter_waits(&self) -> LimiterWaits {
        self.inner.limiter.waits()
    }

    /// One page (from 1) of entity `E`, each record read on its own: a malformed one is reported
    /// in [`Page::malformed`] and the others still come back. The answer to a batch read by ids
    /// ([`ListQuery::ids`]), a bare array, is read as a last page.
    pub async fn list_page<E: Entity>(&self, query: &ListQuery<E>, page: u32) -> Result<Page<E>, NexudusError> {
        let path = api_path(E::PATH);
        let body = self.get_json(&path, &query.params_for_page(page)).await?;
        let decode =
            |reason: &str| NexudusError::Decode { method: "GET", path: path.clone(), reason: reason.to_owned() };
        // A batch read by ids (`id=[..]`) answers a bare array of records: one page, the last.
        let (records, envelope) = match &body {
            Value::Array(records) => (records, None),
            Value::Object(envelope) => {
                let records = envelope
                    .get("Records")
                    .and_then(Value::as_array)
                    .ok_or_else(|| decode("the page has no Records list"))?;
                (records, Some(envelope))
            }
            _ => return Err(decode("the answer is neither a page object nor a list of records")),
        };
        let (records, malformed) = records.iter().map(E::from_record).fold(
            (Vec::new(), Vec::new()),
            |(mut records, mut malformed), result| {
                match result {
                    Ok(record) => records.push(record),
                    Err(error) => malformed.push(error),
                }
                (records, malformed)
            },
        );
        Ok(Page {
            records,
            malformed,
            page,
            has_next_page: envelope.and_then(|envelope| envelope.get("HasNextPage")?.as_bool()).unwrap_or(false),
            total_items: envelope.and_then(|envelope| envelope.get("TotalItems")?.as_u64()),
            total_pages: envelope.and_then(|envelope| envelope.get("TotalPages")?.as_u64()),
        })
    }

    /// Every page of entity `E`: follows `HasNextPage`, and stops early at an empty page or
    /// past `TotalPages`.
    pub async fn list<E: Entity>(&self, query: &ListQuery<E>) -> Result<Listing<E>, NexudusError> {
        let mut listing = Listing { records: Vec::new(), malformed: Vec::new(), pages: 0 };
        loop {
            let page = self.list_page(query, listing.pages + 1).await?;
            listing.pages += 1;
            let empty = page.records.is_empty() && page.malformed.is_empty();
            // A server that keeps saying "next page" past its own page count is not followed.
            let past_the_end = page.total_pages.is_some_and(|total| u64::from(listing.pages) >= total);
            listing.records.extend(page.records);
            listing.malformed.extend(page.malformed);
            if !page.has_next_page || empty || past_the_end {
                return Ok(listing);
            }
        }
    }

    /// One record of entity `E` by id; the full record, with the collections (such as a
    /// contract's `Desks`) that listings leave out. A malformed record is
    /// [`NexudusError::Malformed`].
    pub async fn get<E: Entity>(&self, id: u64) -> Result<E, NexudusError> {
        let body = self.get_json(&api_path(&format!("{}/{id}", E::PATH)), &[]).await?;
        E::from_record(&body).map_err(|error| NexudusError::Malformed(Box::new(error)))
    }

    /// A GET whose answer is JSON, authenticated, within the limits, retried when throttled, and
    /// retried once with a new token when the token is refused.
    async fn get_json(&self, path: &str, query: &[(String, String)]) -> Result<Value, NexudusError> {
        let url = self.url("GET", path)?;
        let mut fresh_token_tried = false;
        loop {
            let authorization = self.authorization().await?;
            let response =
                self.send("GET", path, || self.inner.http.get(url.clone()).query(query), &authorization).await?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED
                && matches!(authorization, Authorization::Bearer(_))
                && !fresh_token_tried
            {
                fresh_token_tried = true;
                *self.inner.token.lock().await = None;
                continue;
            }
            if status.is_success() {
                return read_json("GET", path, response).await;
            }
            return Err(status_error("GET", path, status, API_HINT));
        }
    }

    /// Sends the request `build` makes, after the limiter allows it; a 409 (Nexudus's answer to
    /// too many requests) holds every clone back for `Retry-After` and is retried, up to
    /// `max_throttle_retries` times. Any other answer is returned as it is.
    #[tracing::instrument(
        name = "nexudus.request",
        skip_all,
        fields(otel.kind = "client", http.request.method = method, url.path = path)
    )]
    async fn send(
        &self,
        method: &'static str,
        path: &str,
        build: impl Fn() -> RequestBuilder,
        authorization: &Authorization,
    ) -> Result<Response, NexudusError> {
        let mut attempts = 0;
        loop {
            self.inner.limiter.acquire(Priority::current()).await;
            // Ignored outside `on_first_request`, where nobody asked.
            let _ = FIRST_REQUEST.try_with(|hook| hook.fire());
            attempts += 1;
            let request = match authorization {
                Authorization::Bearer(token) => build().bearer_auth(token.expose()),
                Authorization::Basic => {
                    let credentials = &self.inner.options.credentials;
                    build().basic_auth(&credentials.username, Some(credentials.password.expose()))
                }
                Authorization::InForm => build(),
            };
            let response = request.send().await.map_err(|error| NexudusError::from_transport(method, path, error))?;
            if response.status() != StatusCode::CONFLICT {
                return Ok(response);
            }
            if attempts > self.inner.options.max_throttle_retries {
                return Err(NexudusError::Throttled { method, path: path.to_owned(), attempts });
            }
            let wait = retry_after(response.headers(), self.inner.clock.now()).unwrap_or(DEFAULT_RETRY_AFTER);
            tracing::debug!(method, path, wait_ms = wait.as_millis(), "nexudus throttled the request (409)");
            self.inner.limiter.hold_for(wait);
        }
    }

    async fn authorization(&self) -> Result<Authorization, NexudusError> {
        match self.inner.options.auth {
            AuthMode::Basic => Ok(Authorization::Basic),
            AuthMode::BearerToken => self.bearer_token().await.map(Authorization::Bearer),
        }
    }

    /// The cached token, or a new one when there is none or it is about to expire: by the
    /// refresh grant when there is a refresh token, falling back to the password grant.
    async fn bearer_token(&self) -> Result<Secret, NexudusError> {
        let mut cache = self.inner.token.lock().await;
        if let Some(token) = cache.as_ref().filter(|token| self.inner.clock.now() < token.renew_at) {
            return Ok(token.access.clone());
        }
        let refresh = cache.take().and_then(|token| token.refresh);
        let username = self.inner.options.credentials.username.clone();
        let token = match refresh {
            Some(refresh) => {
                let form = [("grant_type", "refresh_token"), ("refresh_token", refresh.expose())];
                match self.request_token(&form).await {
                    Err(error) if !error.is_retryable() => {
                        tracing::debug!("nexudus refused the refresh token; signing in again");
                        self.password_grant(&username).await?
                    }
                    result => result?,
                }
            }
            None => self.password_grant(&username).await?,
        };
        let access = token.access.clone();
        *cache = Some(token);
        Ok(access)
    }

    async fn password_grant(&self, username: &str) -> Result<CachedToken, NexudusError> {
        let password = self.inner.options.credentials.password.expose();
        self.request_token(&[("grant_type", "password"), ("username", username), ("password", password)]).await
    }

    async fn request_token(&self, form: &[(&str, &str)]) -> Result<CachedToken, NexudusError> {
        let url = self.url("POST", TOKEN_PATH)?;
        let client_id = self.inner.options.credentials.username.as_str();
        let build = || self.inner.http.post(url.clone()).header("client_id", client_id).form(form);
        let response = self.send("POST", TOKEN_PATH, build, &Authorization::InForm).await?;
        let status = response.status();
        // A refused grant is 400 `invalid_grant` in OAuth terms; Nexudus documents 401.
        if status == StatusCode::BAD_REQUEST || status == StatusCode::UNAUTHORIZED {
            return Err(NexudusError::Unauthorized { method: "POST", path: TOKEN_PATH.to_owned(), hint: TOKEN_HINT });
        }
        if !status.is_success() {
            return Err(status_error("POST", TOKEN_PATH, status, TOKEN_HINT));
        }
        let body = read_json("POST", TOKEN_PATH, response).await?;
        let decode = |reason: &str| NexudusError::Decode {
            method: "POST",
            path: TOKEN_PATH.to_owned(),
            reason: reason.to_owned(),
        };
        let access = body.get("access_token").and_then(Value::as_str).ok_or_else(|| decode("no access_token"))?;
        let lifetime = body.get("expires_in").and_then(Value::as_u64).ok_or_else(|| decode("no expires_in"))?;
        let lifetime = Duration::from_secs(lifetime);
        let margin = TOKEN_REFRESH_MARGIN.min(lifetime / 2);
        Ok(CachedToken {
            access: Secret::new(access),
            refresh: body.get("refresh_token").and_then(Value::as_str).map(Secret::new),
            renew_at: self.inner.clock.now() + lifetime.saturating_sub(margin),
        })
    }

    fn url(&self, method: &'static str, path: &str) -> Result<Url, NexudusError> {
        let base = self.inner.options.base_url.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}{path}")).map_err(|error| NexudusError::Decode {
            method,
            path: path.to_owned(),
            reason: format!("the base URL and path do not make a URL: {error}"),
        })
    }
}

fn api_path(below_api: &str) -> String {
    format!("/api/{below_api}")
}

async fn read_json(method: &'static str, path: &str, response: Response) -> Result<Value, NexudusError> {
    let bytes = response.bytes().await.map_err(|error| NexudusError::from_transport(method, path, error))?;
    serde_json::from_slice(&bytes).map_err(|error| NexudusError::Decode {
        method,
        path: path.to_owned(),
        reason: format!("not JSON: {error}"),
    })
}

fn status_error(method: &'static str, path: &str, status: StatusCode, hint: &'static str) -> NexudusError {
    let path = path.to_owned();
    match status {
        StatusCode::UNAUTHORIZED => NexudusError::Unauthorized { method, path, hint },
        StatusCode::FORBIDDEN => NexudusError::Forbidden { method, path },
        StatusCode::NOT_FOUND => NexudusError::NotFound { method, path },
        status if status.is_server_error() => NexudusError::Server { method, path, status: status.as_u16() },
        status => NexudusError::UnexpectedStatus { method, path, status: status.as_u16() },
    }
}

/// `Retry-After` as seconds or as an HTTP date, relative to `now`.
fn retry_after(headers: &HeaderMap, now: Timestamp) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    let date_ms = i64::try_from(date.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis()).ok()?;
    Some(Duration::from_millis(u64::try_from(date_ms - now.as_unix_millis()).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(retry_after: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(retry_after).unwrap());
        headers
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date() {
        let now = Timestamp::from_unix_millis(1_445_412_480_000); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(retry_after(&headers("7"), now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&headers("Wed, 21 Oct 2015 07:28:30 GMT"), now), Some(Duration::from_secs(30)));
        assert_eq!(retry_after(&headers("Wed, 21 Oct 2015 07:27:00 GMT"), now), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }
}
