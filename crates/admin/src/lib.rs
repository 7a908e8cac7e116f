//! The admin HTTP listener of every doorsync process.
//!
//! * `/healthz`: the process is alive (always 200 while it serves).
//! * `/readyz`: 200 once every condition the process registered holds (connected to the log,
//!   caught up, holding a lease, ...), else 503 with what it is waiting for.
//! * `/metrics`: every registered metric, in the OpenMetrics text format Prometheus scrapes.
//! * whatever routes the process adds (the engine's status page).
//!
//! With a token configured, everything but the two probes asks for `Authorization: Bearer
//! <token>`: kubelet probes carry no credentials and the probes reveal nothing.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::registry::{Metric, Registry};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const HEALTH_PATH: &str = "/healthz";
pub const READY_PATH: &str = "/readyz";
pub const METRICS_PATH: &str = "/metrics";
const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin: cannot listen on {listen}: {source} (set admin.listen to a free address)")]
    Bind { listen: SocketAddr, source: std::io::Error },
}

#[derive(Debug, Clone)]
pub struct AdminOptions {
    pub listen: SocketAddr,
    /// Asked for on every route but the probes, when set.
    pub token: Option<SecretString>,
}

/// The conditions `/readyz` waits for, each set by the part of the process that knows.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    /// Condition name -> `None` when it holds, or what it is waiting for.
    conditions: Arc<Mutex<BTreeMap<String, Option<String>>>>,
}

impl Readiness {
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
    let state = AdminState { metrics, readiness, token: options.token.clone().map(Arc::new) };
    Router::new()
        .route(HEALTH_PATH, get(|| async { "ok\n" }))
        .route(READY_PATH, get(ready))
        .route(METRICS_PATH, get(metrics_text))
        .with_state(state.clone())
        .merge(routes)
        .layer(middleware::from_fn_with_state(state, require_token))
}

/// Serves [`router`] on `options.listen` until [`AdminHandle::shutdown`].
pub async fn start(
    options: AdminOptions,
    metrics: Metrics,
    readiness: Readiness,
    routes: Router,
) -> Result<AdminHandle, AdminError> {
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

async fn ready(State(state): State<AdminState>) -> Response {
    match state.readiness.check() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(waiting) => {
            let body: String =
                waiting.iter().map(|(condition, reason)| format!("waiting for {condition}: {reason}\n")).collect();
            (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
        }
    }
}

async fn metrics_text(State(state): State<AdminState>) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS_TEXT))], state.metrics.encode()).into_response()
}

async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let Some(token) = state.token.as_ref() else { return next.run(request).await };
    if path == HEALTH_PATH || path == READY_PATH {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    if bool::from(presented.as_bytes().ct_eq(token.expose_secret().as_bytes())) && !presented.is_empty() {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"doorsync admin\""))],
        "this admin listener asks for its bearer token (admin.token_file or DOORSYNC_ADMIN_TOKEN)\n",
    )
        .into_response()
}
