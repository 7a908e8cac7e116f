//! A record whose new version cannot be read stops granting what its earlier version granted:
//! `doorsync run` against the Nexudus and Kisi simulators over loopback HTTP, in real time.
//!
//! Before, the unreadable version was parked and the earlier one went on granting, possibly for
//! months: a contract cancelled after its desk was deleted kept its holder in the desk's group.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use doorsync_access::NoAccessPolicy;
use doorsync_clock::{Clock, SystemClock};
use doorsync_integration_tests::{Deployment, KisiMember, KisiMembership, Site, eventually};
use doorsync_nexudus::NexudusDateTime;
use doorsync_nexudus_sim::SimEntity;
use doorsync_proto::Timestamp;
use serde_json::json;

/// Far more than a change takes to reach Kisi, for a loaded machine.
const WAIT: Duration = Duration::from_secs(30);

fn nexudus_time(at: Timestamp) -> String {
    NexudusDateTime::from_utc(at).unwrap().to_string()
}

async fn until_kisi_holds(site: &Site, what: &str, expected: Option<KisiMember>) {
    let reached = eventually(what, WAIT, || (site.kisi_member("Ada") == expected).then_some(())).await;
    if let Err(error) = reached {
        panic!("{error}: Kisi holds {:#?}, expected {expected:#?}", site.kisi_member("Ada"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_whose_cancellation_names_a_deleted_desk_is_cancelled_in_kisi() {
    let mut site = Site::start(Deployment::OneProcess, NoAccessPolicy::Suspend).await.unwrap();
    // A desk connected to the coworking floor's group, as an operator adds it.
    let desk = site.nexudus.create(SimEntity::FloorPlanDesk, json!({"Name": "Desk 7", "ItemType": 2})).unwrap();
    let floor = site.groups.floor;
    site.edit_config(|text| format!("{text}\n[[mapping]]\nfloor_plan_item = {desk}\nkisi_group = {floor}\n")).unwrap();
    site.stop_process("run").await.unwrap();
    site.restart("run").await.unwrap();

    let ada = site.add_member("Ada").unwrap();
    // Yesterday, in whole seconds as Nexudus and Kisi hold it.
    let started = Timestamp::from_unix_millis((SystemClock.now().as_unix_millis() / 1_000 - 24 * 3_600) * 1_000);
    let contract_fields = json!({"CoworkerId": ada, "IssuedById": site.places.business,
        "StartDate": nexudus_time(started), "Active": true, "Desks": [desk], "FloorPlanDeskIds": desk.to_string()});
    let contract = site.nexudus.create(SimEntity::CoworkerContract, contract_fields).unwrap();
    let at_the_desk = KisiMembership {
        group: "Coworking floor".to_owned(),
        role: "group_basic".to_owned(),
        valid_from: Some(started),
        valid_until: None,
    };
    let holds_the_desk =
        KisiMember { email: "ada@example.com".to_owned(), access_enabled: true, memberships: vec![at_the_desk] };
    until_kisi_holds(&site, "the contract reaches Kisi", Some(holds_the_desk)).await;

    // The desk goes, and the contract is cancelled as of now: its new version names a desk
    // Nexudus no longer has, so it cannot be read.
    let delivered = site.nexudus.stats().deliveries_succeeded;
    site.nexudus.delete(SimEntity::FloorPlanDesk, desk).unwrap();
    eventually("the desk's deletion is delivered", WAIT, || {
        (site.nexudus.stats().deliveries_succeeded > delivered).then_some(())
    })
    .await
    .unwrap();
    let cancellation = json!({"CancellationDate": nexudus_time(SystemClock.now())});
    site.nexudus.update(SimEntity::CoworkerContract, contract, cancellation).unwrap();

    let suspended = KisiMember { email: "ada@example.com".to_owned(), access_enabled: false, memberships: Vec::new() };
    until_kisi_holds(&site, "the unreadable cancellation takes the desk away", Some(suspended)).await;
    let page = site.status_page("/system").await.unwrap();
    assert!(page.contains(&format!("CoworkerContract {contract}")), "the contract is parked: {page}");
    assert!(
        page.contains(&format!("what it granted to <a href=\"/members/{ada}\">")),
        "the status page says whom it withdrew access from: {page}"
    );
    site.stop().await.unwrap();
}
