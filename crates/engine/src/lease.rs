//! Partition leases: each partition is processed by exactly one live engine.
//!
//! Each partition has a [`doorsync_log::Lease`] `lease.<partition>` in the leases bucket, owned
//! by the engine's id. Engines register under `engine.<id>` (the same record, written again every
//! round), count the live ones, and each holds about its share of the partitions: every third
//! of the lease time it takes free or expired leases while below its share and gives back extras
//! above it. Each lease held is renewed on the clock by its own [`Lease::hold`]; one that is lost
//! (another engine took it, or it went unrenewed for too long) has its shard killed at once,
//! without a checkpoint, since the new owner may already be writing one. Another engine takes a
//! lease only after it has expired, so two engines never process a partition at the same time
//! (given clocks that agree to well within a third of the lease time).

use std::collections::BTreeMap;
use std::sync::Arc;

use doorsync_log::{Lease, LeaseHolder, Tenure};
use doorsync_proto::Partition;
use ractor::{Actor, ActorRef, ActorStatus};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::feed::History;
use crate::shard::{ShardActor, ShardArgs, ShardMsg};
use crate::{CALL_TIMEOUT_MS, EngineError, Inner};

const ENGINE_PREFIX: &str = "engine.";

/// A partition this engine holds: its shard, and the lease renewed for it meanwhile.
pub(crate) struct Held {
    pub(crate) shard: ActorRef<ShardMsg>,
    lease: Arc<Lease>,
    tenure: Arc<Tenure>,
    stop_holding: watch::Sender<bool>,
    holding: JoinHandle<()>,
}

impl Held {
    /// Stops renewing the lease and leaves it to expire, as a crash would.
    pub(crate) fn abandon(&self) {
        self.holding.abort();
    }

    /// Stops renewing the lease, waiting for a renewal under way, and gives the lease back so
    /// that another engine can take it at once.
    async fn give_back(self) {
        self.stop_holding.send_replace(true);
        if let Err(error) = self.holding.await {
            tracing::warn!(lease = %self.lease.key(), %error, "the lease's renewal stopped abnormally");
        }
        self.lease.release(&self.tenure).await;
    }

    fn lost(&self) -> bool {
        *self.tenure.watch_lost().borrow()
    }
}

fn partition_lease(inner: &Inner, partition: Partition) -> Lease {
    lease(inner, format!("lease.{partition}"))
}

fn registration(inner: &Inner) -> Lease {
    lease(inner, registration_key(inner))
}

fn registration_key(inner: &Inner) -> String {
    format!("{ENGINE_PREFIX}{}", inner.engine_id)
}

fn lease(inner: &Inner, key: String) -> Lease {
    let shared = &inner.shared;
    Lease::new(Arc::clone(&shared.leases), key, inner.engine_id.clone(), inner.lease_ttl, Arc::clone(&shared.clock))
}

/// Balances the leases every third of their time, on the clock, until the engine shuts down;
/// then gives every lease back.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.subscribe();
    let clock = Arc::clone(&inner.shared.clock);
    let every = inner.lease_ttl / 3;
    loop {
        tokio::select! {
            () = clock.sleep_until(clock.now() + every) => {}
            // `wait_for` also sees a shutdown sent before this task first ran, which `changed`
            // would wait past until the next round.
            _ = shutdown.wait_for(|stopping| *stopping) => break,
        }
        if let Err(error) = balance(&inner, History::ReadOwn).await {
            tracing::warn!(engine = %inner.engine_id, %error, "balancing partition leases failed; retrying");
        }
    }
    release_all(&inner).await;
}

/// One round: forget shards that stopped or whose lease was lost, and take or give back
/// partitions to hold this engine's share. Returns the shards it started.
pub(crate) async fn balance(
    inner: &Arc<Inner>,
    history: History,
) -> Result<Vec<(Partition, ActorRef<ShardMsg>)>, EngineError> {
    registration(inner).try_acquire().await?;
    let live_engines = count_live_engines(inner).await?;
    let partitions = inner.shared.layout.subjects.partitions();
    let share = partitions.div_ceil(live_engines.max(1));

    let mut started = Vec::new();
    let mut shards = inner.shards.lock().await;
    // A lost lease's shard was killed as the loss was noticed (see `start_shard`).
    shards.retain(|partition, held| {
        if held.lost() {
            held.abandon();
            return false;
        }
        let stopped = matches!(held.shard.get_status(), ActorStatus::Stopped | ActorStatus::Stopping);
        if stopped {
            tracing::warn!(engine = %inner.engine_id, %partition, "shard stopped; its lease will be taken again");
            held.abandon();
        }
        !stopped
    });
    for partition in inner.shared.layout.subjects.all_partitions() {
        if shards.contains_key(&partition) {
            if shards.len() as u32 > share
                && let Some(held) = shards.remove(&partition)
            {
                stop_gracefully(&held.shard).await;
                held.give_back().await;
                tracing::info!(engine = %inner.engine_id, %partition, "gave partition back to rebalance");
            }
        } else if (shards.len() as u32) < share {
            let lease = Arc::new(partition_lease(inner, partition));
            if let Some(tenure) = lease.try_acquire().await? {
                let held = start_shard(inner, partition, history, lease, tenure).await?;
                started.push((partition, held.shard.clone()));
                shards.insert(partition, held);
            }
        }
    }
    Ok(started)
}

async fn count_live_engines(inner: &Inner) -> Result<u32, EngineError> {
    let kv = &*inner.shared.leases;
    let now = inner.shared.clock.now();
    let mut live = 0;
    for key in kv.keys().await?.into_iter().filter(|key| key.starts_with(ENGINE_PREFIX)) {
        if LeaseHolder::read(kv, &key, now).await?.is_some() {
            live += 1;
        }
    }
    Ok(live)
}

/// Starts the partition's shard and renews its lease until told to stop; a lease lost kills the
/// shard.
async fn start_shard(
    inner: &Inner,
    partition: Partition,
    history: History,
    lease: Arc<Lease>,
    tenure: Arc<Tenure>,
) -> Result<Held, EngineError> {
    let args = ShardArgs { partition, shared: Arc::clone(&inner.shared), history };
    let (shard, _) = ShardActor::spawn(None, ShardActor, args)
        .await
        .map_err(|source| EngineError::Spawn { what: format!("the shard of partition {partition}"), source })?;
    tracing::info!(engine = %inner.engine_id, %partition, "took partition lease");
    let (stop_holding, stopped) = watch::channel(false);
    let holding = tokio::spawn({
        let (lease, tenure, shard) = (Arc::clone(&lease), Arc::clone(&tenure), shard.clone());
        let engine = inner.engine_id.clone();
        async move {
            lease.hold(Arc::clone(&tenure), stopped).await;
            if *tenure.watch_lost().borrow() {
                tracing::warn!(%engine, %partition, "lost partition lease; stopping its shard");
                shard.kill();
            }
        }
    });
    Ok(Held { shard, lease, tenure, stop_holding, holding })
}

async fn stop_gracefully(shard: &ActorRef<ShardMsg>) {
    match ractor::call_t!(shard, ShardMsg::Stop, CALL_TIMEOUT_MS) {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "shard stopped without a final checkpoint"),
        Err(_) => shard.kill(),
    }
}

/// On shutdown: checkpoint and stop every shard, then give its lease back so another engine can
/// take it at once instead of waiting out the lease.
async fn release_all(inner: &Inner) {
    let shards: BTreeMap<Partition, Held> = std::mem::take(&mut *inner.shards.lock().await);
    for held in shards.into_values() {
        stop_gracefully(&held.shard).await;
        held.give_back().await;
    }
    if let Err(error) = inner.shared.leases.delete(&registration_key(inner)).await {
        tracing::warn!(engine = %inner.engine_id, %error, "removing the engine's registration failed; it lapses on its own");
    }
}
