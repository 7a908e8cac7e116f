//! The engine stopped and started again as operators and crashes do it: with an edited
//! configuration, right after a wake-up, and while events arrived meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed step should stop the test loudly")]

mod support;

use std::time::Duration;

use doorsync_access::NoAccessPolicy;
use doorsync_clock::ManualClock;
use doorsync_proto::{
    Command, ContractChanged, ContractId, Event, FloorPlanItem, FloorPlanItemId, FloorPlanItemKind, KisiGroupId,
    MemberId, PassChanged, PassId, PassProductId, PassValidity, ResourceId,
};
use support::*;

const DESK: FloorPlanItemId = FloorPlanItemId(40);
const PRODUCT: PassProductId = PassProductId(50);
const ROOM: ResourceId = ResourceId(1);

fn contract(member: u64, contract: u64) -> Event {
    Event::ContractChanged(ContractChanged {
        member: MemberId(member),
        contract: ContractId(contract),
        starts_at: at(-600),
        ends_at: None,
        cancelled_at: None,
        active: true,
        spaces: vec![FloorPlanItem { id: DESK, kind: FloorPlanItemKind::Desk }],
    })
}

fn pass(member: u64, pass: u64) -> Event {
    Event::PassChanged(PassChanged {
        member: MemberId(member),
        pass: PassId(pass),
        product: PRODUCT,
        validity: PassValidity::Window { from: Some(at(-600)), until: Some(at(6_000)) },
        used_up: false,
    })
}

fn grants_of(commands: &[Command]) -> Vec<KisiGroupId> {
    commands
        .iter()
        .filter_map(|command| match command {
            Command::GrantGroup(grant) => Some(grant.group),
            _ => None,
        })
        .collect()
}

/// Nothing in Nexudus changes, yet Kisi must: the desk now opens another group, the pass
/// product is newly connected, and members left with nothing are deleted rather than suspended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_an_edited_configuration_reaches_members_whose_records_did_not_change() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    for id in [1, 2, 3] {
        append(&store.log, &layout, at(0), member(id)).await;
    }
    append(&store.log, &layout, at(0), contract(1, 10)).await;
    append(&store.log, &layout, at(0), pass(2, 20)).await;
    append(&store.log, &layout, at(0), booking(3, 30, ROOM.0, 1, 30)).await;

    let mut before = options("a", &layout);
    before.mapping.floor_plan_items.insert(DESK, KisiGroupId(100));
    before.mapping.resources.insert(ROOM, KisiGroupId(110));
    let engine = start(before.clone(), &store.log, &clock).await;
    assert_eq!(grants_of(&settled_commands_for(&store.log, &layout, MemberId(1), 2).await), [KisiGroupId(100)]);
    clock.set(at(45));
    let left = settled_commands_for(&store.log, &layout, MemberId(3), 4).await;
    assert!(matches!(left.last(), Some(Command::SuspendUser(_))), "{left:?}");
    assert!(commands_for(&store.log, &layout, MemberId(2)).await.is_empty(), "the product is not connected yet");
    engine.shutdown().await;

    let mut after = before;
    after.mapping.floor_plan_items.insert(DESK, KisiGroupId(200));
    after.mapping.pass_products.insert(PRODUCT, KisiGroupId(300));
    after.policy.no_access = NoAccessPolicy::Delete;
    let engine = start(after, &store.log, &clock).await;

    let relinked = settled_commands_for(&store.log, &layout, MemberId(1), 4).await;
    assert!(
        relinked[2..]
            .iter()
            .any(|command| matches!(command, Command::RevokeGroup(revoke) if revoke.group == KisiGroupId(100))),
        "the old group is revoked: {relinked:?}"
    );
    assert_eq!(grants_of(&relinked[2..]), [KisiGroupId(200)], "{relinked:?}");
    let connected = settled_commands_for(&store.log, &layout, MemberId(2), 2).await;
    assert_eq!(grants_of(&connected), [KisiGroupId(300)], "{connected:?}");
    let deleted = settled_commands_for(&store.log, &layout, MemberId(3), 5).await;
    assert!(matches!(deleted.last(), Some(Command::DeleteUser(_))), "{deleted:?}");

    // The configuration is recorded with the next checkpoint: a plain restart re-evaluates
    // nobody, so it appends nothing.
    engine.checkpoint().await.unwrap();
    let appended = commands(&store.log, &layout).await.len();
    engine.shutdown().await;
    let engine = start(options_like_the_last(&layout), &store.log, &clock).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(commands(&store.log, &layout).await.len(), appended);
    engine.shutdown().await;
}

fn options_like_the_last(layout: &doorsync_layout::Layout) -> doorsync_engine::EngineOptions {
    let mut options = options("a", layout);
    options.mapping.floor_plan_items.insert(DESK, KisiGroupId(200));
    options.mapping.resources.insert(ROOM, KisiGroupId(110));
    options.mapping.pass_products.insert(PRODUCT, KisiGroupId(300));
    options.policy.no_access = NoAccessPolicy::Delete;
    options
}

/// A desk linked to another group and back, each with a restart: the grant that comes back is a
/// new command, not a duplicate of the first the log would drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desk_relinked_and_linked_back_across_restarts_is_granted_again() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    append(&store.log, &layout, at(0), member(1)).await;
    append(&store.log, &layout, at(0), contract(1, 10)).await;
    let linked = |group: u64| {
        let mut options = options("a", &layout);
        options.mapping.floor_plan_items.insert(DESK, KisiGroupId(group));
        options
    };
    for (round, group) in [100, 200, 100].into_iter().enumerate() {
        clock.set(at(round as i64));
        let engine = start(linked(group), &store.log, &clock).await;
        let commands = settled_commands_for(&store.log, &layout, MemberId(1), 2 + 2 * round).await;
        assert_eq!(grants_of(&commands).last(), Some(&KisiGroupId(group)), "round {round}: {commands:?}");
        engine.shutdown().await;
    }
}

/// A member with two bookings of the room, granted their first; returns the options the engine
/// runs with.
async fn two_bookings_granted(
    store: &Embedded,
    layout: &doorsync_layout::Layout,
    clock: &ManualClock,
    first: (i64, i64),
    second: (i64, i64),
) -> (doorsync_engine::EngineHandle, doorsync_engine::EngineOptions) {
    let mut options = options("a", layout);
    options.mapping.resources.insert(ROOM, KisiGroupId(100));
    append(&store.log, layout, at(0), member(1)).await;
    append(&store.log, layout, at(0), booking(1, 1, ROOM.0, first.0, first.1)).await;
    append(&store.log, layout, at(0), booking(1, 2, ROOM.0, second.0, second.1)).await;
    let engine = start(options.clone(), &store.log, clock).await;
    settled_commands_for(&store.log, layout, MemberId(1), 2).await;
    (engine, options)
}

/// The engine stops right after it took a member off the schedule to evaluate it: the wake-up
/// it saved must still bring the member's next booking after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_right_after_a_wake_up_loses_no_window() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    let (engine, options) = two_bookings_granted(&store, &layout, &clock, (100, 160), (1_000, 1_060)).await;

    // The first window ends at 175, when the second is granted and the member next needs
    // waking at its end; the wake-up and the stop race, as in a rollout.
    clock.set(at(175));
    engine.shutdown().await;
    let engine = start(options, &store.log, &clock).await;
    let commands = settled_commands_for(&store.log, &layout, MemberId(1), 3).await;
    assert!(
        matches!(commands.last(), Some(Command::GrantGroup(grant)) if grant.valid_from == Some(at(985))),
        "the second booking is granted: {commands:?}"
    );
    clock.set(at(1_075));
    let commands = settled_commands_for(&store.log, &layout, MemberId(1), 4).await;
    assert!(
        commands[3..].iter().any(|command| matches!(command, Command::RevokeGroup(_))),
        "the second window is closed at its end: {commands:?}"
    );
    engine.shutdown().await;
}

/// While the engine was down a member's next booking was cancelled and its window came: the
/// restarted engine must not grant it from the wake-up it saved before hearing of the
/// cancellation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_cancelled_while_the_engine_was_down_is_never_granted() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    let (engine, options) = two_bookings_granted(&store, &layout, &clock, (10, 20), (100, 160)).await;
    // Saved with a wake-up at 35, the end of the first window, when the second would be granted.
    engine.checkpoint().await.unwrap();
    engine.crash().await;

    append(&store.log, &layout, at(5), cancel(1, 2)).await;
    clock.set(at(40));
    let engine = start(options, &store.log, &clock).await;
    let commands = settled_commands_for(&store.log, &layout, MemberId(1), 4).await;
    assert!(
        !commands
            .iter()
            .any(|command| matches!(command, Command::GrantGroup(grant) if grant.valid_from == Some(at(85)))),
        "the cancelled booking is never granted: {commands:?}"
    );
    assert!(matches!(commands[2], Command::RevokeGroup(_)), "{commands:?}");
    engine.shutdown().await;
}
