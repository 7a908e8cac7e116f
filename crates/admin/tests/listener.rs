#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use doorsync_admin::{AdminHandle, AdminOptions, Metrics, Readiness};
use prometheus_client::metrics::counter::Counter;
use reqwest::StatusCode;
use secrecy::SecretString;

async fn start(token: Option<&str>, metrics: Metrics, readiness: Readiness) -> AdminHandle {
    let options = AdminOptions {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        token: token.map(|token| SecretString::from(token.to_owned())),
    };
    let status = Router::new().route("/status", get(|| async { "members: 3" }));
    doorsync_admin::start(options, metrics, readiness, status).await.unwrap()
}

fn url(admin: &AdminHandle, path: &str) -> String {
    format!("http://{}{path}", admin.local_addr())
}

#[tokio::test]
async fn probes_metrics_and_added_routes_are_served() {
    let metrics = Metrics::default();
    let appended: Counter = Counter::default();
    metrics.register("events_appended", "Events appended to the log", appended.clone());
    appended.inc_by(7);
    let readiness = Readiness::default();
    readiness.waiting_for("log", "connecting to nats://127.0.0.1:4222");
    let admin = start(None, metrics, readiness.clone()).await;
    let client = reqwest::Client::new();

    let health = client.get(url(&admin, "/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    let not_ready = client.get(url(&admin, "/readyz")).send().await.unwrap();
    assert_eq!(not_ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(not_ready.text().await.unwrap(), "waiting for log: connecting to nats://127.0.0.1:4222\n");
    readiness.holds("log");
    assert_eq!(client.get(url(&admin, "/readyz")).send().await.unwrap().status(), StatusCode::OK);

    let scraped = client.get(url(&admin, "/metrics")).send().await.unwrap();
    assert!(scraped.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = scraped.text().await.unwrap();
    assert!(text.contains("# HELP doorsync_events_appended Events appended to the log."), "{text}");
    assert!(text.contains("doorsync_events_appended_total 7"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");

    assert_eq!(client.get(url(&admin, "/status")).send().await.unwrap().text().await.unwrap(), "members: 3");
    admin.shutdown().await;
}

#[tokio::test]
async fn with_a_token_only_the_probes_are_open() {
    let admin = start(Some("s3cret-token"), Metrics::default(), Readiness::default()).await;
    let client = reqwest::Client::new();

    for path in ["/metrics", "/status"] {
        let anonymous = client.get(url(&admin, path)).send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(anonymous.headers().contains_key("www-authenticate"));
        let body = anonymous.text().await.unwrap();
        assert!(!body.contains("s3cret-token"), "the refusal never shows the token: {body}");

        let wrong = client.get(url(&admin, path)).bearer_auth("s3cret-tokeN").send().await.unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{path}");
        let prefix = client.get(url(&admin, path)).bearer_auth("s3cret").send().await.unwrap();
        assert_eq!(prefix.status(), StatusCode::UNAUTHORIZED, "a prefix of the token is not the token: {path}");
        let empty = client.get(url(&admin, path)).header("authorization", "Bearer ").send().await.unwrap();
        assert_eq!(empty.status(), StatusCode::UNAUTHORIZED, "{path}");

        let right = client.get(url(&admin, path)).bearer_auth("s3cret-token").send().await.unwrap();
        assert_eq!(right.status(), StatusCode::OK, "{path}");
    }
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(client.get(url(&admin, probe)).send().await.unwrap().status(), StatusCode::OK, "{probe}");
    }
    admin.shutdown().await;
}

#[tokio::test]
async fn a_taken_address_is_an_error_that_names_it() {
    let first = start(None, Metrics::default(), Readiness::default()).await;
    let options = AdminOptions { listen: first.local_addr(), token: None };
    let error = doorsync_admin::start(options, Metrics::default(), Readiness::default(), Router::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains(&first.local_addr().to_string()) && error.contains("admin.listen"), "{error}");
    first.shutdown().await;
}
