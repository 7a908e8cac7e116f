//! A record whose new version cannot be read is parked; what its earlier version granted is
//! withheld from its member until a readable version (or its removal) comes.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use doorsync_access::{AccessPolicy, Mapping, MemberState, desired};
use doorsync_nexudus_sim::SimEntity;
use doorsync_proto::{
    ContractId, EntitlementId, EntitlementWithheld, Envelope, Event, KisiGroupId, MemberId, PassId, PassProductId,
    Timestamp,
};
use serde_json::json;
use support::{World, instant};

const COWORKING: KisiGroupId = KisiGroupId(30);
const DESKS: KisiGroupId = KisiGroupId(40);

/// The Kisi groups `member` should be in at `now`, folded from everything in the log.
async fn groups_at(world: &World, member: u64, mapping: &Mapping, now: Timestamp) -> Vec<KisiGroupId> {
    let mut state = MemberState::new(MemberId(member));
    for (sequence, (at, event)) in (1_u64..).zip(world.events().await) {
        doorsync_access::fold(&mut state, sequence, &Envelope::new(at, event).unwrap());
    }
    desired(&state, mapping, &AccessPolicy::default(), now).grants.into_keys().collect()
}

fn withheld(member: u64, entitlement: EntitlementId, reason: &str) -> Event {
    Event::EntitlementWithheld(EntitlementWithheld { member: MemberId(member), entitlement, reason: reason.to_owned() })
}

#[tokio::test]
async fn a_pass_whose_used_version_cannot_be_read_gives_no_access_after_its_day() {
    let world = World::without_webhooks().await;
    let (business, _) = world.london_room();
    let day_pass = world.sim.create(SimEntity::TimePass, json!({"Name": "Day pass", "BusinessId": business})).unwrap();
    let ada = support::coworker(&world.sim, "Ada");
    let pass_fields = json!({"CoworkerId": ada, "TimePassId": day_pass, "BusinessId": business, "Used": false,
        "ExpireDate": "2025-12-31T23:59:59Z"});
    let pass = world.sim.create(SimEntity::CoworkerTimePass, pass_fields).unwrap();
    world.ingest.poll_now().await.unwrap();
    let mut mapping = Mapping::default();
    mapping.pass_products.insert(PassProductId(day_pass), COWORKING);
    let days_later = instant("2025-07-04T12:00:00Z");
    assert_eq!(groups_at(&world, ada, &mapping, days_later).await, [COWORKING], "unused, it grants until it expires");

    // Used today, but Nexudus left out the day it was used on.
    world.tick();
    world.sim.update(SimEntity::CoworkerTimePass, pass, json!({"Used": true})).unwrap();
    let used_on = world.updated_on(SimEntity::CoworkerTimePass, pass);
    let summary = world.ingest.poll_now().await.unwrap();
    assert_eq!((summary.parked, summary.appended), (1, 0), "{summary:?}");

    let reason = "UsedDate: is missing on a used day pass, so its day is unknown";
    let events = world.events().await;
    assert_eq!(events.last().unwrap(), &(used_on, withheld(ada, EntitlementId::Pass(PassId(pass)), reason)));
    for now in [world.now(), days_later] {
        assert_eq!(groups_at(&world, ada, &mapping, now).await, [], "at {now}");
    }
    let status = world.ingest.status();
    let parked: Vec<_> = status.parked.iter().map(|parked| (parked.id, parked.withheld_from)).collect();
    assert_eq!(parked, [(Some(pass), Some(MemberId(ada)))], "the status says from whom it was withheld");

    assert_eq!(world.ingest.poll_now().await.unwrap().parked, 1);
    world.ingest.sweep_now().await.unwrap();
    assert_eq!(world.events().await.len(), events.len(), "withheld once, not at every reading");

    world.tick();
    world.sim.update(SimEntity::CoworkerTimePass, pass, json!({"UsedDate": "2025-07-01T10:00:00Z"})).unwrap();
    assert_eq!(world.ingest.poll_now().await.unwrap().appended, 1);
    assert_eq!(groups_at(&world, ada, &mapping, instant("2025-07-01T22:00:00Z")).await, [COWORKING], "its day");
    assert_eq!(groups_at(&world, ada, &mapping, days_later).await, []);
    assert!(world.ingest.status().parked.is_empty());
    world.stop().await;
}

/// A contract whose desks Nexudus changes without moving `UpdatedOn` (a child of the record):
/// its readable version has the `UpdatedOn` and content of the version before the withholding,
/// and must still be appended, with an id the log has not seen.
#[tokio::test]
async fn a_contract_readable_again_as_it_was_before_is_appended_again() {
    let world = World::without_webhooks().await;
    let (business, _) = world.london_room();
    let ada = support::coworker(&world.sim, "Ada");
    let desk = world.sim.create(SimEntity::FloorPlanDesk, json!({"Name": "D1", "ItemType": 2})).unwrap();
    let gone = world.sim.create(SimEntity::FloorPlanDesk, json!({"Name": "D2", "ItemType": 2})).unwrap();
    world.sim.delete(SimEntity::FloorPlanDesk, gone).unwrap();
    let desks = |desk: u64| json!({"Desks": [desk], "FloorPlanDeskIds": desk.to_string()});
    let mut contract_fields = json!({"CoworkerId": ada, "IssuedById": business, "StartDate": "2025-07-01T00:00:00Z",
        "Active": true});
    contract_fields.as_object_mut().unwrap().extend(desks(desk).as_object().unwrap().clone());
    let contract = world.sim.create(SimEntity::CoworkerContract, contract_fields).unwrap();
    world.ingest.sweep_now().await.unwrap();
    let made_on = world.updated_on(SimEntity::CoworkerContract, contract);
    let mut mapping = Mapping::default();
    mapping.floor_plan_items.insert(doorsync_proto::FloorPlanItemId(desk), DESKS);
    let now = world.now();
    assert_eq!(groups_at(&world, ada, &mapping, now).await, [DESKS]);
    let granted = world.events().await.last().unwrap().clone();

    world.tick();
    world.sim.update_children(SimEntity::CoworkerContract, contract, desks(gone)).unwrap();
    assert_eq!(world.ingest.sweep_now().await.unwrap().parked, 1);
    let reason = format!("Desks: FloorPlanDesk {gone} does not exist in Nexudus");
    let withheld_contract = withheld(ada, EntitlementId::Contract(ContractId(contract)), &reason);
    assert_eq!(
        world.events().await.last().unwrap(),
        &(made_on, withheld_contract),
        "dated by the unreadable version's UpdatedOn, which did not move"
    );
    assert_eq!(groups_at(&world, ada, &mapping, now).await, []);

    world.sim.update_children(SimEntity::CoworkerContract, contract, desks(desk)).unwrap();
    assert_eq!(world.ingest.sweep_now().await.unwrap().appended, 1);
    let (at, event) = world.events().await.last().unwrap().clone();
    assert_eq!(event, granted.1, "the same facts as before");
    assert_eq!(at, Timestamp::from_unix_millis(made_on.as_unix_millis() + 1), "just after the withholding");
    assert_eq!(groups_at(&world, ada, &mapping, now).await, [DESKS], "granted again");
    world.stop().await;
}
