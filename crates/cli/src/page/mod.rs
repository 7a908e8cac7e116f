//! The operator's status page, served on the admin listener of processes that run the engine.

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;

use crate::roles::{Running, Status};

/// The status page's routes.
pub(crate) fn routes(running: &Running) -> Router {
    if running.engine.is_none() {
        return Router::new();
    }
    Router::new().route("/", get(overview)).with_state(running.clone())
}

async fn overview(State(running): State<Running>) -> Html<String> {
    let status = Status::gather(&running).await;
    let shards = status.engine.unwrap_or_default();
    let known: usize = shards.iter().map(|shard| shard.known_members).sum();
    let caught_up = shards.iter().filter(|shard| shard.caught_up).count();
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>doorsync</title></head><body>\
         <h1>doorsync</h1><p>{known} members in {} partitions ({caught_up} caught up)</p></body></html>",
        shards.len()
    ))
}
