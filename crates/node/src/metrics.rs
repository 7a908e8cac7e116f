//! The metrics of the roles this process runs, each role's defined in its own crate
//! (`metric_definitions`), and brought up to date from the status the watcher gathers.

use doorsync_admin::Metrics;
use doorsync_engine::metric_definitions::{self as engine, EngineMetrics};
use doorsync_ingest::metric_definitions::{self as ingest, IngestMetrics};
use doorsync_writer::metric_definitions::{self as writer, WriterMetrics};

use crate::process::RoleSet;
use crate::status::Status;

/// The metrics of each role of the process; a role it does not run has none.
#[derive(Debug, Clone)]
pub(crate) struct RoleMetrics {
    engine: Option<EngineMetrics>,
    writer: Option<WriterMetrics>,
    ingest: Option<IngestMetrics>,
}

impl RoleMetrics {
    pub(crate) fn register(metrics: &Metrics, roles: RoleSet) -> Self {
        metrics.register_with(|registry| Self {
            engine: roles.engine.then(|| engine::register(registry)),
            writer: roles.writer.then(|| writer::register(registry)),
            ingest: roles.ingest.then(|| ingest::register(registry)),
        })
    }

    pub(crate) fn update(&self, status: &Status) {
        if let (Some(metrics), Some(shards)) = (&self.engine, &status.engine) {
            metrics.update(shards.clone());
        }
        if let (Some(metrics), Some(writer)) = (&self.writer, &status.writer) {
            metrics.update(writer.clone());
        }
        if let (Some(metrics), Some(ingest)) = (&self.ingest, &status.ingest) {
            metrics.update(ingest.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use doorsync_engine::ShardStats;
    use doorsync_ingest::{IngestStatus, LimiterWaits};
    use doorsync_proto::{Partition, Timestamp};
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
            kisi_last_ok: None,
            kisi_failing_since: None,
            kisi_failure: None,
            kisi_up: true,
        }
    }

    fn scrape(status: &Status) -> String {
        let metrics = Metrics::default();
        RoleMetrics::register(&metrics, RoleSet::ALL).update(status);
        metrics.encode()
    }

    fn assert_has(scraped: &str, line: &str) {
        assert!(scraped.lines().any(|scraped_line| scraped_line == line), "no line {line:?} in:\n{scraped}");
    }

    #[test]
    fn limiter_waits_edge_lag_and_replay_progress_are_scraped() {
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
