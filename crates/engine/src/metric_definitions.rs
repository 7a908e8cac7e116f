//! The engine's Prometheus metrics, computed at each scrape from the latest statistics of the
//! partitions it owns.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::ShardStats;

/// The engine's metrics, reporting what [`EngineMetrics::update`] was last given (nothing before).
#[derive(Debug, Clone, Default)]
pub struct EngineMetrics {
    latest: Arc<Mutex<Option<Vec<ShardStats>>>>,
}

impl EngineMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register_collector(Box::new(metrics.clone()));
        metrics
    }

    pub fn update(&self, shards: &[ShardStats]) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(shards.to_vec());
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: usize) -> Result<(), std::fmt::Error> {
    let value = i64::try_from(value).unwrap_or(i64::MAX);
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    ConstCounter::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

/// A gauge with one series per partition.
fn partition_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (u32, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (partition, value) in series {
        let labels = [("partition", partition.to_string())];
        ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for EngineMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(shards) = self.latest.lock().unwrap_or_else(PoisonError::into_inner).clone() else { return Ok(()) };
        let e = &mut encoder;
        gauge(e, "engine_partitions_owned", "Partitions this engine holds the lease of", shards.len())?;
        let caught_up = shards.iter().filter(|shard| shard.caught_up).count();
        gauge(e, "engine_partitions_caught_up", "Owned partitions that have replayed the log", caught_up)?;
        let sum = |field: fn(&ShardStats) -> usize| shards.iter().map(field).sum::<usize>();
        gauge(e, "engine_members_known", "Members the owned partitions know", sum(|s| s.known_members))?;
        gauge(
            e,
            "engine_members_live",
            "Members with a running actor (the rest are passivated)",
            sum(|s| s.live_members),
        )?;
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
        partition_gauge(
            e,
            "engine_replay_behind_messages",
            "Messages of the events stream an owned partition still has to replay (at most; 0 once caught up)",
            shards.iter().filter_map(|shard| Some((shard.partition, shard.replay_behind_messages?))),
        )?;
        partition_gauge(
            e,
            "engine_replay_seconds",
            "Seconds an owned partition has spent replaying the log (so far, or in all once caught up)",
            shards.iter().map(|shard| (shard.partition, shard.replay_seconds)),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn replay_progress_is_scraped_per_partition_and_skipped_messages_summed() {
        let replaying = ShardStats {
            partition: 3,
            replay_behind_messages: Some(1_500),
            replay_seconds: 42,
            skipped_messages: 2,
            ..ShardStats::default()
        };
        let unknown_end =
            ShardStats { partition: 5, replay_behind_messages: None, skipped_messages: 1, ..ShardStats::default() };
        let mut registry = Registry::with_prefix("doorsync");
        EngineMetrics::register(&mut registry).update(&[replaying, unknown_end]);
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
