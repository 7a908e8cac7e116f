//! The banner at the top of the front desk and the system page: what stops doors from following
//! Nexudus right now. Nexudus or Kisi unreachable for longer than the roles allow
//! (`nexudus_up`, `kisi_up` in their statuses), the writer paused or holding every request, a
//! peer whose status could not be asked.

use doorsync_node::Status;
use doorsync_writer::WriterStatus;

use super::html::{Esc, instant_from_now, put};
use super::names::Names;

/// The banner's HTML, empty when all is well.
pub(crate) fn render(status: &Status, unreachable_peers: &[String], names: &Names) -> String {
    let mut lines = Vec::new();
    if let Some(ingest) = &status.ingest
        && !ingest.nexudus_up
    {
        let since = ingest.nexudus_failing_since.map(|since| instant_from_now(names.operator(), since, names.now));
        lines.push(format!(
            "<strong>Nexudus is not answering</strong>{}{}. Changes made in Nexudus meanwhile reach the doors once it \
             answers again; what Kisi holds stays as it is.",
            since.map(|since| format!(" since {}", Esc(since))).unwrap_or_default(),
            ingest.nexudus_failure.as_ref().map(|why| format!(": {}", Esc(why))).unwrap_or_default(),
        ));
    }
    if let Some(writer) = &status.writer {
        writer_lines(&mut lines, writer, names);
    }
    for peer in unreachable_peers {
        lines.push(format!("<strong>No status from {}</strong>: its part of this page is missing.", Esc(peer)));
    }
    if lines.is_empty() {
        return String::new();
    }
    let mut out = String::from("<div class=\"banner\" role=\"alert\">");
    for line in lines {
        put!(&mut out, "<p>{line}</p>");
    }
    out.push_str("</div>");
    out
}

fn writer_lines(lines: &mut Vec<String>, writer: &WriterStatus, names: &Names) {
    let now = names.now;
    if !writer.kisi_up {
        let since = writer.kisi_failing_since.map(|since| instant_from_now(names.operator(), since, now));
        lines.push(format!(
            "<strong>Kisi is not answering</strong>{}{}. Door changes wait and are written once it answers again.",
            since.map(|since| format!(" since {}", Esc(since))).unwrap_or_default(),
            writer.kisi_failure.as_ref().map(|why| format!(": {}", Esc(why))).unwrap_or_default(),
        ));
    }
    if let Some(pause) = &writer.paused {
        lines.push(format!(
            "<strong>The Kisi writer is paused</strong> since {}: {}. No door changes are written until Kisi accepts \
             the API key again.",
            Esc(instant_from_now(names.operator(), pause.since, now)),
            Esc(&pause.reason)
        ));
    }
    if let Some(hold) = writer.retry_after_hold.filter(|hold| hold.until > now) {
        lines.push(format!(
            "<strong>The Kisi writer is holding</strong> every request until {}: Kisi asked it to wait.",
            Esc(instant_from_now(names.operator(), hold.until, now))
        ));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use doorsync_ingest::IngestStatus;
    use doorsync_proto::Timestamp;

    use super::*;
    use crate::names::tests::{NOW, names};

    /// An active writer with nothing to say.
    pub(crate) fn writer() -> WriterStatus {
        serde_json::from_value(serde_json::json!({
            "role": "Active", "paused": null, "credential_alerts": 0, "backlog_keys": 0, "backlog_commands": 0,
            "calls": {"succeeded": 0, "rate_limited": 0, "server_errors": 0, "timeouts": 0,
                      "transport_errors": 0, "credentials_refused": 0, "refused": 0},
            "commands_applied": 0, "commands_superseded": 0, "dead_letters": 0, "held_repair": null,
            "last_reconcile": null,
        }))
        .unwrap()
    }

    #[test]
    fn all_well_shows_no_banner() {
        let status = Status { engine: None, writer: Some(writer()), ingest: Some(IngestStatus::default()) };
        assert_eq!(render(&status, &[], &names()), "");
    }

    #[test]
    fn unreachable_dependencies_a_paused_or_holding_writer_and_silent_peers_are_said() {
        let since = Timestamp::from_unix_millis(NOW - 20 * 60_000);
        let mut ingest = IngestStatus { nexudus_up: false, ..IngestStatus::default() };
        ingest.nexudus_failing_since = Some(since);
        ingest.nexudus_failure = Some("nexudus: 503 from GET /api/spaces/bookings <x>".into());
        let mut writer = writer();
        writer.kisi_up = false;
        writer.paused = Some(doorsync_writer::PauseStatus { reason: "401 from GET /user".into(), since });
        writer.retry_after_hold = Some(doorsync_writer::RetryAfterHold {
            until: Timestamp::from_unix_millis(NOW + 60_000),
            asked_ms: 60_000,
            clamped: false,
        });
        let status = Status { engine: None, writer: Some(writer), ingest: Some(ingest) };
        let html = render(&status, &["http://ingest:9090".into()], &names());
        assert!(html.starts_with("<div class=\"banner\" role=\"alert\">"), "{html}");
        assert!(html.contains("Nexudus is not answering</strong> since 17:55 Asia/Tokyo (20 min ago)"), "{html}");
        assert!(html.contains("bookings &lt;x&gt;"), "escaped: {html}");
        assert!(html.contains("Kisi is not answering"), "{html}");
        assert!(html.contains("The Kisi writer is paused</strong> since 17:55 Asia/Tokyo"), "{html}");
        assert!(html.contains("holding</strong> every request until 18:16 Asia/Tokyo (in 1 min)"), "{html}");
        assert!(html.contains("No status from http://ingest:9090"), "{html}");
    }
}
