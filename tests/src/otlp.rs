//! An OTLP trace receiver in the test process: what a collector would receive from doorsync's
//! processes, over gRPC and over HTTP (protobuf or JSON), on one loopback port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::HarnessError;

/// One span as the receiver got it, with ids in lowercase hexadecimal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// The `service.name` of the process that sent it.
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// `(trace id, span id)` of each span it links to.
    pub links: Vec<(String, String)>,
    /// Every attribute, its value rendered as text.
    pub attributes: Vec<(String, String)>,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.iter().find(|(name, _)| name == key).map(|(_, value)| value.as_str())
    }
}

#[derive(Debug, Clone, Default)]
struct Received(Arc<Mutex<Vec<ReceivedSpan>>>);

impl Received {
    fn add(&self, request: ExportTraceServiceRequest) {
        let mut spans = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|attribute| attribute.key == "service.name")
                .and_then(|attribute| attribute.value.as_ref())
                .map(|value| text(value.value.as_ref()))
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|scope| scope.spans) {
                spans.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent_span_id: hex::encode(&span.parent_span_id),
                    links: span
                        .links
                        .iter()
                        .map(|link| (hex::encode(&link.trace_id), hex::encode(&link.span_id)))
                        .collect(),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|attribute| {
                            (attribute.key.clone(), text(attribute.value.as_ref().and_then(|v| v.value.as_ref())))
                        })
                        .collect(),
                });
            }
        }
    }
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::StringValue(text)) => text.clone(),
        Some(Value::BoolValue(flag)) => flag.to_string(),
        Some(Value::IntValue(number)) => number.to_string(),
        Some(Value::DoubleValue(number)) => number.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.add(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// Receives OTLP traces at `http://<address>`: gRPC (HTTP/2 without TLS) and `POST /v1/traces`
/// with a protobuf or JSON body.
#[derive(Debug)]
pub struct OtlpReceiver {
    address: SocketAddr,
    received: Received,
    server: JoinHandle<()>,
}

impl OtlpReceiver {
    pub async fn start() -> Result<Self, HarnessError> {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(HarnessError::io("binding the OTLP receiver"))?;
        let address = listener.local_addr().map_err(HarnessError::io("reading the OTLP receiver's address"))?;
        let received = Received::default();
        let app = Router::new()
            .route("/v1/traces", post(http_export))
            .route_service(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                TraceServiceServer::new(received.clone()),
            )
            .with_state(received.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("the OTLP receiver stopped: {error}");
            }
        });
        Ok(Self { address, received, server })
    }

    /// What to set `OTEL_EXPORTER_OTLP_ENDPOINT` to.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn http_export(State(received): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|content_type| content_type.starts_with("application/json"));
    let request = if json {
        serde_json::from_slice::<ExportTraceServiceRequest>(&body).map_err(|error| error.to_string())
    } else {
        ExportTraceServiceRequest::decode(body).map_err(|error| error.to_string())
    };
    match request {
        Ok(request) => {
            received.add(request);
            StatusCode::OK
        }
        Err(error) => {
            eprintln!("the OTLP receiver could not read an export: {error}");
            StatusCode::BAD_REQUEST
        }
    }
}
