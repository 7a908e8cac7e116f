//! A dead-lettered command still decides what the reconciler defends: the engine has moved on to
//! it, so taking access back fails closed even when Kisi refused the change.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use doorsync_clock::SystemClock;
use doorsync_kisi_sim::{Fault, FaultRule};
use doorsync_proto::{Command, KisiGroupId, KisiUserId};
use doorsync_writer::WriterHandle;
use support::*;

/// Kisi refuses every change of this kind with a 422, which retrying cannot help.
fn refuse(harness: &Harness, method: &str, path: &str) {
    harness.kisi.inject(FaultRule::new(Fault::Status { status: 422, retry_after: None }).method(method).path(path));
}

/// Sends `commands` and waits until `dead_letters` of them are dead-lettered and the rest applied.
async fn settle_with_dead_letters(harness: &Harness, writer: &WriterHandle, commands: Vec<Command>, dead_letters: u64) {
    let before = writer.status();
    let sent = commands.len() as u64;
    for command in commands {
        harness.send(command).await;
    }
    eventually("the commands are settled", WAIT, async || {
        let status = writer.status();
        let applied =
            status.commands_applied + status.commands_superseded - before.commands_applied - before.commands_superseded;
        let dead = status.dead_letters - before.dead_letters;
        status.backlog_commands == 0 && dead == dead_letters && applied + dead == sent
    })
    .await;
}

async fn started(harness: &Harness) -> WriterHandle {
    let mut options = harness.options("writer-a");
    options.requests_per_second = 20;
    // Every member here loses access on purpose: the guard against mass revocations is not tested.
    options.reconcile.max_revocation_share = 1.0;
    // One writer: a lease renewed late on a loaded machine would only stop the reconciliation.
    options.settings.lease_ttl = Duration::from_secs(30);
    harness.start(options).await
}

fn user(harness: &Harness, member: u64) -> KisiUserId {
    harness.kisi.user_by_email(&email(member)).unwrap().id
}

fn holds(harness: &Harness, member: u64, group: KisiGroupId) -> bool {
    let user = user(harness, member);
    harness.kisi.assignments().iter().any(|assignment| assignment.user == user && assignment.group == group)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_revoke_is_neither_granted_again_nor_left_granted_by_the_reconciler() {
    let harness = Harness::with(Arc::new(SystemClock), 50).await;
    let room = harness.kisi.add_group("Room");
    let writer = started(&harness).await;
    let granted = (1..=2).flat_map(|member| [ensure(member, &email(member)), grant(member, room, None, None)]);
    settle_with_dead_letters(&harness, &writer, granted.collect(), 0).await;

    refuse(&harness, "DELETE", "/role_assignments/{id}");
    settle_with_dead_letters(&harness, &writer, vec![revoke(1, room), revoke(2, room)], 2).await;
    assert!(holds(&harness, 1, room) && holds(&harness, 2, room), "Kisi refused both revokes");
    // An operator reading the dead letters removes member 1's assignment by hand; member 2's
    // stays until Kisi accepts the delete again.
    let by_hand = harness.kisi.assignments().into_iter().find(|assignment| assignment.user == user(&harness, 1));
    harness.kisi.remove_assignment(by_hand.unwrap().id);
    harness.kisi.clear_faults();

    let report = writer.reconcile_now().await.unwrap();
    assert!(!holds(&harness, 1, room), "the revoke removed by hand is not granted again: {report:?}");
    assert!(!holds(&harness, 2, room), "the revoke Kisi refused is tried again: {report:?}");
    assert_eq!((report.created, report.revoked, report.failed), (0, 1, 0), "{report:?}");
    let quiet = writer.reconcile_now().await.unwrap();
    assert_eq!((quiet.created, quiet.revoked), (0, 0), "{quiet:?}");
    writer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_suspension_or_deletion_is_neither_undone_nor_left_undone_by_the_reconciler() {
    let harness = Harness::with(Arc::new(SystemClock), 50).await;
    let writer = started(&harness).await;
    settle_with_dead_letters(&harness, &writer, (1..=4).map(|member| ensure(member, &email(member))).collect(), 0)
        .await;
    let users: Vec<KisiUserId> = (1..=4).map(|member| user(&harness, member)).collect();

    refuse(&harness, "PATCH", "/users/{id}");
    refuse(&harness, "DELETE", "/users/{id}");
    settle_with_dead_letters(&harness, &writer, vec![suspend(1), suspend(2), delete(3), delete(4)], 4).await;
    let enabled = |user: KisiUserId| harness.kisi.users().iter().any(|held| held.id == user && held.access_enabled);
    assert!(users.iter().all(|&user| enabled(user)), "Kisi refused every change");
    // An operator reading the dead letters makes the changes for members 1 and 3 by hand; members
    // 2 and 4 wait until Kisi accepts them again.
    harness.kisi.set_user_access_enabled(users[0], false);
    harness.kisi.remove_user(users[2]);
    harness.kisi.clear_faults();

    let report = writer.reconcile_now().await.unwrap();
    let exists = |user: KisiUserId| harness.kisi.users().iter().any(|held| held.id == user);
    assert!(!enabled(users[0]), "the suspension made by hand is not undone: {report:?}");
    assert!(!enabled(users[1]), "the suspension Kisi refused is tried again: {report:?}");
    assert!(harness.kisi.user_by_email(&email(3)).is_none(), "the deletion made by hand is not undone: {report:?}");
    assert!(!exists(users[3]), "the deletion Kisi refused is tried again: {report:?}");
    assert_eq!((report.users_repaired, report.failed), (2, 0), "{report:?}");
    let quiet = writer.reconcile_now().await.unwrap();
    assert_eq!(quiet.users_repaired, 0, "{quiet:?}");
    writer.shutdown().await;
}
