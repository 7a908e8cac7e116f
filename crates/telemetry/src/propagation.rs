//! W3C trace context carried in log message headers, so that one trace follows a change from the
//! Nexudus webhook through every process to the Kisi call.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The trace a message was appended in, read back from its headers.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceParent(SpanContext);

impl TraceParent {
    /// `None` when the headers carry no valid `traceparent` (the writer was not tracing).
    pub fn from_headers(headers: &[(String, String)]) -> Option<Self> {
        let context = TraceContextPropagator::new().extract(&HeaderView(headers));
        let span_context = context.span().span_context().clone();
        span_context.is_valid().then_some(Self(span_context))
    }

    /// Makes `span` a child of this trace: the message caused the work `span` does. Call it
    /// before `span` is first entered.
    pub fn adopt(&self, span: &Span) {
        if let Err(error) = span.set_parent(Context::new().with_remote_span_context(self.0.clone())) {
            tracing::debug!(%error, "a span could not join the trace of the message it handles");
        }
    }

    /// Links `span` to this trace without joining it: the work re-reads the message (a replay or
    /// a window edge long after it), so it is not part of the request that appended it.
    pub fn link(&self, span: &Span) {
        span.add_link(self.0.clone());
    }

    /// The trace id in hexadecimal, as tracing backends show it.
    pub fn trace_id(&self) -> String {
        self.0.trace_id().to_string()
    }
}

/// The current span's trace context as message headers (`traceparent`, and `tracestate` when
/// set); empty when nothing is being traced.
pub fn current_trace_headers() -> Vec<(String, String)> {
    let mut sink = HeaderSink(Vec::new());
    TraceContextPropagator::new().inject_context(&Span::current().context(), &mut sink);
    sink.0
}

struct HeaderView<'a>(&'a [(String, String)]);

impl Extractor for HeaderView<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(name, _)| name.eq_ignore_ascii_case(key)).map(|(_, value)| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_str()).collect()
    }
}

struct HeaderSink(Vec<(String, String)>);

impl Injector for HeaderSink {
    fn set(&mut self, key: &str, value: String) {
        // An empty `tracestate` says nothing; NATS headers need not carry it.
        if !value.is_empty() {
            self.0.push((key.to_owned(), value));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    fn recording() -> (InMemorySpanExporter, SdkTracerProvider, impl tracing::Subscriber) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        (exporter, provider, subscriber)
    }

    #[test]
    fn a_message_appended_in_a_span_makes_its_handler_a_child_of_that_span() {
        let (exporter, provider, subscriber) = recording();
        tracing::subscriber::with_default(subscriber, || {
            let headers = tracing::info_span!("append").in_scope(current_trace_headers);
            assert_eq!(headers.len(), 1, "only traceparent: {headers:?}");
            assert_eq!(headers[0].0, "traceparent");
            let parent = TraceParent::from_headers(&headers).unwrap();
            let handler = tracing::info_span!("handle");
            parent.adopt(&handler);
            handler.in_scope(|| {});
        });
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let append = spans.iter().find(|span| span.name == "append").unwrap();
        let handle = spans.iter().find(|span| span.name == "handle").unwrap();
        assert_eq!(handle.span_context.trace_id(), append.span_context.trace_id());
        assert_eq!(handle.parent_span_id, append.span_context.span_id());
        assert!(handle.links.is_empty());
    }

    #[test]
    fn a_replayed_message_is_linked_to_and_starts_a_trace_of_its_own() {
        let (exporter, provider, subscriber) = recording();
        tracing::subscriber::with_default(subscriber, || {
            let headers = tracing::info_span!("append").in_scope(current_trace_headers);
            let replay = tracing::info_span!("replay");
            TraceParent::from_headers(&headers).unwrap().link(&replay);
            replay.in_scope(|| {});
        });
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let append = spans.iter().find(|span| span.name == "append").unwrap();
        let replay = spans.iter().find(|span| span.name == "replay").unwrap();
        assert_ne!(replay.span_context.trace_id(), append.span_context.trace_id());
        assert_eq!(replay.links.len(), 1);
        let linked = &replay.links.links[0].span_context;
        assert_eq!(
            (linked.trace_id(), linked.span_id()),
            (append.span_context.trace_id(), append.span_context.span_id())
        );
    }

    #[test]
    fn nothing_is_carried_when_nothing_is_traced() {
        assert!(tracing::info_span!("untraced").in_scope(current_trace_headers).is_empty());
    }

    #[test]
    fn missing_or_malformed_trace_headers_give_no_parent() {
        assert_eq!(TraceParent::from_headers(&[]), None);
        let malformed = [("traceparent".to_owned(), "00-not-a-trace-01".to_owned())];
        assert_eq!(TraceParent::from_headers(&malformed), None);
        let zero = [("traceparent".to_owned(), "00-00000000000000000000000000000000-0000000000000000-01".to_owned())];
        assert_eq!(TraceParent::from_headers(&zero), None);
    }

    #[test]
    fn header_names_are_matched_without_regard_to_case() {
        let headers =
            [("TraceParent".to_owned(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned())];
        let parent = TraceParent::from_headers(&headers).unwrap();
        assert_eq!(parent.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
