//! `/dead-letters`: the commands the writer could not carry out, read from the dead-letter
//! stream, each with its member, what it asked for and the reason it was parked.

use doorsync_log::Sequence;
use doorsync_proto::Command;
use doorsync_writer::dead_letters::{Action, DeadLetter, Handled};

use super::html::{Esc, instant_from_now, put};
use super::names::Names;

/// The newest dead letters shown.
const SHOWN: usize = 500;

/// The page's body for `letters` (oldest first), newest first, with a retry and a drop button
/// for each letter still waiting; their forms carry `csrf`, the session's token, when given.
pub(crate) fn render(letters: &[DeadLetter], names: &Names, csrf: Option<&str>) -> String {
    let now = names.now;
    let waiting = letters.iter().filter(|letter| letter.handled.is_none()).count();
    let mut out = format!(
        "<h1>Dead letters <span class=\"muted\">({waiting} waiting, {} handled)</span></h1>",
        letters.len() - waiting
    );
    if letters.is_empty() {
        out.push_str("<p class=\"muted\">None: every command was carried out or is still being tried.</p>");
        return out;
    }
    out.push_str(
        "<p>Commands Kisi refused for good (a 404 or 422, say) are parked here with the reason instead of being \
         retried forever. The member's next change, or a reconciliation, writes their access again; \
         <b>Retry</b> (or <code>doorsync dlq retry &lt;#&gt;</code>) hands one back to the writer once the cause \
         is fixed.</p>",
    );
    if letters.len() > SHOWN {
        put!(&mut out, "<p class=\"muted\">The newest {SHOWN} are shown.</p>");
    }
    out.push_str(
        "<table class=\"dead-letters stack\"><tr><th class=\"num\">#</th><th>Member</th><th>Command</th>\
         <th>Decided</th><th>Reason</th><th>Handled</th><th></th></tr>",
    );
    for letter in letters.iter().rev().take(SHOWN) {
        let member = match letter.member {
            Some(member) => names.member_link(member),
            None => "<span class=\"muted\">unknown</span>".to_owned(),
        };
        let (command, decided) = match &letter.command {
            Ok(envelope) => (
                what(&envelope.message, names),
                Esc(instant_from_now(names.operator(), envelope.occurred_at, now)).to_string(),
            ),
            Err(error) => (format!("cannot be read: {}", Esc(error)), String::new()),
        };
        let position = letter.command_sequence.map(|at| format!(" (command #{at})")).unwrap_or_default();
        let reason = if letter.reason.is_empty() { "no reason recorded" } else { &letter.reason };
        let handled =
            letter.handled.as_ref().map(|handled| Esc(handled_text(handled, names)).to_string()).unwrap_or_default();
        let actions = if letter.handled.is_none() { actions(letter.sequence, csrf) } else { String::new() };
        put!(
            &mut out,
            "<tr data-sequence=\"{}\"><td class=\"num\" data-label=\"#\">{}</td><td data-label=\"Member\">{member}</td>\
             <td data-label=\"Command\">{command}{position}</td><td data-label=\"Decided\">{decided}</td>\
             <td data-label=\"Reason\">{}</td><td data-label=\"Handled\">{handled}</td><td>{actions}</td></tr>",
            letter.sequence,
            letter.sequence,
            Esc(reason)
        );
    }
    out.push_str("</table>");
    out
}

/// "dropped at 09:15 Europe/London", or "retried at … (as command 12)".
fn handled_text(handled: &Handled, names: &Names) -> String {
    let at = names.operator().instant(handled.at);
    match &handled.action {
        Action::Retried { command_sequence, .. } => format!("retried at {at} (as command {command_sequence})"),
        Action::Dropped => format!("dropped at {at}"),
    }
}

/// The retry and drop buttons of a waiting letter: POST forms, which the admin listener accepts
/// only with the session's CSRF token (when it asks for a token) and from its own pages.
fn actions(sequence: Sequence, csrf: Option<&str>) -> String {
    let csrf = csrf
        .map(|csrf| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", doorsync_admin::CSRF_FIELD, Esc(csrf)))
        .unwrap_or_default();
    ["retry", "drop"]
        .map(|action| {
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/dead-letters/{sequence}/{action}\">{csrf}<button \
                 type=\"submit\">{}</button></form>",
                if action == "retry" { "Retry" } else { "Drop" }
            )
        })
        .concat()
}

/// What the command asked for, as HTML, its door by name and window in the door's zone.
fn what(command: &Command, names: &Names) -> String {
    let kind = format!("<code>{}</code>", doorsync_proto::WireMessage::tag(command));
    let detail = match command {
        Command::EnsureUser(ensure) => format!("a Kisi user for {} &lt;{}&gt;", Esc(&ensure.name), Esc(&ensure.email)),
        Command::GrantGroup(grant) => format!(
            "<span class=\"group\" data-group=\"{}\">{}</span> {}",
            grant.group,
            names.group(grant.group),
            Esc(names.group_times(grant.group).window(grant.valid_from, grant.valid_until))
        ),
        Command::RevokeGroup(revoke) => {
            format!("<span class=\"group\" data-group=\"{}\">{}</span>", revoke.group, names.group(revoke.group))
        }
        Command::SuspendUser(_) | Command::RestoreUser(_) | Command::DeleteUser(_) => String::new(),
    };
    format!("{kind} {detail}")
}

#[cfg(test)]
mod tests {
    use doorsync_proto::{EnsureUser, Envelope, GrantGroup, KisiGroupId, MemberId, Timestamp};

    use super::*;
    use crate::names::tests::names;

    fn letter(sequence: u64, member: u64, command: Result<Command, &str>, reason: &str) -> DeadLetter {
        let at = Timestamp::from_unix_millis(1_796_116_500_000);
        DeadLetter {
            sequence: Sequence(sequence),
            member: Some(MemberId(member)),
            command: command.map(|command| Envelope::new(at, command).unwrap()).map_err(str::to_owned),
            reason: reason.to_owned(),
            command_sequence: Some(Sequence(17)),
            handled: None,
        }
    }

    #[test]
    fn each_letter_shows_its_member_command_reason_and_what_was_done_newest_first() {
        let grant = Command::GrantGroup(GrantGroup {
            member: MemberId(7),
            group: KisiGroupId(100),
            valid_from: None,
            valid_until: None,
            basis: 3,
        });
        let ensure = Command::EnsureUser(EnsureUser {
            member: MemberId(8),
            email: "<bo>@example.com".into(),
            name: "Bo".into(),
            basis: 4,
        });
        let mut dropped = letter(2, 8, Ok(ensure), "kisi: 422 <email>");
        dropped.handled = Some(Handled { at: Timestamp::from_unix_millis(0), action: Action::Dropped });
        let letters = vec![
            letter(1, 7, Ok(grant), "kisi: 422 from POST /role_assignments"),
            dropped,
            letter(3, 9, Err("undecodable command: bad"), "kisi: 404"),
        ];
        let html = render(&letters, &names(), Some("csrf-of-the-session"));
        assert!(html.contains("Dead letters <span class=\"muted\">(2 waiting, 1 handled)</span>"), "{html}");
        let rows: Vec<usize> =
            (1..=3).map(|sequence| html.find(&format!("data-sequence=\"{sequence}\"")).unwrap()).collect();
        assert!(rows[2] < rows[1] && rows[1] < rows[0], "newest first");
        assert!(html.contains("<a href=\"/members/7\">member 7</a>"), "{html}");
        assert!(
            html.contains(
                "<code>grant_group</code> <span class=\"group\" data-group=\"100\">Front door <small \
                 class=\"id\">Kisi group 100</small></span> always (command #17)"
            ),
            "{html}"
        );
        assert!(html.contains("kisi: 422 from POST /role_assignments"));
        assert!(html.contains("a Kisi user for Bo &lt;&lt;bo&gt;@example.com&gt;"));
        assert!(html.contains("kisi: 422 &lt;email&gt;"));
        assert!(html.contains("dropped at Thu 1 Jan 1970 09:00 Asia/Tokyo"), "{html}");
        assert!(html.contains("cannot be read: undecodable command: bad"));
        for waiting in [1, 3] {
            for action in ["retry", "drop"] {
                let form =
                    format!("<form class=\"inline\" method=\"post\" action=\"/dead-letters/{waiting}/{action}\">");
                assert!(
                    html.contains(&format!(
                        "{form}<input type=\"hidden\" name=\"csrf\" value=\"csrf-of-the-session\">"
                    ))
                );
            }
        }
        assert!(!html.contains("/dead-letters/2/"), "a handled letter has no buttons");
        let without_token = render(&letters, &names(), None);
        assert!(without_token.contains("action=\"/dead-letters/1/retry\"><button") && !without_token.contains("csrf"));
    }

    #[test]
    fn no_dead_letters_says_so() {
        assert!(render(&[], &names(), None).contains("None: every command was carried out"));
    }
}
