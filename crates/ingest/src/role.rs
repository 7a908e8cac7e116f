//! One active ingestor per deployment: the one holding the lease `lease` in the ingest bucket.
//!
//! Two ingestors deciding readings of the same record at once could append a removal and a
//! change in either order, or each keep a state the other overwrites: records are serialised
//! within one process only. So an ingestor reads Nexudus, appends and writes its ledger only
//! while it holds the lease and may act on it ([`doorsync_log::Tenure::may_act`]); a standby
//! waits for it, and reads the ingest bucket again when it takes over.
//!
//! A standby answers webhooks 503 with `Retry-After`, before reading the body, and reports
//! itself not ready, so that the webhook URL leads to the active ingestor and Nexudus delivers
//! again there. It never answers 2xx: that would tell Nexudus a change is recorded when only
//! the next poll (or, for a hard delete, the next sweep) would find it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use doorsync_clock::Clock;
use doorsync_log::Tenure;
use doorsync_proto::Timestamp;

use crate::error::IngestError;
use crate::ingestor::Ingestor;
use crate::status::{IngestRole, WebhookAnswer};

/// Whether this ingestor may act, and who does when it may not.
#[derive(Debug, Default)]
pub(crate) struct Role {
    state: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    tenure: Option<Arc<Tenure>>,
    /// The lease's holder as last seen while on standby.
    holder: Option<String>,
}

impl Role {
    fn held(&self) -> MutexGuard<'_, Held> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Ok` while this ingestor may read Nexudus and append (after the lease's renewal, when
    /// one is due).
    pub(crate) async fn ensure_acting(&self, clock: &dyn Clock) -> Result<(), IngestError> {
        let tenure = self.held().tenure.clone();
        if let Some(tenure) = tenure
            && tenure.wait_to_act(clock).await
        {
            return Ok(());
        }
        let holder = self.held().holder.clone().unwrap_or_else(|| "no live ingestor".to_owned());
        Err(IngestError::Standby { holder })
    }

    pub(crate) fn activate(&self, tenure: Arc<Tenure>) {
        *self.held() = Held { tenure: Some(tenure), holder: None };
    }

    pub(crate) fn stand_by(&self, holder: Option<String>) {
        *self.held() = Held { tenure: None, holder };
    }

    pub(crate) fn status(&self, now: Timestamp) -> IngestRole {
        let held = self.held();
        match &held.tenure {
            Some(tenure) if tenure.may_act(now) => IngestRole::Active,
            _ => IngestRole::Standby { holder: held.holder.clone() },
        }
    }
}

/// How long a standby asks Nexudus to wait before delivering again: about the time a lapsed
/// lease takes to be taken over.
const STANDBY_RETRY_AFTER_SECONDS: u64 = 30;

/// Lets webhooks through to the receiver while this ingestor is active, and answers them 503
/// otherwise, with nothing read or stored.
pub(crate) async fn answer_while_standby(
    State(ingestor): State<Arc<Ingestor>>,
    request: Request,
    next: Next,
) -> Response {
    if ingestor.role.ensure_acting(&*ingestor.clock).await.is_ok() {
        return next.run(request).await;
    }
    ingestor.stats.webhook(WebhookAnswer::Standby);
    tracing::info!("nexudus webhook at a standby ingestor: answered 503 for Nexudus to deliver it again");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, STANDBY_RETRY_AFTER_SECONDS.to_string())],
        "this doorsync ingestor is on standby; deliver again to the active one",
    )
        .into_response()
}
