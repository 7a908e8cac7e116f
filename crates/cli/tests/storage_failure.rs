//! A disk that refuses writes under `doorsync run`: the embedded log refuses everything from the
//! first failed write, `/healthz` fails so that the process is restarted, and `/readyz` says why.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::time::Duration;

use doorsync_nexudus_sim::SimEntity;
use serde_json::json;
use support::{Site, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_write_healthz_fails_and_readyz_says_why() {
    let site = Site::start().await;
    let doorsync = site.run_doorsync_where_a_full_disk_fails_writes("").await;
    site.register_webhooks(&doorsync);
    let client = reqwest::Client::new();
    let probe = |path: &'static str| {
        let request = client.get(format!("http://{}{path}", doorsync.admin)).timeout(Duration::from_secs(5)).send();
        async move {
            let response = request.await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(probe("/healthz").await.0, 200);

    // The file may not grow any more: the next write that needs more room fails.
    let size = std::fs::metadata(site.log_path()).unwrap().len();
    let limited = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", doorsync.pid()))
        .arg(format!("--fsize={size}"))
        .status()
        .unwrap();
    assert!(limited.success(), "prlimit could not limit the file size");
    let mut members = 0_u32;
    wait_until("/healthz fails after the log's write failed", || {
        members += 1;
        let name = format!("Member {members} {}", "x".repeat(4_000));
        let email = format!("member{members}@example.com");
        site.nexudus.create(SimEntity::Coworker, json!({"FullName": name, "Email": email, "Active": true})).unwrap();
        let health = probe("/healthz");
        async move { health.await.0 == 503 }
    })
    .await;

    let (status, health) = probe("/healthz").await;
    assert_eq!(status, 503);
    assert!(health.contains("failed until restarted: log:") && health.contains("restart doorsync"), "{health}");
    let (status, ready) = probe("/readyz").await;
    assert_eq!(status, 503);
    assert!(ready.contains("a write failed"), "/readyz says why: {ready}");
    assert!(doorsync.log().contains("embedded log: a write failed"), "and the log says it");
    site.stop().await;
}
