//! What a writer reports about itself, for `status`, the admin page and tests.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use doorsync_kisi::KisiError;
use doorsync_proto::Timestamp;

/// Whether this writer is the one calling Kisi.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WriterRole {
    /// Not yet decided: the lease has not been looked at.
    Starting,
    /// Another writer holds the account's lease: no Kisi calls, no commands consumed.
    Standby,
    Active,
    Stopped,
}

/// Why the writer makes no calls but the credentials probe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PauseStatus {
    /// The refusal that paused it, e.g. "kisi: 401 from POST /role_assignments: ...".
    pub reason: String,
    pub since: Timestamp,
}

/// Kisi requests made, by how they ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CallStats {
    pub succeeded: u64,
    pub rate_limited: u64,
    pub server_errors: u64,
    pub timeouts: u64,
    pub transport_errors: u64,
    /// 401 and 403.
    pub credentials_refused: u64,
    /// Every other refusal (404, 422, undecodable answers, ...).
    pub refused: u64,
}

impl CallStats {
    pub fn total(&self) -> u64 {
        self.succeeded
            + self.rate_limited
            + self.server_errors
            + self.timeouts
            + self.transport_errors
            + self.credentials_refused
            + self.refused
    }

    fn count<T>(&mut self, result: &Result<T, KisiError>) {
        let counter = match result {
            Ok(_) => &mut self.succeeded,
            Err(KisiError::RateLimited { .. }) => &mut self.rate_limited,
            Err(KisiError::Server { .. }) => &mut self.server_errors,
            Err(KisiError::Timeout { .. }) => &mut self.timeouts,
            Err(KisiError::Transport { .. }) => &mut self.transport_errors,
            Err(error) if error.is_credentials_problem() => &mut self.credentials_refused,
            Err(_) => &mut self.refused,
        };
        *counter += 1;
    }
}

/// A reconciliation's revocations waiting for an operator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeldRepairStatus {
    /// Assignments the repair would delete.
    pub revocations: usize,
    /// Distinct users (members) who would lose at least one group.
    pub members_affected: usize,
    /// Members with a Kisi user doorsync manages, the base of the share.
    pub managed_members: usize,
    pub found_at: Timestamp,
}

/// What one reconciliation found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReconcileReport {
    pub groups_listed: usize,
    pub users_checked: usize,
    pub assignments_seen: usize,
    /// Missing assignments created again.
    pub created: usize,
    /// Assignments whose validity was set back to the desired window.
    pub windows_fixed: usize,
    /// Assignments doorsync created that nothing asks for any more, deleted.
    pub revoked: usize,
    /// Users whose suspension or deletion by hand was undone.
    pub users_repaired: usize,
    /// Assignments made by someone else that differ from the desired state, left alone.
    pub foreign_untouched: usize,
    /// Differences on keys with a command waiting: the command settles them.
    pub left_to_commands: usize,
    /// Repairs that failed (they are tried again by the next reconciliation).
    pub failed: usize,
    /// Revocations held by the mass-revocation guard, if any.
    pub held: Option<HeldRepairStatus>,
    /// Kisi requests this reconciliation made.
    pub calls: u64,
}

/// A snapshot of the writer's state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WriterStatus {
    pub role: WriterRole,
    /// Set while Kisi refuses the API key (401/403).
    pub paused: Option<PauseStatus>,
    /// How many times the writer has paused for credentials (an alert each).
    pub credential_alerts: u64,
    /// Keys (member, or member and group) with a command not yet carried out.
    pub backlog_keys: usize,
    /// Commands held unacknowledged, superseded ones included.
    pub backlog_commands: usize,
    pub calls: CallStats,
    /// Commands carried out (or found already true) and acknowledged.
    pub commands_applied: u64,
    /// Commands acknowledged because a later one for the same key was carried out instead.
    pub commands_superseded: u64,
    pub dead_letters: u64,
    pub held_repair: Option<HeldRepairStatus>,
    pub last_reconcile: Option<ReconcileReport>,
}

impl WriterStatus {
    fn new() -> Self {
        Self {
            role: WriterRole::Starting,
            paused: None,
            credential_alerts: 0,
            backlog_keys: 0,
            backlog_commands: 0,
            calls: CallStats::default(),
            commands_applied: 0,
            commands_superseded: 0,
            dead_letters: 0,
            held_repair: None,
            last_reconcile: None,
        }
    }
}

/// The status shared between the writer's task and its handles.
#[derive(Debug, Clone)]
pub(crate) struct StatusCell(Arc<Mutex<WriterStatus>>);

impl StatusCell {
    pub(crate) fn new() -> Self {
        Self(Arc::new(Mutex::new(WriterStatus::new())))
    }

    /// Every change is a plain field update, so a panic elsewhere leaves usable data behind.
    pub(crate) fn lock(&self) -> MutexGuard<'_, WriterStatus> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn snapshot(&self) -> WriterStatus {
        self.lock().clone()
    }

    pub(crate) fn count_call<T>(&self, result: &Result<T, KisiError>) {
        self.lock().calls.count(result);
    }

    pub(crate) fn calls_total(&self) -> u64 {
        self.lock().calls.total()
    }
}
