//! Fuzzing the webhook receiver over loopback HTTP, against the Nexudus simulator and a real log:
//! whatever path, body, signature and headers arrive, the answer is 2xx or 4xx (never a panic,
//! never a 5xx for bad input), and a delivery that is not signed with the secret over exactly its
//! body is refused with 401 before anything is read from Nexudus or appended to the log.
//!
//! The refusals are checked where they matter: Nexudus holds records doorsync has not read yet,
//! and the bodies name them, so a refused delivery that got through would append their events.
//!
//! Each property runs a fixed number of cases, enough for CI to finish in seconds; set
//! `PROPTEST_CASES` for a longer run (`just fuzz` does), and `PROPTEST_RNG_SEED` to replay one.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests; the shared support module unwraps")]

mod support;

use std::error::Error;

use doorsync_ingest::{Secret, WEBHOOK_ACTIONS};
use doorsync_nexudus::WebhookAction;
use doorsync_nexudus::webhook::{SIGNATURE_HEADER, body_for, parse_body, sign, verify};
use doorsync_nexudus_sim::SimEntity;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use support::World;

type TestResult<T = ()> = Result<T, Box<dyn Error>>;

/// Deliveries per property when `PROPTEST_CASES` is not set: each is an HTTP exchange (and the
/// signed ones re-read Nexudus), but on loopback a thousand take seconds.
const DEFAULT_CASES: u32 = 1_000;

/// Bodies larger than this are refused with 413; small, so that the fuzzer reaches it.
const BODY_LIMIT: usize = 4 * 1_024;

/// `PROPTEST_CASES` when set (proptest reads it only when a test names no case count of its own),
/// else `default_cases`. Failures are not persisted to files: a found input is kept as a named
/// regression test instead.
fn fuzz_config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(default_cases);
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// A world whose Nexudus holds a location, a room, a member, her booking and her contract, none
/// of which the ingestor has read: Nexudus sends no webhooks of its own, and the poller's clock
/// never moves.
struct Unread {
    world: World,
    /// The ids of those records.
    ids: Vec<u64>,
}

impl Unread {
    async fn start() -> Self {
        let world = World::start(|setup| {
            setup.hooks.clear();
            setup.options.webhook_body_limit_bytes = BODY_LIMIT;
        })
        .await;
        let (business, room) = world.london_room();
        let ada = support::coworker(&world.sim, "Ada");
        let booking = world
            .sim
            .create(
                SimEntity::Booking,
                json!({"ResourceId": room, "CoworkerId": ada, "Tentative": false,
                    "FromTime": "2025-07-02T09:00:00Z", "ToTime": "2025-07-02T10:00:00Z"}),
            )
            .unwrap();
        let contract = world
            .sim
            .create(
                SimEntity::CoworkerContract,
                json!({"CoworkerId": ada, "StartDate": "2025-07-01T00:00:00Z", "Active": true, "IssuedById": business}),
            )
            .unwrap();
        Self { world, ids: vec![business, room, ada, booking, contract] }
    }

    /// The answer to `delivery`: its status and body.
    async fn post(&self, client: &reqwest::Client, delivery: &Delivery) -> Result<(u16, String), TestCaseError> {
        let url = format!("http://{}{}", self.world.hooks, delivery.path);
        let mut request = client.post(url).body(delivery.body.clone());
        if let Some(signature) = &delivery.signature {
            request = request.header(SIGNATURE_HEADER, signature.as_str());
        }
        for (name, value) in &delivery.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await.map_err(|error| TestCaseError::fail(format!("no answer: {error}")))?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|error| TestCaseError::fail(format!("no body: {error}")))?;
        Ok((status, body))
    }

    /// What the ingestor has done so far: requests to Nexudus, events in the log, deliveries
    /// accepted.
    async fn footprint(&self) -> (u64, usize, u64) {
        let accepted = self.world.ingest.status().webhooks.accepted;
        (self.world.sim.stats().requests, self.world.events().await.len(), accepted)
    }
}

/// One POST to the receiver.
#[derive(Debug, Clone)]
struct Delivery {
    /// The action segment as the receiver decodes it.
    action: String,
    path: String,
    body: Vec<u8>,
    signature: Option<String>,
    headers: Vec<(String, String)>,
}

/// `segment` as it goes into a URL path: bytes other than RFC 3986's unreserved ones
/// percent-encoded.
fn percent_encoded(segment: &str) -> String {
    segment
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(byte).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The action segments Nexudus would use (every named action, by name and by number) and ones
/// it would not; never `.` or `..`, which a URL resolves away.
fn action_segment() -> impl Strategy<Value = String> {
    let named: Vec<String> =
        (0..=100_u64).filter_map(|code| WebhookAction::from_code(code).name()).map(str::to_owned).collect();
    prop_oneof![
        4 => select(named),
        2 => (0_u64..=100).prop_map(|code| code.to_string()),
        1 => select(vec!["+61".to_owned(), "061".to_owned(), "18446744073709551616".to_owned(), "bookingupdate".to_owned()]),
        1 => "[A-Za-z0-9._~-]{1,24}",
        1 => "\\PC{1,8}",
    ]
    .prop_filter("resolved away by URLs", |segment| segment != "." && segment != "..")
}

/// Whether the receiver acts on the delivery's action (re-reading the entities), as opposed to
/// acknowledging it without doing anything.
fn acted_on(action: &str) -> bool {
    let code = action.parse::<u64>().ok();
    WEBHOOK_ACTIONS.iter().any(|known| known.name() == Some(action) || code == Some(known.code()))
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(prop_oneof![Just("Id".to_owned()), "[A-Za-z]{1,8}"], inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Bodies as Nexudus sends them (an array of entities with an `Id`: of `known` records, or of
/// none), and anything else: other JSON, bytes, nothing, too much.
fn any_body(known: Vec<u64>) -> impl Strategy<Value = Vec<u8>> {
    let id = prop_oneof![3 => select(known), 1 => any::<u64>(), 1 => Just(u64::MAX)];
    let entity = (id, prop::collection::btree_map("[A-Za-z]{1,8}", any_json(), 0..3))
        .prop_map(|(id, fields)| {
            let mut entity: serde_json::Map<String, Value> = fields.into_iter().collect();
            entity.insert("Id".to_owned(), json!(id));
            Value::Object(entity)
        })
        .boxed();
    prop_oneof![
        6 => entity.clone().prop_map(|entity| body_for(&entity)),
        2 => prop::collection::vec(prop_oneof![4 => entity, 1 => any_json()], 0..4)
            .prop_map(|entities| Value::Array(entities).to_string().into_bytes()),
        1 => any_json().prop_map(|value| value.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..256),
        1 => (BODY_LIMIT + 1..BODY_LIMIT + 2_048).prop_map(|length| {
            let padding = "x".repeat(length);
            body_for(&json!({"Id": 1, "Padding": padding}))
        }),
    ]
}

/// Headers a sender may add; none of them may change the answer.
fn any_headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        Just("content-type".to_owned()),
        Just("user-agent".to_owned()),
        Just("x-forwarded-for".to_owned()),
        Just("authorization".to_owned()),
        "x-[a-z]{1,12}",
    ];
    prop::collection::vec((name, "[ -~]{0,40}"), 0..3)
}

/// How a signature can be wrong.
#[derive(Debug, Clone)]
enum Forgery {
    Missing,
    /// The right secret over a different body: a captured delivery replayed with its body altered.
    OfAlteredBody(Index, u8),
    /// The right secret over another delivery's body.
    OfOtherBody(Vec<u8>),
    WrongSecret(String),
    /// The right signature with one hex digit changed to another value.
    OneDigitChanged(Index, u8),
    /// The right signature cut short, or with more digits after it.
    Resized(Index, String),
    Garbage(String),
}

fn forgery(known: Vec<u64>) -> impl Strategy<Value = Forgery> {
    prop_oneof![
        1 => Just(Forgery::Missing),
        3 => (any::<Index>(), 1_u8..=255).prop_map(|(at, xor)| Forgery::OfAlteredBody(at, xor)),
        2 => any_body(known).prop_map(Forgery::OfOtherBody),
        1 => "\\PC{0,24}".prop_map(Forgery::WrongSecret),
        2 => (any::<Index>(), 1_u8..16).prop_map(|(at, step)| Forgery::OneDigitChanged(at, step)),
        1 => (any::<Index>(), "[0-9A-F]{0,4}").prop_map(|(at, more)| Forgery::Resized(at, more)),
        1 => "[ -~]{0,80}|[0-9A-F]{64}".prop_map(Forgery::Garbage),
    ]
}

/// The forged signature for `body`, or `None` when this forgery happens to be a right signature
/// (the other body equals this one, say).
fn forged(forgery: &Forgery, body: &[u8]) -> Option<Option<String>> {
    let secret = Secret::new(support::SECRET);
    let right = sign(&secret, body);
    let signature = match forgery {
        Forgery::Missing => return Some(None),
        Forgery::OfAlteredBody(at, xor) => {
            let mut signed = body.to_vec();
            if signed.is_empty() {
                signed.push(*xor);
            } else {
                let at = at.index(signed.len());
                signed[at] ^= xor;
            }
            sign(&secret, &signed)
        }
        Forgery::OfOtherBody(other) => sign(&secret, other),
        Forgery::WrongSecret(wrong) => sign(&Secret::new(wrong.as_str()), body),
        Forgery::OneDigitChanged(at, step) => {
            let mut digits: Vec<u8> = right.bytes().collect();
            let at = at.index(digits.len());
            let value = char::from(digits[at]).to_digit(16).unwrap_or(0);
            let changed = (value + u32::from(*step)) % 16;
            digits[at] = char::from_digit(changed, 16).unwrap_or('0').to_ascii_uppercase() as u8;
            String::from_utf8_lossy(&digits).into_owned()
        }
        Forgery::Resized(at, more) => {
            let cut = at.index(right.len());
            if more.is_empty() { right[..cut].to_owned() } else { format!("{right}{more}") }
        }
        Forgery::Garbage(garbage) => garbage.clone(),
    };
    verify(&secret, body, &signature).is_err().then_some(Some(signature))
}

/// Paths that are not the receiver's route, or are it with something odd about them.
fn odd_path(action: &str) -> impl Strategy<Value = String> + use<> {
    let action = percent_encoded(action);
    prop_oneof![
        6 => Just(format!("/webhooks/nexudus/{action}")),
        1 => Just(format!("/webhooks/nexudus/{action}/more")),
        1 => Just("/webhooks/nexudus/".to_owned()),
        1 => Just(format!("/webhooks/Nexudus/{action}")),
        1 => Just(format!("/webhooks/nexudus/{action}?signature=none")),
        1 => Just("/webhooks/nexudus/%FF%FE".to_owned()),
    ]
}

fn client() -> TestResult<reqwest::Client> {
    Ok(reqwest::Client::builder().no_proxy().build()?)
}

#[test]
fn a_delivery_not_signed_over_exactly_its_body_is_refused_and_nothing_is_read_or_appended() -> TestResult {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let unread = runtime.block_on(Unread::start());
    let client = client()?;
    let strategy = (action_segment(), any_body(unread.ids.clone()), forgery(unread.ids.clone()), any_headers())
        .prop_flat_map(|(action, body, forgery, headers)| {
            odd_path(&action)
                .prop_map(move |path| (action.clone(), path, body.clone(), forgery.clone(), headers.clone()))
        })
        .prop_filter_map("a forgery that is a right signature", |(action, path, body, forgery, headers)| {
            let signature = forged(&forgery, &body)?;
            Some(Delivery { action, path, body, signature, headers })
        });
    let before = runtime.block_on(unread.footprint());
    TestRunner::new(fuzz_config(DEFAULT_CASES))
        .run(&strategy, |delivery| {
            runtime.block_on(async {
                let (status, body) = unread.post(&client, &delivery).await?;
                prop_assert!((400..500).contains(&status), "answered {status}: {body}");
                let routed = delivery.path == format!("/webhooks/nexudus/{}", percent_encoded(&delivery.action));
                if routed && delivery.body.len() <= BODY_LIMIT {
                    prop_assert_eq!(status, 401, "a forged delivery to the receiver itself");
                    prop_assert_eq!(body.as_str(), "signature missing or wrong");
                }
                prop_assert_eq!(unread.footprint().await, before, "nothing read from Nexudus or appended");
                Ok(())
            })
        })
        .map_err(|error| error.to_string())?;

    // The same bodies, signed: they would have been read and appended, so the check above could
    // see a refusal that let one through.
    let body = body_for(&json!({"Id": unread.ids[3]}));
    let signed = Delivery {
        action: "BookingUpdate".to_owned(),
        path: "/webhooks/nexudus/BookingUpdate".to_owned(),
        signature: Some(support::signed(&body)),
        body,
        headers: Vec::new(),
    };
    let (status, _) = runtime.block_on(unread.post(&client, &signed)).map_err(|error| error.to_string())?;
    assert_eq!(status, 204);
    let (requests, events, accepted) = runtime.block_on(unread.footprint());
    assert!(requests > before.0 && events > before.1 && accepted == before.2 + 1, "the signed booking was read");
    runtime.block_on(unread.world.stop());
    Ok(())
}

#[test]
fn a_signed_delivery_is_answered_2xx_or_4xx_as_its_body_and_action_deserve() -> TestResult {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let unread = runtime.block_on(Unread::start());
    let client = client()?;
    let strategy =
        (action_segment(), any_body(unread.ids.clone()), any_headers()).prop_map(|(action, body, headers)| {
            let path = format!("/webhooks/nexudus/{}", percent_encoded(&action));
            let signature = Some(support::signed(&body));
            Delivery { action, path, body, signature, headers }
        });
    TestRunner::new(fuzz_config(DEFAULT_CASES))
        .run(&strategy, |delivery| {
            runtime.block_on(async {
                let (status, body) = unread.post(&client, &delivery).await?;
                let unreadable = parse_body(&delivery.body).err();
                let expected = if delivery.body.len() > BODY_LIMIT {
                    413
                } else if unreadable.is_some() {
                    400
                } else if !acted_on(&delivery.action) {
                    200
                } else {
                    204
                };
                prop_assert_eq!(status, expected, "action {:?}: {}", delivery.action, body);
                // A refusal says why: what is wrong with the body, or that it is too large.
                match (status, unreadable) {
                    (400, Some(error)) => prop_assert_eq!(body, error.to_string()),
                    (413, _) => prop_assert!(body.contains("length limit"), "{}", body),
                    _ => {}
                }
                Ok(())
            })
        })
        .map_err(|error| error.to_string())?;
    let status = unread.world.ingest.status();
    assert_eq!((status.webhooks.refused, status.webhooks.failed), (0, 0), "{:?}", status.webhooks);
    runtime.block_on(unread.world.stop());
    Ok(())
}
