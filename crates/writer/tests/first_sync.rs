//! A first sync on a live space, counted against the fewest Kisi calls: the writer reads every
//! user and the managed groups' assignments a page at a time, and matches members by email
//! locally instead of searching Kisi member by member. Run with `--nocapture` for the figures.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::sync::Arc;

use doorsync_clock::SystemClock;
use doorsync_proto::KisiGroupId;
use support::*;

/// Kisi's largest pages: users 100, role assignments 250.
const USERS_PAGE: u64 = 100;
const ASSIGNMENTS_PAGE: u64 = 250;

/// Pages a listing of `items` takes: an empty listing is still one page.
fn pages(items: u64, page: u64) -> u64 {
    items.div_ceil(page).max(1)
}

/// `members` members with a current grant each in one of three groups, `in_kisi` of them
/// already Kisi users (no assignments yet), all commands waiting when the writer starts: the Kisi
/// calls it makes, and the fewest possible: the pages of the users' listing and of each managed
/// group's, a create per member new to Kisi and an assignment per member (the formula; the
/// writer's one `GET /user`, who the key is, counts against it).
async fn first_sync(members: u64, in_kisi: u64) -> (u64, u64) {
    let harness = Harness::with(Arc::new(SystemClock), 100_000).await;
    let groups: [KisiGroupId; 3] = std::array::from_fn(|index| harness.kisi.add_group(&format!("Group {index}")));
    for member in 1..=in_kisi {
        // Kisi's case, not Nexudus's: matched all the same.
        harness.kisi.add_user(&email(member).to_uppercase(), &format!("Member {member}")).unwrap();
    }
    let mut commands = 0;
    for member in 1..=members {
        harness.send_bulk(ensure(member, &email(member))).await;
        harness.send_bulk(grant(member, home_group(member, &groups), None, seconds(2_000_000_000))).await;
        commands += 2;
    }
    let mut options = harness.options("writer-a");
    options.requests_per_second = 5_000;
    options.reconcile_groups = groups.to_vec();
    let writer = harness.start(options).await;
    settled(&writer, commands).await;
    let calls = harness.kisi.calls();
    // The key's owner and the seeded users are in the listing too.
    let users_listed = harness.kisi.users().len() as u64 - (members - in_kisi);
    let group_pages: u64 = groups.iter().map(|_| pages(0, ASSIGNMENTS_PAGE)).sum();
    let fewest = pages(users_listed, USERS_PAGE) + group_pages + (members - in_kisi) + members;
    println!(
        "first sync: {members} members, {in_kisi} already in Kisi: {} Kisi calls (who am I among them), fewest \
         possible {fewest} ({} user pages + {group_pages} group pages + {} creates + {members} assignments): {:.3}x",
        calls.total(),
        pages(users_listed, USERS_PAGE),
        members - in_kisi,
        calls.total() as f64 / fewest as f64
    );
    assert_eq!(calls.endpoint("POST", "/users"), members - in_kisi, "{calls:?}");
    assert_eq!(calls.endpoint("POST", "/role_assignments"), members, "{calls:?}");
    assert_eq!(harness.kisi.assignments().len() as u64, members);
    assert!(harness.dead_letters().await.is_empty());
    writer.shutdown().await;
    (calls.total(), fewest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sync_of_120_members_90_in_kisi_costs_at_most_1_1_times_the_fewest_calls() {
    let (calls, fewest) = first_sync(120, 90).await;
    assert!(calls * 10 <= fewest * 11, "{calls} calls, fewest {fewest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sync_of_1000_members_800_in_kisi_costs_at_most_1_05_times_the_fewest_calls() {
    let (calls, fewest) = first_sync(1_000, 800).await;
    assert!(calls * 100 <= fewest * 105, "{calls} calls, fewest {fewest}");
}
