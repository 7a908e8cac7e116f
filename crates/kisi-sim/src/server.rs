use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use doorsync_clock::SharedClock;
use doorsync_proto::{KisiAssignmentId, KisiGroupId, KisiUserId, Timestamp};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tower_service::Service;
use url::Url;

use crate::faults::{Fault, FaultRule, Faults, RandomFaults};
use crate::limiter::{LimitKey, RateLimiter};
use crate::switches::{PatchValidity, UnknownIds};
use crate::world::{
    Creator, GroupAccess, KeyAccess, Operation, Reply, Request, SeedUser, SimAssignment, SimGroup, SimUser, World,
};

/// Request bodies larger than this are refused; Kisi's are a few hundred bytes.
const MAX_REQUEST_BODY: usize = 1 << 20;

/// How to start a simulator.
///
/// The switches for what Kisi leaves open ([`patch_validity`](Self::patch_validity),
/// [`unknown_ids`](Self::unknown_ids), [`retry_after_on_429`](Self::retry_after_on_429))
/// default to the form hardest on a client; [`SimHandle`] can flip each while running.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// `127.0.0.1:0` (a free loopback port) by default.
    pub bind: SocketAddr,
    /// The time for the rate limit, latency and records' timestamps.
    pub clock: SharedClock,
    /// Seeds the generator of random faults.
    pub seed: u64,
    /// Kisi's limit per API user: 5.
    pub requests_per_second: u32,
    pub organization_name: String,
    /// Keep every exchange for [`SimHandle::exchanges`]; off by default, since a long demo would
    /// keep them all.
    pub record_exchanges: bool,
    /// What `PATCH /role_assignments/{id}` does with `valid_from`/`valid_until`, which Kisi's
    /// description does not confirm: [`PatchValidity::Ignore`] by default (204, window
    /// unchanged); [`PatchValidity::Apply`] or [`PatchValidity::Reject`] (422) otherwise.
    pub patch_validity: PatchValidity,
    /// 403 or 404 for ids that do not exist where Kisi's documentation allows both:
    /// [`UnknownIds::Forbidden`] by default. A role-assignment create naming a group the key
    /// cannot see answers 403 either way, as Kisi support documents.
    pub unknown_ids: UnknownIds,
    /// Whether the rate limit's 429s carry `Retry-After` (in whole seconds). Kisi does not say;
    /// true by default, false for a client that must back off on its own. Faults injected with
    /// [`Fault::Status`] carry whatever `Retry-After` they were given.
    pub retry_after_on_429: bool,
}

impl SimOptions {
    pub fn new(clock: SharedClock) -> Self {
        Self {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            clock,
            seed: 0,
            requests_per_second: 5,
            organization_name: "Simulated Coworking".to_owned(),
            record_exchanges: false,
            patch_validity: PatchValidity::default(),
            unknown_ids: UnknownIds::default(),
            retry_after_on_429: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("kisi simulator: cannot listen on {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },
    #[error("kisi simulator: no user {0}")]
    NoSuchUser(KisiUserId),
    #[error("kisi simulator: a user with this email already exists")]
    EmailTaken,
    #[error("kisi simulator: refused: {0}")]
    Refused(String),
}

/// How many requests the simulator received, by endpoint (`POST /role_assignments`,
/// `GET /users/{id}`) and by the status it answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallCounts {
    pub by_endpoint: BTreeMap<String, u64>,
    pub by_status: BTreeMap<u16, u64>,
    /// Requests whose connection was closed without an answer.
    pub dropped: u64,
    /// Requests never answered.
    pub hung: u64,
}

impl CallCounts {
    pub fn total(&self) -> u64 {
        self.by_endpoint.values().sum()
    }

    /// Requests to an endpoint, e.g. `("POST", "/role_assignments")` or `("GET", "/users/{id}")`.
    pub fn endpoint(&self, method: &str, template: &str) -> u64 {
        self.by_endpoint.get(&format!("{method} {template}")).copied().unwrap_or(0)
    }

    pub fn status(&self, status: u16) -> u64 {
        self.by_status.get(&status).copied().unwrap_or(0)
    }
}

/// One request and its answer, kept when [`SimOptions::record_exchanges`] is set.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// The request's headers, names in lower case; `authorization` keeps only its scheme
    /// (`KISI-LOGIN <redacted>`).
    pub request_headers: BTreeMap<String, String>,
    /// The JSON body, or the raw text as a JSON string if it was not JSON.
    pub request_body: Option<Value>,
    /// `None` when the connection was dropped instead.
    pub status: Option<u16>,
    pub response_body: Option<Value>,
    pub collection_range: Option<String>,
    pub retry_after: Option<String>,
}

#[cfg(feature = "openapi-validation")]
impl Exchange {
    /// The exchange in the form [`doorsync_kisi::openapi::KisiOpenApi::check_call`] checks.
    pub fn recorded_call(&self) -> doorsync_kisi::openapi::RecordedCall<'_> {
        doorsync_kisi::openapi::RecordedCall {
            method: &self.method,
            path: &self.path,
            request_body: self.request_body.as_ref(),
            status: self.status,
            response_body: self.response_body.as_ref(),
            collection_range: self.collection_range.as_deref(),
        }
    }
}

/// A running simulator of Kisi's API on a loopback port.
#[derive(Debug)]
pub struct KisiSimulator {
    handle: SimHandle,
    address: SocketAddr,
    base_url: Url,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
}

impl KisiSimulator {
    pub async fn start(options: SimOptions) -> Result<Self, SimError> {
        let listener =
            TcpListener::bind(options.bind).await.map_err(|source| SimError::Bind { address: options.bind, source })?;
        let address = listener.local_addr().map_err(|source| SimError::Bind { address: options.bind, source })?;
        let base_url = Url::parse(&format!("http://{address}/"))
            .map_err(|error| SimError::Bind { address, source: std::io::Error::other(error) })?;
        let mut world = World::new(options.organization_name);
        world.set_patch_validity(options.patch_validity);
        world.set_unknown_ids(options.unknown_ids);
        let handle = SimHandle {
            shared: Arc::new(Shared {
                clock: options.clock,
                record_exchanges: options.record_exchanges,
                state: Mutex::new(SimState {
                    world,
                    retry_after_on_429: options.retry_after_on_429,
                    limiter: RateLimiter::new(options.requests_per_second),
                    faults: Faults::new(options.seed),
                    calls: CallCounts::default(),
                    calls_by_key: HashMap::new(),
                    exchanges: Vec::new(),
                }),
            }),
        };
        let router = Router::new().fallback(serve).with_state(handle.shared.clone());
        let (stop, stopped) = watch::channel(false);
        let server = tokio::spawn(accept_connections(listener, router, stopped));
        Ok(Self { handle, address, base_url, stop, server })
    }

    /// `http://127.0.0.1:<port>/`
    pub fn base_url(&self) -> Url {
        self.base_url.clone()
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Inspects and changes the simulated organization; cheap to clone.
    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// Stops accepting, closes every connection (hanging requests included) and waits.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
    }
}

/// The simulator's state for tests: accounts, groups, users, assignments, faults and counts.
#[derive(Debug, Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    clock: SharedClock,
    record_exchanges: bool,
    state: Mutex<SimState>,
}

#[derive(Debug)]
struct SimState {
    world: World,
    retry_after_on_429: bool,
    limiter: RateLimiter,
    faults: Faults,
    calls: CallCounts,
    /// Requests by the API key they presented; asked one key at a time, so that [`CallCounts`],
    /// which tests print and compare, holds no keys.
    calls_by_key: HashMap<String, u64>,
    exchanges: Vec<Exchange>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panic while holding the lock leaves consistent data (every change is one statement
        // or a rejected request), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl SimHandle {
    fn now(&self) -> Timestamp {
        self.shared.clock.now()
    }

    /// A new API user (a Kisi user that owns API keys), e.g. the integration's.
    pub fn add_api_user(&self, email: &str, name: &str) -> Result<KisiUserId, SimError> {
        let now = self.now();
        self.shared.lock().world.insert_user(email, name, false, now).ok_or(SimError::EmailTaken)
    }

    /// Gives `user` an API key; several keys of one user share its rate limit.
    pub fn add_api_key(&self, user: KisiUserId, key: &str, access: KeyAccess) -> Result<(), SimError> {
        if self.shared.lock().world.add_key(user, key.to_owned(), access) {
            Ok(())
        } else {
            Err(SimError::NoSuchUser(user))
        }
    }

    /// An API user with one administrator key: the usual integration account.
    pub fn add_api_account(&self, email: &str, name: &str, key: &str) -> Result<KisiUserId, SimError> {
        let user = self.add_api_user(email, name)?;
        self.add_api_key(user, key, KeyAccess::Admin)?;
        Ok(user)
    }

    pub fn revoke_api_key(&self, key: &str) -> bool {
        self.shared.lock().world.revoke_key(key)
    }

    pub fn add_group(&self, name: &str) -> KisiGroupId {
        let now = self.now();
        self.shared.lock().world.insert_group(name, now)
    }

    /// A managed user made by someone else (an operator in the dashboard, another integration),
    /// with no creator recorded, no notes and no metadata; [`SimHandle::seed_user`] sets those.
    pub fn add_user(&self, email: &str, name: &str) -> Result<KisiUserId, SimError> {
        let now = self.now();
        self.shared.lock().world.insert_user(email, name, true, now).ok_or(SimError::EmailTaken)
    }

    /// A user someone else made, as [`SeedUser`] describes: the owner or staff who signed up,
    /// a member another integration created (with its metadata, or none).
    pub fn seed_user(&self, user: SeedUser) -> Result<KisiUserId, SimError> {
        let now = self.now();
        self.shared.lock().world.insert_seeded_user(user, now).ok_or(SimError::EmailTaken)
    }

    /// Makes an existing group one that no API key of the organization may use: every call
    /// naming it answers 403 and `GET /groups` leaves it out, as Kisi does for a group the key
    /// cannot see. False if there is no such group.
    pub fn hide_group(&self, group: KisiGroupId) -> bool {
        self.shared.lock().world.set_group_hidden(group, true)
    }

    /// Undoes [`SimHandle::hide_group`].
    pub fn show_group(&self, group: KisiGroupId) -> bool {
        self.shared.lock().world.set_group_hidden(group, false)
    }

    /// See [`SimOptions::patch_validity`].
    pub fn set_patch_validity(&self, patch_validity: PatchValidity) {
        self.shared.lock().world.set_patch_validity(patch_validity);
    }

    /// See [`SimOptions::unknown_ids`].
    pub fn set_unknown_ids(&self, unknown_ids: UnknownIds) {
        self.shared.lock().world.set_unknown_ids(unknown_ids);
    }

    /// See [`SimOptions::retry_after_on_429`].
    pub fn set_retry_after_on_429(&self, retry_after: bool) {
        self.shared.lock().retry_after_on_429 = retry_after;
    }

    /// A `group_basic` assignment created by `creator` (another API user, or `None` for Kisi
    /// itself), with Kisi's one-role-per-(user, group) rule. Nexudus's own Kisi integration, say,
    /// leaves assignments without a window, created by the user whose key it was given. Hidden
    /// groups are allowed: whoever made the assignment could see the group.
    pub fn add_assignment_as(
        &self,
        creator: Option<KisiUserId>,
        user: KisiUserId,
        group: KisiGroupId,
        valid_from: Option<Timestamp>,
        valid_until: Option<Timestamp>,
    ) -> Result<KisiAssignmentId, SimError> {
        let creator = creator.map_or(Creator::Kisi, Creator::User);
        self.insert_assignment(creator, user, group, valid_from, valid_until)
    }

    /// A `group_basic` assignment made by a marketplace app (`created_by_type`
    /// `MarketplaceInstallation`, `created_by_id` the installation's id, which may equal a
    /// user's id, doorsync's own included).
    pub fn add_assignment_by_installation(
        &self,
        installation: u64,
        user: KisiUserId,
        group: KisiGroupId,
        valid_from: Option<Timestamp>,
        valid_until: Option<Timestamp>,
    ) -> Result<KisiAssignmentId, SimError> {
        self.insert_assignment(Creator::Installation(installation), user, group, valid_from, valid_until)
    }

    fn insert_assignment(
        &self,
        creator: Creator,
        user: KisiUserId,
        group: KisiGroupId,
        valid_from: Option<Timestamp>,
        valid_until: Option<Timestamp>,
    ) -> Result<KisiAssignmentId, SimError> {
        let now = self.now();
        let mut state = self.shared.lock();
        state.world.insert_assignment(creator, user, group, valid_from, valid_until, now).map_err(SimError::Refused)
    }

    /// An operator removes an assignment by hand in the dashboard.
    pub fn remove_assignment(&self, id: KisiAssignmentId) -> bool {
        self.shared.lock().world.remove_assignment(id)
    }

    /// An operator suspends or restores a user by hand.
    pub fn set_user_access_enabled(&self, user: KisiUserId, enabled: bool) -> bool {
        let now = self.now();
        self.shared.lock().world.set_access_enabled(user, enabled, now)
    }

    /// An operator deletes a user by hand (with their assignments).
    pub fn remove_user(&self, user: KisiUserId) -> bool {
        self.shared.lock().world.remove_user(user)
    }

    pub fn users(&self) -> Vec<SimUser> {
        self.shared.lock().world.users()
    }

    pub fn user_by_email(&self, email: &str) -> Option<SimUser> {
        self.shared.lock().world.user_by_email(email).cloned()
    }

    pub fn groups(&self) -> Vec<SimGroup> {
        self.shared.lock().world.groups()
    }

    pub fn assignments(&self) -> Vec<SimAssignment> {
        self.shared.lock().world.assignments()
    }

    /// Whether `user` can open `group`'s doors at `at`, and if not, why.
    pub fn group_access(&self, user: KisiUserId, group: KisiGroupId, at: Timestamp) -> GroupAccess {
        self.shared.lock().world.group_access(user, group, at)
    }

    pub fn calls(&self) -> CallCounts {
        self.shared.lock().calls.clone()
    }

    /// Requests that presented `key` (valid or not), since the start or the last
    /// [`SimHandle::reset_calls`]: which of several processes sharing an API user called.
    pub fn calls_with_key(&self, key: &str) -> u64 {
        self.shared.lock().calls_by_key.get(key).copied().unwrap_or(0)
    }

    pub fn reset_calls(&self) {
        let mut state = self.shared.lock();
        state.calls = CallCounts::default();
        state.calls_by_key.clear();
    }

    /// Every exchange so far, if [`SimOptions::record_exchanges`] is set.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.shared.lock().exchanges.clone()
    }

    pub fn inject(&self, rule: FaultRule) {
        self.shared.lock().faults.add_rule(rule);
    }

    /// Delays every answer by `latency` of the simulator's clock.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().faults.set_latency(latency);
    }

    pub fn set_random_faults(&self, faults: Option<RandomFaults>) {
        self.shared.lock().faults.set_random(faults);
    }

    /// Removes scripted and random faults and latency.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }
}

/// What a connection's requests know about it: the peer (for the per-address rate limit) and a
/// switch that closes the connection without answering.
#[derive(Debug, Clone)]
struct Connection {
    peer: SocketAddr,
    close: Arc<Notify>,
}

async fn accept_connections(listener: TcpListener, router: Router, mut stopped: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(stream, peer, router.clone()));
                }
                Err(error) => tracing::warn!(%error, "kisi simulator: accepting a connection failed"),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, router: Router) {
    let close = Arc::new(Notify::new());
    let connection = Connection { peer, close: close.clone() };
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(connection.clone());
        let mut router = router.clone();
        async move { router.call(request).await }
    });
    let serving = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    // Dropping the connection future closes the socket, whatever is in flight on it.
    tokio::select! {
        _ = serving => {}
        () = close.notified() => {}
    }
}

/// Every request: count it, apply latency and faults, authenticate, rate-limit, answer.
async fn serve(State(shared): State<Arc<Shared>>, request: axum::extract::Request) -> Response {
    let connection = request.extensions().get::<Connection>().cloned();
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let authorization =
        request.headers().get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()).map(str::to_owned);
    let request_headers = request
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = value.to_str().unwrap_or("<not text>");
            let value = if name == header::AUTHORIZATION {
                format!("{} <redacted>", value.split(' ').next().unwrap_or_default())
            } else {
                value.to_owned()
            };
            (name.as_str().to_owned(), value)
        })
        .collect();
    let body = axum::body::to_bytes(request.into_body(), MAX_REQUEST_BODY).await.unwrap_or_default();
    let recognised = Operation::recognise(&method, &path);
    let template = recognised.as_ref().map_or(path.as_str(), |(_, template)| template).to_owned();
    let exchange = Exchange {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        request_headers,
        request_body: (!body.is_empty()).then(|| {
            serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
        }),
        status: None,
        response_body: None,
        collection_range: None,
        retry_after: None,
    };

    let decision = {
        let mut state = shared.lock();
        *state.calls.by_endpoint.entry(format!("{method} {template}")).or_default() += 1;
        if let Some(key) = authorization.as_deref().and_then(|value| value.strip_prefix("KISI-LOGIN ")) {
            *state.calls_by_key.entry(key.trim().to_owned()).or_default() += 1;
        }
        state.faults.decide(&method, &path, &template)
    };
    if !decision.latency.is_zero() {
        shared.clock.sleep_until(shared.clock.now() + decision.latency).await;
    }
    match &decision.fault {
        Some(Fault::Status { status, retry_after }) => {
            let message = if *status == 429 { "Too many requests" } else { "Service unavailable" };
            let reply =
                Reply { retry_after: retry_after.clone(), ..Reply::error(*status, &format!("000{status}"), message) };
            return finish(&shared, exchange, reply);
        }
        Some(Fault::Hang { after_commit: false }) => return hang(&shared).await,
        _ => {}
    }

    let reply = {
        let now = shared.clock.now();
        let mut state = shared.lock();
        let caller = authorization
            .as_deref()
            .and_then(|value| value.strip_prefix("KISI-LOGIN "))
            .and_then(|key| state.world.caller_for(key.trim()));
        let peer = connection.as_ref().map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |connection| connection.peer.ip());
        let limit_key = caller.map_or(LimitKey::Address(peer), |caller| LimitKey::User(caller.user));
        match (state.limiter.admit(limit_key, now), caller, recognised) {
            (Err(wait), _, _) => {
                let seconds = wait.as_millis().div_ceil(1_000).max(1);
                let retry_after = state.retry_after_on_429.then(|| seconds.to_string());
                Reply { retry_after, ..Reply::error(429, "000429", "Too many requests") }
            }
            (Ok(()), None, _) => Reply::error(401, "000401", "Unauthorized"),
            (Ok(()), Some(_), None) => {
                Reply::error(404, "000404", "The endpoint does not exist, please check your request.")
            }
            (Ok(()), Some(caller), Some((operation, _)))
                if operation.is_write() && caller.access == KeyAccess::ReadOnly =>
            {
                Reply::forbidden()
            }
            (Ok(()), Some(caller), Some((operation, _))) => {
                let query_pairs: Vec<(String, String)> =
                    url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
                        .map(|(key, value)| (key.into_owned(), value.into_owned()))
                        .collect();
                let request = Request { caller, query: &query_pairs, body: &body, now };
                state.world.handle(&operation, &request)
            }
        }
    };

    match decision.fault {
        Some(Fault::DropResponse) => {
            {
                let mut state = shared.lock();
                state.calls.dropped += 1;
                if shared.record_exchanges {
                    state.exchanges.push(exchange);
                }
            }
            if let Some(connection) = connection {
                connection.close.notify_one();
            }
            std::future::pending().await
        }
        Some(Fault::Hang { after_commit: true }) => hang(&shared).await,
        _ => finish(&shared, exchange, reply),
    }
}

async fn hang(shared: &Shared) -> Response {
    shared.lock().calls.hung += 1;
    std::future::pending().await
}

fn finish(shared: &Shared, mut exchange: Exchange, reply: Reply) -> Response {
    {
        let mut state = shared.lock();
        *state.calls.by_status.entry(reply.status).or_default() += 1;
        if shared.record_exchanges {
            exchange.status = Some(reply.status);
            exchange.response_body = reply.body.clone();
            exchange.collection_range = reply.collection_range.clone();
            exchange.retry_after = reply.retry_after.clone();
            state.exchanges.push(exchange);
        }
    }
    into_response(reply)
}

fn into_response(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match reply.body {
        Some(body) => (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response(),
        None => (status, Body::empty()).into_response(),
    };
    let headers = response.headers_mut();
    for (name, value) in [("x-collection-range", reply.collection_range), ("retry-after", reply.retry_after)] {
        if let Some(value) = value.and_then(|value| HeaderValue::from_str(&value).ok()) {
            headers.insert(name, value);
        }
    }
    response
}
