//! `doorsync demo` run for real, as a newcomer runs it: the built binary with its simulators,
//! every role, webhooks and the admin listener, over loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Generous: the machine is shared and small, and the demo's shutdown has a budget of its own.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

fn doorsync() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_doorsync"));
    for (name, _) in std::env::vars() {
        if name.starts_with("DOORSYNC_") || name == "KISI_API_KEY" || name.starts_with("NEXUDUS_") {
            command.env_remove(name);
        }
    }
    command.env("RUST_LOG", "warn").kill_on_drop(true);
    command
}

/// The word after `marker` on `line`.
fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.split_once(marker).and_then(|(_, rest)| rest.split_whitespace().next())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_serves_its_status_page_explains_members_and_shows_grants_that_kisi_holds() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = doorsync()
        .args(["demo", "--members", "30", "--seconds", "20", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = demo.stderr.take().unwrap();
    let stderr = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut text = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let mut status_page = None;
    let mut explained = None;
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            // Asked while the demo runs: both are printed at its start, long before it stops.
            if status_page.is_none()
                && let Some(url) = after(&line, "status page:")
            {
                let page = reqwest::get(url).await.unwrap();
                status_page = Some((url.to_owned(), page.status().as_u16()));
            }
            if explained.is_none()
                && let (Some(config), Some(member)) = (after(&line, "doorsync --config"), after(&line, " explain "))
            {
                let output = doorsync().args(["--config", config, "explain", member]).output().await.unwrap();
                let text = String::from_utf8_lossy(&output.stdout).into_owned();
                explained = Some((member.to_owned(), output.status.success(), text));
            }
            printed.push(line);
        }
        demo.wait().await.unwrap()
    };
    let status = tokio::time::timeout(RUN_TIMEOUT, read).await.expect("the demo stops after --seconds");
    let printed = printed.join("\n");
    let stderr = stderr.await.unwrap();
    assert!(status.success(), "the demo failed: {status}\n{printed}\n{stderr}");

    let (url, page) = status_page.expect("the status page's address is printed");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(page, 200, "the status page answers while the demo runs: {url}");

    let (member, explained_ok, explanation) = explained.expect("how to explain a member is printed");
    assert!(explained_ok, "`doorsync explain {member}` with the printed config works while the demo runs");
    assert!(explanation.contains(&format!("Member {member}")), "{explanation}");

    let granted: Vec<&str> =
        printed.lines().filter(|line| line.contains(" kisi ") && line.contains(" gets ")).collect();
    assert!(!granted.is_empty(), "at least one grant Kisi holds is told:\n{printed}");
    assert!(granted.iter().all(|line| line.contains("(Kisi group ")), "{granted:#?}");
    let held: usize = printed
        .lines()
        .find_map(|line| after(line, "Kisi (simulated) holds"))
        .and_then(|count| count.parse().ok())
        .expect("the summary says what the Kisi simulator holds");
    assert!(held >= 1, "Kisi holds memberships at the end:\n{printed}");
    assert!(dir.path().join("doorsync.redb").exists(), "the log stays in --data-dir");
}

#[tokio::test]
async fn a_data_dir_with_the_log_of_an_earlier_demo_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("doorsync.redb"), b"").unwrap();
    let output = doorsync().args(["demo", "--seconds", "1", "--data-dir"]).arg(dir.path()).output().await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("holds the log of an earlier demo") && stderr.contains("--data-dir"), "{stderr}");
}
