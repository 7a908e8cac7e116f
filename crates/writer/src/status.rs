//! What a writer reports about itself, for `status`, the admin page and tests.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use doorsync_kisi::KisiError;
use doorsync_proto::{KisiGroupId, Timestamp};

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

/// What the request limiter did: how often and how long it held requests back, and how much of
/// Kisi's request budget was booked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LimiterStats {
    /// Requests that could not go when they were asked for.
    pub waits: u64,
    /// Those waits added up (as booked: a wait cut short by a shutdown counts whole).
    pub waited_ms: u64,
    /// A second over N (the requests allowed in any rolling second) per request counted, the extra
    /// pages of a listing included. Its rate of increase is the share of the budget in use: 1 is
    /// all of it.
    pub budget_used_ms: u64,
}

/// Upper bounds, in milliseconds, of the buckets of [`WindowEdgeLag`]: from a write that
/// followed its edge at once to one an hour late (a replay, an outage).
pub const WINDOW_EDGE_LAG_BOUNDS_MS: [u64; 12] =
    [500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_800_000, 3_600_000];

/// How long after the window edge that made a command necessary (see
/// `doorsync_proto::Envelope::window_edge`) Kisi held what it asked for, as a histogram.
///
/// The bounds travel with the counts, so a status from a build with other buckets still reads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowEdgeLag {
    /// Upper bounds of the buckets, ascending; one more bucket, without a bound, takes the rest.
    pub bounds_ms: Vec<u64>,
    /// Commands per bucket (not cumulative), one more than there are bounds.
    pub counts: Vec<u64>,
    pub sum_ms: u64,
}

impl Default for WindowEdgeLag {
    fn default() -> Self {
        Self {
            bounds_ms: WINDOW_EDGE_LAG_BOUNDS_MS.to_vec(),
            counts: vec![0; WINDOW_EDGE_LAG_BOUNDS_MS.len() + 1],
            sum_ms: 0,
        }
    }
}

impl WindowEdgeLag {
    /// Counts a write completed at `written` for a command whose edge was at `edge`. A write
    /// ahead of its edge (the engine's clock a little ahead of the writer's) counts as on time.
    pub fn observe(&mut self, edge: Timestamp, written: Timestamp) {
        let lag_ms = written.as_unix_millis().saturating_sub(edge.as_unix_millis()).max(0).unsigned_abs();
        let bucket = self.bounds_ms.iter().position(|bound| lag_ms <= *bound).unwrap_or(self.bounds_ms.len());
        if let Some(count) = self.counts.get_mut(bucket) {
            *count += 1;
        }
        self.sum_ms = self.sum_ms.saturating_add(lag_ms);
    }

    /// Commands observed.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Each bucket's upper bound (`None` for the last, unbounded one) with its count.
    pub fn buckets(&self) -> impl Iterator<Item = (Option<u64>, u64)> + '_ {
        self.bounds_ms.iter().map(|bound| Some(*bound)).chain([None]).zip(self.counts.iter().copied())
    }
}

/// Kisi asked, with `Retry-After`, that no request come before `until`: every request waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetryAfterHold {
    pub until: Timestamp,
    /// What Kisi (or a proxy in front of it) asked for, in milliseconds from when it answered.
    pub asked_ms: u64,
    /// The wait asked for was longer than doorsync waits at most, so it was cut to that.
    pub clamped: bool,
}

/// A mapped Kisi group the API key may not use: commands for it are dead-lettered, the others go
/// on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RefusedGroup {
    pub group: KisiGroupId,
    /// The configuration entry that maps it, e.g. `mapping[2] (resource 14)`.
    pub mapping: Option<String>,
    pub reason: String,
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
    /// Groups Kisi refused to list to this key (403 while the key works): a mapping to fix,
    /// shown in `refused_groups`, not a failure to try again.
    #[serde(default)]
    pub groups_refused: usize,
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
    /// Of the keys, those holding a live change (a webhook's, a window edge's), which go before
    /// bulk work.
    #[serde(default)]
    pub backlog_live_keys: usize,
    pub calls: CallStats,
    /// Commands carried out (or found already true) and acknowledged.
    pub commands_applied: u64,
    /// Commands acknowledged because a later one for the same key was carried out instead.
    pub commands_superseded: u64,
    pub dead_letters: u64,
    pub held_repair: Option<HeldRepairStatus>,
    pub last_reconcile: Option<ReconcileReport>,
    /// The Kisi request limiter. The defaults below read statuses of builds that lacked them.
    #[serde(default)]
    pub limiter: LimiterStats,
    /// Commands a window edge made necessary, by how long after the edge Kisi held them.
    #[serde(default)]
    pub window_edge_lag: WindowEdgeLag,
    /// Set while a `Retry-After` holds every request back.
    #[serde(default)]
    pub retry_after_hold: Option<RetryAfterHold>,
    /// Mapped groups Kisi refused with 403 while the key itself works.
    #[serde(default)]
    pub refused_groups: Vec<RefusedGroup>,
    /// Whether this Kisi account applies a PATCH of an assignment's validity: `None` until one
    /// was verified by reading it back. When it does not, windows change by delete and create.
    #[serde(default)]
    pub patch_applies_validity: Option<bool>,
    /// Suspensions, restores and deletions asked for Kisi users doorsync found rather than
    /// created, left undone (`kisi.manage_found_users` is off).
    #[serde(default)]
    pub found_users_left_alone: u64,
    /// When Kisi last answered a request (any answer but a 5xx or a refused key: a 404 or a
    /// 429 is Kisi answering). `None` until it has.
    #[serde(default)]
    pub kisi_last_ok: Option<Timestamp>,
    /// Since when every request has failed to reach Kisi (transport errors, timeouts, 5xx
    /// answers, a refused key); `None` while it answers.
    #[serde(default)]
    pub kisi_failing_since: Option<Timestamp>,
    /// Why the latest failing request did not reach Kisi; `None` while it answers.
    #[serde(default)]
    pub kisi_failure: Option<String>,
    /// False once Kisi has been unreachable for longer than the writer's longest retry backoff
    /// ([`WriterOptions::backoff_max`](crate::WriterOptions::backoff_max), 60 s): by then
    /// every key waiting on Kisi has been tried again and failed. True otherwise, on a writer
    /// that is not active, and for statuses from builds that did not report it.
    #[serde(default = "answering_by_default")]
    pub kisi_up: bool,
}

/// What a status without [`WriterStatus::kisi_up`] means: no failure was reported.
fn answering_by_default() -> bool {
    true
}

impl WriterStatus {
    fn new() -> Self {
        Self {
            role: WriterRole::Starting,
            paused: None,
            credential_alerts: 0,
            backlog_keys: 0,
            backlog_commands: 0,
            backlog_live_keys: 0,
            calls: CallStats::default(),
            commands_applied: 0,
            commands_superseded: 0,
            dead_letters: 0,
            held_repair: None,
            last_reconcile: None,
            limiter: LimiterStats::default(),
            window_edge_lag: WindowEdgeLag::default(),
            retry_after_hold: None,
            refused_groups: Vec::new(),
            patch_applies_validity: None,
            found_users_left_alone: 0,
            kisi_last_ok: None,
            kisi_failing_since: None,
            kisi_failure: None,
            kisi_up: true,
        }
    }

    /// Records whether a request that ended `at` reached Kisi.
    fn reached_kisi<T>(&mut self, at: Timestamp, result: &Result<T, KisiError>) {
        match result {
            Err(
                error @ (KisiError::Server { .. }
                | KisiError::Timeout { .. }
                | KisiError::Transport { .. }
                | KisiError::Unauthorized { .. }),
            ) => {
                self.kisi_failing_since.get_or_insert(at);
                self.kisi_failure = Some(error.to_string());
            }
            _ => {
                self.kisi_last_ok = Some(at);
                self.kisi_failing_since = None;
                self.kisi_failure = None;
            }
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

    /// The status as of `now`: Kisi counts as down once it has failed for longer than
    /// `patience` (see [`WriterStatus::kisi_up`]).
    pub(crate) fn snapshot(&self, now: Timestamp, patience: Duration) -> WriterStatus {
        let mut status = self.lock().clone();
        status.kisi_up = status.role != WriterRole::Active
            || status.kisi_failing_since.is_none_or(|since| now.saturating_duration_since(since) <= patience);
        status
    }

    /// Counts a request that ended `at` by how it ended.
    pub(crate) fn count_call<T>(&self, result: &Result<T, KisiError>, at: Timestamp) {
        let mut status = self.lock();
        status.calls.count(result);
        status.reached_kisi(at, result);
    }

    pub(crate) fn limiter(&self, stats: LimiterStats) {
        self.lock().limiter = stats;
    }

    pub(crate) fn calls_total(&self) -> u64 {
        self.lock().calls.total()
    }
}

#[cfg(test)]
mod tests {
    use doorsync_clock::SystemClock;
    use doorsync_kisi::{ApiKey, KisiClient, KisiOptions};
    use doorsync_kisi_sim::{Fault, FaultRule, KisiSimulator, SimOptions};

    use super::*;

    const KEY: &str = "key-of-the-integration";
    const PATIENCE: Duration = Duration::from_secs(60);

    /// A simulated Kisi that fails `GET /user` with a 503 the first `failures` times.
    async fn kisi_failing(failures: u32) -> Result<(KisiSimulator, KisiClient), Box<dyn std::error::Error>> {
        let sim = KisiSimulator::start(SimOptions::new(Arc::new(SystemClock))).await?;
        sim.handle().add_api_account("integration@example.com", "doorsync", KEY)?;
        let unavailable = Fault::Status { status: 503, retry_after: None };
        sim.handle().inject(FaultRule::new(unavailable).times(failures).method("GET").path("/user"));
        let client = KisiClient::new(KisiOptions::new(sim.base_url(), ApiKey::new(KEY), "doorsync-tests"))?;
        Ok((sim, client))
    }

    fn active() -> StatusCell {
        let cell = StatusCell::new();
        cell.lock().role = WriterRole::Active;
        cell
    }

    #[tokio::test]
    async fn kisi_is_down_once_it_failed_for_longer_than_the_patience_and_up_at_its_next_answer()
    -> Result<(), Box<dyn std::error::Error>> {
        let (_sim, client) = kisi_failing(2).await?;
        let cell = active();
        let started = at(1_000);
        cell.count_call(&client.current_user().await, started);
        let failing = cell.snapshot(started + PATIENCE, PATIENCE);
        assert!(failing.kisi_up, "failing for the patience exactly is not down yet");
        assert_eq!(failing.kisi_failing_since, Some(started));
        assert!(failing.kisi_failure.as_deref().is_some_and(|failure| failure.contains("503")), "{failing:?}");

        cell.count_call(&client.current_user().await, at(1_030));
        let down = cell.snapshot(started + PATIENCE + Duration::from_secs(1), PATIENCE);
        assert!(!down.kisi_up, "{down:?}");
        assert_eq!(down.kisi_failing_since, Some(started), "a second failure keeps the first's time");
        assert_eq!((down.kisi_last_ok, down.calls.server_errors), (None, 2));

        let answered = at(1_090);
        cell.count_call(&client.current_user().await, answered);
        let up = cell.snapshot(answered, PATIENCE);
        assert!(up.kisi_up);
        assert_eq!((up.kisi_last_ok, up.kisi_failing_since, up.kisi_failure), (Some(answered), None, None));
        Ok(())
    }

    #[tokio::test]
    async fn a_refused_key_counts_as_kisi_failing_and_a_writer_not_active_reports_it_up()
    -> Result<(), Box<dyn std::error::Error>> {
        let (sim, _) = kisi_failing(0).await?;
        let refused = KisiClient::new(KisiOptions::new(sim.base_url(), ApiKey::new("not-the-key"), "doorsync-tests"))?;
        let cell = active();
        cell.count_call(&refused.current_user().await, at(1_000));
        let later = at(1_000) + PATIENCE * 2;
        assert!(!cell.snapshot(later, PATIENCE).kisi_up);

        cell.lock().role = WriterRole::Standby;
        assert!(cell.snapshot(later, PATIENCE).kisi_up, "a standby calls no Kisi: it knows nothing");
        Ok(())
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_millis(seconds * 1_000)
    }

    #[test]
    fn each_write_lands_in_the_first_bucket_that_holds_its_lag() {
        let mut lag = WindowEdgeLag::default();
        let edge = at(1_000);
        for written in [at(1_000), at(1_001), at(1_045), at(1_000 + 7_200)] {
            lag.observe(edge, written);
        }
        let counted: Vec<(Option<u64>, u64)> = lag.buckets().filter(|(_, count)| *count > 0).collect();
        assert_eq!(counted, [(Some(500), 1), (Some(1_000), 1), (Some(60_000), 1), (None, 1)]);
        assert_eq!(lag.count(), 4);
        assert_eq!(lag.sum_ms, 1_000 + 45_000 + 7_200_000);
    }

    #[test]
    fn a_write_stamped_before_its_edge_counts_as_on_time() {
        let mut lag = WindowEdgeLag::default();
        lag.observe(at(1_000), at(999));
        assert_eq!(lag.buckets().next(), Some((Some(500), 1)));
        assert_eq!(lag.sum_ms, 0);
    }

    #[test]
    fn a_status_without_the_newer_fields_still_reads() -> Result<(), serde_json::Error> {
        let mut json = serde_json::to_value(WriterStatus::new())?;
        if let Some(fields) = json.as_object_mut() {
            fields.remove("limiter");
            for newer in [
                "backlog_live_keys",
                "window_edge_lag",
                "retry_after_hold",
                "refused_groups",
                "patch_applies_validity",
                "found_users_left_alone",
                "kisi_last_ok",
                "kisi_failing_since",
                "kisi_failure",
                "kisi_up",
            ] {
                fields.remove(newer);
            }
        }
        let read: WriterStatus = serde_json::from_value(json)?;
        assert_eq!(read, WriterStatus::new());
        assert!(read.kisi_up, "no failure was reported");
        Ok(())
    }
}
