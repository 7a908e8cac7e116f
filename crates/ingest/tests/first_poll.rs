//! The first poll runs as soon as an ingestor holds the lease, not one poll interval later: what
//! changed in Nexudus while no ingestor ran (and no webhook could be answered) is read at start.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use doorsync_nexudus_sim::SimEntity;
use serde_json::json;
use support::{World, booking};

#[tokio::test]
async fn an_ingestor_polls_at_start_and_after_a_restart_without_waiting_a_poll_interval() {
    // The clock never moves: the poll interval (ten minutes) never passes.
    let mut world = World::without_webhooks().await;
    support::wait_until("the first poll ran", || world.ingest.status().last_poll.is_some()).await;
    assert_eq!(world.ingest.status().last_poll, Some(support::START));

    // Made while no webhook reaches the ingestor and its next poll is ten minutes away; the
    // ingestor that replaces it reads the booking at once.
    let (_, room) = world.london_room();
    let ada = support::coworker(&world.sim, "Ada");
    let fields = json!({"ResourceId": room, "CoworkerId": ada, "Tentative": false,
        "FromTime": "2025-07-02T09:00:00Z", "ToTime": "2025-07-02T10:00:00Z"});
    let id = world.sim.create(SimEntity::Booking, fields).unwrap();
    world.restart_ingest().await;

    let events = world.wait_for_events(2).await;
    let expected = booking(ada, id, room, "2025-07-02T09:00:00Z", "2025-07-02T10:00:00Z");
    assert!(events.iter().any(|(_, event)| *event == expected), "{events:#?}");
    world.stop().await;
}
