//! `/system`: the engine's partitions and wake-ups, the Kisi writer (role, pause, pending writes,
//! calls by outcome, dead letters, a held mass revocation) and the Nexudus ingestor (events by
//! type, parked records and why, webhook health, last poll and sweep), each as a card.

use doorsync_engine::ShardStats;
use doorsync_ingest::{IngestStatus, WebhookHealth};
use doorsync_proto::Timestamp;
use doorsync_writer::{CallStats, WriterRole, WriterStatus};

use super::html::{Esc, facts, instant_from_now, pill, put, relative};
use super::names::Names;
use doorsync_node::Status;

/// Everything the system page shows.
pub(crate) struct System<'a> {
    pub(crate) names: &'a Names,
    pub(crate) status: Status,
    /// Messages waiting in the dead-letter stream, or why they could not be counted.
    pub(crate) dead_letters: Result<usize, String>,
    /// Peers (`admin.peers`) whose status could not be asked, with why.
    pub(crate) unreachable_peers: Vec<String>,
}

impl System<'_> {
    /// `at` in the operator's zone, and how long ago or ahead.
    fn when(&self, at: Timestamp) -> String {
        instant_from_now(self.names.operator(), at, self.names.now)
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::from("<h1>System</h1>");
        out.push_str(&super::banner::render(&self.status, &self.unreachable_peers, self.names));
        out.push_str("<div class=\"cards\">");
        self.engine(&mut out);
        self.writer(&mut out);
        self.ingest(&mut out);
        out.push_str("</div>");
        out
    }

    fn engine(&self, out: &mut String) {
        out.push_str("<section class=\"card\" id=\"engine\"><h2>Engine</h2>");
        let shards = self.status.engine.as_deref().unwrap_or_default();
        let caught_up = shards.iter().filter(|shard| shard.caught_up).count();
        let owned: Vec<String> = shards.iter().map(|shard| shard.partition.to_string()).collect();
        let state = if shards.is_empty() {
            pill("warn", "owns no partition yet")
        } else if caught_up == shards.len() {
            pill("ok", "caught up")
        } else {
            pill("warn", &format!("replaying: {caught_up} of {} caught up", shards.len()))
        };
        let sum = |field: fn(&ShardStats) -> u64| shards.iter().map(field).sum::<u64>().to_string();
        facts(
            out,
            [
                ("State", state),
                ("Partitions owned", Esc(format!("{} ({})", shards.len(), owned.join(", "))).to_string()),
                ("Members known", sum(|shard| shard.known_members as u64)),
                ("Members live", sum(|shard| shard.live_members as u64)),
                ("Wakeups scheduled", sum(|shard| shard.scheduled_wakeups as u64)),
                ("Commands emitted", sum(|shard| shard.commands_emitted)),
                ("Member restarts", sum(|shard| shard.member_restarts)),
            ],
        );
        if !shards.is_empty() {
            out.push_str(
                "<details><summary>Per partition</summary><table><tr><th class=\"num\">Partition</th><th>Caught up</th>\
                 <th class=\"num\">Known</th><th class=\"num\">Live</th><th class=\"num\">Events read</th>\
                 <th class=\"num\">Commands</th></tr>",
            );
            for shard in shards {
                let since =
                    shard.caught_up_at.map(|at| relative(at, self.names.now)).unwrap_or_else(|| "not yet".into());
                put!(
                    out,
                    "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                     <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                    shard.partition,
                    Esc(since),
                    shard.known_members,
                    shard.live_members,
                    shard.events_position,
                    shard.commands_emitted
                );
            }
            out.push_str("</table></details>");
        }
        out.push_str("</section>");
    }

    fn writer(&self, out: &mut String) {
        out.push_str("<section class=\"card\" id=\"writer\"><h2>Kisi writer</h2>");
        let dead_letters = match &self.dead_letters {
            Ok(count) => format!("<a href=\"/dead-letters\">{count} in the dead-letter stream</a>"),
            Err(error) => format!("cannot be read: {}", Esc(error)),
        };
        let Some(writer) = &self.status.writer else {
            out.push_str(
                "<p class=\"muted\">No writer runs in this process: list the writer's admin address in \
                 <code>admin.peers</code> to show its status here.</p>",
            );
            facts(out, [("Dead letters", dead_letters)]);
            out.push_str("</section>");
            return;
        };
        self.writer_alerts(out, writer);
        let role = match writer.role {
            WriterRole::Active if writer.paused.is_some() => pill("bad", "active, paused"),
            WriterRole::Active => pill("ok", "active"),
            WriterRole::Standby => pill("idle", "standby: another writer holds the lease"),
            WriterRole::Starting => pill("warn", "starting"),
            WriterRole::Stopped => pill("bad", "stopped"),
        };
        facts(
            out,
            [
                ("Role", role),
                (
                    "Pending writes",
                    format!("{} commands for {} member/group keys", writer.backlog_commands, writer.backlog_keys),
                ),
                (
                    "Applied",
                    format!(
                        "{} commands ({} superseded by later ones)",
                        writer.commands_applied, writer.commands_superseded
                    ),
                ),
                ("Dead-lettered", format!("{} by this writer; {dead_letters}", writer.dead_letters)),
                ("Credential alerts", writer.credential_alerts.to_string()),
                (
                    "Kisi applies a PATCH of a window",
                    match writer.patch_applies_validity {
                        None => "not tried yet".to_owned(),
                        Some(true) => "yes (read back after each)".to_owned(),
                        Some(false) => "no: windows change by delete and create".to_owned(),
                    },
                ),
                (
                    "Found users left alone",
                    format!(
                        "{} suspensions, restores or deletions of Kisi users doorsync did not create",
                        writer.found_users_left_alone
                    ),
                ),
                ("Last reconcile", last_reconcile(writer)),
            ],
        );
        calls_by_outcome(out, &writer.calls);
        out.push_str("</section>");
    }

    /// What an operator must know about the writer before anything else: paused, holding, a
    /// group refused, a mass revocation waiting.
    fn writer_alerts(&self, out: &mut String, writer: &WriterStatus) {
        if let Some(pause) = &writer.paused {
            put!(
                out,
                "<p class=\"alert\"><strong>Paused since {}</strong>: {}<br>No calls are made but a probe; it resumes \
                 by itself once Kisi accepts the API key (KISI_API_KEY) again.</p>",
                Esc(self.when(pause.since)),
                Esc(&pause.reason)
            );
        }
        if let Some(hold) = writer.retry_after_hold.filter(|hold| hold.until > self.names.now) {
            put!(
                out,
                "<p class=\"alert\"><strong>Holding every Kisi request until {}</strong>: Kisi answered with \
                 <code>Retry-After</code>{}.</p>",
                Esc(self.when(hold.until)),
                if hold.clamped { " asking for longer; doorsync waits 5 minutes at most" } else { "" }
            );
        }
        for refused in &writer.refused_groups {
            put!(
                out,
                "<p class=\"alert\"><strong>{} refused</strong> to this API key ({}): its commands are \
                 dead-lettered, every other group is served. Check {}.</p>",
                Esc(self.names.group_text(refused.group)),
                Esc(&refused.reason),
                Esc(refused.mapping.as_deref().unwrap_or("the [[mapping]] entries that name it"))
            );
        }
        if let Some(held) = &writer.held_repair {
            put!(
                out,
                "<p class=\"alert\"><strong>Mass revocation held</strong> since {}: {} assignments of {} of {} managed \
                 members would be revoked. <code>doorsync reconcile --confirm</code> carries them out.</p>",
                Esc(self.when(held.found_at)),
                held.revocations,
                held.members_affected,
                held.managed_members
            );
        }
    }

    fn ingest(&self, out: &mut String) {
        out.push_str("<section class=\"card\" id=\"ingest\"><h2>Nexudus ingestor</h2>");
        let Some(ingest) = &self.status.ingest else {
            out.push_str(
                "<p class=\"muted\">No ingestor runs in this process: list the ingestor's admin address in \
                 <code>admin.peers</code> to show its status here.</p></section>",
            );
            return;
        };
        let health = &ingest.webhook_health;
        if health.alert {
            put!(
                out,
                "<p class=\"alert\"><strong>Webhooks disabled by Nexudus</strong>: {} of {} registered hooks are \
                 inactive (Nexudus turns a hook off after 10 failed deliveries). Changes still arrive by polling; \
                 re-enable the hooks in Nexudus.</p>",
                health.inactive.len(),
                health.registered
            );
        }
        let webhooks = &ingest.webhooks;
        let checked = health.checked_at.map_or("not yet checked".to_owned(), |at| {
            format!(
                "{} registered, {} inactive, checked {}",
                health.registered,
                health.inactive.len(),
                relative(at, self.names.now)
            )
        });
        facts(
            out,
            [
                (
                    "Webhooks",
                    format!(
                        "{} accepted, {} refused (signature), {} unreadable, {} for other actions, {} failed",
                        webhooks.accepted,
                        webhooks.refused,
                        webhooks.unreadable,
                        webhooks.unknown_action,
                        webhooks.failed
                    ),
                ),
                ("Webhook health", if health.alert { pill("bad", &checked) } else { Esc(checked).to_string() }),
                ("Last poll", last_run(ingest.last_poll, ingest.last_poll_error.as_deref(), self.names)),
                ("Last sweep", last_run(ingest.last_sweep, ingest.last_sweep_error.as_deref(), self.names)),
                (
                    "Duplicates",
                    format!(
                        "{} appends were duplicates, {} stale readings ignored",
                        ingest.duplicates, ingest.stale_readings
                    ),
                ),
                (
                    "Grant nothing",
                    format!(
                        "{} bookings without a member, {} unmapped sources",
                        ingest.memberless_bookings, ingest.unmapped_sources
                    ),
                ),
            ],
        );
        inactive_hooks(out, health);
        self.retrying_records(out, ingest);
        out.push_str("<h3>Events appended by type</h3>");
        events_by_type(out, ingest);
        self.parked_records(out, ingest);
        out.push_str("</section>");
    }

    /// The records a webhook, poll or sweep asked for whose reading failed, waiting to be read
    /// again.
    fn retrying_records(&self, out: &mut String, ingest: &IngestStatus) {
        put!(out, "<h3>Nexudus records to read again ({})</h3>", ingest.retrying.len());
        if ingest.retrying.is_empty() {
            out.push_str("<p class=\"muted\">None: every record a webhook, poll or sweep asked for was read.</p>");
        } else {
            out.push_str(
                "<table class=\"parked stack\"><tr><th>Record</th><th>Last error</th><th>Attempts</th><th>Next</th>\
                 <th>Since</th></tr>",
            );
            for retrying in &ingest.retrying {
                put!(
                    out,
                    "<tr><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    Esc(&retrying.entity),
                    retrying.id,
                    Esc(&retrying.last_error),
                    retrying.attempts,
                    Esc(self.when(retrying.next_attempt)),
                    Esc(self.when(retrying.since))
                );
            }
            out.push_str("</table>");
        }
    }

    /// The records that could not be turned into events, and whose access that withdrew.
    fn parked_records(&self, out: &mut String, ingest: &IngestStatus) {
        put!(out, "<h3>Parked Nexudus records ({}, parked {} times in all)</h3>", ingest.parked.len(), ingest.parkings);
        if ingest.parked.is_empty() {
            out.push_str("<p class=\"muted\">None: every record read could be turned into events.</p>");
        } else {
            out.push_str(
                "<table class=\"parked stack\"><tr><th>Record</th><th>Why it is parked</th><th>Access withdrawn</th>\
                 <th>Since</th></tr>",
            );
            for parked in &ingest.parked {
                let id = parked.id.map_or("(no id)".to_owned(), |id| id.to_string());
                // What an earlier version granted is withheld until the record reads well again.
                let withdrawn = match parked.withheld_from {
                    Some(member) => format!("what it granted to {}", self.names.member_link(member)),
                    None => "<span class=\"muted\">none</span>".to_owned(),
                };
                put!(
                    out,
                    "<tr><td>{} {}</td><td>{}</td><td>{withdrawn}</td><td>{}</td></tr>",
                    Esc(&parked.entity),
                    Esc(id),
                    Esc(&parked.reason),
                    Esc(self.when(parked.parked_at))
                );
            }
            out.push_str("</table>");
        }
    }
}

fn last_reconcile(writer: &WriterStatus) -> String {
    match &writer.last_reconcile {
        Some(report) => Esc(format!(
            "{} groups, {} assignments seen: {} created, {} windows fixed, {} revoked, {} users repaired, {} failed",
            report.groups_listed,
            report.assignments_seen,
            report.created,
            report.windows_fixed,
            report.revoked,
            report.users_repaired,
            report.failed
        ))
        .to_string(),
        None => "none yet".to_owned(),
    }
}

fn last_run(at: Option<Timestamp>, error: Option<&str>, names: &Names) -> String {
    let when = at.map_or("not yet".to_owned(), |at| instant_from_now(names.operator(), at, names.now));
    match error {
        Some(error) => format!("{} {}", Esc(when), pill("bad", &format!("failed: {error}"))),
        None => Esc(when).to_string(),
    }
}

fn events_by_type(out: &mut String, ingest: &IngestStatus) {
    if ingest.appended.is_empty() {
        out.push_str("<p class=\"muted\">None yet.</p>");
        return;
    }
    out.push_str("<table class=\"events\"><tr><th>Event</th><th class=\"num\">Appended</th></tr>");
    for (kind, count) in &ingest.appended {
        put!(out, "<tr><td>{}</td><td class=\"num\">{count}</td></tr>", Esc(kind));
    }
    out.push_str("</table>");
}

/// The webhooks Nexudus has switched off, with their error counts.
fn inactive_hooks(out: &mut String, health: &WebhookHealth) {
    if health.inactive.is_empty() {
        return;
    }
    out.push_str("<table class=\"inactive-hooks\"><tr><th>Hook</th><th>Action</th><th class=\"num\">Errors</th></tr>");
    for hook in &health.inactive {
        let errors = hook.error_count.map_or("?".to_owned(), |count| count.to_string());
        put!(out, "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>", hook.id, Esc(&hook.action), Esc(errors));
    }
    out.push_str("</table>");
}

fn calls_by_outcome(out: &mut String, calls: &CallStats) {
    out.push_str(
        "<h3>Kisi calls by outcome</h3><table class=\"calls\"><tr><th>Outcome</th><th class=\"num\">Calls</th></tr>",
    );
    for (outcome, count) in [
        ("succeeded", calls.succeeded),
        ("rate limited (429)", calls.rate_limited),
        ("server errors (5xx)", calls.server_errors),
        ("timed out", calls.timeouts),
        ("transport errors", calls.transport_errors),
        ("credentials refused (401/403)", calls.credentials_refused),
        ("refused otherwise", calls.refused),
        ("total", calls.total()),
    ] {
        put!(out, "<tr><td>{outcome}</td><td class=\"num\">{count}</td></tr>");
    }
    out.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use doorsync_ingest::ParkedRecord;
    use doorsync_proto::{KisiGroupId, MemberId};

    use super::*;
    use crate::names::tests::{NOW, names};

    fn at(minutes: i64) -> Timestamp {
        Timestamp::from_unix_millis(NOW + minutes * 60_000)
    }

    fn system(names: &Names) -> System<'_> {
        let shard = ShardStats {
            partition: doorsync_proto::Partition(2),
            caught_up: true,
            known_members: 3,
            scheduled_wakeups: 2,
            ..ShardStats::default()
        };
        let mut ingest = IngestStatus::default();
        ingest.parked.push(ParkedRecord {
            entity: "Booking".into(),
            id: Some(31),
            reason: "FromTime: <not a date>".into(),
            parked_at: at(-5),
            withheld_from: Some(MemberId(7)),
        });
        ingest.parked.push(ParkedRecord {
            entity: "CoworkerTimePass".into(),
            id: Some(32),
            reason: "TimePassId: TimePass 5 does not exist in Nexudus".into(),
            parked_at: at(-5),
            withheld_from: None,
        });
        ingest.appended.insert("booking_changed".into(), 3);
        System {
            names,
            status: Status { engine: Some(vec![shard]), writer: None, ingest: Some(ingest) },
            dead_letters: Ok(2),
            unreachable_peers: vec!["http://doorsync-writer:9090: not reachable".into()],
        }
    }

    #[test]
    fn the_engine_the_parked_records_and_the_dead_letters_are_shown_in_the_operators_zone() {
        let names = names();
        let html = system(&names).render();
        assert!(html.contains("<dt>Wakeups scheduled</dt><dd>2</dd>"), "{html}");
        assert!(html.contains("FromTime: &lt;not a date&gt;"), "parked records with their reasons");
        assert!(
            html.contains("<td>what it granted to <a href=\"/members/7\">member 7</a></td>"),
            "and whom they withdrew access from"
        );
        assert!(html.contains("TimePass 5 does not exist in Nexudus</td><td><span class=\"muted\">none</span>"));
        assert!(html.contains("18:10 Asia/Tokyo (5 min ago)"), "{html}");
        assert!(html.contains("<a href=\"/dead-letters\">2 in the dead-letter stream</a>"));
    }

    #[test]
    fn a_peer_that_cannot_be_asked_is_named_and_missing_roles_point_at_admin_peers() {
        let names = names();
        let html = system(&names).render();
        assert!(html.contains("No status from http://doorsync-writer:9090: not reachable"), "{html}");
        assert!(
            html.contains(
                "No writer runs in this process: list the writer's admin address in <code>admin.peers</code>"
            )
        );
    }

    #[test]
    fn what_waits_on_nexudus_or_kisi_is_shown_with_what_to_do() {
        let names = names();
        let mut page = system(&names);
        if let Some(ingest) = &mut page.status.ingest {
            ingest.retrying.push(doorsync_ingest::RetryingRecord {
                entity: "CoworkerContract".into(),
                id: 77,
                attempts: 3,
                next_attempt: at(2),
                last_error: "nexudus: 500 from GET /api/billing/coworkercontracts/77".into(),
                since: at(-4),
            });
        }
        let mut writer = crate::banner::tests::writer();
        writer.retry_after_hold =
            Some(doorsync_writer::RetryAfterHold { until: at(5), asked_ms: 99_999_999_000, clamped: true });
        writer.refused_groups.push(doorsync_writer::RefusedGroup {
            group: KisiGroupId(4_242),
            mapping: Some("mapping[3] (resource 12)".into()),
            reason: "kisi: 403 from POST /role_assignments".into(),
        });
        writer.patch_applies_validity = Some(false);
        page.status.writer = Some(writer);

        let html = page.render();

        assert!(html.contains("Nexudus records to read again (1)") && html.contains("CoworkerContract 77"), "{html}");
        assert!(html.contains("Holding every Kisi request until") && html.contains("5 minutes at most"), "{html}");
        assert!(html.contains("The Kisi writer is holding"), "and the banner says so: {html}");
        assert!(html.contains("Kisi group 4242 refused") && html.contains("mapping[3] (resource 12)"), "{html}");
        assert!(html.contains("no: windows change by delete and create"), "{html}");
    }
}
