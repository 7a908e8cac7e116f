//! Who may do what on the admin listener.
//!
//! * Reads (GET, HEAD) need the token when one is configured: as `Authorization: Bearer`, or
//!   as the session cookie the login form sets. The probes are always open.
//! * Requests that change something are POSTs (other methods are refused) and also need, with a
//!   token configured, the bearer token or the session cookie plus the page's CSRF token.
//! * Every POST must name this listener in `Host` (an IP address, `localhost`, or a name the
//!   process was told it is reached by) and come from no other origin: a page elsewhere, even
//!   one whose name an attacker points at 127.0.0.1, cannot make the operator's browser change
//!   anything here.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::{AdminState, HEALTH_PATH, LOGIN_PATH, READY_PATH};

/// The session cookie the login form sets.
pub(crate) const SESSION_COOKIE: &str = "doorsync_session";
/// The form field (or header) that carries the CSRF token of a session.
pub const CSRF_FIELD: &str = "csrf";
const CSRF_HEADER: &str = "x-csrf-token";
/// How long a login lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3_600);
/// The largest form body read to find its CSRF token; the actions' forms are a few bytes.
const FORM_LIMIT: usize = 16 * 1_024;

/// The CSRF token of the session a page is shown in, for the page's forms to send back in
/// their [`CSRF_FIELD`] field. Present in a request's extensions when it came with a session.
#[derive(Debug, Clone)]
pub struct CsrfToken(pub String);

/// How a request proved who sent it.
enum Credential {
    /// No token is configured: the listener is on loopback, or its bind was allowed without one.
    NoneNeeded,
    Bearer,
    Session {
        cookie: String,
    },
    Missing,
}

pub(crate) async fn guard(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path == HEALTH_PATH || path == READY_PATH {
        return next.run(request).await;
    }
    let method = request.method().clone();
    if method != Method::GET && method != Method::HEAD && method != Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD, POST")],
            "the admin listener takes GET and POST only\n",
        )
            .into_response();
    }
    let is_login = path == LOGIN_PATH;
    if method == Method::POST {
        if let Err(refusal) = same_origin(request.headers(), &state.allowed_hosts) {
            tracing::warn!(%refusal, "admin: a request that changes something was refused");
            return (StatusCode::FORBIDDEN, format!("{refusal}\n")).into_response();
        }
        if is_login {
            return next.run(request).await;
        }
    }
    let credential = credential(&state, request.headers());
    let mut request = request;
    match (credential, method == Method::POST) {
        (Credential::NoneNeeded | Credential::Bearer, _) => next.run(request).await,
        (Credential::Session { cookie }, false) => {
            if let Some(csrf) = csrf_token(&state, &cookie) {
                request.extensions_mut().insert(CsrfToken(csrf));
            }
            next.run(request).await
        }
        (Credential::Session { cookie }, true) => match with_csrf_checked(&state, &cookie, request).await {
            Ok(request) => next.run(request).await,
            Err(refusal) => refusal,
        },
        (Credential::Missing, _) if is_login => next.run(request).await,
        (Credential::Missing, _) => unauthorized(request.headers()),
    }
}

fn credential(state: &AdminState, headers: &HeaderMap) -> Credential {
    let Some(token) = state.token.as_ref() else { return Credential::NoneNeeded };
    let token = token.expose_secret().as_bytes();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !bearer.is_empty() && bool::from(bearer.as_bytes().ct_eq(token)) {
        return Credential::Bearer;
    }
    match cookie(headers, SESSION_COOKIE) {
        Some(cookie) if session_is_valid(state, cookie, now()) => Credential::Session { cookie: cookie.to_owned() },
        _ => Credential::Missing,
    }
}

/// Reads the CSRF token from the `x-csrf-token` header or the form body, and gives the request
/// back with its body intact when it matches the session's.
async fn with_csrf_checked(state: &AdminState, cookie: &str, request: Request) -> Result<Request, Response> {
    let refused = || {
        (StatusCode::FORBIDDEN, "the CSRF token is missing or wrong: reload the page and try again\n").into_response()
    };
    let Some(expected) = csrf_token(state, cookie) else { return Err(refused()) };
    if let Some(sent) = request.headers().get(CSRF_HEADER).and_then(|value| value.to_str().ok()) {
        return if bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) { Ok(request) } else { Err(refused()) };
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, FORM_LIMIT).await.map_err(|_| {
        (StatusCode::PAYLOAD_TOO_LARGE, "the form is larger than the admin listener reads\n").into_response()
    })?;
    let sent = url::form_urlencoded::parse(&bytes).find(|(name, _)| name == CSRF_FIELD).map(|(_, value)| value);
    match sent {
        Some(sent) if bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(refused()),
    }
}

/// `Ok` when `Host` names this listener and the request comes from no other site.
fn same_origin(headers: &HeaderMap, allowed_hosts: &[String]) -> Result<(), String> {
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or_default();
    let name = host_name(host);
    let known = !name.is_empty()
        && (name.parse::<IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || allowed_hosts.iter().any(|allowed| allowed.eq_ignore_ascii_case(name)));
    if !known {
        return Err(format!(
            "Host {host:?} is not a name of this admin listener: use its IP address, localhost, or a name in admin.peers"
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|value| value.to_str().ok())
        && origin != "null"
    {
        let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
        if !origin_host.eq_ignore_ascii_case(host) {
            return Err(format!("a page at {origin} may not change anything on this admin listener ({host})"));
        }
    }
    if headers.get("sec-fetch-site").and_then(|value| value.to_str().ok()) == Some("cross-site") {
        return Err("a page on another site may not change anything on this admin listener".to_owned());
    }
    Ok(())
}

/// The name in a `Host` value, without its port or an IPv6 address's brackets.
fn host_name(host: &str) -> &str {
    if let Some(bracketed) = host.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or_default();
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

/// `<expiry>.<mac>`: stateless, so nothing grows with logins and a restart keeps sessions;
/// changing the token ends them all.
fn session_value(state: &AdminState, expires: u64) -> Option<String> {
    mac(state, &format!("session {expires}")).map(|mac| format!("{expires}.{mac}"))
}

fn session_is_valid(state: &AdminState, cookie: &str, now: u64) -> bool {
    let Some((expires, _)) = cookie.split_once('.') else { return false };
    let Ok(expires_at) = expires.parse::<u64>() else { return false };
    expires_at > now
        && session_value(state, expires_at)
            .is_some_and(|expected| bool::from(expected.as_bytes().ct_eq(cookie.as_bytes())))
}

fn csrf_token(state: &AdminState, cookie: &str) -> Option<String> {
    mac(state, &format!("csrf {cookie}"))
}

fn mac(state: &AdminState, message: &str) -> Option<String> {
    let token = state.token.as_ref()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(token.expose_secret().as_bytes()).ok()?;
    mac.update(b"doorsync admin ");
    mac.update(message.as_bytes());
    Some(hex::encode(mac.finalize().into_bytes()))
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|value| value.to_str().ok()).is_some_and(|accept| accept.contains("text/html"))
}

fn unauthorized(headers: &HeaderMap) -> Response {
    let challenge = [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"doorsync admin\""))];
    if wants_html(headers) {
        return (StatusCode::UNAUTHORIZED, challenge, Html(login_page(None))).into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        challenge,
        "this admin listener asks for its bearer token (admin.token_file or DOORSYNC_ADMIN_TOKEN)\n",
    )
        .into_response()
}

pub(crate) async fn login_form() -> Html<String> {
    Html(login_page(None))
}

/// Checks the token typed into the login form and, when right, sets the session cookie:
/// HttpOnly (no script reads it) and SameSite=Strict (no other site's page sends it).
pub(crate) async fn login(State(state): State<AdminState>, body: axum::body::Bytes) -> Response {
    let Some(token) = state.token.as_ref() else { return Redirect::to("/").into_response() };
    let typed = url::form_urlencoded::parse(&body).find(|(name, _)| name == "token").map(|(_, value)| value);
    let right = typed
        .is_some_and(|typed| !typed.is_empty() && bool::from(typed.as_bytes().ct_eq(token.expose_secret().as_bytes())));
    if !right {
        tracing::warn!("admin: a login with a wrong token was refused");
        return (StatusCode::UNAUTHORIZED, Html(login_page(Some("That is not the admin token.")))).into_response();
    }
    let Some(session) = session_value(&state, now() + SESSION_LIFETIME.as_secs()) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "the session could not be made\n").into_response();
    };
    let cookie = format!(
        "{SESSION_COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    );
    match HeaderValue::from_str(&cookie) {
        Ok(cookie) => {
            (StatusCode::SEE_OTHER, [(header::SET_COOKIE, cookie), (header::LOCATION, HeaderValue::from_static("/"))])
                .into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the session could not be made\n").into_response(),
    }
}

fn login_page(problem: Option<&str>) -> String {
    let problem = problem.map(|problem| format!("<p class=\"alert\">{problem}</p>")).unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>doorsync · log in</title>\
         <style>body{{font:15px system-ui,sans-serif;margin:3em auto;max-width:28em}}.alert{{color:#b00}}\
         input{{font:inherit;padding:.3em;width:100%;margin:.5em 0}}</style></head><body>\
         <h1>doorsync admin</h1>{problem}\
         <form method=\"post\" action=\"{LOGIN_PATH}\"><label>Admin token \
         <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required autofocus></label>\
         <button type=\"submit\">Log in</button></form>\
         <p>The token is in admin.token_file or DOORSYNC_ADMIN_TOKEN.</p></body></html>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_known_by_address_localhost_or_an_allowed_name() {
        let allowed = ["doorsync-writer".to_owned()];
        let with = |host: &str, origin: Option<&str>| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_str(host).unwrap_or(HeaderValue::from_static("")));
            if let Some(origin) = origin {
                headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap_or(HeaderValue::from_static("")));
            }
            same_origin(&headers, &allowed)
        };
        for host in ["127.0.0.1:9090", "[::1]:9090", "localhost:9090", "10.0.0.7", "doorsync-writer:9090"] {
            assert!(with(host, None).is_ok(), "{host}");
        }
        for host in ["evil.example:9090", "127.0.0.1.evil.example", ""] {
            assert!(with(host, None).is_err(), "{host}");
        }
        assert!(with("127.0.0.1:9090", Some("http://127.0.0.1:9090")).is_ok());
        assert!(with("127.0.0.1:9090", Some("http://127.0.0.1:8000")).is_err(), "another origin on the same machine");
        assert!(with("127.0.0.1:9090", Some("https://evil.example")).is_err());
    }
}
