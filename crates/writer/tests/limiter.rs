//! The writer's limiter judged by the Kisi simulator, whose sliding one-second window answers 429
//! to a request beyond its limit: at Kisi's own 5 requests in any rolling second, a burst of work
//! meets none.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::sync::Arc;

use doorsync_clock::SystemClock;
use support::*;

const MEMBERS: u64 = 10;
/// Kisi's limit, which the simulator enforces.
const KISI_REQUESTS_PER_SECOND: u32 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_work_at_kisi_s_own_limit_meets_no_429() {
    let harness = Harness::with(Arc::new(SystemClock), KISI_REQUESTS_PER_SECOND).await;
    let group = harness.kisi.add_group("Main entrance");
    for member in 1..=MEMBERS {
        harness.send(ensure(member, &email(member))).await;
        harness.send(grant(member, group, None, None)).await;
    }
    let mut options = harness.options("writer-a");
    options.requests_per_second = KISI_REQUESTS_PER_SECOND;
    let writer = harness.start(options).await;
    settled(&writer, 2 * MEMBERS).await;
    writer.shutdown().await;
    let calls = harness.kisi.calls();
    // A creation and an assignment per member, and a few reads: more than three seconds' worth,
    // so the window is full again and again.
    assert!(calls.total() > 3 * u64::from(KISI_REQUESTS_PER_SECOND), "{calls:?}");
    assert_eq!(calls.status(429), 0, "{calls:?}");
    assert_eq!(harness.kisi.assignments().len(), MEMBERS as usize);
}
