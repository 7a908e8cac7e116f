#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::SocketAddr;

use axum::routing::{get, post};
use axum::{Extension, Router};
use doorsync_admin::{AdminHandle, AdminOptions, CSRF_FIELD, CsrfToken, Metrics, Readiness};
use prometheus_client::metrics::counter::Counter;
use reqwest::StatusCode;
use secrecy::SecretString;

async fn start(token: Option<&str>, metrics: Metrics, readiness: Readiness) -> AdminHandle {
    let options = AdminOptions::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        token.map(|token| SecretString::from(token.to_owned())),
    );
    doorsync_admin::start(options, metrics, readiness, routes()).await.unwrap()
}

/// A status page with a form, and the action it posts to.
fn routes() -> Router {
    async fn page(csrf: Option<Extension<CsrfToken>>) -> String {
        let csrf = csrf.map(|Extension(CsrfToken(csrf))| csrf).unwrap_or_default();
        format!("members: 3 <form method=post action=/act><input name={CSRF_FIELD} value={csrf}></form>")
    }
    Router::new().route("/status", get(page)).route("/act", post(|body: String| async move { format!("done: {body}") }))
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

    let page = client.get(url(&admin, "/status")).send().await.unwrap().text().await.unwrap();
    assert!(page.starts_with("members: 3"), "{page}");
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
        let forged = client.get(url(&admin, path)).header("cookie", "doorsync_session=99999999999.00").send().await;
        assert_eq!(forged.unwrap().status(), StatusCode::UNAUTHORIZED, "a made-up session: {path}");
    }
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(client.get(url(&admin, probe)).send().await.unwrap().status(), StatusCode::OK, "{probe}");
    }
    admin.shutdown().await;
}

#[tokio::test]
async fn a_taken_address_is_an_error_that_names_it() {
    let first = start(None, Metrics::default(), Readiness::default()).await;
    let options = AdminOptions::new(first.local_addr(), None);
    let error = doorsync_admin::start(options, Metrics::default(), Readiness::default(), Router::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains(&first.local_addr().to_string()) && error.contains("admin.listen"), "{error}");
    first.shutdown().await;
}

#[tokio::test]
async fn a_bind_beyond_loopback_without_a_token_is_refused_unless_allowed() {
    let everywhere = SocketAddr::from(([0, 0, 0, 0], 0));
    let refused = doorsync_admin::start(
        AdminOptions::new(everywhere, None),
        Metrics::default(),
        Readiness::default(),
        Router::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(refused.contains("admin.token_file") && refused.contains("allow_without_token"), "{refused}");
    let with_token = AdminOptions::new(everywhere, Some(SecretString::from("t0ken")));
    doorsync_admin::start(with_token, Metrics::default(), Readiness::default(), Router::new())
        .await
        .unwrap()
        .shutdown()
        .await;
    let allowed = AdminOptions { allow_without_token: true, ..AdminOptions::new(everywhere, None) };
    doorsync_admin::start(allowed, Metrics::default(), Readiness::default(), Router::new())
        .await
        .unwrap()
        .shutdown()
        .await;
}

#[tokio::test]
async fn a_latched_failure_fails_healthz_and_readyz_says_why() {
    let readiness = Readiness::default();
    let admin = start(Some("s3cret-token"), Metrics::default(), readiness.clone()).await;
    let client = reqwest::Client::new();
    assert_eq!(client.get(url(&admin, "/healthz")).send().await.unwrap().status(), StatusCode::OK);

    readiness.failed_until_restart("log", "embedded log /data/doorsync.redb: a write failed: No space left on device");
    readiness.holds("log");
    let health = client.get(url(&admin, "/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE, "a restart is what ends it");
    let ready = client.get(url(&admin, "/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let reason = ready.text().await.unwrap();
    assert!(reason.contains("failed until restarted: log:") && reason.contains("No space left"), "{reason}");
    admin.shutdown().await;
}

#[tokio::test]
async fn changes_are_posts_with_the_token_or_a_session_and_its_csrf_token_from_this_listener_only() {
    let admin = start(Some("s3cret-token"), Metrics::default(), Readiness::default()).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let act = url(&admin, "/act");

    assert_eq!(
        client.get(&act).bearer_auth("s3cret-token").send().await.unwrap().status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        client.put(&act).bearer_auth("s3cret-token").send().await.unwrap().status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(client.post(&act).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let with_token = client.post(&act).bearer_auth("s3cret-token").body("x").send().await.unwrap();
    assert_eq!(with_token.status(), StatusCode::OK);

    // A page elsewhere: its own name pointed at this address (DNS rebinding), or its origin.
    let rebound = client.post(&act).bearer_auth("s3cret-token").header("host", "evil.example").send().await.unwrap();
    assert_eq!(rebound.status(), StatusCode::FORBIDDEN);
    let elsewhere = client.post(&act).bearer_auth("s3cret-token").header("origin", "https://evil.example").send();
    assert_eq!(elsewhere.await.unwrap().status(), StatusCode::FORBIDDEN);
    let cross_site = client.post(&act).bearer_auth("s3cret-token").header("sec-fetch-site", "cross-site").send();
    assert_eq!(cross_site.await.unwrap().status(), StatusCode::FORBIDDEN);

    // The browser's way: the login form, then the session cookie and the page's CSRF token.
    let form = client.get(url(&admin, "/status")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(form.status(), StatusCode::UNAUTHORIZED);
    assert!(form.text().await.unwrap().contains("name=\"token\""), "the login form is offered");
    let wrong = client.post(url(&admin, "/login")).form(&[("token", "guess")]).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(!wrong.headers().contains_key("set-cookie"));
    let login = client.post(url(&admin, "/login")).form(&[("token", "s3cret-token")]).send().await.unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let set_cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(!set_cookie.contains("s3cret-token"), "the cookie is not the token: {set_cookie}");
    let session = set_cookie.split(';').next().unwrap().to_owned();

    let page = client.get(url(&admin, "/status")).header("cookie", &session).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    let csrf = page.split("value=").nth(1).unwrap().split('>').next().unwrap().to_owned();
    assert!(csrf.len() >= 32, "{page}");

    let without_csrf = client.post(&act).header("cookie", &session).form(&[("group", "7")]).send().await.unwrap();
    assert_eq!(without_csrf.status(), StatusCode::FORBIDDEN, "a cookie alone changes nothing");
    let wrong_csrf = client.post(&act).header("cookie", &session).form(&[(CSRF_FIELD, "00")]).send().await.unwrap();
    assert_eq!(wrong_csrf.status(), StatusCode::FORBIDDEN);
    let posted = client.post(&act).header("cookie", &session).form(&[(CSRF_FIELD, csrf.as_str()), ("group", "7")]);
    let posted = posted.send().await.unwrap();
    assert_eq!(posted.status(), StatusCode::OK);
    assert!(posted.text().await.unwrap().contains("group=7"), "the form reaches the action intact");
    let rebound = client.post(&act).header("cookie", &session).header("host", "evil.example:80");
    let rebound = rebound.form(&[(CSRF_FIELD, csrf.as_str())]).send().await.unwrap();
    assert_eq!(rebound.status(), StatusCode::FORBIDDEN);
    admin.shutdown().await;
}

#[tokio::test]
async fn without_a_token_a_page_elsewhere_still_cannot_change_anything() {
    let admin = start(None, Metrics::default(), Readiness::default()).await;
    let client = reqwest::Client::new();
    let act = url(&admin, "/act");
    assert_eq!(client.post(&act).send().await.unwrap().status(), StatusCode::OK, "loopback, no token: open");
    let page_elsewhere = client.post(&act).header("origin", "http://127.0.0.1:8000").send().await.unwrap();
    assert_eq!(page_elsewhere.status(), StatusCode::FORBIDDEN, "another origin, even on this machine");
    let rebound = client.post(&act).header("host", "evil.example:9090").send().await.unwrap();
    assert_eq!(rebound.status(), StatusCode::FORBIDDEN);
    assert_eq!(client.get(&act).send().await.unwrap().status(), StatusCode::METHOD_NOT_ALLOWED);
    admin.shutdown().await;
}
