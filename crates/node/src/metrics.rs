//! The roles' statuses as Prometheus metrics, computed at each scrape from the latest status.

use std::sync::{Arc, Mutex, PoisonError};

use doorsync_admin::Metrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::status::Status;

/// The latest [`Status`], read by the scrape.
#[derive(Debug, Clone, Default)]
pub(crate) struct StatusMetrics {
    latest: Arc<Mutex<Option<Status>>>,
}

impl StatusMetrics {
    pub(crate) fn register(metrics: &Metrics) -> Self {
        let collector = Self::default();
        metrics.register_collector(collector.clone());
        collector
    }

    pub(crate) fn update(&self, status: &Status) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(status.clone());
    }
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    ConstCounter::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> Result<(), std::fmt::Error> {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// A counter with one label, one series per `(label value, count)`.
fn labelled_counter<'v>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    series: impl IntoIterator<Item = (&'v str, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in series {
        let labels = [(label, value)];
        ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A counter of seconds, from milliseconds.
fn seconds_counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    millis: u64,
) -> Result<(), std::fmt::Error> {
    ConstCounter::new(seconds(millis)).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

/// A gauge with one series per partition.
fn partition_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (u32, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (partition, value) in series {
        let labels = [("partition", partition.to_string())];
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The writer's window-edge lag as a histogram in seconds, from its bucket counts.
fn window_edge_lag(
    encoder: &mut DescriptorEncoder,
    lag: &doorsync_writer::WindowEdgeLag,
) -> Result<(), std::fmt::Error> {
    let buckets: Vec<(f64, u64)> =
        lag.buckets().map(|(bound, count)| (bound.map_or(f64::INFINITY, seconds), count)).collect();
    let mut histogram = encoder.encode_descriptor(
        "writer_window_edge_lag_seconds",
        "Seconds from the window edge that made a command necessary (a stretch of access beginning or ending) \
         to Kisi holding it",
        None,
        MetricType::Histogram,
    )?;
    histogram.encode_histogram::<NoLabelSet>(seconds(lag.sum_ms), lag.count(), &buckets, None)
}

fn seconds(millis: u64) -> f64 {
    // Exact below 2^53 ms, some 285,000 years.
    millis as f64 / 1_000.0
}

fn flag(on: bool) -> i64 {
    i64::from(on)
}

fn count(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Collector for StatusMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(status) = self.latest.lock().unwrap_or_else(PoisonError::into_inner).clone() else { return Ok(()) };
        let e = &mut encoder;
        if let Some(shards) = &status.engine {
            gauge(e, "engine_partitions_owned", "Partitions this engine holds the lease of", count(shards.len()))?;
            let caught_up = shards.iter().filter(|shard| shard.caught_up).count();
            gauge(e, "engine_partitions_caught_up", "Owned partitions that have replayed the log", count(caught_up))?;
            let sum = |field: fn(&doorsync_engine::ShardStats) -> usize| shards.iter().map(field).sum::<usize>();
            gauge(e, "engine_members_known", "Members the owned partitions know", count(sum(|s| s.known_members)))?;
            gauge(
                e,
                "engine_members_live",
                "Members with a running actor (the rest are passivated)",
                count(sum(|s| s.live_members)),
            )?;
            gauge(
                e,
                "engine_wakeups_scheduled",
                "Members waiting for a window edge",
                count(sum(|s| s.scheduled_wakeups)),
            )?;
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
                shards.iter().filter_map(|shard| {
                    let behind = shard.replay_behind_messages?;
                    Some((shard.partition, i64::try_from(behind).unwrap_or(i64::MAX)))
                }),
            )?;
            partition_gauge(
                e,
                "engine_replay_seconds",
                "Seconds an owned partition has spent replaying the log (so far, or in all once caught up)",
                shards.iter().map(|shard| (shard.partition, i64::try_from(shard.replay_seconds).unwrap_or(i64::MAX))),
            )?;
        }
        if let Some(writer) = &status.writer {
            let active = matches!(writer.role, doorsync_writer::WriterRole::Active);
            gauge(e, "writer_active", "1 while this writer holds the account's lease and calls Kisi", flag(active))?;
            gauge(
                e,
                "writer_paused",
                "1 while Kisi refuses the API key (check KISI_API_KEY)",
                flag(writer.paused.is_some()),
            )?;
            counter(
                e,
                "writer_credential_alerts",
                "Times the writer paused because Kisi refused the API key",
                writer.credential_alerts,
            )?;
            gauge(
                e,
                "writer_backlog_keys",
                "Member users and memberships with a command not yet carried out",
                count(writer.backlog_keys),
            )?;
            gauge(e, "writer_backlog_commands", "Commands held unacknowledged", count(writer.backlog_commands))?;
            let calls = &writer.calls;
            labelled_counter(
                e,
                "kisi_calls",
                "Kisi API requests by how they ended",
                "outcome",
                [
                    ("succeeded", calls.succeeded),
                    ("rate_limited", calls.rate_limited),
                    ("server_error", calls.server_errors),
                    ("timeout", calls.timeouts),
                    ("transport_error", calls.transport_errors),
                    ("credentials_refused", calls.credentials_refused),
                    ("refused", calls.refused),
                ],
            )?;
            counter(
                e,
                "writer_commands_applied",
                "Commands carried out in Kisi (or found true) and acknowledged",
                writer.commands_applied,
            )?;
            counter(
                e,
                "writer_commands_superseded",
                "Commands overtaken by a newer one for the same key",
                writer.commands_superseded,
            )?;
            counter(
                e,
                "writer_dead_letters",
                "Commands Kisi refused for good, dead-lettered with their reason",
                writer.dead_letters,
            )?;
            let limiter = &writer.limiter;
            counter(e, "kisi_limiter_waits", "Kisi requests the writer's rate limiter held back", limiter.waits)?;
            seconds_counter(
                e,
                "kisi_limiter_waited_seconds",
                "Seconds Kisi requests waited for the writer's rate limiter",
                limiter.waited_ms,
            )?;
            seconds_counter(
                e,
                "kisi_limiter_budget_used_seconds",
                "Kisi's request budget booked, one interval of the configured rate per request: its rate is the \
                 limiter's utilisation (1 = the whole budget)",
                limiter.budget_used_ms,
            )?;
            window_edge_lag(e, &writer.window_edge_lag)?;
            gauge(
                e,
                "writer_repair_held",
                "1 while a mass revocation waits for an operator (doorsync reconcile --confirm)",
                flag(writer.held_repair.is_some()),
            )?;
            gauge(
                e,
                "writer_retry_after_hold_until_seconds",
                "Unix time until which a Retry-After from Kisi holds every request back (at most 5 minutes from \
                 when it came; 0 when none was asked for)",
                writer.retry_after_hold.map_or(0, |hold| hold.until.as_unix_millis().div_euclid(1_000)),
            )?;
            gauge(
                e,
                "writer_refused_groups",
                "Mapped Kisi groups the API key may not use (403 while the key works): their commands are \
                 dead-lettered; check the [[mapping]] entries",
                count(writer.refused_groups.len()),
            )?;
        }
        if let Some(ingest) = &status.ingest {
            labelled_counter(
                e,
                "ingest_events_appended",
                "Events appended from Nexudus, by type",
                "type",
                ingest.appended.iter().map(|(kind, appended)| (kind.as_str(), *appended)),
            )?;
            gauge(
                e,
                "ingest_parked_records",
                "Nexudus records that could not be read, waiting for a fix",
                count(ingest.parked.len()),
            )?;
            counter(e, "ingest_parkings", "Times a Nexudus record was parked", ingest.parkings)?;
            gauge(
                e,
                "ingest_retrying_records",
                "Nexudus records a webhook, poll or sweep asked for whose reading failed, waiting in the durable \
                 retry set to be read again",
                count(ingest.retrying.len()),
            )?;
            let hooks = &ingest.webhooks;
            labelled_counter(
                e,
                "ingest_webhooks",
                "Webhook deliveries by answer",
                "answer",
                [
                    ("accepted", hooks.accepted),
                    ("refused", hooks.refused),
                    ("unreadable", hooks.unreadable),
                    ("unknown_action", hooks.unknown_action),
                    ("failed", hooks.failed),
                    ("standby", hooks.standby),
                ],
            )?;
            gauge(
                e,
                "ingest_active",
                "1 while this ingestor holds the ingest lease and reads Nexudus, 0 while it stands by",
                i64::from(ingest.role == doorsync_ingest::IngestRole::Active),
            )?;
            gauge(
                e,
                "ingest_webhooks_inactive",
                "Webhooks Nexudus has disabled (re-enable them in Nexudus)",
                count(ingest.webhook_health.inactive.len()),
            )?;
            counter(e, "ingest_webhook_alerts", "Health checks that found a disabled webhook", ingest.webhook_alerts)?;
            gauge(
                e,
                "ingest_memberless_bookings",
                "Live bookings with no member, which grant nothing",
                i64::try_from(ingest.memberless_bookings).unwrap_or(i64::MAX),
            )?;
            counter(e, "ingest_duplicates", "Appends the log recognised as already stored", ingest.duplicates)?;
            let limiter = &ingest.nexudus_limiter;
            counter(e, "nexudus_limiter_waits", "Nexudus requests held back by its request limits", limiter.waits)?;
            seconds_counter(
                e,
                "nexudus_limiter_waited_seconds",
                "Seconds Nexudus requests waited for its request limits",
                limiter.waited_ms,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use doorsync_engine::ShardStats;
    use doorsync_ingest::{IngestStatus, LimiterWaits};
    use doorsync_proto::Timestamp;
    use doorsync_writer::{CallStats, LimiterStats, WindowEdgeLag, WriterRole, WriterStatus};

    use super::*;

    fn writer_status() -> WriterStatus {
        let mut window_edge_lag = WindowEdgeLag::default();
        let edge = Timestamp::from_unix_millis(1_000_000);
        window_edge_lag.observe(edge, Timestamp::from_unix_millis(1_000_300));
        window_edge_lag.observe(edge, Timestamp::from_unix_millis(1_090_000));
        WriterStatus {
            role: WriterRole::Active,
            paused: None,
            credential_alerts: 0,
            backlog_keys: 0,
            backlog_commands: 0,
            calls: CallStats::default(),
            commands_applied: 2,
            commands_superseded: 0,
            dead_letters: 0,
            held_repair: None,
            last_reconcile: None,
            limiter: LimiterStats { waits: 3, waited_ms: 1_250, budget_used_ms: 2_000 },
            window_edge_lag,
            retry_after_hold: None,
            refused_groups: Vec::new(),
            patch_applies_validity: Some(false),
            found_users_left_alone: 0,
        }
    }

    fn scrape(status: &Status) -> String {
        let metrics = Metrics::default();
        StatusMetrics::register(&metrics).update(status);
        metrics.encode()
    }

    fn assert_has(scraped: &str, line: &str) {
        assert!(scraped.lines().any(|scraped_line| scraped_line == line), "no line {line:?} in:\n{scraped}");
    }

    #[test]
    fn limiter_waits_edge_lag_and_replay_progress_are_scraped() {
        let replaying = ShardStats {
            partition: 3,
            replay_behind_messages: Some(1_500),
            replay_seconds: 42,
            skipped_messages: 2,
            ..ShardStats::default()
        };
        let unknown_end =
            ShardStats { partition: 5, replay_behind_messages: None, skipped_messages: 1, ..ShardStats::default() };
        let ingest =
            IngestStatus { nexudus_limiter: LimiterWaits { waits: 7, waited_ms: 3_500 }, ..IngestStatus::default() };
        let status =
            Status { engine: Some(vec![replaying, unknown_end]), writer: Some(writer_status()), ingest: Some(ingest) };
        let scraped = scrape(&status);

        assert_has(&scraped, "doorsync_kisi_limiter_waits_total 3");
        assert_has(&scraped, "doorsync_kisi_limiter_waited_seconds_total 1.25");
        assert_has(&scraped, "doorsync_kisi_limiter_budget_used_seconds_total 2.0");
        assert_has(&scraped, "doorsync_nexudus_limiter_waits_total 7");
        assert_has(&scraped, "doorsync_nexudus_limiter_waited_seconds_total 3.5");
        assert_has(&scraped, "# TYPE doorsync_writer_window_edge_lag_seconds histogram");
        assert_has(&scraped, "doorsync_writer_window_edge_lag_seconds_count 2");
        assert_has(&scraped, "doorsync_writer_window_edge_lag_seconds_sum 90.3");
        assert_has(&scraped, "doorsync_writer_window_edge_lag_seconds_bucket{le=\"0.5\"} 1");
        assert_has(&scraped, "doorsync_writer_window_edge_lag_seconds_bucket{le=\"60.0\"} 1");
        assert_has(&scraped, "doorsync_writer_window_edge_lag_seconds_bucket{le=\"120.0\"} 2");
        assert_has(&scraped, "doorsync_writer_window_edge_lag_seconds_bucket{le=\"+Inf\"} 2");
        assert_has(&scraped, "doorsync_engine_replay_behind_messages{partition=\"3\"} 1500");
        assert!(
            !scraped.contains("doorsync_engine_replay_behind_messages{partition=\"5\"}"),
            "a partition whose stream end is unknown has no series:\n{scraped}"
        );
        assert_has(&scraped, "doorsync_engine_replay_seconds{partition=\"3\"} 42");
        assert_has(&scraped, "doorsync_engine_skipped_messages_total 3");
    }

    #[test]
    fn a_process_without_a_role_reports_none_of_its_metrics() {
        let scraped = scrape(&Status { engine: None, writer: None, ingest: None });
        for family in ["kisi_limiter", "nexudus_limiter", "window_edge_lag", "engine_replay"] {
            assert!(!scraped.contains(family), "{family} in:\n{scraped}");
        }
    }
}
