//! The metrics of the roles this process runs, each role's defined in its own crate
//! (`metric_definitions`), and brought up to date from the status the watcher gathers.

use doorsync_admin::Metrics;
use doorsync_engine::metric_definitions::{self as engine, EngineMetrics};
use doorsync_ingest::metric_definitions::{self as ingest, IngestMetrics};
use doorsync_metrics::SharedGauge;
use doorsync_writer::metric_definitions::{self as writer, WriterMetrics};

use crate::process::RoleSet;
use crate::status::Status;

/// `doorsync_dependency_up`: the ingestor reports Nexudus, the writer Kisi, each only while it
/// is the active one; a process running both writes the family once.
const DEPENDENCY_UP: (&str, &str, &str) = (
    "dependency_up",
    "1 while a service doorsync calls answers, 0 once it has failed to (transport errors, timeouts, 5xx \
     answers, refused credentials) for longer than nexudus.poll_every (nexudus, from the ingestor's polls \
     and sweeps) or the writer's longest retry backoff, 60 s (kisi, from every Kisi request); no series \
     from a standby, which calls neither (doorsync status names the failure)",
    "dependency",
);

/// The metrics of each role of the process; a role it does not run has none.
#[derive(Debug, Clone)]
pub(crate) struct RoleMetrics {
    engine: Option<EngineMetrics>,
    writer: Option<WriterMetrics>,
    ingest: Option<IngestMetrics>,
    /// Whether the services the ingestor and the writer call answer.
    dependencies: Option<SharedGauge>,
}

impl RoleMetrics {
    pub(crate) fn register(metrics: &Metrics, roles: RoleSet) -> Self {
        metrics.register_with(|registry| Self {
            engine: roles.engine.then(|| engine::register(registry)),
            writer: roles.writer.then(|| writer::register(registry)),
            ingest: roles.ingest.then(|| ingest::register(registry)),
            dependencies: (roles.writer || roles.ingest).then(|| SharedGauge::register(registry, DEPENDENCY_UP)),
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
        if let Some(dependencies) = &self.dependencies {
            let nexudus = status.ingest.as_ref().filter(|_| self.ingest.is_some()).and_then(ingest::dependency_up);
            let kisi = status.writer.as_ref().filter(|_| self.writer.is_some()).and_then(writer::dependency_up);
            dependencies.update(nexudus.into_iter().chain(kisi).map(|(name, up)| (name, u64::from(up))).collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use doorsync_engine::ShardStats;
    use doorsync_ingest::{IngestRole, IngestStatus, LimiterWaits};
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
            backlog_live_keys: 0,
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
    fn the_dependency_family_is_written_once_with_a_series_for_each_active_role() {
        let writer = WriterStatus { kisi_up: false, ..writer_status() };
        let ingest = IngestStatus::default();
        let scraped = scrape(&Status { engine: None, writer: Some(writer.clone()), ingest: Some(ingest) });

        assert_has(&scraped, "doorsync_dependency_up{dependency=\"nexudus\"} 1");
        assert_has(&scraped, "doorsync_dependency_up{dependency=\"kisi\"} 0");
        assert_eq!(scraped.matches("# TYPE doorsync_dependency_up gauge").count(), 1, "{scraped}");
        let help = scraped.lines().find(|line| line.starts_with("# HELP doorsync_dependency_up ")).unwrap_or_default();
        for says in ["nexudus.poll_every", "retry backoff", "standby"] {
            assert!(help.contains(says), "the help names {says:?}: {help}");
        }

        let standby = IngestStatus {
            role: IngestRole::Standby { holder: Some("ingest-b".to_owned()) },
            ..IngestStatus::default()
        };
        let scraped = scrape(&Status { engine: None, writer: Some(writer), ingest: Some(standby) });
        assert!(!scraped.contains("dependency=\"nexudus\""), "a standby calls no Nexudus:\n{scraped}");
    }

    /// Every series name a process running all roles reports, with its family's type: the list
    /// `deploy/monitoring`'s alert rules and dashboard are checked against (`just deploy-check`).
    const METRICS_LIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/monitoring/metrics.txt");

    /// Each sample's name with its family's type, once each, in order.
    fn series_names(scraped: &str) -> String {
        let mut types = std::collections::BTreeMap::new();
        let mut names = std::collections::BTreeSet::new();
        for line in scraped.lines() {
            if let Some(declared) = line.strip_prefix("# TYPE ") {
                let (family, kind) = declared.split_once(' ').unwrap_or((declared, "unknown"));
                types.insert(family.to_owned(), kind.to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                let family = ["_total", "_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix).filter(|family| types.contains_key(*family)))
                    .unwrap_or(name);
                names.insert(format!("{name} {}", types.get(family).map_or("unknown", String::as_str)));
            }
        }
        names.into_iter().map(|line| line + "\n").collect()
    }

    #[test]
    fn the_monitoring_metrics_list_names_every_series_reported() {
        let shard = ShardStats { partition: Partition(0), replay_behind_messages: Some(0), ..ShardStats::default() };
        let ingest = IngestStatus { appended: [("booking_changed".to_owned(), 1)].into(), ..IngestStatus::default() };
        let scraped =
            scrape(&Status { engine: Some(vec![shard]), writer: Some(writer_status()), ingest: Some(ingest) });
        let families = scraped.lines().filter(|line| line.starts_with("# TYPE ")).count();
        let reported = series_names(&scraped);
        let samples = reported.lines().filter(|line| !line.contains("_bucket ") && !line.contains("_sum ")).count();
        assert_eq!(families, samples, "a family without samples is missing from the list; give it some:\n{scraped}");

        if std::env::var_os("DOORSYNC_UPDATE_METRICS_LIST").is_some() {
            std::fs::write(METRICS_LIST, &reported).unwrap();
        }
        let listed = std::fs::read_to_string(METRICS_LIST).unwrap_or_default();
        assert!(
            listed == reported,
            "{METRICS_LIST} differs from what /metrics reports: run `DOORSYNC_UPDATE_METRICS_LIST=1 cargo test -p \
             doorsync-node --lib monitoring_metrics_list`, then make deploy/monitoring's rules and dashboard use \
             the new names (`just deploy-check` says which are missing). Reported:\n{reported}"
        );
    }

    #[test]
    fn a_process_without_a_role_reports_none_of_its_metrics() {
        let scraped = scrape(&Status { engine: None, writer: None, ingest: None });
        for family in ["kisi_limiter", "nexudus_limiter", "window_edge_lag", "engine_replay", "dependency_up"] {
            assert!(!scraped.contains(family), "{family} in:\n{scraped}");
        }
    }
}
