//! A location whose time zone changes in Nexudus: the directory's cached zone is replaced by the
//! location's own webhook (or the next poll), and the records at that location, placed on the
//! old zone's wall clock, are read again by a sweep at once and placed on the new one.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use doorsync_nexudus::WebhookAction;
use doorsync_nexudus::webhook::body_for;
use doorsync_nexudus_sim::SimEntity;
use doorsync_proto::{Event, PassChanged, PassValidity};
use serde_json::json;
use support::World;

/// The validity of the last `PassChanged` in the log.
async fn last_validity(world: &World) -> Option<PassValidity> {
    world.events().await.into_iter().rev().find_map(|(_, event)| match event {
        Event::PassChanged(PassChanged { validity, .. }) => Some(validity),
        _ => None,
    })
}

fn day_in(zone: &str) -> PassValidity {
    // 23:30 UTC on 1 July: 00:30 on 2 July in London, 19:30 on 1 July in New York.
    let date = if zone == "Europe/London" { "2025-07-02" } else { "2025-07-01" };
    PassValidity::Day { date: date.parse().unwrap(), time_zone: zone.into() }
}

#[tokio::test]
async fn a_locations_new_time_zone_places_its_passes_on_the_new_wall_clock_at_once() {
    let world = World::without_webhooks().await;
    let (business, _) = world.london_room();
    let product = world.sim.create(SimEntity::TimePass, json!({"Name": "Day pass", "BusinessId": business})).unwrap();
    let ada = support::coworker(&world.sim, "Ada");
    let fields = json!({"CoworkerId": ada, "TimePassId": product, "BusinessId": business, "Used": true,
        "UsedDate": "2025-07-01T23:30:00Z"});
    world.sim.create(SimEntity::CoworkerTimePass, fields).unwrap();
    world.ingest.poll_now().await.unwrap();
    assert_eq!(last_validity(&world).await, Some(day_in("Europe/London")));

    world.tick();
    let new_york = world.sim.create(SimEntity::SimpleTimeZone, json!({"Name": "Eastern Standard Time"})).unwrap();
    world.sim.update(SimEntity::Business, business, json!({"SimpleTimeZoneId": new_york})).unwrap();
    let body = body_for(&world.record(SimEntity::Business, business));
    let path = doorsync_ingest::webhook_path(WebhookAction::BusinessUpdate);
    assert_eq!(world.post(&path, &body, Some(&support::signed(&body))).await, 204);

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while last_validity(&world).await != Some(day_in("America/New_York")) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pass stayed on London's clock: {:#?}",
            world.events().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    world.stop().await;
}
