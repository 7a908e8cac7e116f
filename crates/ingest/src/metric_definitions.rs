//! The ingestor's Prometheus metrics, computed at each scrape from its latest status.

use doorsync_metrics::{Published, counter, gauge, labelled_counter};
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use crate::{IngestRole, IngestStatus};

/// The ingestor's metrics, reporting the status last given.
pub type IngestMetrics = Published<IngestStatus>;

/// Registers the ingestor's metrics in `registry`.
pub fn register(registry: &mut Registry) -> IngestMetrics {
    Published::register(registry, encode)
}

/// Whether Nexudus answers ([`IngestStatus::nexudus_up`]), as the `nexudus` series of
/// `doorsync_dependency_up`. The process writes that family once with the writer's series (see
/// `doorsync_metrics::SharedGauge`), so it is not among this role's definitions. `None` on a
/// standby, which does not read Nexudus.
pub fn dependency_up(ingest: &IngestStatus) -> Option<(&'static str, bool)> {
    (ingest.role == IngestRole::Active).then_some(("nexudus", ingest.nexudus_up))
}

fn encode(ingest: &IngestStatus, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    labelled_counter(
        e,
        ("ingest_events_appended", "Events appended from Nexudus, by type", "type"),
        ingest.appended.iter().map(|(kind, appended)| (kind.as_str(), *appended)),
    )?;
    gauge(
        e,
        "ingest_parked_records",
        "Nexudus records that could not be read, waiting for a fix",
        ingest.parked.len(),
    )?;
    counter(e, "ingest_parkings", "Times a Nexudus record was parked", ingest.parkings)?;
    gauge(
        e,
        "ingest_retrying_records",
        "Nexudus records a webhook, poll or sweep asked for whose reading failed, waiting in the durable \
         retry set to be read again",
        ingest.retrying.len(),
    )?;
    let hooks = &ingest.webhooks;
    labelled_counter(
        e,
        ("ingest_webhooks", "Webhook deliveries by answer", "answer"),
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
        i64::from(ingest.role == IngestRole::Active),
    )?;
    gauge(
        e,
        "ingest_webhooks_inactive",
        "Webhooks Nexudus has disabled (re-enable them in Nexudus)",
        ingest.webhook_health.inactive.len(),
    )?;
    counter(e, "ingest_webhook_alerts", "Health checks that found a disabled webhook", ingest.webhook_alerts)?;
    gauge(
        e,
        "ingest_memberless_bookings",
        "Live bookings with no member, which grant nothing",
        ingest.memberless_bookings,
    )?;
    counter(e, "ingest_duplicates", "Appends the log recognised as already stored", ingest.duplicates)?;
    let limiter = &ingest.nexudus_limiter;
    counter(e, "nexudus_limiter_waits", "Nexudus requests held back by its request limits", limiter.waits)?;
    counter(
        e,
        "nexudus_limiter_waited_seconds",
        "Seconds Nexudus requests waited for its request limits",
        // Exact below 2^53 ms, some 285,000 years.
        limiter.waited_ms as f64 / 1_000.0,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::LimiterWaits;

    #[test]
    fn the_nexudus_limiter_waits_are_scraped_in_seconds() {
        let status =
            IngestStatus { nexudus_limiter: LimiterWaits { waits: 7, waited_ms: 3_500 }, ..IngestStatus::default() };
        let mut registry = Registry::with_prefix("doorsync");
        register(&mut registry).update(status);
        let mut scraped = String::new();
        prometheus_client::encoding::text::encode(&mut scraped, &registry).unwrap();
        let lines: Vec<&str> = scraped.lines().collect();

        assert!(lines.contains(&"doorsync_nexudus_limiter_waits_total 7"), "{scraped}");
        assert!(lines.contains(&"doorsync_nexudus_limiter_waited_seconds_total 3.5"), "{scraped}");
        assert!(lines.contains(&"doorsync_ingest_active 1"), "{scraped}");
    }
}
