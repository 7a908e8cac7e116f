//! The ingestor names what its directory reads in the catalogue: locations with their IANA
//! zones, resources, pass products and desks with their names and locations, from the reads it
//! makes anyway, and writes a name again only when it changed.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use doorsync_catalogue::Catalogue;
use doorsync_nexudus_sim::SimEntity;
use doorsync_proto::{FloorPlanItemId, MappingSource, PassProductId, ResourceId};
use serde_json::json;
use support::World;

#[tokio::test]
async fn names_and_zones_of_what_the_directory_reads_reach_the_catalogue_and_change_with_nexudus() {
    let world = World::without_webhooks().await;
    let (business, room) = world.london_room();
    let day_pass = world.sim.create(SimEntity::TimePass, json!({"Name": "Day pass", "BusinessId": business})).unwrap();
    let desk = json!({"Name": "Desk 4", "ItemType": 2, "FloorPlanBusinessId": business});
    let desk_id = world.sim.create(SimEntity::FloorPlanDesk, desk).unwrap();
    let room_source = MappingSource::Resource(ResourceId(room));

    world.ingest.sweep_now().await.unwrap();

    let catalogue = Catalogue::read(world.log.as_ref(), &world.layout).await.unwrap();
    let location = catalogue.location(business).expect("the location is named");
    assert_eq!((location.name.as_str(), location.time_zone.as_deref()), ("Soho", Some("Europe/London")));
    assert_eq!(catalogue.source_label(room_source).to_string(), "Room 1 · Soho");
    let room_zone = catalogue.zone_of(room_source).expect("the room's location has a zone");
    assert_eq!(room_zone.iana_name(), Some("Europe/London"));
    let day_pass = MappingSource::PassProduct(PassProductId(day_pass));
    assert_eq!(catalogue.source_label(day_pass).to_string(), "Day pass · Soho");
    let desk = MappingSource::FloorPlanItem(FloorPlanItemId(desk_id));
    assert_eq!(catalogue.source_label(desk).with_id(), format!("Desk 4 · Soho (desk/office {desk_id})"));

    let bucket = doorsync_log::EventLog::key_value(world.log.as_ref(), &world.layout.catalogue_bucket).await.unwrap();
    let revision = |key: String| {
        let bucket = std::sync::Arc::clone(&bucket);
        async move { bucket.get(&key).await.unwrap().map(|entry| entry.revision) }
    };
    let location_written = revision(format!("location.{business}")).await;
    world.sim.update(SimEntity::Resource, room, json!({"Name": "Meeting Room 1"})).unwrap();
    world.tick();
    world.ingest.sweep_now().await.unwrap();

    let catalogue = Catalogue::read(world.log.as_ref(), &world.layout).await.unwrap();
    assert_eq!(catalogue.source_label(room_source).to_string(), "Meeting Room 1 · Soho", "renamed in Nexudus");
    assert_eq!(revision(format!("location.{business}")).await, location_written, "an unchanged name is not written");
    world.stop().await;
}

#[tokio::test]
async fn a_room_first_read_for_a_booking_is_named_without_waiting_for_the_sweep() {
    let world = World::without_webhooks().await;
    let (business, room) = world.london_room();
    let ada = support::coworker(&world.sim, "Ada");
    let (from, to) = ("2025-07-02T09:00:00Z", "2025-07-02T10:00:00Z");
    let booking = json!({"ResourceId": room, "CoworkerId": ada, "Tentative": false, "FromTime": from, "ToTime": to});
    world.sim.create(SimEntity::Booking, booking).unwrap();

    world.ingest.poll_now().await.unwrap();
    assert_eq!(world.events().await.len(), 2, "Ada and her booking");

    let catalogue = Catalogue::read(world.log.as_ref(), &world.layout).await.unwrap();
    assert_eq!(catalogue.source_label(MappingSource::Resource(ResourceId(room))).to_string(), "Room 1 · Soho");
    let zone = catalogue.location_zone(business).expect("the location's zone");
    assert_eq!(zone.iana_name(), Some("Europe/London"));
    world.stop().await;
}
