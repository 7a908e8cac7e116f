use std::collections::BTreeMap;
use std::time::Duration;

use doorsync_proto::KisiGroupId;
use serde::Deserialize;

use crate::WriterError;

/// How a writer runs. [`WriterOptions::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Unique among the writers sharing a log: it names the lease's owner.
    pub writer_id: String,
    /// The Kisi account (API user) this writer writes as: one writer per account is active, through
    /// the lease `writer.<account>` in the leases bucket.
    pub account: String,
    /// The durable consumer of the command stream, shared by every writer of the account.
    pub consumer_name: String,
    /// The configuration's `[writer]` section.
    pub settings: WriterSettings,
    /// The configuration's `[reconcile]` section.
    pub reconcile: ReconcileSettings,
    /// Whether the reconciler runs on its own every [`ReconcileSettings::every`]; off, it runs
    /// only on demand.
    pub reconcile_on_schedule: bool,
    /// At most this many requests in any rolling second; Kisi allows 5 per API user.
    pub requests_per_second: u32,
    /// The first retry of a failing key waits up to this long (full jitter), doubling per attempt.
    pub backoff_first: Duration,
    pub backoff_max: Duration,
    /// Seeds the jitter, so that a simulation replays the same delays.
    pub seed: u64,
    /// After this many transient failures of one key in a row, a `Failed { permanent: false }`
    /// outcome tells the engine; the writer keeps retrying.
    pub report_transient_after: u32,
    /// How often a paused writer (401/403) asks Kisi whether the key works again.
    pub credentials_probe_every: Duration,
    /// Whether Kisi users doorsync found by email rather than created (staff, admins, another
    /// integration's users) may be suspended, restored and deleted like the ones it created. Off
    /// (the default), such a user is linked for memberships only: doorsync adds and removes its
    /// own assignments and leaves the user as it is.
    pub manage_found_users: bool,
    /// Whether the users doorsync creates are Kisi managed users (no Kisi emails, confirmed at
    /// once, the default) or regular ones, who get Kisi's welcome email and sign up.
    pub managed_users: bool,
    /// Emails of Kisi users whose role assignments doorsync takes over as its own, such as the
    /// user whose key Nexudus's built-in Kisi integration used: their assignments in the managed
    /// groups are changed and removed as if doorsync had made them.
    pub adopt_created_by: Vec<String>,
    /// How the configuration names each mapped group (`mapping[2] (resource 14)`), for the
    /// reasons of dead letters about a group Kisi refuses.
    pub group_labels: BTreeMap<KisiGroupId, String>,
    /// Groups the reconciler lists besides those named in commands.
    pub reconcile_groups: Vec<KisiGroupId>,
    /// Whether the reconciler also reads each managed user (one request per user) to repair a
    /// suspension or deletion made by hand.
    pub reconcile_users: bool,
}

/// The writer's settings an operator chooses: the configuration's `[writer]` section is this
/// type, so each key has one name and one default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriterSettings {
    /// The active writer renews its lease of the Kisi account every third of this; a standby
    /// takes over once it lapses unrenewed. It must be well above the Kisi client's request
    /// timeout (the configuration requires three times `kisi.request_timeout`): the writer stops
    /// calling Kisi a third of it before it could lapse, and a request in flight must have ended
    /// by then.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// A command the writer took from the log and has neither carried out nor given back within
    /// this time is delivered again: to a standby that took over from a writer that died holding
    /// it, or, while Kisi is slow, to the same writer, which recognises it as a duplicate.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
}

impl Default for WriterSettings {
    fn default() -> Self {
        Self { lease_ttl: Duration::from_secs(30), ack_wait: Duration::from_secs(60) }
    }
}

/// The reconciler's settings an operator chooses: the configuration's `[reconcile]` section is
/// this type, so each key has one name and one default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileSettings {
    /// How often the reconciler runs on its own (see [`WriterOptions::reconcile_on_schedule`]).
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// A repair that would revoke more than this share of the managed members is held until an
    /// operator confirms it.
    pub max_revocation_share: f64,
    /// Whether role assignments made by someone else (another API user, an operator) may be
    /// changed or deleted. Off: they are reported and left alone.
    pub touch_foreign_assignments: bool,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self { every: Duration::from_secs(15 * 60), max_revocation_share: 0.2, touch_foreign_assignments: false }
    }
}

impl WriterOptions {
    pub fn new(writer_id: impl Into<String>, account: impl Into<String>) -> Self {
        Self {
            writer_id: writer_id.into(),
            account: account.into(),
            consumer_name: "writer".to_owned(),
            settings: WriterSettings::default(),
            reconcile: ReconcileSettings::default(),
            reconcile_on_schedule: true,
            requests_per_second: 4,
            backoff_first: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            seed: 0,
            report_transient_after: 5,
            credentials_probe_every: Duration::from_secs(30),
            manage_found_users: false,
            managed_users: true,
            adopt_created_by: Vec::new(),
            group_labels: BTreeMap::new(),
            reconcile_groups: Vec::new(),
            reconcile_users: true,
        }
    }

    /// How often the reconciler runs on its own, if it does.
    pub(crate) fn reconcile_every(&self) -> Option<Duration> {
        self.reconcile_on_schedule.then_some(self.reconcile.every)
    }

    pub(crate) fn validate(&self) -> Result<(), WriterError> {
        let invalid = |reason: &str| Err(WriterError::InvalidOptions(reason.to_owned()));
        if self.requests_per_second == 0 {
            return invalid("requests_per_second must be at least 1 (Kisi allows 5 per API user)");
        }
        if !(0.0..=1.0).contains(&self.reconcile.max_revocation_share) {
            return invalid("max_revocation_share must be between 0 and 1 (0.2 is 20%)");
        }
        if self.settings.lease_ttl < Duration::from_millis(300) {
            return invalid("lease_ttl must be at least 300 ms");
        }
        if self.settings.ack_wait.is_zero() || self.credentials_probe_every.is_zero() {
            return invalid("ack_wait and credentials_probe_every must be longer than zero");
        }
        if self.backoff_first.is_zero() || self.backoff_max < self.backoff_first {
            return invalid("backoff_first must be above zero and backoff_max at least backoff_first");
        }
        if self.account.is_empty()
            || !self.account.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"-_".contains(&byte))
        {
            return invalid("account must be letters, digits, '-' and '_' (it names the lease key)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_nonsense_is_refused() {
        assert!(WriterOptions::new("w", "main").validate().is_ok());
        let cases: [fn(&mut WriterOptions); 4] = [
            |options| options.requests_per_second = 0,
            |options| options.reconcile.max_revocation_share = 1.5,
            |options| options.account = "a.b".to_owned(),
            |options| options.backoff_max = Duration::ZERO,
        ];
        for change in cases {
            let mut options = WriterOptions::new("w", "main");
            change(&mut options);
            assert!(options.validate().is_err(), "{options:?}");
        }
    }
}
