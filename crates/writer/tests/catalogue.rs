//! The writer names the Kisi groups it manages in the catalogue, from the group listing it reads
//! when it learns the account, and leaves the others out.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::sync::Arc;

use doorsync_catalogue::Catalogue;
use doorsync_clock::SystemClock;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_managed_groups_are_named_in_the_catalogue_as_kisi_names_them() {
    let harness = Harness::with(Arc::new(SystemClock), 50).await;
    let entrance = harness.kisi.add_group("Main entrance");
    let room = harness.kisi.add_group("Meeting Room 1");
    let staff = harness.kisi.add_group("Staff only");
    let mut options = harness.options("writer-a");
    options.reconcile_groups = vec![entrance, room];
    let writer = harness.start(options).await;

    harness.send(ensure(1, &email(1))).await;
    harness.send(grant(1, entrance, None, seconds(2_000_000_000))).await;
    settled(&writer, 2).await;

    let catalogue = Catalogue::read(harness.log.as_ref(), &harness.layout).await.unwrap();
    assert_eq!(catalogue.group(entrance), Some("Main entrance"));
    assert_eq!(catalogue.group_label(room).with_id(), format!("Meeting Room 1 (Kisi group {room})"));
    assert_eq!(catalogue.group(staff), None, "a group doorsync does not manage is not its business");
    writer.shutdown().await;
}
