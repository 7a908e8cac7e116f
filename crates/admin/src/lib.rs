//! The admin HTTP listener of every doorsync process.
//!
//! * `/healthz`: 200 while the process can work; 503 once it has latched a failure it cannot
//!   recover from without a restart (the embedded log after a failed write), so the kubelet or
//!   supervisor restarts it.
//! * `/readyz`: 200 once every condition the process registered holds (connected to the log,
//!   caught up, holding a lease, ...), else 503 with what it is waiting for or what failed.
//! * `/metrics`: every registered metric, in the OpenMetrics text format Prometheus scrapes.
//! * `/login`: a form that turns the token into a session cookie, for browsers.
//! * whatever routes the process adds (the engine's status page, the actions it offers).
//!
//! With a token configured, everything but the two probes asks for `Authorization: Bearer
//! <token>` or a session cookie: kubelet probes carry no credentials and the probes reveal
//! nothing. Requests that change something are POSTs, checked as the `guard` module says: the
//! session is stateless (an HMAC of its expiry keyed by the token), nothing that changes state is
//! reachable by GET, and no POST is served for a `Host` that is not an IP address, `localhost` or
//! a configured peer name, so a web page elsewhere (DNS rebinding included) cannot change
//! anything. Without a token the listener refuses to bind other than to loopback, unless
//! [`AdminOptions::allow_without_token`] says otherwise.
#![forbid(unsafe_code)]

mod guard;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::registry::{Metric, Registry};
use secrecy::SecretString;
use tokio::sync::watch;

pub use guard::{CSRF_FIELD, CsrfToken};
use tokio::task::JoinHandle;

pub const HEALTH_PATH: &str = "/healthz";
pub const READY_PATH: &str = "/readyz";
pub const METRICS_PATH: &str = "/metrics";
pub const LOGIN_PATH: &str = "/login";
const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin: cannot listen on {listen}: {source} (set admin.listen to a free address)")]
    Bind { listen: SocketAddr, source: std::io::Error },
    #[error(
        "admin: {listen} is reachable from other machines and no token is configured (set admin.token_file, \
         listen on 127.0.0.1, or set admin.allow_without_token = true)"
    )]
    Unprotected { listen: SocketAddr },
}

#[derive(Debug, Clone)]
pub struct AdminOptions {
    pub listen: SocketAddr,
    /// Asked for on every route but the probes, when set.
    pub token: Option<SecretString>,
    /// Lets `listen` be beyond loopback without a token (a proxy in front authenticates).
    pub allow_without_token: bool,
    /// Names besides IP addresses and `localhost` by which clients reach this listener (the
    /// Kubernetes service's name): a request that changes something must name one in `Host`.
    pub allowed_hosts: Vec<String>,
}

impl AdminOptions {
    /// On `listen`, with `token` when given, reached by its addresses and `localhost` only.
    pub fn new(listen: SocketAddr, token: Option<SecretString>) -> Self {
        Self { listen, token, allow_without_token: false, allowed_hosts: Vec::new() }
    }
}

/// The conditions `/readyz` waits for, each set by the part of the process that knows.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    /// Condition name -> `None` when it holds, or what it is waiting for.
    conditions: Arc<Mutex<BTreeMap<String, Option<String>>>>,
    /// Failures that only a restart ends: they fail `/healthz` as well, and never clear.
    latched: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Readiness {
    /// Records a failure the process cannot recover from while it runs: `/healthz` fails from
    /// now on (so the process is restarted) and `/readyz` says why.
    pub fn failed_until_restart(&self, condition: &str, reason: impl Into<String>) {
        self.latched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(condition.to_owned())
            .or_insert(reason.into());
    }

    /// `Ok` unless a failure was latched, else each with its reason.
    pub fn health(&self) -> Result<(), Vec<(String, String)>> {
        let latched = self.latched.lock().unwrap_or_else(PoisonError::into_inner);
        if latched.is_empty() {
            Ok(())
        } else {
            Err(latched.iter().map(|(condition, reason)| (condition.clone(), reason.clone())).collect())
        }
    }

    /// Registers (or re-opens) a condition that does not hold yet.
    pub fn waiting_for(&self, condition: &str, reason: impl Into<String>) {
        self.lock().insert(condition.to_owned(), Some(reason.into()));
    }

    pub fn holds(&self, condition: &str) {
        self.lock().insert(condition.to_owned(), None);
    }

    /// `Ok` when every condition holds, else the ones that do not, with their reasons.
    pub fn check(&self) -> Result<(), Vec<(String, String)>> {
        let waiting: Vec<(String, String)> = self
            .lock()
            .iter()
            .filter_map(|(condition, reason)| reason.as_ref().map(|reason| (condition.clone(), reason.clone())))
            .collect();
        if waiting.is_empty() { Ok(()) } else { Err(waiting) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Option<String>>> {
        self.conditions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The process's metrics registry. Cheap to clone; metrics registered through any clone appear
/// on `/metrics`.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self { registry: Arc::new(Mutex::new(Registry::with_prefix("doorsync"))) }
    }
}

impl Metrics {
    /// Registers `metric` as `doorsync_<name>`; the metric is then updated through its own
    /// handle (prometheus-client metrics are shared counters).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner).register(name, help, metric);
    }

    /// Registers metrics computed at each scrape (from a role's status, say).
    pub fn register_collector(&self, collector: impl Collector) {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner).register_collector(Box::new(collector));
    }

    /// Lets `register` add metrics to the registry: a role's metric definitions register there.
    pub fn register_with<T>(&self, register: impl FnOnce(&mut Registry) -> T) -> T {
        register(&mut self.registry.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Every metric in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        // Writing into a String cannot fail; a metric that fails to encode is left out.
        if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
            tracing::warn!("a metric could not be encoded; /metrics is incomplete");
        }
        text
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Metrics,
    readiness: Readiness,
    token: Option<Arc<SecretString>>,
    allowed_hosts: Arc<[String]>,
}

/// A running admin listener.
#[derive(Debug)]
pub struct AdminHandle {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl AdminHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections and waits for the ones in flight.
    pub async fn shutdown(self) {
        self.shutdown.send_replace(true);
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "the admin listener ended abnormally");
        }
    }
}

/// The admin routes with `routes` (e.g. a status page) added, behind the token when configured.
pub fn router(options: &AdminOptions, metrics: Metrics, readiness: Readiness, routes: Router) -> Router {
    let state = AdminState {
        metrics,
        readiness,
        token: options.token.clone().map(Arc::new),
        allowed_hosts: options.allowed_hosts.clone().into(),
    };
    Router::new()
        .route(HEALTH_PATH, get(health))
        .route(READY_PATH, get(ready))
        .route(METRICS_PATH, get(metrics_text))
        .route(LOGIN_PATH, get(guard::login_form).post(guard::login))
        .with_state(state.clone())
        .merge(routes)
        .layer(middleware::from_fn_with_state(state, guard::guard))
}

/// Serves [`router`] on `options.listen` until [`AdminHandle::shutdown`].
pub async fn start(
    options: AdminOptions,
    metrics: Metrics,
    readiness: Readiness,
    routes: Router,
) -> Result<AdminHandle, AdminError> {
    if options.token.is_none() && !options.allow_without_token && !options.listen.ip().is_loopback() {
        return Err(AdminError::Unprotected { listen: options.listen });
    }
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| AdminError::Bind { listen: options.listen, source })?;
    let local_addr = listener.local_addr().map_err(|source| AdminError::Bind { listen: options.listen, source })?;
    let app = router(&options, metrics, readiness, routes);
    let (shutdown, mut stop) = watch::channel(false);
    let task = tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
            tracing::error!(%error, "the admin listener failed");
        }
    });
    tracing::info!(%local_addr, "admin listener up");
    Ok(AdminHandle { local_addr, shutdown, task })
}

async fn health(State(state): State<AdminState>) -> Response {
    match state.readiness.health() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(failed) => (StatusCode::SERVICE_UNAVAILABLE, failures(&failed)).into_response(),
    }
}

async fn ready(State(state): State<AdminState>) -> Response {
    let failed = state.readiness.health().err().unwrap_or_default();
    let waiting = state.readiness.check().err().unwrap_or_default();
    if failed.is_empty() && waiting.is_empty() {
        return (StatusCode::OK, "ready\n").into_response();
    }
    let waiting: String =
        waiting.iter().map(|(condition, reason)| format!("waiting for {condition}: {reason}\n")).collect();
    (StatusCode::SERVICE_UNAVAILABLE, failures(&failed) + &waiting).into_response()
}

fn failures(failed: &[(String, String)]) -> String {
    failed.iter().map(|(condition, reason)| format!("failed until restarted: {condition}: {reason}\n")).collect()
}

async fn metrics_text(State(state): State<AdminState>) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS_TEXT))], state.metrics.encode()).into_response()
}
