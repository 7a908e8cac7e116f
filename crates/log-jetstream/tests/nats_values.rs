//! `deploy/nats/values.yaml` grants each role exactly what `permissions::Role::permissions`
//! says it needs, for the subject prefix of `deploy/kustomize/base/doorsync.toml`: the rules are
//! written once, in the code, and the Helm values are checked against them. On a mismatch the
//! test prints the users block to put in the values.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test: a failed step should stop it loudly")]

use std::collections::BTreeSet;
use std::path::Path;

use doorsync_layout::Layout;
use doorsync_log_jetstream::permissions::{Permissions, Role};
use doorsync_proto::Subjects;
use serde_yaml_ng::Value;

/// The writer's durable consumer of commands (`doorsync_writer::WriterOptions::consumer_name`).
const WRITER_CONSUMER: &str = "writer";

fn repository_file(path: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|error| panic!("reading {}: {error}", file.display()))
}

/// The placeholder standing for a role's public nkey until the operator puts theirs in.
fn placeholder(role: Role) -> String {
    format!("REPLACE_ME_{}_PUBLIC_NKEY", role.name().to_uppercase())
}

fn subjects(value: &Value, direction: &str, kind: &str) -> BTreeSet<String> {
    match &value["permissions"][direction][kind] {
        Value::Sequence(items) => items.iter().map(|item| item.as_str().unwrap().to_owned()).collect(),
        Value::Null => BTreeSet::new(),
        other => panic!("{direction}.{kind} is not a list: {other:?}"),
    }
}

fn expected_yaml(layout: &Layout) -> String {
    let list = |name: &str, items: &BTreeSet<String>| {
        let items: String = items.iter().map(|item| format!("                - \"{item}\"\n")).collect();
        if items.is_empty() { String::new() } else { format!("              {name}:\n{items}") }
    };
    let mut yaml = String::new();
    for role in Role::ALL {
        let permissions = role.permissions(layout, WRITER_CONSUMER);
        yaml.push_str(&format!("        - nkey: {}\n          permissions:\n", placeholder(role)));
        for (direction, allow, deny) in [
            ("publish", &permissions.publish_allow, &permissions.publish_deny),
            ("subscribe", &permissions.subscribe_allow, &permissions.subscribe_deny),
        ] {
            yaml.push_str(&format!("            {direction}:\n{}{}", list("allow", allow), list("deny", deny)));
        }
    }
    yaml
}

/// `key = value` from the `[log]` section of the base configuration.
fn log_setting(toml: &str, key: &str) -> String {
    let section = toml.split("[log]").nth(1).expect("a [log] section");
    let line = section
        .lines()
        .take_while(|line| !line.starts_with('['))
        .find(|line| line.split('=').next().is_some_and(|name| name.trim() == key))
        .unwrap_or_else(|| panic!("log.{key} in the base configuration"));
    line.split_once('=').map(|(_, value)| value.trim().trim_matches('"').to_owned()).unwrap_or_default()
}

#[test]
fn the_helm_values_grant_each_role_what_the_code_says() {
    let base = repository_file("deploy/kustomize/base/doorsync.toml");
    let prefix = log_setting(&base, "subject_prefix");
    let partitions = log_setting(&base, "partitions").parse().unwrap();
    let layout = Layout::new(Subjects::new(&prefix, partitions).unwrap());

    let values: Value = serde_yaml_ng::from_str(&repository_file("deploy/nats/values.yaml")).unwrap();
    let users = values["config"]["merge"]["authorization"]["users"].as_sequence().cloned().unwrap_or_default();
    let found: Vec<(String, Permissions)> = users
        .iter()
        .map(|user| {
            let permissions = Permissions {
                publish_allow: subjects(user, "publish", "allow"),
                publish_deny: subjects(user, "publish", "deny"),
                subscribe_allow: subjects(user, "subscribe", "allow"),
                subscribe_deny: subjects(user, "subscribe", "deny"),
            };
            (user["nkey"].as_str().unwrap_or_default().to_owned(), permissions)
        })
        .collect();
    let wanted: Vec<(String, Permissions)> =
        Role::ALL.into_iter().map(|role| (placeholder(role), role.permissions(&layout, WRITER_CONSUMER))).collect();
    assert!(
        found == wanted,
        "deploy/nats/values.yaml's config.merge.authorization.users differ from the permissions in \
         crates/log-jetstream/src/permissions.rs; put this there:\n{}",
        expected_yaml(&layout)
    );
}
