//! Partition leases: each partition is processed by exactly one live engine.
//!
//! A lease is a key-value record `lease.<partition>` naming its owner and when it expires,
//! changed only by compare-and-set. Engines register with a heartbeat (`engine.<id>`), count
//! the live ones, and each holds about its share of the partitions: it takes free or expired
//! leases while below its share and gives back extras above it. An engine stops a shard before
//! its lease can expire, and another engine takes a lease only after it has expired, so two
//! engines never process a partition at the same time (given clocks that agree to well within
//! a third of the lease time).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use doorsync_log::{KvEntry, LogError};
use doorsync_proto::Timestamp;
use ractor::{Actor, ActorRef, ActorStatus};
use serde::{Deserialize, Serialize};

use crate::shard::{History, ShardActor, ShardArgs, ShardMsg};
use crate::{CALL_TIMEOUT_MS, EngineError, Inner};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LeaseRecord {
    owner: String,
    expires_at: Timestamp,
}

fn lease_key(partition: u32) -> String {
    format!("lease.{partition}")
}

fn engine_key(engine_id: &str) -> String {
    format!("engine.{engine_id}")
}

pub(crate) async fn run(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.subscribe();
    let renew_every = inner.lease_ttl / 3;
    loop {
        tokio::select! {
            () = tokio::time::sleep(renew_every) => {}
            // `wait_for` also sees a shutdown sent before this task first ran, which `changed`
            // would wait past until the next renewal.
            _ = shutdown.wait_for(|stopping| *stopping) => break,
        }
        if let Err(error) = balance(&inner, History::ReadOwn).await {
            tracing::warn!(engine = %inner.engine_id, %error, "renewing partition leases failed; retrying");
        }
    }
    release_all(&inner).await;
}

/// One round: drop shards whose lease is about to lapse, renew the rest, and take or give back
/// partitions to hold this engine's share. Returns the shards it started.
pub(crate) async fn balance(
    inner: &Arc<Inner>,
    history: History,
) -> Result<Vec<(u32, ActorRef<ShardMsg>)>, EngineError> {
    let mut started = Vec::new();
    let shared = &inner.shared;
    let kv = &shared.leases;
    let now = shared.clock.now();
    let expires_at = Timestamp::from_unix_millis(now.as_unix_millis() + inner.lease_ttl.as_millis() as i64);
    kv.put(&engine_key(&inner.engine_id), encode(&LeaseRecord { owner: inner.engine_id.clone(), expires_at })?).await?;
    let live_engines = count_live_engines(inner, now).await?;
    let partitions = shared.layout.subjects.partitions();
    let share = partitions.div_ceil(live_engines.max(1));

    let mut shards = inner.shards.lock().await;
    shards.retain(|partition, shard| {
        let alive = !matches!(shard.get_status(), ActorStatus::Stopped | ActorStatus::Stopping);
        if !alive {
            tracing::warn!(engine = %inner.engine_id, partition, "shard stopped; its lease will be taken again");
        }
        alive
    });
    for partition in 0..partitions {
        let key = lease_key(partition);
        let entry = kv.get(&key).await?;
        let record = entry.as_ref().map(|entry| decode(&key, entry)).transpose()?;
        let held = shards.contains_key(&partition);
        match record {
            Some(record) if record.owner == inner.engine_id && held => {
                let revision = entry.as_ref().map_or(0, |entry| entry.revision);
                if shards.len() as u32 > share {
                    if let Some(shard) = shards.remove(&partition) {
                        stop_gracefully(&shard).await;
                    }
                    let released = LeaseRecord { owner: inner.engine_id.clone(), expires_at: now };
                    ignore_conflict(kv.update(&key, encode(&released)?, revision).await)?;
                    tracing::info!(engine = %inner.engine_id, partition, "gave partition back to rebalance");
                } else {
                    let renewed = LeaseRecord { owner: inner.engine_id.clone(), expires_at };
                    if let Err(error) = kv.update(&key, encode(&renewed)?, revision).await {
                        if let Some(shard) = shards.remove(&partition) {
                            shard.kill();
                        }
                        return Err(error.into());
                    }
                }
            }
            Some(record) if held => {
                // Someone else holds it: this engine's lease lapsed. Stop at once, without a
                // checkpoint, since the new owner may already be writing one.
                tracing::warn!(engine = %inner.engine_id, partition, owner = %record.owner, "lost partition lease");
                if let Some(shard) = shards.remove(&partition) {
                    shard.kill();
                }
            }
            None if held => {
                if let Some(shard) = shards.remove(&partition) {
                    shard.kill();
                }
            }
            Some(record)
                if (record.expires_at <= now || record.owner == inner.engine_id) && (shards.len() as u32) < share =>
            {
                let revision = entry.as_ref().map_or(0, |entry| entry.revision);
                let taken = LeaseRecord { owner: inner.engine_id.clone(), expires_at };
                if ignore_conflict(kv.update(&key, encode(&taken)?, revision).await)?.is_some() {
                    let shard = start_shard(inner, partition, history).await?;
                    started.push((partition, shard.clone()));
                    shards.insert(partition, shard);
                }
            }
            None if (shards.len() as u32) < share => {
                let taken = LeaseRecord { owner: inner.engine_id.clone(), expires_at };
                if ignore_conflict(kv.create(&key, encode(&taken)?).await)?.is_some() {
                    let shard = start_shard(inner, partition, history).await?;
                    started.push((partition, shard.clone()));
                    shards.insert(partition, shard);
                }
            }
            _ => {}
        }
    }
    Ok(started)
}

async fn count_live_engines(inner: &Inner, now: Timestamp) -> Result<u32, EngineError> {
    let kv = &inner.shared.leases;
    let mut live = 0;
    for key in kv.keys().await?.into_iter().filter(|key| key.starts_with("engine.")) {
        if let Some(entry) = kv.get(&key).await?
            && decode(&key, &entry)?.expires_at > now
        {
            live += 1;
        }
    }
    Ok(live)
}

async fn start_shard(inner: &Inner, partition: u32, history: History) -> Result<ActorRef<ShardMsg>, EngineError> {
    let args = ShardArgs { partition, shared: Arc::clone(&inner.shared), history };
    let (shard, _) = ShardActor::spawn(None, ShardActor, args)
        .await
        .map_err(|error| EngineError::Spawn(format!("shard for partition {partition}: {error}")))?;
    tracing::info!(engine = %inner.engine_id, partition, "took partition lease");
    Ok(shard)
}

async fn stop_gracefully(shard: &ActorRef<ShardMsg>) {
    match ractor::call_t!(shard, ShardMsg::Stop, CALL_TIMEOUT_MS) {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "shard stopped without a final checkpoint"),
        Err(_) => shard.kill(),
    }
}

/// On shutdown: checkpoint and stop every shard, then mark its lease expired so another engine
/// can take it at once instead of waiting out the lease.
async fn release_all(inner: &Inner) {
    let kv = &inner.shared.leases;
    let shards: BTreeMap<u32, ActorRef<ShardMsg>> = std::mem::take(&mut *inner.shards.lock().await);
    let now = inner.shared.clock.now();
    for (partition, shard) in shards {
        stop_gracefully(&shard).await;
        let key = lease_key(partition);
        let Ok(Some(entry)) = kv.get(&key).await else { continue };
        let Ok(record) = decode(&key, &entry) else { continue };
        if record.owner == inner.engine_id {
            let released = LeaseRecord { owner: inner.engine_id.clone(), expires_at: now };
            if let Ok(encoded) = encode(&released) {
                let _ = kv.update(&key, encoded, entry.revision).await;
            }
        }
    }
    let _ = kv.delete(&engine_key(&inner.engine_id)).await;
}

/// A compare-and-set that lost the race is not an error here: another engine got the lease.
fn ignore_conflict(result: Result<u64, LogError>) -> Result<Option<u64>, EngineError> {
    match result {
        Ok(revision) => Ok(Some(revision)),
        Err(LogError::KvConflict { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

fn encode(record: &LeaseRecord) -> Result<Bytes, EngineError> {
    rmp_serde::to_vec_named(record)
        .map(Bytes::from)
        .map_err(|error| EngineError::Lease { key: record.owner.clone(), reason: error.to_string() })
}

fn decode(key: &str, entry: &KvEntry) -> Result<LeaseRecord, EngineError> {
    rmp_serde::from_slice(&entry.value)
        .map_err(|error| EngineError::Lease { key: key.to_owned(), reason: error.to_string() })
}
