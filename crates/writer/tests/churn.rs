//! Figures: how many Kisi calls a realistic command stream costs against the fewest possible.
//! Run with `--nocapture` to see them.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::sync::Arc;

use doorsync_clock::SystemClock;
use doorsync_proto::KisiGroupId;
use support::*;

const MEMBERS: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_members_with_grant_and_revoke_churn_cost_the_fewest_calls() {
    let harness = Harness::with(Arc::new(SystemClock), 100_000).await;
    let groups: [KisiGroupId; 3] = std::array::from_fn(|index| harness.kisi.add_group(&format!("Group {index}")));
    let backlog = outage_backlog(MEMBERS, &groups);
    let mut commands = backlog.len() as u64;
    // An outage's backlog is bulk work: the writer reads Kisi's users first and searches none.
    for command in backlog {
        harness.send_bulk(command).await;
    }
    let mut options = harness.options("writer-a");
    options.requests_per_second = 5_000;
    let writer = harness.start(options).await;
    settled(&writer, commands).await;
    // Who am I, the users' page, then per member a create and one assignment.
    let fewest = 2 + 2 * MEMBERS;
    let backlog_calls = harness.kisi.calls().total();
    println!(
        "backlog: {commands} commands for {MEMBERS} members: {backlog_calls} Kisi calls, fewest possible {fewest}"
    );
    // A revocation goes before bulk work like a live change, and so does the user of its member:
    // a member who leaves its second group (a quarter of them) may be searched in Kisi before the
    // users' page is read.
    let searched_at_most = MEMBERS.div_ceil(4);
    assert!((fewest..=fewest + searched_at_most).contains(&backlog_calls), "{:?}", harness.kisi.calls());
    assert_eq!(harness.kisi.assignments().len(), MEMBERS as usize);

    // Live churn: three rounds of new windows for every member, appended while the writer works.
    harness.kisi.reset_calls();
    let rounds = 3;
    for round in 1..=rounds {
        for member in 1..=MEMBERS {
            let until = seconds(2_000_086_400 + round * 3_600);
            harness.send(grant(member, home_group(member, &groups), None, until)).await;
            commands += 1;
        }
    }
    settled(&writer, commands).await;
    let live_calls = harness.kisi.calls().total();
    // Each window change costs two calls: a PATCH and its read-back where Kisi applies it, or (as
    // the simulator by default, like a Kisi that ignores it) a delete and a create once the first
    // PATCH was read back unchanged, which costs two more.
    let (fewest, at_most) = (2 * MEMBERS, 2 * u64::try_from(rounds).unwrap() * MEMBERS + 2);
    println!(
        "live churn: {} window changes for {MEMBERS} members: {live_calls} Kisi calls, fewest possible {fewest}, \
         two per command {at_most}",
        at_most / 2
    );
    assert!((fewest..=at_most).contains(&live_calls), "{live_calls}");
    let final_until = seconds(2_000_086_400 + rounds * 3_600);
    assert!(harness.kisi.assignments().iter().all(|assignment| assignment.valid_until == final_until));
    writer.shutdown().await;
}
