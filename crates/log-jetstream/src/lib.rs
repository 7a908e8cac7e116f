//! The event log on NATS JetStream, for deployments of several processes.
//!
//! Streams and key-value buckets are created idempotently at connect; the server's answer is
//! compared with what was asked for, because servers older than 2.10 accept unknown fields and
//! silently ignore them. Such servers are refused outright at connect.
//!
//! A connection proves who it is with NATS's own credentials (an nkey seed, a creds file's JWT
//! and seed, or a user and password), never with credentials in the URL, which would end up in
//! logs and error messages: such a URL is refused. TLS is verified against a given CA file.
//!
//! Appends pipeline their acknowledgements
//! ([`append_batch`](doorsync_log::EventLog::append_batch)). An append takes all the
//! acknowledgement permits its batch needs at once: async-nats takes one per publish and holds it
//! until the acknowledgement, so thousands of callers each holding one and waiting for another
//! deadlocked (conformance case `thousands_of_concurrent_batches_all_complete`).
//!
//! Replays are ordered consumers that stop when nothing is pending. A follow ends with a transient
//! error as soon as the connection comes back after it was lost: a restarted server has lost the
//! ordered consumer behind it, which the client would notice only after missing its heartbeats
//! for fifteen seconds, delivering nothing meanwhile; the engine's shard then reads again from its
//! checkpoint. No read uses more than one filter subject: a consumer with two was thirty times
//! slower than one (3,000 against 100,000 messages a second).
//!
//! Durable consumers are pull consumers with explicit, server-confirmed acks, updated when opened
//! with settings other than the server holds (a changed `writer.ack_wait`); where a consumer
//! starts is kept.
//!
//! [`permissions`] is the one place where what each role may do on NATS is written: the subjects
//! it appends to (only what it produces; the writer alone consumes commands), the streams it
//! reads, the key-value keys it reads and writes, and an inbox prefix of its own, so that no role
//! can read the answers and deliveries meant for another.
//!
//! `benches/throughput.rs` (`just bench`) measures this backend against raw async-nats doing the
//! same work in the same run; a plain `harness = false` binary rather than criterion, because the
//! figure that matters is the ratio between two measurements of one run.
#![forbid(unsafe_code)]

mod consumer;
mod kv;
pub mod permissions;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use async_trait::async_trait;
use doorsync_log::{
    Appended, ConsumerSpec, DurableConsumer, EventLog, KeyValue, LogError, MessageStream, NewMessage, ReplayRequest,
    Sequence, StoredMessage, StreamSpec,
};
use futures::StreamExt;

/// Whether a read ends once it has delivered what was pending when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    CaughtUp,
    Dropped,
}

/// The oldest nats-server doorsync accepts.
pub const MINIMUM_SERVER_VERSION: semver::Version = semver::Version::new(2, 10, 0);

const MESSAGE_ID_HEADER: &str = "Nats-Msg-Id";

/// How to reach JetStream and what to create there.
#[derive(Debug, Clone)]
pub struct JetStreamOptions {
    /// One or more server URLs, comma separated (`nats://nats-0:4222,nats://nats-1:4222`).
    pub url: String,
    /// Shown in the server's connection list (`nats server report connections`).
    pub connection_name: String,
    pub streams: Vec<StreamSpec>,
    /// Copies of each stream and bucket in a cluster (1 for a single server).
    pub replicas: usize,
    /// How long a JetStream API request or publish acknowledgement may take.
    pub request_timeout: Duration,
    /// Publishes whose acknowledgement has not arrived yet; more wait.
    pub max_acks_in_flight: usize,
    pub auth: NatsAuth,
    /// TLS required, with the server's certificate checked against this CA.
    pub tls: Option<TlsOptions>,
    /// Where answers to this connection's requests arrive (`_INBOX` when unset); see
    /// [`permissions::Role::inbox_prefix`].
    pub inbox_prefix: Option<String>,
}

/// How the connection authenticates.
#[derive(Debug, Clone, Default)]
pub enum NatsAuth {
    /// No credentials: a server without authorization (a test, or a laptop).
    #[default]
    None,
    /// A user nkey's seed (`SU...`).
    NkeySeed(SecretText),
    /// The contents of a creds file: a user JWT and its nkey seed.
    Credentials(SecretText),
    UserPassword {
        user: String,
        password: SecretText,
    },
}

/// A credential that never shows in `Debug` output.
#[derive(Clone)]
pub struct SecretText(String);

impl SecretText {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// TLS to the server.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// The PEM certificate(s) of the authority that signed the server's certificate.
    pub ca_file: PathBuf,
    /// A client certificate and its key (PEM), for servers that verify clients (mutual TLS).
    pub client_certificate: Option<ClientCertificate>,
}

#[derive(Debug, Clone)]
pub struct ClientCertificate {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl JetStreamOptions {
    pub fn new(url: impl Into<String>, streams: Vec<StreamSpec>) -> Self {
        Self {
            url: url.into(),
            connection_name: "doorsync".into(),
            streams,
            replicas: 1,
            request_timeout: Duration::from_secs(10),
            max_acks_in_flight: 5_000,
            auth: NatsAuth::None,
            tls: None,
            inbox_prefix: None,
        }
    }
}

/// Refuses a URL that carries a user, a password or a token: it would be printed wherever the
/// URL is. The error shows the URL with them masked.
pub fn refuse_credentials_in_url(urls: &str) -> Result<(), LogError> {
    if urls.split(',').any(|url| authority(url).contains('@')) {
        return Err(LogError::Invalid {
            what: "NATS URL",
            value: masked_url(urls),
            reason: "it carries credentials, which would show in logs and errors; give them as an nkey seed, \
                     a creds file, or a user and a password file instead"
                .to_owned(),
        });
    }
    Ok(())
}

/// `urls` with whatever stands before an `@` in each authority replaced by `***`.
pub fn masked_url(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let scheme_end = url.find("://").map_or(0, |index| index + 3);
            let authority = authority(url);
            match authority.rfind('@') {
                Some(at) => format!("{}***{}", &url[..scheme_end], &url[scheme_end + at..]),
                None => url.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn authority(url: &str) -> &str {
    let rest = url.find("://").map_or(url, |index| &url[index + 3..]);
    rest.split(['/', '?', '#']).next().unwrap_or(rest)
}

async fn connect_options(options: &JetStreamOptions) -> Result<async_nats::ConnectOptions, LogError> {
    let mut connect = async_nats::ConnectOptions::new();
    connect = match &options.auth {
        NatsAuth::None => connect,
        NatsAuth::NkeySeed(seed) => connect.nkey(seed.expose().to_owned()),
        NatsAuth::Credentials(creds) => connect.credentials(creds.expose()).map_err(|error| LogError::Invalid {
            what: "NATS creds file",
            value: "(not shown)".to_owned(),
            reason: format!("it is not a creds file with a user JWT and an nkey seed: {error}"),
        })?,
        NatsAuth::UserPassword { user, password } => {
            connect.user_and_password(user.clone(), password.expose().to_owned())
        }
    };
    if let Some(tls) = &options.tls {
        connect = connect.require_tls(true).add_root_certificates(tls.ca_file.clone());
        if let Some(client) = &tls.client_certificate {
            connect = connect.add_client_certificate(client.cert_file.clone(), client.key_file.clone());
        }
    }
    if let Some(prefix) = &options.inbox_prefix {
        connect = connect.custom_inbox_prefix(prefix);
    }
    Ok(connect)
}

/// A connection to JetStream implementing [`EventLog`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct JetStreamLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: async_nats::Client,
    context: jetstream::Context,
    streams: Vec<StreamSpec>,
    replicas: usize,
    request_timeout: Duration,
    max_acks_in_flight: usize,
    in_flight: tokio::sync::Semaphore,
    /// Counts the times the connection came back after it was lost; see [`JetStreamLog::read`].
    reconnections: tokio::sync::watch::Receiver<u64>,
}

impl JetStreamLog {
    /// Connects, refuses servers older than 2.10, and creates or checks every stream.
    pub async fn connect(options: JetStreamOptions) -> Result<Self, LogError> {
        options.streams.iter().try_for_each(StreamSpec::validate)?;
        refuse_credentials_in_url(&options.url)?;
        let (reconnected, reconnections) = tokio::sync::watch::channel(0_u64);
        let reconnected = Arc::new(reconnected);
        let disconnected = Arc::new(AtomicBool::new(false));
        let client = connect_options(&options)
            .await?
            .name(&options.connection_name)
            .request_timeout(Some(options.request_timeout))
            .event_callback(move |event| {
                let (reconnected, disconnected) = (Arc::clone(&reconnected), Arc::clone(&disconnected));
                async move {
                    match event {
                        async_nats::Event::Disconnected => disconnected.store(true, Ordering::SeqCst),
                        // The first connection is announced too: only a return counts.
                        async_nats::Event::Connected if disconnected.swap(false, Ordering::SeqCst) => {
                            reconnected.send_modify(|count| *count += 1);
                        }
                        // A permissions violation arrives here and nowhere else: the request
                        // that caused it only times out.
                        async_nats::Event::ServerError(error) => {
                            tracing::warn!(%error, "NATS refused an operation of this connection");
                        }
                        _ => {}
                    }
                }
            })
            .connect(options.url.as_str())
            .await
            .map_err(|error| {
                let hint = match error.kind() {
                    async_nats::ConnectErrorKind::AuthorizationViolation => {
                        ": the server refused this process's credentials (log.nats_* in the config)"
                    }
                    async_nats::ConnectErrorKind::Tls => ": TLS failed (is log.tls_ca_file the server's CA?)",
                    _ => "",
                };
                LogError::unavailable(format!("connecting to NATS at {}{hint}", options.url), error)
            })?;
        check_server_version(&options.url, &client.server_info().version)?;
        let context = jetstream::ContextBuilder::new()
            .timeout(options.request_timeout)
            .ack_timeout(options.request_timeout)
            .max_ack_inflight(options.max_acks_in_flight)
            .build(client.clone());
        let log = Self {
            inner: Arc::new(Inner {
                client,
                context,
                streams: options.streams,
                replicas: options.replicas,
                request_timeout: options.request_timeout,
                max_acks_in_flight: options.max_acks_in_flight.max(1),
                in_flight: tokio::sync::Semaphore::new(options.max_acks_in_flight.max(1)),
                reconnections,
            }),
        };
        for spec in &log.inner.streams {
            log.ensure_stream(spec).await?;
        }
        Ok(log)
    }

    /// The underlying client, for the benchmark's raw baseline and for health checks.
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// Waits until everything published so far has left the client.
    pub async fn flush(&self) -> Result<(), LogError> {
        self.inner.client.flush().await.map_err(|error| LogError::unavailable("flushing to NATS", error))
    }

    /// Stops the connection gracefully at shutdown: subscriptions are drained, everything
    /// published is flushed, then the connection closes.
    pub async fn drain(&self) -> Result<(), LogError> {
        self.inner.client.drain().await.map_err(|error| LogError::unavailable("draining the NATS connection", error))
    }

    async fn ensure_stream(&self, spec: &StreamSpec) -> Result<(), LogError> {
        let wanted = stream::Config {
            name: spec.name.clone(),
            subjects: spec.subjects.clone(),
            duplicate_window: spec.duplicate_window,
            storage: stream::StorageType::File,
            num_replicas: self.inner.replicas,
            retention: stream::RetentionPolicy::Limits,
            allow_direct: true,
            ..Default::default()
        };
        let context = &self.inner.context;
        let mut stream = context
            .get_or_create_stream(wanted.clone())
            .await
            .map_err(|error| LogError::unavailable(format!("creating stream {}", spec.name), error))?;
        let existing = stream
            .info()
            .await
            .map_err(|error| LogError::unavailable(format!("reading stream {}", spec.name), error))?
            .config
            .clone();
        let config = if stream_differs(&existing, &wanted) {
            context
                .update_stream(&wanted)
                .await
                .map_err(|error| LogError::unavailable(format!("updating stream {}", spec.name), error))?
                .config
        } else {
            existing
        };
        check_stream_config(&config, &wanted)
    }

    /// JetStream checks the expected subject sequence before it looks for a duplicate id, so a
    /// retry after a lost acknowledgement is refused even though its message is stored. When that
    /// message is still the last one on the subject, the retry is answered as the duplicate it is.
    async fn already_last_on_subject(
        &self,
        stream: &str,
        subject: &str,
        id: &str,
    ) -> Result<Option<Appended>, LogError> {
        let last = self.last_on_subject(stream, subject).await?;
        Ok(last
            .filter(|message| message.id.as_deref() == Some(id))
            .map(|message| Appended { sequence: message.sequence, duplicate: true }))
    }

    /// An ordered consumer over the request's subjects, from its sequence.
    ///
    /// A read that follows the stream ends with an error once the connection to the server came
    /// back after it was lost: the server may have lost the ordered consumer with it (a restarted
    /// server always has), and the client would only find out after missing its heartbeats for a
    /// quarter of a minute, delivering nothing meanwhile. The caller reads again from where it
    /// got to.
    async fn read(&self, request: ReplayRequest, until: Until) -> Result<MessageStream, LogError> {
        request.filters.iter().try_for_each(|filter| doorsync_log::validate_filter(filter))?;
        let mut reconnections = self.inner.reconnections.clone();
        reconnections.mark_unchanged();
        let mut stream = self.stream(&request.stream).await?;
        let last = stream
            .info()
            .await
            .map_err(|error| LogError::unavailable(format!("reading stream {}", request.stream), error))?
            .state
            .last_sequence;
        if until == Until::CaughtUp && last < request.from_sequence.0 {
            return Ok(futures::stream::empty().boxed());
        }
        let config = jetstream::consumer::pull::OrderedConfig {
            // Named, so that its create request names it in the subject: the unnamed form would
            // take any consumer's name from the request's body, and permissions that allowed it
            // could not keep a reader from changing the writer's durable consumer.
            name: Some(unique_consumer_name(&self.inner.client)),
            filter_subjects: request.filters.clone(),
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: request.from_sequence.0,
            },
            ..Default::default()
        };
        let mut consumer = stream
            .create_consumer(config)
            .await
            .map_err(|error| LogError::unavailable(format!("opening a replay of {}", request.stream), error))?;
        let pending = consumer
            .info()
            .await
            .map_err(|error| LogError::unavailable(format!("opening a replay of {}", request.stream), error))?
            .num_pending;
        if until == Until::CaughtUp && pending == 0 {
            return Ok(futures::stream::empty().boxed());
        }
        let messages = consumer
            .messages()
            .await
            .map_err(|error| LogError::unavailable(format!("reading a replay of {}", request.stream), error))?;
        let stream_name: Arc<str> = Arc::from(request.stream);
        let followed_name = Arc::clone(&stream_name);
        // Stops right after the message the server says nothing is pending behind: polling the
        // ordered consumer once more would wait for a message that may never come.
        let replayed = futures::stream::unfold(Some(messages), move |messages| {
            let stream_name = Arc::clone(&stream_name);
            async move {
                let mut messages = messages?;
                let item = match messages.next().await? {
                    Ok(message) => message
                        .info()
                        .map(|info| (stored_message(&stream_name, info.stream_sequence, &message), info.pending))
                        .map_err(|error| LogError::unavailable("reading replay metadata", error)),
                    Err(error) => Err(LogError::unavailable(format!("reading a replay of {stream_name}"), error)),
                };
                match item {
                    Ok((message, 0)) if until == Until::CaughtUp => Some((Ok(message), None)),
                    Ok((message, _)) => Some((Ok(message), Some(messages))),
                    Err(error) => Some((Err(error), None)),
                }
            }
        });
        if until == Until::CaughtUp {
            return Ok(replayed.boxed());
        }
        let followed = futures::stream::unfold(Some((replayed.boxed(), reconnections)), move |state| {
            let stream_name = Arc::clone(&followed_name);
            async move {
                let (mut messages, mut reconnections) = state?;
                tokio::select! {
                    // In stream order: a message that has arrived goes out before the news.
                    biased;
                    item = messages.next() => item.map(|item| (item, Some((messages, reconnections)))),
                    // Also when the client is gone, which ends the read all the same.
                    _ = reconnections.changed() => {
                        let error = LogError::Unavailable {
                            context: format!(
                                "following {stream_name}: the connection to NATS was lost and re-established, \
                                 so the server may have lost this read; read again from the last message"
                            ),
                            source: None,
                        };
                        Some((Err(error), None))
                    }
                }
            }
        });
        Ok(followed.boxed())
    }

    fn spec_for_subject(&self, subject: &str) -> Option<&StreamSpec> {
        self.inner.streams.iter().find(|spec| spec.captures(subject))
    }

    async fn stream(&self, name: &str) -> Result<stream::Stream, LogError> {
        self.inner.context.get_stream(name).await.map_err(|error| match error.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(inner)
                if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                LogError::UnknownStream { stream: name.to_owned() }
            }
            _ => LogError::unavailable(format!("looking up stream {name}"), error),
        })
    }

    /// Permits for `count` acknowledgements, taken all at once. async-nats takes one permit per
    /// publish and holds it until the acknowledgement arrives: thousands of callers that each
    /// publish a few messages before awaiting any would all hold some permits and wait for more,
    /// forever. Taking a whole batch's permits up front, here, means nobody waits holding any.
    async fn acks_in_flight(&self, count: usize) -> Result<tokio::sync::SemaphorePermit<'_>, LogError> {
        let count = u32::try_from(count.min(self.inner.max_acks_in_flight)).unwrap_or(u32::MAX);
        self.inner
            .in_flight
            .acquire_many(count)
            .await
            .map_err(|_| LogError::Closed { context: "the JetStream connection is shutting down".into() })
    }

    /// Sends the message; the returned future resolves when JetStream has stored it. The caller
    /// holds a permit from [`Self::acks_in_flight`] until then.
    async fn publish(
        &self,
        message: NewMessage,
    ) -> Result<impl Future<Output = Result<Appended, LogError>> + use<>, LogError> {
        message.validate()?;
        let Some(spec) = self.spec_for_subject(&message.subject) else {
            return Err(LogError::NoStream { subject: message.subject });
        };
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in &message.headers {
            headers.append(name.as_str(), value.as_str());
        }
        let mut publish = jetstream::message::PublishMessage::build()
            .payload(message.payload)
            .headers(headers)
            .message_id(&message.id);
        if let Some(expected) = message.expected_last_subject_sequence {
            publish = publish.expected_last_subject_sequence(expected.0);
        }
        // A Subject is a shared buffer: kept for error messages without copying the string.
        let subject = async_nats::Subject::from(message.subject);
        let id = message.id;
        let stream = spec.name.clone();
        let log = self.clone();
        let pending = self
            .inner
            .context
            .send_publish(subject.clone(), publish)
            .await
            .map_err(|error| LogError::unavailable(format!("publishing to {subject}"), error))?;
        let expected = message.expected_last_subject_sequence;
        let ack_timeout = self.inner.request_timeout;
        Ok(async move {
            match pending.await {
                Ok(ack) => Ok(Appended { sequence: Sequence(ack.sequence), duplicate: ack.duplicate }),
                Err(error) => Err(match error.kind() {
                    PublishErrorKind::WrongLastSequence => {
                        return log.already_last_on_subject(&stream, &subject, &id).await?.ok_or(
                            LogError::WrongLastSequence {
                                subject: subject.to_string(),
                                expected: expected.unwrap_or_default(),
                            },
                        );
                    }
                    PublishErrorKind::TimedOut => LogError::TimedOut {
                        context: format!("waiting for JetStream to store a message on {subject}"),
                        after: ack_timeout,
                    },
                    // The subject belongs to a configured stream, so "no stream" means the server
                    // is still recovering it (after a restart, say): worth a retry.
                    _ => LogError::unavailable(format!("storing a message on {subject}"), error),
                }),
            }
        })
    }
}

/// A name no other consumer has: the unique last token of a fresh inbox.
fn unique_consumer_name(client: &async_nats::Client) -> String {
    let inbox = client.new_inbox();
    let unique = inbox.rsplit('.').next().unwrap_or(&inbox);
    format!("read_{unique}")
}

fn check_server_version(url: &str, reported: &str) -> Result<(), LogError> {
    let too_old = || LogError::ServerTooOld { url: url.to_owned(), found: reported.to_owned() };
    let version = semver::Version::parse(reported.trim_start_matches('v')).map_err(|_| too_old())?;
    let release = semver::Version::new(version.major, version.minor, version.patch);
    if release < MINIMUM_SERVER_VERSION {
        return Err(too_old());
    }
    Ok(())
}

fn stream_differs(existing: &stream::Config, wanted: &stream::Config) -> bool {
    let mut existing_subjects = existing.subjects.clone();
    let mut wanted_subjects = wanted.subjects.clone();
    existing_subjects.sort();
    wanted_subjects.sort();
    existing_subjects != wanted_subjects
        || existing.duplicate_window != wanted.duplicate_window
        || existing.allow_direct != wanted.allow_direct
}

fn check_stream_config(got: &stream::Config, wanted: &stream::Config) -> Result<(), LogError> {
    let mismatch = |field: &'static str, asked: String, got: String| LogError::ConfigMismatch {
        what: "stream",
        name: wanted.name.clone(),
        field,
        asked,
        got,
    };
    if stream_differs(got, wanted) {
        if got.duplicate_window != wanted.duplicate_window {
            return Err(mismatch(
                "duplicate_window",
                format!("{:?}", wanted.duplicate_window),
                format!("{:?}", got.duplicate_window),
            ));
        }
        if got.allow_direct != wanted.allow_direct {
            return Err(mismatch("allow_direct", wanted.allow_direct.to_string(), got.allow_direct.to_string()));
        }
        return Err(mismatch("subjects", wanted.subjects.join(","), got.subjects.join(",")));
    }
    if got.storage != wanted.storage {
        return Err(mismatch("storage", format!("{:?}", wanted.storage), format!("{:?}", got.storage)));
    }
    if got.num_replicas != wanted.num_replicas {
        return Err(mismatch("num_replicas", wanted.num_replicas.to_string(), got.num_replicas.to_string()));
    }
    Ok(())
}

/// Application headers only: the log's own (`Nats-*`) stay inside the log.
fn application_headers(headers: Option<&async_nats::HeaderMap>) -> Vec<(String, String)> {
    let Some(headers) = headers else { return Vec::new() };
    headers
        .iter()
        .filter(|(name, _)| !doorsync_log::is_reserved_header(name.as_ref()))
        .flat_map(|(name, values)| {
            values.iter().map(move |value| (AsRef::<str>::as_ref(name).to_owned(), value.as_str().to_owned()))
        })
        .collect()
}

fn message_id(headers: Option<&async_nats::HeaderMap>) -> Option<String> {
    headers.and_then(|headers| headers.get(MESSAGE_ID_HEADER)).map(|value| value.as_str().to_owned())
}

pub(crate) fn stored_message(stream: &str, sequence: u64, message: &async_nats::Message) -> StoredMessage {
    StoredMessage {
        stream: stream.to_owned(),
        sequence: Sequence(sequence),
        // Copied as text, not through `Display`: a replay copies millions of subjects.
        subject: message.subject.as_str().to_owned(),
        id: message_id(message.headers.as_ref()),
        payload: message.payload.clone(),
        headers: application_headers(message.headers.as_ref()),
    }
}

#[async_trait]
impl EventLog for JetStreamLog {
    async fn append(&self, message: NewMessage) -> Result<Appended, LogError> {
        let _in_flight = self.acks_in_flight(1).await?;
        self.publish(message).await?.await
    }

    async fn append_batch(&self, messages: Vec<NewMessage>) -> Vec<Result<Appended, LogError>> {
        let mut answers = Vec::with_capacity(messages.len());
        let mut messages = messages.into_iter().peekable();
        while messages.peek().is_some() {
            let chunk: Vec<NewMessage> = messages.by_ref().take(self.inner.max_acks_in_flight).collect();
            let _in_flight = match self.acks_in_flight(chunk.len()).await {
                Ok(permit) => permit,
                Err(error) => {
                    answers.extend(chunk.iter().map(|_| Err(LogError::Closed { context: error.to_string() })));
                    continue;
                }
            };
            let mut pending = Vec::with_capacity(chunk.len());
            for message in chunk {
                pending.push(self.publish(message).await);
            }
            answers.extend(
                futures::future::join_all(pending.into_iter().map(|sent| async move {
                    match sent {
                        Ok(ack) => ack.await,
                        Err(error) => Err(error),
                    }
                }))
                .await,
            );
        }
        answers
    }

    async fn replay(&self, request: ReplayRequest) -> Result<MessageStream, LogError> {
        self.read(request, Until::CaughtUp).await
    }

    async fn follow(&self, request: ReplayRequest) -> Result<MessageStream, LogError> {
        self.read(request, Until::Dropped).await
    }

    async fn last_sequence(&self, stream: &str) -> Result<Sequence, LogError> {
        let mut stream_handle = self.stream(stream).await?;
        let info = stream_handle
            .info()
            .await
            .map_err(|error| LogError::unavailable(format!("reading stream {stream}"), error))?;
        Ok(Sequence(info.state.last_sequence))
    }
    async fn last_on_subject(&self, stream: &str, subject: &str) -> Result<Option<StoredMessage>, LogError> {
        doorsync_log::validate_subject(subject)?;
        let stream_handle = self.stream(stream).await?;
        match stream_handle.get_last_raw_message_by_subject(subject).await {
            Ok(raw) => Ok(Some(StoredMessage {
                stream: stream.to_owned(),
                sequence: Sequence(raw.sequence),
                subject: raw.subject.to_string(),
                id: message_id(Some(&raw.headers)),
                payload: raw.payload,
                headers: application_headers(Some(&raw.headers)),
            })),
            Err(error) if error.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(LogError::unavailable(format!("reading the last message on {subject}"), error)),
        }
    }

    async fn durable_consumer(&self, spec: ConsumerSpec) -> Result<Box<dyn DurableConsumer>, LogError> {
        spec.validate()?;
        let stream = self.stream(&spec.stream).await?;
        Ok(Box::new(consumer::JetStreamConsumer::open(&stream, spec).await?))
    }

    async fn key_value(&self, bucket: &str) -> Result<Arc<dyn KeyValue>, LogError> {
        doorsync_log::validate_name("bucket name", bucket)?;
        Ok(Arc::new(kv::JetStreamKv::open(&self.inner.context, bucket, self.inner.replicas).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_servers_are_refused_with_the_version_found() {
        assert!(check_server_version("nats://x", "2.15.1").is_ok());
        assert!(check_server_version("nats://x", "2.10.0").is_ok());
        assert!(check_server_version("nats://x", "2.11.0-beta.2").is_ok());
        let error = check_server_version("nats://x", "2.9.10").unwrap_err();
        assert!(error.to_string().contains("nats-server 2.9.10 at nats://x is too old"), "{error}");
        assert!(matches!(check_server_version("nats://x", "garbage"), Err(LogError::ServerTooOld { .. })));
    }

    #[test]
    fn a_url_with_credentials_is_refused_without_showing_them() {
        for url in [
            "nats://doorsync:hunter2@nats:4222",
            "nats://nats-0:4222,tls://hunter2@nats-1:4222",
            "doorsync:hunter2@nats:4222",
            "nats://doorsync:hunter2@nats:4222/path",
        ] {
            let error = refuse_credentials_in_url(url).unwrap_err().to_string();
            assert!(!error.contains("hunter2"), "{error}");
            assert!(error.contains("***@nats"), "{error}");
            assert!(error.contains("nkey seed"), "{error}");
        }
        assert!(refuse_credentials_in_url("nats://nats-0:4222,nats://nats-1:4222").is_ok());
        assert!(refuse_credentials_in_url("tls://nats:4222/").is_ok());
        assert_eq!(masked_url("nats://a:b@h:1,nats://h:2"), "nats://***@h:1,nats://h:2");
    }

    #[tokio::test]
    async fn connecting_with_a_password_in_the_url_fails_before_reaching_out() {
        let options = JetStreamOptions::new("nats://doorsync:hunter2@127.0.0.1:1", Vec::new());
        let error = JetStreamLog::connect(options).await.unwrap_err();
        assert!(matches!(error, LogError::Invalid { .. }), "{error}");
        assert!(!format!("{error} {error:?}").contains("hunter2"), "{error:?}");
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let mut options = JetStreamOptions::new("nats://127.0.0.1:4222", Vec::new());
        options.auth = NatsAuth::UserPassword { user: "engine".into(), password: SecretText::new("hunter2") };
        assert!(!format!("{options:?}").contains("hunter2"));
        options.auth = NatsAuth::NkeySeed(SecretText::new("SUAEXAMPLESEED"));
        assert!(!format!("{options:?}").contains("SUAEXAMPLESEED"));
    }

    #[test]
    fn a_config_the_server_did_not_keep_is_named() {
        let wanted = stream::Config {
            name: "EVT".into(),
            subjects: vec!["ds.evt.>".into()],
            duplicate_window: Duration::from_secs(600),
            allow_direct: true,
            ..Default::default()
        };
        let mut got = wanted.clone();
        assert!(check_stream_config(&got, &wanted).is_ok());
        got.duplicate_window = Duration::from_secs(120);
        let error = check_stream_config(&got, &wanted).unwrap_err();
        assert!(error.to_string().contains("duplicate_window = 120s where doorsync asked for 600s"), "{error}");
    }
}
