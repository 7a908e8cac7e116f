//! The front desk's search: members found by a part of their name or email and by what they can
//! open now or soon, across partitions, a page at a time, and still after a restart that left
//! them passivated.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed step should stop the test loudly")]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use doorsync_clock::ManualClock;
use doorsync_engine::{EngineHandle, ListingFilter, MemberMatches, MemberSearch};
use doorsync_proto::{KisiGroupId, MemberId, Partition, ResourceId};
use support::*;

const MEMBERS: u64 = 60;

async fn find(engine: &EngineHandle, text: &str, filter: Option<ListingFilter>, skip: usize) -> MemberMatches {
    let search = MemberSearch { text: text.into(), filter, skip, ..MemberSearch::everyone(at(0), 10) };
    engine.find(&search).await.unwrap()
}

fn ids(matches: &MemberMatches) -> Vec<u64> {
    matches.listings.iter().map(|listing| listing.member.0).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_found_by_name_email_and_access_across_partitions_and_after_a_restart() {
    let layout = layout();
    let store = embedded_log(&layout);
    let clock = ManualClock::new(at(0));
    for id in 1..=MEMBERS {
        append(&store.log, &layout, at(0), member(id)).await;
    }
    // Member 7 is in now, member 8 from two hours on, member 9 from tomorrow.
    append(&store.log, &layout, at(0), booking(7, 70, 1, -30, 30)).await;
    append(&store.log, &layout, at(0), booking(8, 80, 1, 120, 180)).await;
    append(&store.log, &layout, at(0), booking(9, 90, 1, 24 * 60, 25 * 60)).await;
    let partitions: BTreeSet<Partition> = (1..=MEMBERS).map(|id| layout.subjects.partition_of(MemberId(id))).collect();
    assert!(partitions.len() > 1, "the members should span partitions: {partitions:?}");

    let mut options = options("a", &layout);
    options.mapping.resources.insert(ResourceId(1), KisiGroupId(100));
    let engine = start(options.clone(), &store.log, &clock).await;
    wait_until("every member is listed", || {
        let engine = engine.clone();
        async move { find(&engine, "", None, 0).await.total == MEMBERS as usize }
    })
    .await;
    check_searches(&engine).await;
    engine.shutdown().await;

    // After a restart from the checkpoint nobody is evaluated: the listings come from snapshots.
    let restarted = start(options, &store.log, &clock).await;
    wait_until("every member is listed again from the snapshots", || {
        let engine = restarted.clone();
        async move { find(&engine, "", None, 0).await.unlisted == 0 }
    })
    .await;
    check_searches(&restarted).await;
    restarted.shutdown().await;
}

async fn check_searches(engine: &EngineHandle) {
    let everyone = find(engine, "", None, 0).await;
    assert_eq!((everyone.total, ids(&everyone)), (MEMBERS as usize, (1..=10).collect()), "the first page by id");
    let third_page = find(engine, "", None, 20).await;
    assert_eq!(ids(&third_page), (21..=30).collect::<Vec<_>>(), "pages cut across the partitions");

    let by_name = find(engine, "MEMBER 1", None, 0).await;
    assert_eq!(by_name.total, 11, "1 and 10 to 19: {:?}", ids(&by_name));
    assert_eq!(ids(&find(engine, "m42@EXAMPLE", None, 0).await), vec![42], "by email, ignoring case");

    let now = find(engine, "", Some(ListingFilter::AccessNow), 0).await;
    assert_eq!(ids(&now), vec![7]);
    let listing = &now.listings[0];
    assert!(listing.grants.contains_key(&KisiGroupId(100)) && listing.name() == Some("Member 7"));
    let soon = find(engine, "", Some(ListingFilter::OpensSoon), 0).await;
    assert_eq!(ids(&soon), vec![8], "tomorrow's booking is not soon");
    let not_soon = MemberSearch { soon: Duration::from_secs(3_600), ..MemberSearch::everyone(at(0), 10) };
    let not_soon = MemberSearch { filter: Some(ListingFilter::OpensSoon), ..not_soon };
    assert!(engine.find(&not_soon).await.unwrap().listings.is_empty());
    assert_eq!(find(engine, "", Some(ListingFilter::SuspendedInKisi), 0).await.total, 0);
}
