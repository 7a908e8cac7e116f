//! `explain` rebuilds a member's access and its reasons from the log alone.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed step should stop the test loudly")]

mod support;

use std::sync::Arc;

use bytes::Bytes;
use doorsync_access::{AccessPolicy, Grant, Mapping, Source, Window};
use doorsync_catalogue::{Catalogue, KisiGroup, Location, Named};
use doorsync_clock::ManualClock;
use doorsync_engine::{Explanation, HistoryKind};
use doorsync_layout::Layout;
use doorsync_log::{EventLog, NewMessage};
use doorsync_proto::{
    BookingId, Command, EntitlementId, EntitlementWithheld, Envelope, Event, GrantApplied, KisiAssignmentId,
    KisiGroupId, MappingSource, MemberId, Outcome, ResourceId, SuspendUser, Timestamp,
};
use support::*;

/// Member 7 explained at `instant`, with no configured mapping and the default policy.
async fn explain_member_7(log: &Arc<dyn EventLog>, layout: &Layout, instant: Timestamp) -> Explanation {
    doorsync_engine::explain(log.as_ref(), layout, &Mapping::default(), &AccessPolicy::default(), MemberId(7), instant)
        .await
        .unwrap()
}

/// Member 7 booked resource 1 (connected to group 100) and resource 9 (connected to nothing)
/// from minute 60 to 120; the engine emitted its commands and Kisi holds group 100.
async fn member_7_booked_and_granted(layout: &Layout) -> Embedded {
    let store = embedded_log(layout);
    let clock = ManualClock::new(at(0));
    append(&store.log, layout, at(0), mapping(1, 100)).await;
    append(&store.log, layout, at(0), member(7)).await;
    append(&store.log, layout, at(0), booking(7, 1, 1, 60, 120)).await;
    append(&store.log, layout, at(0), booking(7, 2, 9, 60, 120)).await;
    let engine = start(options("a", layout), &store.log, &clock).await;
    settled_commands_for(&store.log, layout, MemberId(7), 2).await;
    engine.shutdown().await;
    let applied = Outcome::GrantApplied(GrantApplied {
        member: MemberId(7),
        group: KisiGroupId(100),
        assignment: KisiAssignmentId(31),
        valid_from: Some(at(45)),
        valid_until: Some(at(135)),
    });
    append_outcome(&store.log, layout, at(1), applied).await;
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_names_the_booking_behind_a_group_and_what_kisi_holds() {
    let layout = layout();
    let store = member_7_booked_and_granted(&layout).await;

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

/// The catalogue of the test site: a London meeting room behind the front door, and a phone
/// booth in New York.
fn catalogue() -> Catalogue {
    let location = |name: &str, zone: &str| Location { name: name.into(), time_zone: Some(zone.into()) };
    let named = |name: &str, location: u64| Named { name: Some(name.into()), location: Some(location) };
    Catalogue::default()
        .with_location(3, location("London", "Europe/London"))
        .with_location(4, location("New York", "America/New_York"))
        .with_source(MappingSource::Resource(ResourceId(1)), named("Meeting Room 1", 3))
        .with_source(MappingSource::Resource(ResourceId(9)), named("Phone booth", 4))
        .with_group(KisiGroupId(100), KisiGroup { name: "Front door".into(), place_id: None })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_in_names_says_what_each_id_is_and_each_time_in_its_locations_zone() {
    let layout = layout();
    let store = member_7_booked_and_granted(&layout).await;
    let catalogue = catalogue();
    let london = catalogue.operator_zone(None);

    // 09:50 in London on Monday 30 November 2026 (T0 is 09:00 UTC, and London is on GMT).
    let explained = doorsync_engine::explain_named(
        store.log.as_ref(),
        &layout,
        &Mapping::default(),
        &AccessPolicy::default(),
        MemberId(7),
        at(50),
        &catalogue,
        &london,
    )
    .await
    .unwrap();
    let text = explained.display_with(&catalogue, &london).to_string();

    for line in [
        "As of 09:50 Europe/London",
        "  Front door (Kisi group 100): open now, 09:45–11:15 Europe/London",
        "    because of booking 1 of Meeting Room 1 · London (resource 1): 09:45–11:15 Europe/London",
        "  booking 2 of Phone booth · New York (resource 9): not connected to a Kisi group (add a [[mapping]] entry)",
        "  Front door (Kisi group 100): assignment 31, 09:45–11:15 Europe/London",
        "History (times in Europe/London)",
        "  09:00  nexudus  booking 1 of Meeting Room 1 · London (resource 1): 10:00–11:00 Europe/London",
        "  09:00  nexudus  booking 2 of Phone booth · New York (resource 9): 05:00–06:00 America/New_York",
        "  09:00  command  grant Front door (Kisi group 100) for 09:45–11:15 Europe/London",
        "  09:01  kisi     Kisi holds Front door (Kisi group 100) (assignment 31) for 09:45–11:15 Europe/London",
    ] {
        assert!(text.lines().any(|shown| shown == line), "no line {line:?} in\n{text}");
    }
    assert!(!text.contains("2026-11-30T"), "no UTC instant left: {text}");

    let in_ids = explain_member_7(&store.log, &layout, at(50)).await.to_string();
    assert!(in_ids.contains(&format!("As of {}", at(50))) && in_ids.contains("booking 1 of resource 1"), "{in_ids}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_a_window_edge_made_necessary_is_in_the_history_at_that_edge() {
    let layout = layout();
    let store = embedded_log(&layout);
    append(&store.log, &layout, at(0), member(7)).await;
    let suspend = Command::SuspendUser(SuspendUser { member: MemberId(7), basis: 1 });
    let envelope = Envelope::with_window_edge(at(0), Some(at(135)), suspend).unwrap();
    let payload = Bytes::from(doorsync_proto::encode(&envelope).unwrap());
    let message = NewMessage::new(layout.subjects.command(MemberId(7)), envelope.id.to_string(), payload);
    store.log.append(message).await.unwrap();

    let explained = explain_member_7(&store.log, &layout, at(140)).await;

    let suspended = explained.history.iter().find(|entry| entry.kind == HistoryKind::Command).unwrap();
    assert_eq!((suspended.at, suspended.summary.as_str()), (at(135), "suspend the Kisi user"));
}
