//! A reconciliation does not block commands: its steps (a page of a listing, a repair) take turns
//! with the backlog, and a live command goes before them.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::sync::Arc;

use doorsync_clock::SystemClock;
use support::*;

const MEMBERS: u64 = 120;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_grant_reaches_kisi_while_a_reconciliation_repairs_and_the_operator_gets_its_report() {
    let harness = Harness::with(Arc::new(SystemClock), 50).await;
    let room = harness.kisi.add_group("Room");
    let mut options = harness.options("writer-a");
    options.requests_per_second = 20;
    options.reconcile_groups = vec![room];
    let writer = harness.start(options).await;
    let until = seconds(2_000_000_000);
    for member in 1..=MEMBERS {
        harness.send_bulk(ensure(member, &email(member))).await;
        harness.send_bulk(grant(member, room, None, until)).await;
    }
    settled(&writer, 2 * MEMBERS).await;
    // Drift by hand: every assignment gone, so the reconciliation has a repair per member.
    for assignment in harness.kisi.assignments() {
        harness.kisi.remove_assignment(assignment.id);
    }

    let reconciling = {
        let writer = writer.clone();
        tokio::spawn(async move { writer.reconcile_now().await })
    };
    eventually("the reconciliation repairs", WAIT, async || !harness.kisi.assignments().is_empty()).await;
    let newcomer = MEMBERS + 1;
    harness.send(ensure(newcomer, &email(newcomer))).await;
    harness.send(grant(newcomer, room, None, until)).await;
    eventually("the live grant is in Kisi", WAIT, async || {
        harness
            .kisi
            .user_by_email(&email(newcomer))
            .is_some_and(|user| harness.kisi.assignments().iter().any(|assignment| assignment.user == user.id))
    })
    .await;
    let repaired_by_then = harness.kisi.assignments().len() - 1;
    assert!(
        repaired_by_then < MEMBERS as usize,
        "the live grant waited for the whole reconciliation: {repaired_by_then} repairs before it"
    );

    let report = reconciling.await.unwrap().unwrap();
    assert_eq!((report.created, report.failed, report.held.clone()), (MEMBERS as usize, 0, None), "{report:?}");
    assert_eq!(harness.kisi.assignments().len(), MEMBERS as usize + 1);
    writer.shutdown().await;
}
