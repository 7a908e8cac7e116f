//! Two ingestors on one log: only the one holding the ingest lease reads Nexudus and appends; the
//! standby answers webhooks 503 without reading anything, and takes over when the active one
//! stops, reading what it appended from the bucket first.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use doorsync_ingest::{IngestError, IngestHandle, IngestRole, webhook_path};
use doorsync_log::Lease;
use doorsync_nexudus::WebhookAction;
use doorsync_nexudus::webhook::{SIGNATURE_HEADER, body_for};
use doorsync_nexudus_sim::SimEntity;
use serde_json::json;
use support::World;

const FROM: &str = "2025-07-02T09:00:00Z";
const TO: &str = "2025-07-02T10:00:00Z";
/// As `doorsync ingest` holds it: a standby takes over within seconds.
const LEASE_TTL: Duration = Duration::from_secs(30);

/// A world whose ingestor holds the lease as `doorsync ingest` does, with no webhooks from Nexudus.
async fn world() -> World {
    World::start(|setup| {
        setup.hooks.clear();
        setup.options.lease_ttl = LEASE_TTL;
    })
    .await
}

/// A second ingestor on the world's log and bucket, serving webhooks on a port of its own.
async fn second_ingestor(world: &World, owner: &str) -> (IngestHandle, std::net::SocketAddr) {
    let mut options = world.options.clone();
    options.lease_owner = owner.to_owned();
    let clock = Arc::new(world.clock.clone());
    let second =
        doorsync_ingest::start(options, world.client.clone(), Arc::clone(&world.log), world.layout.clone(), clock)
            .await
            .unwrap();
    let hooks = second.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (second, hooks)
}

#[tokio::test]
async fn of_two_ingestors_only_the_lease_holder_reads_and_appends_and_the_standby_takes_over_when_it_stops() {
    let world = world().await;
    let (second, second_hooks) = second_ingestor(&world, "second").await;
    let first_owner = world.options.lease_owner.clone();
    assert_eq!(world.ingest.status().role, IngestRole::Active);
    assert_eq!(second.status().role, IngestRole::Standby { holder: Some(first_owner.clone()) });

    let (_, room) = world.london_room();
    let ada = support::coworker(&world.sim, "Ada");
    let fields = json!({"ResourceId": room, "CoworkerId": ada, "Tentative": false, "FromTime": FROM, "ToTime": TO});
    let booking = world.sim.create(SimEntity::Booking, fields).unwrap();

    // The standby reads nothing: not for a poll, not for a webhook, which it answers 503.
    let requests = world.sim.stats().requests;
    assert!(matches!(second.poll_now().await, Err(IngestError::Standby { holder }) if holder == first_owner));
    let body = body_for(&json!({"Id": booking}));
    let answer = reqwest::Client::new()
        .post(format!("http://{second_hooks}{}", webhook_path(WebhookAction::BookingUpdate)))
        .header(SIGNATURE_HEADER, support::signed(&body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 503, "for Nexudus to deliver it again, to the active ingestor");
    assert!(answer.headers().contains_key("retry-after"));
    assert_eq!(world.sim.stats().requests, requests, "the standby read nothing from Nexudus");
    assert_eq!(second.status().webhooks.standby, 1);
    assert_eq!(world.events().await, []);

    // Both poll at once: only the active one appends, each record once.
    let (first_poll, second_poll) = tokio::join!(world.ingest.poll_now(), second.poll_now());
    assert_eq!(first_poll.unwrap().appended, 2, "Ada and her booking");
    assert!(second_poll.is_err());
    let appended_by_first = world.events().await;
    assert_eq!(appended_by_first.len(), 2);

    // The first stops (giving the lease back) and Nexudus changes meanwhile.
    world.ingest.shutdown().await;
    world.tick();
    world.sim.update(SimEntity::Booking, booking, json!({"ToTime": "2025-07-02T11:00:00Z"})).unwrap();
    world.clock.advance(LEASE_TTL / 3);
    support::wait_until("the standby takes over", || second.status().role == IngestRole::Active).await;

    // It polls as it takes over: the changed booking only, not again what the first appended.
    world.wait_for_events(3).await;
    assert_eq!(second.poll_now().await.unwrap().appended, 0);
    let events = world.events().await;
    assert_eq!(events[..2], appended_by_first[..]);
    assert_eq!(
        events[2],
        (
            world.updated_on(SimEntity::Booking, booking),
            support::booking(ada, booking, room, FROM, "2025-07-02T11:00:00Z")
        )
    );
    assert_eq!(events.len(), 3);
    assert_eq!(second.status().duplicates, 0, "nothing the first had appended was appended again");
    second.shutdown().await;
    world.sim.shutdown().await;
}

#[tokio::test]
async fn an_ingestor_whose_lease_another_took_stops_appending_and_stands_by() {
    let world = world().await;
    let ada = support::coworker(&world.sim, "Ada");
    world.ingest.poll_now().await.unwrap();

    // Another ingestor took the lease (as one would once it lapsed, say while this one hung).
    let kv = world.log.key_value(&world.layout.ingest_bucket).await.unwrap();
    kv.delete("lease").await.unwrap();
    let clock = Arc::new(world.clock.clone());
    let intruder = Lease::new(kv, "lease", "intruder", LEASE_TTL, clock);
    let _held = intruder.try_acquire().await.unwrap().unwrap();

    world.clock.advance(LEASE_TTL / 3);
    support::wait_until("the ingestor notices at its next renewal", || {
        world.ingest.status().role == IngestRole::Standby { holder: Some("intruder".to_owned()) }
    })
    .await;
    world.tick();
    world.sim.update(SimEntity::Coworker, ada, json!({"FullName": "Ada L"})).unwrap();
    assert!(matches!(world.ingest.poll_now().await, Err(IngestError::Standby { .. })));
    assert_eq!(world.events().await.len(), 1, "nothing appended after the lease was lost");
    world.stop().await;
}
