//! The webhook receiver: Nexudus POSTs to `/webhooks/nexudus/<Action>` (the action's name, such
//! as `BookingUpdate`, or its number), one URL per registered action, because the body does not
//! say which action fired.
//!
//! A delivery is checked against `X-Nexudus-Hook-Signature` before anything else (401 and
//! nothing read or stored when it is missing or wrong), limited in size (413), and each entity in
//! it is read again by id: the body's fields are never trusted. The answer is 2xx once what it
//! asks for is durably recorded: what changed appended to the log, or, for a record Nexudus
//! failed to answer about, the record kept in the retry set. Only a log or bucket that cannot
//! take the write answers 5xx (so Nexudus retries): Nexudus disables a hook after ten failures,
//! so a webhook is never failed for one record. An action doorsync does not act on is answered
//! 2xx (and counted), for the same reason.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use doorsync_nexudus::WebhookAction;
use doorsync_nexudus::webhook::{SIGNATURE_HEADER, parse_body, verify};
use tracing::Instrument;

use crate::error::IngestError;
use crate::ingestor::Ingestor;
use crate::retry::Target;

/// The route the receiver serves; `{action}` is the webhook's action.
pub const WEBHOOK_ROUTE: &str = "/webhooks/nexudus/{action}";

/// The path to register in Nexudus for webhooks of `action`, e.g.
/// `/webhooks/nexudus/BookingUpdate`.
pub fn webhook_path(action: WebhookAction) -> String {
    let segment = action.name().map_or_else(|| action.code().to_string(), str::to_owned);
    WEBHOOK_ROUTE.replace("{action}", &segment)
}

/// Nexudus's action codes go up to 90 (reference §3.2).
const HIGHEST_ACTION_CODE: u64 = 90;

/// The webhook actions the ingestor acts on: register each in Nexudus at [`webhook_path`].
pub const WEBHOOK_ACTIONS: &[WebhookAction] = &[
    WebhookAction::CoworkerCreate,
    WebhookAction::CoworkerUpdate,
    WebhookAction::CoworkerDelete,
    WebhookAction::AccessControlUpdate,
    WebhookAction::BookingCreate,
    WebhookAction::BookingUpdate,
    WebhookAction::BookingDelete,
    WebhookAction::CoworkerContractActivate,
    WebhookAction::CoworkerContractCancel,
    WebhookAction::CoworkerContractRenew,
    WebhookAction::CoworkerContractUpgradeDowngrade,
    WebhookAction::CoworkerContractActivateFirst,
    WebhookAction::CoworkerContractUpdate,
    WebhookAction::CoworkerContractCreate,
    WebhookAction::CoworkerContractDelete,
    WebhookAction::FloorPlanDeskCreate,
    WebhookAction::FloorPlanDeskUpdate,
    WebhookAction::FloorPlanDeskDelete,
    WebhookAction::BusinessUpdate,
];

/// The action a path segment names, by name or number.
fn action_named(segment: &str) -> Option<WebhookAction> {
    if let Ok(code) = segment.parse::<u64>() {
        return Some(WebhookAction::from_code(code));
    }
    (1..=HIGHEST_ACTION_CODE).map(WebhookAction::from_code).find(|action| action.name() == Some(segment))
}

pub(crate) fn router(ingestor: Arc<Ingestor>) -> Router {
    let body_limit = ingestor.options.body_limit;
    Router::new().route(WEBHOOK_ROUTE, post(receive)).layer(DefaultBodyLimit::max(body_limit)).with_state(ingestor)
}

#[tracing::instrument(name = "nexudus.webhook", skip_all, fields(action = %action, records))]
async fn receive(
    State(ingestor): State<Arc<Ingestor>>,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use crate::status::WebhookAnswer as Answer;
    let signature = headers.get(SIGNATURE_HEADER).and_then(|value| value.to_str().ok());
    let signed = signature.is_some_and(|signature| verify(&ingestor.options.webhook_secret, &body, signature).is_ok());
    if !signed {
        ingestor.stats.webhook(Answer::Refused);
        tracing::warn!(action, "nexudus webhook refused: {SIGNATURE_HEADER} missing or wrong (check the secret)");
        return (StatusCode::UNAUTHORIZED, "signature missing or wrong").into_response();
    }
    let entities = match parse_body(&body) {
        Ok(entities) => entities,
        Err(error) => {
            ingestor.stats.webhook(Answer::Unreadable);
            tracing::warn!(action, %error, "nexudus webhook unreadable");
            return (StatusCode::BAD_REQUEST, error.to_string()).into_response();
        }
    };
    let Some(target) = action_named(&action).and_then(Target::of) else {
        ingestor.stats.webhook(Answer::UnknownAction);
        tracing::debug!(action, "nexudus webhook for an action doorsync does not act on");
        return (StatusCode::OK, "doorsync does not act on this action").into_response();
    };
    let ids: Vec<u64> = entities.iter().map(|entity| entity.id).collect();
    tracing::Span::current().record("records", ids.len());
    // On its own task, so that a sender that hangs up cannot stop the work half way.
    let work = tokio::spawn(
        {
            let ingestor = Arc::clone(&ingestor);
            async move { reread(&ingestor, target, &ids).await }
        }
        .in_current_span(),
    );
    match work.await {
        Ok(Ok(())) => {
            ingestor.stats.webhook(Answer::Accepted);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Err(error)) => {
            ingestor.stats.webhook(Answer::Failed);
            tracing::warn!(action, %error, "nexudus webhook failed to be recorded; Nexudus will retry it");
            (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response()
        }
        Err(error) => {
            ingestor.stats.webhook(Answer::Failed);
            tracing::error!(action, %error, "nexudus webhook task ended abnormally");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn reread(ingestor: &Ingestor, target: Target, ids: &[u64]) -> Result<(), IngestError> {
    for &id in ids {
        ingestor.attempt(target, id).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_named_in_the_path_by_name_or_number() {
        assert_eq!(webhook_path(WebhookAction::BookingUpdate), "/webhooks/nexudus/BookingUpdate");
        assert_eq!(webhook_path(WebhookAction::Other(99)), "/webhooks/nexudus/99");
        assert_eq!(action_named("BookingUpdate"), Some(WebhookAction::BookingUpdate));
        assert_eq!(action_named("61"), Some(WebhookAction::AccessControlUpdate));
        assert_eq!(action_named("InvoicePaid"), None);
        assert_eq!(Target::of(WebhookAction::AccessControlUpdate), Some(Target::Customer));
        assert_eq!(Target::of(WebhookAction::TeamUpdated), None);
        assert!(WEBHOOK_ACTIONS.iter().all(|action| Target::of(*action).is_some()), "every listed action is acted on");
        let acted_on = (1..=HIGHEST_ACTION_CODE).filter(|code| Target::of(WebhookAction::from_code(*code)).is_some());
        assert_eq!(acted_on.count(), WEBHOOK_ACTIONS.len(), "every action acted on is listed");
    }
}
