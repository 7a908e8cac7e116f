//! Writing dead letters: the command the writer gives up on, appended as it is to the member's
//! dead-letter subject with the reason and the command's stream sequence as headers.

use doorsync_log::{Delivery, NewMessage, RetryPolicy, append_with_retry};
use doorsync_proto::{Failed, Outcome, ParsedSubject};
use doorsync_telemetry::current_trace_headers;

use crate::backlog::Key;
use crate::worker::{Active, Settle, settle_all};

/// Application headers of a dead letter.
pub const REASON_HEADER: &str = "Doorsync-Dead-Letter-Reason";
pub const SEQUENCE_HEADER: &str = "Doorsync-Command-Sequence";

impl Active<'_> {
    /// The key's newest command cannot be carried out: park it on the dead-letter subject with
    /// the reason, tell the engine, and settle every command of the key.
    pub(crate) async fn dead_letter(&mut self, key: Key, reason: &str) {
        let Some(mut pending) = self.backlog.take(&key) else { return };
        let member = key.member();
        tracing::warn!(%member, command = %pending.latest.id, reason, "command dead-lettered");
        let mut letter = NewMessage::new(
            self.shared.layout.subjects.dead_letter(member),
            pending.latest.id.to_string(),
            pending.latest.payload.clone(),
        )
        .with_header(REASON_HEADER, header_text(reason))
        .with_header(SEQUENCE_HEADER, pending.latest.sequence.to_string());
        letter.headers.extend(current_trace_headers());
        if let Err(error) = append_with_retry(&*self.shared.log, letter, RetryPolicy::default()).await {
            return self.put_back(key, pending, &error.to_string()).await;
        }
        let failed = Outcome::Failed(Failed {
            member,
            command: pending.latest.id.clone(),
            reason: reason.to_owned(),
            permanent: true,
        });
        // When the writer gave up: what the history shows for the outcome.
        let occurred_at = self.shared.clock.now();
        for outcome in std::mem::take(&mut pending.outcomes).into_iter().chain([failed]) {
            if let Err(error) = self.publish(outcome, occurred_at).await {
                return self.put_back(key, pending, &error.to_string()).await;
            }
        }
        // The engine has moved on to what this command asks, whatever Kisi did with it. A revoke,
        // suspension or deletion recorded as wanted fails closed: the reconciler never restores
        // the access it took back, and tries the change again. A grant or restore recorded as
        // wanted is what the member is entitled to now: the reconciler may try it again, and
        // never defends an older, wider window instead. An EnsureUser leaves its email for the
        // next command to fold from, as the engine folds what it emitted.
        pending.record_settled(self.knowledge.get_mut(member));
        if let Err(error) = self.knowledge.save(member).await {
            return self.put_back(key, pending, &error.to_string()).await;
        }
        self.report(|status| status.dead_letters += 1);
        settle_all(pending.deliveries.into_values(), Settle::Term).await;
    }

    /// A command this build cannot read (from a newer build, or damaged) is parked as it is.
    pub(crate) async fn dead_letter_undecodable(&mut self, delivery: Delivery, reason: &str) {
        let message = &delivery.message;
        let member = self.shared.layout.subjects.parse(&message.subject).and_then(ParsedSubject::member);
        tracing::error!(subject = %message.subject, sequence = %message.sequence, reason, "undecodable command");
        if let Some(member) = member {
            let id = message.id.clone().unwrap_or_else(|| format!("undecodable-{}", message.sequence));
            let letter = NewMessage::new(self.shared.layout.subjects.dead_letter(member), id, message.payload.clone())
                .with_header(REASON_HEADER, header_text(&format!("undecodable command: {reason}")))
                .with_header(SEQUENCE_HEADER, message.sequence.to_string());
            if let Err(error) = append_with_retry(&*self.shared.log, letter, RetryPolicy::default()).await {
                tracing::warn!(%error, "dead-lettering an undecodable command failed; it comes back later");
                let _ = delivery.nak(self.options().backoff_max).await;
                return;
            }
        }
        self.shared.status.lock().dead_letters += 1;
        settle_all([delivery], Settle::Term).await;
    }
}

/// A header value cannot hold line breaks.
fn header_text(text: &str) -> String {
    text.chars().map(|character| if character.is_control() { ' ' } else { character }).collect()
}
