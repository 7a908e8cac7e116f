//! `doorsync dlq list | retry <sequence>|--all | drop <sequence>`: the commands the writer
//! dead-lettered, and what an operator does about them. Reading and handling them is
//! [`doorsync_writer::dead_letters`]'s; this is the command's arguments and its text.

use anyhow::bail;
use doorsync_log::Sequence;
use doorsync_node::Context;
use doorsync_node::operations::{self, DropOne, RetryOne};
use doorsync_proto::Command;
use doorsync_writer::dead_letters::{self, DeadLetter, Handled, Retried, RetryAll};
use reqwest::Method;

use super::admin::Admin;
use super::{from_running_process_or_log, table};

#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub(crate) enum DlqAction {
    /// Lists the dead letters waiting for an operator: sequence, member, command, when it was
    /// commanded, and why the writer gave up on it.
    List {
        /// Also list the dead letters already retried or dropped.
        #[arg(long)]
        all: bool,
    },
    /// Hands dead-lettered commands back to the writer, appended again as new commands.
    Retry {
        /// The dead letter's sequence, as `doorsync dlq list` shows it.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        sequence: Option<Sequence>,
        /// Every dead letter waiting, oldest first; those overtaken by newer commands are skipped.
        #[arg(long)]
        all: bool,
    },
    /// Marks a dead letter as dealt with, without retrying it: `list` no longer shows it.
    Drop {
        /// The dead letter's sequence, as `doorsync dlq list` shows it.
        sequence: Sequence,
    },
}

/// Carries out `action` through the running process when one holds the embedded log, else on
/// the log itself, and prints what became of it.
pub(crate) async fn dlq(context: &Context, admin: &Admin, action: DlqAction) -> anyhow::Result<()> {
    let now = context.clock.now();
    let text = match action {
        DlqAction::List { all } => {
            let request = (Method::GET, "/api/dead-letters");
            let letters = from_running_process_or_log(context, admin, request, "dlq", async |log, layout| {
                Ok(dead_letters::every_dead_letter(log, layout).await?)
            })
            .await?;
            render_list(&letters, all)
        }
        DlqAction::Retry { all: true, .. } => {
            let request = (Method::POST, "/api/dead-letters/retry");
            let outcome = from_running_process_or_log(context, admin, request, "dlq", async |log, layout| {
                Ok(dead_letters::retry_all(log, layout, now).await?)
            })
            .await?;
            render_retries(&outcome)
        }
        DlqAction::Retry { sequence: Some(sequence), all: false } => {
            let path = format!("/api/dead-letters/{sequence}/retry");
            let RetryOne { letter, result } =
                from_running_process_or_log(context, admin, (Method::POST, &path), "dlq", async |log, layout| {
                    Ok(operations::retry_one(log, layout, sequence, now).await?)
                })
                .await?;
            match result {
                Ok(retried) => format!("{}\n", describe_retry(&letter, &retried)),
                Err(refusal) => bail!("dead letter {sequence} was not retried: {refusal}"),
            }
        }
        DlqAction::Retry { sequence: None, all: false } => {
            bail!("name the dead letter to retry by its sequence (doorsync dlq list shows them), or use --all")
        }
        DlqAction::Drop { sequence } => {
            let path = format!("/api/dead-letters/{sequence}/drop");
            let DropOne { already, .. } =
                from_running_process_or_log(context, admin, (Method::POST, &path), "dlq", async |log, layout| {
                    Ok(operations::drop_one(log, layout, sequence, now).await?)
                })
                .await?;
            match already {
                None => format!("Dropped dead letter {sequence}; `doorsync dlq list` no longer shows it.\n"),
                Some(handled) => format!("Dead letter {sequence} was already {handled}; nothing to drop.\n"),
            }
        }
    };
    print!("{text}");
    Ok(())
}

fn describe_command(command: &Command) -> String {
    match command {
        Command::EnsureUser(_) => "ensure user".to_owned(),
        Command::GrantGroup(grant) => format!(
            "grant group {} ({})",
            grant.group,
            table::window(doorsync_access::Window { from: grant.valid_from, until: grant.valid_until })
        ),
        Command::RevokeGroup(revoke) => format!("revoke group {}", revoke.group),
        Command::SuspendUser(_) => "suspend user".to_owned(),
        Command::RestoreUser(_) => "restore user".to_owned(),
        Command::DeleteUser(_) => "delete user".to_owned(),
    }
}

fn letter_row(letter: &DeadLetter, all: bool) -> Vec<String> {
    let unknown = || "?".to_owned();
    let (command, at) = match &letter.command {
        Ok(envelope) => (describe_command(&envelope.message), envelope.occurred_at.to_string()),
        Err(_) => ("(unreadable)".to_owned(), unknown()),
    };
    let mut row = vec![
        letter.sequence.to_string(),
        letter.member.map_or_else(unknown, |member| member.to_string()),
        command,
        at,
        letter.command_sequence.map_or_else(unknown, |sequence| sequence.to_string()),
    ];
    if all {
        row.push(letter.handled.as_ref().map_or_else(|| "waiting".to_owned(), Handled::to_string));
    }
    row.push(letter.reason.clone());
    row
}

/// The table of dead letters (only those waiting unless `all`), and how many there are.
fn render_list(letters: &[DeadLetter], all: bool) -> String {
    let waiting = letters.iter().filter(|letter| letter.handled.is_none()).count();
    let handled = letters.len() - waiting;
    let shown: Vec<Vec<String>> =
        letters.iter().filter(|letter| all || letter.handled.is_none()).map(|letter| letter_row(letter, all)).collect();
    let mut text = String::new();
    if !shown.is_empty() {
        let mut headers = vec!["SEQUENCE", "MEMBER", "COMMAND", "COMMANDED AT", "COMMAND SEQ"];
        if all {
            headers.push("STATUS");
        }
        headers.push("REASON");
        text.push_str(&table::render(&headers, &shown));
        text.push('\n');
    }
    text.push_str(&format!(
        "{} waiting, {} retried or dropped{}.
",
        table::count(waiting, "dead letter", "dead letters"),
        handled,
        if all || handled == 0 { "" } else { " (--all shows them)" }
    ));
    if waiting > 0 {
        text.push_str(
            "Retry with `doorsync dlq retry <sequence>` (or --all); drop with `doorsync dlq drop <sequence>`.\n",
        );
    }
    text
}

fn describe_retry(letter: &DeadLetter, retried: &Retried) -> String {
    let command = letter
        .command
        .as_ref()
        .map_or_else(|_| "(unreadable)".to_owned(), |envelope| describe_command(&envelope.message));
    let member = letter.member.map_or_else(|| "?".to_owned(), |member| member.to_string());
    format!(
        "Retried dead letter {} (member {member}, {command}): appended again as command {} for the writer.",
        letter.sequence, retried.command_sequence
    )
}

fn render_retries(outcome: &RetryAll) -> String {
    let mut text = String::new();
    for (letter, retried) in &outcome.retried {
        text.push_str(&describe_retry(letter, retried));
        text.push('\n');
    }
    for (letter, refusal) in &outcome.refused {
        text.push_str(&format!("Skipped dead letter {}: {refusal}.\n", letter.sequence));
    }
    text.push_str(&format!(
        "{}, {} skipped.\n",
        table::count(outcome.retried.len(), "dead letter retried", "dead letters retried"),
        outcome.refused.len()
    ));
    text
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use clap::Parser;
    use doorsync_log::NewMessage;
    use doorsync_proto::{Envelope, GrantGroup, KisiGroupId, MemberId, Timestamp};
    use doorsync_writer::dead_letters::{Action, Refusal};
    use doorsync_writer::{REASON_HEADER, SEQUENCE_HEADER};

    use super::*;
    use crate::ops::testing::{TempLog, at, context, ensure, layout};

    fn grant(member: u64, group: KisiGroupId) -> Command {
        Command::GrantGroup(GrantGroup {
            member: MemberId(member),
            group,
            valid_from: None,
            valid_until: None,
            basis: 1,
        })
    }

    /// A dead letter as read back from the stream.
    fn letter(sequence: u64, command: Command, reason: &str, handled: Option<Handled>) -> DeadLetter {
        let envelope = Envelope::new(at(0), command).unwrap();
        DeadLetter {
            sequence: Sequence(sequence),
            member: Some(envelope.message.member()),
            command: Ok(envelope),
            reason: reason.to_owned(),
            command_sequence: Some(Sequence(sequence + 10)),
            handled,
        }
    }

    fn retried(command_sequence: u64) -> Retried {
        Retried {
            command_sequence: Sequence(command_sequence),
            command_id: Envelope::new(at(1), ensure(1)).unwrap().id,
        }
    }

    fn now() -> Timestamp {
        at(30)
    }

    #[test]
    fn a_waiting_letter_is_listed_with_its_command_and_a_handled_one_only_with_all() {
        let lounge = KisiGroupId(100);
        let listed = render_list(&[letter(1, grant(1, lounge), "Kisi said 422", None)], false);
        assert!(listed.contains(&format!("grant group {lounge} (open .. open)")), "{listed}");
        assert!(listed.contains("1 dead letter waiting, 0 retried or dropped."), "{listed}");
        let retry = retried(12);
        let action = Action::Retried { command_sequence: retry.command_sequence, command_id: retry.command_id };
        let handled = Some(Handled { at: now(), action });
        assert!(
            render_list(&[letter(1, grant(1, lounge), "Kisi said 422", handled)], false)
                .starts_with("0 dead letters waiting, 1 retried or dropped (--all shows them).")
        );

        let dropped = Some(Handled { at: now(), action: Action::Dropped });
        let letters =
            [letter(1, grant(2, KisiGroupId(200)), "Kisi: 422", dropped), letter(2, ensure(3), "no email", None)];
        let waiting = render_list(&letters, false);
        assert!(!waiting.lines().any(|line| line.contains("grant group 200")), "{waiting}");
        assert!(waiting.contains("1 dead letter waiting, 1 retried or dropped (--all shows them)."), "{waiting}");
        let all = render_list(&letters, true);
        let dropped_row = all.lines().find(|line| line.contains("grant group 200")).unwrap();
        assert!(dropped_row.contains(&format!("dropped at {}", now())) && dropped_row.ends_with("Kisi: 422"), "{all}");
        assert!(all.lines().next().unwrap().contains("STATUS"), "{all}");
    }

    #[test]
    fn retrying_them_all_counts_what_was_retried_and_skipped_and_an_unreadable_letter_shows_its_member() {
        let unreadable = DeadLetter {
            sequence: Sequence(4),
            member: Some(MemberId(3)),
            command: Err("garbage".to_owned()),
            reason: "undecodable command: garbage".to_owned(),
            command_sequence: Some(Sequence(9)),
            handled: None,
        };
        let outcome = RetryAll {
            retried: vec![
                (letter(2, ensure(1), "refused", None), retried(5)),
                (letter(3, grant(1, KisiGroupId(100)), "no user", None), retried(6)),
            ],
            refused: vec![
                (letter(1, grant(1, KisiGroupId(100)), "refused", None), Refusal::Overtaken { by: Sequence(3) }),
                (unreadable.clone(), Refusal::Undecodable("garbage".to_owned())),
            ],
        };
        let text = render_retries(&outcome);
        assert!(text.ends_with("2 dead letters retried, 2 skipped.\n"), "{text}");
        let listed = render_list(&[unreadable], false);
        let unreadable_row = listed.lines().find(|line| line.starts_with('4')).unwrap();
        assert!(unreadable_row.contains("(unreadable)") && unreadable_row.contains(" 3 "), "{listed}");
    }

    #[tokio::test]
    async fn the_command_opens_the_configured_log_and_leaves_it_closed() {
        let layout = layout();
        let store = TempLog::new(&layout);
        let envelope = Envelope::new(at(0), ensure(1)).unwrap();
        let payload = Bytes::from(doorsync_proto::encode(&envelope).unwrap());
        let parked = NewMessage::new(layout.subjects.dead_letter(MemberId(1)), envelope.id.to_string(), payload)
            .with_header(REASON_HEADER, "refused")
            .with_header(SEQUENCE_HEADER, "1");
        let sequence = store.log.append(parked).await.unwrap().sequence;
        let dir = store.close().await;
        let context = context(&dir, None, &[]);
        // Nothing listens on the discard port: no running process holds the log.
        let admin = Admin::new(&context.config, Some("http://127.0.0.1:9")).unwrap();

        dlq(&context, &admin, DlqAction::Drop { sequence }).await.unwrap();
        dlq(&context, &admin, DlqAction::List { all: true }).await.unwrap();
        let missing = dlq(&context, &admin, DlqAction::Retry { sequence: None, all: false }).await.unwrap_err();
        assert!(missing.to_string().contains("--all"), "{missing}");
        let refused =
            dlq(&context, &admin, DlqAction::Retry { sequence: Some(sequence), all: false }).await.unwrap_err();
        assert!(refused.to_string().contains("already dropped"), "{refused}");

        let reopened = doorsync_log_embedded::EmbeddedLog::open(doorsync_log_embedded::EmbeddedOptions::new(
            &context.config.log.path,
            layout.streams(),
        ))
        .unwrap();
        let letter = dead_letters::dead_letter(&reopened, &layout, sequence).await.unwrap();
        assert!(matches!(letter.handled, Some(Handled { action: Action::Dropped, .. })));
    }

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        action: DlqAction,
    }

    #[test]
    fn retry_takes_a_sequence_or_all_but_not_both() {
        let parse = |args: &[&str]| Cli::try_parse_from(["dlq"].iter().chain(args)).map(|cli| cli.action);
        assert_eq!(parse(&["list"]).unwrap(), DlqAction::List { all: false });
        assert_eq!(parse(&["list", "--all"]).unwrap(), DlqAction::List { all: true });
        assert_eq!(parse(&["retry", "5"]).unwrap(), DlqAction::Retry { sequence: Some(Sequence(5)), all: false });
        assert_eq!(parse(&["retry", "--all"]).unwrap(), DlqAction::Retry { sequence: None, all: true });
        assert_eq!(parse(&["drop", "3"]).unwrap(), DlqAction::Drop { sequence: Sequence(3) });
        assert!(parse(&["retry"]).is_err());
        assert!(parse(&["retry", "5", "--all"]).is_err());
        assert!(parse(&["drop"]).is_err());
    }
}
