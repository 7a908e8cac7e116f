//! The ingestor against every plausible form of what Nexudus has not confirmed
//! (`/work/shared/reference/quirks.md`), each a switch of the simulator: doorsync must be right
//! under each, and grant nothing on a guess.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use doorsync_nexudus_sim::SimEntity;
use doorsync_proto::{ContractChanged, Event, FloorPlanItem, FloorPlanItemId, FloorPlanItemKind, PassChanged};
use serde_json::json;
use support::World;

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
