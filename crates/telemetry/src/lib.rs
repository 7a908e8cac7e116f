//! How doorsync reports what it does: logs on stderr, spans over OpenTelemetry, and the trace
//! context that carries one trace from process to process inside log message headers.
//!
//! Logs follow `RUST_LOG` (or the caller's default) and go to stderr only, so that a command's
//! answer on stdout is never mixed with them. They are lines for people ([`LogFormat::Text`]),
//! coloured only when stderr is a terminal and `NO_COLOR` is unset or empty
//! (<https://no-color.org>), or one JSON object per line ([`LogFormat::Json`]) for a log
//! collector. Spans are exported over OTLP when the
//! standard variables name an endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), over gRPC, HTTP/protobuf or HTTP/JSON as
//! `OTEL_EXPORTER_OTLP_PROTOCOL` says; with none set, nothing is exported and tracing costs no
//! more than logging. The exporter runs on a small runtime of its own (the SDK's batch thread has
//! no Tokio reactor) and sends HTTP through the workspace's reqwest.
//!
//! [`current_trace_headers`] and [`TraceParent`] carry W3C trace context in log message headers,
//! never in payloads, so a message's content, and so its id, is the same whether tracing is on or
//! off. The ingestor's appends, the engine's commands and the writer's outcomes and dead letters
//! carry the span they were written in; the engine's `engine.emit` joins the trace of a live
//! event and only links to that of an event read from history (a replay, or a window edge long
//! after the event); the writer's `writer.step` joins its command's trace, and `kisi.request` is
//! its child.
//!
//! Spans carry ids (members, Kisi users and groups, Nexudus records, log sequences, HTTP method
//! and path without the query), never emails, names or credentials.
#![forbid(unsafe_code)]

mod export;
mod propagation;

use std::io::IsTerminal as _;

use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

pub use propagation::{TraceParent, current_trace_headers};

use export::{ExportSettings, Exporting};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry: {variable}={value:?} is not valid: expected {expected}")]
    Setting { variable: &'static str, value: String, expected: &'static str },
    #[error("telemetry: cannot start the OTLP exporter's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("telemetry: cannot build the OTLP exporter: {0} (check the OTEL_EXPORTER_OTLP_* variables)")]
    Exporter(String),
    #[error("telemetry: a tracing subscriber is already installed")]
    AlreadyInstalled,
    #[error("telemetry: spans still buffered at shutdown could not be exported: {0}")]
    Flush(String),
}

/// How a process reports.
#[derive(Debug, Clone)]
pub struct TelemetryOptions {
    /// `service.name` in the tracing backend unless `OTEL_SERVICE_NAME` says otherwise.
    pub service_name: String,
    /// The log filter when `RUST_LOG` is unset (`info`, `warn`, `doorsync_writer=debug`, ...).
    pub default_log_filter: String,
    /// How log lines are written on stderr.
    pub format: LogFormat,
}

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Lines for people, coloured only on a terminal that `NO_COLOR` does not turn plain.
    #[default]
    Text,
    /// One JSON object per line: the time, the level, the target, the message and the event's
    /// fields at the top level, and the spans it is in.
    Json,
}

/// Installed reporting; [`Telemetry::shutdown`] exports what is still buffered.
#[derive(Debug)]
pub struct Telemetry {
    exporting: Option<Exporting>,
}

impl Telemetry {
    /// Installs logging and, when the environment asks for it, span export, for the whole
    /// process. Call it once, before the async runtime starts.
    pub fn install(options: &TelemetryOptions) -> Result<Self, TelemetryError> {
        let settings = ExportSettings::from_env(|name| std::env::var(name).ok())?;
        let exporting = settings.map(|settings| Exporting::start(&settings, &options.service_name)).transpose()?;
        let log_filter =
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&options.default_log_filter));
        let colour = colour_wanted(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref());
        let logs = match options.format {
            LogFormat::Text => tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(colour)
                .with_filter(log_filter)
                .boxed(),
            LogFormat::Json => tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_span_list(true)
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .with_filter(log_filter)
                .boxed(),
        };
        let spans = exporting.as_ref().map(|exporting| {
            use opentelemetry::trace::TracerProvider as _;
            tracing_opentelemetry::layer().with_tracer(exporting.provider.tracer("doorsync")).with_filter(span_filter())
        });
        Registry::default().with(logs).with(spans).try_init().map_err(|_| TelemetryError::AlreadyInstalled)?;
        Ok(Self { exporting })
    }

    /// True when spans leave the process.
    pub fn exporting(&self) -> bool {
        self.exporting.is_some()
    }

    /// Exports the spans still buffered. Call it after the runtime has stopped: it blocks.
    pub fn shutdown(self) -> Result<(), TelemetryError> {
        self.exporting.map_or(Ok(()), Exporting::shutdown)
    }
}

/// Colour only for a person at a terminal who has not asked for none: `NO_COLOR` set to anything
/// but the empty string turns it off.
fn colour_wanted(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

/// Spans of doorsync's own crates at `info` and above, whatever the log level: an operator
/// who quiets the logs still wants whole traces.
fn span_filter() -> Targets {
    Targets::new().with_target("doorsync", LevelFilter::INFO)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::colour_wanted;

    #[test]
    fn colour_only_on_a_terminal_and_never_when_no_color_is_set() {
        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, Some(OsStr::new(""))), "an empty NO_COLOR asks for nothing");
        assert!(!colour_wanted(true, Some(OsStr::new("1"))));
        assert!(!colour_wanted(false, None));
        assert!(!colour_wanted(false, Some(OsStr::new("1"))));
    }
}
