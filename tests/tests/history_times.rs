//! A member's history says when things happened: a cancellation when Nexudus cancelled the
//! booking (its `CancelledOn`), not when the booking was first read, and what Kisi did when Kisi
//! answered (issue 17, point 2). Against `doorsync run` and both simulators, through the
//! explanation it serves (what `doorsync explain` prints beside it), in the location's local
//! times.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use doorsync_access::NoAccessPolicy;
use doorsync_catalogue::{LocalTimes, zone_named};
use doorsync_clock::{Clock, SystemClock};
use doorsync_integration_tests::{Deployment, Site, eventually};
use doorsync_nexudus::NexudusDateTime;
use doorsync_nexudus_sim::SimEntity;
use doorsync_proto::Timestamp;

const WAIT: Duration = Duration::from_secs(20);

fn later(by: Duration) -> Timestamp {
    let now = SystemClock.now().as_unix_millis();
    Timestamp::from_unix_millis((now / 1_000) * 1_000 + i64::try_from(by.as_millis()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_is_in_the_history_when_nexudus_cancelled_the_booking() {
    let site = Site::start(Deployment::OneProcess, NoAccessPolicy::Suspend).await.unwrap();
    let ada = site.add_member("Ada").unwrap();
    let hour = Duration::from_secs(3_600);
    let booking = site.book(ada, site.places.room_a, later(hour), later(2 * hour)).unwrap();
    let holds_room_a = || site.kisi_member("Ada").is_some_and(|member| !member.memberships.is_empty());
    eventually("Kisi holds Ada's booking", WAIT, || holds_room_a().then_some(())).await.unwrap();
    let booked_on = updated_on(&site.nexudus.record(SimEntity::Booking, booking).unwrap());

    // Seconds later, so that the two cannot be shown as the same time.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let snapshot = site.nexudus.cancel_booking(booking, 1).unwrap();
    let snapshot = site.nexudus.record(SimEntity::CancelledBooking, snapshot).unwrap();
    let cancelled_on = NexudusDateTime::parse(snapshot["CancelledOn"].as_str().unwrap()).unwrap().to_utc().unwrap();
    eventually("Kisi takes Ada's booking away", WAIT, || (!holds_room_a()).then_some(())).await.unwrap();

    let url = format!("http://{}/api/explain/{ada}", site.process("run").unwrap().admin());
    let deadline = tokio::time::Instant::now() + WAIT;
    let explained = loop {
        let explained = reqwest::get(&url).await.unwrap().error_for_status().unwrap().text().await.unwrap();
        // The writer reports the revocation once Kisi answered it.
        if explained.contains(" revoked") || tokio::time::Instant::now() > deadline {
            break explained;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let london = LocalTimes::new(zone_named("Europe/London").unwrap(), SystemClock.now());
    let entry = |what: &str| {
        explained
            .lines()
            .find(|line| line.contains(what))
            .unwrap_or_else(|| panic!("no history entry {what:?} in\n{explained}"))
            .split_whitespace()
            .next()
            .map(str::to_owned)
    };
    assert!(explained.contains("History (times in Europe/London)"), "{explained}");
    assert_eq!(entry(&format!("booking {booking} cancelled")), Some(london.time(cancelled_on)), "{explained}");
    assert_ne!(london.time(cancelled_on), london.time(booked_on));
    assert!(
        entry("revoked").is_some_and(|at| at != london.time(booked_on)),
        "Kisi revoked after the cancellation: {explained}"
    );
}

fn updated_on(record: &serde_json::Value) -> Timestamp {
    NexudusDateTime::parse(record["UpdatedOn"].as_str().unwrap()).unwrap().to_utc().unwrap()
}
