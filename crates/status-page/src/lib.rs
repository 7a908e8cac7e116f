//! The operator's status page, served on the admin listener of processes that run the engine
//! (behind the admin token when one is configured).
//!
//! Server-rendered HTML with its style inline and no script, readable from 400 px wide (tables
//! become cards on a narrow screen):
//! * `/`, the front desk: who can open which door now and whose doors open in the next four
//!   hours, by name, door (Kisi group) and local time; a search by name or email (`?q=`, run in
//!   the engine by [`EngineHandle::find`]) and filters (`?filter=access-now`, `opens-soon`,
//!   `suspended-in-kisi`, `dead-letters`, `parked-records`), 50 a page (`?page=`); each member
//!   with their Kisi user ("Kisi user: suspended");
//! * `/system`: the engine's partitions and wake-ups, the writer (role, pause, pending writes,
//!   Kisi calls by outcome, dead letters, a held mass revocation), the ingestor (events by type,
//!   parked records and why, webhook health, last poll and sweep);
//! * `/members/{id}` or `/members/{email}`: the member's access drawn as a timeline and listed
//!   door by door, what grants it and what grants nothing, what Kisi holds, and their history (an
//!   email several members share lists them);
//! * `/dead-letters`: the commands the writer parked, with their reasons, and a button to retry
//!   or drop each one still waiting (POSTs to `/dead-letters/{sequence}/retry` or `/drop`,
//!   carrying the session's CSRF token when the listener asks for a token).
//!
//! Names come from `doorsync-catalogue` (Kisi group, resource, pass product, desk and location
//! names), ids stay as small print or links. Times of access are in the zone of the location the
//! door belongs to, zone named ("13:15–14:45 Europe/London"); the page's clock and the history
//! are in the operator's zone (`admin.time_zone`, else the first location's). The front desk and
//! the system page open with a banner when Nexudus or Kisi has not answered for longer than the
//! roles allow, or the writer is paused or holding. Every page has an auto-refresh switch in its
//! header (`?refresh=10`).
//! Names and emails from Nexudus are shown (it is an operator's tool) and escaped, and never
//! logged.
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

mod banner;
mod dead_letters;
mod front_desk;
mod html;
mod member;
mod names;
mod system;
mod timeline;

use std::collections::BTreeSet;

use axum::Extension;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use doorsync_access::MemberStatus;
use doorsync_admin::CsrfToken;
use doorsync_catalogue::Catalogue;
use doorsync_engine::{EngineError, EngineHandle, ListingFilter, MemberListing, MemberMatches, MemberSearch};
use doorsync_log::Sequence;
use doorsync_proto::{MemberId, Timestamp};
use serde::Deserialize;

use self::front_desk::{DeskFilter, DeskQuery, FIRST_SCREEN_MEMBERS, FrontDesk, Listed, MEMBERS_PER_PAGE, SOON};
use self::html::{Esc, Frame, Section, page};
use self::member::MemberPage;
use self::names::Names;
use self::system::System;
use doorsync_node::operations::{DropOne, RetryOne};
use doorsync_node::{Running, Status, with_causes};

/// The status page's routes.
pub fn routes(running: &Running) -> Router {
    if running.engine.is_none() {
        return Router::new();
    }
    Router::new()
        .route("/", get(front_desk))
        .route("/system", get(system))
        .route("/members/{member}", get(member))
        .route("/dead-letters", get(dead_letters))
        .route("/dead-letters/{sequence}/retry", post(retry_letter))
        .route("/dead-letters/{sequence}/drop", post(drop_letter))
        .with_state(running.clone())
}

#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    /// The page of a list, from 1.
    page: Option<usize>,
    /// Reload the page every this many seconds.
    refresh: Option<u32>,
    /// The front desk's search: a part of a name or an email.
    q: Option<String>,
    /// The front desk's filter (see [`DeskFilter`]).
    filter: Option<String>,
}

impl PageQuery {
    fn refresh(&self) -> Option<u32> {
        self.refresh.map(|seconds| seconds.clamp(2, 3_600))
    }

    /// The frame of a page at `path`, whose own query (for the auto-refresh switch) is `query`.
    fn frame<'a>(
        &self,
        title: &'a str,
        section: Option<Section>,
        names: &Names,
        path: &'a str,
        query: Vec<(&'static str, String)>,
    ) -> Frame<'a> {
        Frame { title, section, clock: names.clock(), refresh: self.refresh(), path, query }
    }
}

/// The names and clocks of a page; a catalogue that cannot be read leaves ids and UTC, and says
/// why in the returned note.
async fn names(running: &Running, engine: &EngineHandle, now: Timestamp) -> (Names, Option<String>) {
    let (catalogue, note) = match Catalogue::read(running.log.as_ref(), &running.layout).await {
        Ok(catalogue) => (catalogue, None),
        Err(error) => (
            Catalogue::default(),
            Some(format!("Names and time zones cannot be read, so ids and UTC are shown: {}", with_causes(&error))),
        ),
    };
    let mapping = engine.mapping().await.unwrap_or_else(|_| engine.configured_mapping().clone());
    (Names::new(catalogue, &mapping, running.operator_time_zone.as_deref(), now), note)
}

async fn front_desk(State(running): State<Running>, Query(query): Query<PageQuery>) -> Response {
    let Some(engine) = &running.engine else { return no_engine() };
    let now = running.clock.now();
    let (names, note) = names(&running, engine, now).await;
    let mut notes: Vec<String> = note.into_iter().collect();
    let (status, unreachable_peers) = Status::with_peers(&running).await;
    let desk = DeskQuery {
        text: query.q.clone().unwrap_or_default(),
        filter: query.filter.as_deref().and_then(DeskFilter::parse),
        page: query.page.unwrap_or(1).max(1),
    };
    let listed = if desk.is_first_screen() {
        let first = |filter| MemberSearch {
            filter: Some(filter),
            soon: SOON,
            ..MemberSearch::everyone(now, FIRST_SCREEN_MEMBERS)
        };
        Listed::FirstScreen {
            now: found(engine.find(&first(ListingFilter::AccessNow)).await),
            soon: found(engine.find(&first(ListingFilter::OpensSoon)).await),
        }
    } else {
        let among = match desk.filter {
            Some(DeskFilter::DeadLetters) => Some(members_with_dead_letters(&running, &mut notes).await),
            Some(DeskFilter::ParkedRecords) => Some(members_with_parked_records(&status)),
            _ => None,
        };
        let search = MemberSearch {
            text: desk.text.clone(),
            filter: desk.filter.and_then(DeskFilter::engine_filter),
            among,
            at: now,
            soon: SOON,
            skip: (desk.page - 1) * MEMBERS_PER_PAGE,
            limit: MEMBERS_PER_PAGE,
        };
        Listed::Results(found(engine.find(&search).await))
    };
    let banner = banner::render(&status, &unreachable_peers, &names);
    let body = FrontDesk { names: &names, query: &desk, listed, banner, notes }.render();
    let frame = query.frame("Front desk", Some(Section::FrontDesk), &names, "/", desk.parameters(desk.page));
    Html(page(&frame, &body)).into_response()
}

fn found(matches: Result<MemberMatches, EngineError>) -> Result<MemberMatches, String> {
    matches.map_err(|error| with_causes(&error))
}

/// The members with a dead letter still waiting; none, with a note, when they cannot be read.
async fn members_with_dead_letters(running: &Running, notes: &mut Vec<String>) -> BTreeSet<MemberId> {
    match doorsync_writer::dead_letters::dead_letters(running.log.as_ref(), &running.layout).await {
        Ok(letters) => {
            letters.iter().filter(|letter| letter.handled.is_none()).filter_map(|letter| letter.member).collect()
        }
        Err(error) => {
            notes.push(format!("The dead letters cannot be read: {}", with_causes(&error)));
            BTreeSet::new()
        }
    }
}

/// The members a parked Nexudus record withholds access from.
fn members_with_parked_records(status: &Status) -> BTreeSet<MemberId> {
    let parked = status.ingest.iter().flat_map(|ingest| &ingest.parked);
    parked.filter_map(|parked| parked.withheld_from).collect()
}

/// The listings of `members`, for the names of links to them; none when the search fails (the
/// links then show ids).
async fn listings_of(engine: &EngineHandle, members: BTreeSet<MemberId>, now: Timestamp) -> Vec<MemberListing> {
    let limit = members.len();
    let search = MemberSearch { among: Some(members), ..MemberSearch::everyone(now, limit) };
    engine.find(&search).await.map(|found| found.listings).unwrap_or_default()
}

async fn system(State(running): State<Running>, Query(query): Query<PageQuery>) -> Response {
    let Some(engine) = &running.engine else { return no_engine() };
    let now = running.clock.now();
    let (names, _) = names(&running, engine, now).await;
    let (status, unreachable_peers) = Status::with_peers(&running).await;
    let names = names.with_members(&listings_of(engine, members_with_parked_records(&status), now).await);
    let dead_letters = doorsync_writer::dead_letters::dead_letters(running.log.as_ref(), &running.layout)
        .await
        .map(|letters| letters.iter().filter(|letter| letter.handled.is_none()).count())
        .map_err(|error| with_causes(&error));
    let body = System { names: &names, status, dead_letters, unreachable_peers }.render();
    let frame = query.frame("System", Some(Section::System), &names, "/system", Vec::new());
    Html(page(&frame, &body)).into_response()
}

/// `/members/{id}`, or `/members/{email}`: the member with that email, or the list of those who
/// share it.
async fn member(
    State(running): State<Running>,
    Path(member): Path<String>,
    Query(query): Query<PageQuery>,
) -> Response {
    let Some(engine) = &running.engine else { return no_engine() };
    let now = running.clock.now();
    let (names, _) = names(&running, engine, now).await;
    if let Ok(id) = member.parse::<u64>() {
        return member_page(&running, engine, &names, MemberId(id), &query).await;
    }
    // Every member whose name or email contains the email, not a page of them: the one with it
    // exactly may come after many whose email merely contains it ("jo@x.com" in "banjo@x.com").
    let search = MemberSearch { text: member.clone(), ..MemberSearch::everyone(now, usize::MAX) };
    let path = format!("/members/{member}");
    let found = match engine.find(&search).await {
        Ok(found) => found,
        Err(error) => {
            let body = format!("<p class=\"alert\">The members cannot be searched: {}</p>", Esc(with_causes(&error)));
            let frame = query.frame("Member", None, &names, &path, Vec::new());
            return (StatusCode::INTERNAL_SERVER_ERROR, Html(page(&frame, &body))).into_response();
        }
    };
    let same_email = |listing: &&MemberListing| {
        listing.email().is_some_and(|email| email.trim().eq_ignore_ascii_case(member.trim()))
    };
    let with_email: Vec<_> = found.listings.iter().filter(same_email).cloned().collect();
    if let [only] = with_email.as_slice() {
        return member_page(&running, engine, &names, only.member, &query).await;
    }
    let (status, body) = member::with_email(&names, &member, &with_email);
    let frame = query.frame("Members", None, &names, &path, Vec::new());
    (status, Html(page(&frame, &body))).into_response()
}

async fn member_page(
    running: &Running,
    engine: &EngineHandle,
    names: &Names,
    member: MemberId,
    query: &PageQuery,
) -> Response {
    let now = names.now;
    let path = format!("/members/{member}");
    let explained = doorsync_engine::explain_named(
        running.log.as_ref(),
        &running.layout,
        engine.configured_mapping(),
        engine.policy(),
        member,
        now,
        names.catalogue(),
        names.operator().zone(),
    )
    .await;
    let explanation = match explained {
        Ok(explanation) => explanation,
        Err(error) => {
            let body = format!("<h1>Member {member}</h1><p class=\"alert\">The log cannot be read: {}</p>", Esc(error));
            let frame = query.frame("Member", None, names, &path, Vec::new());
            return (StatusCode::INTERNAL_SERVER_ERROR, Html(page(&frame, &body))).into_response();
        }
    };
    let stretches = stretches_in_view(engine, member, now).await;
    let found = !(matches!(explanation.status, MemberStatus::Unknown) && explanation.history.is_empty());
    let view = MemberPage { explanation: &explanation, stretches, names };
    let title = view.title();
    let html = page(&query.frame(&title, None, names, &path, Vec::new()), &view.render());
    if found { Html(html).into_response() } else { (StatusCode::NOT_FOUND, Html(html)).into_response() }
}

/// The member's stretches of access in the timeline's view, from the engine's state.
async fn stretches_in_view(
    engine: &EngineHandle,
    member: MemberId,
    now: Timestamp,
) -> Result<member::GroupWindows, String> {
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
    let Some(engine) = &running.engine else { return no_engine() };
    let now = running.clock.now();
    let (names, _) = names(&running, engine, now).await;
    let csrf = csrf.as_ref().map(|Extension(CsrfToken(csrf))| csrf.as_str());
    let letters = doorsync_writer::dead_letters::dead_letters(running.log.as_ref(), &running.layout).await;
    let members = letters.iter().flatten().filter_map(|letter| letter.member).collect();
    let names = names.with_members(&listings_of(engine, members, now).await);
    let frame = query.frame("Dead letters", Some(Section::DeadLetters), &names, "/dead-letters", Vec::new());
    match letters {
        Ok(letters) => Html(page(&frame, &dead_letters::render(&letters, &names, csrf))).into_response(),
        Err(error) => {
            let body =
                format!("<p class=\"alert\">The dead-letter stream cannot be read: {}</p>", Esc(with_causes(&error)));
            (StatusCode::INTERNAL_SERVER_ERROR, Html(page(&frame, &body))).into_response()
        }
    }
}

/// Hands a dead letter back to the writer, as `doorsync dlq retry` does, then shows the list.
async fn retry_letter(State(running): State<Running>, Path(sequence): Path<Sequence>) -> Response {
    let (log, layout, now) = (running.log.as_ref(), &running.layout, running.clock.now());
    match doorsync_node::operations::retry_one(log, layout, sequence, now).await {
        Ok(RetryOne { result: Ok(_), .. }) => Redirect::to("/dead-letters").into_response(),
        Ok(RetryOne { result: Err(refusal), .. }) => {
            not_done(StatusCode::CONFLICT, &running, sequence, "retried", refusal)
        }
        Err(error) => not_done(StatusCode::INTERNAL_SERVER_ERROR, &running, sequence, "retried", with_causes(&error)),
    }
}

/// Marks a dead letter dropped, as `doorsync dlq drop` does, then shows the list.
async fn drop_letter(State(running): State<Running>, Path(sequence): Path<Sequence>) -> Response {
    let (log, layout, now) = (running.log.as_ref(), &running.layout, running.clock.now());
    match doorsync_node::operations::drop_one(log, layout, sequence, now).await {
        Ok(DropOne { already: None, .. }) => Redirect::to("/dead-letters").into_response(),
        Ok(DropOne { already: Some(handled), .. }) => {
            not_done(StatusCode::CONFLICT, &running, sequence, "dropped", format!("it was already {handled}"))
        }
        Err(error) => not_done(StatusCode::INTERNAL_SERVER_ERROR, &running, sequence, "dropped", with_causes(&error)),
    }
}

fn not_done(
    status: StatusCode,
    running: &Running,
    sequence: Sequence,
    what: &str,
    why: impl std::fmt::Display,
) -> Response {
    let body = format!(
        "<p class=\"alert\">Dead letter {sequence} was not {what}: {}</p><p><a href=\"/dead-letters\">Back to the dead \
         letters</a></p>",
        Esc(why.to_string())
    );
    let zone = running.operator_time_zone.as_deref();
    let names = Names::new(Catalogue::default(), &Default::default(), zone, running.clock.now());
    let frame =
        PageQuery::default().frame("Dead letters", Some(Section::DeadLetters), &names, "/dead-letters", Vec::new());
    (status, Html(page(&frame, &body))).into_response()
}

fn no_engine() -> Response {
    (StatusCode::NOT_FOUND, "this process runs no engine: its status page is on the engine's admin listener\n")
        .into_response()
}
