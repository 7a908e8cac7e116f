use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use doorsync_clock::SystemClock;
use doorsync_kisi::{ApiKey, KisiClient, KisiOptions};
use doorsync_kisi_sim::{Fault, FaultRule, KisiSimulator, SimOptions};
use doorsync_layout::Layout;
use doorsync_log::{EventLog, NewMessage, ReplayRequest, Sequence, StoredMessage};
use doorsync_log_embedded::{EmbeddedLog, EmbeddedOptions};
use doorsync_proto::{EnsureUser, GrantGroup, KisiGroupId, RevokeGroup, Subjects};
use futures::TryStreamExt;

use super::*;
use crate::{REASON_HEADER, SEQUENCE_HEADER, WriterOptions};

/// 2026-11-30T09:00:00Z
const T0: i64 = 1_796_029_200_000;
const MINUTE: i64 = 60_000;

fn at(minutes: i64) -> Timestamp {
    Timestamp::from_unix_millis(T0 + minutes * MINUTE)
}

fn now() -> Timestamp {
    at(30)
}

fn layout() -> Layout {
    Layout::new(Subjects::new("test", 4).unwrap())
}

/// An embedded log in its own temporary directory.
struct TempLog {
    log: Arc<dyn EventLog>,
    _dir: tempfile::TempDir,
}

impl TempLog {
    fn new(layout: &Layout) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(EmbeddedOptions::new(dir.path().join("log.redb"), layout.streams())).unwrap();
        Self { log: Arc::new(log), _dir: dir }
    }
}

fn ensure(member: u64) -> Command {
    Command::EnsureUser(EnsureUser {
        member: MemberId(member),
        email: format!("m{member}@example.test"),
        name: format!("Member {member}"),
        basis: 1,
    })
}

fn grant(member: u64, group: KisiGroupId) -> Command {
    Command::GrantGroup(GrantGroup { member: MemberId(member), group, valid_from: None, valid_until: None, basis: 1 })
}

/// Appends a command as the engine does; returns its sequence.
async fn append_command(log: &dyn EventLog, layout: &Layout, occurred_at: Timestamp, command: Command) -> Sequence {
    let envelope = Envelope::new(occurred_at, command).unwrap();
    let payload = Bytes::from(doorsync_proto::encode(&envelope).unwrap());
    let subject = layout.subjects.command(envelope.message.member());
    log.append(NewMessage::new(subject, envelope.id.to_string(), payload)).await.unwrap().sequence
}

/// Appends the command as the engine does, then parks it as the writer does when it gives up
/// on it; returns (command sequence, dead letter sequence).
async fn dead_lettered(log: &dyn EventLog, layout: &Layout, command: Command, reason: &str) -> (Sequence, Sequence) {
    dead_lettered_at_edge(log, layout, command, None, reason).await
}

/// [`dead_lettered`] for a command the engine decided at or after the window edge `edge`.
async fn dead_lettered_at_edge(
    log: &dyn EventLog,
    layout: &Layout,
    command: Command,
    edge: Option<Timestamp>,
    reason: &str,
) -> (Sequence, Sequence) {
    let envelope = Envelope::with_window_edge(at(0), edge, command).unwrap();
    let payload = Bytes::from(doorsync_proto::encode(&envelope).unwrap());
    let member = envelope.message.member();
    let command_message = NewMessage::new(layout.subjects.command(member), envelope.id.to_string(), payload.clone());
    let command_sequence = log.append(command_message).await.unwrap().sequence;
    let letter = NewMessage::new(layout.subjects.dead_letter(member), envelope.id.to_string(), payload)
        .with_header(REASON_HEADER, reason)
        .with_header(SEQUENCE_HEADER, command_sequence.to_string());
    (command_sequence, log.append(letter).await.unwrap().sequence)
}

async fn commands(log: &dyn EventLog, layout: &Layout) -> Vec<StoredMessage> {
    log.replay(ReplayRequest::whole(&layout.commands)).await.unwrap().try_collect().await.unwrap()
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_writer_dead_lettered_is_read_back_and_a_retry_is_carried_out_by_it() {
    const KEY: &str = "key-of-the-integration";
    let mut sim_options = SimOptions::new(Arc::new(SystemClock));
    sim_options.requests_per_second = 50;
    let sim = KisiSimulator::start(sim_options).await.unwrap();
    let kisi = sim.handle();
    kisi.add_api_account("integration@example.com", "doorsync", KEY).unwrap();
    let client = KisiClient::new(KisiOptions::new(sim.base_url(), ApiKey::new(KEY), "doorsync-tests")).unwrap();
    let lounge = kisi.add_group("Lounge");
    let refused = Fault::Status { status: 422, retry_after: None };
    kisi.inject(FaultRule::new(refused).times(3).method("POST").path("/role_assignments"));
    let layout = layout();
    let store = TempLog::new(&layout);
    let log = store.log.as_ref();
    let mut options = WriterOptions::new("writer-test", "main");
    options.backoff_first = Duration::from_millis(50);
    options.backoff_max = Duration::from_millis(500);
    options.reconcile_on_schedule = false;
    options.settings.ack_wait = Duration::from_secs(5);
    options.settings.lease_ttl = Duration::from_secs(3);
    let writer =
        crate::start(options, client, Arc::clone(&store.log), layout.clone(), Arc::new(SystemClock)).await.unwrap();
    append_command(log, &layout, at(0), ensure(1)).await;
    let grant_sequence = append_command(log, &layout, at(0), grant(1, lounge)).await;
    eventually("the writer dead-letters the refused grant", || {
        let status = writer.status();
        status.dead_letters == 1 && status.backlog_commands == 0
    })
    .await;

    let letters = dead_letters(log, &layout).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.member, Some(MemberId(1)));
    assert_eq!(letter.command.as_ref().map(|envelope| &envelope.message), Ok(&grant(1, lounge)));
    assert_eq!(letter.command_sequence, Some(grant_sequence));
    assert!(letter.reason.contains("422"), "{}", letter.reason);
    assert_eq!(letter.handled, None);

    let clock_now = doorsync_clock::Clock::now(&SystemClock);
    let retried = retry(log, &layout, letter, clock_now).await.unwrap().unwrap();
    assert!(retried.command_sequence > grant_sequence);
    assert_ne!(Ok(&retried.command_id), letter.command.as_ref().map(|envelope| &envelope.id), "a new id");
    eventually("the writer carries out the retried grant", || kisi.assignments().len() == 1).await;
    let user = kisi.user_by_email("m1@example.test").unwrap();
    assert_eq!((kisi.assignments()[0].user, kisi.assignments()[0].group), (user.id, lounge));

    let letters = dead_letters(log, &layout).await.unwrap();
    assert!(matches!(
        &letters[0].handled,
        Some(Handled { action: Action::Retried { command_sequence, .. }, .. }) if *command_sequence == retried.command_sequence
    ));
    let report = writer.reconcile_now().await.unwrap();
    assert_eq!(report.failed, 0, "the writer's bucket still reads well with a dlq.* record in it: {report:?}");
    writer.shutdown().await;
}

#[tokio::test]
async fn a_retry_appends_the_command_again_with_a_new_id_and_is_recorded() {
    let layout = layout();
    let store = TempLog::new(&layout);
    let log = store.log.as_ref();
    let (command_sequence, sequence) = dead_lettered(log, &layout, ensure(1), "Kisi refused").await;
    let letter = dead_letter(log, &layout, sequence).await.unwrap();

    let retried = retry(log, &layout, &letter, now()).await.unwrap().unwrap();

    let stored = commands(log, &layout).await;
    let appended = stored.last().unwrap();
    assert_eq!(
        (appended.sequence, &appended.subject),
        (retried.command_sequence, &layout.subjects.command(MemberId(1)))
    );
    assert!(appended.sequence > command_sequence, "above what the writer settled the user at");
    let envelope = doorsync_proto::decode::<Command>(&appended.payload).unwrap();
    assert_eq!((envelope.message, envelope.occurred_at), (ensure(1), now()));
    assert_eq!(appended.id.as_deref(), Some(retried.command_id.as_str()));
    assert_ne!(Some(&envelope.id), letter.command.as_ref().ok().map(|original| &original.id));

    let letter = dead_letter(log, &layout, sequence).await.unwrap();
    let handled = Handled {
        at: now(),
        action: Action::Retried { command_sequence: retried.command_sequence, command_id: retried.command_id },
    };
    assert_eq!(letter.handled, Some(handled.clone()));
    assert_eq!(retry(log, &layout, &letter, now()).await.unwrap(), Err(Refusal::Handled(handled)));
    assert_eq!(commands(log, &layout).await.len(), stored.len(), "nothing appended twice");
}

#[tokio::test]
async fn a_retried_command_is_still_late_for_the_window_edge_it_was_due_to() {
    let layout = layout();
    let store = TempLog::new(&layout);
    let log = store.log.as_ref();
    let edge = Some(at(-5));
    let (_, sequence) = dead_lettered_at_edge(log, &layout, grant(1, KisiGroupId(9)), edge, "Kisi said 404").await;
    let letter = dead_letter(log, &layout, sequence).await.unwrap();

    retry(log, &layout, &letter, now()).await.unwrap().unwrap();

    let stored = commands(log, &layout).await;
    let envelope = doorsync_proto::decode::<Command>(&stored.last().unwrap().payload).unwrap();
    assert_eq!((envelope.occurred_at, envelope.window_edge), (now(), edge));
}

#[tokio::test]
async fn a_letter_overtaken_by_a_newer_command_for_the_same_group_is_not_retried() {
    let layout = layout();
    let store = TempLog::new(&layout);
    let log = store.log.as_ref();
    let (_, sequence) = dead_lettered(log, &layout, grant(1, KisiGroupId(100)), "refused").await;
    let revoke = Command::RevokeGroup(RevokeGroup { member: MemberId(1), group: KisiGroupId(100), basis: 2 });
    let revoked_at = append_command(log, &layout, at(1), revoke).await;
    append_command(log, &layout, at(1), grant(1, KisiGroupId(200))).await;
    let appended = commands(log, &layout).await.len();
    let letter = dead_letter(log, &layout, sequence).await.unwrap();

    let refused = retry(log, &layout, &letter, now()).await.unwrap();

    assert_eq!(refused, Err(Refusal::Overtaken { by: revoked_at }));
    assert!(refused.unwrap_err().to_string().contains("drop this one"));
    assert_eq!(commands(log, &layout).await.len(), appended);
    assert_eq!(dead_letter(log, &layout, sequence).await.unwrap().handled, None);
}

#[tokio::test]
async fn a_dropped_letter_is_recorded_once_and_is_not_retried() {
    let layout = layout();
    let store = TempLog::new(&layout);
    let log = store.log.as_ref();
    let (_, dropped) = dead_lettered(log, &layout, grant(2, KisiGroupId(200)), "Kisi: 422").await;
    dead_lettered(log, &layout, ensure(3), "no email").await;
    let letter = dead_letter(log, &layout, dropped).await.unwrap();

    assert_eq!(drop_letter(log, &layout, &letter, now()).await.unwrap(), None);

    let letters = dead_letters(log, &layout).await.unwrap();
    let handled = Handled { at: now(), action: Action::Dropped };
    let states: Vec<Option<&Handled>> = letters.iter().map(|letter| letter.handled.as_ref()).collect();
    assert_eq!(states, [Some(&handled), None]);
    let letter = dead_letter(log, &layout, dropped).await.unwrap();
    assert_eq!(drop_letter(log, &layout, &letter, at(40)).await.unwrap(), Some(handled.clone()));
    assert_eq!(retry(log, &layout, &letter, now()).await.unwrap(), Err(Refusal::Handled(handled)));
}

#[tokio::test]
async fn retry_all_retries_the_waiting_letters_oldest_first_and_says_why_it_skipped_others() {
    let layout = layout();
    let store = TempLog::new(&layout);
    let log = store.log.as_ref();
    let (_, overtaken) = dead_lettered(log, &layout, grant(1, KisiGroupId(100)), "refused").await;
    let (_, user) = dead_lettered(log, &layout, ensure(1), "refused").await;
    // The engine's later grant for the group was computed from a later event.
    let later =
        GrantGroup { member: MemberId(1), group: KisiGroupId(100), valid_from: None, valid_until: None, basis: 3 };
    let (_, group) = dead_lettered(log, &layout, Command::GrantGroup(later.clone()), "no user").await;
    let unreadable = NewMessage::new(layout.subjects.dead_letter(MemberId(3)), "undecodable-9", &b"\xc1"[..])
        .with_header(REASON_HEADER, "undecodable command: garbage")
        .with_header(SEQUENCE_HEADER, "9");
    let unreadable = log.append(unreadable).await.unwrap().sequence;

    let outcome = retry_all(log, &layout, now()).await.unwrap();

    let retried: Vec<Sequence> = outcome.retried.iter().map(|(letter, _)| letter.sequence).collect();
    assert_eq!(retried, [user, group]);
    let refused: Vec<(Sequence, bool)> = outcome
        .refused
        .iter()
        .map(|(letter, refusal)| (letter.sequence, matches!(refusal, Refusal::Undecodable(_))))
        .collect();
    assert_eq!(refused, [(overtaken, false), (unreadable, true)]);
    let appended: Vec<Command> = commands(log, &layout).await[3..]
        .iter()
        .map(|message| doorsync_proto::decode::<Command>(&message.payload).unwrap().message)
        .collect();
    assert_eq!(appended, [ensure(1), Command::GrantGroup(later)], "the user before the group that needs it");
    let unread = &outcome.refused[1].0;
    assert_eq!((unread.member, unread.command.is_err()), (Some(MemberId(3)), true), "the member from the subject");
}

#[tokio::test]
async fn an_unknown_sequence_is_an_error_that_says_where_to_look() {
    let layout = layout();
    let store = TempLog::new(&layout);
    dead_lettered(store.log.as_ref(), &layout, ensure(1), "refused").await;
    let error = dead_letter(store.log.as_ref(), &layout, Sequence(7)).await.unwrap_err().to_string();
    assert!(error.contains("no dead letter 7") && error.contains("dlq list --all"), "{error}");
}

#[tokio::test]
async fn the_status_page_reads_the_dead_letters_from_the_first_still_waiting_not_the_whole_stream() {
    let layout = layout();
    let store = TempLog::new(&layout);
    let log = store.log.as_ref();
    for member in 1..=120 {
        dead_lettered(log, &layout, ensure(member), "422 from POST /users").await;
    }
    let sequences = |letters: &[DeadLetter]| letters.iter().map(|letter| letter.sequence.0).collect::<Vec<u64>>();
    let drop = async |sequence: u64| {
        let letter = dead_letter(log, &layout, Sequence(sequence)).await.unwrap();
        assert_eq!(drop_letter(log, &layout, &letter, now()).await.unwrap(), None);
    };
    for sequence in (1..=100).filter(|sequence| *sequence != 3) {
        drop(sequence).await;
    }
    let listed = dead_letters(log, &layout).await.unwrap();
    assert_eq!(sequences(&listed), (3..=120).collect::<Vec<u64>>(), "from the oldest still waiting");

    drop(3).await;
    let listed = dead_letters(log, &layout).await.unwrap();
    assert_eq!(sequences(&listed), (71..=120).collect::<Vec<u64>>(), "the latest, waiting or not");
    assert_eq!(listed.iter().filter(|letter| letter.handled.is_none()).count(), 20);
    assert_eq!(every_dead_letter(log, &layout).await.unwrap().len(), 120, "`dlq list` still lists them all");
}

#[test]
fn a_letter_reads_as_plain_json_and_back() {
    let envelope = Envelope::new(at(0), grant(1, KisiGroupId(7))).unwrap();
    let letter = |command| DeadLetter {
        sequence: Sequence(3),
        member: Some(MemberId(1)),
        command,
        reason: "Kisi refused the group".to_owned(),
        command_sequence: Some(Sequence(9)),
        handled: None,
    };
    for letter in [letter(Ok(envelope)), letter(Err("written by a newer doorsync".to_owned()))] {
        let json = serde_json::to_value(&letter).unwrap();
        let field = json["command"].as_object().unwrap();
        let tag = if letter.command.is_ok() { "command" } else { "unreadable" };
        assert_eq!(field.keys().collect::<Vec<_>>(), [tag], "{json}");
        assert_eq!(serde_json::from_value::<DeadLetter>(json).unwrap(), letter);
    }
}
