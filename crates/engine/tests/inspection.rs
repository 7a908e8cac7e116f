//! What an engine tells the status page about itself: its members (passivated ones included),
//! the mapping it evaluates them with, and its configured mapping and policy.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed step should stop the test loudly")]

mod support;

use std::time::Duration;

use doorsync_access::{AccessPolicy, Mapping};
use doorsync_clock::ManualClock;
use doorsync_proto::{KisiGroupId, MemberId, ResourceId};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_listed_in_id_order_from_every_partition_passivated_or_not() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    let ids = [12, 3, 7, 40, 5];
    for id in ids {
        append(&store.log, &layout, at(0), member(id)).await;
    }
    let partitions: std::collections::BTreeSet<doorsync_proto::Partition> =
        ids.iter().map(|id| layout.subjects.partition_of(MemberId(*id))).collect();
    assert!(partitions.len() > 1, "the members should span partitions: {partitions:?}");

    let mut options = options("a", &layout);
    options.settings.passivate_after = Duration::from_secs(60);
    let engine = start(options, &store.log, &clock).await;
    let expected: Vec<MemberId> = [3, 5, 7, 12, 40].into_iter().map(MemberId).collect();
    assert_eq!(engine.members().await.unwrap(), expected);

    clock.advance(Duration::from_secs(120));
    wait_until("every member is passivated", || {
        let engine = engine.clone();
        async move { engine.stats().await.iter().all(|shard| shard.live_members == 0) }
    })
    .await;
    assert_eq!(engine.members().await.unwrap(), expected, "passivated members are still known");

    append(&store.log, &layout, at(3), member(1)).await;
    wait_until("a new member is listed", || {
        let engine = engine.clone();
        async move { engine.members().await.unwrap().first() == Some(&MemberId(1)) }
    })
    .await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mapping_is_the_configured_one_laid_over_the_mapping_events() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    append(&store.log, &layout, at(0), mapping(1, 100)).await;
    append(&store.log, &layout, at(0), mapping(2, 200)).await;

    let mut options = options("a", &layout);
    options.mapping.resources.insert(ResourceId(2), KisiGroupId(222));
    options.policy = AccessPolicy { booking_lead_ms: 5 * MINUTE, ..AccessPolicy::default() };
    let configured = options.mapping.clone();
    let policy = options.policy.clone();
    let engine = start(options, &store.log, &clock).await;

    assert_eq!(engine.configured_mapping(), &configured);
    assert_eq!(engine.policy(), &policy);
    let expected = |groups: &[(u64, u64)]| Mapping {
        resources: groups.iter().map(|(resource, group)| (ResourceId(*resource), KisiGroupId(*group))).collect(),
        ..Mapping::default()
    };
    assert_eq!(engine.mapping().await.unwrap(), expected(&[(1, 100), (2, 222)]), "the configuration wins");

    append(&store.log, &layout, at(1), mapping(3, 300)).await;
    wait_until("a mapping event while running is taken in", || {
        let engine = engine.clone();
        async move { engine.mapping().await.unwrap().resources.contains_key(&ResourceId(3)) }
    })
    .await;
    assert_eq!(engine.mapping().await.unwrap(), expected(&[(1, 100), (2, 222), (3, 300)]));
    engine.shutdown().await;
}
