//! doorsync end to end: the `doorsync` binary's own processes against the Nexudus and Kisi
//! simulators over loopback HTTP, in real time; for separate processes, on a real nats-server.
//!
//! One scenario is played on a site ([`play`]): a booking made 16 minutes ahead reaches Kisi as a
//! role assignment written ahead with the booking's window; a time pass reaches Kisi with its
//! expiry as `valid_until` and is taken away once it expires; a cancellation takes the booking's
//! access away; members left with nothing are suspended or deleted per the no-access policy; a
//! member who keeps a booking and a pass keeps both. It is played on separate `ingest`, `engine`
//! and `writer` processes and, side by side with the same instants, on one `doorsync run` with the
//! embedded log: both must leave Kisi in the same state.
//!
//! Latencies from a change in Nexudus to Kisi are printed (`--nocapture`), never asserted: the
//! machine is shared and noisy. The target is 2 seconds from Nexudus's webhook to Kisi; the
//! benchmarks measure its percentiles.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::{Duration, Instant};

use doorsync_access::NoAccessPolicy;
use doorsync_clock::{Clock, SystemClock};
use doorsync_integration_tests::{Deployment, KisiMember, KisiMembership, Site, eventually};
use doorsync_kisi_sim::GroupAccess;
use doorsync_proto::Timestamp;

/// How long a change may take to reach Kisi before the test gives up: far more than the target
/// of 2 s, for a loaded machine.
const WAIT: Duration = Duration::from_secs(20);
/// doorsync's default lead and lag around bookings.
const LEAD: Duration = Duration::from_secs(15 * 60);
const LAG: Duration = Duration::from_secs(15 * 60);

/// The instants of the scenario, in whole seconds (as Kisi holds them). Sites that play it side
/// by side share one plan, so their Kisi states compare as they are.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Ada's booking of Room A: made 16 minutes ahead, for an hour.
    ada_booking: (Timestamp, Timestamp),
    /// Bo's floor pass expires this soon after the plan is made.
    bo_pass_expires: Timestamp,
    /// Cy's booking of Room B, tomorrow, which Cy keeps.
    cy_booking: (Timestamp, Timestamp),
}

impl Plan {
    fn starting_now() -> Self {
        let next_second = (SystemClock.now().as_unix_millis() / 1_000 + 1) * 1_000;
        let at =
            |minutes: i64, seconds: i64| Timestamp::from_unix_millis(next_second + (minutes * 60 + seconds) * 1_000);
        Self {
            ada_booking: (at(16, 0), at(76, 0)),
            bo_pass_expires: at(0, 25),
            cy_booking: (at(24 * 60, 0), at(25 * 60, 0)),
        }
    }
}

fn plus(at: Timestamp, by: Duration) -> Timestamp {
    Timestamp::from_unix_millis(at.as_unix_millis() + i64::try_from(by.as_millis()).unwrap())
}

fn minus(at: Timestamp, by: Duration) -> Timestamp {
    Timestamp::from_unix_millis(at.as_unix_millis() - i64::try_from(by.as_millis()).unwrap())
}

fn membership(group: &str, from: Option<Timestamp>, until: Option<Timestamp>) -> KisiMembership {
    KisiMembership { group: group.to_owned(), role: "group_basic".to_owned(), valid_from: from, valid_until: until }
}

fn member(name: &str, access_enabled: bool, mut memberships: Vec<KisiMembership>) -> KisiMember {
    memberships.sort();
    KisiMember { email: format!("{}@example.com", name.to_lowercase()), access_enabled, memberships }
}

/// What Kisi holds for a member doorsync gave access to, once they hold nothing connected.
fn left_with_nothing(name: &str, policy: NoAccessPolicy) -> Option<KisiMember> {
    match policy {
        NoAccessPolicy::Suspend => Some(member(name, false, Vec::new())),
        NoAccessPolicy::Delete => None,
        NoAccessPolicy::RemoveMembershipsOnly => Some(member(name, true, Vec::new())),
    }
}

/// Waits until Kisi holds exactly `expected` for the member called `name`.
async fn until_kisi_holds(site: &Site, what: &str, name: &str, expected: Option<KisiMember>, limit: Duration) {
    let reached = eventually(what, limit, || (site.kisi_member(name) == expected).then_some(())).await;
    if let Err(error) = reached {
        panic!("{error}: Kisi holds {:#?}, expected {expected:#?}", site.kisi_member(name));
    }
}

/// Plays the scenario on `site` with the instants of `plan`, checking Kisi after each step, and
/// returns Kisi's state at the end.
async fn play(site: &Site, plan: Plan, policy: NoAccessPolicy, label: &str) -> Vec<KisiMember> {
    let ada = site.add_member("Ada").unwrap();
    let bo = site.add_member("Bo").unwrap();
    let cy = site.add_member("Cy").unwrap();
    // Each new customer fires CoworkerCreate and AccessControlUpdate, answered once stored: after
    // that, the booking's latency is the booking's own.
    eventually("the webhooks about the new members are answered", WAIT, || {
        (site.nexudus.stats().deliveries_succeeded >= 6).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(site.kisi_state(), [], "members who hold nothing connected get no Kisi user");

    // A booking 16 minutes ahead: Ada is in Room A's group from 15 minutes before it starts until
    // 15 minutes after it ends, written at once so that Kisi opens the door on time by itself.
    let (starts, ends) = plan.ada_booking;
    let booked = Instant::now();
    let booking = site.book(ada, site.places.room_a, starts, ends).unwrap();
    let room_a = membership("Room A", Some(minus(starts, LEAD)), Some(plus(ends, LAG)));
    until_kisi_holds(site, "Ada's booking reaches Kisi", "Ada", Some(member("Ada", true, vec![room_a])), WAIT).await;
    let booking_latency = booked.elapsed();
    let ada_user = site.kisi.user_by_email("ada@example.com").unwrap().id;
    let opens = minus(starts, LEAD);
    assert_eq!(
        site.kisi.group_access(ada_user, site.groups.room_a, SystemClock.now()),
        GroupAccess::NotYetValid { from: opens }
    );
    assert!(site.kisi.group_access(ada_user, site.groups.room_a, opens).is_granted());

    // A time pass about to expire: the floor until its expiry, which Kisi enforces by itself.
    let issued = Instant::now();
    site.issue_floor_pass(bo, Some(plan.bo_pass_expires)).unwrap();
    let floor_until_expiry = membership("Coworking floor", None, Some(plan.bo_pass_expires));
    until_kisi_holds(site, "Bo's pass reaches Kisi", "Bo", Some(member("Bo", true, vec![floor_until_expiry])), WAIT)
        .await;
    let pass_latency = issued.elapsed();
    let bo_user = site.kisi.user_by_email("bo@example.com").unwrap().id;
    let just_before = minus(plan.bo_pass_expires, Duration::from_secs(1));
    assert!(site.kisi.group_access(bo_user, site.groups.floor, just_before).is_granted());
    assert_eq!(
        site.kisi.group_access(bo_user, site.groups.floor, plan.bo_pass_expires),
        GroupAccess::Expired { until: plan.bo_pass_expires }
    );

    // Cy books Room B for tomorrow and holds a floor pass that never expires: both stay.
    let (cy_starts, cy_ends) = plan.cy_booking;
    site.book(cy, site.places.room_b, cy_starts, cy_ends).unwrap();
    site.issue_floor_pass(cy, None).unwrap();
    let cy_holds = member(
        "Cy",
        true,
        vec![
            membership("Room B", Some(minus(cy_starts, LEAD)), Some(plus(cy_ends, LAG))),
            membership("Coworking floor", None, None),
        ],
    );
    until_kisi_holds(site, "Cy's booking and pass reach Kisi", "Cy", Some(cy_holds.clone()), WAIT).await;

    // The cancellation takes Room A away; Ada holds nothing else, so the policy applies.
    let cancelled = Instant::now();
    site.cancel_booking(booking).unwrap();
    until_kisi_holds(site, "the cancellation reaches Kisi", "Ada", left_with_nothing("Ada", policy), WAIT).await;
    let cancellation_latency = cancelled.elapsed();

    // Bo's pass expires: the floor is taken away then (never before), and Bo, left with
    // nothing, falls under the policy.
    let expires_in = plan.bo_pass_expires.as_unix_millis() - SystemClock.now().as_unix_millis();
    let limit = WAIT + Duration::from_millis(u64::try_from(expires_in).unwrap_or(0));
    let taken_away_at = eventually("Bo's expired pass is taken away in Kisi", limit, || {
        let floor_left = site.kisi_member("Bo").is_none_or(|bo| bo.memberships.is_empty());
        floor_left.then(|| SystemClock.now())
    })
    .await
    .unwrap();
    assert!(
        taken_away_at >= plan.bo_pass_expires,
        "the floor was taken away at {taken_away_at}, before the pass expired at {}",
        plan.bo_pass_expires
    );
    let expiry_latency = taken_away_at.as_unix_millis() - plan.bo_pass_expires.as_unix_millis();
    until_kisi_holds(
        site,
        "Bo, left with nothing, falls under the policy",
        "Bo",
        left_with_nothing("Bo", policy),
        WAIT,
    )
    .await;

    println!(
        "{label}: Nexudus -> Kisi: booking {} ms, pass {} ms, cancellation {} ms (incl. the no-access policy); \
         pass expiry -> taken away {expiry_latency} ms after it expired (target for changes: 2,000 ms)",
        booking_latency.as_millis(),
        pass_latency.as_millis(),
        cancellation_latency.as_millis(),
    );

    let end = site.kisi_state();
    let mut expected: Vec<KisiMember> =
        [left_with_nothing("Ada", policy), left_with_nothing("Bo", policy), Some(cy_holds)]
            .into_iter()
            .flatten()
            .collect();
    expected.sort();
    assert_eq!(end, expected, "{label}: Kisi's end state");
    end
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_processes_on_jetstream_and_doorsync_run_on_the_embedded_log_leave_kisi_the_same() {
    let (separate, single) = tokio::join!(
        Site::start(Deployment::SeparateProcesses, NoAccessPolicy::Suspend),
        Site::start(Deployment::OneProcess, NoAccessPolicy::Suspend),
    );
    let (separate, single) = (separate.unwrap(), single.unwrap());
    let plan = Plan::starting_now();
    let (separate_end, single_end) = tokio::join!(
        play(&separate, plan, NoAccessPolicy::Suspend, "ingest + engine + writer on JetStream"),
        play(&single, plan, NoAccessPolicy::Suspend, "doorsync run on the embedded log"),
    );
    assert_eq!(separate_end, single_end, "both deployments leave Kisi in the same state");
    for (site, label) in [(&separate, "the engine's page, with its peers"), (&single, "doorsync run's page")] {
        let page = site.status_page("/system").await.unwrap();
        assert!(page.contains("Kisi calls by outcome"), "{label} shows the writer: {page}");
        assert!(
            page.contains("id=\"ingest\"") && !page.contains("No ingestor runs"),
            "{label} shows the ingestor: {page}"
        );
        assert!(!page.contains("could not be asked"), "{label}: {page}");
    }
    let (separate_stopped, single_stopped) = tokio::join!(separate.stop(), single.stop());
    separate_stopped.unwrap();
    single_stopped.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_delete_policy_members_left_with_nothing_lose_their_kisi_user() {
    let site = Site::start(Deployment::SeparateProcesses, NoAccessPolicy::Delete).await.unwrap();
    play(&site, Plan::starting_now(), NoAccessPolicy::Delete, "separate processes, delete policy").await;
    site.stop().await.unwrap();
}
