//! What the writer does when it cannot know what Kisi holds (a change whose answer never came,
//! made by itself or by a writer that stopped during it), and when a command comes after newer
//! ones (a writer that died holding it gives it back only after the ack wait). Found by the
//! cross-process chaos test (`tests/tests/chaos.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use doorsync_kisi_sim::{Fault, FaultRule};
use doorsync_log::ConsumerSpec;
use doorsync_writer::WriterRole;
use support::*;

/// Kisi suspends the user but never answers: the writer's request times out (5 s).
fn suspension_whose_answer_never_comes() -> FaultRule {
    FaultRule::new(Fault::Hang { after_commit: true }).method("PATCH").path("/users/{id}").times(1)
}

fn access_enabled(harness: &Harness, member: u64) -> Option<bool> {
    harness.kisi.user_by_email(&email(member)).map(|user| user.access_enabled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_whose_answer_was_lost_is_read_back_before_a_restore_is_taken_as_done() {
    let harness = Harness::new().await;
    let group = harness.kisi.add_group("Lounge");
    let writer = harness.start(harness.options("writer-a")).await;
    harness.send(ensure(1, &email(1))).await;
    harness.send(grant(1, group, None, None)).await;
    eventually("the member is in Kisi", WAIT, async || writer.status().commands_applied == 2).await;

    harness.kisi.inject(suspension_whose_answer_never_comes());
    harness.send(suspend(1)).await;
    eventually("Kisi has suspended the user", WAIT, async || access_enabled(&harness, 1) == Some(false)).await;
    // While the writer still waits for the answer: the member gets access back.
    harness.send(restore(1)).await;
    eventually("the writer has settled everything", WAIT, async || {
        let status = writer.status();
        status.commands_applied == 3 && status.backlog_commands == 0
    })
    .await;
    assert_eq!(access_enabled(&harness, 1), Some(true), "the restore was taken as done while Kisi had suspended");
    assert!(harness.dead_letters().await.is_empty());
    writer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_taking_over_reads_back_a_change_the_one_before_it_made_without_an_answer() {
    let harness = Harness::new().await;
    let group = harness.kisi.add_group("Lounge");
    let first = harness.start(harness.options("writer-a")).await;
    eventually("a is active", WAIT, async || first.status().role == WriterRole::Active).await;
    let second = harness.start(harness.options("writer-b")).await;
    eventually("b is on standby", WAIT, async || second.status().role == WriterRole::Standby).await;
    harness.send(ensure(1, &email(1))).await;
    harness.send(grant(1, group, None, None)).await;
    eventually("the member is in Kisi", WAIT, async || first.status().commands_applied == 2).await;

    harness.kisi.inject(suspension_whose_answer_never_comes());
    harness.send(suspend(1)).await;
    eventually("Kisi has suspended the user", WAIT, async || access_enabled(&harness, 1) == Some(false)).await;
    harness.send(restore(1)).await;
    // Stops once its request has timed out, giving back the suspension and the restore.
    first.shutdown().await;
    eventually("b takes over and settles everything", WAIT, async || {
        let status = second.status();
        status.role == WriterRole::Active && status.backlog_commands == 0 && status.commands_applied >= 1
    })
    .await;
    assert_eq!(access_enabled(&harness, 1), Some(true), "b took the restore as done while Kisi had suspended");
    assert!(harness.dead_letters().await.is_empty());
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_command_that_comes_before_its_ensure_user_waits_for_it_instead_of_being_dead_lettered() {
    let harness = Harness::new().await;
    let group = harness.kisi.add_group("Lounge");
    let options = harness.options("writer-a");
    // A writer that dies holding the member's EnsureUser: it comes back after the ack wait.
    harness.send(ensure(1, &email(1))).await;
    let spec = ConsumerSpec::new(&harness.layout.commands, &options.consumer_name)
        .filtered([harness.layout.subjects.commands_wildcard()])
        .ack_wait(options.settings.ack_wait);
    let mut dying = harness.log.durable_consumer(spec).await.unwrap();
    let held = dying.next().await.unwrap();
    drop((held, dying));

    let writer = harness.start(options).await;
    harness.send(suspend(1)).await;
    harness.send(grant(1, group, None, None)).await;
    eventually("the writer has settled everything", WAIT, async || {
        let status = writer.status();
        // Both keys, the member's user and its group, settled or dead-lettered.
        status.commands_applied + status.dead_letters >= 2 && status.backlog_commands == 0
    })
    .await;
    assert!(harness.dead_letters().await.is_empty(), "commands were dead-lettered");
    assert_eq!(access_enabled(&harness, 1), Some(false), "the member's user, created suspended");
    assert_eq!(harness.kisi.assignments().len(), 1, "the member's group");
    writer.shutdown().await;
}
