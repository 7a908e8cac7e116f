//! How many Nexudus requests each kind of change costs the ingestor, counted by the simulator:
//! the record a webhook names is read once, and what it refers to (locations, zones, rooms,
//! desks, pass products) comes from the directory, which the poller keeps, not from a read per
//! change. Each webhook is delivered as Nexudus delivers it, one after the other; the counts do
//! not depend on time.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use doorsync_nexudus::WebhookAction;
use doorsync_nexudus::webhook::body_for;
use doorsync_nexudus_sim::SimEntity;
use serde_json::{Value, json};
use support::World;

const FROM: &str = "2025-07-02T09:00:00Z";
const TO: &str = "2025-07-02T10:00:00Z";

/// A London site the poller has read: (location, room, desks, day-pass product).
struct Site {
    business: u64,
    room: u64,
    desks: [u64; 2],
    product: u64,
}

/// A world whose site (a location, a room, two desks, a pass product) and member Ada exist and
/// have been polled, as in a running deployment: (world, site, Ada).
async fn running_site() -> (World, Site, u64) {
    let world = World::without_webhooks().await;
    let (business, room) = world.london_room();
    let desk = |name: &str| {
        world.sim.create(SimEntity::FloorPlanDesk, json!({"Name": name, "ItemType": 2, "BusinessId": business}))
    };
    let desks = [desk("D1").unwrap(), desk("D2").unwrap()];
    let product = world.sim.create(SimEntity::TimePass, json!({"Name": "Day pass", "BusinessId": business})).unwrap();
    let ada = support::coworker(&world.sim, "Ada");
    world.ingest.poll_now().await.unwrap();
    world.tick();
    (world, Site { business, room, desks, product }, ada)
}

/// Delivers the webhook for `action` about `record` (its body as Nexudus sends it), signed, and
/// returns the Nexudus requests its handling made.
async fn requests_for(world: &World, action: WebhookAction, record: &Value) -> u64 {
    let before = world.sim.stats().requests;
    let body = body_for(record);
    assert_eq!(world.post(&doorsync_ingest::webhook_path(action), &body, Some(&support::signed(&body))).await, 204);
    world.sim.stats().requests - before
}

/// The webhooks Nexudus sends for one change, in order, and the requests each cost.
async fn requests_per_webhook(world: &World, webhooks: &[(WebhookAction, SimEntity, u64)]) -> Vec<u64> {
    let mut counts = Vec::new();
    for &(action, kind, id) in webhooks {
        let record = world.sim.record(kind, id).unwrap_or_else(|| json!({"Id": id}));
        counts.push(requests_for(world, action, &record).await);
    }
    counts
}

fn contract_fields(ada: u64, site: &Site) -> Value {
    json!({"CoworkerId": ada, "IssuedById": site.business, "StartDate": "2025-07-01T00:00:00Z", "Active": true,
        "Desks": site.desks})
}

fn booking_fields(ada: u64, site: &Site) -> Value {
    json!({"ResourceId": site.room, "CoworkerId": ada, "Tentative": false, "FromTime": FROM, "ToTime": TO})
}

fn pass_fields(ada: u64, site: &Site) -> Value {
    json!({"CoworkerId": ada, "TimePassId": site.product, "BusinessId": site.business, "Used": false,
        "ExpireDate": "2025-12-31T23:59:59Z"})
}

use SimEntity as S;
use WebhookAction as A;

#[tokio::test]
async fn a_new_member_with_a_desk_contract() {
    let (world, site, _) = running_site().await;
    let bea = support::coworker(&world.sim, "Bea");
    world.tick();
    let contract = world.sim.create(S::CoworkerContract, contract_fields(bea, &site)).unwrap();
    let webhooks = [
        (A::CoworkerCreate, S::Coworker, bea),
        (A::AccessControlUpdate, S::Coworker, bea),
        (A::CoworkerContractCreate, S::CoworkerContract, contract),
        (A::AccessControlUpdate, S::Coworker, bea),
    ];
    // The coworker; the passes changed since the watermark, which have no webhook (the
    // coworker's version the body announces was just read); the contract (its desks, location
    // and zone are known); the passes again.
    assert_eq!(requests_per_webhook(&world, &webhooks).await, [1, 1, 1, 1]);
    world.stop().await;
}

#[tokio::test]
async fn a_booking_made_moved_and_cancelled() {
    let (world, site, ada) = running_site().await;
    let booking = world.sim.create(S::Booking, booking_fields(ada, &site)).unwrap();
    // The booking; its room, location and zone are known.
    assert_eq!(requests_per_webhook(&world, &[(A::BookingCreate, S::Booking, booking)]).await, [1]);
    world.tick();
    world.sim.update(S::Booking, booking, json!({"ToTime": "2025-07-02T11:00:00Z"})).unwrap();
    assert_eq!(requests_per_webhook(&world, &[(A::BookingUpdate, S::Booking, booking)]).await, [1]);
    world.tick();
    let record = world.sim.record(S::Booking, booking).unwrap();
    world.sim.cancel_booking(booking, 1).unwrap();
    let cancelled = [
        requests_for(&world, A::BookingDelete, &record).await,
        requests_for(&world, A::AccessControlUpdate, &world.sim.record(S::Coworker, ada).unwrap()).await,
    ];
    // The listing by its id, empty, which alone confirms it gone, then its cancellation's date
    // from the cancelled bookings; the passes changed since the watermark.
    assert_eq!(cancelled, [2, 1]);
    let booking = world.sim.create(S::Booking, booking_fields(ada, &site)).unwrap();
    requests_per_webhook(&world, &[(A::BookingCreate, S::Booking, booking)]).await;
    world.tick();
    let record = world.sim.record(S::Booking, booking).unwrap();
    world.sim.delete(S::Booking, booking).unwrap();
    // The listing by its id, and the cancelled bookings, which do not hold it.
    assert_eq!(requests_for(&world, A::BookingDelete, &record).await, 2);
    world.stop().await;
}

#[tokio::test]
async fn a_contract_changed_and_deleted() {
    let (world, site, ada) = running_site().await;
    let contract = world.sim.create(S::CoworkerContract, contract_fields(ada, &site)).unwrap();
    requests_per_webhook(&world, &[(A::CoworkerContractCreate, S::CoworkerContract, contract)]).await;
    world.tick();
    world.sim.update(S::CoworkerContract, contract, json!({"Desks": [site.desks[0]]})).unwrap();
    let webhooks =
        [(A::CoworkerContractUpdate, S::CoworkerContract, contract), (A::AccessControlUpdate, S::Coworker, ada)];
    // The contract (its desks are known); the changed passes.
    assert_eq!(requests_per_webhook(&world, &webhooks).await, [1, 1]);
    world.tick();
    let record = world.sim.record(S::CoworkerContract, contract).unwrap();
    world.sim.delete(S::CoworkerContract, contract).unwrap();
    let deleted = [
        requests_for(&world, A::CoworkerContractDelete, &record).await,
        requests_for(&world, A::AccessControlUpdate, &world.sim.record(S::Coworker, ada).unwrap()).await,
    ];
    // The listing by its id, empty; the changed passes.
    assert_eq!(deleted, [1, 1]);
    world.stop().await;
}

#[tokio::test]
async fn a_pass_bought_used_and_deleted() {
    let (world, site, ada) = running_site().await;
    let pass = world.sim.create(S::CoworkerTimePass, pass_fields(ada, &site)).unwrap();
    // Passes have no webhook: the passes changed since the watermark (the product, location and
    // zone are known; the customer's version is the one already read).
    assert_eq!(requests_per_webhook(&world, &[(A::AccessControlUpdate, S::Coworker, ada)]).await, [1]);
    world.tick();
    world.sim.update(S::CoworkerTimePass, pass, json!({"Used": true})).unwrap();
    assert_eq!(requests_per_webhook(&world, &[(A::AccessControlUpdate, S::Coworker, ada)]).await, [1]);
    world.tick();
    world.sim.delete(S::CoworkerTimePass, pass).unwrap();
    // The changed passes (without it), and one listing by the ids of every pass the customer
    // held that the first did not list, empty for this one.
    assert_eq!(requests_per_webhook(&world, &[(A::AccessControlUpdate, S::Coworker, ada)]).await, [2]);
    world.stop().await;
}

#[tokio::test]
async fn a_member_changed_and_deleted() {
    let (world, _, ada) = running_site().await;
    world.sim.update(S::Coworker, ada, json!({"FullName": "Ada L"})).unwrap();
    let webhooks = [(A::CoworkerUpdate, S::Coworker, ada), (A::AccessControlUpdate, S::Coworker, ada)];
    // The coworker; the changed passes.
    assert_eq!(requests_per_webhook(&world, &webhooks).await, [1, 1]);
    // An access-control update announcing a version of the customer not yet read reads them.
    world.tick();
    world.sim.update(S::Coworker, ada, json!({"Active": false})).unwrap();
    assert_eq!(requests_per_webhook(&world, &[(A::AccessControlUpdate, S::Coworker, ada)]).await, [2]);
    assert!(
        matches!(world.events().await.last(), Some((_, doorsync_proto::Event::MemberChanged(changed))) if !changed.active),
        "the suspension is appended"
    );
    world.tick();
    let record = world.sim.record(S::Coworker, ada).unwrap();
    world.sim.delete(S::Coworker, ada).unwrap();
    // The listing by its id, empty.
    assert_eq!(requests_for(&world, A::CoworkerDelete, &record).await, 1);
    world.stop().await;
}

#[tokio::test]
async fn reference_data_is_read_by_its_own_webhooks_and_never_per_change() {
    let (world, site, ada) = running_site().await;
    world.sim.update(S::FloorPlanDesk, site.desks[0], json!({"Name": "D1 by the window"})).unwrap();
    world.sim.update(S::Business, site.business, json!({"Name": "Soho House"})).unwrap();
    let webhooks =
        [(A::FloorPlanDeskUpdate, S::FloorPlanDesk, site.desks[0]), (A::BusinessUpdate, S::Business, site.business)];
    assert_eq!(requests_per_webhook(&world, &webhooks).await, [1, 1], "each reads the record it names");
    // The desk and the location are known again: the contract costs its own read only.
    let contract = world.sim.create(S::CoworkerContract, contract_fields(ada, &site)).unwrap();
    assert_eq!(requests_per_webhook(&world, &[(A::CoworkerContractCreate, S::CoworkerContract, contract)]).await, [1]);

    // A desk Nexudus no longer has leaves the directory: a contract naming it is parked, not
    // granted it as it was.
    world.tick();
    world.sim.delete(S::FloorPlanDesk, site.desks[1]).unwrap();
    let deleted = requests_for(&world, A::FloorPlanDeskDelete, &json!({"Id": site.desks[1]})).await;
    assert_eq!(deleted, 2, "the read by id (500) and the listing by id that confirms it");
    world.sim.update(S::CoworkerContract, contract, json!({"Notes": "moved"})).unwrap();
    let parked_before = world.ingest.status().parked.len();
    // The contract, and the desk it still names, read by id to learn why it cannot be used.
    let changed = requests_per_webhook(&world, &[(A::CoworkerContractUpdate, S::CoworkerContract, contract)]).await;
    assert_eq!(changed, [3]);
    assert_eq!(world.ingest.status().parked.len(), parked_before + 1, "the contract is parked");
    world.stop().await;
}
