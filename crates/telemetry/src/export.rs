//! Where spans go: OTLP over gRPC or HTTP when the standard `OTEL_EXPORTER_OTLP_*` variables ask
//! for it, nowhere otherwise.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, SpanExporter as OtlpExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tokio::runtime::{Handle, Runtime};

use crate::TelemetryError;

const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
const TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
const TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
const TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";

/// The OTLP default when the variables name none (`OTEL_EXPORTER_OTLP_TIMEOUT`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the environment asks of the exporter; `None` from [`ExportSettings::from_env`] means
/// no export at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExportSettings {
    pub(crate) protocol: OtlpProtocol,
    pub(crate) timeout: Duration,
    /// `OTEL_SERVICE_NAME` when set; otherwise the process names itself.
    pub(crate) service_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

impl ExportSettings {
    /// Reads the standard variables through `variable` (the process environment in production).
    /// Export is on when an OTLP endpoint is set, unless `OTEL_SDK_DISABLED=true` or
    /// `OTEL_TRACES_EXPORTER=none`.
    pub(crate) fn from_env(variable: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, TelemetryError> {
        let set = |name: &str| variable(name).map(|value| value.trim().to_owned()).filter(|value| !value.is_empty());
        if set(SDK_DISABLED).is_some_and(|value| value.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match set(TRACES_EXPORTER) {
            None => {}
            Some(exporter) if exporter.eq_ignore_ascii_case("otlp") => {}
            Some(exporter) if exporter.eq_ignore_ascii_case("none") => return Ok(None),
            Some(exporter) => {
                return Err(TelemetryError::Setting {
                    variable: TRACES_EXPORTER,
                    value: exporter,
                    expected: "otlp or none",
                });
            }
        }
        if set(TRACES_ENDPOINT).is_none() && set(ENDPOINT).is_none() {
            return Ok(None);
        }
        let protocol = match [TRACES_PROTOCOL, PROTOCOL].into_iter().find_map(|name| Some((name, set(name)?))) {
            None => OtlpProtocol::HttpProtobuf,
            Some((_, value)) if value == "grpc" => OtlpProtocol::Grpc,
            Some((_, value)) if value == "http/protobuf" => OtlpProtocol::HttpProtobuf,
            Some((_, value)) if value == "http/json" => OtlpProtocol::HttpJson,
            Some((variable, value)) => {
                return Err(TelemetryError::Setting { variable, value, expected: "grpc, http/protobuf or http/json" });
            }
        };
        let timeout = match [TRACES_TIMEOUT, TIMEOUT].into_iter().find_map(|name| Some((name, set(name)?))) {
            None => DEFAULT_TIMEOUT,
            Some((variable, value)) => value
                .parse()
                .map(Duration::from_millis)
                .map_err(|_| TelemetryError::Setting { variable, value, expected: "a whole number of milliseconds" })?,
        };
        Ok(Some(Self { protocol, timeout, service_name: set(SERVICE_NAME) }))
    }
}

/// The tracer provider and the runtime its exporter runs on.
#[derive(Debug)]
pub(crate) struct Exporting {
    pub(crate) provider: SdkTracerProvider,
    runtime: Runtime,
}

impl Exporting {
    pub(crate) fn start(settings: &ExportSettings, default_service_name: &str) -> Result<Self, TelemetryError> {
        // The SDK's batch processor exports from a thread of its own, where tonic and reqwest
        // find no Tokio reactor; the exporter is built and driven on this runtime instead.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("doorsync-otlp")
            .enable_all()
            .build()
            .map_err(TelemetryError::Runtime)?;
        let exporter = {
            let _inside = runtime.enter();
            build_exporter(settings)?
        };
        let service_name = settings.service_name.clone().unwrap_or_else(|| default_service_name.to_owned());
        let resource = Resource::builder()
            .with_service_name(service_name)
            .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(OnRuntime { exporter: Arc::new(exporter), runtime: runtime.handle().clone() })
            .with_resource(resource)
            .build();
        Ok(Self { provider, runtime })
    }

    /// Exports what is still buffered, then stops.
    pub(crate) fn shutdown(self) -> Result<(), TelemetryError> {
        let flushed = self.provider.shutdown().map_err(|error| TelemetryError::Flush(error.to_string()));
        self.runtime.shutdown_timeout(Duration::from_secs(1));
        flushed
    }
}

fn build_exporter(settings: &ExportSettings) -> Result<OtlpExporter, TelemetryError> {
    let built = match settings.protocol {
        OtlpProtocol::Grpc => OtlpExporter::builder().with_tonic().with_timeout(settings.timeout).build(),
        OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => {
            let protocol =
                if settings.protocol == OtlpProtocol::HttpJson { Protocol::HttpJson } else { Protocol::HttpBinary };
            let client = reqwest::Client::builder()
                .timeout(settings.timeout)
                .build()
                .map_err(|error| TelemetryError::Exporter(error.to_string()))?;
            OtlpExporter::builder()
                .with_http()
                .with_protocol(protocol)
                .with_timeout(settings.timeout)
                .with_http_client(Reqwest(client))
                .build()
        }
    };
    built.map_err(|error| TelemetryError::Exporter(error.to_string()))
}

/// Runs each export on the telemetry runtime and waits for it from wherever the SDK calls.
#[derive(Debug)]
struct OnRuntime<E> {
    exporter: Arc<E>,
    runtime: Handle,
}

impl<E: SpanExporter + 'static> SpanExporter for OnRuntime<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let exporter = Arc::clone(&self.exporter);
        let exported = self.runtime.spawn(async move { exporter.export(batch).await });
        async move {
            exported.await.unwrap_or_else(|error| Err(OTelSdkError::InternalFailure(format!("OTLP export: {error}"))))
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.exporter.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.exporter.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // The provider sets the resource while it is built, before any export holds a clone.
        if let Some(exporter) = Arc::get_mut(&mut self.exporter) {
            exporter.set_resource(resource);
        }
    }
}

/// The OTLP HTTP exporter sending through the workspace's reqwest (rustls on ring).
#[derive(Debug)]
struct Reqwest(reqwest::Client);

#[async_trait]
impl HttpClient for Reqwest {
    async fn send_bytes(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let response =
            self.0.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body).send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        let mut answer = http::Response::builder().status(status).body(body)?;
        *answer.headers_mut() = headers;
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::collections::HashMap;

    use super::*;

    fn settings(variables: &[(&str, &str)]) -> Result<Option<ExportSettings>, TelemetryError> {
        let variables: HashMap<String, String> =
            variables.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
        ExportSettings::from_env(|name| variables.get(name).cloned())
    }

    #[test]
    fn without_an_endpoint_nothing_is_exported() {
        assert_eq!(settings(&[]).unwrap(), None);
        assert_eq!(settings(&[(PROTOCOL, "grpc"), (ENDPOINT, " ")]).unwrap(), None);
    }

    #[test]
    fn an_endpoint_turns_export_on_with_http_protobuf_by_default() {
        let on = settings(&[(ENDPOINT, "http://collector:4318")]).unwrap().unwrap();
        assert_eq!(on.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(on.timeout, DEFAULT_TIMEOUT);
        assert_eq!(on.service_name, None);
        let traces_only = settings(&[(TRACES_ENDPOINT, "http://collector:4318/v1/traces")]).unwrap();
        assert!(traces_only.is_some());
    }

    #[test]
    fn the_traces_variables_win_over_the_general_ones() {
        let on = settings(&[
            (ENDPOINT, "http://collector:4317"),
            (PROTOCOL, "http/json"),
            (TRACES_PROTOCOL, "grpc"),
            (TIMEOUT, "2000"),
            (TRACES_TIMEOUT, "500"),
            (SERVICE_NAME, "doors-eu"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(on.protocol, OtlpProtocol::Grpc);
        assert_eq!(on.timeout, Duration::from_millis(500));
        assert_eq!(on.service_name.as_deref(), Some("doors-eu"));
    }

    #[test]
    fn export_can_be_switched_off_with_an_endpoint_set() {
        assert_eq!(settings(&[(ENDPOINT, "http://c:4318"), (SDK_DISABLED, "TRUE")]).unwrap(), None);
        assert_eq!(settings(&[(ENDPOINT, "http://c:4318"), (TRACES_EXPORTER, "none")]).unwrap(), None);
        assert!(settings(&[(ENDPOINT, "http://c:4318"), (TRACES_EXPORTER, "otlp")]).unwrap().is_some());
    }

    #[test]
    fn unknown_values_are_refused_naming_the_variable() {
        let error = settings(&[(ENDPOINT, "http://c:4318"), (PROTOCOL, "thrift")]).unwrap_err().to_string();
        assert!(error.contains(PROTOCOL) && error.contains("thrift") && error.contains("http/protobuf"), "{error}");
        let error = settings(&[(ENDPOINT, "http://c:4318"), (TRACES_TIMEOUT, "5s")]).unwrap_err().to_string();
        assert!(error.contains(TRACES_TIMEOUT) && error.contains("milliseconds"), "{error}");
        let error = settings(&[(TRACES_EXPORTER, "jaeger")]).unwrap_err().to_string();
        assert!(error.contains(TRACES_EXPORTER) && error.contains("jaeger"), "{error}");
    }
}
