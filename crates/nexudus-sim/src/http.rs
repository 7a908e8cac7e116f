//! The simulator's HTTP side: the token endpoint, listings, batch reads and reads by id, with
//! Nexudus's authentication, throttling (409 + `Retry-After`), paging envelope and 500 for a
//! missing id.

use std::sync::{Arc, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use doorsync_nexudus::NexudusDateTime;
use doorsync_proto::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Value, json};

use crate::store::{SimEntity, State as Store};
use crate::{MissingRecord, Shared, UpdatedOnFilter};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/token", post(token))
        .route("/api/{area}/{collection}", get(list))
        .route("/api/{area}/{collection}/{id}", get(read))
        .with_state(shared)
}

/// Why a request is answered with an error instead of data.
enum Refusal {
    /// Over the limits: 409 with `Retry-After` in whole seconds.
    Throttled {
        retry_after_seconds: i64,
    },
    Unauthorized,
    NotFound,
    /// What ASP.NET answers when the handler throws, as Nexudus's does for a deleted id.
    ServerError,
}

impl Refusal {
    fn missing(answer: MissingRecord) -> Self {
        match answer {
            MissingRecord::ServerError => Self::ServerError,
            MissingRecord::NotFound => Self::NotFound,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Throttled { retry_after_seconds } => {
                let body = json!({"Message": "You must wait before accessing this url again."});
                (StatusCode::CONFLICT, [(RETRY_AFTER, retry_after_seconds.to_string())], axum::Json(body))
                    .into_response()
            }
            Self::Unauthorized => {
                let body =
                    json!({"error": "invalid_grant", "error_description": "The user name or password is incorrect."});
                (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
            }
            Self::NotFound => StatusCode::NOT_FOUND.into_response(),
            Self::ServerError => {
                let body = json!({
                    "Message": "An error has occurred.",
                    "ExceptionMessage": "Object reference not set to an instance of an object.",
                    "ExceptionType": "System.NullReferenceException",
                    "StackTrace": null,
                });
                (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
            }
        }
    }
}

/// Counts the request, or refuses it when it goes over the limits.
fn throttle(store: &mut Store, now: Timestamp) -> Result<(), Refusal> {
    store.stats.requests += 1;
    let wait_ms = if store.forced_throttles > 0 {
        store.forced_throttles -= 1;
        i64::try_from(store.forced_retry_after_seconds.saturating_mul(1_000)).unwrap_or(i64::MAX)
    } else {
        let Some(windows) = store.windows.as_mut() else { return Ok(()) };
        let earliest = windows.earliest_allowed(now);
        if earliest <= now {
            windows.record(now);
            return Ok(());
        }
        earliest.as_unix_millis() - now.as_unix_millis()
    };
    store.stats.throttled += 1;
    // Whole seconds, rounded up, as `Retry-After` takes them.
    Err(Refusal::Throttled { retry_after_seconds: wait_ms.max(1).saturating_add(999) / 1_000 })
}

fn authorized(shared: &Shared, store: &Store, headers: &HeaderMap, now: Timestamp) -> bool {
    let Some(value) = headers.get(AUTHORIZATION).and_then(|value| value.to_str().ok()) else { return false };
    if let Some(token) = value.strip_prefix("Bearer ") {
        return store.access_tokens.get(token.trim()).is_some_and(|&expires| now < expires);
    }
    let Some(encoded) = value.strip_prefix("Basic ") else { return false };
    let Ok(decoded) = BASE64.decode(encoded.trim()) else { return false };
    let Ok(decoded) = String::from_utf8(decoded) else { return false };
    decoded.split_once(':').is_some_and(|(user, password)| shared.accepts(user, password))
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = shared.clock.now();
    let mut store = shared.lock();
    if let Err(refusal) = throttle(&mut store, now) {
        return refusal.into_response();
    }
    let form_encoded = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    if !form_encoded {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "unsupported_grant_type"}))).into_response();
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
    let granted = match field("grant_type") {
        Some("password") => {
            shared.accepts(field("username").unwrap_or_default(), field("password").unwrap_or_default())
        }
        Some("refresh_token") => field("refresh_token").is_some_and(|refresh| store.refresh_tokens.remove(refresh)),
        _ => return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "unsupported_grant_type"}))).into_response(),
    };
    if !granted {
        return Refusal::Unauthorized.into_response();
    }
    store.next_token += 1;
    store.stats.token_grants += 1;
    let access = format!("sim-access-{}", store.next_token);
    let refresh = format!("sim-refresh-{}", store.next_token);
    store.access_tokens.insert(access.clone(), now + shared.token_lifetime);
    store.refresh_tokens.insert(refresh.clone());
    axum::Json(json!({
        "access_token": access,
        "token_type": "bearer",
        "expires_in": shared.token_lifetime.as_secs(),
        "refresh_token": refresh,
    }))
    .into_response()
}

/// Throttling, then authentication, then the collection named by the path: the store, locked,
/// and the kind of record asked for.
fn admit<'a>(
    shared: &'a Shared,
    headers: &HeaderMap,
    area: &str,
    collection: &str,
) -> Result<(MutexGuard<'a, Store>, SimEntity), Refusal> {
    let now = shared.clock.now();
    let mut store = shared.lock();
    throttle(&mut store, now)?;
    if !authorized(shared, &store, headers, now) {
        return Err(Refusal::Unauthorized);
    }
    let kind = SimEntity::from_path(&format!("{area}/{collection}")).ok_or(Refusal::NotFound)?;
    Ok((store, kind))
}

async fn read(
    State(shared): State<Arc<Shared>>,
    Path((area, collection, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (store, kind) = match admit(&shared, &headers, &area, &collection) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    let Ok(id) = id.parse::<u64>() else { return Refusal::missing(shared.missing_record).into_response() };
    if store.failing_reads.contains(&(kind, id)) {
        return Refusal::ServerError.into_response();
    }
    match store.record(kind, id) {
        Some(record) => axum::Json(store.as_served(kind, record, shared.utc_fields)).into_response(),
        None => Refusal::missing(shared.missing_record).into_response(),
    }
}

async fn list(
    State(shared): State<Arc<Shared>>,
    Path((area, collection)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (mut store, kind) = match admit(&shared, &headers, &area, &collection) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    store.parameters_seen.extend(params.iter().map(|(name, _)| name.clone()));
    if let Some((_, ids)) = params.iter().find(|(name, _)| name == "id") {
        let ids = batch_ids(ids);
        let records: Vec<Value> = store
            .records(kind)
            .filter(|record| record.get("Id").and_then(Value::as_u64).is_some_and(|id| ids.contains(&id)))
            .map(|record| store.as_served(kind, record, shared.utc_fields))
            .collect();
        return axum::Json(records).into_response();
    }
    let number = |name: &str, default: u64| {
        params.iter().find(|(key, _)| key == name).and_then(|(_, value)| value.parse::<u64>().ok()).unwrap_or(default)
    };
    let page = number("page", 1).max(1);
    let size = number("size", 25).clamp(1, u64::from(shared.max_page_size));
    let known: Vec<(String, String)> =
        params.iter().filter(|(name, _)| is_known(&store, kind, name)).cloned().collect();
    let matching: Vec<&Value> = store
        .records(kind)
        .filter(|record| {
            let zone = match shared.updated_on_filter {
                UpdatedOnFilter::Utc => None,
                UpdatedOnFilter::Local => store.zone_of_record(kind, record),
            };
            matches(kind, record, &known, zone.as_ref())
        })
        .collect();
    let total = u64::try_from(matching.len()).unwrap_or(u64::MAX);
    let total_pages = total.div_ceil(size);
    let skip = usize::try_from((page - 1).saturating_mul(size)).unwrap_or(usize::MAX);
    let take = usize::try_from(size).unwrap_or(usize::MAX);
    let records: Vec<Value> = matching
        .into_iter()
        .skip(skip)
        .take(take)
        .map(|record| listed(&store.as_served(kind, record, shared.utc_fields)))
        .collect();
    let first = (page - 1) * size + 1;
    axum::Json(json!({
        "Records": records,
        "CurrentPage": page,
        "CurrentPageSize": size,
        "CurrentOrderField": "Id",
        "CurrentSortDirection": 1,
        "FirstItem": first.min(total),
        "LastItem": (page * size).min(total),
        "TotalItems": total,
        "TotalPages": total_pages,
        "HasNextPage": page < total_pages,
        "HasPreviousPage": page > 1,
    }))
    .into_response()
}

/// The ids of a batch read, `[1,2,3]` (brackets optional); what is not a number is skipped.
fn batch_ids(text: &str) -> Vec<u64> {
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    inner.split(',').filter_map(|id| id.trim().parse().ok()).collect()
}

/// A record as a listing shows it: without its collections, which Nexudus only sends by id.
fn listed(record: &Value) -> Value {
    match record {
        Value::Object(fields) => Value::Object(
            fields.iter().filter(|(_, value)| !value.is_array()).map(|(k, v)| (k.clone(), v.clone())).collect(),
        ),
        other => other.clone(),
    }
}

/// Whether a parameter is one Nexudus would act on: not a filter on a field no record of the
/// kind has (Nexudus ignores filters it does not know, so a misspelt one reads everything).
fn is_known(store: &Store, kind: SimEntity, name: &str) -> bool {
    let unbounded = name.strip_prefix("from_").or_else(|| name.strip_prefix("to_")).unwrap_or(name);
    let Some(field) = unbounded.strip_prefix(kind.name()).and_then(|rest| rest.strip_prefix('_')) else {
        return true;
    };
    store.records(kind).any(|record| record.get(field).is_some())
}

/// Whether `record` passes every filter in `params`: `{Entity}_{Field}=value` (equality) and
/// `from_/to_{Entity}_{Field}` (date-times, inclusive; the bound read as a wall clock in
/// `filter_zone` when given, else as UTC). Other parameters are ignored, as Nexudus ignores
/// parameters it does not know.
fn matches(kind: SimEntity, record: &Value, params: &[(String, String)], filter_zone: Option<&TimeZone>) -> bool {
    let name = kind.name();
    params.iter().all(|(key, wanted)| {
        let range = |prefix: &str| key.strip_prefix(prefix).and_then(|rest| rest.strip_prefix(name)?.strip_prefix('_'));
        if let Some(field) = range("from_") {
            return compare_times(record.get(field), wanted, filter_zone).is_some_and(|ordering| ordering.is_ge());
        }
        if let Some(field) = range("to_") {
            return compare_times(record.get(field), wanted, filter_zone).is_some_and(|ordering| ordering.is_le());
        }
        let Some(field) = key.strip_prefix(name).and_then(|rest| rest.strip_prefix('_')) else { return true };
        match record.get(field) {
            Some(Value::String(text)) => text.eq_ignore_ascii_case(wanted),
            Some(Value::Null) | None => false,
            Some(other) => other.to_string().eq_ignore_ascii_case(wanted),
        }
    })
}

fn compare_times(field: Option<&Value>, wanted: &str, filter_zone: Option<&TimeZone>) -> Option<std::cmp::Ordering> {
    let written = NexudusDateTime::parse(field?.as_str()?).ok()?.to_utc()?;
    let bound = NexudusDateTime::parse(wanted).ok()?;
    let bound = match filter_zone {
        Some(zone) => bound.in_zone(zone)?,
        None => bound.to_utc()?,
    };
    Some(written.cmp(&bound))
}
