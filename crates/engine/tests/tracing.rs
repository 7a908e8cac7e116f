//! The engine's spans in a trace: commands caused by an event read as it is appended join the
//! event's trace; commands evaluated from history (a replay) start a trace of their own that
//! links to the event's. Each command carries its emission's trace context in its headers.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed step should stop the test loudly")]

mod support;

use std::sync::Arc;

use bytes::Bytes;
use doorsync_clock::ManualClock;
use doorsync_layout::Layout;
use doorsync_log::{EventLog, NewMessage, ReplayRequest};
use doorsync_proto::{Envelope, Event, MemberId, Timestamp};
use doorsync_telemetry::{TraceParent, current_trace_headers};
use futures::StreamExt;
use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use support::*;
use tracing_subscriber::layer::SubscriberExt;

/// Appends `event` as the ingestor does, inside a webhook span named `span`.
async fn append_in_span(log: &Arc<dyn EventLog>, layout: &Layout, at: Timestamp, event: Event, span: &str) {
    let envelope = Envelope::new(at, event.clone()).unwrap();
    let payload = Bytes::from(doorsync_proto::encode(&envelope).unwrap());
    let headers = tracing::info_span!("test.webhook", name = span).in_scope(current_trace_headers);
    assert!(!headers.is_empty(), "the test's span is traced");
    let mut message = NewMessage::new(layout.subjects.subject_for(&event), envelope.id.to_string(), payload);
    message.headers = headers;
    log.append(message).await.unwrap();
}

fn finished(exporter: &InMemorySpanExporter, provider: &SdkTracerProvider) -> Vec<SpanData> {
    provider.force_flush().unwrap();
    exporter.get_finished_spans().unwrap()
}

fn webhook<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|span| span.name == "test.webhook" && span.attributes.iter().any(|kv| kv.value.as_str() == name))
        .unwrap()
}

fn emission(spans: &[SpanData], member: u64) -> Option<&SpanData> {
    spans.iter().find(|span| {
        span.name == "engine.emit"
            && span.attributes.iter().any(|kv| kv.key.as_str() == "member" && kv.value.as_str() == member.to_string())
    })
}

async fn command_trace_parents(log: &Arc<dyn EventLog>, layout: &Layout, member: MemberId) -> Vec<TraceParent> {
    let request = ReplayRequest::whole(&layout.commands).filtered([layout.subjects.command(member)]);
    let messages: Vec<_> = log.replay(request).await.unwrap().collect().await;
    messages.into_iter().map(|message| TraceParent::from_headers(&message.unwrap().headers).unwrap()).collect()
}

/// One test: the subscriber is the process's global one, which the engine's tasks on other
/// threads see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_parent_the_commands_they_cause_and_replayed_events_are_only_linked() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    append(&store.log, &layout, at(0), mapping(1, 100)).await;
    append(&store.log, &layout, at(0), member(7)).await;
    append_in_span(&store.log, &layout, at(0), booking(7, 1, 1, 60, 120), "history").await;

    let engine = start(options("a", &layout), &store.log, &clock).await;
    settled_commands_for(&store.log, &layout, MemberId(7), 2).await;
    append(&store.log, &layout, at(0), member(8)).await;
    append_in_span(&store.log, &layout, at(0), booking(8, 2, 1, 30, 90), "live").await;
    settled_commands_for(&store.log, &layout, MemberId(8), 2).await;
    engine.shutdown().await;

    let spans = finished(&exporter, &provider);
    let history = webhook(&spans, "history");
    let replayed = emission(&spans, 7).expect("member 7's commands were emitted in a span");
    assert_ne!(replayed.span_context.trace_id(), history.span_context.trace_id(), "a replay starts its own trace");
    let parent = spans.iter().find(|span| span.span_context.span_id() == replayed.parent_span_id);
    assert_eq!(replayed.parent_span_id, SpanId::INVALID, "{parent:#?}");
    let links: Vec<_> = replayed.links.iter().map(|link| link.span_context.span_id()).collect();
    assert_eq!(links, [history.span_context.span_id()], "and links to the event's");

    let live = webhook(&spans, "live");
    let caused = emission(&spans, 8).expect("member 8's commands were emitted in a span");
    assert_eq!(caused.span_context.trace_id(), live.span_context.trace_id(), "a live event's trace goes on");
    assert_eq!(caused.parent_span_id, live.span_context.span_id());
    assert!(caused.links.is_empty());

    for (member, span) in [(7, replayed), (8, caused)] {
        let parents = command_trace_parents(&store.log, &layout, MemberId(member)).await;
        assert_eq!(parents.len(), 2);
        for parent in parents {
            assert_eq!(parent.trace_id(), span.span_context.trace_id().to_string(), "member {member}'s commands");
        }
    }
}
