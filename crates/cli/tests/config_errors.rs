//! Every subcommand refuses a bad configuration with the key, the file and what would be valid,
//! and `check-config` says which secrets are missing without printing any that are present.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::process::{Command, Output};

fn doorsync(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_doorsync"));
    command.args(args).env("RUST_LOG", "warn");
    for variable in
        ["KISI_API_KEY", "NEXUDUS_USERNAME", "NEXUDUS_PASSWORD", "NEXUDUS_WEBHOOK_SECRET", "DOORSYNC_ADMIN_TOKEN"]
    {
        command.env_remove(variable);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

#[test]
fn every_subcommand_names_the_bad_key_and_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doorsync.toml");
    std::fs::write(&file, "[access]\nlead = \"soon\"\n").unwrap();
    let path = file.to_str().unwrap();
    for subcommand in
        [&["run"][..], &["engine"], &["writer"], &["ingest"], &["check-config"], &["explain", "7"], &["dlq", "list"]]
    {
        let mut args = vec!["--config", path];
        args.extend_from_slice(subcommand);
        let output = doorsync(&args, &[]);
        assert!(!output.status.success(), "{subcommand:?} accepted a bad config");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("`access.lead`"), "{subcommand:?}: {stderr}");
        assert!(stderr.contains(path), "{subcommand:?} names the file: {stderr}");
        assert!(stderr.contains("such as \"15m\""), "{subcommand:?} says what would be valid: {stderr}");
    }
}

#[test]
fn a_missing_config_file_is_named() {
    let output = doorsync(&["--config", "/nonexistent/doorsync.toml", "check-config"], &[]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/doorsync.toml does not exist"));
}

#[test]
fn check_config_lists_missing_secrets_and_never_prints_present_ones() {
    let output =
        doorsync(&["check-config"], &[("KISI_API_KEY", "kisi-secret-value"), ("NEXUDUS_USERNAME", "ops@example.com")]);
    assert!(!output.status.success(), "two secrets are missing");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.contains("Kisi API key (writer): present"), "{stdout}");
    assert!(stdout.contains("Nexudus password (ingest): MISSING") && stdout.contains("NEXUDUS_PASSWORD"), "{stdout}");
    assert!(stderr.contains("2 secrets missing"), "{stderr}");
    assert!(!stdout.contains("kisi-secret-value") && !stderr.contains("kisi-secret-value"), "the key is never printed");
}

#[test]
fn the_roles_for_kubernetes_refuse_the_embedded_log() {
    let output = doorsync(&["engine"], &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("log.backend") && stderr.contains("jetstream"), "{stderr}");
}
