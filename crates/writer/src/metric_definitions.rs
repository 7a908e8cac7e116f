//! The writer's Prometheus metrics, computed at each scrape from its latest status.

use doorsync_metrics::{Published, counter, gauge, labelled_counter};
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::{WindowEdgeLag, WriterRole, WriterStatus};

/// The writer's metrics, reporting the status last given.
pub type WriterMetrics = Published<WriterStatus>;

/// Registers the writer's metrics in `registry`.
pub fn register(registry: &mut Registry) -> WriterMetrics {
    Published::register(registry, encode)
}

/// The window-edge lag as a histogram in seconds, from its bucket counts.
fn window_edge_lag(encoder: &mut DescriptorEncoder, lag: &WindowEdgeLag) -> Result<(), std::fmt::Error> {
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

/// Whether Kisi answers ([`WriterStatus::kisi_up`]), as the `kisi` series of
/// `doorsync_dependency_up`. The process writes that family once with the ingestor's series (see
/// `doorsync_metrics::SharedGauge`), so it is not among this role's definitions. `None` on a
/// writer that is not active, which calls no Kisi.
pub fn dependency_up(writer: &WriterStatus) -> Option<(&'static str, bool)> {
    matches!(writer.role, WriterRole::Active).then_some(("kisi", writer.kisi_up))
}

fn encode(writer: &WriterStatus, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let active = matches!(writer.role, WriterRole::Active);
    gauge(e, "writer_active", "1 while this writer holds the account's lease and calls Kisi", i64::from(active))?;
    gauge(
        e,
        "writer_paused",
        "1 while Kisi refuses the API key (check KISI_API_KEY)",
        i64::from(writer.paused.is_some()),
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
        writer.backlog_keys,
    )?;
    gauge(e, "writer_backlog_commands", "Commands held unacknowledged", writer.backlog_commands)?;
    gauge(
        e,
        "writer_backlog_live_keys",
        "Of the backlog's keys, those holding a live change (webhook, window edge), done before bulk work",
        writer.backlog_live_keys,
    )?;
    let calls = &writer.calls;
    labelled_counter(
        e,
        ("kisi_calls", "Kisi API requests by how they ended", "outcome"),
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
    counter(
        e,
        "kisi_limiter_waited_seconds",
        "Seconds Kisi requests waited for the writer's rate limiter",
        seconds(limiter.waited_ms),
    )?;
    counter(
        e,
        "kisi_limiter_budget_used_seconds",
        "Kisi's request budget used, a second over the requests allowed in any rolling second per request: \
         its rate is the limiter's utilisation (1 = the whole budget)",
        seconds(limiter.budget_used_ms),
    )?;
    window_edge_lag(e, &writer.window_edge_lag)?;
    gauge(
        e,
        "writer_repair_held",
        "1 while a mass revocation waits for an operator (doorsync reconcile --confirm)",
        i64::from(writer.held_repair.is_some()),
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
        writer.refused_groups.len(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use doorsync_proto::Timestamp;

    use super::*;
    use crate::{CallStats, LimiterStats};

    #[test]
    fn limiter_waits_and_the_window_edge_lag_are_scraped_in_seconds() {
        let mut window_edge_lag = WindowEdgeLag::default();
        let edge = Timestamp::from_unix_millis(1_000_000);
        window_edge_lag.observe(edge, Timestamp::from_unix_millis(1_000_300));
        window_edge_lag.observe(edge, Timestamp::from_unix_millis(1_090_000));
        let status = WriterStatus {
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
        };
        let mut registry = Registry::with_prefix("doorsync");
        register(&mut registry).update(status);
        let mut scraped = String::new();
        prometheus_client::encoding::text::encode(&mut scraped, &registry).unwrap();
        let lines: Vec<&str> = scraped.lines().collect();

        for line in [
            "doorsync_writer_active 1",
            "doorsync_kisi_limiter_waits_total 3",
            "doorsync_kisi_limiter_waited_seconds_total 1.25",
            "doorsync_kisi_limiter_budget_used_seconds_total 2.0",
            "doorsync_kisi_calls_total{outcome=\"succeeded\"} 0",
            "# TYPE doorsync_writer_window_edge_lag_seconds histogram",
            "doorsync_writer_window_edge_lag_seconds_count 2",
            "doorsync_writer_window_edge_lag_seconds_sum 90.3",
            "doorsync_writer_window_edge_lag_seconds_bucket{le=\"0.5\"} 1",
            "doorsync_writer_window_edge_lag_seconds_bucket{le=\"+Inf\"} 2",
        ] {
            assert!(lines.contains(&line), "no line {line:?} in:\n{scraped}");
        }
    }
}
