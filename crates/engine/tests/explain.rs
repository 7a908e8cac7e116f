//! `explain` rebuilds a member's access and its reasons from the log alone.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed step should stop the test loudly")]

mod support;

use std::sync::Arc;

use doorsync_access::{AccessPolicy, Grant, Mapping, Source, Window};
use doorsync_clock::ManualClock;
use doorsync_engine::{Explanation, HistoryKind};
use doorsync_layout::Layout;
use doorsync_log::EventLog;
use doorsync_proto::{
    BookingId, EntitlementId, EntitlementWithheld, Event, GrantApplied, KisiAssignmentId, KisiGroupId, MemberId,
    Outcome, ResourceId, Timestamp,
};
use support::*;

/// Member 7 explained at `instant`, with no configured mapping and the default policy.
async fn explain_member_7(log: &Arc<dyn EventLog>, layout: &Layout, instant: Timestamp) -> Explanation {
    doorsync_engine::explain(log.as_ref(), layout, &Mapping::default(), &AccessPolicy::default(), MemberId(7), instant)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_names_the_booking_behind_a_group_and_what_kisi_holds() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    append(&store.log, &layout, at(0), mapping(1, 100)).await;
    append(&store.log, &layout, at(0), member(7)).await;
    append(&store.log, &layout, at(0), booking(7, 1, 1, 60, 120)).await;
    append(&store.log, &layout, at(0), booking(7, 2, 9, 60, 120)).await;
    let engine = start(options("a", &layout), &store.log, &clock).await;
    settled_commands_for(&store.log, &layout, MemberId(7), 2).await;
    engine.shutdown().await;
    let applied = Outcome::GrantApplied(GrantApplied {
        member: MemberId(7),
        group: KisiGroupId(100),
        assignment: KisiAssignmentId(31),
        valid_from: Some(at(45)),
        valid_until: Some(at(135)),
    });
    append_outcome(&store.log, &layout, at(1), applied).await;

    let explained = explain_member_7(&store.log, &layout, at(50)).await;

    let window = Window { from: Some(at(45)), until: Some(at(135)) };
    assert_eq!(explained.desired.grants.get(&KisiGroupId(100)), Some(&window));
    assert_eq!(explained.next_change, Some(at(135)));
    assert_eq!(explained.entitlements.len(), 2);
    assert_eq!(explained.entitlements[0].source, Source::Booking { booking: BookingId(1), resource: ResourceId(1) });
    assert_eq!(explained.entitlements[0].grant, Grant::Group { group: KisiGroupId(100), window });
    assert_eq!(explained.entitlements[1].grant, Grant::NotConnected, "resource 9 has no group");
    assert_eq!(
        explained.kisi.assignments.get(&KisiGroupId(100)).map(|assignment| assignment.id),
        Some(KisiAssignmentId(31))
    );
    let kinds: Vec<HistoryKind> = explained.history.iter().map(|entry| entry.kind).collect();
    assert_eq!(
        kinds,
        [
            HistoryKind::Event,
            HistoryKind::Event,
            HistoryKind::Event,
            HistoryKind::Command,
            HistoryKind::Command,
            HistoryKind::Outcome
        ]
    );

    let text = explained.to_string();
    assert!(text.contains("group 100: open now"), "{text}");
    assert!(text.contains("because of booking 1 of resource 1"), "{text}");
    assert!(text.contains("booking 2 of resource 9: not connected to a Kisi group"), "{text}");
    assert!(text.contains("group 100: assignment 31"), "{text}");
    assert!(text.contains("grant Kisi group 100"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_found_by_their_latest_email_in_any_case() {
    let layout = layout();
    let store = embedded_log(&layout);
    append(&store.log, &layout, at(0), member(3)).await;
    append(&store.log, &layout, at(0), member(4)).await;
    let log = store.log.as_ref();
    assert_eq!(doorsync_engine::members_with_email(log, &layout, "M3@EXAMPLE.TEST").await.unwrap(), [MemberId(3)]);
    assert!(doorsync_engine::members_with_email(log, &layout, "nobody@example.test").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_says_which_entitlement_is_withheld_and_why() {
    let layout = layout();
    let store = embedded_log(&layout);
    append(&store.log, &layout, at(0), mapping(1, 100)).await;
    append(&store.log, &layout, at(0), member(7)).await;
    append(&store.log, &layout, at(0), booking(7, 1, 1, 60, 120)).await;
    let withheld = EntitlementWithheld {
        member: MemberId(7),
        entitlement: EntitlementId::Booking(BookingId(1)),
        reason: "ResourceId: Resource 1 does not exist in Nexudus".to_owned(),
    };
    append(&store.log, &layout, at(5), Event::EntitlementWithheld(withheld)).await;

    let explained = explain_member_7(&store.log, &layout, at(90)).await;

    assert!(explained.desired.grants.is_empty());
    assert!(explained.entitlements.is_empty());
    assert_eq!(explained.withheld.keys().copied().collect::<Vec<_>>(), [EntitlementId::Booking(BookingId(1))]);
    let text = explained.to_string();
    assert!(
        text.contains(&format!(
            "booking 1: withheld since {}, its latest version in Nexudus cannot be read: ResourceId: Resource 1 \
             does not exist in Nexudus",
            at(5)
        )),
        "{text}"
    );
    assert!(text.contains("booking 1 withheld: its latest version cannot be read (ResourceId:"), "{text}");
}
