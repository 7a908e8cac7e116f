//! The operator's commands beside a running `doorsync run`, which holds the embedded log's file:
//! `dlq list | retry | drop`, `replay --dry-run`, `reconcile --dry-run`, `reconcile`, `status`
//! (a summary, and `--json`) and `explain` ask the running process's admin API, found at
//! `admin.listen` of the configuration (or `--admin`), and none of them says the file is locked.
//! With no process running, `dlq list` opens the log itself.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use doorsync_access::NoAccessPolicy;
use doorsync_clock::{Clock, SystemClock};
use doorsync_integration_tests::{Deployment, HarnessError, Room, Site, doorsync_binary};
use doorsync_kisi_sim::{Fault, FaultRule};
use doorsync_proto::Timestamp;

/// How long something the running process does in well under a second may take on a loaded
/// machine.
const WAIT: Duration = Duration::from_secs(30);

/// What a command printed, and whether it succeeded.
struct Answer {
    succeeded: bool,
    stdout: String,
    stderr: String,
}

/// The operator's shell: the site's configuration, with `admin.listen` the running process's
/// (as the one configuration file of a one-process install says it).
struct Operator {
    binary: PathBuf,
    config: PathBuf,
    admin_listen: SocketAddr,
}

impl Operator {
    async fn run(&self, arguments: &[&str]) -> Result<Answer, HarnessError> {
        let mut command = tokio::process::Command::new(&self.binary);
        command.arg("--config").arg(&self.config).args(arguments);
        for (name, _) in std::env::vars_os() {
            let text = name.to_string_lossy();
            if text.starts_with("DOORSYNC_") || text.starts_with("OTEL_") || text == "KISI_API_KEY" {
                command.env_remove(name);
            }
        }
        command.env("DOORSYNC_ADMIN__LISTEN", self.admin_listen.to_string()).env("RUST_LOG", "warn");
        let output = command
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| HarnessError::Io { context: format!("running doorsync {arguments:?}"), source })?;
        let answer = Answer {
            succeeded: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        assert!(!answer.stderr.contains("locked"), "doorsync {arguments:?} found the log locked: {}", answer.stderr);
        assert!(answer.succeeded, "doorsync {arguments:?} failed:\n{}{}", answer.stdout, answer.stderr);
        Ok(answer)
    }
}

/// Waits until the running process reports `dead_letters` dead letters.
async fn dead_letters_reach(site: &Site, dead_letters: u64) -> Result<(), HarnessError> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = site.status_of("run").await?;
        if status.writer.is_some_and(|writer| writer.dead_letters == dead_letters) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(HarnessError::Timeout { what: format!("{dead_letters} dead letters"), waited: WAIT });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kisi refuses the next grant for good (404): the member's booking of Room A, under way, is
/// dead-lettered. Returns the member's Nexudus id.
async fn a_dead_lettered_grant(site: &Site, name: &str, dead_letters: u64) -> Result<u64, HarnessError> {
    let refused = Fault::Status { status: 404, retry_after: None };
    site.kisi.inject(FaultRule::new(refused).method("POST").path("/role_assignments").times(1));
    let member = site.add_member(name)?;
    let now = SystemClock.now().as_unix_millis();
    let minutes = |count: i64| Timestamp::from_unix_millis(now + count * 60_000);
    site.book(member, Room::A.resource(&site.places), minutes(-5), minutes(60))?;
    dead_letters_reach(site, dead_letters).await?;
    Ok(member)
}

/// The sequence of the dead letter `dlq list` shows for `member`.
fn sequence_of(listed: &str, member: u64) -> String {
    let row = listed
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.get(1) == Some(&member.to_string().as_str()) && cells.get(2) == Some(&"grant"))
        .unwrap_or_else(|| panic!("no dead letter of member {member} is listed:\n{listed}"));
    row[0].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_commands_work_beside_a_running_doorsync_and_without_one() -> Result<(), HarnessError> {
    let mut site = Site::start(Deployment::OneProcess, NoAccessPolicy::Suspend).await?;
    let admin = site.process("run")?.admin();
    let operator = Operator {
        binary: doorsync_binary()?,
        config: site.keep_files(false).join("doorsync.toml"),
        admin_listen: admin,
    };

    // dlq list, then retry: Ada's grant reaches Kisi.
    let ada = a_dead_lettered_grant(&site, "Ada", 1).await?;
    let listed = operator.run(&["dlq", "list"]).await?.stdout;
    assert!(listed.contains("1 dead letter waiting, 0 retried or dropped."), "{listed}");
    let sequence = sequence_of(&listed, ada);
    let retried = operator.run(&["dlq", "retry", &sequence]).await?.stdout;
    assert!(retried.starts_with(&format!("Retried dead letter {sequence} (member {ada}, grant group")), "{retried}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !site.kisi_member("Ada").is_some_and(|held| held.memberships.iter().any(|group| group.group == "Room A")) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the retried grant never reached Kisi: {:?}",
            site.kisi_state()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // dlq drop: Bo's stays out of Kisi, and the list says what became of both.
    let bo = a_dead_lettered_grant(&site, "Bo", 2).await?;
    let sequence = sequence_of(&operator.run(&["dlq", "list"]).await?.stdout, bo);
    let dropped = operator.run(&["dlq", "drop", &sequence]).await?.stdout;
    assert_eq!(dropped, format!("Dropped dead letter {sequence}; `doorsync dlq list` no longer shows it.\n"));
    let all = operator.run(&["dlq", "list", "--all"]).await?.stdout;
    assert!(all.contains("0 dead letters waiting, 2 retried or dropped."), "{all}");
    assert!(all.contains("retried at") && all.contains("dropped at"), "{all}");

    // The dry runs: the running process rebuilds from its log and reads Kisi; nothing is written.
    for dry_run in [&["replay", "--dry-run"][..], &["reconcile", "--dry-run"]] {
        let report = operator.run(dry_run).await?.stdout;
        assert!(report.starts_with("Rebuilt 2 members from the log ("), "{dry_run:?}: {report}");
        assert!(report.ends_with("`doorsync reconcile`.\n") && report.contains("Dry run: nothing was written."));
    }

    // status: a summary, and the API's JSON with --json.
    let summary = operator.run(&["status"]).await?.stdout;
    for told in [
        "Roles: ingest, engine, writer",
        "Writer: active",
        "  Kisi: answering",
        "  Nexudus: answering",
        "  not paused",
        "  dead letters: 2 since it started",
        "Ingest: active",
        "  parked records: 0",
        "Engine: 4 of 4 partitions caught up",
    ] {
        assert!(summary.contains(told), "status tells {told:?}:\n{summary}");
    }
    let json = operator.run(&["status", "--json"]).await?.stdout;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|error| panic!("{error}: {json}"));
    assert_eq!(json["writer"]["dead_letters"], 2, "{json}");
    assert_eq!(json["engine"].as_array().map(Vec::len), Some(site.partitions() as usize), "{json}");

    // reconcile, at the address --admin names (admin.listen here names nothing).
    let elsewhere = Operator { admin_listen: SocketAddr::from(([127, 0, 0, 1], 9)), ..operator };
    let url = format!("http://{admin}");
    let report = elsewhere.run(&["reconcile", "--admin", &url]).await?.stdout;
    let report: serde_json::Value = serde_json::from_str(&report).unwrap_or_else(|error| panic!("{error}: {report}"));
    assert!(report.is_object(), "{report}");

    // explain asks the same process, at --admin too.
    let explained = elsewhere.run(&["explain", &ada.to_string(), "--admin", &url]).await?.stdout;
    assert!(explained.contains("Room A"), "{explained}");

    // No process running: dlq list opens the embedded log itself.
    site.stop_process("run").await?;
    let listed = elsewhere.run(&["dlq", "list", "--all"]).await?.stdout;
    assert!(listed.contains("0 dead letters waiting, 2 retried or dropped."), "{listed}");
    site.stop().await
}
