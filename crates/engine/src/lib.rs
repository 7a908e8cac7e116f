//! The access engine: turns the event log into commands for the Kisi writer.
//!
//! An engine owns some of the deployment's partitions, each through a [`doorsync_log::Lease`]
//! (`lease.<partition>` in the leases bucket, see the `lease` module), so that several engine
//! processes split the members and take over from one that stops. [`start`] returns an
//! [`EngineHandle`]; [`EngineSettings`] is the configuration's `[engine]` section, so a key has one
//! name and one default.
//!
//! For each owned partition a shard actor (`shard.rs`, the orchestration only) feeds every member's
//! messages to that member's actor (`member.rs`), spawned on the first message, passivated (its
//! snapshot `member.<id>` saved, the actor stopped) when idle, and restarted after a crash from its
//! snapshot and its own subjects in the log. The shard's parts:
//!
//! * `feed.rs` reads the partition from the log, paced on the shard;
//! * `checkpoint.rs` writes `checkpoint.<partition>`: how far the snapshots reach, the members and
//!   their wake-ups, and the digest of the mapping and policy they were evaluated with;
//! * `schedule.rs` is the pure `Schedule` of wake-ups (each member's next evaluation, and the
//!   shard's housekeeping), with its own unit tests; the shard's one timer waits on the
//!   [`Clock`](doorsync_clock::Clock) for it. The engine reads time only from the `Clock`.
//!
//! A member actor folds its messages with the pure functions of `doorsync-access`, evaluates after
//! every change once its partition is caught up, appends the commands that close the gap, and asks
//! to be woken at its `next_change`. A command's id comes from its content and the time of the
//! event that shaped it (the member's last event, or the last mapping change), and it carries the
//! window edge it is due to ([`doorsync_access::window_edge`]).
//!
//! At start the engine reads each stream once for all the shards it starts with and routes the
//! messages by partition (`history.rs`); shards taken over later read their own partition. A shard
//! rebuilding without a checkpoint folds members that have no actor itself and starts their actors
//! with that state when evaluation begins: during a replay the cost is moving messages, not folding
//! them.
//!
//! Rules the code keeps:
//!
//! * No member is evaluated before its partition has caught up with the log, so no command is ever
//!   based on half a history; an overdue wake-up waits for it too.
//! * A start with a mapping or policy other than the checkpoint's evaluates every member once
//!   caught up. A member's wake-up is cleared only by the evaluation that replaces it, so a stop in
//!   between keeps it.
//! * A message of a newer schema halts its partition; bytes that are no doorsync message are
//!   skipped and listed ([`SkippedMessage`]).
//! * A shard runs only while its engine holds the partition's lease: the engine stops a shard
//!   before its lease can lapse, and takes a lease only once it has lapsed.
//!
//! [`explain`] rebuilds one member from its own subjects with the same fold and says which booking,
//! pass or contract opens which group, what grants nothing and why, and what the writer reported
//! Kisi holds; [`members_with_email`] finds a member by email. [`EngineHandle::find`] searches the
//! members by name or email and by what they can open now or soon, inside each shard over the
//! [`MemberListing`] it keeps of each member (`directory.rs`). The engine's metrics are defined in
//! [`metric_definitions`].
#![forbid(unsafe_code)]

mod checkpoint;
mod directory;
mod error;
mod explain;
mod feed;
mod history;
mod lease;
mod member;
pub mod metric_definitions;
mod schedule;
mod shard;
mod shared;
mod skipped;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use doorsync_access::{AccessPolicy, Mapping, MemberState};
use doorsync_clock::SharedClock;
use doorsync_layout::Layout;
use doorsync_log::EventLog;
use doorsync_proto::{MemberId, Partition};
use ractor::ActorRef;
use serde::Deserialize;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

pub use directory::{KisiUser, ListingFilter, MemberListing, MemberMatches, MemberSearch};
pub use error::EngineError;
pub use explain::{Explanation, HistoryEntry, HistoryKind, explain, explain_named, members_with_email};
pub use shard::ShardStats;
pub use skipped::SkippedMessage;

use crate::shard::ShardMsg;
use crate::shared::Shared;

const CALL_TIMEOUT_MS: u64 = 30_000;

/// How an engine runs.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Unique among the engines sharing a log: it names the owner of each partition lease.
    pub engine_id: String,
    pub layout: Layout,
    pub policy: AccessPolicy,
    /// The mapping from the configuration; it wins over mappings that arrive as events.
    pub mapping: Mapping,
    /// The configuration's `[engine]` section.
    pub settings: EngineSettings,
    /// The least time, on the clock, between two of a shard's looks for idle members and a due
    /// checkpoint: a shard looks when one can first be due, and no sooner than this after the last.
    pub housekeeping_every: Duration,
}

impl EngineOptions {
    pub fn new(engine_id: impl Into<String>, layout: Layout) -> Self {
        Self {
            engine_id: engine_id.into(),
            layout,
            policy: AccessPolicy::default(),
            mapping: Mapping::default(),
            settings: EngineSettings::default(),
            housekeeping_every: Duration::from_secs(5),
        }
    }
}

/// The engine's settings an operator chooses: the configuration's `[engine]` section is this
/// type, so each key has one name and one default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// A partition whose lease was not renewed for this long is taken over by another engine.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// A member with no message or wakeup for this long is snapshotted and its actor stopped.
    #[serde(with = "humantime_serde")]
    pub passivate_after: Duration,
    #[serde(with = "humantime_serde")]
    pub checkpoint_every: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(15),
            passivate_after: Duration::from_secs(600),
            checkpoint_every: Duration::from_secs(60),
        }
    }
}

/// A running engine. Cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle").field("engine_id", &self.inner.engine_id).finish_non_exhaustive()
    }
}

struct Inner {
    engine_id: String,
    shared: Arc<Shared>,
    lease_ttl: Duration,
    shards: Mutex<BTreeMap<Partition, lease::Held>>,
    shutdown: watch::Sender<bool>,
    leases: Mutex<Option<JoinHandle<()>>>,
}

/// Starts an engine: it registers itself, takes its share of the partition leases, and starts
/// a shard for each partition it holds.
pub async fn start(
    options: EngineOptions,
    log: Arc<dyn EventLog>,
    clock: SharedClock,
) -> Result<EngineHandle, EngineError> {
    let kv = log.key_value(&options.layout.engine_bucket).await?;
    let leases = log.key_value(&options.layout.leases_bucket).await?;
    let shared = Arc::new(Shared {
        log,
        kv,
        leases,
        clock,
        layout: options.layout,
        configuration: doorsync_access::configuration_digest(&options.mapping, &options.policy),
        policy: options.policy,
        configured_mapping: options.mapping,
        passivate_after: options.settings.passivate_after,
        checkpoint_every: options.settings.checkpoint_every,
        housekeeping_every: options.housekeeping_every,
    });
    let inner = Arc::new(Inner {
        engine_id: options.engine_id,
        shared,
        lease_ttl: options.settings.lease_ttl,
        shards: Mutex::new(BTreeMap::new()),
        shutdown: watch::Sender::new(false),
        leases: Mutex::new(None),
    });
    let started = lease::balance(&inner, feed::History::Delivered).await?;
    history::deliver(&inner.shared, &started).await?;
    let task = tokio::spawn(lease::run(Arc::clone(&inner)));
    *inner.leases.lock().await = Some(task);
    Ok(EngineHandle { inner })
}

impl EngineHandle {
    pub fn engine_id(&self) -> &str {
        &self.inner.engine_id
    }

    pub async fn owned_partitions(&self) -> Vec<Partition> {
        self.inner.shards.lock().await.keys().copied().collect()
    }

    /// The member's state as its actor holds it (spawning it from its snapshot if passivated);
    /// `None` for a member this engine has never seen.
    pub async fn member(&self, member: MemberId) -> Result<Option<MemberState>, EngineError> {
        let shard = self.shard_of(member).await?;
        ractor::call_t!(shard, |reply| ShardMsg::Inspect { member, reply }, CALL_TIMEOUT_MS)
            .map_err(|_| EngineError::ShardGone)
    }

    /// Every member the owned partitions know, live or passivated, in id order.
    pub async fn members(&self) -> Result<Vec<MemberId>, EngineError> {
        let mut members = Vec::new();
        for shard in self.shards().await {
            members.extend(
                ractor::call_t!(shard, ShardMsg::Members, CALL_TIMEOUT_MS).map_err(|_| EngineError::ShardGone)?,
            );
        }
        members.sort_unstable();
        Ok(members)
    }

    /// A page of the members matching `search`, found by every owned shard among its members'
    /// listings (name, email, Kisi user, what opens now and next), so a search among 50,000
    /// members moves a page, not their states.
    pub async fn find(&self, search: &MemberSearch) -> Result<MemberMatches, EngineError> {
        let mut parts = Vec::new();
        for shard in self.shards().await {
            let asked = Box::new(search.clone());
            parts.push(
                ractor::call_t!(shard, |reply| ShardMsg::Find { search: asked, reply }, CALL_TIMEOUT_MS)
                    .map_err(|_| EngineError::ShardGone)?,
            );
        }
        Ok(MemberMatches::merge(parts, search))
    }

    /// The mapping members are evaluated with: the configured mapping laid over the mapping
    /// events, as the lowest owned partition has read them; the configured mapping alone while
    /// this engine owns no partition.
    pub async fn mapping(&self) -> Result<Mapping, EngineError> {
        match self.shards().await.first() {
            Some(shard) => {
                ractor::call_t!(shard, ShardMsg::Mapping, CALL_TIMEOUT_MS).map_err(|_| EngineError::ShardGone)
            }
            None => Ok(self.inner.shared.configured_mapping.clone()),
        }
    }

    /// The mapping from the configuration, which wins over mapping events (what [`explain`]
    /// takes as its configured mapping).
    pub fn configured_mapping(&self) -> &Mapping {
        &self.inner.shared.configured_mapping
    }

    /// The policy members are evaluated with.
    pub fn policy(&self) -> &AccessPolicy {
        &self.inner.shared.policy
    }

    pub async fn stats(&self) -> Vec<ShardStats> {
        let shards = self.shards().await;
        let mut stats = Vec::with_capacity(shards.len());
        for shard in shards {
            if let Ok(shard_stats) = ractor::call_t!(shard, ShardMsg::Stats, CALL_TIMEOUT_MS) {
                stats.push(shard_stats);
            }
        }
        stats
    }

    /// True once every owned partition has replayed its history; false while one of them is
    /// down (a shard that cannot read its log answers no stats).
    pub async fn caught_up(&self) -> bool {
        let owned = self.inner.shards.lock().await.len();
        let stats = self.stats().await;
        !stats.is_empty() && stats.len() == owned && stats.iter().all(|shard| shard.caught_up)
    }

    /// Snapshots every live member and writes every owned partition's checkpoint.
    pub async fn checkpoint(&self) -> Result<(), EngineError> {
        let shards = self.shards().await;
        for shard in shards {
            ractor::call_t!(shard, ShardMsg::Checkpoint, CALL_TIMEOUT_MS).map_err(|_| EngineError::ShardGone)??;
        }
        Ok(())
    }

    /// Kills the member's actor as a crash would, for fault tests and drills: the shard
    /// restarts it from its snapshot and the log.
    pub async fn kill_member_actor(&self, member: MemberId) -> Result<(), EngineError> {
        let shard = self.shard_of(member).await?;
        ractor::call_t!(shard, |reply| ShardMsg::Kill { member, reply }, CALL_TIMEOUT_MS)
            .map_err(|_| EngineError::ShardGone)
    }

    /// Stops at once as a crash would, for fault tests and drills: no checkpoint, no snapshot,
    /// leases left to expire. An engine started with the same id takes its leases back at once
    /// and resumes from the last checkpoint and the log.
    pub async fn crash(self) {
        if let Some(task) = self.inner.leases.lock().await.take() {
            task.abort();
        }
        let shards = std::mem::take(&mut *self.inner.shards.lock().await);
        for held in shards.values() {
            held.abandon();
            if ractor::call_t!(held.shard, ShardMsg::Crash, CALL_TIMEOUT_MS).is_err() {
                held.shard.kill();
            }
        }
    }

    /// Stops taking work, checkpoints and stops every shard, and gives up its leases.
    pub async fn shutdown(self) {
        self.inner.shutdown.send_replace(true);
        if let Some(task) = self.inner.leases.lock().await.take() {
            let _ = task.await;
        }
    }

    /// The owned partitions' shards, in partition order.
    async fn shards(&self) -> Vec<ActorRef<ShardMsg>> {
        self.inner.shards.lock().await.values().map(|held| held.shard.clone()).collect()
    }

    async fn shard_of(&self, member: MemberId) -> Result<ActorRef<ShardMsg>, EngineError> {
        let partition = self.inner.shared.layout.subjects.partition_of(member);
        let shards = self.inner.shards.lock().await;
        shards.get(&partition).map(|held| held.shard.clone()).ok_or(EngineError::NotOwned { partition })
    }
}
