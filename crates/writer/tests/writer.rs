//! The writer against the Kisi simulator over loopback HTTP, on a real (embedded) log.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use doorsync_clock::{Clock, ManualClock};
use doorsync_kisi_sim::{Fault, FaultRule, KeyAccess};
use doorsync_proto::{
    Command, Failed, GrantApplied, KisiUserState, MemberId, Outcome, Timestamp, UserAccessChanged, UserLinked,
};
use doorsync_writer::{REASON_HEADER, WriterOptions, WriterRole};
use support::*;

fn grants_applied(outcomes: &[Outcome]) -> Vec<GrantApplied> {
    outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            Outcome::GrantApplied(applied) => Some(applied.clone()),
            _ => None,
        })
        .collect()
}

fn role_assignment_writes(harness: &Harness) -> u64 {
    let calls = harness.kisi.calls();
    ["POST /role_assignments", "PATCH /role_assignments/{id}", "DELETE /role_assignments/{id}"]
        .iter()
        .map(|endpoint| calls.by_endpoint.get(*endpoint).copied().unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_managed_users_off_a_created_user_is_a_regular_one_who_signs_up() {
    let harness = Harness::new().await;
    let writer = harness.start(WriterOptions { managed_users: false, ..harness.options("writer-a") }).await;
    harness.send(ensure(1, &email(1))).await;
    eventually("the user is created", WAIT, async || writer.status().commands_applied == 1).await;

    let user = harness.kisi.user_by_email(&email(1)).unwrap();
    assert!(user.send_emails && !user.confirmed, "a regular user: Kisi's welcome email, then sign-up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_becomes_one_assignment_with_its_window_and_a_grant_applied_outcome() {
    let harness = Harness::new().await;
    let group = harness.kisi.add_group("Meeting room 1");
    let writer = harness.start(harness.options("writer-a")).await;
    harness.send(ensure(1, &email(1))).await;
    harness.send(grant(1, group, seconds(1_900_000_000), seconds(1_900_003_600))).await;
    eventually("both commands are settled", WAIT, async || writer.status().commands_applied == 2).await;

    let user = harness.kisi.user_by_email(&email(1)).unwrap();
    let assignments = harness.kisi.assignments();
    assert_eq!(assignments.len(), 1);
    let assignment = &assignments[0];
    assert_eq!((assignment.user, assignment.group), (user.id, group));
    assert_eq!((assignment.valid_from, assignment.valid_until), (seconds(1_900_000_000), seconds(1_900_003_600)));
    assert_eq!(assignment.created_by, Some(harness.api_user));
    assert!(!user.send_emails && user.confirmed, "a managed user: no Kisi emails, no sign-up");

    let outcomes = harness.outcomes().await;
    assert!(outcomes.contains(&Outcome::UserLinked(UserLinked {
        member: MemberId(1),
        kisi_user: user.id,
        created_by_doorsync: true
    })));
    assert_eq!(
        grants_applied(&outcomes),
        [GrantApplied {
            member: MemberId(1),
            group,
            assignment: assignment.id,
            valid_from: seconds(1_900_000_000),
            valid_until: seconds(1_900_003_600),
        }]
    );
    let calls = harness.kisi.calls();
    // Who am I, the users' page, create the user, create the assignment; and a search when the
    // live commands came before the users' page was read.
    assert!((4..=5).contains(&calls.total()), "{calls:?}");
    assert_eq!((calls.endpoint("POST", "/users"), calls.endpoint("POST", "/role_assignments")), (1, 1), "{calls:?}");
    let status = writer.status();
    assert_eq!((status.role, status.commands_applied, status.backlog_keys), (WriterRole::Active, 2, 0));
    writer.shutdown().await;
    assert_eq!(writer.status().role, WriterRole::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_for_one_key_costs_one_call_and_knowledge_survives_a_restart() {
    let harness = Harness::new().await;
    // This Kisi applies a PATCH of a window (the writer still reads each one back).
    harness.kisi.set_patch_validity(doorsync_kisi_sim::PatchValidity::Apply);
    let group = harness.kisi.add_group("Desk area");
    harness.send(ensure(1, &email(1))).await;
    harness.send(grant(1, group, None, seconds(2_000_000_000))).await;
    harness.send(revoke(1, group)).await;
    harness.send(grant(1, group, None, seconds(2_000_001_000))).await;
    let writer = harness.start(harness.options("writer-a")).await;
    eventually("the backlog is settled", WAIT, async || writer.status().commands_applied == 2).await;
    assert_eq!(role_assignment_writes(&harness), 1, "grant/revoke/grant is one create");
    assert_eq!(harness.kisi.assignments()[0].valid_until, seconds(2_000_001_000));
    assert_eq!(writer.status().commands_superseded, 2);
    writer.shutdown().await;

    // Another backlog for the same key, read by a new writer: one update and its read-back, no
    // lookups. Kisi's limit is per API user over a rolling second, which the writer before used.
    tokio::time::sleep(Duration::from_secs(1)).await;
    harness.kisi.reset_calls();
    for command in [
        revoke(1, group),
        grant(1, group, seconds(1_999_000_000), seconds(2_000_002_000)),
        revoke(1, group),
        grant(1, group, seconds(1_999_000_000), seconds(2_000_003_000)),
    ] {
        harness.send(command).await;
    }
    let restarted = harness.start(harness.options("writer-b")).await;
    eventually("the second backlog is settled", WAIT, async || restarted.status().commands_applied == 1).await;
    // The live key goes before the users' page, which is read after it.
    eventually("the users' page is read", WAIT, async || harness.kisi.calls().endpoint("GET", "/users") == 1).await;
    let calls = harness.kisi.calls();
    assert_eq!(calls.endpoint("PATCH", "/role_assignments/{id}"), 1, "{calls:?}");
    assert_eq!(calls.endpoint("GET", "/role_assignments/{id}"), 1, "the update is read back: {calls:?}");
    assert_eq!(calls.total(), 4, "who am I, the users' page, the one update and its read-back: {calls:?}");
    let assignment = &harness.kisi.assignments()[0];
    assert_eq!((assignment.valid_from, assignment.valid_until), (seconds(1_999_000_000), seconds(2_000_003_000)));
    restarted.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_sent_again_unchanged_make_no_call_but_are_answered() {
    let harness = Harness::new().await;
    let group = harness.kisi.add_group("Phone booth");
    let writer = harness.start(harness.options("writer-a")).await;
    // Bulk work, done after the writer's first read of the users' page (live work goes before it).
    harness.send_bulk(ensure(1, &email(1))).await;
    harness.send_bulk(grant(1, group, None, seconds(2_000_000_000))).await;
    eventually("the grant is applied", WAIT, async || writer.status().commands_applied == 2).await;
    let calls_before = harness.kisi.calls();
    let outcomes_before = harness.outcomes().await.len();

    harness.send(ensure(1, &email(1))).await;
    harness.send(grant(1, group, None, seconds(2_000_000_000))).await;
    eventually("the repeats are settled", WAIT, async || writer.status().commands_applied == 4).await;
    assert_eq!(harness.kisi.calls(), calls_before, "nothing to change, nothing called");
    let outcomes = harness.outcomes().await;
    assert_eq!(outcomes.len(), outcomes_before + 2, "each repeat is answered from what is known");
    assert!(matches!(outcomes.last(), Some(Outcome::GrantApplied(_))));
    writer.shutdown().await;
}

/// On a virtual clock running ten times faster than the wall clock, shared by the simulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_server_errors_are_retried_and_retry_after_is_honoured() {
    let clock = ManualClock::new(Timestamp::from_unix_millis(1_800_000_000_000));
    let ticker = {
        let clock = clock.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                clock.advance(Duration::from_millis(10));
            }
        })
    };
    let harness = Harness::with(Arc::new(clock.clone()), 5).await;
    let group = harness.kisi.add_group("Event space");
    let throttled = Fault::Status { status: 429, retry_after: Some("30".into()) };
    let unavailable = Fault::Status { status: 503, retry_after: None };
    harness.kisi.inject(FaultRule::new(throttled).method("POST").path("/role_assignments").times(1));
    harness.kisi.inject(FaultRule::new(unavailable).method("POST").path("/role_assignments").times(2));
    let mut options = harness.options("writer-a");
    // Virtual time runs fast: a lease long enough that renewals never race it.
    options.settings.lease_ttl = Duration::from_secs(120);
    let writer = harness.start(options).await;
    harness.send(ensure(1, &email(1))).await;
    let sent_at = clock.now();
    harness.send(grant(1, group, None, None)).await;
    eventually("the grant is applied", WAIT, async || writer.status().commands_applied == 2).await;

    let calls = harness.kisi.calls();
    assert_eq!((calls.status(429), calls.status(503)), (1, 2), "{calls:?}");
    assert_eq!(calls.endpoint("POST", "/role_assignments"), 4, "{calls:?}");
    let assignments = harness.kisi.assignments();
    assert_eq!(assignments.len(), 1);
    let waited = assignments[0].created_at.as_unix_millis() - sent_at.as_unix_millis();
    assert!(waited >= 30_000, "created {waited} ms after the command, within Kisi's Retry-After of 30 s");
    let status = writer.status();
    assert_eq!((status.calls.rate_limited, status.calls.server_errors, status.dead_letters), (1, 2, 0));
    writer.shutdown().await;
    ticker.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_whose_answer_was_lost_are_looked_up_not_repeated() {
    let harness = Harness::new().await;
    let group = harness.kisi.add_group("Studio");
    harness.kisi.inject(FaultRule::new(Fault::DropResponse).method("POST").path("/users").times(1));
    harness.kisi.inject(FaultRule::new(Fault::DropResponse).method("POST").path("/role_assignments").times(1));
    let writer = harness.start(harness.options("writer-a")).await;
    harness.send(ensure(1, &email(1))).await;
    harness.send(grant(1, group, None, seconds(2_000_000_000))).await;
    eventually("the grant is applied", WAIT, async || writer.status().commands_applied == 2).await;

    let calls = harness.kisi.calls();
    assert_eq!(calls.dropped, 2, "{calls:?}");
    let users: Vec<_> = harness.kisi.users().into_iter().filter(|user| user.email == email(1)).collect();
    assert_eq!(users.len(), 1, "one user, though its create was answered by a dropped connection");
    assert_eq!(harness.kisi.assignments().len(), 1, "one assignment, likewise");
    assert_eq!((calls.endpoint("POST", "/users"), calls.endpoint("POST", "/role_assignments")), (1, 1));
    let outcomes = harness.outcomes().await;
    assert!(
        outcomes.contains(&Outcome::UserLinked(UserLinked {
            member: MemberId(1),
            kisi_user: users[0].id,
            created_by_doorsync: true,
        })),
        "found by email, the user is still known as doorsync's own (by its metadata): {outcomes:?}"
    );
    writer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_command_is_dead_lettered_with_its_reason_and_the_rest_goes_on() {
    let harness = Harness::new().await;
    let group = harness.kisi.add_group("Lounge");
    let writer = harness.start(harness.options("writer-a")).await;
    harness.send(ensure(1, &email(1))).await;
    // Ends before it starts: Kisi answers 422.
    let refused = harness.send(grant(1, group, seconds(2_000_000_000), seconds(1_999_999_000))).await;
    harness.send(ensure(2, &email(2))).await;
    harness.send(grant(2, group, None, seconds(2_000_000_000))).await;
    eventually("everything is settled", WAIT, async || {
        let status = writer.status();
        status.commands_applied == 3 && status.dead_letters == 1 && status.backlog_commands == 0
    })
    .await;

    let letters = harness.dead_letters().await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.subject, harness.layout.subjects.dead_letter(MemberId(1)));
    let parked = doorsync_proto::decode::<Command>(&letter.payload).unwrap();
    assert_eq!(parked.id, refused, "the dead letter is the command itself");
    let reason = letter.headers.iter().find(|(name, _)| name == REASON_HEADER).map(|(_, value)| value.clone());
    let reason = reason.unwrap();
    assert!(reason.contains("422") && reason.contains("valid_until"), "{reason}");
    let failures: Vec<Failed> = harness
        .outcomes()
        .await
        .into_iter()
        .filter_map(|outcome| match outcome {
            Outcome::Failed(failed) => Some(failed),
            _ => None,
        })
        .collect();
    assert_eq!(failures.len(), 1);
    assert_eq!((failures[0].member, &failures[0].command, failures[0].permanent), (MemberId(1), &refused, true));
    assert_eq!(failures[0].reason, reason);
    let assignments = harness.kisi.assignments();
    assert_eq!(assignments.len(), 1, "member 2's grant went through");
    writer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_pauses_the_writer_without_dead_letters_until_it_works_again() {
    let harness = Harness::new().await;
    let group = harness.kisi.add_group("Workshop");
    let writer = harness.start(harness.options("writer-a")).await;
    harness.send(ensure(1, &email(1))).await;
    eventually("the user exists", WAIT, async || writer.status().commands_applied == 1).await;

    harness.kisi.revoke_api_key(KEY);
    for member in 1..=3 {
        if member > 1 {
            harness.send(ensure(member, &email(member))).await;
        }
        harness.send(grant(member, group, None, None)).await;
    }
    eventually("the writer is paused", WAIT, async || writer.status().paused.is_some()).await;
    let probes_at_pause = harness.kisi.calls().endpoint("GET", "/user");
    eventually("a few probes went by", WAIT, async || {
        harness.kisi.calls().endpoint("GET", "/user") >= probes_at_pause + 3
    })
    .await;
    let status = writer.status();
    let paused = status.paused.clone().unwrap();
    assert!(paused.reason.contains("401") && paused.reason.contains("KISI_API_KEY"), "{}", paused.reason);
    assert_eq!((status.credential_alerts, status.dead_letters, status.commands_applied), (1, 0, 1));
    assert!(status.backlog_commands >= 3, "the queue is kept: {status:?}");
    assert!(harness.dead_letters().await.is_empty());
    let calls = harness.kisi.calls();
    let not_probes = calls.total() - calls.endpoint("GET", "/user");
    assert!(not_probes <= 4, "only the credentials probe while paused: {calls:?}");
    assert!(writer.reconcile_now().await.is_err(), "no reconciliation while paused");

    harness.kisi.add_api_key(harness.api_user, KEY, KeyAccess::Admin).unwrap();
    eventually("the queue is worked off", WAIT, async || writer.status().commands_applied == 6).await;
    let status = writer.status();
    assert_eq!((status.paused, status.dead_letters), (None, 0));
    assert_eq!(harness.kisi.assignments().len(), 3);
    writer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_users_doorsync_manages_are_suspended_or_deleted() {
    let harness = Harness::new().await;
    let group = harness.kisi.add_group("Floor 2");
    let staff = harness.kisi.add_user(&email(3), "Someone from the front desk").unwrap();
    // By default (kisi.manage_found_users off) a user found by email is linked for memberships only.
    let writer = harness.start(harness.options("writer-a")).await;

    harness.send(ensure(1, &email(1))).await;
    harness.send(grant(1, group, None, None)).await;
    eventually("member 1 is granted", WAIT, async || writer.status().commands_applied == 2).await;
    harness.send(suspend(1)).await;
    eventually("member 1 is suspended", WAIT, async || writer.status().commands_applied == 3).await;
    assert!(!harness.kisi.user_by_email(&email(1)).unwrap().access_enabled);
    harness.send(restore(1)).await;
    eventually("member 1 is restored", WAIT, async || writer.status().commands_applied == 4).await;
    assert!(harness.kisi.user_by_email(&email(1)).unwrap().access_enabled);

    // Never ensured: there is no user doorsync may touch.
    harness.send(suspend(2)).await;
    // Found by email: linked, and never suspended, restored or deleted.
    harness.send(ensure(3, &email(3))).await;
    eventually("member 3 is linked", WAIT, async || {
        let status = writer.status();
        status.commands_applied == 5 && status.dead_letters == 1
    })
    .await;
    harness.send(suspend(3)).await;
    harness.send(delete(3)).await;
    harness.send(delete(1)).await;
    eventually("everything is settled", WAIT, async || {
        let status = writer.status();
        status.backlog_commands == 0
            && status.dead_letters == 1
            && status.commands_applied + status.commands_superseded == 8
    })
    .await;
    // Member 3's suspension and deletion are left undone (as one, if they came together).
    assert!((1..=2).contains(&writer.status().found_users_left_alone), "{:?}", writer.status());

    assert!(harness.kisi.user_by_email(&email(1)).is_none(), "doorsync's own user is deleted");
    let linked = harness.kisi.user_by_email(&email(3)).unwrap();
    assert!(linked.access_enabled && linked.id == staff, "the linked user is untouched");
    let calls = harness.kisi.calls();
    assert_eq!(calls.endpoint("PATCH", "/users/{id}"), 2, "member 1's suspension and restore only: {calls:?}");
    assert_eq!(calls.endpoint("DELETE", "/users/{id}"), 1);
    let outcomes = harness.outcomes().await;
    for expected in [
        Outcome::UserAccessChanged(UserAccessChanged { member: MemberId(1), state: KisiUserState::Suspended }),
        Outcome::UserAccessChanged(UserAccessChanged { member: MemberId(1), state: KisiUserState::Enabled }),
        Outcome::UserAccessChanged(UserAccessChanged { member: MemberId(1), state: KisiUserState::Deleted }),
        Outcome::UserLinked(UserLinked { member: MemberId(3), kisi_user: staff, created_by_doorsync: false }),
    ] {
        assert!(outcomes.contains(&expected), "{expected:?} missing from {outcomes:?}");
    }
    let refused: Vec<MemberId> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            Outcome::Failed(failed) if failed.permanent => Some(failed.member),
            _ => None,
        })
        .collect();
    assert_eq!(refused, [MemberId(2)], "leaving a found user alone is the rule, not a failure");
    writer.shutdown().await;
}

/// The writer at its default 4 requests/s never trips the simulator's 5/s limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limiter_keeps_below_kisi_s_rate_limit() {
    let harness = Harness::new().await;
    let group = harness.kisi.add_group("Coworking floor");
    let options = harness.options("writer-a");
    assert_eq!(options.requests_per_second, 4);
    let writer = harness.start(options).await;
    for member in 1..=8 {
        harness.send(ensure(member, &email(member))).await;
        harness.send(grant(member, group, None, None)).await;
    }
    eventually("all granted", Duration::from_secs(60), async || writer.status().commands_applied == 16).await;
    let calls = harness.kisi.calls();
    // Who am I, the users' page, and per member a create and an assignment, and a search for each
    // member whose live commands came before the users' page was read.
    assert!((18..=26).contains(&calls.total()), "{calls:?}");
    assert_eq!(calls.status(429), 0, "{calls:?}");
    writer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_writer_makes_no_calls_and_takes_over_when_the_active_one_stops() {
    let harness = Harness::with(Arc::new(doorsync_clock::SystemClock), 50).await;
    standby_takes_over(&harness).await;
}

/// Appends `command` as the engine does for one a window edge made necessary.
async fn send_due_to_edge(harness: &Harness, command: Command, edge: Timestamp) {
    let envelope = doorsync_proto::Envelope::with_window_edge(edge, Some(edge), command).unwrap();
    let subject = harness.layout.subjects.command(envelope.message.member());
    let payload = bytes::Bytes::from(doorsync_proto::encode(&envelope).unwrap());
    let message = doorsync_log::NewMessage::new(subject, envelope.id.to_string(), payload);
    harness.log.append(message).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_due_to_a_window_edge_are_counted_by_how_late_kisi_held_them_and_the_limiter_reports() {
    let harness = Harness::new().await;
    let (room, studio) = (harness.kisi.add_group("Room 1"), harness.kisi.add_group("Studio"));
    let writer = harness.start(harness.options("writer-a")).await;
    harness.send(ensure(1, &email(1))).await;
    // Long overdue: a window that began in 1970 and is only now written.
    send_due_to_edge(&harness, grant(1, room, seconds(0), None), Timestamp::from_unix_millis(0)).await;
    // Stamped by an engine whose clock runs ahead of the writer's: on time, not late.
    let ahead = harness.clock.now() + Duration::from_secs(86_400);
    send_due_to_edge(&harness, grant(1, studio, Some(ahead), None), ahead).await;
    eventually("all three are settled", WAIT, async || writer.status().commands_applied == 3).await;

    let status = writer.status();
    let lag = &status.window_edge_lag;
    assert_eq!(lag.count(), 2, "the ensure was due to an event, not an edge: {lag:?}");
    let counted: Vec<(Option<u64>, u64)> = lag.buckets().filter(|(_, count)| *count > 0).collect();
    assert_eq!(counted, [(Some(doorsync_writer::WINDOW_EDGE_LAG_BOUNDS_MS[0]), 1), (None, 1)]);
    // Who am I, the users' page or a search for the user (live work goes before the page, so
    // both when the ensure came first), create it, and two assignments: one interval of budget
    // each.
    let interval_ms = 1_000 / 4;
    let calls = status.calls.total();
    assert!((5..=6).contains(&calls), "{:?}", harness.kisi.calls());
    assert_eq!(status.limiter.budget_used_ms, calls * interval_ms);
    assert!(status.limiter.waits <= 4, "the first request never waits: {:?}", status.limiter);
    writer.shutdown().await;
}
