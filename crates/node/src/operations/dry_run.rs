//! What a reconciliation would change in Kisi, without writing anything: every member rebuilt
//! from the log, what Kisi holds read at the configured rate, and the writer's planner run over
//! both.

use doorsync_clock::SharedClock;
use doorsync_config::Config;
use doorsync_proto::Timestamp;
use doorsync_writer::dry_run::{self, Plan, Rules};
use serde::{Deserialize, Serialize};

use super::OperationError;
use super::kisi_read;
use super::rebuild::Rebuilt;
use crate::setup;

/// A dry run's plan, with how much was read to make it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DryRun {
    /// Members rebuilt from the log, and the messages of each stream folded into them.
    pub members: usize,
    pub events: u64,
    pub commands: u64,
    pub outcomes: u64,
    /// Read from Kisi: the managed groups, their assignments, the linked users, and the requests
    /// it took.
    pub groups_read: usize,
    pub assignments_read: usize,
    pub linked_users_read: usize,
    pub requests: u64,
    /// The instant the members were evaluated at.
    pub at: Timestamp,
    pub rules: Rules,
    pub plan: Plan,
}

/// Compares what `rebuilt` members should have now with what Kisi holds, under the configured
/// mapping, policy and reconciliation rules.
pub async fn dry_run(rebuilt: &Rebuilt, config: &Config, clock: &SharedClock) -> Result<DryRun, OperationError> {
    let configured = setup::mapping(config).await?;
    let mapping = rebuilt.mapping(&configured);
    let policy = config.access_policy();
    let kisi = setup::kisi_client(config)?;
    let now = clock.now();
    let wanted = dry_run::to_read(&rebuilt.members, &mapping, &policy, now);
    let read =
        kisi_read::read(&kisi, clock, config.kisi.requests_per_second, &wanted, &config.kisi.adopt_created_by).await?;
    let rules = Rules {
        touch_foreign_assignments: config.reconcile.touch_foreign_assignments,
        manage_found_users: config.kisi.manage_found_users,
    };
    let plan = dry_run::plan(&rebuilt.members, &mapping, &policy, now, &read.view, rules);
    Ok(DryRun {
        members: rebuilt.members.len(),
        events: rebuilt.events,
        commands: rebuilt.commands,
        outcomes: rebuilt.outcomes,
        groups_read: read.view.assignments.len(),
        assignments_read: read.view.assignments.values().map(Vec::len).sum(),
        linked_users_read: read.view.users.len(),
        requests: read.requests,
        at: now,
        rules,
        plan,
    })
}
