//! NATS credentials and placeholder secrets, checked on the real `doorsync` binary:
//!
//! * a `log.nats_url` with a user and password in it is refused by every command that reads the
//!   configuration, and the password appears nowhere in what they print, logging at `trace`;
//! * a secret still holding the example manifests' `REPLACE_ME` stops a role at start with an
//!   error that names the key and where the value came from;
//! * the operator's commands (`explain`, `dlq list`, `replay --dry-run`) work on a secured log
//!   with the operator's own key, and need nothing it does not grant.
//!
//! The secured log itself (TLS, each role's nkey and permissions) is exercised end to end by
//! `end_to_end.rs` and `tracing.rs`, whose separate processes run on such a server.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use doorsync_access::NoAccessPolicy;
use doorsync_clock::{Clock, SystemClock};
use doorsync_integration_tests::{Deployment, Site, doorsync_binary, eventually};
use doorsync_proto::Timestamp;

/// Distinctive, so that a leak shows verbatim.
const PASSWORD: &str = "nats-password-7f3c9e21";
/// Each command fails on its configuration, long before this.
const LIMIT: Duration = Duration::from_secs(60);

/// `doorsync <arguments>` with `config` and only `environment` (and a trace log level) set.
async fn doorsync(config: &Path, arguments: &[&str], environment: &[(&str, String)]) -> Output {
    let mut command = tokio::process::Command::new(doorsync_binary().unwrap());
    command.args(arguments).arg("--config").arg(config).env_clear().env("RUST_LOG", "trace").env("NO_COLOR", "1");
    command.envs(environment.iter().map(|(name, value)| (name, value)));
    command.kill_on_drop(true);
    tokio::time::timeout(LIMIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("doorsync {arguments:?} still ran after {LIMIT:?}"))
        .unwrap()
}

fn printed(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_nats_url_is_refused_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("doorsync.toml");
    let url = format!("nats://engine:{PASSWORD}@127.0.0.1:4222");
    let in_file = format!("[log]\nbackend = \"jetstream\"\nnats_url = \"{url}\"\n");
    std::fs::write(&config, &in_file).unwrap();
    let secrets = [
        ("KISI_API_KEY", "kisi-key".to_owned()),
        ("NEXUDUS_USERNAME", "ops@example.com".to_owned()),
        ("NEXUDUS_PASSWORD", "nexudus-password".to_owned()),
        ("NEXUDUS_WEBHOOK_SECRET", "webhook-secret".to_owned()),
    ];
    let commands: [&[&str]; 7] = [
        &["ingest"],
        &["engine"],
        &["writer"],
        &["check-config"],
        &["explain", "ada@example.com"],
        &["dlq", "list"],
        &["status", "--admin", "http://127.0.0.1:9"],
    ];
    for arguments in commands {
        let output = doorsync(&config, arguments, &secrets).await;
        let text = printed(&output);
        assert!(!output.status.success(), "doorsync {arguments:?} ran with a password in the URL:\n{text}");
        assert!(!text.contains(PASSWORD), "doorsync {arguments:?} printed the password:\n{text}");
        assert!(text.contains("log.nats_url") && text.contains("log.nats_password_file"), "{arguments:?}:\n{text}");
    }

    // From the environment too, where a URL is as easily pasted.
    std::fs::write(&config, "[log]\nbackend = \"jetstream\"\n").unwrap();
    let mut environment = secrets.to_vec();
    environment.push(("DOORSYNC_LOG__NATS_URL", url));
    let output = doorsync(&config, &["engine"], &environment).await;
    let text = printed(&output);
    assert!(!output.status.success() && !text.contains(PASSWORD), "{text}");
    assert!(text.contains("DOORSYNC_LOG__NATS_URL"), "the variable is named: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placeholder_secret_stops_a_role_at_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("doorsync.toml");
    let seed = dir.path().join("nkey-seed");
    std::fs::write(&seed, "REPLACE_ME\n").unwrap();
    // Nothing listens there: the placeholder is refused before any connection is tried.
    let text =
        format!("[log]\nbackend = \"jetstream\"\nnats_url = \"nats://127.0.0.1:9\"\nnats_nkey_seed_file = {seed:?}\n");
    std::fs::write(&config, text).unwrap();
    let output = doorsync(&config, &["engine"], &[]).await;
    let text = printed(&output);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("`log.nats_nkey_seed_file`") && text.contains(&seed.display().to_string()), "{text}");
    assert!(text.contains("placeholder REPLACE_ME"), "{text}");
    // check-config says so before anything is deployed.
    let output = doorsync(&config, &["check-config"], &[]).await;
    let text = printed(&output);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("NATS credentials (log.nats_*): MISSING") && text.contains("placeholder REPLACE_ME"),
        "{text}"
    );

    // A role on the embedded log, with the Nexudus password left as the manifests have it.
    let data = dir.path().join("doorsync.redb");
    std::fs::write(&config, format!("[log]\npath = {data:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n")).unwrap();
    let environment = [
        ("KISI_API_KEY", "kisi-key".to_owned()),
        ("NEXUDUS_USERNAME", "ops@example.com".to_owned()),
        ("NEXUDUS_PASSWORD", "REPLACE_ME".to_owned()),
        ("NEXUDUS_WEBHOOK_SECRET", "webhook-secret".to_owned()),
    ];
    let output = doorsync(&config, &["run"], &environment).await;
    let text = printed(&output);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("NEXUDUS_PASSWORD") && text.contains("placeholder REPLACE_ME"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_commands_read_a_secured_log_with_the_operators_key() {
    let site = Site::start(Deployment::SeparateProcesses, NoAccessPolicy::Suspend).await.unwrap();
    let ada = site.add_member("Ada").unwrap();
    let in_minutes = |minutes: i64| Timestamp::from_unix_millis(SystemClock.now().as_unix_millis() + minutes * 60_000);
    site.book(ada, site.places.room_a, in_minutes(16), in_minutes(76)).unwrap();
    eventually("Ada's booking reaches Kisi", LIMIT, || {
        site.kisi_member("Ada").filter(|member| !member.memberships.is_empty())
    })
    .await
    .unwrap();
    for arguments in [&["explain", "ada@example.com"][..], &["dlq", "list"], &["replay", "--dry-run"]] {
        let output = site.operator(arguments).await.unwrap();
        let text = printed(&output);
        assert!(output.status.success(), "doorsync {arguments:?} with the operator's key:\n{text}");
    }
    let explained = printed(&site.operator(&["explain", "ada@example.com"]).await.unwrap());
    assert!(explained.contains(&site.groups.room_a.0.to_string()), "{explained}");
    // Fails if nats-server refused any operation, the operator's included.
    site.stop().await.unwrap();
}
