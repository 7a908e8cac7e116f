//! The engine's Prometheus metrics, computed at each scrape from the latest statistics of the
//! partitions it owns.

use doorsync_metrics::{Published, counter, gauge, labelled_gauge};
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use crate::ShardStats;

/// The engine's metrics, reporting the statistics of the owned partitions last given.
pub type EngineMetrics = Published<Vec<ShardStats>>;

/// Registers the engine's metrics in `registry`.
pub fn register(registry: &mut Registry) -> EngineMetrics {
    Published::register(registry, |shards: &Vec<ShardStats>, encoder| encode(shards, encoder))
}

fn encode(shards: &[ShardStats], e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    gauge(e, "engine_partitions_owned", "Partitions this engine holds the lease of", shards.len())?;
    let caught_up = shards.iter().filter(|shard| shard.caught_up).count();
    gauge(e, "engine_partitions_caught_up", "Owned partitions that have replayed the log", caught_up)?;
    let sum = |field: fn(&ShardStats) -> usize| shards.iter().map(field).sum::<usize>();
    gauge(e, "engine_members_known", "Members the owned partitions know", sum(|s| s.known_members))?;
    gauge(e, "engine_members_live", "Members with a running actor (the rest are passivated)", sum(|s| s.live_members))?;
    gauge(e, "engine_wakeups_scheduled", "Members waiting for a window edge", sum(|s| s.scheduled_wakeups))?;
    let commands: u64 = shards.iter().map(|shard| shard.commands_emitted).sum();
    counter(e, "engine_commands_emitted", "Commands for Kisi appended to the log", commands)?;
    let restarts: u64 = shards.iter().map(|shard| shard.member_restarts).sum();
    counter(e, "engine_member_restarts", "Member actors restarted after a crash", restarts)?;
    let skipped: u64 = shards.iter().map(|shard| shard.skipped_messages).sum();
    counter(
        e,
        "engine_skipped_messages",
        "Messages in the log that are not doorsync's, skipped (alert on any: something writes to the log)",
        skipped,
    )?;
    labelled_gauge(
        e,
        (
            "engine_replay_behind_messages",
            "Messages of the events stream an owned partition still has to replay (at most; 0 once caught up)",
            "partition",
        ),
        shards.iter().filter_map(|shard| Some((shard.partition, shard.replay_behind_messages?))),
    )?;
    labelled_gauge(
        e,
        (
            "engine_replay_seconds",
            "Seconds an owned partition has spent replaying the log (so far, or in all once caught up)",
            "partition",
        ),
        shards.iter().map(|shard| (shard.partition, shard.replay_seconds)),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use doorsync_proto::Partition;

    use super::*;

    #[test]
    fn replay_progress_is_scraped_per_partition_and_skipped_messages_summed() {
        let replaying = ShardStats {
            partition: Partition(3),
            replay_behind_messages: Some(1_500),
            replay_seconds: 42,
            skipped_messages: 2,
            ..ShardStats::default()
        };
        let unknown_end = ShardStats {
            partition: Partition(5),
            replay_behind_messages: None,
            skipped_messages: 1,
            ..ShardStats::default()
        };
        let mut registry = Registry::with_prefix("doorsync");
        register(&mut registry).update(vec![replaying, unknown_end]);
        let mut scraped = String::new();
        prometheus_client::encoding::text::encode(&mut scraped, &registry).unwrap();
        let lines: Vec<&str> = scraped.lines().collect();

        assert!(lines.contains(&"doorsync_engine_replay_behind_messages{partition=\"3\"} 1500"), "{scraped}");
        assert!(!scraped.contains("doorsync_engine_replay_behind_messages{partition=\"5\"}"), "{scraped}");
        assert!(lines.contains(&"doorsync_engine_replay_seconds{partition=\"3\"} 42"), "{scraped}");
        assert!(lines.contains(&"doorsync_engine_skipped_messages_total 3"), "{scraped}");
        assert!(lines.contains(&"doorsync_engine_partitions_owned 2"), "{scraped}");
    }
}
