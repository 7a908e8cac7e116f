use std::collections::HashSet;
use std::fmt;

use doorsync_proto::{KisiAssignmentId, KisiGroupId, KisiUserId};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;
use url::Url;

use crate::error::{Endpoint, ErrorDetails, KisiError, RetryAfter};
use crate::model::{
    AccessEnabled, AssignmentValidity, CreateAssignmentBody, CreateUserBody, CurrentUser, GROUP_BASIC_ROLE, Group,
    NewGroupAssignment, NewUser, RoleAssignment, UpdateAssignmentBody, UpdateUserAccessBody, User, Validity,
};
use crate::options::KisiOptions;
use crate::pagination::{PageError, next_offset};

const COLLECTION_RANGE: &str = "x-collection-range";
const INTEGRATION_IDENTIFIER: &str = "x-kisi-integration-identifier";
const INTEGRATION_CONTACT: &str = "x-kisi-integration-contact";
/// The largest pages Kisi serves: users come 100 at a time, groups and role assignments 250.
const USERS_PAGE: u64 = 100;
const GROUPS_PAGE: u64 = 250;
const ASSIGNMENTS_PAGE: u64 = 250;

/// A client for Kisi's users, groups and role assignments.
///
/// Every method makes its HTTP requests once, one after the other, with no rate limiting and no
/// retries: the caller owns both, guided by [`KisiError::is_retryable`] and
/// [`KisiError::retry_after`]. Listing methods follow every page; `*_page` methods read one. Cheap to clone; clones share
/// connections.
#[derive(Clone)]
pub struct KisiClient {
    http: reqwest::Client,
    base_url: Url,
}

impl fmt::Debug for KisiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KisiClient").field("base_url", &self.base_url.as_str()).field("api_key", &"<redacted>").finish()
    }
}

/// One page of a list: its items, and the offset of the next page (`None` after the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_offset: Option<u64>,
}

/// A response Kisi answered with a 2xx status.
struct Answer {
    endpoint: Endpoint,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl KisiClient {
    pub fn new(options: KisiOptions) -> Result<Self, KisiError> {
        let config = |reason: String| KisiError::Config { reason };
        doorsync_http_client::check_base_url("Kisi", &options.base_url).map_err(config)?;
        if options.api_key.expose_secret().trim().is_empty() {
            return Err(config("the API key is empty; set KISI_API_KEY".to_owned()));
        }
        let mut headers = HeaderMap::new();
        let mut authorization = HeaderValue::from_str(&format!("KISI-LOGIN {}", options.api_key.expose_secret()))
            .map_err(|_| {
                config("the API key has characters an HTTP header cannot carry; check KISI_API_KEY".to_owned())
            })?;
        authorization.set_sensitive(true);
        headers.insert(AUTHORIZATION, authorization);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let mut text_header = |name: &'static str, value: &str| {
            let value = HeaderValue::from_str(value)
                .map_err(|_| config(format!("{value:?} cannot be sent as the HTTP header {name}")))?;
            headers.insert(HeaderName::from_static(name), value);
            Ok::<_, KisiError>(())
        };
        text_header(INTEGRATION_IDENTIFIER, &options.integration_identifier)?;
        if let Some(contact) = &options.integration_contact {
            text_header(INTEGRATION_CONTACT, contact)?;
        }
        let http = doorsync_http_client::builder()
            .default_headers(headers)
            .timeout(options.request_timeout)
            .connect_timeout(options.request_timeout)
            .build()
            .map_err(|error| config(format!("cannot build the HTTP client: {error}")))?;
        Ok(Self { http, base_url: options.base_url })
    }

    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// The user that owns the API key (`GET /user`).
    pub async fn current_user(&self) -> Result<CurrentUser, KisiError> {
        self.fetch(Method::GET, &["user"], &[], None).await?.decode()
    }

    /// The user whose email is `email`, compared exactly but ignoring case, or `None`.
    ///
    /// Uses `GET /users?query=` as Kisi's guides do: a free-text search over email, name and
    /// notes, so every page of results is read and filtered here. (Whether the `email` filter
    /// matches exactly is undocumented.)
    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, KisiError> {
        let wanted = email.trim().to_lowercase();
        let users: Vec<User> = self.list(&["users"], vec![("query", email.trim().to_owned())], USERS_PAGE).await?;
        let mut matches: Vec<User> = users.into_iter().filter(|user| user.email.to_lowercase() == wanted).collect();
        match matches.len() {
            0 | 1 => Ok(matches.pop()),
            _ => Err(KisiError::AmbiguousEmail { user_ids: matches.iter().map(|user| user.id).collect() }),
        }
    }

    pub async fn user(&self, id: KisiUserId) -> Result<User, KisiError> {
        self.fetch(Method::GET, &["users", &id.to_string()], &[], None).await?.decode()
    }

    /// Creates a user (`POST /users`). Kisi's answer to an email it already has is undocumented:
    /// look the user up first.
    pub async fn create_user(&self, user: &NewUser) -> Result<User, KisiError> {
        let body = json_body(&CreateUserBody::new(user))?;
        self.fetch(Method::POST, &["users"], &[], Some(body)).await?.decode()
    }

    /// Suspends (`false`) or restores (`true`) the user's door access, keeping their groups.
    pub async fn set_user_access_enabled(&self, id: KisiUserId, access_enabled: bool) -> Result<(), KisiError> {
        let body = json_body(&UpdateUserAccessBody { user: AccessEnabled { access_enabled } })?;
        self.fetch(Method::PATCH, &["users", &id.to_string()], &[], Some(body)).await.map(drop)
    }

    pub async fn delete_user(&self, id: KisiUserId) -> Result<(), KisiError> {
        self.fetch(Method::DELETE, &["users", &id.to_string()], &[], None).await.map(drop)
    }

    /// Every group of the organization.
    pub async fn groups(&self) -> Result<Vec<Group>, KisiError> {
        self.list(&["groups"], Vec::new(), GROUPS_PAGE).await
    }

    /// One group (`GET /groups/{id}`): at start-up, proof that a mapped group is there and this
    /// key may use it. Kisi answers 403 ([`KisiError::is_forbidden`]), not 404, for a group the
    /// key cannot see or that does not exist.
    pub async fn group(&self, id: KisiGroupId) -> Result<Group, KisiError> {
        self.fetch(Method::GET, &["groups", &id.to_string()], &[], None).await?.decode()
    }

    /// The group named exactly `name` (case and spaces count), or `None`; an error when several
    /// groups share the name, since doorsync could not tell which doors were meant.
    pub async fn group_by_name(&self, name: &str) -> Result<Option<Group>, KisiError> {
        let groups: Vec<Group> = self.list(&["groups"], vec![("query", name.to_owned())], GROUPS_PAGE).await?;
        let matches = Group::named(&groups, name);
        match matches.as_slice() {
            [] => Ok(None),
            [only] => Ok(Some((*only).clone())),
            _ => Err(KisiError::AmbiguousGroupName {
                name: name.to_owned(),
                group_ids: matches.iter().map(|group| group.id).collect(),
            }),
        }
    }

    /// Makes `user` a member of `group` (role `group_basic`) for `validity`, without emailing
    /// them. Kisi holds one role per (user, group): a second one is refused with a 422.
    pub async fn create_group_assignment(
        &self,
        user: KisiUserId,
        group: KisiGroupId,
        validity: Validity,
    ) -> Result<RoleAssignment, KisiError> {
        let path = ["role_assignments"];
        let (valid_from, valid_until) = wire_validity(Method::POST, &path, validity)?;
        let body = json_body(&CreateAssignmentBody {
            role_assignment: NewGroupAssignment {
                applies_to_type: "Group",
                applies_to_id: group,
                assignee_type: "User",
                assignee_id: user,
                role_id: GROUP_BASIC_ROLE,
                notify: false,
                valid_from,
                valid_until,
            },
        })?;
        self.fetch(Method::POST, &path, &[], Some(body)).await?.decode()
    }

    pub async fn role_assignment(&self, id: KisiAssignmentId) -> Result<RoleAssignment, KisiError> {
        self.fetch(Method::GET, &["role_assignments", &id.to_string()], &[], None).await?.decode()
    }

    /// The user's role assignments on groups, any role, whoever created them.
    pub async fn user_group_assignments(&self, user: KisiUserId) -> Result<Vec<RoleAssignment>, KisiError> {
        let filters = vec![
            ("assignee_type", "User".to_owned()),
            ("assignee_id", user.to_string()),
            ("applies_to_type", "Group".to_owned()),
        ];
        let assignments: Vec<RoleAssignment> = self.list(&["role_assignments"], filters, ASSIGNMENTS_PAGE).await?;
        Ok(assignments
            .into_iter()
            .filter(|assignment| assignment.user() == Some(user) && assignment.group().is_some())
            .collect())
    }

    /// The group's role assignments held by users (not teams or guests), whoever created them.
    pub async fn group_assignments(&self, group: KisiGroupId) -> Result<Vec<RoleAssignment>, KisiError> {
        let filters = vec![("applies_to_type", "Group".to_owned()), ("applies_to_id", group.to_string())];
        let assignments: Vec<RoleAssignment> = self.list(&["role_assignments"], filters, ASSIGNMENTS_PAGE).await?;
        Ok(assignments
            .into_iter()
            .filter(|assignment| assignment.group() == Some(group) && assignment.user().is_some())
            .collect())
    }

    /// The user's role assignment on the group, if any (Kisi holds at most one): the look to take
    /// before creating one, e.g. after a create whose answer was lost.
    pub async fn user_assignment_in_group(
        &self,
        user: KisiUserId,
        group: KisiGroupId,
    ) -> Result<Option<RoleAssignment>, KisiError> {
        let filters = vec![
            ("assignee_type", "User".to_owned()),
            ("assignee_id", user.to_string()),
            ("applies_to_type", "Group".to_owned()),
            ("applies_to_id", group.to_string()),
        ];
        let assignments: Vec<RoleAssignment> = self.list(&["role_assignments"], filters, ASSIGNMENTS_PAGE).await?;
        Ok(assignments
            .into_iter()
            .find(|assignment| assignment.user() == Some(user) && assignment.group() == Some(group)))
    }

    /// Asks Kisi to change when the assignment is valid (`PATCH /role_assignments/{id}`). Kisi's
    /// spec does not list these fields for PATCH (it looks mislabelled), so Kisi may answer 204
    /// and change nothing, or refuse with a 422: read the assignment back before trusting it, and
    /// delete and re-create it otherwise.
    pub async fn update_assignment_validity(&self, id: KisiAssignmentId, validity: Validity) -> Result<(), KisiError> {
        let id = id.to_string();
        let path = ["role_assignments", id.as_str()];
        let (valid_from, valid_until) = wire_validity(Method::PATCH, &path, validity)?;
        let body =
            json_body(&UpdateAssignmentBody { role_assignment: AssignmentValidity { valid_from, valid_until } })?;
        self.fetch(Method::PATCH, &path, &[], Some(body)).await.map(drop)
    }

    pub async fn delete_assignment(&self, id: KisiAssignmentId) -> Result<(), KisiError> {
        self.fetch(Method::DELETE, &["role_assignments", &id.to_string()], &[], None).await.map(drop)
    }

    /// One page of the organisation's users (`GET /users`, 100 a page) from `offset`: one request,
    /// so that a caller with a request budget spends it page by page.
    pub async fn users_page(&self, offset: u64) -> Result<Page<User>, KisiError> {
        self.page(&["users"], Vec::new(), USERS_PAGE, offset).await
    }

    /// One page of the group's role assignments held by users (not teams or guests), whoever
    /// created them (`GET /role_assignments`, 250 a page) from `offset`: one request.
    pub async fn group_assignments_page(
        &self,
        group: KisiGroupId,
        offset: u64,
    ) -> Result<Page<RoleAssignment>, KisiError> {
        let filters = vec![("applies_to_type", "Group".to_owned()), ("applies_to_id", group.to_string())];
        let mut page: Page<RoleAssignment> =
            self.page(&["role_assignments"], filters, ASSIGNMENTS_PAGE, offset).await?;
        page.items.retain(|assignment| assignment.group() == Some(group) && assignment.user().is_some());
        Ok(page)
    }

    /// Every page of a list, items seen on an earlier page (shifted by a concurrent insert)
    /// dropped.
    async fn list<T: DeserializeOwned + Identified>(
        &self,
        path: &[&str],
        filters: Vec<(&'static str, String)>,
        limit: u64,
    ) -> Result<Vec<T>, KisiError> {
        let mut items: Vec<T> = Vec::new();
        let mut seen = HashSet::new();
        let mut offset = 0;
        loop {
            let page: Page<T> = self.page(path, filters.clone(), limit, offset).await?;
            items.extend(page.items.into_iter().filter(|item| seen.insert(item.identity())));
            match page.next_offset {
                Some(next) => offset = next,
                None => return Ok(items),
            }
        }
    }

    /// One page of a list from `offset`, with the offset of the next page if there is one; an
    /// error ([`KisiError::TooManyResults`]) when the next page lies past Kisi's offset cap.
    async fn page<T: DeserializeOwned>(
        &self,
        path: &[&str],
        mut query: Vec<(&'static str, String)>,
        limit: u64,
        offset: u64,
    ) -> Result<Page<T>, KisiError> {
        query.push(("limit", limit.to_string()));
        query.push(("offset", offset.to_string()));
        let answer = self.fetch(Method::GET, path, &query, None).await?;
        let range = answer.headers.get(COLLECTION_RANGE).map(|value| value.to_str().unwrap_or("<not text>").to_owned());
        let endpoint = answer.endpoint.clone();
        let items: Vec<T> = answer.decode()?;
        let next_offset = next_offset(offset, limit, items.len(), range.as_deref()).map_err(|error| match error {
            PageError::MalformedRange(range) => {
                KisiError::Decode { endpoint: endpoint.clone(), reason: format!("X-Collection-Range {range:?}") }
            }
            PageError::PastOffsetCap { total } => KisiError::TooManyResults { endpoint: endpoint.clone(), total },
        })?;
        Ok(Page { items, next_offset })
    }

    async fn fetch(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&'static str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Answer, KisiError> {
        let endpoint = Endpoint::new(method.clone(), format!("/{}", path.join("/")));
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|()| KisiError::Config { reason: format!("{} cannot be a base URL", self.base_url) })?
            .pop_if_empty()
            .extend(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.body(body);
        }
        // The path holds ids only; the query (an email search, say) stays out of traces.
        let span = tracing::info_span!(
            "kisi.request",
            otel.kind = "client",
            http.request.method = %endpoint.method,
            url.path = %endpoint.path,
            http.response.status_code = tracing::field::Empty,
        );
        let exchange = async {
            let response = request.send().await.map_err(|error| transport_error(&endpoint, error))?;
            let status = response.status();
            tracing::Span::current().record("http.response.status_code", status.as_u16());
            let headers = response.headers().clone();
            let body = response.bytes().await.map_err(|error| transport_error(&endpoint, error))?.to_vec();
            Ok::<_, KisiError>((status, headers, body))
        };
        let (status, headers, body) = exchange.instrument(span).await?;
        if status.is_success() {
            Ok(Answer { endpoint, headers, body })
        } else {
            Err(status_error(endpoint, status, &headers, &body))
        }
    }
}

impl Answer {
    fn decode<T: DeserializeOwned>(self) -> Result<T, KisiError> {
        serde_json::from_slice(&self.body).map_err(|error| KisiError::Decode {
            endpoint: self.endpoint,
            reason: without_quoted_values(&error.to_string()),
        })
    }
}

/// The records a list is made of, told apart by id.
trait Identified {
    fn identity(&self) -> u64;
}

impl Identified for User {
    fn identity(&self) -> u64 {
        self.id.0
    }
}

impl Identified for Group {
    fn identity(&self) -> u64 {
        self.id.0
    }
}

impl Identified for RoleAssignment {
    fn identity(&self) -> u64 {
        self.id.0
    }
}

/// serde's messages quote the offending value (`invalid type: string "ann@…"`); errors get
/// logged, so values are dropped and only the shape of the problem is kept.
fn without_quoted_values(message: &str) -> String {
    let mut kept = String::with_capacity(message.len());
    let mut quoted = false;
    for character in message.chars() {
        if character == '"' {
            if !quoted {
                kept.push_str("\"…\"");
            }
            quoted = !quoted;
        } else if !quoted {
            kept.push(character);
        }
    }
    kept
}

fn json_body(body: &impl Serialize) -> Result<Vec<u8>, KisiError> {
    serde_json::to_vec(body)
        .map_err(|error| KisiError::Config { reason: format!("cannot encode a request body: {error}") })
}

fn wire_validity(
    method: Method,
    path: &[&str],
    validity: Validity,
) -> Result<(Option<String>, Option<String>), KisiError> {
    validity.to_wire().map_err(|reason| KisiError::InvalidInput {
        endpoint: Endpoint::new(method, format!("/{}", path.join("/"))),
        reason,
    })
}

fn transport_error(endpoint: &Endpoint, error: reqwest::Error) -> KisiError {
    // The URL may carry an email address in its query.
    let error = error.without_url();
    if error.is_timeout() {
        return KisiError::Timeout { endpoint: endpoint.clone() };
    }
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    KisiError::Transport { endpoint: endpoint.clone(), reason, request_sent: !error.is_connect() }
}

fn status_error(endpoint: Endpoint, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> KisiError {
    let retry_after = headers.get(RETRY_AFTER).and_then(|value| value.to_str().ok()).and_then(RetryAfter::parse);
    let details = || ErrorDetails::from_body(body);
    match status.as_u16() {
        401 => KisiError::Unauthorized { endpoint, details: details() },
        403 => KisiError::Forbidden { endpoint, details: details() },
        404 => KisiError::NotFound { endpoint, details: details() },
        422 => KisiError::Unprocessable { endpoint, details: details() },
        429 => KisiError::RateLimited { endpoint, retry_after },
        500..=599 => KisiError::Server { endpoint, status: status.as_u16(), retry_after },
        status => KisiError::UnexpectedStatus { endpoint, status, details: details() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::ApiKey;

    fn options(url: &str) -> KisiOptions {
        KisiOptions::new(Url::parse(url).unwrap(), ApiKey::new("secret-key"), "doorsync")
    }

    #[test]
    fn plain_http_is_refused_except_to_loopback() {
        assert!(KisiClient::new(options("https://api.kisi.io")).is_ok());
        assert!(KisiClient::new(options("http://127.0.0.1:8080/")).is_ok());
        assert!(KisiClient::new(options("http://[::1]:8080")).is_ok());
        let error = KisiClient::new(options("http://api.kisi.io")).unwrap_err();
        assert!(matches!(error, KisiError::Config { .. }) && error.to_string().contains("https"), "{error}");
    }

    #[test]
    fn bad_keys_are_refused_without_showing_them() {
        let mut bad = options("https://api.kisi.io");
        bad.api_key = ApiKey::new("line\nbreak-secret");
        let error = KisiClient::new(bad).unwrap_err().to_string();
        assert!(error.contains("KISI_API_KEY") && !error.contains("break-secret"), "{error}");
        let mut empty = options("https://api.kisi.io");
        empty.api_key = ApiKey::new(" ");
        assert!(KisiClient::new(empty).is_err());
    }

    #[test]
    fn debug_output_hides_the_key() {
        let client = KisiClient::new(options("https://api.kisi.io")).unwrap();
        let debug = format!("{client:?}");
        assert!(debug.contains("api.kisi.io") && !debug.contains("secret-key"), "{debug}");
    }

    #[test]
    fn decode_errors_drop_quoted_values() {
        assert_eq!(
            without_quoted_values(r#"invalid type: string "ann@example.com", expected u64 at line 1"#),
            r#"invalid type: string "…", expected u64 at line 1"#
        );
    }
}
