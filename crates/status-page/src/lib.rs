//! The operator's status page, served on the admin listener of processes that run the engine
//! (behind the admin token when one is configured).
//!
//! Server-rendered HTML with its style inline and no script:
//! * `/`: the engine's partitions, the writer (role, pause, pending writes, Kisi calls by
//!   outcome, dead letters, a held mass revocation), the ingestor (events by type, parked
//!   records and why, webhook health, last poll and sweep), and the members, 50 a page
//!   (`?page=`), with the Kisi groups each is in now and next;
//! * `/members/{id}`: the member's access drawn as a timeline, what grants it and what grants
//!   nothing, what Kisi holds, and their history;
//! * `/dead-letters`: the commands the writer parked, with their reasons, and a button to retry
//!   or drop each one still waiting (POSTs to `/dead-letters/{sequence}/retry` or `/drop`,
//!   carrying the session's CSRF token when the listener asks for a token).
//!
//! Every page takes `?refresh=<seconds>` to reload itself. Names and emails from Nexudus are
//! shown (it is an operator's tool) and escaped, and never logged.
//!
//! [`routes`] is what the binary adds to a process's admin listener; a process without the engine
//! serves no page. In a split deployment the page asks the processes `admin.peers` lists for the
//! writer's and the ingestor's status ([`doorsync_node::Status`]) and says which did not answer.
//!
//! The page decides nothing itself: dead letters are read, retried and dropped through
//! [`doorsync_writer::dead_letters`], which reads from the first letter still waiting
//! (`dlq.handled-through` in the writer's bucket, moved on as letters are handled) rather than the
//! whole stream on every view; a member's access is what `doorsync-engine` rebuilds with the fold.
#![forbid(unsafe_code)]

mod dead_letters;
mod html;
mod member;
mod overview;
mod timeline;

use axum::Extension;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use doorsync_access::MemberStatus;
use doorsync_admin::CsrfToken;
use doorsync_engine::{EngineError, EngineHandle};
use doorsync_log::Sequence;
use doorsync_proto::{MemberId, Timestamp};
use futures::StreamExt;
use serde::Deserialize;

use self::html::{Esc, page};
use self::member::MemberPage;
use self::overview::{GroupWindows, MEMBERS_PER_PAGE, MemberRow, MemberSummary, Overview};
use doorsync_node::{Running, Status, with_causes};

/// Members of a page read from the engine at once.
const MEMBER_READS_IN_FLIGHT: usize = 8;

/// The status page's routes.
pub fn routes(running: &Running) -> Router {
    if running.engine.is_none() {
        return Router::new();
    }
    Router::new()
        .route("/", get(overview))
        .route("/members/{member}", get(member))
        .route("/dead-letters", get(dead_letters))
        .route("/dead-letters/{sequence}/retry", post(retry_letter))
        .route("/dead-letters/{sequence}/drop", post(drop_letter))
        .with_state(running.clone())
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    /// The page of the members table, from 1.
    page: Option<usize>,
    /// Reload the page every this many seconds.
    refresh: Option<u32>,
}

impl PageQuery {
    fn refresh(&self) -> Option<u32> {
        self.refresh.map(|seconds| seconds.clamp(2, 3_600))
    }
}

async fn overview(State(running): State<Running>, Query(query): Query<PageQuery>) -> Response {
    let Some(engine) = &running.engine else { return no_engine() };
    let now = running.clock.now();
    let (status, unreachable_peers) = Status::with_peers(&running).await;
    let dead_letters = doorsync_writer::dead_letters::dead_letters(running.log.as_ref(), &running.layout)
        .await
        .map(|letters| letters.iter().filter(|letter| letter.handled.is_none()).count())
        .map_err(|error| with_causes(&error));
    let known = engine.members().await;
    let pages = known.as_ref().map_or(1, |all| all.len().div_ceil(MEMBERS_PER_PAGE).max(1));
    let page_number = query.page.unwrap_or(1).clamp(1, pages);
    let members = match &known {
        Ok(all) => {
            let start = (page_number - 1) * MEMBERS_PER_PAGE;
            let end = (start + MEMBERS_PER_PAGE).min(all.len());
            member_rows(engine, &all[start..end], now).await
        }
        Err(_) => Vec::new(),
    };
    let overview = Overview {
        now,
        status,
        members_known: known.as_ref().map(Vec::len).map_err(ToString::to_string),
        page: page_number,
        members,
        dead_letters,
        unreachable_peers,
    };
    Html(page("Status", now, query.refresh(), &overview.render())).into_response()
}

/// The rows of the members table for `members`, from the engine's state of each.
async fn member_rows(engine: &EngineHandle, members: &[MemberId], now: Timestamp) -> Vec<MemberRow> {
    let mapping = match engine.mapping().await {
        Ok(mapping) => mapping,
        Err(error) => {
            let error = format!("the engine's mapping cannot be read: {error}");
            return members.iter().map(|member| MemberRow { member: *member, summary: Err(error.clone()) }).collect();
        }
    };
    let policy = engine.policy();
    futures::stream::iter(members.iter().copied())
        .map(|member| {
            let mapping = &mapping;
            async move {
                let summary = engine.member(member).await.map_err(|error| error.to_string()).map(|state| {
                    state.map(|state| MemberSummary {
                        status: state.status().clone(),
                        desired: doorsync_access::desired(&state, mapping, policy, now),
                        next_change: doorsync_access::next_change(&state, mapping, policy, now),
                    })
                });
                MemberRow { member, summary }
            }
        })
        .buffered(MEMBER_READS_IN_FLIGHT)
        .collect()
        .await
}

async fn member(State(running): State<Running>, Path(member): Path<u64>, Query(query): Query<PageQuery>) -> Response {
    let Some(engine) = &running.engine else { return no_engine() };
    let now = running.clock.now();
    let member = MemberId(member);
    let explained = doorsync_engine::explain(
        running.log.as_ref(),
        &running.layout,
        engine.configured_mapping(),
        engine.policy(),
        member,
        now,
    )
    .await;
    let explanation = match explained {
        Ok(explanation) => explanation,
        Err(error) => {
            let body = format!("<h1>Member {member}</h1><p class=\"alert\">The log cannot be read: {}</p>", Esc(error));
            return (StatusCode::INTERNAL_SERVER_ERROR, Html(page("Member", now, None, &body))).into_response();
        }
    };
    let stretches = stretches_in_view(engine, member, now).await;
    let found = !(matches!(explanation.status, MemberStatus::Unknown) && explanation.history.is_empty());
    let view = MemberPage { explanation: &explanation, stretches, now };
    let html = page(&view.title(), now, query.refresh(), &view.render());
    if found { Html(html).into_response() } else { (StatusCode::NOT_FOUND, Html(html)).into_response() }
}

/// The member's stretches of access in the timeline's view, from the engine's state.
async fn stretches_in_view(engine: &EngineHandle, member: MemberId, now: Timestamp) -> Result<GroupWindows, String> {
    let state = match engine.member(member).await {
        Ok(Some(state)) => state,
        Ok(None) => return Err("the engine has not seen this member".to_owned()),
        Err(EngineError::NotOwned { partition }) => {
            return Err(format!("partition {partition} is held by another engine; its status page draws them"));
        }
        Err(error) => return Err(error.to_string()),
    };
    let mapping = engine.mapping().await.map_err(|error| error.to_string())?;
    let (start, end) = member::view(now);
    Ok(member::stretches(&state, &mapping, engine.policy(), start, end))
}

async fn dead_letters(
    State(running): State<Running>,
    Query(query): Query<PageQuery>,
    csrf: Option<Extension<CsrfToken>>,
) -> Response {
    let now = running.clock.now();
    let csrf = csrf.as_ref().map(|Extension(CsrfToken(csrf))| csrf.as_str());
    let letters = doorsync_writer::dead_letters::dead_letters(running.log.as_ref(), &running.layout).await;
    match letters {
        Ok(letters) => {
            let body = dead_letters::render(&letters, now, csrf);
            Html(page("Dead letters", now, query.refresh(), &body)).into_response()
        }
        Err(error) => {
            let body =
                format!("<p class=\"alert\">The dead-letter stream cannot be read: {}</p>", Esc(with_causes(&error)));
            (StatusCode::INTERNAL_SERVER_ERROR, Html(page("Dead letters", now, None, &body))).into_response()
        }
    }
}

/// Hands a dead letter back to the writer, as `doorsync dlq retry` does, then shows the list.
async fn retry_letter(State(running): State<Running>, Path(sequence): Path<Sequence>) -> Response {
    let (log, layout, now) = (running.log.as_ref(), &running.layout, running.clock.now());
    let retried = match doorsync_writer::dead_letters::dead_letter(log, layout, sequence).await {
        Ok(letter) => doorsync_writer::dead_letters::retry(log, layout, &letter, now).await,
        Err(error) => Err(error),
    };
    match retried {
        Ok(Ok(_)) => Redirect::to("/dead-letters").into_response(),
        Ok(Err(refusal)) => not_done(StatusCode::CONFLICT, now, sequence, "retried", refusal),
        Err(error) => not_done(StatusCode::INTERNAL_SERVER_ERROR, now, sequence, "retried", with_causes(&error)),
    }
}

/// Marks a dead letter dropped, as `doorsync dlq drop` does, then shows the list.
async fn drop_letter(State(running): State<Running>, Path(sequence): Path<Sequence>) -> Response {
    let (log, layout, now) = (running.log.as_ref(), &running.layout, running.clock.now());
    let dropped = match doorsync_writer::dead_letters::dead_letter(log, layout, sequence).await {
        Ok(letter) => doorsync_writer::dead_letters::drop_letter(log, layout, &letter, now).await,
        Err(error) => Err(error),
    };
    match dropped {
        Ok(None) => Redirect::to("/dead-letters").into_response(),
        Ok(Some(handled)) => {
            not_done(StatusCode::CONFLICT, now, sequence, "dropped", format!("it was already {handled}"))
        }
        Err(error) => not_done(StatusCode::INTERNAL_SERVER_ERROR, now, sequence, "dropped", with_causes(&error)),
    }
}

fn not_done(
    status: StatusCode,
    now: Timestamp,
    sequence: Sequence,
    what: &str,
    why: impl std::fmt::Display,
) -> Response {
    let body = format!(
        "<p class=\"alert\">Dead letter {sequence} was not {what}: {}</p><p><a href=\"/dead-letters\">Back to the dead \
         letters</a></p>",
        Esc(why.to_string())
    );
    (status, Html(page("Dead letters", now, None, &body))).into_response()
}

fn no_engine() -> Response {
    (StatusCode::NOT_FOUND, "this process runs no engine: its status page is on the engine's admin listener\n")
        .into_response()
}
