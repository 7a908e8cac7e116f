//! The ingestor against every plausible form of what Nexudus has not confirmed
//! (`/work/shared/reference/quirks.md`), each a switch of the simulator: doorsync must be right
//! under each, and grant nothing on a guess.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::time::Duration;

use doorsync_nexudus_sim::{SimEntity, UpdatedOnFilter, UtcFields};
use doorsync_proto::{
    BookingChanged, ContractChanged, Event, FloorPlanItem, FloorPlanItemId, FloorPlanItemKind, PassChanged,
};
use serde_json::json;
use support::{World, instant};

/// The last event the log holds that `pick` takes, with when it occurred.
async fn last_of<T>(world: &World, pick: impl Fn(Event) -> Option<T>) -> Option<(doorsync_proto::Timestamp, T)> {
    world.events().await.into_iter().filter_map(|(at, event)| pick(event).map(|picked| (at, picked))).last()
}

/// Nexudus may change a contract's `Desks`, or count a pass's `RemainingUses` down on a
/// check-in, without moving the record's `UpdatedOn` and without a webhook (unconfirmed,
/// reference §1.5). Listings leave `Desks` out, so the sweep reads every contract by id and
/// tells a change by its content: a desk taken off a contract no longer opens its door, and a
/// pass used up stops granting, under either form.
#[tokio::test]
async fn a_desk_taken_off_a_contract_and_a_pass_used_up_reach_the_log_at_the_next_sweep_whether_updated_on_moves_or_not()
 {
    for moves in [false, true] {
        let world = World::start(|setup| {
            setup.hooks.clear();
            setup.sim = Box::new(move |sim| sim.parent_updated_on_moves_with_child = moves);
        })
        .await;
        let (business, _) = world.london_room();
        let ada = support::coworker(&world.sim, "Ada");
        let desk = world.sim.create(SimEntity::FloorPlanDesk, json!({"Name": "D1", "ItemType": 2})).unwrap();
        let office = world.sim.create(SimEntity::FloorPlanDesk, json!({"Name": "O1", "ItemType": 1})).unwrap();
        let contract_fields = json!({"CoworkerId": ada, "IssuedById": business, "StartDate": "2025-07-01T00:00:00Z",
            "Active": true, "Desks": [desk, office], "FloorPlanDeskIds": format!("{desk},{office}")});
        let contract = world.sim.create(SimEntity::CoworkerContract, contract_fields).unwrap();
        let product = world
            .sim
            .create(SimEntity::TimePass, json!({"Name": "10h", "BusinessId": business, "MinutesIncluded": 600}))
            .unwrap();
        let pass_fields = json!({"CoworkerId": ada, "TimePassId": product, "BusinessId": business, "Used": false,
            "RemainingUses": 1, "TotalUses": 1, "ExpireDate": "2025-12-31T23:59:59Z"});
        let pass = world.sim.create(SimEntity::CoworkerTimePass, pass_fields).unwrap();
        world.ingest.poll_now().await.unwrap();
        let made_on = world.now();

        world.tick();
        let only_the_office = json!({"Desks": [office], "FloorPlanDeskIds": office.to_string()});
        world.sim.update_children(SimEntity::CoworkerContract, contract, only_the_office).unwrap();
        assert_eq!(world.sim.check_in(pass).unwrap(), 0);
        let changed_on = if moves { world.now() } else { made_on };
        assert_eq!(world.updated_on(SimEntity::CoworkerContract, contract), changed_on);
        assert_eq!(world.updated_on(SimEntity::CoworkerTimePass, pass), changed_on);

        let sweep = world.ingest.sweep_now().await.unwrap();
        assert_eq!(sweep.appended, 2, "moves={moves}: {sweep:?}");
        let contract_now = last_of(&world, |event| match event {
            Event::ContractChanged(changed) if changed.contract.0 == contract => Some(changed),
            _ => None,
        });
        let (at, ContractChanged { spaces, .. }) = contract_now.await.unwrap();
        assert_eq!(at, changed_on);
        assert_eq!(spaces, [FloorPlanItem { id: FloorPlanItemId(office), kind: FloorPlanItemKind::Office }]);
        let pass_now = last_of(&world, |event| match event {
            Event::PassChanged(changed) if changed.pass.0 == pass => Some(changed),
            _ => None,
        });
        let (at, PassChanged { used_up, .. }) = pass_now.await.unwrap();
        assert_eq!((at, used_up), (changed_on, true), "moves={moves}");
        assert_eq!(world.ingest.sweep_now().await.unwrap().appended, 0, "found once");
        world.stop().await;
    }
}

/// Whether Nexudus reads a `from_{Entity}_UpdatedOn` filter as UTC or on each record's
/// location's wall clock is unconfirmed (reference §1.5, §1.7). Read on Los Angeles's wall
/// clock, a filter written in UTC starts seven hours late in July; the poller moves it back by
/// the westernmost location's offset, so a change a minute after the watermark is found under
/// either reading, west of UTC and east of it.
#[tokio::test]
async fn a_poll_finds_a_booking_changed_a_minute_after_the_watermark_whichever_way_the_filter_is_read() {
    for windows_zone in ["Pacific Standard Time", "AUS Eastern Standard Time"] {
        for filter in [UpdatedOnFilter::Local, UpdatedOnFilter::Utc] {
            let world = World::start(|setup| {
                setup.hooks.clear();
                setup.sim = Box::new(move |sim| sim.updated_on_filter = filter);
            })
            .await;
            let business = world.sim.create_location("Somewhere", windows_zone).unwrap();
            let room = world.sim.create(SimEntity::Resource, json!({"BusinessId": business, "Name": "Room"})).unwrap();
            let ada = support::coworker(&world.sim, "Ada");
            let fields = json!({"ResourceId": room, "CoworkerId": ada, "Tentative": false,
                "FromTime": "2025-07-02T16:00:00Z", "ToTime": "2025-07-02T17:00:00Z"});
            let booking = world.sim.create(SimEntity::Booking, fields).unwrap();
            assert_eq!(world.ingest.poll_now().await.unwrap().appended, 2, "{windows_zone} {filter:?}");

            world.clock.advance(Duration::from_secs(60));
            world.sim.update(SimEntity::Booking, booking, json!({"ToTime": "2025-07-02T18:00:00Z"})).unwrap();
            let poll = world.ingest.poll_now().await.unwrap();
            assert_eq!(poll.appended, 1, "{windows_zone} {filter:?}: {poll:?}");
            let (at, BookingChanged { booking: changed, ends_at, .. }) = last_of(&world, |event| match event {
                Event::BookingChanged(changed) => Some(changed),
                _ => None,
            })
            .await
            .unwrap();
            assert_eq!((at, changed.0, ends_at), (world.now(), booking, instant("2025-07-02T18:00:00Z")));
            world.stop().await;
        }
    }
}

/// The parked records, as (entity, id, reason).
fn parked(world: &World) -> Vec<(String, Option<u64>, String)> {
    world.ingest.status().parked.into_iter().map(|parked| (parked.entity, parked.id, parked.reason)).collect()
}

/// Some Nexudus APIs write the location's wall clock with a fake `Z` (reference §1.7); whether
/// the admin API's `FromTime` ever does is unconfirmed. doorsync reads `FromTime` as UTC and
/// checks it against `FromTimeLocal` in the location's zone: under the UTC form the booking is
/// granted, under the fake-`Z` form (London and Los Angeles in July) it is parked with the
/// reason, and nothing is granted at a guessed time.
#[tokio::test]
async fn a_booking_is_granted_on_utc_times_and_parked_when_they_are_local_with_a_fake_z() {
    for form in [UtcFields::Utc, UtcFields::LocalWithFakeZ] {
        let world = World::start(|setup| {
            setup.hooks.clear();
            setup.sim = Box::new(move |sim| sim.utc_fields = form);
        })
        .await;
        let ada = support::coworker(&world.sim, "Ada");
        let mut bookings = Vec::new();
        for windows_zone in ["GMT Standard Time", "Pacific Standard Time"] {
            let business = world.sim.create_location("Somewhere", windows_zone).unwrap();
            let room = world.sim.create(SimEntity::Resource, json!({"BusinessId": business, "Name": "Room"})).unwrap();
            let fields = json!({"ResourceId": room, "CoworkerId": ada, "Tentative": false,
                "FromTime": "2025-07-02T16:00:00Z", "ToTime": "2025-07-02T17:00:00Z"});
            bookings.push(world.sim.create(SimEntity::Booking, fields).unwrap());
        }
        world.ingest.poll_now().await.unwrap();

        let granted: Vec<(u64, doorsync_proto::Timestamp)> = world
            .events()
            .await
            .into_iter()
            .filter_map(|(_, event)| match event {
                Event::BookingChanged(changed) => Some((changed.booking.0, changed.starts_at)),
                _ => None,
            })
            .collect();
        let parked = parked(&world);
        match form {
            UtcFields::Utc => {
                let starts = instant("2025-07-02T16:00:00Z");
                assert_eq!(granted, [(bookings[0], starts), (bookings[1], starts)]);
                assert_eq!(parked, []);
            }
            UtcFields::LocalWithFakeZ => {
                assert_eq!(granted, [], "nothing granted on a guessed time");
                assert_eq!(
                    parked.iter().map(|(_, id, _)| *id).collect::<Vec<_>>(),
                    bookings.iter().copied().map(Some).collect::<Vec<_>>()
                );
                for (entity, _, reason) in &parked {
                    assert_eq!(entity, "Booking");
                    assert!(reason.contains("and FromTimeLocal") && reason.contains("fake Z"), "{reason}");
                }
            }
        }
        world.stop().await;
    }
}

/// A location whose Windows time-zone id is not in CLDR's table: every record there that
/// reaches doorsync by webhook (a booking, a contract, an unused pass) is parked with the
/// reason, and nothing is granted on a guessed zone.
#[tokio::test]
async fn a_location_with_an_unknown_zone_id_parks_its_records_and_grants_nothing_by_webhook() {
    let world = World::start(|_| {}).await;
    let nowhere = world.sim.create_location("Olympus", "Mars Standard Time").unwrap();
    let room = world.sim.create(SimEntity::Resource, json!({"BusinessId": nowhere, "Name": "Room"})).unwrap();
    let desk = world.sim.create(SimEntity::FloorPlanDesk, json!({"Name": "D1", "ItemType": 2})).unwrap();
    let day_pass = world.sim.create(SimEntity::TimePass, json!({"Name": "Day", "BusinessId": nowhere})).unwrap();
    let ada = world.step(1, |sim| support::coworker(sim, "Ada")).await;
    world.quiet().await;
    let before = world.events().await;

    world.tick();
    let fields = json!({"ResourceId": room, "CoworkerId": ada, "Tentative": false,
        "FromTime": "2025-07-02T16:00:00Z", "ToTime": "2025-07-02T17:00:00Z"});
    let booking = world.sim.create(SimEntity::Booking, fields).unwrap();
    let fields = json!({"CoworkerId": ada, "IssuedById": nowhere, "StartDate": "2025-07-01T00:00:00Z",
        "Active": true, "Desks": [desk]});
    let contract = world.sim.create(SimEntity::CoworkerContract, fields).unwrap();
    let fields = json!({"CoworkerId": ada, "TimePassId": day_pass, "BusinessId": nowhere, "Used": false,
        "ExpireDate": "2025-12-31T23:59:59Z"});
    let pass = world.sim.create(SimEntity::CoworkerTimePass, fields).unwrap();
    world.quiet().await;

    assert_eq!(world.events().await, before, "nothing granted");
    let mut parked = parked(&world);
    parked.sort();
    let ids: Vec<(&str, Option<u64>)> = parked.iter().map(|(entity, id, _)| (entity.as_str(), *id)).collect();
    let mut expected =
        [("Booking", Some(booking)), ("CoworkerContract", Some(contract)), ("CoworkerTimePass", Some(pass))];
    expected.sort();
    assert_eq!(ids, expected);
    for (entity, _, reason) in &parked {
        assert!(reason.contains("unknown time zone \"Mars Standard Time\""), "{entity}: {reason}");
    }
    assert_eq!(world.ingest.status().webhooks.failed, 0, "parked, not failed: Nexudus keeps the hooks");
    world.stop().await;
}
