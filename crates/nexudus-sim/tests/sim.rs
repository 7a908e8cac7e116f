//! The simulator over real loopback HTTP: webhooks, cancellations, throttling.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use doorsync_clock::ManualClock;
use doorsync_nexudus::webhook::{SIGNATURE_HEADER, parse_body, verify};
use doorsync_nexudus::{
    AuthMode, Booking, CancelledBooking, Coworker, Credentials, Limits, ListQuery, NexudusClient, NexudusError,
    NexudusOptions, Secret, Webhook, WebhookAction,
};
use doorsync_nexudus_sim::{
    MissingRecord, NexudusSimulator, SimEntity, SimOptions, UpdatedOnFilter, UtcFields, WebhookFaults,
};
use doorsync_proto::Timestamp;
use serde_json::json;
use tokio::sync::mpsc;
use url::Url;

const START: Timestamp = Timestamp::from_unix_millis(1_751_356_800_000);

async fn start(configure: impl FnOnce(&mut SimOptions)) -> (ManualClock, NexudusSimulator) {
    let clock = ManualClock::new(START);
    let mut options = SimOptions::new(Arc::new(clock.clone()));
    options.limits = None;
    options.webhook_retry_delay = Duration::from_secs(1);
    configure(&mut options);
    (clock.clone(), NexudusSimulator::start(options).await.unwrap())
}

fn client(sim: &NexudusSimulator, clock: &ManualClock) -> NexudusClient {
    let credentials = Credentials { username: "admin@example.com".into(), password: Secret::new("password") };
    let mut options = NexudusOptions::new(sim.base_url(), credentials);
    options.auth = AuthMode::Basic;
    options.limits = Limits { min_interval: Duration::ZERO, per_minute: 1_000_000, per_hour: 1_000_000 };
    NexudusClient::new(options, Arc::new(clock.clone())).unwrap()
}

/// A webhook receiver that answers with a settable status and reports each POST it gets.
struct Receiver {
    url: Url,
    status: Arc<AtomicU16>,
    received: mpsc::UnboundedReceiver<(HeaderMap, Bytes)>,
}

impl Receiver {
    async fn start() -> Self {
        let (sender, received) = mpsc::unbounded_channel();
        let status = Arc::new(AtomicU16::new(200));
        let handler = {
            let status = status.clone();
            move |State(sender): State<mpsc::UnboundedSender<(HeaderMap, Bytes)>>, headers: HeaderMap, body: Bytes| {
                let status = status.load(Ordering::SeqCst);
                async move {
                    sender.send((headers, body)).unwrap();
                    StatusCode::from_u16(status).unwrap()
                }
            }
        };
        let app = axum::Router::new().route("/hooks", axum::routing::post(handler)).with_state(sender);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/hooks", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, status, received }
    }

    async fn next(&mut self) -> (HeaderMap, Bytes) {
        tokio::time::timeout(Duration::from_secs(10), self.received.recv()).await.expect("a delivery").unwrap()
    }

    /// Waits a little (real time) and says whether anything arrived.
    async fn got_any_within(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.received.recv()).await.is_ok()
    }
}

#[tokio::test]
async fn a_webhook_is_an_array_with_the_entity_signed_for_the_clients_verify() {
    let (_clock, sim) = start(|_| {}).await;
    let mut receiver = Receiver::start().await;
    let secret = Secret::new("shared-secret");
    sim.register_webhook(WebhookAction::CoworkerCreate, &receiver.url, secret.clone()).unwrap();
    sim.register_webhook(WebhookAction::AccessControlUpdate, &receiver.url, secret.clone()).unwrap();

    let ada = sim
        .create(SimEntity::Coworker, json!({"FullName": "Ada", "Email": "ada@example.com", "Active": true}))
        .unwrap();
    for _ in 0..2 {
        let (headers, body) = receiver.next().await;
        let signature = headers.get(SIGNATURE_HEADER).unwrap().to_str().unwrap();
        assert_eq!(signature, signature.to_uppercase());
        assert_eq!(verify(&secret, &body, signature), Ok(()));
        assert!(verify(&Secret::new("other"), &body, signature).is_err());
        let entities = parse_body(&body).unwrap();
        assert_eq!(entities.iter().map(|entity| entity.id).collect::<Vec<_>>(), [ada]);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn failed_deliveries_are_retried_and_the_hook_disabled_after_ten() {
    let (clock, sim) = start(|_| {}).await;
    let mut receiver = Receiver::start().await;
    receiver.status.store(500, Ordering::SeqCst);
    let hook = sim.register_webhook(WebhookAction::CoworkerCreate, &receiver.url, Secret::new("s")).unwrap();
    sim.create(SimEntity::Coworker, json!({"FullName": "Ada", "Active": true})).unwrap();

    for attempt in 1..=10 {
        receiver.next().await;
        // The retry waits on the clock: nothing arrives until it moves.
        if attempt < 10 {
            while sim.stats().deliveries_attempted < attempt {
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(!receiver.got_any_within(Duration::from_millis(50)).await, "no retry before the delay");
            clock.advance(Duration::from_secs(attempt));
        }
    }
    let mut disabled = false;
    for _ in 0..200 {
        disabled = sim.record(SimEntity::Webhook, hook).unwrap()["Active"] == json!(false);
        if disabled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(disabled, "disabled after 10 consecutive failures");
    let listed = client(&sim, &clock).get::<Webhook>(hook).await.unwrap();
    assert_eq!((listed.active, listed.error_count), (false, Some(10)));
    assert!(listed.last_error.unwrap().contains("500"));

    receiver.status.store(200, Ordering::SeqCst);
    sim.create(SimEntity::Coworker, json!({"FullName": "Bo", "Active": true})).unwrap();
    clock.advance(Duration::from_secs(3_600));
    assert!(!receiver.got_any_within(Duration::from_millis(300)).await, "a disabled hook is not called");
    assert_eq!(sim.stats().deliveries_attempted, 10);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_cancelled_booking_moves_to_the_cancelled_bookings() {
    let (clock, sim) = start(|_| {}).await;
    let client = client(&sim, &clock);
    let booking = sim
        .create(
            SimEntity::Booking,
            json!({"ResourceId": 3, "CoworkerId": 4, "FromTime": "2025-07-02T09:00:00Z",
                   "ToTime": "2025-07-02T10:00:00Z", "Tentative": false}),
        )
        .unwrap();
    assert_eq!(client.list(&ListQuery::<Booking>::new()).await.unwrap().records.len(), 1);

    clock.advance(Duration::from_secs(60));
    let snapshot = sim.cancel_booking(booking, 1).unwrap();
    assert!(client.list(&ListQuery::<Booking>::new()).await.unwrap().records.is_empty());
    assert!(matches!(client.get::<Booking>(booking).await, Err(NexudusError::Server { status: 500, .. })));
    let cancelled = client.list(&ListQuery::<CancelledBooking>::new()).await.unwrap().records;
    let [cancelled] = cancelled.as_slice() else { panic!("one cancelled booking") };
    assert_eq!((cancelled.id, cancelled.original_booking_id, cancelled.coworker_id), (snapshot, booking, Some(4)));
    assert_eq!(cancelled.cancelled_on.unwrap().to_utc(), Some(clock_now(&clock)));
    assert_eq!(cancelled.cancellation_reason, Some(1));
}

#[tokio::test]
async fn a_missing_id_answers_500_like_nexudus_by_default_and_404_with_the_switch() {
    for (answer, expected) in [(MissingRecord::ServerError, 500), (MissingRecord::NotFound, 404)] {
        let (_, sim) = start(|options| options.missing_record = answer).await;
        let url = sim.base_url().join("api/spaces/bookings/4242").unwrap();
        let response =
            reqwest::Client::new().get(url).basic_auth("admin@example.com", Some("password")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), expected, "{answer:?}");
        if expected == 500 {
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["Message"], "An error has occurred.", "an ASP.NET error body: {body}");
        }
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn listings_filter_by_id_and_by_original_booking_and_ignore_unknown_parameters() {
    let (clock, sim) = start(|_| {}).await;
    let client = client(&sim, &clock);
    let fields = |coworker: u64| {
        json!({"ResourceId": 3, "CoworkerId": coworker, "FromTime": "2025-07-02T09:00:00Z",
               "ToTime": "2025-07-02T10:00:00Z", "Tentative": false})
    };
    let kept = sim.create(SimEntity::Booking, fields(4)).unwrap();
    let cancelled = sim.create(SimEntity::Booking, fields(5)).unwrap();
    let snapshot = sim.cancel_booking(cancelled, 1).unwrap();

    let by_id = client.list(&ListQuery::<Booking>::new().ids(&[kept, cancelled])).await.unwrap();
    assert_eq!(by_id.records.iter().map(|booking| booking.id).collect::<Vec<_>>(), [kept]);
    assert!(client.list(&ListQuery::<Booking>::new().ids(&[cancelled])).await.unwrap().records.is_empty());
    let query = ListQuery::<CancelledBooking>::new().field_equals("OriginalBookingId", cancelled);
    let found = client.list(&query).await.unwrap().records;
    assert_eq!(found.iter().map(|found| found.id).collect::<Vec<_>>(), [snapshot]);
    let query = ListQuery::<CancelledBooking>::new().field_equals("OriginalBookingId", kept);
    assert!(client.list(&query).await.unwrap().records.is_empty());
    let misspelt = ListQuery::<Booking>::new().field_equals("Coworkr", 5);
    assert_eq!(client.list(&misspelt).await.unwrap().records.len(), 1, "an unknown filter is no filter");
    let seen = sim.query_parameters_seen();
    assert!(["id", "CancelledBooking_OriginalBookingId", "Booking_Coworkr"].iter().all(|name| seen.contains(*name)));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_record_can_be_made_to_fail_its_reads_by_id_while_it_is_still_listed() {
    let (clock, sim) = start(|_| {}).await;
    let client = client(&sim, &clock);
    let fields = json!({"ResourceId": 3, "CoworkerId": 4, "FromTime": "2025-07-02T09:00:00Z",
                        "ToTime": "2025-07-02T10:00:00Z", "Tentative": false});
    let booking = sim.create(SimEntity::Booking, fields).unwrap();
    sim.fail_reads_of(SimEntity::Booking, booking);
    assert!(matches!(client.get::<Booking>(booking).await, Err(NexudusError::Server { status: 500, .. })));
    assert_eq!(client.list(&ListQuery::<Booking>::new().ids(&[booking])).await.unwrap().records.len(), 1);
    sim.stop_failing_reads_of(SimEntity::Booking, booking);
    assert_eq!(client.get::<Booking>(booking).await.unwrap().id, booking);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_deleted_record_restored_comes_back_with_its_id_and_fields_as_created() {
    let (clock, sim) = start(|options| options.missing_record = MissingRecord::NotFound).await;
    let client = client(&sim, &clock);
    let mut receiver = Receiver::start().await;
    sim.register_webhook(WebhookAction::CoworkerCreate, &receiver.url, Secret::new("s")).unwrap();
    let fields = json!({"FullName": "Ada", "Email": "ada@example.com", "Active": true, "Archived": false});
    let ada = sim.create(SimEntity::Coworker, fields).unwrap();
    receiver.next().await;
    let before = sim.record(SimEntity::Coworker, ada).unwrap();
    sim.delete(SimEntity::Coworker, ada).unwrap();
    assert!(matches!(client.get::<Coworker>(ada).await, Err(NexudusError::NotFound { .. })));

    clock.advance(Duration::from_secs(60));
    assert_eq!(sim.restore(SimEntity::Coworker, before.clone()).unwrap(), ada);
    let after = sim.record(SimEntity::Coworker, ada).unwrap();
    assert_eq!((&after["FullName"], &after["Email"]), (&before["FullName"], &before["Email"]));
    assert_eq!(client.get::<Coworker>(ada).await.unwrap().updated_on.unwrap().to_utc(), Some(clock_now(&clock)));
    let entities = parse_body(&receiver.next().await.1).unwrap();
    assert_eq!(entities.iter().map(|entity| entity.id).collect::<Vec<_>>(), [ada]);
    assert!(sim.restore(SimEntity::Coworker, before).is_err(), "a record that is there cannot be restored");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_page_size_can_be_capped_below_what_was_asked() {
    let (clock, sim) = start(|options| options.max_page_size = Some(2)).await;
    let client = client(&sim, &clock);
    for coworker in 0..3 {
        sim.create(SimEntity::Coworker, json!({"FullName": format!("C{coworker}"), "Active": true})).unwrap();
    }
    let query = ListQuery::<doorsync_nexudus::Coworker>::new().page_size(100);
    let page = client.list_page(&query, 1).await.unwrap();
    assert_eq!((page.records.len(), page.has_next_page), (2, true));
    assert_eq!(client.list(&query).await.unwrap().records.len(), 3);
    sim.shutdown().await;
}

/// The raw listing of passes with `from_CoworkerTimePass_UpdatedOn` set to `since`, as written.
async fn passes_updated_since(sim: &NexudusSimulator, since: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(sim.base_url().join("api/billing/coworkertimepasses").unwrap())
        .basic_auth("admin@example.com", Some("password"))
        .query(&[("from_CoworkerTimePass_UpdatedOn", since)])
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()
}

fn clock_now(clock: &ManualClock) -> Timestamp {
    doorsync_clock::Clock::now(clock)
}

#[tokio::test]
async fn the_updated_on_filter_returns_only_changes_since_the_watermark() {
    let (clock, sim) = start(|_| {}).await;
    let pass = |coworker: u64| json!({"CoworkerId": coworker, "TimePassId": 9, "Used": false});
    let old = sim.create(SimEntity::CoworkerTimePass, pass(1)).unwrap();
    let changed = sim.create(SimEntity::CoworkerTimePass, pass(2)).unwrap();
    clock.advance(Duration::from_secs(120));
    let watermark = clock_now(&clock);
    sim.update(SimEntity::CoworkerTimePass, changed, json!({"Used": true})).unwrap();

    let raw = passes_updated_since(&sim, "2025-07-01T08:02").await;
    assert_eq!(raw["TotalItems"], json!(1));
    assert_eq!(raw["Records"][0]["Id"], json!(changed));

    let all = client(&sim, &clock).list(&ListQuery::<doorsync_nexudus::CoworkerTimePass>::new()).await.unwrap();
    assert_eq!(all.records.len(), 2, "without the filter both come back ({old} and {changed})");
    let since = client(&sim, &clock)
        .list(&ListQuery::<doorsync_nexudus::CoworkerTimePass>::new().updated_since(watermark))
        .await
        .unwrap();
    assert_eq!(since.records.iter().map(|pass| (pass.id, pass.used)).collect::<Vec<_>>(), [(changed, true)]);
}

#[tokio::test]
async fn over_the_limit_answers_409_with_retry_after() {
    let (clock, sim) = start(|options| {
        options.limits = Some(Limits { min_interval: Duration::from_millis(100), per_minute: 2, per_hour: 100 });
    })
    .await;
    let http = reqwest::Client::new();
    let url = sim.base_url().join("api/spaces/coworkers").unwrap();
    let request = || http.get(url.clone()).basic_auth("admin@example.com", Some("password")).send();

    assert_eq!(request().await.unwrap().status(), 200);
    let too_soon = request().await.unwrap();
    assert_eq!(too_soon.status(), 409, "within 100 ms of the last");
    assert_eq!(too_soon.headers()["retry-after"], "1");

    clock.advance(Duration::from_millis(100));
    assert_eq!(request().await.unwrap().status(), 200);
    clock.advance(Duration::from_millis(100));
    let over_minute = request().await.unwrap();
    assert_eq!(over_minute.status(), 409, "a third in the same minute");
    assert_eq!(over_minute.headers()["retry-after"], "60");
    clock.advance(Duration::from_secs(60));
    assert_eq!(request().await.unwrap().status(), 200);
    assert_eq!(sim.stats().throttled, 2);
}

#[tokio::test]
async fn bad_credentials_and_expired_tokens_are_401() {
    let (clock, sim) = start(|options| options.token_lifetime = Duration::from_secs(600)).await;
    let http = reqwest::Client::new();
    let token_url = sim.base_url().join("api/token").unwrap();
    let refused = http
        .post(token_url.clone())
        .form(&[("grant_type", "password"), ("username", "admin@example.com"), ("password", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let as_json = http.post(token_url.clone()).json(&json!({"grant_type": "password"})).send().await.unwrap();
    assert_eq!(as_json.status(), 400, "a JSON body is unsupported_grant_type");

    let granted: serde_json::Value = http
        .post(token_url)
        .form(&[("grant_type", "password"), ("username", "admin@example.com"), ("password", "password")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(granted["expires_in"], json!(600));
    let token = granted["access_token"].as_str().unwrap().to_owned();
    let url = sim.base_url().join("api/spaces/bookings").unwrap();
    assert_eq!(http.get(url.clone()).bearer_auth(&token).send().await.unwrap().status(), 200);
    clock.advance(Duration::from_secs(600));
    assert_eq!(http.get(url).bearer_auth(&token).send().await.unwrap().status(), 401);
}

/// The delivery outcomes (dropped, attempted) of `changes` coworker creations with coin-flip faults.
async fn faulty_run(seed: u64, changes: usize) -> (u64, usize) {
    let (_clock, sim) = start(|options| {
        options.seed = seed;
        options.faults =
            WebhookFaults { drop_probability: 0.3, duplicate_probability: 0.3, ..WebhookFaults::default() };
    })
    .await;
    let mut receiver = Receiver::start().await;
    sim.register_webhook(WebhookAction::CoworkerCreate, &receiver.url, Secret::new("s")).unwrap();
    for index in 0..changes {
        sim.create(SimEntity::Coworker, json!({"FullName": format!("M{index}"), "Active": true})).unwrap();
    }
    let mut received = 0;
    while receiver.got_any_within(Duration::from_secs(1)).await {
        received += 1;
    }
    sim.shutdown().await;
    (sim.stats().deliveries_dropped, received)
}

#[tokio::test]
async fn seeded_drop_and_duplicate_faults_replay_exactly() {
    let first = faulty_run(7, 20).await;
    assert_eq!(first, faulty_run(7, 20).await, "the same seed gives the same faults");
    let (dropped, received) = first;
    assert!(dropped > 0, "some deliveries were dropped: {first:?}");
    assert!(received as u64 > 20 - dropped, "some deliveries were duplicated: {first:?}");
}

#[tokio::test]
async fn delayed_deliveries_wait_on_the_clock() {
    let (clock, sim) = start(|options| {
        options.faults = WebhookFaults {
            delay_probability: 1.0,
            max_extra_delay: Duration::from_secs(30),
            ..WebhookFaults::default()
        };
    })
    .await;
    let mut receiver = Receiver::start().await;
    sim.register_webhook(WebhookAction::CoworkerCreate, &receiver.url, Secret::new("s")).unwrap();
    let ids: Vec<u64> = (0..4)
        .map(|index| sim.create(SimEntity::Coworker, json!({"FullName": format!("M{index}"), "Active": true})).unwrap())
        .collect();
    assert!(!receiver.got_any_within(Duration::from_millis(200)).await, "held back until the clock moves");
    clock.advance(Duration::from_secs(30));
    let mut delivered = Vec::new();
    for _ in 0..4 {
        let (_, body) = receiver.next().await;
        delivered.push(parse_body(&body).unwrap()[0].id);
    }
    let mut sorted = delivered.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ids, "every delayed delivery arrives once the clock passes its time");
}

#[tokio::test]
async fn a_change_to_a_records_children_moves_updated_on_and_is_announced_only_with_the_switch() {
    for moves in [false, true] {
        let (clock, sim) = start(|options| options.parent_updated_on_moves_with_child = moves).await;
        let mut receiver = Receiver::start().await;
        sim.register_webhook(WebhookAction::AccessControlUpdate, &receiver.url, Secret::new("s")).unwrap();
        let fields = json!({"CoworkerId": 12, "TimePassId": 9, "Used": false, "RemainingUses": 2});
        let pass = sim.create(SimEntity::CoworkerTimePass, fields).unwrap();
        receiver.next().await;
        let created = sim.record(SimEntity::CoworkerTimePass, pass).unwrap()["UpdatedOn"].clone();
        clock.advance(Duration::from_secs(5));

        assert_eq!(sim.check_in(pass).unwrap(), 1);
        let record = sim.record(SimEntity::CoworkerTimePass, pass).unwrap();
        assert_eq!(record["RemainingUses"], json!(1));
        assert_eq!(record["UpdatedOn"] != created, moves);
        assert_eq!(receiver.got_any_within(Duration::from_millis(300)).await, moves);
        assert_eq!(sim.check_in(pass).unwrap(), 0);
        assert_eq!(sim.check_in(pass).unwrap(), 0, "never below none");
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn date_filters_are_read_on_the_records_locations_wall_clock_by_default_or_as_utc_with_the_switch() {
    for (filter, listed) in [(UpdatedOnFilter::Local, false), (UpdatedOnFilter::Utc, true)] {
        let (_, sim) = start(|options| options.updated_on_filter = filter).await;
        let business = sim.create_location("Los Angeles", "Pacific Standard Time").unwrap();
        let pass = json!({"CoworkerId": 1, "TimePassId": 9, "Used": false, "BusinessId": business});
        let id = sim.create(SimEntity::CoworkerTimePass, pass).unwrap();
        let placeless =
            sim.create(SimEntity::CoworkerTimePass, json!({"CoworkerId": 2, "TimePassId": 9, "Used": false}));
        let placeless = placeless.unwrap();
        // Written at 08:00 UTC; 07:59 read in Los Angeles (UTC-7 in July) is 14:59 UTC.
        let raw = passes_updated_since(&sim, "2025-07-01T07:59").await;
        let ids: Vec<u64> =
            raw["Records"].as_array().unwrap().iter().map(|record| record["Id"].as_u64().unwrap()).collect();
        let expected = if listed { vec![id, placeless] } else { vec![placeless] };
        assert_eq!(ids, expected, "{filter:?}: a record with no location reads the filter as UTC");
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn utc_fields_can_be_served_as_the_local_wall_clock_with_a_fake_z() {
    for (form, served) in
        [(UtcFields::Utc, "2025-07-02T16:00:00Z"), (UtcFields::LocalWithFakeZ, "2025-07-02T17:00:00Z")]
    {
        let (clock, sim) = start(|options| options.utc_fields = form).await;
        let business = sim.create_location("Soho", "GMT Standard Time").unwrap();
        let room = sim.create(SimEntity::Resource, json!({"BusinessId": business, "Name": "Room"})).unwrap();
        let fields = json!({"ResourceId": room, "Tentative": false,
            "FromTime": "2025-07-02T16:00:00Z", "ToTime": "2025-07-02T17:00:00Z"});
        let id = sim.create(SimEntity::Booking, fields).unwrap();
        let client = client(&sim, &clock);
        let read: Booking = client.get(id).await.unwrap();
        let listed = client.list(&ListQuery::<Booking>::new()).await.unwrap().records;
        for booking in [&read, &listed[0]] {
            assert_eq!(booking.from_time.to_string(), served, "{form:?}");
            assert_eq!(booking.from_time_local.unwrap().to_string(), "2025-07-02T17:00:00", "{form:?}");
        }
        assert_eq!(sim.record(SimEntity::Booking, id).unwrap()["UpdatedOn"], json!("2025-07-01T08:00:00Z"));
        sim.shutdown().await;
    }
}
