//! The simulator over real loopback HTTP, driven by a plain HTTP client, its answers checked
//! against Kisi's OpenAPI description.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use doorsync_clock::ManualClock;
use doorsync_kisi::openapi::{KisiOpenApi, ResponseCheck};
use doorsync_kisi_sim::{Fault, FaultRule, KeyAccess, KisiSimulator, RandomFaults, SimHandle, SimOptions};
use doorsync_proto::{KisiUserId, Timestamp};
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
    let clock = ManualClock::new(START);
    let mut options = SimOptions::new(Arc::new(clock.clone()));
    options.requests_per_second = requests_per_second;
    options.record_exchanges = true;
    options.seed = seed;
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
    let fixture = start(u32::MAX, 0).await;
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
    assert_eq!(fixture.call(M::POST, "/role_assignments", Some(grant(1))).await.status, 404);
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
