//! The simulator over real loopback HTTP, driven by a plain HTTP client, its answers checked
//! against Kisi's OpenAPI description.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use doorsync_clock::ManualClock;
use doorsync_kisi::openapi::{KisiOpenApi, ResponseCheck};
use doorsync_kisi_sim::{
    Fault, FaultRule, KeyAccess, KisiSimulator, PatchValidity, RandomFaults, SeedUser, SimHandle, SimOptions,
    UnknownIds,
};
use doorsync_proto::{KisiGroupId, KisiUserId, Timestamp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const KEY: &str = "key-of-the-integration";
const START: Timestamp = Timestamp::from_unix_millis(1_735_689_600_000);

struct Fixture {
    sim: KisiSimulator,
    kisi: SimHandle,
    clock: ManualClock,
    integration: KisiUserId,
    http: reqwest::Client,
}

async fn start(requests_per_second: u32, seed: u64) -> Fixture {
    start_with(requests_per_second, seed, |_| {}).await
}

async fn start_with(requests_per_second: u32, seed: u64, configure: impl FnOnce(&mut SimOptions)) -> Fixture {
    let clock = ManualClock::new(START);
    let mut options = SimOptions::new(Arc::new(clock.clone()));
    options.requests_per_second = requests_per_second;
    options.record_exchanges = true;
    options.seed = seed;
    configure(&mut options);
    let sim = KisiSimulator::start(options).await.unwrap();
    let kisi = sim.handle();
    let integration = kisi.add_api_account("integration@example.com", "doorsync", KEY).unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    Fixture { sim, kisi, clock, integration, http }
}

/// Operations (by operationId) with the statuses they answered.
type Seen = BTreeSet<(String, u16)>;

struct Answer {
    status: StatusCode,
    body: Option<Value>,
    collection_range: Option<String>,
    retry_after: Option<String>,
}

impl Fixture {
    async fn call(&self, method: Method, path_and_query: &str, body: Option<Value>) -> Answer {
        self.call_with_key(Some(KEY), method, path_and_query, body).await.unwrap()
    }

    async fn call_with_key(
        &self,
        key: Option<&str>,
        method: Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> Result<Answer, reqwest::Error> {
        let url = self.sim.base_url().join(path_and_query.trim_start_matches('/')).unwrap();
        let mut request = self.http.request(method, url).header("Accept", "application/json");
        if let Some(key) = key {
            request = request.header("Authorization", format!("KISI-LOGIN {key}"));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let header = |name: &str| response.headers().get(name).map(|value| value.to_str().unwrap().to_owned());
        let (collection_range, retry_after) = (header("x-collection-range"), header("retry-after"));
        let bytes = response.bytes().await?;
        let body = (!bytes.is_empty()).then(|| serde_json::from_slice(&bytes).unwrap());
        Ok(Answer { status, body, collection_range, retry_after })
    }

    /// Checks every recorded answer against the OpenAPI description (requests are the test's,
    /// some deliberately invalid); returns the operations
    /// and statuses seen, and those whose status the description does not list.
    fn check_every_exchange(&self) -> (Seen, Seen) {
        let api = KisiOpenApi::load().unwrap();
        let mut documented = BTreeSet::new();
        let mut undocumented = BTreeSet::new();
        for exchange in self.kisi.exchanges() {
            let check = api
                .check_response(&exchange.recorded_call())
                .unwrap_or_else(|error| panic!("{} {}: {error}", exchange.method, exchange.path));
            let operation = api.operation(&exchange.method, &exchange.path).unwrap().name().to_owned();
            match (check, exchange.status) {
                (ResponseCheck::Documented, Some(status)) => documented.insert((operation, status)),
                (ResponseCheck::UndocumentedStatus, Some(status)) => undocumented.insert((operation, status)),
                _ => false,
            };
        }
        (documented, undocumented)
    }
}

fn id_of(answer: &Answer) -> u64 {
    answer.body.as_ref().unwrap()["id"].as_u64().unwrap()
}

#[tokio::test]
async fn every_answer_matches_kisis_openapi_description() {
    // The friendlier forms, so every documented status shows up; the defaults have tests of
    // their own.
    let fixture = start_with(u32::MAX, 0, |options| {
        options.patch_validity = PatchValidity::Apply;
        options.unknown_ids = UnknownIds::NotFound;
    })
    .await;
    let kisi = &fixture.kisi;
    let group = kisi.add_group("Meeting room 1");
    let observer = kisi.add_api_user("observer@example.com", "Observer").unwrap();
    kisi.add_api_key(observer, "observer-key", KeyAccess::ReadOnly).unwrap();
    use Method as M;

    assert_eq!(fixture.call(M::GET, "/user", None).await.status, StatusCode::OK);
    let new_user = json!({"user": {"email": "ann@example.com", "name": "Ann", "send_emails": false, "confirm": true}});
    let created = fixture.call(M::POST, "/users", Some(new_user.clone())).await;
    assert_eq!(created.status, StatusCode::OK, "Kisi answers creates with 200");
    let user = id_of(&created);
    let duplicate = fixture.call(M::POST, "/users", Some(json!({"user": {"email": "ANN@example.com"}}))).await;
    assert_eq!(duplicate.body, Some(json!({"errors": {"email": ["has already been taken"]}})));
    assert_eq!(fixture.call(M::POST, "/users", Some(json!({"user": {"name": "x"}}))).await.status, 422);
    assert_eq!(fixture.call(M::POST, "/users", Some(json!({"name": "unwrapped"}))).await.status, 422);
    assert_eq!(fixture.call(M::GET, "/users?query=ann&limit=5", None).await.status, StatusCode::OK);
    assert_eq!(fixture.call(M::GET, "/users?query=nobody", None).await.collection_range.as_deref(), Some("*/0"));
    assert_eq!(fixture.call(M::GET, &format!("/users/{user}"), None).await.status, StatusCode::OK);
    assert_eq!(fixture.call(M::GET, "/users/1", None).await.status, StatusCode::NOT_FOUND);
    let suspend = json!({"user": {"access_enabled": false}});
    assert_eq!(fixture.call(M::PATCH, &format!("/users/{user}"), Some(suspend.clone())).await.status, 204);
    assert_eq!(fixture.call(M::PATCH, "/users/1", Some(suspend)).await.status, 404);
    assert_eq!(fixture.call(M::GET, "/groups", None).await.status, StatusCode::OK);
    assert_eq!(fixture.call(M::GET, &format!("/groups/{group}"), None).await.status, StatusCode::OK);
    assert_eq!(fixture.call(M::GET, "/groups/1", None).await.status, StatusCode::NOT_FOUND);

    let grant = |user: u64| {
        json!({"role_assignment": {"applies_to_type": "Group", "applies_to_id": group.0, "assignee_type": "User",
            "assignee_id": user, "role_id": "group_basic", "notify": false,
            "valid_from": "2025-01-01T09:00:00Z", "valid_until": "2025-01-01T17:00:00Z"}})
    };
    let assignment = fixture.call(M::POST, "/role_assignments", Some(grant(user))).await;
    assert_eq!(assignment.status, StatusCode::OK);
    let body = assignment.body.as_ref().unwrap();
    assert_eq!(body["created_by_id"], json!(fixture.integration.0));
    assert_eq!(body["valid_until"], json!("2025-01-01T17:00:00.000Z"));
    let assignment = id_of(&assignment);
    let second = fixture.call(M::POST, "/role_assignments", Some(grant(user))).await;
    assert_eq!(second.status, 422, "one role per (user, group)");
    assert_eq!(second.body, Some(json!({"errors": {"user_id": ["has already been taken"]}})));
    assert_eq!(fixture.call(M::POST, "/role_assignments", Some(grant(1))).await.status, 404, "no such user");
    let refused = fixture.call_with_key(Some("observer-key"), M::POST, "/role_assignments", Some(grant(user))).await;
    assert_eq!(refused.unwrap().status, StatusCode::FORBIDDEN);
    let filtered = format!("/role_assignments?assignee_type=User&assignee_id={user}&applies_to_type=Group");
    assert_eq!(fixture.call(M::GET, &filtered, None).await.body.unwrap().as_array().unwrap().len(), 1);
    let path = format!("/role_assignments/{assignment}");
    assert_eq!(fixture.call(M::GET, &path, None).await.status, StatusCode::OK);
    assert_eq!(fixture.call(M::GET, "/role_assignments/1", None).await.status, StatusCode::NOT_FOUND);
    let window = json!({"role_assignment": {"valid_from": null, "valid_until": "2025-01-02T17:00:00Z"}});
    assert_eq!(fixture.call(M::PATCH, &path, Some(window.clone())).await.status, 204);
    assert_eq!(fixture.call(M::PATCH, "/role_assignments/1", Some(window)).await.status, 404);
    let backwards =
        json!({"role_assignment": {"valid_from": "2025-01-03T00:00:00Z", "valid_until": "2025-01-02T00:00:00Z"}});
    assert_eq!(fixture.call(M::PATCH, &path, Some(backwards)).await.status, 422);
    assert_eq!(fixture.call(M::DELETE, &path, None).await.status, 204);
    assert_eq!(fixture.call(M::DELETE, &path, None).await.status, 404);
    assert_eq!(fixture.call(M::DELETE, &format!("/users/{user}"), None).await.status, 204);
    assert_eq!(fixture.call(M::DELETE, &format!("/users/{user}"), None).await.status, 404);
    for (key, path) in [(None, "/users"), (Some("wrong"), "/role_assignments"), (Some("wrong"), "/user")] {
        assert_eq!(fixture.call_with_key(key, M::GET, path, None).await.unwrap().status, 401);
    }
    fixture.kisi.inject(FaultRule::new(Fault::Status { status: 503, retry_after: Some("2".into()) }).times(1));
    assert_eq!(fixture.call(M::GET, "/groups", None).await.retry_after.as_deref(), Some("2"));

    let (documented, undocumented) = fixture.check_every_exchange();
    let expected: Seen = [
        ("fetchCurrentUser", 200),
        ("fetchCurrentUser", 401),
        ("createUser", 200),
        ("createUser", 422),
        ("fetchUsers", 200),
        ("fetchUsers", 401),
        ("fetchUser", 200),
        ("fetchUser", 404),
        ("updateUser", 204),
        ("updateUser", 404),
        ("deleteUser", 204),
        ("deleteUser", 404),
        ("fetchGroups", 200),
        ("fetchGroup", 200),
        ("fetchGroup", 404),
        ("createRoleAssignment", 200),
        ("createRoleAssignment", 403),
        ("createRoleAssignment", 404),
        ("createRoleAssignment", 422),
        ("fetchRoleAssignments", 200),
        ("fetchRoleAssignments", 401),
        ("fetchRoleAssignment", 200),
        ("fetchRoleAssignment", 404),
        ("updateRoleAssignment", 204),
        ("updateRoleAssignment", 404),
        ("updateRoleAssignment", 422),
        ("deleteRoleAssignment", 204),
        ("deleteRoleAssignment", 404),
    ]
    .into_iter()
    .map(|(operation, status)| (operation.to_owned(), status))
    .collect();
    assert_eq!(documented, expected);
    assert_eq!(undocumented, BTreeSet::from([("fetchGroups".to_owned(), 503)]));
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn the_sixth_request_in_a_second_is_refused_until_the_second_has_passed() {
    let fixture = start(5, 0).await;
    let second_key = "another-key-of-the-same-user";
    fixture.kisi.add_api_key(fixture.integration, second_key, KeyAccess::Admin).unwrap();
    let other = fixture.kisi.add_api_user("other@example.com", "Other integration").unwrap();
    fixture.kisi.add_api_key(other, "other-key", KeyAccess::Admin).unwrap();

    for _ in 0..5 {
        assert_eq!(fixture.call(Method::GET, "/groups", None).await.status, StatusCode::OK);
    }
    let refused = fixture.call_with_key(Some(second_key), Method::GET, "/groups", None).await.unwrap();
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "keys of one user share its limit");
    assert_eq!(refused.retry_after.as_deref(), Some("1"));
    let other_user = fixture.call_with_key(Some("other-key"), Method::GET, "/groups", None).await.unwrap();
    assert_eq!(other_user.status, StatusCode::OK, "another API user has its own limit");

    fixture.clock.advance(Duration::from_millis(999));
    assert_eq!(fixture.call(Method::GET, "/groups", None).await.status, StatusCode::TOO_MANY_REQUESTS);
    fixture.clock.advance(Duration::from_millis(1));
    assert_eq!(fixture.call(Method::GET, "/groups", None).await.status, StatusCode::OK);
    assert_eq!(fixture.kisi.calls().status(429), 2);
    fixture.check_every_exchange();
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn lists_are_paged_with_the_collection_range_header() {
    let fixture = start(u32::MAX, 0).await;
    for index in 0..25 {
        fixture.kisi.add_group(&format!("Room {index:02}"));
    }
    let first = fixture.call(Method::GET, "/groups", None).await;
    assert_eq!(first.collection_range.as_deref(), Some("0-9/25"), "groups come 10 at a time by default");
    assert_eq!(first.body.unwrap().as_array().unwrap().len(), 10);
    let last = fixture.call(Method::GET, "/groups?limit=10&offset=20", None).await;
    assert_eq!(last.collection_range.as_deref(), Some("20-29/25"), "the range asked for, as in Kisi's 10-19/15");
    let names: Vec<Value> = last.body.unwrap().as_array().unwrap().iter().map(|group| group["name"].clone()).collect();
    assert_eq!(names, ["Room 20", "Room 21", "Room 22", "Room 23", "Room 24"].map(Value::from));
    let clamped = fixture.call(Method::GET, "/groups?limit=1000", None).await;
    assert_eq!(clamped.collection_range.as_deref(), Some("0-249/25"));
    let searched = fixture.call(Method::GET, "/groups?query=room%200", None).await;
    assert_eq!(searched.collection_range.as_deref(), Some("0-9/10"));
    assert_eq!(fixture.call(Method::GET, "/groups?offset=20001", None).await.status, 422);
    let (_, undocumented) = fixture.check_every_exchange();
    assert_eq!(undocumented, BTreeSet::from([("fetchGroups".to_owned(), 422)]));
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn a_dropped_response_comes_after_the_change_was_made() {
    let fixture = start(u32::MAX, 0).await;
    fixture.kisi.inject(FaultRule::new(Fault::DropResponse).method("POST").path("/users").times(1));
    let lost = fixture
        .call_with_key(Some(KEY), Method::POST, "/users", Some(json!({"user": {"email": "bo@example.com"}})))
        .await;
    let error = lost.err().expect("no answer");
    assert!(!error.is_timeout() && error.status().is_none(), "{error}");
    assert!(fixture.kisi.user_by_email("bo@example.com").is_some(), "the user was created");
    assert_eq!(fixture.kisi.calls().dropped, 1);
    let again = fixture.call(Method::POST, "/users", Some(json!({"user": {"email": "bo@example.com"}}))).await;
    assert_eq!(again.status, 422, "the fault was for one request only");
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn a_hanging_request_can_still_be_carried_out() {
    let fixture = start(u32::MAX, 0).await;
    let group = fixture.kisi.add_group("Desk 4");
    let user = fixture.kisi.add_user("cy@example.com", "Cy").unwrap();
    fixture.kisi.inject(FaultRule::new(Fault::Hang { after_commit: true }).path("/role_assignments").times(1));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    let body = json!({"role_assignment": {"applies_to_type": "Group", "applies_to_id": group.0,
        "assignee_type": "User", "assignee_id": user.0, "role_id": "group_basic"}});
    let url = fixture.sim.base_url().join("role_assignments").unwrap();
    let error =
        http.post(url).header("Authorization", format!("KISI-LOGIN {KEY}")).json(&body).send().await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert!(fixture.kisi.group_access(user, group, START).is_granted());
    assert_eq!(fixture.kisi.calls().hung, 1);
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn latency_passes_on_the_simulators_clock() {
    let fixture = start(u32::MAX, 0).await;
    fixture.kisi.set_latency(Duration::from_secs(30));
    let url = fixture.sim.base_url().join("groups").unwrap();
    let request = fixture.http.get(url).header("Authorization", format!("KISI-LOGIN {KEY}")).send();
    let pending = tokio::spawn(request);
    while fixture.kisi.calls().total() == 0 {
        tokio::task::yield_now().await;
    }
    tokio::task::yield_now().await;
    assert!(!pending.is_finished(), "no answer before the clock moves");
    fixture.clock.advance(Duration::from_secs(30));
    let response = tokio::time::timeout(Duration::from_secs(10), pending).await.unwrap().unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn random_faults_replay_exactly_from_the_seed() {
    async fn outcomes(seed: u64) -> Vec<Option<u16>> {
        let fixture = start(u32::MAX, seed).await;
        fixture.kisi.set_random_faults(Some(RandomFaults {
            server_error: 0.3,
            drop_response: 0.2,
            hang: 0.0,
            max_latency: Duration::ZERO,
        }));
        let mut outcomes = Vec::new();
        for index in 0..40 {
            let body = json!({"user": {"email": format!("member{index}@example.com")}});
            let answer = fixture.call_with_key(Some(KEY), Method::POST, "/users", Some(body)).await;
            outcomes.push(answer.ok().map(|answer| answer.status.as_u16()));
        }
        fixture.sim.shutdown().await;
        outcomes
    }
    let first = outcomes(42).await;
    assert_eq!(first, outcomes(42).await);
    assert_ne!(first, outcomes(43).await);
    assert!(first.contains(&None) && first.contains(&Some(503)) && first.contains(&Some(200)), "{first:?}");
}

#[tokio::test]
async fn operators_and_other_integrations_change_kisi_behind_doorsyncs_back() {
    let fixture = start(u32::MAX, 0).await;
    let kisi = &fixture.kisi;
    let group = kisi.add_group("Private office");
    let user = kisi.add_user("dee@example.com", "Dee").unwrap();
    let other = kisi.add_api_user("crm@example.com", "CRM").unwrap();
    let until = Timestamp::from_unix_millis(START.as_unix_millis() + 3_600_000);
    let assignment = kisi.add_assignment_as(Some(other), user, group, None, Some(until)).unwrap();
    assert!(kisi.add_assignment_as(Some(fixture.integration), user, group, None, None).is_err());

    let listed = fixture
        .call(Method::GET, &format!("/role_assignments?applies_to_type=Group&applies_to_id={group}"), None)
        .await;
    assert_eq!(listed.body.unwrap()[0]["created_by_id"], json!(other.0));
    assert!(kisi.group_access(user, group, START).is_granted());
    assert!(!kisi.group_access(user, group, until).is_granted());

    assert!(kisi.remove_assignment(assignment));
    assert!(!kisi.group_access(user, group, START).is_granted());
    assert_eq!(kisi.calls().total(), 1, "changes by hand are not calls");
    fixture.sim.shutdown().await;
}

/// A group, a user and the integration's assignment of the user to it, valid 09:00 to 17:00.
async fn assigned(fixture: &Fixture) -> (KisiGroupId, KisiUserId, String) {
    let group = fixture.kisi.add_group("Hot desks");
    let user = fixture.kisi.add_user("jo@example.com", "Jo").unwrap();
    let body = json!({"role_assignment": {"applies_to_type": "Group", "applies_to_id": group.0,
        "assignee_type": "User", "assignee_id": user.0, "role_id": "group_basic",
        "valid_from": "2025-01-01T09:00:00Z", "valid_until": "2025-01-01T17:00:00Z"}});
    let created = fixture.call(Method::POST, "/role_assignments", Some(body)).await;
    assert_eq!(created.status, StatusCode::OK);
    (group, user, format!("/role_assignments/{}", id_of(&created)))
}

fn new_window() -> Value {
    json!({"role_assignment": {"valid_from": "2025-01-02T09:00:00Z", "valid_until": "2025-01-02T17:00:00Z"}})
}

/// The window of the assignment at `path`, read back through `GET /role_assignments/{id}` and
/// through the list filtered by group, which must agree.
async fn window_read_back(fixture: &Fixture, group: KisiGroupId, path: &str) -> (Value, Value) {
    let single = fixture.call(Method::GET, path, None).await.body.unwrap();
    let listed = fixture
        .call(Method::GET, &format!("/role_assignments?applies_to_type=Group&applies_to_id={group}"), None)
        .await
        .body
        .unwrap();
    let window = |assignment: &Value| (assignment["valid_from"].clone(), assignment["valid_until"].clone());
    assert_eq!(window(&single), window(&listed[0]), "GET by id and the list agree");
    window(&single)
}

#[tokio::test]
async fn a_patched_window_is_silently_ignored_by_default() {
    let fixture = start(u32::MAX, 0).await;
    let (group, user, path) = assigned(&fixture).await;
    let before = window_read_back(&fixture, group, &path).await;
    let patched = fixture.call(Method::PATCH, &path, Some(new_window())).await;
    assert_eq!(patched.status, 204, "Kisi's usual answer to a PATCH");
    assert_eq!(patched.body, None);
    assert_eq!(window_read_back(&fixture, group, &path).await, before, "the window is as it was");
    let next_day = Timestamp::from_unix_millis(START.as_unix_millis() + 33 * 3_600_000);
    assert!(!fixture.kisi.group_access(user, group, next_day).is_granted());
    let (_, undocumented) = fixture.check_every_exchange();
    assert!(undocumented.is_empty(), "{undocumented:?}");
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn a_patched_window_applies_with_the_apply_switch() {
    let fixture = start_with(u32::MAX, 0, |options| options.patch_validity = PatchValidity::Apply).await;
    let (group, user, path) = assigned(&fixture).await;
    assert_eq!(fixture.call(Method::PATCH, &path, Some(new_window())).await.status, 204);
    let after = window_read_back(&fixture, group, &path).await;
    assert_eq!(after, (json!("2025-01-02T09:00:00.000Z"), json!("2025-01-02T17:00:00.000Z")));
    let next_day = Timestamp::from_unix_millis(START.as_unix_millis() + 33 * 3_600_000);
    assert!(fixture.kisi.group_access(user, group, next_day).is_granted());
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn a_patched_window_is_refused_with_the_reject_switch_and_the_flip_takes_effect_at_once() {
    let fixture = start(u32::MAX, 0).await;
    let (group, _, path) = assigned(&fixture).await;
    let before = window_read_back(&fixture, group, &path).await;
    fixture.kisi.set_patch_validity(PatchValidity::Reject);
    let refused = fixture.call(Method::PATCH, &path, Some(new_window())).await;
    assert_eq!(refused.status, 422);
    assert_eq!(
        refused.body,
        Some(json!({"errors": {"valid_from": ["can't be changed"], "valid_until": ["can't be changed"]}}))
    );
    let only_until = json!({"role_assignment": {"valid_until": null}});
    let refused = fixture.call(Method::PATCH, &path, Some(only_until.clone())).await;
    assert_eq!(refused.body, Some(json!({"errors": {"valid_until": ["can't be changed"]}})));
    assert_eq!(window_read_back(&fixture, group, &path).await, before, "nothing changed");
    let other_fields = json!({"role_assignment": {"role_id": "group_basic"}});
    assert_eq!(fixture.call(Method::PATCH, &path, Some(other_fields)).await.status, 204, "only the window is refused");

    fixture.kisi.set_patch_validity(PatchValidity::Apply);
    assert_eq!(fixture.call(Method::PATCH, &path, Some(only_until)).await.status, 204);
    assert_eq!(window_read_back(&fixture, group, &path).await.1, Value::Null);
    let (documented, _) = fixture.check_every_exchange();
    assert!(documented.contains(&("updateRoleAssignment".to_owned(), 422)));
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn a_create_naming_a_group_that_does_not_exist_is_forbidden_whatever_the_switch() {
    for unknown_ids in [UnknownIds::Forbidden, UnknownIds::NotFound] {
        let fixture = start_with(u32::MAX, 0, |options| options.unknown_ids = unknown_ids).await;
        let user = fixture.kisi.add_user("kim@example.com", "Kim").unwrap();
        let mistyped = json!({"role_assignment": {"applies_to_type": "Group", "applies_to_id": 10,
            "assignee_type": "User", "assignee_id": user.0, "role_id": "group_basic"}});
        let refused = fixture.call(Method::POST, "/role_assignments", Some(mistyped)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{unknown_ids:?}");
        assert_eq!(refused.body, Some(json!({"error": "Access denied.", "code": "afc496"})));
        assert!(fixture.kisi.assignments().is_empty());
        let (documented, _) = fixture.check_every_exchange();
        assert!(documented.contains(&("createRoleAssignment".to_owned(), 403)));
        fixture.sim.shutdown().await;
    }
}

#[tokio::test]
async fn a_hidden_group_answers_403_to_every_call_naming_it_and_is_left_out_of_lists() {
    let fixture = start_with(u32::MAX, 0, |options| options.unknown_ids = UnknownIds::NotFound).await;
    let kisi = &fixture.kisi;
    let (open, hidden) = (kisi.add_group("Open plan"), kisi.add_group("Server room"));
    let user = kisi.add_user("lu@example.com", "Lu").unwrap();
    let other = kisi.add_user("max@example.com", "Max").unwrap();
    let foreign = kisi.add_assignment_as(None, other, hidden, None, None).unwrap();
    assert!(kisi.hide_group(hidden));
    assert!(!kisi.hide_group(KisiGroupId(1)), "no such group");
    let grant = |group: KisiGroupId| {
        json!({"role_assignment": {"applies_to_type": "Group", "applies_to_id": group.0,
            "assignee_type": "User", "assignee_id": user.0, "role_id": "group_basic"}})
    };

    assert_eq!(fixture.call(Method::POST, "/role_assignments", Some(grant(hidden))).await.status, 403);
    assert_eq!(fixture.call(Method::POST, "/role_assignments", Some(grant(open))).await.status, 200, "others work");
    assert_eq!(fixture.call(Method::GET, &format!("/groups/{hidden}"), None).await.status, 403);
    assert_eq!(fixture.call(Method::GET, &format!("/groups/{open}"), None).await.status, 200);
    let forbidden = [
        format!("/role_assignments?applies_to_type=Group&applies_to_id={hidden}"),
        format!("/role_assignments?group_id={hidden}"),
        format!("/users?group_id={hidden}"),
    ];
    for path in &forbidden {
        assert_eq!(fixture.call(Method::GET, path, None).await.status, 403, "{path}");
    }
    let path = format!("/role_assignments/{foreign}");
    assert_eq!(fixture.call(Method::GET, &path, None).await.status, 403);
    assert_eq!(fixture.call(Method::PATCH, &path, Some(new_window())).await.status, 403);
    assert_eq!(fixture.call(Method::DELETE, &path, None).await.status, 403);
    assert_eq!(kisi.assignments().len(), 2, "the foreign assignment is still there");

    let groups = fixture.call(Method::GET, &format!("/groups?ids={open},{hidden}"), None).await;
    let listed: Vec<u64> = groups.body.unwrap().as_array().unwrap().iter().map(|g| g["id"].as_u64().unwrap()).collect();
    assert_eq!(listed, [open.0]);
    let all = fixture.call(Method::GET, "/role_assignments", None).await.body.unwrap();
    assert_eq!(all.as_array().unwrap().len(), 1, "assignments on the hidden group are left out");
    assert_eq!(kisi.groups().len(), 2, "the handle still sees both");

    assert!(kisi.show_group(hidden));
    assert_eq!(fixture.call(Method::GET, &format!("/groups/{hidden}"), None).await.status, 200);
    fixture.check_every_exchange();
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn ids_that_do_not_exist_answer_403_by_default_and_404_with_the_switch() {
    let fixture = start(u32::MAX, 0).await;
    let patch_user = json!({"user": {"access_enabled": false}});
    let calls = [
        (Method::GET, "/users/1", None),
        (Method::PATCH, "/users/1", Some(patch_user)),
        (Method::DELETE, "/users/1", None),
        (Method::GET, "/groups/1", None),
        (Method::GET, "/role_assignments/1", None),
        (Method::PATCH, "/role_assignments/1", Some(new_window())),
        (Method::DELETE, "/role_assignments/1", None),
    ];
    for (method, path, body) in &calls {
        let answer = fixture.call(method.clone(), path, body.clone()).await;
        assert_eq!(answer.status, 403, "{method} {path}");
        assert_eq!(answer.body, Some(json!({"error": "Access denied.", "code": "afc496"})));
    }
    let filtered = ["/role_assignments?applies_to_type=Group&applies_to_id=1", "/users?group_id=1"];
    for path in filtered {
        assert_eq!(fixture.call(Method::GET, path, None).await.status, 403, "{path}");
    }
    let (documented, undocumented) = fixture.check_every_exchange();
    assert!(documented.iter().all(|(_, status)| *status == 403), "{documented:?}");
    assert_eq!(
        undocumented,
        BTreeSet::from([("fetchRoleAssignments".to_owned(), 403), ("fetchUsers".to_owned(), 403)]),
        "Kisi's description lists no 403 for lists"
    );

    fixture.kisi.set_unknown_ids(UnknownIds::NotFound);
    for (method, path, body) in &calls {
        assert_eq!(fixture.call(method.clone(), path, body.clone()).await.status, 404, "{method} {path}");
    }
    for path in filtered {
        let empty = fixture.call(Method::GET, path, None).await;
        assert_eq!((empty.status, empty.collection_range.as_deref()), (StatusCode::OK, Some("*/0")), "{path}");
    }
    fixture.check_every_exchange();
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn the_rate_limits_429_carries_retry_after_unless_switched_off() {
    let fixture = start_with(1, 0, |options| options.retry_after_on_429 = false).await;
    assert_eq!(fixture.call(Method::GET, "/groups", None).await.status, StatusCode::OK);
    let refused = fixture.call(Method::GET, "/groups", None).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.retry_after, None, "no Retry-After: the client backs off on its own");
    assert_eq!(refused.body, Some(json!({"error": "Too many requests", "code": "000429"})));

    fixture.kisi.set_retry_after_on_429(true);
    let refused = fixture.call(Method::GET, "/groups", None).await;
    assert_eq!((refused.status, refused.retry_after.as_deref()), (StatusCode::TOO_MANY_REQUESTS, Some("1")));
    fixture.check_every_exchange();
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn an_injected_429_can_carry_an_absurd_retry_after() {
    let fixture = start(u32::MAX, 0).await;
    let absurd = Fault::Status { status: 429, retry_after: Some("99999999".into()) };
    fixture.kisi.inject(FaultRule::new(absurd).path("/groups").times(1));
    let refused = fixture.call(Method::GET, "/groups", None).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.retry_after.as_deref(), Some("99999999"));
    assert_eq!(refused.body, Some(json!({"error": "Too many requests", "code": "000429"})));
    assert_eq!(fixture.call(Method::GET, "/groups", None).await.status, StatusCode::OK, "one request only");
    fixture.check_every_exchange();
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn a_second_user_with_an_email_the_organization_has_is_refused_with_422() {
    let fixture = start(u32::MAX, 0).await;
    let staff = fixture.kisi.seed_user(SeedUser::new("frontdesk@example.com", "Front desk").regular()).unwrap();
    for email in ["frontdesk@example.com", "FrontDesk@Example.com"] {
        let again = fixture.call(Method::POST, "/users", Some(json!({"user": {"email": email, "name": "Copy"}}))).await;
        assert_eq!(again.status, 422, "{email}");
        assert_eq!(again.body, Some(json!({"errors": {"email": ["has already been taken"]}})));
    }
    assert_eq!(fixture.kisi.users().iter().filter(|user| user.email.contains("frontdesk")).count(), 1);
    assert_eq!(fixture.kisi.user_by_email("frontdesk@example.com").unwrap().id, staff);
    let (documented, _) = fixture.check_every_exchange();
    assert_eq!(documented, BTreeSet::from([("createUser".to_owned(), 422)]));
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn a_patch_of_a_users_email_is_ignored() {
    let fixture = start(u32::MAX, 0).await;
    let user = fixture.kisi.add_user("old@example.com", "Old name").unwrap();
    let path = format!("/users/{user}");
    let patch = json!({"user": {"email": "new@example.com", "name": "New name"}});
    assert_eq!(fixture.call(Method::PATCH, &path, Some(patch)).await.status, 204);
    let read = fixture.call(Method::GET, &path, None).await.body.unwrap();
    assert_eq!((read["email"].clone(), read["name"].clone()), (json!("old@example.com"), json!("New name")));
    assert!(fixture.kisi.user_by_email("new@example.com").is_none());
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn users_and_assignments_made_by_others_show_who_made_them() {
    let fixture = start(u32::MAX, 0).await;
    let kisi = &fixture.kisi;
    let owner = kisi.seed_user(SeedUser::new("owner@example.com", "Owner").regular()).unwrap();
    let admin = kisi.seed_user(SeedUser::new("admin@example.com", "Admin").regular().created_by(owner)).unwrap();
    let nexudus = kisi.add_api_account("nexudus@example.com", "Nexudus integration", "nexudus-key").unwrap();
    let member = SeedUser::new("nia@example.com", "Nia").created_by(nexudus).notes("from Nexudus");
    let member = kisi.seed_user(member.metadata("nexudus_id", 42)).unwrap();
    let suspended = SeedUser::new("ola@example.com", "Ola").created_by(admin).access_enabled(false);
    let suspended = kisi.seed_user(suspended).unwrap();
    let ours = fixture.call(Method::POST, "/users", Some(json!({"user": {"email": "pat@example.com"}}))).await;

    let by_id = |id: KisiUserId| kisi.users().into_iter().find(|user| user.id == id).unwrap();
    assert_eq!((by_id(owner).created_by, by_id(owner).send_emails), (None, true));
    assert_eq!(by_id(admin).created_by, Some(owner));
    assert_eq!(by_id(member).created_by, Some(nexudus));
    assert_eq!(by_id(KisiUserId(id_of(&ours))).created_by, Some(fixture.integration), "made through our key");
    let read = fixture.call(Method::GET, &format!("/users/{member}"), None).await.body.unwrap();
    assert_eq!((read["metadata"].clone(), read["notes"].clone()), (json!({"nexudus_id": 42}), json!("from Nexudus")));
    let read = fixture.call(Method::GET, &format!("/users/{suspended}"), None).await.body.unwrap();
    assert_eq!((read["metadata"].clone(), read["access_enabled"].clone()), (json!({}), json!(false)));

    // As Nexudus's built-in integration leaves them: group_basic, no window, made by its user.
    let group = kisi.add_group("Day pass");
    let staff_group = kisi.add_group("Staff");
    kisi.add_assignment_as(Some(nexudus), member, group, None, None).unwrap();
    let until = Timestamp::from_unix_millis(START.as_unix_millis() + 86_400_000);
    kisi.add_assignment_as(Some(admin), admin, staff_group, Some(START), Some(until)).unwrap();
    kisi.add_assignment_as(None, owner, staff_group, None, None).unwrap();
    let app = fixture.integration.0;
    kisi.add_assignment_by_installation(app, suspended, staff_group, None, None).unwrap();
    let listed = fixture.call(Method::GET, "/role_assignments?limit=250", None).await.body.unwrap();
    let provenance: Vec<(u64, Value, Value, Value, Value)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|assignment| {
            (
                assignment["assignee_id"].as_u64().unwrap(),
                assignment["created_by_type"].clone(),
                assignment["created_by_id"].clone(),
                assignment["role_id"].clone(),
                assignment["valid_until"].clone(),
            )
        })
        .collect();
    let expected = Vec::from([
        (member.0, json!("User"), json!(nexudus.0), json!("group_basic"), Value::Null),
        (admin.0, json!("User"), json!(admin.0), json!("group_basic"), json!("2025-01-02T00:00:00.000Z")),
        (owner.0, Value::Null, Value::Null, json!("group_basic"), Value::Null),
        (suspended.0, json!("MarketplaceInstallation"), json!(app), json!("group_basic"), Value::Null),
    ]);
    assert_eq!(provenance, expected);
    fixture.check_every_exchange();
    fixture.sim.shutdown().await;
}
