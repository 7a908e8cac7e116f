//! One booking followed through doorsync's three processes in a tracing backend: `doorsync
//! ingest`, `doorsync engine` and `doorsync writer` on a real nats-server export their spans to
//! an OTLP receiver in this test (the ingestor and writer over HTTP, protobuf and JSON, the engine
//! over gRPC), and the spans of all three share one trace, from the Nexudus webhook to the Kisi
//! call, each process's spans children of the one before. The writer exports only every ten
//! minutes, so its spans arrive only because stopping it exports what it still holds.

use std::collections::HashMap;
use std::time::Duration;

use doorsync_access::NoAccessPolicy;
use doorsync_clock::{Clock, SystemClock};
use doorsync_integration_tests::otlp::{OtlpReceiver, ReceivedSpan};
use doorsync_integration_tests::{Deployment, HarnessError, Site, eventually};
use doorsync_proto::Timestamp;

const WAIT: Duration = Duration::from_secs(60);

fn otlp_settings(receiver: &OtlpReceiver, role: &str) -> Vec<(&'static str, String)> {
    // Milliseconds between exports: a fifth of a second instead of the default five, and for the
    // writer longer than the test, so that only the export at shutdown sends its spans.
    let (protocol, export_every) = match role {
        "engine" => ("grpc", "200"),
        "writer" => ("http/json", "600000"),
        _ => ("http/protobuf", "200"),
    };
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", export_every.to_owned()),
    ]
    .into()
}

/// The chain from `span` up to its trace's root, `span` first.
fn ancestry<'a>(span: &'a ReceivedSpan, by_id: &HashMap<&str, &'a ReceivedSpan>) -> Vec<&'a ReceivedSpan> {
    let mut chain = vec![span];
    let mut current = span;
    while let Some(parent) = by_id.get(current.parent_span_id.as_str()) {
        chain.push(parent);
        current = parent;
    }
    chain
}

/// The Kisi call that gave Ada her group, with its ancestry, once every span of it has arrived.
fn traced_grant(spans: &[ReceivedSpan]) -> Option<Vec<ReceivedSpan>> {
    let by_id: HashMap<&str, &ReceivedSpan> = spans.iter().map(|span| (span.span_id.as_str(), span)).collect();
    spans
        .iter()
        .filter(|span| span.name == "kisi.request" && span.attribute("http.request.method") == Some("POST"))
        .filter(|span| span.attribute("url.path").is_some_and(|path| path.contains("role_assignments")))
        .map(|span| ancestry(span, &by_id))
        .find(|chain| chain.last().is_some_and(|root| root.name == "nexudus.webhook"))
        .map(|chain| chain.into_iter().cloned().collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_booking_is_one_trace_through_ingest_engine_and_writer() -> Result<(), HarnessError> {
    let receiver = OtlpReceiver::start().await?;
    let site = Site::start_with_settings(Deployment::SeparateProcesses, NoAccessPolicy::Suspend, |role| {
        otlp_settings(&receiver, role)
    })
    .await?;
    let ada = site.add_member("Ada")?;
    let now = SystemClock.now();
    let starts = Timestamp::from_unix_millis(now.as_unix_millis() + 60 * 60 * 1000);
    let ends = Timestamp::from_unix_millis(starts.as_unix_millis() + 60 * 60 * 1000);
    site.book(ada, site.places.room_a, starts, ends)?;
    eventually("Ada's booking reaches Kisi", WAIT, || {
        site.kisi_member("Ada").filter(|member| !member.memberships.is_empty())
    })
    .await?;
    let before_shutdown = receiver.spans();
    assert!(
        before_shutdown.iter().all(|span| span.service != "doorsync-writer"),
        "the writer exports only when it stops"
    );
    site.stop().await?;

    let chain =
        match eventually("the booking's spans reach the receiver", WAIT, || traced_grant(&receiver.spans())).await {
            Ok(chain) => chain,
            Err(error) => {
                let names: Vec<(String, String, String)> =
                    receiver.spans().into_iter().map(|span| (span.service, span.name, span.parent_span_id)).collect();
                panic!("{error}; received: {names:#?}");
            }
        };
    let steps: Vec<(&str, &str)> = chain.iter().rev().map(|span| (span.service.as_str(), span.name.as_str())).collect();
    println!("the booking's trace, root first: {steps:?}");

    let trace_id = &chain[0].trace_id;
    assert!(chain.iter().all(|span| &span.trace_id == trace_id), "one trace id: {chain:#?}");
    // Root first: the webhook in the ingestor, the emission in the engine, the step in the writer
    // and, last, its Kisi call; each a descendant of the one before.
    let position = |service: &str, name: &str| {
        steps
            .iter()
            .position(|step| *step == (service, name))
            .unwrap_or_else(|| panic!("{service} {name} in {steps:?}"))
    };
    let webhook = position("doorsync-ingest", "nexudus.webhook");
    let emit = position("doorsync-engine", "engine.emit");
    let step = position("doorsync-writer", "writer.step");
    let call = position("doorsync-writer", "kisi.request");
    assert_eq!(webhook, 0, "{steps:?}");
    assert!(webhook < emit && emit < step && step < call, "{steps:?}");
    assert_eq!(call, steps.len() - 1, "{steps:?}");
    let status = chain[0].attribute("http.response.status_code").unwrap_or_default();
    assert!(status.starts_with('2'), "the Kisi call answered {status}: {:?}", chain[0]);

    // Ids only: no email, name or secret in any span.
    for span in receiver.spans() {
        for (key, value) in &span.attributes {
            let lower = value.to_lowercase();
            assert!(!lower.contains('@') && !lower.contains("ada"), "{} carries {key}={value}", span.name);
            assert!(!lower.contains("doorsync-e2e"), "{} carries a secret in {key}", span.name);
        }
    }
    Ok(())
}
