//! The writer against Kisi as it really may behave: a PATCH of a window ignored or refused, a
//! 403 that means "not this group", a `Retry-After` from a proxy with no end, and an organisation
//! with staff, the key's owner and another integration's assignments in it.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use doorsync_clock::SystemClock;
use doorsync_kisi_sim::{Fault, FaultRule, PatchValidity, SimAssignment};
use doorsync_proto::{KisiGroupId, KisiUserId};
use doorsync_writer::{REASON_HEADER, WriterHandle};
use support::*;

fn assignment_of(harness: &Harness, user: KisiUserId, group: KisiGroupId) -> Option<SimAssignment> {
    harness.kisi.assignments().into_iter().find(|assignment| assignment.user == user && assignment.group == group)
}

fn reasons(letters: &[doorsync_log::StoredMessage]) -> Vec<String> {
    letters
        .iter()
        .filter_map(|letter| {
            letter.headers.iter().find(|(name, _)| name == REASON_HEADER).map(|(_, value)| value.clone())
        })
        .collect()
}

fn patches(harness: &Harness) -> u64 {
    harness.kisi.calls().endpoint("PATCH", "/role_assignments/{id}")
}

/// Sends `commands` and waits until the writer has settled `total` commands in all.
async fn carry_out(harness: &Harness, writer: &WriterHandle, commands: Vec<doorsync_proto::Command>, total: u64) {
    for command in commands {
        harness.send(command).await;
    }
    settled(writer, total).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_window_reaches_kisi_whether_kisi_applies_ignores_or_refuses_a_patch() {
    for patch_validity in PatchValidity::ALL {
        let harness = Harness::with(Arc::new(SystemClock), 50).await;
        harness.kisi.set_patch_validity(patch_validity);
        let room = harness.kisi.add_group("Room");
        let mut options = harness.options("writer-a");
        options.requests_per_second = 20;
        let writer = harness.start(options).await;
        let (from, first, second, third) = (seconds(1_900_000_000), 1_900_003_600, 1_900_007_200, 1_900_010_800);

        carry_out(&harness, &writer, vec![ensure(1, &email(1)), grant(1, room, from, seconds(first))], 2).await;
        let user = harness.kisi.user_by_email(&email(1)).unwrap().id;
        // A booking extended: the window moves later.
        carry_out(&harness, &writer, vec![grant(1, room, from, seconds(second))], 3).await;
        let held = assignment_of(&harness, user, room).unwrap();
        assert_eq!((held.valid_from, held.valid_until), (from, seconds(second)), "{patch_validity:?}");
        let applies = patch_validity == PatchValidity::Apply;
        assert_eq!(writer.status().patch_applies_validity, Some(applies), "{patch_validity:?}");

        // Once learnt, a PATCH that does not apply is not tried again.
        let patches_before = patches(&harness);
        carry_out(&harness, &writer, vec![grant(1, room, from, seconds(third))], 4).await;
        let held = assignment_of(&harness, user, room).unwrap();
        assert_eq!(held.valid_until, seconds(third), "{patch_validity:?}");
        assert_eq!(patches(&harness) - patches_before, u64::from(applies), "{patch_validity:?}");
        assert_eq!(harness.kisi.assignments().len(), 1, "never two assignments for one user and group");

        // The knowledge survives a restart: a new writer goes straight to delete and create.
        writer.shutdown().await;
        let writer = harness.start(harness.options("writer-b")).await;
        let patches_before = patches(&harness);
        carry_out(&harness, &writer, vec![grant(1, room, from, seconds(second))], 1).await;
        assert_eq!(assignment_of(&harness, user, room).unwrap().valid_until, seconds(second));
        assert_eq!(patches(&harness) - patches_before, u64::from(applies), "{patch_validity:?}");

        // Reconciling right after finds nothing to fix, twice.
        for _ in 0..2 {
            let report = writer.reconcile_now().await.unwrap();
            assert_eq!((report.created, report.windows_fixed, report.revoked), (0, 0, 0), "{report:?}");
        }
        assert!(harness.dead_letters().await.is_empty(), "{patch_validity:?}");
        writer.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_the_key_may_not_use_is_dead_lettered_by_its_mapping_and_the_others_go_on() {
    let harness = Harness::with(Arc::new(SystemClock), 50).await;
    let (good, bad) = (harness.kisi.add_group("Entrance"), harness.kisi.add_group("Typo"));
    harness.kisi.hide_group(bad);
    let mut options = harness.options("writer-a");
    options.requests_per_second = 20;
    options.reconcile_groups = vec![good, bad];
    options.group_labels = [(bad, "mapping[1] (resource 7)".to_owned())].into();
    let writer = harness.start(options).await;

    let mut commands = Vec::new();
    for member in 1..=4 {
        commands.push(ensure(member, &email(member)));
        commands.push(grant(member, bad, None, seconds(2_000_000_000)));
        commands.push(grant(member, good, None, seconds(2_000_000_000)));
    }
    // Dead letters are not counted as settled.
    carry_out(&harness, &writer, commands, 8).await;

    let status = writer.status();
    assert_eq!(status.paused, None, "one refused group does not stop the writer");
    assert_eq!(status.dead_letters, 4, "{status:?}");
    assert_eq!(status.refused_groups.len(), 1, "{status:?}");
    assert_eq!(status.refused_groups[0].group, bad);
    assert_eq!(status.refused_groups[0].mapping.as_deref(), Some("mapping[1] (resource 7)"));
    for member in 1..=4 {
        let user = harness.kisi.user_by_email(&email(member)).unwrap().id;
        assert!(assignment_of(&harness, user, good).is_some(), "member {member} has the group that works");
    }
    let reasons = reasons(&harness.dead_letters().await);
    assert_eq!(reasons.len(), 4);
    assert!(
        reasons.iter().all(|reason| reason.contains("mapping[1] (resource 7)") && reason.contains("403")),
        "{reasons:?}"
    );

    // The reconciler lists the refused group, is refused, and reconciles the rest.
    let report = writer.reconcile_now().await.unwrap();
    assert_eq!((report.groups_listed, report.groups_refused, report.failed), (1, 1, 0), "{report:?}");
    assert_eq!(writer.status().paused, None);
    writer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_retry_after_holds_requests_five_minutes_at_most_and_says_so() {
    let harness = Harness::new().await;
    let room = harness.kisi.add_group("Room");
    harness.kisi.inject(
        FaultRule::new(Fault::Status { status: 429, retry_after: Some("99999999".into()) })
            .times(1)
            .method("POST")
            .path("/role_assignments"),
    );
    let writer = harness.start(harness.options("writer-a")).await;
    harness.send(ensure(1, &email(1))).await;
    let refused_at = harness.clock.now();
    harness.send(grant(1, room, None, None)).await;
    eventually("the hold is reported", WAIT, async || writer.status().retry_after_hold.is_some()).await;

    let hold = writer.status().retry_after_hold.unwrap();
    assert!(hold.clamped);
    assert_eq!(hold.asked_ms, 99_999_999_000);
    let longest = refused_at + Duration::from_secs(5 * 60 + 5);
    assert!(hold.until <= longest, "held until {}, more than five minutes", hold.until);
    assert!(hold.until >= longest - Duration::from_secs(60), "held until {}", hold.until);
    writer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_found_user_is_linked_for_memberships_only_and_others_assignments_stay() {
    let harness = Harness::with(Arc::new(SystemClock), 50).await;
    let (room, lab) = (harness.kisi.add_group("Room"), harness.kisi.add_group("Lab"));
    let staff = harness.kisi.add_user(&email(3), "Front desk").unwrap();
    let other = harness.kisi.add_api_user("other-integration@example.com", "Other").unwrap();
    let foreign = harness.kisi.add_assignment_as(Some(other), staff, lab, None, None).unwrap();
    let mut options = harness.options("writer-a");
    options.requests_per_second = 20;
    let writer = harness.start(options).await;

    let window = (seconds(1_900_000_000), seconds(1_900_003_600));
    let commands = vec![ensure(3, &email(3)), grant(3, room, window.0, window.1), grant(3, lab, window.0, window.1)];
    carry_out(&harness, &writer, commands, 3).await;
    let ours = assignment_of(&harness, staff, room).unwrap();
    assert_eq!((ours.created_by, ours.valid_until), (Some(harness.api_user), window.1));
    let theirs = assignment_of(&harness, staff, lab).unwrap();
    assert_eq!((theirs.id, theirs.valid_until), (foreign, None), "a wider assignment of someone else's is enough");

    carry_out(&harness, &writer, vec![revoke(3, room), revoke(3, lab), suspend(3)], 6).await;
    assert!(assignment_of(&harness, staff, room).is_none(), "doorsync's own assignment goes");
    assert_eq!(assignment_of(&harness, staff, lab).map(|assignment| assignment.id), Some(foreign), "theirs stays");
    carry_out(&harness, &writer, vec![delete(3)], 7).await;
    let user = harness.kisi.user_by_email(&email(3)).unwrap();
    assert!(user.id == staff && user.access_enabled, "the staff user is never suspended or deleted");
    assert!(harness.dead_letters().await.is_empty());
    assert!(writer.status().found_users_left_alone >= 1);
    writer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_s_owner_is_never_linked_and_a_kisi_user_never_serves_two_members() {
    let harness = Harness::with(Arc::new(SystemClock), 50).await;
    let room = harness.kisi.add_group("Room");
    let mut options = harness.options("writer-a");
    options.requests_per_second = 20;
    let writer = harness.start(options).await;

    // The operator is a member too, with the email of the account whose key doorsync uses.
    let commands = vec![
        ensure(1, "integration@example.com"),
        ensure(2, &email(2)),
        grant(2, room, None, seconds(2_000_000_000)),
        // Member 2's email moves to member 4 in Nexudus; Kisi cannot change a user's email.
        ensure(4, &email(2)),
    ];
    // The two dead letters are not counted as settled.
    carry_out(&harness, &writer, commands, 2).await;
    let reasons = reasons(&harness.dead_letters().await);
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().any(|reason| reason.contains("owns doorsync's API key")), "{reasons:?}");
    assert!(reasons.iter().any(|reason| reason.contains("already linked to member 2")), "{reasons:?}");
    let owner = harness.kisi.users().into_iter().find(|user| user.id == harness.api_user).unwrap();
    assert!(owner.access_enabled);
    let user_2 = harness.kisi.user_by_email(&email(2)).unwrap().id;
    assert!(assignment_of(&harness, user_2, room).is_some(), "member 2 keeps their access");

    // Once member 2's user is gone, the email may be linked to member 4.
    carry_out(&harness, &writer, vec![revoke(2, room), delete(2), ensure(4, &email(2))], 5).await;
    assert_eq!(harness.dead_letters().await.len(), 2);
    writer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_removes_adopted_leftovers_but_not_the_owner_s_hand_made_assignments() {
    let harness = Harness::with(Arc::new(SystemClock), 50).await;
    let room = harness.kisi.add_group("Room");
    let builtin = harness.kisi.add_api_user("nexudus-builtin@example.com", "Nexudus integration").unwrap();
    // As the built-in integration left them: users, and assignments without windows.
    let member = harness.kisi.add_user(&email(5), "Member 5").unwrap();
    let adopted = harness.kisi.add_assignment_as(Some(builtin), member, room, None, None).unwrap();
    let former = harness.kisi.add_user("former@example.com", "Former member").unwrap();
    let stale = harness.kisi.add_assignment_as(Some(builtin), former, room, None, None).unwrap();
    let guest = harness.kisi.add_user("guest@example.com", "Owner's guest").unwrap();
    let by_hand = harness.kisi.add_assignment_as(Some(harness.api_user), guest, room, None, None).unwrap();
    let mut options = harness.options("writer-a");
    options.requests_per_second = 20;
    options.adopt_created_by = vec!["nexudus-builtin@example.com".to_owned()];
    options.reconcile_groups = vec![room];
    // One member known: any revocation is above a share; the guard is tested elsewhere.
    options.reconcile.max_revocation_share = 1.0;
    let writer = harness.start(options).await;

    let window = (seconds(1_900_000_000), seconds(1_900_003_600));
    carry_out(&harness, &writer, vec![ensure(5, &email(5)), grant(5, room, window.0, window.1)], 2).await;
    let now_held = assignment_of(&harness, member, room).unwrap();
    assert_eq!((now_held.valid_from, now_held.valid_until), window, "the adopted assignment gets its exact window");
    assert_eq!(harness.kisi.assignments().iter().filter(|a| a.user == member).count(), 1);

    let report = writer.reconcile_now().await.unwrap();
    assert_eq!(report.revoked, 1, "{report:?}");
    let ids: Vec<_> = harness.kisi.assignments().iter().map(|assignment| assignment.id).collect();
    assert!(!ids.contains(&stale), "what the old integration left for a former member goes");
    assert!(ids.contains(&by_hand), "the key owner's own assignment for a non-member stays");
    assert_ne!(adopted, now_held.id, "the simulator ignores a PATCH of the window: made again");
    let again = writer.reconcile_now().await.unwrap();
    assert_eq!((again.created, again.windows_fixed, again.revoked), (0, 0, 0), "{again:?}");
    writer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_deleted_by_hand_is_made_again_though_kisi_answers_403_for_its_id() {
    let harness = Harness::with(Arc::new(SystemClock), 50).await;
    let room = harness.kisi.add_group("Room");
    let mut options = harness.options("writer-a");
    options.requests_per_second = 20;
    let writer = harness.start(options).await;
    let until = seconds(2_000_000_000);
    carry_out(&harness, &writer, vec![ensure(1, &email(1)), grant(1, room, None, until)], 2).await;
    let first = harness.kisi.user_by_email(&email(1)).unwrap().id;

    assert!(harness.kisi.remove_user(first));
    let report = writer.reconcile_now().await.unwrap();

    assert_eq!((report.users_repaired, report.created, report.failed), (1, 1, 0), "{report:?}");
    let again = harness.kisi.user_by_email(&email(1)).unwrap().id;
    assert_ne!(again, first);
    assert_eq!(assignment_of(&harness, again, room).map(|assignment| assignment.valid_until), Some(until));
    assert_eq!(writer.status().paused, None);
    assert!(harness.dead_letters().await.is_empty());
    writer.shutdown().await;
}
