//! Events the poller or the sweeper appends carry the bulk header, so that the writer carries
//! out live changes first; events a webhook brings do not.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use doorsync_log::ReplayRequest;
use doorsync_nexudus::WebhookAction;
use doorsync_nexudus::webhook::body_for;
use doorsync_nexudus_sim::SimEntity;
use doorsync_proto::Event;
use futures::StreamExt;
use serde_json::json;
use support::World;

/// Every event in the log, in order, with whether it is marked as bulk work.
async fn marked_events(world: &World) -> Vec<(Event, bool)> {
    let mut replay = world.log.replay(ReplayRequest::whole(&world.layout.events)).await.unwrap();
    let mut events = Vec::new();
    while let Some(message) = replay.next().await {
        let message = message.unwrap();
        let envelope = doorsync_proto::decode::<Event>(&message.payload).unwrap();
        events.push((envelope.message, doorsync_layout::is_bulk(&message.headers)));
    }
    events
}

#[tokio::test]
async fn what_the_poller_and_the_sweeper_append_is_bulk_and_what_a_webhook_brings_is_not() {
    let world = World::without_webhooks().await;
    let (_, room) = world.london_room();
    let ada = support::coworker(&world.sim, "Ada");
    let fields = json!({"ResourceId": room, "CoworkerId": ada, "Tentative": false,
        "FromTime": "2025-07-02T09:00:00Z", "ToTime": "2025-07-02T10:00:00Z"});
    let polled = world.sim.create(SimEntity::Booking, fields.clone()).unwrap();
    world.ingest.poll_now().await.unwrap();
    let after_poll = marked_events(&world).await;
    assert_eq!(after_poll.len(), 2, "Ada and her booking: {after_poll:#?}");
    assert!(after_poll.iter().all(|(_, bulk)| *bulk), "the poll's events are bulk: {after_poll:#?}");

    world.tick();
    let hooked = world.sim.create(SimEntity::Booking, fields).unwrap();
    let body = body_for(&world.record(SimEntity::Booking, hooked));
    let path = doorsync_ingest::webhook_path(WebhookAction::BookingCreate);
    assert_eq!(world.post(&path, &body, Some(&support::signed(&body))).await, 204);
    let after_webhook = marked_events(&world).await;
    assert_eq!(after_webhook.len(), 3);
    assert!(matches!(&after_webhook[2], (Event::BookingChanged(changed), false) if changed.booking.0 == hooked));

    world.tick();
    world.sim.delete(SimEntity::Booking, polled).unwrap();
    world.ingest.sweep_now().await.unwrap();
    let after_sweep = marked_events(&world).await;
    assert_eq!(after_sweep.len(), 4);
    assert!(matches!(&after_sweep[3], (Event::BookingCancelled(cancelled), true) if cancelled.booking.0 == polled));
    world.stop().await;
}
