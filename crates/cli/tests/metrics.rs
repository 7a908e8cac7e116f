//! `/metrics` of a real `doorsync run` against simulated Kisi and Nexudus: after a booking that
//! reached doorsync after its window opened, the operator's metrics are there and have moved, and
//! both dependencies are reported up.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::time::Duration;

use doorsync_nexudus_sim::SimEntity;
use serde_json::json;
use support::{ADMIN_TOKEN, Doorsync, Site, minutes_from, nexudus_time, now, wait_until};

async fn scrape(doorsync: &Doorsync) -> String {
    let response = reqwest::Client::new()
        .get(format!("http://{}/metrics", doorsync.admin))
        .bearer_auth(ADMIN_TOKEN)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "/metrics answered {}", response.status());
    response.text().await.unwrap()
}

/// The value of the sample named exactly `series` (name and labels), if it is there.
fn sample(scraped: &str, series: &str) -> Option<f64> {
    scraped.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answer_the_operators_questions_about_limits_window_edges_and_replay() {
    let site = Site::start().await;
    let room_doors = site.kisi().add_group("Room 1 doors");
    let nexudus = &site.nexudus;
    let business = nexudus.create_location("Soho", "GMT Standard Time").unwrap();
    let room = nexudus.create(SimEntity::Resource, json!({"BusinessId": business, "Name": "Room 1"})).unwrap();
    let doorsync = site.run_doorsync(&format!("[[mapping]]\nresource = {room}\nkisi_group = {}\n", room_doors.0)).await;
    site.register_webhooks(&doorsync);

    let ada = nexudus
        .create(SimEntity::Coworker, json!({"FullName": "Ada", "Email": "ada@example.com", "Active": true}))
        .unwrap();
    // Booked after it began: its window opened 45 minutes ago (15 minutes' lead).
    let start = now();
    let fields = json!({"ResourceId": room, "CoworkerId": ada, "Tentative": false,
        "FromTime": nexudus_time(minutes_from(start, -30)), "ToTime": nexudus_time(minutes_from(start, 30))});
    nexudus.create(SimEntity::Booking, fields).unwrap();

    let edge_lag_count = "doorsync_writer_window_edge_lag_seconds_count";
    wait_until("the late grant is counted by how late it was", || async {
        sample(&scrape(&doorsync).await, edge_lag_count) == Some(1.0)
    })
    .await;
    let scraped = scrape(&doorsync).await;

    assert!(scraped.contains("# TYPE doorsync_writer_window_edge_lag_seconds histogram"), "{scraped}");
    let late_by = sample(&scraped, "doorsync_writer_window_edge_lag_seconds_sum").unwrap();
    assert!(late_by >= 45.0 * 60.0, "written at least 45 minutes after its edge, not {late_by} s:\n{scraped}");
    assert_eq!(sample(&scraped, "doorsync_writer_window_edge_lag_seconds_bucket{le=\"+Inf\"}"), Some(1.0));

    // Finding and creating the user and the assignment: the Kisi budget was used.
    assert!(sample(&scraped, "doorsync_kisi_limiter_budget_used_seconds_total").unwrap() > 0.0, "{scraped}");
    for series in [
        "doorsync_kisi_limiter_waits_total",
        "doorsync_kisi_limiter_waited_seconds_total",
        "doorsync_nexudus_limiter_waits_total",
        "doorsync_nexudus_limiter_waited_seconds_total",
    ] {
        assert!(sample(&scraped, series).is_some(), "no {series} in:\n{scraped}");
    }
    // Both simulators answer: each dependency is up, in one family.
    for dependency in ["nexudus", "kisi"] {
        let series = format!("doorsync_dependency_up{{dependency=\"{dependency}\"}}");
        assert_eq!(sample(&scraped, &series), Some(1.0), "{series} in:\n{scraped}");
    }
    assert_eq!(scraped.matches("# HELP doorsync_dependency_up ").count(), 1, "{scraped}");
    // Four partitions, all caught up: nothing left to replay.
    for partition in 0..4 {
        let behind = format!("doorsync_engine_replay_behind_messages{{partition=\"{partition}\"}}");
        assert_eq!(sample(&scraped, &behind), Some(0.0), "{behind} in:\n{scraped}");
        let replaying = format!("doorsync_engine_replay_seconds{{partition=\"{partition}\"}}");
        assert!(sample(&scraped, &replaying).is_some(), "no {replaying} in:\n{scraped}");
    }

    assert!(doorsync.stop().await.success());
    site.stop().await;
}
