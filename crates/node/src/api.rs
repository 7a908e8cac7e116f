//! The JSON API of each role on the admin listener: `/api/status` for `doorsync status`, the
//! writer's `/api/writer/reconcile` for `doorsync reconcile`, and the engine's
//! `/api/explain/{member}`, so that `doorsync explain` can ask a running `doorsync run` whose
//! embedded log file it cannot open; for the same reason the dead letters
//! (`/api/dead-letters`, `.../retry`, `/api/dead-letters/{sequence}/retry` and `.../drop`) and the
//! dry run of `doorsync replay | reconcile --dry-run` (`/api/dry-run`), in [`crate::operations`].

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use doorsync_catalogue::Catalogue;
use doorsync_config::Config;
use doorsync_proto::MemberId;
use doorsync_writer::WriterError;

use crate::process::Running;
use crate::status::Status;

/// The JSON API `doorsync status`, `reconcile`, `explain`, `dlq` and the dry runs talk to;
/// `config` is what a dry run reads Kisi and evaluates members with.
pub(crate) fn routes(running: &Running, config: &Config) -> Router {
    let routes = Router::new()
        .route("/api/status", get(status))
        .route("/api/writer/reconcile", post(reconcile))
        .route("/api/writer/reconcile/confirm", post(confirm));
    let routes = if running.engine.is_some() { routes.route("/api/explain/{member}", get(explain)) } else { routes };
    routes.with_state(running.clone()).merge(crate::operations::routes::routes(running, config))
}

async fn status(State(running): State<Running>) -> Json<Status> {
    Json(Status::gather(&running).await)
}

async fn explain(State(running): State<Running>, Path(member): Path<u64>) -> Response {
    let Some(engine) = &running.engine else { return StatusCode::NOT_FOUND.into_response() };
    let now = running.clock.now();
    let mapping = engine.configured_mapping();
    // Names only help the reader: without them the explanation says ids instead.
    let catalogue = Catalogue::read(running.log.as_ref(), &running.layout).await.unwrap_or_else(|error| {
        tracing::warn!(%error, "explaining in ids: the catalogue of names cannot be read");
        Catalogue::default()
    });
    let zone = catalogue.operator_zone(running.operator_time_zone.as_deref());
    match doorsync_engine::explain_named(
        running.log.as_ref(),
        &running.layout,
        mapping,
        engine.policy(),
        MemberId(member),
        now,
        &catalogue,
        &zone,
    )
    .await
    {
        Ok(explanation) => explanation.display_with(&catalogue, &zone).to_string().into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response(),
    }
}

async fn reconcile(State(running): State<Running>) -> Response {
    match &running.writer {
        Some(writer) => answer(writer.reconcile_now().await),
        None => not_a_writer(),
    }
}

async fn confirm(State(running): State<Running>) -> Response {
    match &running.writer {
        Some(writer) => answer(writer.confirm_held_repair().await),
        None => not_a_writer(),
    }
}

fn answer(result: Result<doorsync_writer::ReconcileReport, WriterError>) -> Response {
    match result {
        Ok(report) => Json(report).into_response(),
        Err(error @ (WriterError::NotActive | WriterError::Paused { .. } | WriterError::NothingHeld)) => {
            (StatusCode::CONFLICT, error.to_string()).into_response()
        }
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

fn not_a_writer() -> Response {
    (StatusCode::NOT_FOUND, "this process runs no Kisi writer: ask the writer's admin address\n").into_response()
}
