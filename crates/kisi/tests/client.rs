//! The client against the Kisi simulator over real loopback HTTP: every operation, paging, and
//! how each failure is reported; every request body checked against Kisi's OpenAPI description.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;
use std::time::Duration;

use doorsync_clock::{Clock, ManualClock};
use doorsync_kisi::openapi::KisiOpenApi;
use doorsync_kisi::{ApiKey, KisiClient, KisiError, KisiOptions, NewUser, RetryAfter, UserKind, Validity};
use doorsync_kisi_sim::{
    Fault, FaultRule, GroupAccess, KeyAccess, KisiSimulator, PatchValidity, SeedUser, SimHandle, SimOptions, UnknownIds,
};
use doorsync_proto::{KisiAssignmentId, KisiGroupId, KisiUserId, Timestamp};

const KEY: &str = "key-of-doorsync";
const START: Timestamp = Timestamp::from_unix_millis(1_735_689_600_000);

struct Fixture {
    sim: KisiSimulator,
    kisi: SimHandle,
    clock: ManualClock,
    integration: KisiUserId,
    client: KisiClient,
}

async fn start(requests_per_second: u32) -> Fixture {
    start_with(requests_per_second, |_| {}).await
}

async fn start_with(requests_per_second: u32, configure: impl FnOnce(&mut SimOptions)) -> Fixture {
    let clock = ManualClock::new(START);
    let mut options = SimOptions::new(Arc::new(clock.clone()));
    options.requests_per_second = requests_per_second;
    options.record_exchanges = true;
    configure(&mut options);
    let sim = KisiSimulator::start(options).await.unwrap();
    let kisi = sim.handle();
    let integration = kisi.add_api_account("doorsync@example.com", "doorsync", KEY).unwrap();
    let client = client_for(&sim, KEY, Duration::from_secs(5));
    Fixture { sim, kisi, clock, integration, client }
}

fn client_for(sim: &KisiSimulator, key: &str, timeout: Duration) -> KisiClient {
    let mut options = KisiOptions::new(sim.base_url(), ApiKey::new(key), "doorsync-tests");
    options.integration_contact = Some("ops@example.com".to_owned());
    options.request_timeout = timeout;
    KisiClient::new(options).unwrap()
}

fn at(seconds_after_start: i64) -> Option<Timestamp> {
    Some(Timestamp::from_unix_millis(START.as_unix_millis() + seconds_after_start * 1_000))
}

#[tokio::test]
async fn every_operation_works_and_every_body_matches_kisis_openapi_description() {
    // A Kisi that applies a PATCHed window, so reading it back shows the change; the other
    // forms have tests of their own.
    let fixture = start_with(u32::MAX, |options| options.patch_validity = PatchValidity::Apply).await;
    let (client, kisi) = (&fixture.client, &fixture.kisi);
    let room = kisi.add_group("Meeting room 1");

    assert_eq!(client.current_user().await.unwrap().id, fixture.integration);

    let mut ann = NewUser::managed("ann@example.com", "Ann");
    ann.notes = Some("Nexudus member 17".to_owned());
    ann.metadata.insert("managed_by".to_owned(), "doorsync".into());
    let created = client.create_user(&ann).await.unwrap();
    let held = kisi.user_by_email("ann@example.com").unwrap();
    assert!(!held.send_emails && held.confirmed, "managed: no emails, confirmed");
    let mut bo = NewUser::managed("bo@example.com", "Bo");
    bo.kind = UserKind::Regular;
    client.create_user(&bo).await.unwrap();
    let held = kisi.user_by_email("bo@example.com").unwrap();
    assert!(held.send_emails && !held.confirmed, "regular: emails, no confirmation");

    assert_eq!(client.find_user_by_email(" ANN@Example.com ").await.unwrap().map(|user| user.id), Some(created.id));
    assert_eq!(client.find_user_by_email("nobody@example.com").await.unwrap(), None);
    assert_eq!(client.user(created.id).await.unwrap().notes.as_deref(), Some("Nexudus member 17"));

    client.set_user_access_enabled(created.id, false).await.unwrap();
    assert!(!client.user(created.id).await.unwrap().access_enabled);
    client.set_user_access_enabled(created.id, true).await.unwrap();

    assert_eq!(client.groups().await.unwrap().iter().map(|group| group.id).collect::<Vec<_>>(), vec![room]);
    assert_eq!(client.group(room).await.unwrap().name, "Meeting room 1");
    assert_eq!(client.group_by_name("Meeting room 1").await.unwrap().map(|group| group.id), Some(room));

    // Sub-second bounds are widened to whole seconds on the wire.
    let asked = Validity::new(at(60).map(|from| Timestamp::from_unix_millis(from.as_unix_millis() + 400)), at(3_600));
    let assignment = client.create_group_assignment(created.id, room, asked).await.unwrap();
    assert_eq!(assignment.validity(), Validity::new(at(60), at(3_600)));
    assert_eq!(assignment.validity(), asked.in_whole_seconds());
    assert!(assignment.created_by(fixture.integration));
    assert_eq!((assignment.user(), assignment.group()), (Some(created.id), Some(room)));
    assert_eq!(
        kisi.group_access(created.id, room, at(59).unwrap()),
        GroupAccess::NotYetValid { from: at(60).unwrap() }
    );
    assert!(kisi.group_access(created.id, room, at(60).unwrap()).is_granted());

    assert_eq!(client.role_assignment(assignment.id).await.unwrap(), assignment);
    assert_eq!(client.user_group_assignments(created.id).await.unwrap(), vec![assignment.clone()]);
    assert_eq!(client.group_assignments(room).await.unwrap(), vec![assignment.clone()]);
    assert_eq!(client.user_assignment_in_group(created.id, room).await.unwrap(), Some(assignment.clone()));

    client.update_assignment_validity(assignment.id, Validity::new(None, at(7_200))).await.unwrap();
    assert_eq!(client.role_assignment(assignment.id).await.unwrap().validity(), Validity::new(None, at(7_200)));
    assert!(kisi.group_access(created.id, room, at(7_199).unwrap()).is_granted());
    assert!(!kisi.group_access(created.id, room, at(7_200).unwrap()).is_granted());

    client.delete_assignment(assignment.id).await.unwrap();
    assert_eq!(client.user_assignment_in_group(created.id, room).await.unwrap(), None);
    client.delete_user(created.id).await.unwrap();
    assert_eq!(client.find_user_by_email("ann@example.com").await.unwrap(), None);

    let api = KisiOpenApi::load().unwrap();
    let exchanges = kisi.exchanges();
    let mut bodies = 0;
    for exchange in &exchanges {
        api.check_call(&exchange.recorded_call()).unwrap_or_else(|error| panic!("{error}"));
        bodies += usize::from(exchange.request_body.is_some());
    }
    let headers = &exchanges[0].request_headers;
    for (name, value) in [
        ("authorization", "KISI-LOGIN <redacted>"),
        ("accept", "application/json"),
        ("content-type", "application/json"),
        ("x-kisi-integration-identifier", "doorsync-tests"),
        ("x-kisi-integration-contact", "ops@example.com"),
    ] {
        assert_eq!(headers.get(name).map(String::as_str), Some(value), "{name}");
    }
    assert_eq!(bodies, 6, "2 user creates, 2 user patches, 1 assignment create, 1 assignment patch");
    assert!(
        exchanges.iter().filter(|exchange| exchange.request_body.is_none()).all(|exchange| exchange.method != "POST")
    );
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn lists_are_read_to_the_last_page_and_emails_matched_exactly() {
    let fixture = start(u32::MAX).await;
    let (client, kisi) = (&fixture.client, &fixture.kisi);
    for index in 0..230 {
        kisi.add_user(&format!("member{index:03}@example.com"), &format!("Member {index}")).unwrap();
    }
    // Free-text matches that are not the email asked for, the exact one on the third page.
    kisi.add_user("joann@example.com", "Joann").unwrap();
    kisi.add_user("ann@example.com.au", "Ann in Australia").unwrap();
    let ann = kisi.add_user("Ann@Example.com", "Ann").unwrap();
    kisi.reset_calls();
    let found = client.find_user_by_email("ann@example.com").await.unwrap().unwrap();
    assert_eq!(found.id, ann);
    assert_eq!(kisi.calls().endpoint("GET", "/users"), 1, "one page: the search narrows to three users");

    kisi.reset_calls();
    let found = client.find_user_by_email("member229@example.com").await.unwrap().unwrap();
    assert_eq!(found.email, "member229@example.com");
    kisi.reset_calls();
    assert_eq!(client.find_user_by_email("example.com").await.unwrap(), None);
    assert_eq!(kisi.calls().endpoint("GET", "/users"), 3, "234 matches, 100 a page");

    for index in 0..520 {
        kisi.add_group(&format!("Desk {index}"));
    }
    kisi.reset_calls();
    assert_eq!(client.groups().await.unwrap().len(), 520);
    assert_eq!(kisi.calls().endpoint("GET", "/groups"), 3, "250 a page");

    let office = kisi.add_group("Office");
    for index in 0..30 {
        kisi.add_user(&format!("guest{index}@example.org"), "Guest").unwrap();
    }
    let users: Vec<KisiUserId> = kisi.users().into_iter().map(|user| user.id).take(260).collect();
    for user in &users {
        kisi.add_assignment_as(Some(fixture.integration), *user, office, None, None).unwrap();
    }
    kisi.reset_calls();
    let members = client.group_assignments(office).await.unwrap();
    assert_eq!(users.len(), 260);
    assert_eq!(members.iter().map(|assignment| assignment.user().unwrap()).collect::<Vec<_>>(), users);
    assert_eq!(kisi.calls().endpoint("GET", "/role_assignments"), 2);
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn group_names_resolve_exactly_and_a_shared_name_is_an_error() {
    let fixture = start(u32::MAX).await;
    let (client, kisi) = (&fixture.client, &fixture.kisi);
    let room = kisi.add_group("Room 1");
    kisi.add_group("Room 10");
    kisi.add_group("room 1");
    let studios = [kisi.add_group("Studio"), kisi.add_group("Studio")];
    assert_eq!(client.group_by_name("Room 1").await.unwrap().map(|group| group.id), Some(room));
    assert_eq!(client.group_by_name("Room").await.unwrap(), None);
    let error = client.group_by_name("Studio").await.unwrap_err();
    assert!(
        matches!(&error, KisiError::AmbiguousGroupName { group_ids, .. } if group_ids == &studios)
            && error.is_permanent(),
        "{error}"
    );
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn refused_credentials_say_to_check_the_key_without_showing_it() {
    let fixture = start(u32::MAX).await;
    let wrong = client_for(&fixture.sim, "wrong-secret", Duration::from_secs(5));
    let error = wrong.current_user().await.unwrap_err();
    assert!(matches!(error, KisiError::Unauthorized { .. }) && error.is_credentials_problem(), "{error}");
    assert_eq!(
        error.to_string(),
        "kisi: 401 from GET /user: the API key was refused; check the API key (KISI_API_KEY)"
    );

    let observer = fixture.kisi.add_api_user("observer@example.com", "Observer").unwrap();
    fixture.kisi.add_api_key(observer, "observer-secret", KeyAccess::ReadOnly).unwrap();
    let read_only = client_for(&fixture.sim, "observer-secret", Duration::from_secs(5));
    let error = read_only.create_user(&NewUser::managed("eve@example.com", "Eve")).await.unwrap_err();
    assert!(matches!(error, KisiError::Forbidden { .. }) && error.is_credentials_problem(), "{error}");
    let message = error.to_string();
    assert!(
        message.starts_with("kisi: 403 from POST /users: Access denied.") && !message.contains("secret"),
        "{message}"
    );
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn kisis_refusals_are_permanent_and_name_the_call() {
    let fixture = start_with(u32::MAX, |options| options.unknown_ids = UnknownIds::NotFound).await;
    let (client, kisi) = (&fixture.client, &fixture.kisi);
    let group = kisi.add_group("Phone booth");
    let user = kisi.add_user("fay@example.com", "Fay").unwrap();

    let missing = client.user(KisiUserId(1)).await.unwrap_err();
    assert!(matches!(missing, KisiError::NotFound { .. }) && missing.is_permanent(), "{missing}");
    assert!(missing.to_string().starts_with("kisi: 404 from GET /users/1: "), "{missing}");
    let missing = client.delete_assignment(KisiAssignmentId(2)).await.unwrap_err();
    assert!(matches!(missing, KisiError::NotFound { .. }), "{missing}");
    let missing = client.create_group_assignment(KisiUserId(3), group, Validity::UNBOUNDED).await.unwrap_err();
    assert!(matches!(missing, KisiError::NotFound { .. }), "{missing}");

    client.create_group_assignment(user, group, Validity::UNBOUNDED).await.unwrap();
    let second = client.create_group_assignment(user, group, Validity::new(at(0), at(60))).await.unwrap_err();
    assert_eq!(second.to_string(), "kisi: 422 from POST /role_assignments: user_id has already been taken");
    assert!(second.is_permanent() && !second.is_retryable() && !second.outcome_unknown());
    let KisiError::Unprocessable { details, .. } = &second else { panic!("{second:?}") };
    assert_eq!(
        (details.field_errors[0].field.as_str(), details.field_errors[0].message.as_str()),
        ("user_id", "has already been taken")
    );

    let taken = client.create_user(&NewUser::managed("FAY@example.com", "Fay again")).await.unwrap_err();
    assert_eq!(taken.to_string(), "kisi: 422 from POST /users: email has already been taken");
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retryable_with_kisis_retry_after() {
    let fixture = start(5).await;
    let client = &fixture.client;
    for _ in 0..5 {
        client.groups().await.unwrap();
    }
    let limited = client.groups().await.unwrap_err();
    assert!(matches!(limited, KisiError::RateLimited { .. }) && limited.is_retryable(), "{limited}");
    assert_eq!(limited.retry_after(), Some(RetryAfter::Delay(Duration::from_secs(1))));
    assert_eq!(limited.to_string(), "kisi: 429 from GET /groups: rate limited, retry after 1 s");
    fixture.clock.advance(Duration::from_secs(1));
    client.groups().await.unwrap();

    fixture.clock.advance(Duration::from_secs(1));
    let date = "Wed, 01 Jan 2025 00:00:30 GMT";
    fixture.kisi.inject(FaultRule::new(Fault::Status { status: 429, retry_after: Some(date.into()) }).times(1));
    let limited = client.groups().await.unwrap_err();
    assert_eq!(limited.retry_after(), Some(RetryAfter::At(at(30).unwrap())));
    assert_eq!(limited.retry_after().unwrap().delay_from(at(20).unwrap()), Duration::from_secs(10));

    let unavailable = Fault::Status { status: 503, retry_after: Some("3".into()) };
    fixture.kisi.inject(FaultRule::new(unavailable).method("POST").times(1));
    fixture.kisi.inject(FaultRule::new(Fault::Status { status: 500, retry_after: None }).times(1));
    let user = fixture.kisi.add_user("gus@example.com", "Gus").unwrap();
    let group = fixture.kisi.add_group("Lab");
    let error = client.create_group_assignment(user, group, Validity::UNBOUNDED).await.unwrap_err();
    assert!(matches!(error, KisiError::Server { status: 503, .. }) && error.is_retryable() && error.outcome_unknown());
    assert_eq!(error.retry_after(), Some(RetryAfter::Delay(Duration::from_secs(3))));
    let error = client.current_user().await.unwrap_err();
    assert!(matches!(error, KisiError::Server { status: 500, retry_after: None, .. }), "{error}");
    assert_eq!(error.to_string(), "kisi: 500 from GET /user: server error");
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn a_request_kisi_never_answers_times_out() {
    let fixture = start(u32::MAX).await;
    let user = fixture.kisi.add_user("hal@example.com", "Hal").unwrap();
    fixture.kisi.inject(FaultRule::new(Fault::Hang { after_commit: false }).path("/users/{id}").times(1));
    let impatient = client_for(&fixture.sim, KEY, Duration::from_secs(1));
    let error = impatient.user(user).await.unwrap_err();
    assert!(matches!(error, KisiError::Timeout { .. }) && error.is_retryable() && error.outcome_unknown(), "{error}");
    assert_eq!(error.to_string(), format!("kisi: GET /users/{user} timed out; the request may have been carried out"));
    assert_eq!(impatient.user(user).await.unwrap().id, user, "the next request is answered");
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_found_when_looked_for() {
    let fixture = start(u32::MAX).await;
    let (client, kisi) = (&fixture.client, &fixture.kisi);
    let user = kisi.add_user("ida@example.com", "Ida").unwrap();
    let group = kisi.add_group("Workshop");
    kisi.inject(FaultRule::new(Fault::DropResponse).method("POST").path("/role_assignments").times(1));
    let error = client.create_group_assignment(user, group, Validity::new(None, at(600))).await.unwrap_err();
    assert!(
        matches!(error, KisiError::Transport { request_sent: true, .. })
            && error.is_retryable()
            && error.outcome_unknown(),
        "{error}"
    );
    assert!(error.to_string().starts_with("kisi: POST /role_assignments failed in transit: "), "{error}");
    assert!(kisi.group_access(user, group, START).is_granted(), "Kisi made the change");
    let found = client.user_assignment_in_group(user, group).await.unwrap().unwrap();
    assert_eq!(found.validity(), Validity::new(None, at(600)));
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_kisi_certainly_did_nothing() {
    let fixture = start(u32::MAX).await;
    let base_url = fixture.sim.base_url();
    fixture.sim.shutdown().await;
    let options = KisiOptions::new(base_url, ApiKey::new(KEY), "doorsync-tests");
    let error = KisiClient::new(options).unwrap().groups().await.unwrap_err();
    assert!(matches!(error, KisiError::Transport { request_sent: false, .. }) && error.is_retryable(), "{error}");
    assert!(!error.outcome_unknown());
}

/// Every recorded request and answer against Kisi's OpenAPI description.
fn check_every_exchange(kisi: &SimHandle) {
    let api = KisiOpenApi::load().unwrap();
    for exchange in kisi.exchanges() {
        api.check_call(&exchange.recorded_call()).unwrap_or_else(|error| panic!("{error}"));
    }
}

#[tokio::test]
async fn a_mapped_group_is_read_by_id_and_one_the_key_cannot_see_is_forbidden() {
    let fixture = start(u32::MAX).await;
    let (client, kisi) = (&fixture.client, &fixture.kisi);
    let (visible, hidden) = (kisi.add_group("Co-working floor"), kisi.add_group("Finance office"));
    let user = kisi.add_user("quinn@example.com", "Quinn").unwrap();
    kisi.hide_group(hidden);

    let group = client.group(visible).await.unwrap();
    assert_eq!((group.id, group.name.as_str()), (visible, "Co-working floor"));
    for group in [hidden, KisiGroupId(10)] {
        let error = client.group(group).await.unwrap_err();
        assert!(error.is_forbidden() && error.is_credentials_problem(), "{error}");
        assert!(error.to_string().starts_with(&format!("kisi: 403 from GET /groups/{group}: Access denied.")));
        let error = client.create_group_assignment(user, group, Validity::UNBOUNDED).await.unwrap_err();
        assert!(error.is_forbidden(), "{error}");
        let error = client.group_assignments(group).await.unwrap_err();
        assert!(error.is_forbidden(), "{error}");
    }
    assert_eq!(client.groups().await.unwrap().iter().map(|group| group.id).collect::<Vec<_>>(), vec![visible]);
    client.create_group_assignment(user, visible, Validity::UNBOUNDED).await.unwrap();

    kisi.set_unknown_ids(UnknownIds::NotFound);
    let error = client.group(KisiGroupId(10)).await.unwrap_err();
    assert!(matches!(error, KisiError::NotFound { .. }) && !error.is_forbidden(), "{error}");
    assert!(client.group(hidden).await.unwrap_err().is_forbidden(), "hidden stays 403");
    let error = client.create_group_assignment(user, KisiGroupId(10), Validity::UNBOUNDED).await.unwrap_err();
    assert!(error.is_forbidden(), "Kisi support's own example: a mistyped group id is 403: {error}");
    assert_eq!(client.group_assignments(KisiGroupId(10)).await.unwrap(), Vec::new());
    check_every_exchange(kisi);
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn ids_that_do_not_exist_are_forbidden_by_default() {
    let fixture = start(u32::MAX).await;
    let client = &fixture.client;
    let error = client.user(KisiUserId(1)).await.unwrap_err();
    assert!(error.is_forbidden(), "{error}");
    assert!(client.set_user_access_enabled(KisiUserId(1), false).await.unwrap_err().is_forbidden());
    assert!(client.delete_user(KisiUserId(1)).await.unwrap_err().is_forbidden());
    assert!(client.role_assignment(KisiAssignmentId(2)).await.unwrap_err().is_forbidden());
    assert!(client.delete_assignment(KisiAssignmentId(2)).await.unwrap_err().is_forbidden());
    let window = Validity::new(at(0), at(60));
    assert!(client.update_assignment_validity(KisiAssignmentId(2), window).await.unwrap_err().is_forbidden());
    check_every_exchange(&fixture.kisi);
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn a_validity_patch_kisi_ignores_shows_only_when_read_back() {
    let fixture = start(u32::MAX).await;
    let (client, kisi) = (&fixture.client, &fixture.kisi);
    let user = kisi.add_user("rae@example.com", "Rae").unwrap();
    let group = kisi.add_group("Studio");
    let assignment = client.create_group_assignment(user, group, Validity::new(at(0), at(3_600))).await.unwrap();

    client.update_assignment_validity(assignment.id, Validity::new(at(0), at(7_200))).await.unwrap();
    assert_eq!(client.role_assignment(assignment.id).await.unwrap().validity(), Validity::new(at(0), at(3_600)));
    assert_eq!(
        client.user_assignment_in_group(user, group).await.unwrap().map(|held| held.validity()),
        Some(Validity::new(at(0), at(3_600)))
    );
    assert!(!kisi.group_access(user, group, at(3_600).unwrap()).is_granted());
    check_every_exchange(kisi);
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn a_validity_patch_kisi_refuses_is_unprocessable_and_names_the_field() {
    let fixture = start_with(u32::MAX, |options| options.patch_validity = PatchValidity::Reject).await;
    let (client, kisi) = (&fixture.client, &fixture.kisi);
    let user = kisi.add_user("sol@example.com", "Sol").unwrap();
    let group = kisi.add_group("Lounge");
    let assignment = client.create_group_assignment(user, group, Validity::new(None, at(3_600))).await.unwrap();

    let error = client.update_assignment_validity(assignment.id, Validity::new(None, at(7_200))).await.unwrap_err();
    assert!(error.is_permanent() && !error.outcome_unknown(), "{error}");
    let KisiError::Unprocessable { details, .. } = &error else { panic!("{error:?}") };
    assert!(details.field_errors.iter().any(|field| field.field == "valid_until"), "{details:?}");
    assert_eq!(client.role_assignment(assignment.id).await.unwrap().validity(), Validity::new(None, at(3_600)));
    check_every_exchange(kisi);
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn a_429_without_retry_after_leaves_the_wait_to_the_caller_and_a_huge_one_is_clamped() {
    let fixture = start_with(1, |options| options.retry_after_on_429 = false).await;
    let client = &fixture.client;
    client.groups().await.unwrap();
    let limited = client.groups().await.unwrap_err();
    assert!(matches!(limited, KisiError::RateLimited { retry_after: None, .. }) && limited.is_retryable());
    assert_eq!(limited.to_string(), "kisi: 429 from GET /groups: rate limited");

    fixture.clock.advance(Duration::from_secs(1));
    let absurd = Fault::Status { status: 429, retry_after: Some("99999999".into()) };
    fixture.kisi.inject(FaultRule::new(absurd).times(1));
    let limited = client.groups().await.unwrap_err();
    let retry_after = limited.retry_after().unwrap();
    assert_eq!(retry_after, RetryAfter::Delay(Duration::from_secs(99_999_999)));
    let five_minutes = Duration::from_secs(300);
    assert_eq!(retry_after.clamped_delay_from(fixture.clock.now(), five_minutes), five_minutes);
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn assignments_another_integration_made_are_told_apart_from_ours() {
    let fixture = start(u32::MAX).await;
    let (client, kisi) = (&fixture.client, &fixture.kisi);
    let nexudus = kisi.add_api_account("nexudus@example.com", "Nexudus integration", "nexudus-key").unwrap();
    let member = kisi.seed_user(SeedUser::new("tia@example.com", "Tia").created_by(nexudus)).unwrap();
    let group = kisi.add_group("Day pass");
    kisi.add_assignment_as(Some(nexudus), member, group, None, None).unwrap();

    let found = client.find_user_by_email("tia@example.com").await.unwrap().unwrap();
    assert_eq!((found.id, found.metadata), (member, Some(serde_json::Map::new())));
    let held = client.user_assignment_in_group(member, group).await.unwrap().unwrap();
    assert!(held.created_by(nexudus) && !held.created_by(fixture.integration));
    assert_eq!((held.role_id.as_str(), held.validity()), ("group_basic", Validity::UNBOUNDED));

    // A marketplace app's installation ids are another series: one can equal our user's id.
    let lounge = kisi.add_group("Lounge");
    kisi.add_assignment_by_installation(fixture.integration.0, member, lounge, None, None).unwrap();
    let held = client.user_assignment_in_group(member, lounge).await.unwrap().unwrap();
    assert_eq!(held.created_by_type.as_deref(), Some("MarketplaceInstallation"));
    assert!(!held.created_by(fixture.integration), "not ours, whatever its id");
    check_every_exchange(kisi);
    fixture.sim.shutdown().await;
}
