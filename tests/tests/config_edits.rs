//! An operator edits doorsync's configuration and restarts it, with nothing changed in Nexudus:
//! Kisi must follow the new configuration for every member it concerns.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use doorsync_access::NoAccessPolicy;
use doorsync_clock::{Clock, SystemClock};
use doorsync_integration_tests::{Deployment, KisiMember, Site, eventually};
use doorsync_nexudus_sim::SimEntity;
use doorsync_proto::Timestamp;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn minutes_from_now(minutes: i64) -> Timestamp {
    Timestamp::from_unix_millis(SystemClock.now().as_unix_millis() + minutes * 60_000)
}

fn groups_of(member: &KisiMember) -> Vec<String> {
    member.memberships.iter().map(|membership| membership.group.clone()).collect()
}

async fn until(site: &Site, what: &str, name: &str, holds: impl Fn(Option<&KisiMember>) -> bool) {
    let reached = eventually(what, WAIT, || holds(site.kisi_member(name).as_ref()).then_some(())).await;
    if let Err(error) = reached {
        panic!("{error}: Kisi holds {:#?} for {name}", site.kisi_member(name));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_an_edited_configuration_changes_kisi_with_nothing_changed_in_nexudus() {
    let mut site = Site::start(Deployment::OneProcess, NoAccessPolicy::Suspend).await.unwrap();
    let day_pass = site
        .nexudus
        .create(SimEntity::TimePass, json!({"Name": "Day pass", "BusinessId": site.places.business}))
        .unwrap();

    let ada = site.add_member("Ada").unwrap();
    site.book(ada, site.places.room_a, minutes_from_now(-5), minutes_from_now(60)).unwrap();
    let bo = site.add_member("Bo").unwrap();
    let pass = json!({"CoworkerId": bo, "TimePassId": day_pass, "BusinessId": site.places.business,
        "Used": false, "ExpireDate": null});
    site.nexudus.create(SimEntity::CoworkerTimePass, pass).unwrap();
    let cy = site.add_member("Cy").unwrap();
    let cy_booking = site.book(cy, site.places.room_b, minutes_from_now(-5), minutes_from_now(60)).unwrap();

    until(&site, "Ada is let into Room A", "Ada", |kisi| kisi.is_some_and(|ada| groups_of(ada) == ["Room A"])).await;
    until(&site, "Cy is let into Room B", "Cy", |kisi| kisi.is_some_and(|cy| groups_of(cy) == ["Room B"])).await;
    site.cancel_booking(cy_booking).unwrap();
    until(&site, "Cy is suspended", "Cy", |kisi| kisi.is_some_and(|cy| !cy.access_enabled)).await;
    assert_eq!(site.kisi_member("Bo"), None, "the day pass opens nothing yet");

    let (room_a, group_a, group_b, floor) =
        (site.places.room_a, site.groups.room_a, site.groups.room_b, site.groups.floor);
    site.edit_config(|text| {
        let relinked = text
            .replace(
                &format!("resource = {room_a}\nkisi_group = {group_a}"),
                &format!("resource = {room_a}\nkisi_group = {group_b}"),
            )
            .replace("no_access = \"suspend\"", "no_access = \"delete\"");
        assert_ne!(relinked, text, "the configuration has the lines the test edits");
        format!("{relinked}\n[[mapping]]\npass_product = {day_pass}\nkisi_group = {floor}\n")
    })
    .unwrap();
    site.stop_process("run").await.unwrap();
    site.restart("run").await.unwrap();

    until(&site, "Room A's bookings open Room B's group", "Ada", |kisi| {
        kisi.is_some_and(|ada| groups_of(ada) == ["Room B"])
    })
    .await;
    until(&site, "the newly connected pass opens the floor", "Bo", |kisi| {
        kisi.is_some_and(|bo| groups_of(bo) == ["Coworking floor"])
    })
    .await;
    until(&site, "Cy, left with nothing, is deleted", "Cy", |kisi| kisi.is_none()).await;
    site.stop().await.unwrap();
}
