//! The webhook receiver: Nexudus POSTs to `/webhooks/nexudus/<Action>` (the action's name, such
//! as `BookingUpdate`, or its number), one URL per registered action, because the body does not
//! say which action fired.
//!
//! A delivery is checked against `X-Nexudus-Hook-Signature` before anything else (401 and
//! nothing read or stored when it is missing or wrong), limited in size (413), and each entity in
//! it is read again by id: the body's fields are never trusted (its `UpdatedOn` only spares an
//! `AccessControlUpdate` the read of a customer already read at that version). The answer is
//! 2xx once what it asks for is durably recorded: what changed appended to the log, or, for a
//! record Nexudus failed to answer about, the record kept in the retry set. Only a log or bucket
//! that cannot take the write answers 5xx (so Nexudus retries): Nexudus disables a hook after
//! ten failures, so a webhook is never failed for one record. An action doorsync does not act on
//! is answered 2xx (and counted), for the same reason.
//!
//! What a flood costs is bounded ([`WebhookLimits`]): the server drops a connection that is slow
//! to send its headers or its body, a few deliveries are worked on at once and the rest wait
//! their turn, each is answered within a deadline, one record is read at most once at a time
//! however many deliveries name it, and the same signed body again within minutes is answered
//! from memory without asking Nexudus. The action in the path is logged only once it is known
//! to be one of Nexudus's.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use doorsync_nexudus::webhook::{SIGNATURE_HEADER, WebhookEntity, parse_body, verify};
use doorsync_nexudus::{NexudusDateTime, WebhookAction};
use doorsync_proto::Timestamp;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tracing::Instrument;

use crate::error::IngestError;
use crate::ingestor::Ingestor;
use crate::record::{RecordKey, RecordKind};
use crate::retry::Target;

/// What one webhook delivery, or a flood of them, may cost the ingestor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WebhookLimits {
    /// A connection that has not sent a request's headers within this long is closed.
    header_timeout: Duration,
    /// A request whose body has not arrived within this long is refused.
    body_timeout: Duration,
    /// Deliveries worked on at once; more wait for a turn (within `request_timeout`).
    concurrency: usize,
    /// A delivery not answered within this long gets 503, and Nexudus sends it again; what its
    /// re-reads had begun goes on.
    request_timeout: Duration,
    /// The same signed body again within this long is answered at once, without reading
    /// Nexudus: Nexudus repeats deliveries, and anyone who captured one could replay it.
    repeat_window: Duration,
    /// Signed bodies remembered for `repeat_window`, at most.
    repeats_remembered: usize,
}

impl Default for WebhookLimits {
    /// Headers and body within 10 s each, 16 deliveries at once, each answered within 30 s
    /// (well inside what Nexudus waits), a repeat within 5 minutes free, 10,000 remembered.
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            concurrency: 16,
            request_timeout: Duration::from_secs(30),
            repeat_window: Duration::from_secs(5 * 60),
            repeats_remembered: 10_000,
        }
    }
}

/// The route the receiver serves; `{action}` is the webhook's action.
pub const WEBHOOK_ROUTE: &str = "/webhooks/nexudus/{action}";

/// The path to register in Nexudus for webhooks of `action`, e.g.
/// `/webhooks/nexudus/BookingUpdate`.
pub fn webhook_path(action: WebhookAction) -> String {
    let segment = action.name().map_or_else(|| action.code().to_string(), str::to_owned);
    WEBHOOK_ROUTE.replace("{action}", &segment)
}

/// Nexudus's action codes go up to 90 (reference §3.2).
const HIGHEST_ACTION_CODE: u64 = 90;

/// The webhook actions the ingestor acts on: register each in Nexudus at [`webhook_path`].
pub const WEBHOOK_ACTIONS: &[WebhookAction] = &[
    WebhookAction::CoworkerCreate,
    WebhookAction::CoworkerUpdate,
    WebhookAction::CoworkerDelete,
    WebhookAction::AccessControlUpdate,
    WebhookAction::BookingCreate,
    WebhookAction::BookingUpdate,
    WebhookAction::BookingDelete,
    WebhookAction::CoworkerContractActivate,
    WebhookAction::CoworkerContractCancel,
    WebhookAction::CoworkerContractRenew,
    WebhookAction::CoworkerContractUpgradeDowngrade,
    WebhookAction::CoworkerContractActivateFirst,
    WebhookAction::CoworkerContractUpdate,
    WebhookAction::CoworkerContractCreate,
    WebhookAction::CoworkerContractDelete,
    WebhookAction::FloorPlanDeskCreate,
    WebhookAction::FloorPlanDeskUpdate,
    WebhookAction::FloorPlanDeskDelete,
    WebhookAction::BusinessUpdate,
];

/// The action a path segment names, by name or number.
fn action_named(segment: &str) -> Option<WebhookAction> {
    if let Ok(code) = segment.parse::<u64>() {
        return Some(WebhookAction::from_code(code));
    }
    (1..=HIGHEST_ACTION_CODE).map(WebhookAction::from_code).find(|action| action.name() == Some(segment))
}

/// The receiver's state: the ingestor, and what bounds the cost of repeated deliveries.
#[derive(Debug)]
struct Receiver {
    ingestor: Arc<Ingestor>,
    rereads: OneReadPerRecord,
    repeats: RecentBodies,
}

pub(crate) fn router(ingestor: Arc<Ingestor>) -> Router {
    let limits = WebhookLimits::default();
    let body_limit = ingestor.options.webhook_body_limit_bytes;
    let receiver = Arc::new(Receiver {
        repeats: RecentBodies::new(limits.repeat_window, limits.repeats_remembered),
        rereads: OneReadPerRecord::default(),
        ingestor,
    });
    limited(Router::new().route(WEBHOOK_ROUTE, post(receive)).layer(DefaultBodyLimit::max(body_limit)), limits)
        .with_state(receiver)
}

/// `router` with a deadline for bodies and answers and a bound on deliveries worked on at once.
fn limited<S: Clone + Send + Sync + 'static>(router: Router<S>, limits: WebhookLimits) -> Router<S> {
    // The last layer is the outermost: a delivery waiting for a turn counts against its deadline.
    router
        .layer(RequestBodyTimeoutLayer::new(limits.body_timeout))
        .layer(GlobalConcurrencyLimitLayer::new(limits.concurrency.max(1)))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, limits.request_timeout))
}

/// Serves `app` on `listener` over HTTP/1.1 (Nexudus's), closing connections that are slow to
/// send their headers, until `stopped` resolves; then waits for the deliveries in flight.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: WebhookLimits,
    stopped: impl Future<Output = ()>,
) {
    let mut connections = JoinSet::new();
    // Tells every connection to finish the request it serves and close, idle ones at once.
    let (closing, close) = tokio::sync::watch::channel(false);
    tokio::pin!(stopped);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accepting a webhook connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stopped => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let mut close = close.clone();
        connections.spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                _ = async { close.wait_for(|close| *close).await.map(drop) } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%error, "a webhook connection ended with an error");
            }
        });
        // Finished connections are collected as we go, so the set holds only live ones.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    closing.send_replace(true);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.request_timeout, drain).await.is_err() {
        tracing::warn!("webhook connections still open at shutdown were closed");
    }
}

/// How a path's action appears in logs and traces: its name or number when it is one of
/// Nexudus's, else `unknown` (the path is the sender's text, not ours to repeat).
fn logged_action(segment: &str) -> String {
    match action_named(segment) {
        Some(action) => action.name().map_or_else(|| action.code().to_string(), str::to_owned),
        None => "unknown".to_owned(),
    }
}

#[tracing::instrument(name = "nexudus.webhook", skip_all, fields(action = tracing::field::Empty, records))]
async fn receive(
    State(receiver): State<Arc<Receiver>>,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use crate::status::WebhookAnswer as Answer;
    let ingestor = &receiver.ingestor;
    let known_action = action_named(&action);
    let action = logged_action(&action);
    tracing::Span::current().record("action", action.as_str());
    let signature = headers.get(SIGNATURE_HEADER).and_then(|value| value.to_str().ok());
    let signed = signature.is_some_and(|signature| verify(&ingestor.options.webhook_secret, &body, signature).is_ok());
    if !signed {
        ingestor.stats.webhook(Answer::Refused);
        tracing::warn!(action, "nexudus webhook refused: {SIGNATURE_HEADER} missing or wrong (check the secret)");
        return (StatusCode::UNAUTHORIZED, "signature missing or wrong").into_response();
    }
    let entities = match parse_body(&body) {
        Ok(entities) => entities,
        Err(error) => {
            ingestor.stats.webhook(Answer::Unreadable);
            tracing::warn!(action, %error, "nexudus webhook unreadable");
            return (StatusCode::BAD_REQUEST, error.to_string()).into_response();
        }
    };
    let Some(target) = known_action.and_then(Target::of) else {
        ingestor.stats.webhook(Answer::UnknownAction);
        tracing::debug!(action, "nexudus webhook for an action doorsync does not act on");
        return (StatusCode::OK, "doorsync does not act on this action").into_response();
    };
    let announced: Vec<Announced> = entities.iter().map(Announced::of).collect();
    tracing::Span::current().record("records", announced.len());
    let delivery = repeatable(target).then(|| RecentBodies::digest(known_action, &body));
    if delivery.is_some_and(|delivery| receiver.repeats.seen_since(&delivery, ingestor.clock.now())) {
        ingestor.stats.webhook(Answer::Accepted);
        tracing::debug!(action, "nexudus webhook repeated within minutes: already recorded");
        return StatusCode::NO_CONTENT.into_response();
    }
    // On its own task, so that a sender that hangs up, or the deadline, cannot stop the work
    // half way.
    let work = tokio::spawn(
        {
            let receiver = Arc::clone(&receiver);
            let deletion = known_action.is_some_and(announces_deletion);
            async move { reread(&receiver, target, &announced, deletion).await }
        }
        .in_current_span(),
    );
    match work.await {
        Ok(Ok(all_read)) => {
            ingestor.stats.webhook(Answer::Accepted);
            // A record left in the retry set is read again by the next delivery that names it.
            if let (true, Some(delivery)) = (all_read, delivery) {
                receiver.repeats.remember(delivery, ingestor.clock.now());
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Err(error)) => {
            ingestor.stats.webhook(Answer::Failed);
            tracing::warn!(action, %error, "nexudus webhook failed to be recorded; Nexudus will retry it");
            (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response()
        }
        Err(error) => {
            ingestor.stats.webhook(Answer::Failed);
            tracing::error!(action, %error, "nexudus webhook task ended abnormally");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Reads each record again; `true` when every one was read, `false` when some wait in the retry
/// set instead (recorded, but not read).
///
/// An `AccessControlUpdate` reads the customer as a coworker (sharing the read with any
/// `Coworker*` delivery for them at the same moment), unless the version its body announces is
/// one already read, and then their passes. A deletion is read with a listing by id, which
/// alone confirms it.
async fn reread(
    receiver: &Receiver,
    target: Target,
    records: &[Announced],
    deletion: bool,
) -> Result<bool, IngestError> {
    let ingestor = &receiver.ingestor;
    let mut all_read = true;
    for &Announced { id, updated_on } in records {
        let coworker_known = updated_on.is_some_and(|updated_on| {
            ingestor.ledger.knows_version(RecordKey::new(RecordKind::Coworker, id), updated_on)
        });
        let parts: &[Target] = match target {
            Target::Customer if coworker_known => &[Target::Customer],
            Target::Customer => &[Target::Coworker, Target::Customer],
            _ => std::slice::from_ref(&target),
        };
        for &part in parts {
            let attempt = || async move {
                if deletion {
                    ingestor.attempt_deleted(part, id).await?;
                } else {
                    ingestor.attempt(part, id).await?;
                }
                Ok(!ingestor.retries.contains(part, id))
            };
            all_read &= receiver.rereads.read(part, id, attempt).await?;
        }
    }
    Ok(all_read)
}

/// A record a delivery names: its id, and the `UpdatedOn` its body gives, if any.
///
/// The body is signed by Nexudus but never read for content: its `UpdatedOn` serves only to
/// skip an `AccessControlUpdate`'s read of a customer whose announced version was already read.
/// Its other readers are covered: a change to the customer's own fields fires `CoworkerUpdate`,
/// whose delivery always reads, and the poll reads what changed since its watermark.
#[derive(Debug, Clone, Copy)]
struct Announced {
    id: u64,
    updated_on: Option<Timestamp>,
}

impl Announced {
    fn of(entity: &WebhookEntity) -> Self {
        let updated_on = entity
            .fields
            .get("UpdatedOn")
            .and_then(serde_json::Value::as_str)
            .and_then(|text| NexudusDateTime::parse(text).ok())
            .and_then(|written| written.to_utc());
        Self { id: entity.id, updated_on }
    }
}

/// Whether `action` announces that the record it names was deleted.
fn announces_deletion(action: WebhookAction) -> bool {
    use WebhookAction as A;
    matches!(action, A::CoworkerDelete | A::BookingDelete | A::CoworkerContractDelete)
}

/// At most one re-read of a record in flight, however many deliveries name it: a delivery that
/// arrives while the record's read waits in the limiter's queue joins it; one that arrives once
/// its request has gone out waits, and reads it again only if no read whose request went out
/// after it arrived has read it meanwhile (the one in flight may have read it before the change
/// this delivery announces). A burst of N deliveries costs one or two reads, not N.
#[derive(Debug, Default)]
struct OneReadPerRecord {
    records: Mutex<HashMap<(Target, u64), Arc<RecordReads>>>,
}

#[derive(Debug, Default)]
struct RecordReads {
    /// Deliveries that asked for the record, counted.
    asked: AtomicU64,
    /// Held while the record is read; holds how many asks the last successful read covered.
    covered: tokio::sync::Mutex<u64>,
}

impl OneReadPerRecord {
    /// Runs `read` unless a read that began after this call has read the record; `read` says
    /// whether it did (`false`: it only put the record in the retry set). Returns whether the
    /// record was read.
    async fn read<F, Fut>(&self, target: Target, id: u64, read: F) -> Result<bool, IngestError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<bool, IngestError>>,
    {
        let record = Arc::clone(self.lock().entry((target, id)).or_default());
        let ask = record.asked.fetch_add(1, Ordering::AcqRel) + 1;
        let result = {
            let mut covered = record.covered.lock().await;
            if *covered >= ask {
                Ok(true)
            } else {
                // The deliveries counted when the read's first request leaves the limiter's
                // queue (those that came while it waited there join it), or as it begins.
                let covering = Arc::new(AtomicU64::new(record.asked.load(Ordering::Acquire)));
                let hook = {
                    let (covering, record) = (Arc::clone(&covering), Arc::clone(&record));
                    move || covering.store(record.asked.load(Ordering::Acquire), Ordering::Release)
                };
                let result = doorsync_nexudus::on_first_request(hook, read()).await;
                if matches!(result, Ok(true)) {
                    *covered = (*covered).max(covering.load(Ordering::Acquire));
                }
                result
            }
        };
        let mut records = self.lock();
        // The map's and this delivery's: nobody else waits, so the entry can go.
        if Arc::strong_count(&record) == 2 {
            records.remove(&(target, id));
        }
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Target, u64), Arc<RecordReads>>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether the same body for `target` always announces the same state of the record, so that a
/// repeat may be answered from memory. Not for `AccessControlUpdate` (the body is the customer,
/// unchanged when one of their passes or bookings changes), nor for contracts (the body may
/// leave out the desks, which change without the contract's `UpdatedOn` moving).
fn repeatable(target: Target) -> bool {
    !matches!(target, Target::Customer | Target::CoworkerContract)
}

/// Signed bodies recorded in the last minutes, by digest, oldest first.
#[derive(Debug)]
struct RecentBodies {
    window: Duration,
    capacity: usize,
    recent: Mutex<Remembered>,
}

/// The digests in the order they were recorded, and the same as a set.
type Remembered = (VecDeque<(Timestamp, [u8; 32])>, HashSet<[u8; 32]>);

impl RecentBodies {
    fn new(window: Duration, capacity: usize) -> Self {
        Self { window, capacity, recent: Mutex::new((VecDeque::new(), HashSet::new())) }
    }

    /// The same body means the same delivery only for the same action: a deletion may carry
    /// the body of the update before it.
    fn digest(action: Option<WebhookAction>, body: &[u8]) -> [u8; 32] {
        let mut digest = Sha256::new();
        digest.update(action.map_or(0, WebhookAction::code).to_be_bytes());
        digest.update(body);
        digest.finalize().into()
    }

    fn seen_since(&self, digest: &[u8; 32], now: Timestamp) -> bool {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        self.forget_old(&mut recent, now);
        recent.1.contains(digest)
    }

    fn remember(&self, digest: [u8; 32], now: Timestamp) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        self.forget_old(&mut recent, now);
        if recent.1.insert(digest) {
            recent.0.push_back((now, digest));
        }
        while recent.0.len() > self.capacity {
            if let Some((_, oldest)) = recent.0.pop_front() {
                recent.1.remove(&oldest);
            }
        }
    }

    fn forget_old(&self, recent: &mut Remembered, now: Timestamp) {
        let window = i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX);
        while let Some((at, digest)) = recent.0.front().copied() {
            if now.as_unix_millis().saturating_sub(at.as_unix_millis()) < window {
                break;
            }
            recent.0.pop_front();
            recent.1.remove(&digest);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    const QUICK: WebhookLimits = WebhookLimits {
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        concurrency: 2,
        request_timeout: Duration::from_millis(600),
        repeat_window: Duration::from_secs(300),
        repeats_remembered: 10,
    };

    /// Serves `app` behind [`limited`] with [`QUICK`] limits; the server stops with the runtime.
    async fn serving(app: Router) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, limited(app, QUICK), QUICK, std::future::pending()));
        address
    }

    /// Writes `request` and reads until the server answers and closes, or 10 s pass.
    async fn exchange(address: std::net::SocketAddr, request: &[u8]) -> Option<String> {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        read.ok().map(|_| String::from_utf8_lossy(&answer).into_owned())
    }

    #[tokio::test]
    async fn a_connection_slow_to_send_its_headers_or_its_body_is_not_kept() {
        let address =
            serving(Router::new().route("/", post(|body: Bytes| async move { body.len().to_string() }))).await;
        let headers_never_end = exchange(address, b"POST / HTTP/1.1\r\nHost: doorsync\r\n").await;
        assert!(headers_never_end.is_some(), "the connection was kept open without its headers");
        let body_never_comes = exchange(
            address,
            b"POST / HTTP/1.1\r\nHost: doorsync\r\nConnection: close\r\nContent-Length: 100\r\n\r\nshort",
        )
        .await
        .unwrap_or_default();
        assert!(
            body_never_comes.starts_with("HTTP/1.1 4"),
            "answered without waiting for the body: {body_never_comes}"
        );
        let whole = exchange(
            address,
            b"POST / HTTP/1.1\r\nHost: doorsync\r\nConnection: close\r\nContent-Length: 5\r\n\r\nwhole",
        )
        .await;
        assert!(whole.unwrap_or_default().ends_with("\r\n\r\n5"), "a prompt request is served");
    }

    #[tokio::test]
    async fn an_idle_kept_alive_connection_does_not_hold_up_the_stop() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = limited(Router::new().route("/", post(|| async { "ok" })), QUICK);
        let server = tokio::spawn(serve(listener, app, QUICK, async {
            let _ = stopped.await;
        }));
        let mut kept_alive = TcpStream::connect(address).await.unwrap();
        kept_alive.write_all(b"POST / HTTP/1.1\r\nHost: doorsync\r\nContent-Length: 0\r\n\r\n").await.unwrap();
        let mut answer = [0_u8; 256];
        assert!(kept_alive.read(&mut answer).await.unwrap() > 0);
        let _ = stop.send(());
        let stopping = tokio::time::timeout(QUICK.request_timeout / 2, server).await;
        assert!(stopping.is_ok(), "the server waited for an idle connection to close");
    }

    #[tokio::test]
    async fn deliveries_beyond_the_limit_wait_their_turn_and_each_is_answered_within_its_deadline() {
        let in_flight = Arc::new(AtomicU64::new(0));
        let most = Arc::new(AtomicU64::new(0));
        let handler = {
            let (in_flight, most) = (Arc::clone(&in_flight), Arc::clone(&most));
            move || async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                "done"
            }
        };
        let app = Router::new()
            .route("/", post(handler))
            .route("/hangs", post(|| async { tokio::time::sleep(Duration::from_secs(60)).await }));
        let address = serving(app).await;
        let request = b"POST / HTTP/1.1\r\nHost: doorsync\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        let answers = futures::future::join_all((0..8).map(|_| exchange(address, request))).await;
        assert!(answers.iter().all(|answer| answer.as_deref().is_some_and(|answer| answer.ends_with("done"))));
        assert_eq!(most.load(Ordering::SeqCst), 2, "at most the limit at once");

        let hangs = b"POST /hangs HTTP/1.1\r\nHost: doorsync\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        let answer = exchange(address, hangs).await.unwrap_or_default();
        assert!(answer.starts_with("HTTP/1.1 503"), "answered at its deadline, for Nexudus to retry: {answer}");
    }

    #[test]
    fn actions_are_named_in_the_path_by_name_or_number() {
        assert_eq!(webhook_path(WebhookAction::BookingUpdate), "/webhooks/nexudus/BookingUpdate");
        assert_eq!(webhook_path(WebhookAction::Other(99)), "/webhooks/nexudus/99");
        assert_eq!(action_named("BookingUpdate"), Some(WebhookAction::BookingUpdate));
        assert_eq!(action_named("61"), Some(WebhookAction::AccessControlUpdate));
        assert_eq!(action_named("InvoicePaid"), None);
        assert_eq!(Target::of(WebhookAction::AccessControlUpdate), Some(Target::Customer));
        assert_eq!(Target::of(WebhookAction::TeamUpdated), None);
        assert!(WEBHOOK_ACTIONS.iter().all(|action| Target::of(*action).is_some()), "every listed action is acted on");
        let acted_on = (1..=HIGHEST_ACTION_CODE).filter(|code| Target::of(WebhookAction::from_code(*code)).is_some());
        assert_eq!(acted_on.count(), WEBHOOK_ACTIONS.len(), "every action acted on is listed");
    }

    #[tokio::test]
    async fn one_read_of_a_record_is_in_flight_and_one_after_it_serves_every_delivery_that_waited() {
        let rereads = Arc::new(OneReadPerRecord::default());
        let (reads, in_flight, most) =
            (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let deliveries = (0..20).map(|_| {
            let (rereads, reads, in_flight, most) =
                (Arc::clone(&rereads), Arc::clone(&reads), Arc::clone(&in_flight), Arc::clone(&most));
            tokio::spawn(async move {
                rereads
                    .read(Target::Booking, 7, || async {
                        reads.fetch_add(1, Ordering::SeqCst);
                        most.fetch_max(in_flight.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        Ok(true)
                    })
                    .await
            })
        });
        for delivery in futures::future::join_all(deliveries).await {
            assert!(delivery.unwrap().is_ok());
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "one read in flight at a time");
        assert!(reads.load(Ordering::SeqCst) <= 2, "{} reads for 20 deliveries", reads.load(Ordering::SeqCst));
        assert!(rereads.lock().is_empty(), "nothing is kept once nobody waits");

        // A read that fails, or only puts the record in the retry set, covers nobody: the next
        // delivery reads again.
        let failed = rereads.read(Target::Booking, 7, || async { Err(IngestError::ShutDown) }).await;
        assert!(failed.is_err());
        assert!(!rereads.read(Target::Booking, 7, || async { Ok(false) }).await.unwrap());
        let before = reads.load(Ordering::SeqCst);
        let again = rereads.read(Target::Booking, 7, || async {
            reads.fetch_add(1, Ordering::SeqCst);
            Ok(true)
        });
        assert!(again.await.unwrap());
        assert_eq!(reads.load(Ordering::SeqCst), before + 1);
    }

    /// Waits (real time) until `deliveries` deliveries have asked for booking 7.
    async fn asked(rereads: &OneReadPerRecord, deliveries: u64) {
        for _ in 0..1_000 {
            let asked = rereads.lock().get(&(Target::Booking, 7)).map(|record| record.asked.load(Ordering::Acquire));
            if asked >= Some(deliveries) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{deliveries} deliveries never asked");
    }

    #[tokio::test]
    async fn deliveries_that_come_while_a_read_waits_in_the_limiters_queue_join_it_and_later_ones_read_again() {
        use doorsync_clock::ManualClock;
        use doorsync_nexudus::{AuthMode, Booking, Credentials, Limits, NexudusClient, NexudusOptions, Secret};
        use doorsync_proto::Timestamp;

        let clock = ManualClock::new(Timestamp::from_unix_millis(1_751_356_800_000));
        let credentials = Credentials { username: "admin@example.com".into(), password: Secret::new("password") };
        // Nobody listens there: each request fails at once, but only after the limiter let it go.
        let mut options = NexudusOptions::new("http://127.0.0.1:9/".parse().unwrap(), credentials);
        options.auth = AuthMode::Basic;
        options.limits = Limits::NEXUDUS;
        let client = NexudusClient::new(options, Arc::new(clock.clone())).unwrap();
        assert!(client.get::<Booking>(7).await.is_err(), "a request now, so the next waits 100 ms");

        let rereads = Arc::new(OneReadPerRecord::default());
        let reads = Arc::new(AtomicU64::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let delivery = || {
            let (rereads, reads, client, mut released) =
                (Arc::clone(&rereads), Arc::clone(&reads), client.clone(), released.clone());
            tokio::spawn(async move {
                rereads
                    .read(Target::Booking, 7, || async move {
                        reads.fetch_add(1, Ordering::SeqCst);
                        let _ = client.get::<Booking>(7).await;
                        released.wait_for(|released| *released).await.unwrap();
                        Ok(true)
                    })
                    .await
            })
        };
        let first = delivery();
        asked(&rereads, 1).await;
        let joining = [delivery(), delivery()];
        asked(&rereads, 3).await;
        clock.advance(Duration::from_millis(100));
        // The first read's request has gone out once it waits for its release.
        while reads.load(Ordering::SeqCst) == 0 || client.limiter_waits().waits == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let late = delivery();
        asked(&rereads, 4).await;
        clock.advance(Duration::from_millis(100));
        release.send_replace(true);
        for delivery in [first, late].into_iter().chain(joining) {
            assert!(delivery.await.unwrap().unwrap());
        }
        assert_eq!(reads.load(Ordering::SeqCst), 2, "the first read served three deliveries; the late one read again");
    }

    #[test]
    fn only_nexudus_actions_are_logged_by_name_anything_else_as_unknown() {
        assert_eq!(logged_action("BookingUpdate"), "BookingUpdate");
        assert_eq!(logged_action("61"), "AccessControlUpdate");
        assert_eq!(logged_action("99"), "99");
        assert_eq!(logged_action("Booking\nERROR forged log line"), "unknown");
        assert_eq!(logged_action(&"x".repeat(10_000)), "unknown");
    }

    #[test]
    fn a_body_is_remembered_for_the_window_and_the_oldest_go_first_when_full() {
        let at = |seconds: i64| Timestamp::from_unix_millis(1_751_356_800_000 + seconds * 1_000);
        let recent = RecentBodies::new(Duration::from_secs(300), 2);
        let update = Some(WebhookAction::BookingUpdate);
        let [a, b, c] = [b"a", b"b", b"c"].map(|body| RecentBodies::digest(update, body));
        recent.remember(a, at(0));
        assert!(recent.seen_since(&a, at(299)));
        let deletion = RecentBodies::digest(Some(WebhookAction::BookingDelete), b"a");
        assert!(!recent.seen_since(&deletion, at(1)), "another action's");
        assert!(!recent.seen_since(&a, at(300)), "forgotten after the window");
        recent.remember(a, at(400));
        recent.remember(b, at(401));
        recent.remember(c, at(402));
        assert!(!recent.seen_since(&a, at(403)) && recent.seen_since(&b, at(403)) && recent.seen_since(&c, at(403)));
    }
}
