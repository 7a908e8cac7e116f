//! The operations on the admin API, for `doorsync dlq` and `doorsync replay | reconcile
//! --dry-run` beside a running process: JSON answers, behind the admin token like every route.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use doorsync_config::Config;
use doorsync_log::Sequence;
use doorsync_writer::dead_letters::{self, DeadLetterError};

use super::rebuild;
use crate::process::Running;

#[derive(Clone)]
struct Operations {
    running: Running,
    /// What a dry run reads Kisi and evaluates members with.
    config: Arc<Config>,
}

pub(crate) fn routes(running: &Running, config: &Config) -> Router {
    let state = Operations { running: running.clone(), config: Arc::new(config.clone()) };
    Router::new()
        .route("/api/dead-letters", get(list))
        .route("/api/dead-letters/retry", post(retry_all))
        .route("/api/dead-letters/{sequence}/retry", post(retry))
        .route("/api/dead-letters/{sequence}/drop", post(drop))
        .route("/api/dry-run", get(dry_run))
        .with_state(state)
}

/// Every dead letter, those already retried or dropped too.
async fn list(State(operations): State<Operations>) -> Response {
    let running = &operations.running;
    answer(dead_letters::every_dead_letter(running.log.as_ref(), &running.layout).await)
}

/// Every waiting dead letter handed back to the writer, oldest first.
async fn retry_all(State(operations): State<Operations>) -> Response {
    let running = &operations.running;
    answer(dead_letters::retry_all(running.log.as_ref(), &running.layout, running.clock.now()).await)
}

async fn retry(State(operations): State<Operations>, Path(sequence): Path<u64>) -> Response {
    let running = &operations.running;
    answer(super::retry_one(running.log.as_ref(), &running.layout, Sequence(sequence), running.clock.now()).await)
}

async fn drop(State(operations): State<Operations>, Path(sequence): Path<u64>) -> Response {
    let running = &operations.running;
    answer(super::drop_one(running.log.as_ref(), &running.layout, Sequence(sequence), running.clock.now()).await)
}

async fn dry_run(State(operations): State<Operations>) -> Response {
    let running = &operations.running;
    let planned = match rebuild(running.log.as_ref(), &running.layout).await {
        Ok(rebuilt) => super::dry_run(&rebuilt, &operations.config, &running.clock).await,
        Err(error) => Err(error),
    };
    match planned {
        Ok(plan) => Json(plan).into_response(),
        Err(error) => failed(StatusCode::INTERNAL_SERVER_ERROR, &error),
    }
}

fn answer<T: serde::Serialize>(result: Result<T, DeadLetterError>) -> Response {
    match result {
        Ok(answer) => Json(answer).into_response(),
        Err(error @ DeadLetterError::NoSuchLetter { .. }) => failed(StatusCode::NOT_FOUND, &error),
        Err(error) => failed(StatusCode::INTERNAL_SERVER_ERROR, &error),
    }
}

/// The error with its causes as the body: the binary prints it as the command's own error.
fn failed(status: StatusCode, error: &dyn std::error::Error) -> Response {
    (status, format!("{}\n", crate::with_causes(error))).into_response()
}
