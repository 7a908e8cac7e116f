//! What the binary says about itself and about a failure: `--help` opens with what doorsync does
//! and where to start, and an error chain tells each cause once.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::TcpListener;
use std::process::{Command, Output};

/// The binary, without the environment's DOORSYNC_ variables (they would win over the file).
fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_doorsync"));
    std::env::vars_os().map(|(name, _)| name).filter(|name| name.to_string_lossy().starts_with("DOORSYNC_")).for_each(
        |name| {
            command.env_remove(name);
        },
    );
    command
}

fn doorsync(args: &[&str]) -> Output {
    binary().args(args).env("RUST_LOG", "warn").output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn help_describes_the_tool_and_no_help_doubles_a_backtick() {
    let help = stdout(&doorsync(&["--help"]));
    assert!(help.starts_with("doorsync keeps door access in Kisi in step with what members hold in Nexudus"), "{help}");
    for told in
        ["Two ways to run it", "doorsync run ", "doorsync ingest | engine | writer", "Where to start: doorsync demo"]
    {
        assert!(help.contains(told), "--help tells {told:?}: {help}");
    }
    assert!(help.contains("doorsync example-config") && help.contains("DOORSYNC_<SECTION>__<KEY>"), "{help}");
    assert!(!help.contains("crates/"), "--help points into the source tree: {help}");
    assert!(help.contains("--admin <URL>") && help.contains("DOORSYNC_ADMIN_URL"), "{help}");
    let demo = stdout(&doorsync(&["demo", "--help"]));
    assert!(demo.contains("from 10 to 5000"), "--members shows its range: {demo}");

    let subcommands = ["run", "ingest", "engine", "writer", "reconcile", "demo", "explain", "status", "replay", "dlq"];
    let mut helps = vec![help];
    helps.extend(subcommands.iter().map(|subcommand| stdout(&doorsync(&["help", subcommand]))));
    helps.extend(["list", "retry", "drop"].iter().map(|action| stdout(&doorsync(&["dlq", action, "--help"]))));
    for text in helps {
        assert!(!text.is_empty());
        assert!(!text.contains("``"), "a doubled backtick: {text}");
    }
}

#[test]
fn example_config_prints_an_annotated_configuration_that_loads() {
    let output = doorsync(&["example-config"]);
    assert!(output.status.success(), "{output:?}");
    let example = stdout(&output);
    assert!(example.contains("[admin]") && example.contains("# "), "annotated: {example}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doorsync.toml");
    std::fs::write(&file, &example).unwrap();
    let checked = doorsync(&["--config", file.to_str().unwrap(), "check-config"]);
    let told = stdout(&checked);
    assert!(told.contains("valid"), "the printed example loads: {told} {}", String::from_utf8_lossy(&checked.stderr));
}

#[test]
fn a_taken_admin_port_is_named_once_with_its_cause_told_once() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("doorsync.toml");
    let text = format!(
        "[log]\npath = {log:?}\n\n[nexudus]\nbase_url = \"http://127.0.0.1:1\"\nwebhook_listen = \"127.0.0.1:0\"\n\n\
         [kisi]\nbase_url = \"http://127.0.0.1:1\"\n\n[admin]\nlisten = \"{admin}\"\n",
        log = dir.path().join("doorsync.redb"),
        admin = taken.local_addr().unwrap(),
    );
    std::fs::write(&config, text).unwrap();
    let output = binary()
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "off")
        .env("KISI_API_KEY", "kisi-key")
        .env("NEXUDUS_USERNAME", "ops@example.test")
        .env("NEXUDUS_PASSWORD", "password")
        .env("NEXUDUS_WEBHOOK_SECRET", "webhook-secret")
        .output()
        .unwrap();

    assert!(!output.status.success(), "a second doorsync on a taken admin port does not start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last_words = stderr.lines().rfind(|line| line.starts_with("doorsync: ")).unwrap_or_default();
    assert!(last_words.contains(&format!("cannot listen on {}", taken.local_addr().unwrap())), "{stderr}");
    assert!(last_words.contains("admin.listen"), "says which key to change: {stderr}");
    assert_eq!(last_words.matches("(os error 98)").count(), 1, "the cause is told once: {stderr}");
    assert!(!last_words.contains("``"), "{stderr}");
}

#[test]
fn a_config_error_quotes_each_valid_value_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doorsync.toml");
    let config = file.to_str().unwrap();
    std::fs::write(&file, "").unwrap();
    let unknown_variant =
        binary().args(["--config", config, "dlq", "list"]).env("DOORSYNC_LOG__BACKEND", "nats").output().unwrap();
    std::fs::write(&file, "[admin]\nlisen = \"127.0.0.1:9090\"\n").unwrap();
    let unknown_key = binary().args(["--config", config, "dlq", "list"]).output().unwrap();

    for (output, told) in [
        (unknown_variant, "found `nats`, expected `embedded` or `jetstream`"),
        (unknown_key, "found `lisen`, expected one of `listen`, "),
    ] {
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(told), "{stderr}");
        assert!(!stderr.contains("``"), "a doubled backtick: {stderr}");
    }
}
