//! The roles' statuses as Prometheus metrics, computed at each scrape from the latest status.

use std::sync::{Arc, Mutex, PoisonError};

use doorsync_admin::Metrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::roles::Status;

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
            gauge(
                e,
                "writer_repair_held",
                "1 while a mass revocation waits for an operator (doorsync reconcile --confirm)",
                flag(writer.held_repair.is_some()),
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
                ],
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
        }
        Ok(())
    }
}
