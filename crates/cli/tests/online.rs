//! `doorsync check-config --online` and `doorsync mapping suggest` against simulated Nexudus and
//! Kisi accounts: names on both sides, each problem with what to fix, and suggested entries that
//! load as the configuration's mapping.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod accounts;

use accounts::{Accounts, run, text};
use doorsync_config::MappingEntry;
use doorsync_proto::KisiGroupId;

fn mapping(source: &str, id: u64, group: u64) -> String {
    format!("[[mapping]]\n{source} = {id}\nkisi_group = {group}\n\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_configuration_passes_online_with_both_sides_named() {
    let accounts = Accounts::start().await;
    let config = accounts.config(&format!(
        "{}{}[[mapping]]\nfloor_plan_item = {}\nkisi_group_name = \"Desk #5\"\n",
        mapping("resource", accounts.room, accounts.room_group.0),
        mapping("pass_product", accounts.day_pass, accounts.pass_group.0),
        accounts.desk
    ));

    let output = run(&config, &["check-config", "--online"], &[]).await;

    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("Nexudus: logged in; it lists 1 resource, 1 pass product, 1 desk or office"), "{stdout}");
    assert!(stdout.contains("Kisi: the API key works"), "{stdout}");
    let (room, pass, desk) = (accounts.room, accounts.day_pass, accounts.desk);
    let (room_group, pass_group, desk_group) = (accounts.room_group, accounts.pass_group, accounts.desk_group);
    for line in [
        format!("mapping[0]: resource {room} \"Meeting Room 1\" -> Kisi group {room_group} \"meeting room 1\""),
        format!("mapping[1]: pass product {pass} \"Day Pass\" -> Kisi group {pass_group} \"Day Pass\""),
        format!("mapping[2]: desk or office {desk} \"Desk 5\" -> Kisi group {desk_group} \"Desk #5\""),
    ] {
        assert!(stdout.contains(&line), "{line}\n{stdout}");
    }
    assert!(stdout.contains("no-access policy suspend"), "{stdout}");
    for debug_form in ["Embedded", "Suspend", "900s", "Duration", "Some("] {
        assert!(!stdout.contains(debug_form), "{debug_form} in {stdout}");
    }
    accounts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_group_a_wrong_kisi_key_and_a_wrong_nexudus_password_each_say_what_to_fix() {
    let accounts = Accounts::start().await;
    let config = accounts.config(&format!(
        "{}{}",
        mapping("resource", accounts.room, accounts.room_group.0),
        mapping("pass_product", accounts.day_pass, 999_999)
    ));

    let missing_group = run(&config, &["check-config", "--online"], &[]).await;
    assert!(!missing_group.status.success());
    let stderr = text(&missing_group.stderr);
    assert!(
        stderr.contains("mapping[1]: Kisi group 999999 does not exist or this API key cannot see it: check the id in mapping[1].kisi_group"),
        "{stderr}"
    );
    assert!(stderr.contains("1 problem found online"), "{stderr}");

    let wrong_key = run(&config, &["check-config", "--online"], &[("KISI_API_KEY", "not-the-key")]).await;
    assert!(!wrong_key.status.success());
    let stderr = text(&wrong_key.stderr);
    assert!(
        stderr.contains("Kisi refused the API key: check the key in kisi.api_key_file (or KISI_API_KEY)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("not-the-key") && !text(&wrong_key.stdout).contains("not-the-key"),
        "the key is never printed"
    );

    let wrong_password = run(&config, &["check-config", "--online"], &[("NEXUDUS_PASSWORD", "not-the-password")]).await;
    assert!(!wrong_password.status.success());
    let stderr = text(&wrong_password.stderr);
    assert!(
        stderr.contains("Nexudus refused the login: check nexudus.username (or NEXUDUS_USERNAME) and the password"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password"), "the password is never printed");
    accounts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suggested_entries_load_as_the_mapping_and_link_each_item_to_the_group_of_its_name() {
    let accounts = Accounts::start().await;
    let config = accounts.config("");

    let output = run(&config, &["mapping", "suggest"], &[]).await;

    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", text(&output.stderr));
    let suggested = accounts.config(&stdout);
    let loaded = doorsync_config::Config::load(Some(&suggested)).expect("the printed entries load");
    let linking = |source: fn(&mut MappingEntry, u64), id: u64, group: KisiGroupId| {
        let mut entry = MappingEntry {
            resource: None,
            pass_product: None,
            floor_plan_item: None,
            kisi_group: Some(group.0),
            kisi_group_name: None,
        };
        source(&mut entry, id);
        entry
    };
    let expected = [
        linking(|entry, id| entry.resource = Some(id), accounts.room, accounts.room_group),
        linking(|entry, id| entry.pass_product = Some(id), accounts.day_pass, accounts.pass_group),
        linking(|entry, id| entry.floor_plan_item = Some(id), accounts.desk, accounts.desk_group),
    ];
    assert_eq!(loaded.mapping, expected, "{stdout}");
    let staff = format!("#   group {} \"Staff only\"", accounts.staff_group);
    assert!(stdout.contains(&staff), "the unmatched group is listed: {stdout}");
    // Debug logs were asked for: they went to stderr, and stdout holds only TOML.
    assert!(
        stdout.lines().all(|line| line.is_empty()
            || line.starts_with('#')
            || line.starts_with("[[mapping]]")
            || line.contains(" = ")),
        "{stdout}"
    );
    assert!(!text(&output.stderr).is_empty(), "debug logs on stderr");
    accounts.stop().await;
}
