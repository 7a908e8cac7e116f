//! `doorsync status`: what a running process reports, as a summary an operator reads at a glance
//! (`--json` prints the admin API's answer as it is).

use std::fmt::Write as _;

use doorsync_catalogue::LocalTimes;
use doorsync_engine::ShardStats;
use doorsync_ingest::{IngestRole, IngestStatus};
use doorsync_node::Status;
use doorsync_proto::Timestamp;
use doorsync_writer::{WriterRole, WriterStatus};
use reqwest::Method;

use super::admin::Admin;
use super::table;

/// `times` shows the instants of the summary (`admin.time_zone`, else UTC: the locations' zones
/// are in the running process's log).
pub(crate) async fn status(admin: &Admin, json: bool, times: &LocalTimes) -> anyhow::Result<()> {
    const PATH: &str = "/api/status";
    let body = admin.request(Method::GET, PATH).await?;
    let status: Status = admin.read_json(PATH, &body)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", summary(&status, times));
    }
    Ok(())
}

/// One paragraph per role the process runs, what needs the operator first.
fn summary(status: &Status, times: &LocalTimes) -> String {
    let roles: Vec<&str> = [
        status.ingest.as_ref().map(|_| "ingest"),
        status.engine.as_ref().map(|_| "engine"),
        status.writer.as_ref().map(|_| "writer"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut text = format!("Roles: {}\n", if roles.is_empty() { "none".to_owned() } else { roles.join(", ") });
    if let Some(writer) = &status.writer {
        text.push_str(&writer_summary(writer, times));
    }
    if let Some(ingest) = &status.ingest {
        text.push_str(&ingest_summary(ingest, times));
    }
    if let Some(shards) = &status.engine {
        text.push_str(&engine_summary(shards));
    }
    text
}

fn writer_summary(writer: &WriterStatus, times: &LocalTimes) -> String {
    let role = match writer.role {
        WriterRole::Starting => "starting",
        WriterRole::Standby => "standby (another writer holds the Kisi account's lease)",
        WriterRole::Active => "active",
        WriterRole::Stopped => "stopped",
    };
    let mut text = format!("\nWriter: {role}\n");
    let kisi = reachability("Kisi", writer.kisi_up, writer.kisi_failing_since, writer.kisi_failure.as_deref(), times);
    text.push_str(&kisi);
    match &writer.paused {
        Some(pause) => {
            let _ = writeln!(text, "  PAUSED since {}: {}", times.instant(pause.since), pause.reason);
        }
        None => text.push_str("  not paused\n"),
    }
    if let Some(hold) = &writer.retry_after_hold {
        let _ = writeln!(text, "  HOLDING every Kisi request until {} (Kisi's Retry-After)", times.instant(hold.until));
    }
    if let Some(held) = &writer.held_repair {
        let _ = writeln!(
            text,
            "  HELD REPAIR: {} affecting {} of {} members, found at {}; `doorsync reconcile --confirm` carries it out",
            table::count(held.revocations, "revocation", "revocations"),
            held.members_affected,
            held.managed_members,
            times.instant(held.found_at)
        );
    }
    let _ = writeln!(
        text,
        "  pending writes: {} for {}",
        table::count(writer.backlog_commands, "command", "commands"),
        table::count(writer.backlog_keys, "member or group", "members or groups")
    );
    let _ = writeln!(
        text,
        "  dead letters: {} since it started (`doorsync dlq list` shows those waiting)",
        writer.dead_letters
    );
    if !writer.refused_groups.is_empty() {
        let _ = writeln!(
            text,
            "  Kisi refused {} to the API key",
            table::count(writer.refused_groups.len(), "mapped group", "mapped groups")
        );
    }
    text
}

fn ingest_summary(ingest: &IngestStatus, times: &LocalTimes) -> String {
    let role = match &ingest.role {
        IngestRole::Active => "active".to_owned(),
        IngestRole::Standby { holder } => {
            format!("standby ({} holds the ingest lease)", holder.as_deref().unwrap_or("no live ingestor"))
        }
    };
    let mut text = format!("\nIngest: {role}\n");
    text.push_str(&reachability(
        "Nexudus",
        ingest.nexudus_up,
        ingest.nexudus_failing_since,
        ingest.nexudus_failure.as_deref(),
        times,
    ));
    let health = &ingest.webhook_health;
    let webhooks = match health.checked_at {
        None => "not checked yet".to_owned(),
        Some(_) if !health.inactive.is_empty() => format!(
            "{} of {} DISABLED by Nexudus ({})",
            health.inactive.len(),
            health.registered,
            health.inactive.iter().map(|hook| hook.action.as_str()).collect::<Vec<_>>().join(", ")
        ),
        Some(at) => format!("{} registered, all active (checked {})", health.registered, times.instant(at)),
    };
    let _ = writeln!(text, "  webhooks: {webhooks}");
    let _ = writeln!(text, "  last poll: {}", last_run(ingest.last_poll, ingest.last_poll_error.as_deref(), times));
    let _ = writeln!(text, "  last sweep: {}", last_run(ingest.last_sweep, ingest.last_sweep_error.as_deref(), times));
    let _ = writeln!(
        text,
        "  parked records: {}{}",
        ingest.parked.len(),
        if ingest.parked.is_empty() { "" } else { " (the status page lists them with their reasons)" }
    );
    if !ingest.retrying.is_empty() {
        let _ =
            writeln!(text, "  records to read again: {} (Nexudus failed to answer about them)", ingest.retrying.len());
    }
    text
}

/// Whether the service answers: down once it has failed for longer than doorsync waits, failing
/// (but not yet down) before that.
fn reachability(
    service: &str,
    up: bool,
    failing_since: Option<Timestamp>,
    failure: Option<&str>,
    times: &LocalTimes,
) -> String {
    match (up, failing_since) {
        (true, None) => format!("  {service}: answering\n"),
        (up, Some(since)) => format!(
            "  {service}: {} since {}: {}\n",
            if up { "failing" } else { "DOWN" },
            times.instant(since),
            failure.unwrap_or("no answer")
        ),
        (false, None) => format!("  {service}: DOWN\n"),
    }
}

fn last_run(at: Option<Timestamp>, error: Option<&str>, times: &LocalTimes) -> String {
    match (at, error) {
        (_, Some(error)) => format!("FAILED: {error}"),
        (Some(at), None) => times.instant(at),
        (None, None) => "not yet".to_owned(),
    }
}

fn engine_summary(shards: &[ShardStats]) -> String {
    let caught_up = shards.iter().filter(|shard| shard.caught_up).count();
    let live: usize = shards.iter().map(|shard| shard.live_members).sum();
    let known: usize = shards.iter().map(|shard| shard.known_members).sum();
    let wakeups: usize = shards.iter().map(|shard| shard.scheduled_wakeups).sum();
    let mut text = format!(
        "\nEngine: {caught_up} of {} caught up\n  members: {known} known, {live} in memory; {}\n",
        table::count(shards.len(), "partition", "partitions"),
        table::count(wakeups, "wake-up scheduled", "wake-ups scheduled")
    );
    let replaying: Vec<String> =
        shards.iter().filter(|shard| !shard.caught_up).map(|shard| shard.partition.to_string()).collect();
    if !replaying.is_empty() {
        let _ = writeln!(text, "  replaying the log: partition {}", replaying.join(", "));
    }
    let skipped: u64 = shards.iter().map(|shard| shard.skipped_messages).sum();
    if skipped > 0 {
        let _ = writeln!(text, "  {skipped} messages skipped as not doorsync's (the status page lists the latest)");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_shows_its_instants_in_the_zone_it_is_given() {
        // 2026-07-01T12:15:00Z, 13:15 in London's summer time.
        let polled = Timestamp::from_unix_millis(1_782_908_100_000);
        let ingest = IngestStatus {
            last_poll: Some(polled),
            nexudus_failing_since: Some(polled),
            nexudus_failure: Some("503 from /api/spaces/bookings".to_owned()),
            ..IngestStatus::default()
        };
        let status = Status { engine: None, writer: None, ingest: Some(ingest) };
        let london = LocalTimes::new(doorsync_catalogue::zone_named("Europe/London").unwrap(), polled);
        let text = summary(&status, &london);
        assert!(text.contains("  last poll: 13:15 Europe/London\n"), "{text}");
        assert!(
            text.contains("  Nexudus: failing since 13:15 Europe/London: 503 from /api/spaces/bookings\n"),
            "{text}"
        );
        assert!(!text.contains("12:15"), "no UTC: {text}");
    }
}
