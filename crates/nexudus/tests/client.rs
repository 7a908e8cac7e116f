//! The client against the Nexudus simulator, over real loopback HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;
use std::time::Duration;

use doorsync_clock::{Clock, ManualClock};
use doorsync_nexudus::datetime::local_agrees_with_utc;
use doorsync_nexudus::{
    AuthMode, Booking, Business, Coworker, CoworkerContract, Credentials, Limits, ListQuery, NexudusClient,
    NexudusError, NexudusOptions, Secret, SimpleTimeZone, Webhook, WebhookAction,
};
use doorsync_nexudus_sim::{NexudusSimulator, SimEntity, SimOptions};
use doorsync_proto::Timestamp;
use serde_json::json;

/// 2025-07-01T08:00:00Z.
const START: Timestamp = Timestamp::from_unix_millis(1_751_356_800_000);
/// Limits that never make a test wait, for tests about something else.
const UNLIMITED: Limits = Limits { min_interval: Duration::ZERO, per_minute: 1_000_000, per_hour: 1_000_000 };

struct Setup {
    clock: ManualClock,
    sim: NexudusSimulator,
}

impl Setup {
    async fn new(configure: impl FnOnce(&mut SimOptions)) -> Self {
        let clock = ManualClock::new(START);
        let mut options = SimOptions::new(Arc::new(clock.clone()));
        options.limits = None;
        configure(&mut options);
        let sim = NexudusSimulator::start(options).await.unwrap();
        Self { clock, sim }
    }

    fn client_with(&self, configure: impl FnOnce(&mut NexudusOptions)) -> NexudusClient {
        let credentials = Credentials { username: "admin@example.com".into(), password: Secret::new("password") };
        let mut options = NexudusOptions::new(self.sim.base_url(), credentials);
        options.limits = UNLIMITED;
        configure(&mut options);
        NexudusClient::new(options, Arc::new(self.clock.clone())).unwrap()
    }

    fn client(&self) -> NexudusClient {
        self.client_with(|_| {})
    }

    fn coworker(&self, name: &str) -> u64 {
        let email = format!("{}@example.com", name.to_lowercase());
        self.sim.create(SimEntity::Coworker, json!({"FullName": name, "Email": email, "Active": true})).unwrap()
    }

    /// Moves virtual time forward in small steps while a test waits on it (retry-after, limits).
    fn drive_clock(&self) -> tokio::task::JoinHandle<()> {
        let clock = self.clock.clone();
        tokio::spawn(async move {
            loop {
                clock.advance(Duration::from_millis(100));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    }
}

#[tokio::test]
async fn a_token_is_fetched_once_and_refreshed_before_it_expires() {
    let setup = Setup::new(|options| options.token_lifetime = Duration::from_secs(3_600)).await;
    let client = setup.client();
    setup.coworker("Ada");
    client.list(&ListQuery::<Coworker>::new()).await.unwrap();
    client.clone().list(&ListQuery::<Coworker>::new()).await.unwrap();
    assert_eq!(setup.sim.stats().token_grants, 1, "clones share one cached token");

    setup.clock.advance(Duration::from_secs(3_600 - 90));
    client.list(&ListQuery::<Coworker>::new()).await.unwrap();
    assert_eq!(setup.sim.stats().token_grants, 1, "90 s before expiry the token is still used");

    setup.clock.advance(Duration::from_secs(40));
    let listing = client.list(&ListQuery::<Coworker>::new()).await.unwrap();
    assert_eq!(setup.sim.stats().token_grants, 2, "50 s before expiry it is renewed first");
    assert_eq!(listing.records.len(), 1);
}

#[tokio::test]
async fn a_refused_token_is_replaced_once_and_the_request_retried() {
    let setup = Setup::new(|_| {}).await;
    let client = setup.client();
    client.list(&ListQuery::<Coworker>::new()).await.unwrap();
    setup.sim.revoke_tokens();
    client.list(&ListQuery::<Coworker>::new()).await.unwrap();
    assert_eq!(setup.sim.stats().token_grants, 2);
}

#[tokio::test]
async fn basic_auth_sends_no_token_request() {
    let setup = Setup::new(|_| {}).await;
    setup.coworker("Ada");
    let client = setup.client_with(|options| options.auth = AuthMode::Basic);
    let listing = client.list(&ListQuery::<Coworker>::new()).await.unwrap();
    assert_eq!(listing.records[0].full_name, "Ada");
    assert_eq!(setup.sim.stats().token_grants, 0);
}

#[tokio::test]
async fn wrong_credentials_say_what_to_check_and_never_show_the_password() {
    let setup = Setup::new(|_| {}).await;
    for auth in [AuthMode::BearerToken, AuthMode::Basic] {
        let client = setup.client_with(|options| {
            options.auth = auth;
            options.credentials.password = Secret::new("wrong-horse-battery");
        });
        let error = client.list(&ListQuery::<Coworker>::new()).await.unwrap_err();
        assert!(matches!(error, NexudusError::Unauthorized { .. }), "{error:?}");
        assert!(!error.is_retryable());
        let message = error.to_string();
        assert!(message.contains("NEXUDUS_USERNAME / NEXUDUS_PASSWORD"), "{message}");
        assert!(!format!("{message} {error:?}").contains("wrong-horse-battery"), "{message}");
        let expected_path = if auth == AuthMode::Basic { "GET /api/spaces/coworkers" } else { "POST /api/token" };
        assert!(message.contains(expected_path), "{message}");
    }
}

#[tokio::test]
async fn listings_follow_every_page() {
    let setup = Setup::new(|_| {}).await;
    let ids: Vec<u64> =
        ["Ada", "Bo", "Cy", "Di", "Ed", "Flo", "Gus"].into_iter().map(|name| setup.coworker(name)).collect();
    let listing = setup.client().list(&ListQuery::<Coworker>::new().page_size(3)).await.unwrap();
    assert_eq!(listing.pages, 3);
    assert_eq!(listing.records.iter().map(|coworker| coworker.id).collect::<Vec<_>>(), ids);
    assert!(listing.malformed.is_empty());

    let second = setup.client().list_page(&ListQuery::<Coworker>::new().page_size(3), 2).await.unwrap();
    assert_eq!((second.records.len(), second.has_next_page, second.total_items), (3, true, Some(7)));
}

#[tokio::test]
async fn an_updated_on_watermark_returns_only_later_changes() {
    let setup = Setup::new(|_| {}).await;
    let ada = setup.coworker("Ada");
    setup.coworker("Bo");
    setup.clock.advance(Duration::from_secs(600));
    let watermark = setup.clock.now();
    setup.sim.update(SimEntity::Coworker, ada, json!({"Active": false})).unwrap();
    let cy = setup.coworker("Cy");

    let changed = setup.client().list(&ListQuery::<Coworker>::new().updated_since(watermark)).await.unwrap();
    let mut ids: Vec<u64> = changed.records.iter().map(|coworker| coworker.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [ada, cy]);
    assert!(!changed.records.iter().find(|coworker| coworker.id == ada).unwrap().active);
}

#[tokio::test]
async fn a_409_is_waited_out_and_the_request_succeeds() {
    let setup = Setup::new(|options| {
        options.limits = Some(Limits { min_interval: Duration::ZERO, per_minute: 3, per_hour: 1_000 });
    })
    .await;
    setup.coworker("Ada");
    let driver = setup.drive_clock();
    let client = setup.client();
    for _ in 0..6 {
        let listing = tokio::time::timeout(Duration::from_secs(30), client.list(&ListQuery::<Coworker>::new()))
            .await
            .expect("the client gets through")
            .expect("throttling is no error");
        assert_eq!(listing.records.len(), 1);
    }
    driver.abort();
    let stats = setup.sim.stats();
    assert!(stats.throttled >= 1, "the simulator throttled: {stats:?}");
    // A client that ignored Retry-After would hammer the server with 409s; one that waits sees
    // about one per window it overruns.
    assert!(stats.throttled <= 6, "the client waited between attempts: {stats:?}");
}

#[tokio::test]
async fn persistent_throttling_ends_in_a_typed_retryable_error() {
    let setup = Setup::new(|_| {}).await;
    let client = setup.client_with(|options| {
        options.auth = AuthMode::Basic;
        options.max_throttle_retries = 2;
    });
    setup.sim.throttle_next(100);
    let driver = setup.drive_clock();
    let error = tokio::time::timeout(Duration::from_secs(30), client.list(&ListQuery::<Coworker>::new()))
        .await
        .unwrap()
        .unwrap_err();
    driver.abort();
    assert!(matches!(error, NexudusError::Throttled { attempts: 3, .. }), "{error:?}");
    assert!(error.is_retryable());
    assert_eq!(setup.sim.stats().throttled, 3);
}

#[tokio::test]
async fn a_malformed_record_is_reported_and_the_others_still_parse() {
    let setup = Setup::new(|_| {}).await;
    let ada = setup.coworker("Ada");
    let booking = |from: &str| json!({"ResourceId": 1, "CoworkerId": ada, "FromTime": from, "ToTime": "2025-07-01T10:00:00Z", "Tentative": false});
    let good = setup.sim.create(SimEntity::Booking, booking("2025-07-01T09:00:00Z")).unwrap();
    let bad = setup.sim.create(SimEntity::Booking, booking("half past nine")).unwrap();
    let also_good = setup.sim.create(SimEntity::Booking, booking("2025-07-01T09:30:00Z")).unwrap();

    let listing = setup.client().list(&ListQuery::<Booking>::new()).await.unwrap();
    assert_eq!(listing.records.iter().map(|booking| booking.id).collect::<Vec<_>>(), [good, also_good]);
    let [malformed] = listing.malformed.as_slice() else { panic!("one malformed record: {:?}", listing.malformed) };
    assert_eq!((malformed.entity, malformed.id, malformed.field.as_str()), ("Booking", Some(bad), "FromTime"));

    let error = setup.client().get::<Booking>(bad).await.unwrap_err();
    assert!(error.to_string().contains(&format!("Booking {bad} is malformed: FromTime")), "{error}");
}

#[tokio::test]
async fn a_contract_read_by_id_has_its_desks_and_a_deleted_one_answers_500_and_is_not_listed_by_id() {
    let setup = Setup::new(|_| {}).await;
    let ada = setup.coworker("Ada");
    let desk = setup.sim.create(SimEntity::FloorPlanDesk, json!({"Name": "D1", "ItemType": 2})).unwrap();
    let office = setup.sim.create(SimEntity::FloorPlanDesk, json!({"Name": "O1", "ItemType": 1})).unwrap();
    let contract = setup
        .sim
        .create(
            SimEntity::CoworkerContract,
            json!({"CoworkerId": ada, "StartDate": "2025-07-01T00:00:00Z", "Active": true,
                   "Desks": [desk, office], "FloorPlanDeskIds": format!("{desk}")}),
        )
        .unwrap();
    let client = setup.client();
    let listed = client.list(&ListQuery::<CoworkerContract>::new()).await.unwrap();
    assert_eq!(listed.records[0].desks, None, "lists leave collections out");
    assert_eq!(listed.records[0].desk_ids(), &[desk]);
    let full = client.get::<CoworkerContract>(contract).await.unwrap();
    assert_eq!(full.desk_ids(), &[desk, office]);

    setup.sim.delete(SimEntity::CoworkerContract, contract).unwrap();
    let error = client.get::<CoworkerContract>(contract).await.unwrap_err();
    assert!(matches!(error, NexudusError::Server { status: 500, .. }), "Nexudus's answer for a deleted id: {error:?}");
    assert!(error.may_mean_deleted());
    assert!(client.list(&ListQuery::<CoworkerContract>::new().ids(&[contract])).await.unwrap().records.is_empty());
    assert!(client.list(&ListQuery::<CoworkerContract>::new()).await.unwrap().records.is_empty());
}

#[tokio::test]
async fn webhooks_are_listed_with_their_active_flag() {
    let setup = Setup::new(|_| {}).await;
    let url = url::Url::parse("http://127.0.0.1:9/hooks").unwrap();
    let hook = setup.sim.register_webhook(WebhookAction::AccessControlUpdate, &url, Secret::new("s")).unwrap();
    let hooks = setup.client().list(&ListQuery::<Webhook>::new()).await.unwrap();
    let [listed] = hooks.records.as_slice() else { panic!("one hook") };
    assert_eq!((listed.id, listed.action, listed.active), (hook, WebhookAction::AccessControlUpdate, true));
    assert_eq!(listed.url.as_deref(), Some("http://127.0.0.1:9/hooks"));
}

#[tokio::test]
async fn a_booking_carries_utc_times_and_local_twins_in_its_location_zone() {
    let setup = Setup::new(|_| {}).await;
    let soho = setup.sim.create_location("Soho", "GMT Standard Time").unwrap();
    let room = setup.sim.create(SimEntity::Resource, json!({"BusinessId": soho, "Name": "Room 1"})).unwrap();
    let booking = setup
        .sim
        .create(
            SimEntity::Booking,
            json!({"ResourceId": room, "CoworkerId": 5, "FromTime": "2025-07-01T08:00:00Z",
                   "ToTime": "2025-07-01T09:00:00Z", "Tentative": true}),
        )
        .unwrap();
    let client = setup.client();
    let booking = client.get::<Booking>(booking).await.unwrap();
    assert!(booking.tentative);
    let local = booking.from_time_local.expect("a local twin");
    assert_eq!(local.wall_clock().hour(), 9, "London is on BST (UTC+1) in July");

    let zones = client.list(&ListQuery::<SimpleTimeZone>::new()).await.unwrap().records;
    let business = client.get::<Business>(soho).await.unwrap();
    let windows = business.windows_time_zone(&zones).unwrap();
    assert_eq!(windows, "GMT Standard Time");
    let zone = jiff::tz::TimeZone::get("Europe/London").unwrap();
    assert!(local_agrees_with_utc(&booking.from_time, &local, &zone));
}

/// A `Retry-After` of years (a proxy's) holds the client five minutes, not forever.
#[tokio::test]
async fn an_endless_retry_after_holds_the_client_five_minutes_at_most() {
    let setup = Setup::new(|_| {}).await;
    setup.coworker("Ada");
    let client = setup.client_with(|options| options.auth = AuthMode::Basic);
    setup.sim.throttle_next_with_retry_after(1, 99_999_999);
    let query = ListQuery::<Coworker>::new();
    let mut listing = std::pin::pin!(client.list(&query));
    let mut advanced = Duration::ZERO;
    let records = loop {
        tokio::select! {
            listed = &mut listing => break listed.unwrap().records,
            () = tokio::time::sleep(Duration::from_millis(5)) => {
                assert!(advanced < Duration::from_secs(3_600), "still held after an hour of virtual time");
                setup.clock.advance(Duration::from_secs(10));
                advanced += Duration::from_secs(10);
            }
        }
    };
    assert_eq!(records.len(), 1);
    assert_eq!(setup.sim.stats().throttled, 1);
    let held =
        Duration::from_millis(u64::try_from(setup.clock.now().as_unix_millis() - START.as_unix_millis()).unwrap());
    assert!(
        held >= doorsync_nexudus::MAX_RETRY_AFTER
            && held <= doorsync_nexudus::MAX_RETRY_AFTER + Duration::from_secs(10),
        "{held:?}"
    );
}

/// A server that answers every request with a redirect to `target`, and counts the requests.
async fn redirecting_to(target: &str) -> (url::Url, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let answer = format!("HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let counted = Arc::clone(&requests);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut request = [0_u8; 4_096];
            let _ = stream.read(&mut request).await;
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    (url::Url::parse(&format!("http://{address}")).unwrap(), requests)
}

#[tokio::test]
async fn a_redirect_is_not_followed_so_the_credentials_go_nowhere_else() {
    let (elsewhere, requests_elsewhere) = redirecting_to("http://127.0.0.1:9/").await;
    let (nexudus, _) = redirecting_to(&format!("{elsewhere}api/spaces/bookings/1")).await;
    let credentials = Credentials { username: "admin@example.com".into(), password: Secret::new("password") };
    let mut options = NexudusOptions::new(nexudus, credentials);
    options.limits = UNLIMITED;
    options.auth = AuthMode::Basic;
    let client = NexudusClient::new(options, Arc::new(ManualClock::new(START))).unwrap();
    let error = client.get::<Booking>(1).await.unwrap_err();
    assert!(matches!(error, NexudusError::UnexpectedStatus { status: 302, .. }), "{error}");
    assert_eq!(requests_elsewhere.load(std::sync::atomic::Ordering::SeqCst), 0, "the redirect was followed");
}

#[test]
fn plain_http_is_refused_except_to_loopback() {
    let client = |url: &str| {
        let credentials = Credentials { username: "admin@example.com".into(), password: Secret::new("password") };
        NexudusClient::new(
            NexudusOptions::new(url::Url::parse(url).unwrap(), credentials),
            Arc::new(ManualClock::new(START)),
        )
    };
    assert!(client("https://spaces.nexudus.com").is_ok());
    assert!(client("http://127.0.0.1:8080").is_ok(), "a simulator on loopback");
    let error = client("http://spaces.nexudus.com").unwrap_err().to_string();
    assert!(error.contains("https") && error.contains("nexudus.base_url"), "{error}");
}
