//! Two engines on one real nats-server split the partitions between them through leases, never
//! hold the same partition at once, and one takes over the other's partitions when it stops.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed step should stop the test loudly")]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use doorsync_clock::SystemClock;
use doorsync_engine::EngineHandle;
use doorsync_layout::Layout;
use doorsync_log::EventLog;
use doorsync_log_jetstream::{JetStreamLog, JetStreamOptions};
use doorsync_proto::{Command, MemberId, Partition, Subjects};
use doorsync_test_support::NatsServer;
use support::*;

const PARTITIONS: u32 = 8;

async fn connect(server: &NatsServer, layout: &Layout) -> Arc<dyn EventLog> {
    Arc::new(JetStreamLog::connect(JetStreamOptions::new(server.url(), layout.streams())).await.unwrap())
}

async fn start_engine(id: &str, layout: &Layout, log: &Arc<dyn EventLog>) -> EngineHandle {
    let mut options = options(id, layout);
    options.settings.lease_ttl = Duration::from_millis(1_500);
    doorsync_engine::start(options, Arc::clone(log), Arc::new(SystemClock)).await.unwrap()
}

/// Ownership sampled from both engines must never overlap.
async fn owned(a: &EngineHandle, b: &EngineHandle) -> (BTreeSet<Partition>, BTreeSet<Partition>) {
    let a_owns: BTreeSet<Partition> = a.owned_partitions().await.into_iter().collect();
    let b_owns: BTreeSet<Partition> = b.owned_partitions().await.into_iter().collect();
    assert!(a_owns.is_disjoint(&b_owns), "both engines hold {:?}", a_owns.intersection(&b_owns).collect::<Vec<_>>());
    (a_owns, b_owns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_split_the_partitions_and_one_takes_over_when_the_other_stops() {
    let server = NatsServer::start().await.unwrap();
    let layout = Layout::new(Subjects::new("test", PARTITIONS).unwrap());
    let log_a = connect(&server, &layout).await;
    let log_b = connect(&server, &layout).await;
    let now = doorsync_clock::Clock::now(&SystemClock).as_unix_millis();
    let in_minutes = |minutes: i64| now + minutes * MINUTE;
    append(&log_a, &layout, doorsync_proto::Timestamp::from_unix_millis(now), mapping(1, 100)).await;

    let a = start_engine("engine-a", &layout, &log_a).await;
    let b = start_engine("engine-b", &layout, &log_b).await;
    // Watches ownership all through the test, the hand-overs included.
    let sampler = {
        let (a, b) = (a.clone(), b.clone());
        tokio::spawn(async move {
            let mut samples = 0u64;
            loop {
                owned(&a, &b).await;
                samples += 1;
                if samples > 20
                    && b.owned_partitions().await.is_empty()
                    && a.owned_partitions().await.len() == PARTITIONS as usize
                {
                    return samples;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // The first engine took everything; the second's arrival makes it give half back.
    let mut balanced = false;
    for _ in 0..200 {
        let (a_owns, b_owns) = owned(&a, &b).await;
        if a_owns.len() == 4 && b_owns.len() == 4 {
            balanced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(balanced, "the engines never split the partitions evenly");

    // Members on every partition get their commands from whichever engine owns them, once.
    let members: Vec<u64> = (1..=16).collect();
    for &id in &members {
        let at_now = doorsync_proto::Timestamp::from_unix_millis(now);
        append(&log_a, &layout, at_now, member(id)).await;
        let event = booking(id, id, 1, 0, 60);
        let event = match event {
            doorsync_proto::Event::BookingChanged(mut changed) => {
                changed.starts_at = doorsync_proto::Timestamp::from_unix_millis(in_minutes(30));
                changed.ends_at = doorsync_proto::Timestamp::from_unix_millis(in_minutes(90));
                doorsync_proto::Event::BookingChanged(changed)
            }
            other => other,
        };
        append(&log_a, &layout, at_now, event).await;
    }
    for &id in &members {
        let commands = settled_commands_for(&log_a, &layout, MemberId(id), 2).await;
        assert_eq!(commands.len(), 2, "member {id}: {commands:?}");
        assert!(matches!(commands[1], Command::GrantGroup(_)));
    }

    b.shutdown().await;
    let mut taken_over = false;
    for _ in 0..400 {
        let a_owns: BTreeSet<Partition> = a.owned_partitions().await.into_iter().collect();
        if a_owns.len() == PARTITIONS as usize {
            taken_over = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(taken_over, "the remaining engine never took over every partition");
    let samples = tokio::time::timeout(Duration::from_secs(10), sampler).await.unwrap().unwrap();
    assert!(samples > 20);
    wait_until("the remaining engine catches up", || {
        let a = a.clone();
        async move { a.caught_up().await }
    })
    .await;
    // Taking over re-read the partitions; nothing was emitted twice.
    for &id in &members {
        assert_eq!(commands_for(&log_a, &layout, MemberId(id)).await.len(), 2, "member {id}");
    }
    let state = a.member(MemberId(members[0])).await.unwrap().unwrap();
    assert_eq!(state.member(), MemberId(members[0]));
    a.shutdown().await;
}
