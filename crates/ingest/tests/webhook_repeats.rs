//! What repeated webhook deliveries cost: a burst naming one record reads it a few times, not once
//! per delivery, and
//! the same signed body again within minutes reads nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::time::Duration;

use doorsync_ingest::webhook_path;
use doorsync_nexudus::WebhookAction;
use doorsync_nexudus::webhook::body_for;
use doorsync_nexudus_sim::SimEntity;
use serde_json::json;
use support::World;

/// A booking of a London room by a new member, in the simulator; its id.
fn booked(world: &World) -> u64 {
    let (_, room) = world.london_room();
    let ada = support::coworker(&world.sim, "Ada");
    let fields = json!({
        "ResourceId": room, "CoworkerId": ada, "Tentative": false,
        "FromTime": "2025-07-02T09:00:00Z", "ToTime": "2025-07-02T10:00:00Z",
    });
    world.sim.create(SimEntity::Booking, fields).unwrap()
}

#[tokio::test]
async fn a_burst_of_deliveries_naming_one_record_reads_it_a_few_times_not_once_each() {
    let world = World::without_webhooks().await;
    let id = booked(&world);
    let path = webhook_path(WebhookAction::BookingUpdate);
    // A first delivery, so that what the burst costs is only its own reads.
    let first = body_for(&json!({"Id": id}));
    assert_eq!(world.post(&path, &first, Some(&support::signed(&first))).await, 204);
    let before = world.sim.stats().requests;

    // Twenty different bodies (a repeat of one body would cost nothing anyway), all at once.
    let bodies: Vec<(Vec<u8>, String)> = (0..20)
        .map(|nonce| body_for(&json!({"Id": id, "Nonce": nonce})))
        .map(|body| {
            let signature = support::signed(&body);
            (body, signature)
        })
        .collect();
    let deliveries = bodies.iter().map(|(body, signature)| world.post(&path, body, Some(signature)));
    let answers = futures::future::join_all(deliveries).await;
    assert!(answers.iter().all(|answer| *answer == 204), "{answers:?}");
    // Each delivery read the record on its own before: 20 reads. Now one read is in flight at a
    // time and one after it serves every delivery that waited; the concurrency limit lets the
    // last few in only after that, so a second wave may cost one or two more.
    let reads = world.sim.stats().requests - before;
    assert!((1..=4).contains(&reads), "{reads} reads of one record for a burst of 20 deliveries");
    world.stop().await;
}

#[tokio::test]
async fn the_same_signed_body_again_within_minutes_costs_no_nexudus_call() {
    let world = World::without_webhooks().await;
    let id = booked(&world);
    let path = webhook_path(WebhookAction::BookingUpdate);
    let body = body_for(&json!({"Id": id}));
    let signature = support::signed(&body);
    assert_eq!(world.post(&path, &body, Some(&signature)).await, 204);
    let after_first = world.sim.stats().requests;
    assert!(after_first > 0);

    for _ in 0..5 {
        assert_eq!(world.post(&path, &body, Some(&signature)).await, 204);
    }
    world.clock.advance(Duration::from_secs(4 * 60));
    assert_eq!(world.post(&path, &body, Some(&signature)).await, 204);
    assert_eq!(world.sim.stats().requests, after_first, "a repeat within minutes is answered from memory");

    // Another action's delivery with the same body is another delivery: a deletion may carry
    // the body of the last update.
    let deletion_path = webhook_path(WebhookAction::BookingDelete);
    assert_eq!(world.post(&deletion_path, &body, Some(&signature)).await, 204);
    let after_other_action = world.sim.stats().requests;
    assert!(after_other_action > after_first);

    // Past the window, the same body reads the record again.
    world.clock.advance(Duration::from_secs(2 * 60));
    assert_eq!(world.post(&path, &body, Some(&signature)).await, 204);
    assert!(world.sim.stats().requests > after_other_action, "forgotten after the window");
    world.stop().await;
}

#[tokio::test]
async fn an_access_control_update_is_read_every_time_since_its_body_does_not_say_what_changed() {
    let world = World::without_webhooks().await;
    let ada = support::coworker(&world.sim, "Ada");
    // Nexudus sends the customer, unchanged when one of their passes changes.
    let body = body_for(&world.record(SimEntity::Coworker, ada));
    let signature = support::signed(&body);
    let path = webhook_path(WebhookAction::AccessControlUpdate);
    assert_eq!(world.post(&path, &body, Some(&signature)).await, 204);
    let after_first = world.sim.stats().requests;
    assert_eq!(world.post(&path, &body, Some(&signature)).await, 204);
    assert!(world.sim.stats().requests > after_first, "the customer's passes were read again");
    world.stop().await;
}
