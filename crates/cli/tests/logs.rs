//! doorsync's own log lines: on stderr only, without colour codes when stderr is no terminal,
//! and one JSON object per line with `log.format = "json"`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod accounts;

use std::process::Stdio;
use std::time::Duration;

use accounts::{Accounts, doorsync, run, text};
use tokio::io::{AsyncBufReadExt, BufReader};

const ESCAPE: char = '\u{1b}';

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Runs `doorsync run` until it says it is running; returns what it wrote on stderr and stdout
/// by then.
async fn run_until_running(accounts: &Accounts, format: &str) -> (Vec<String>, String) {
    let config = accounts.config("");
    let (admin, webhooks) = (free_address(), free_address());
    let mut child = doorsync(&[
        ("DOORSYNC_LOG__FORMAT", format),
        ("DOORSYNC_ADMIN__LISTEN", &admin),
        ("DOORSYNC_NEXUDUS__WEBHOOK_LISTEN", &webhooks),
    ])
    .env("RUST_LOG", "info")
    .arg("--config")
    .arg(&config)
    .arg("run")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut lines = Vec::new();
    let running = async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            let done = line.contains("is running");
            lines.push(line);
            if done {
                return;
            }
        }
        panic!("doorsync run ended before it was running");
    };
    if tokio::time::timeout(Duration::from_secs(60), running).await.is_err() {
        panic!("doorsync run did not start within a minute: {lines:#?}");
    }
    child.start_kill().unwrap();
    let output = child.wait_with_output().await.unwrap();
    (lines, text(&output.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_have_no_colour_codes_when_stderr_is_not_a_terminal() {
    let accounts = Accounts::start().await;

    let (lines, stdout) = run_until_running(&accounts, "text").await;

    assert!(lines.len() > 1, "{lines:#?}");
    assert!(lines.iter().all(|line| !line.contains(ESCAPE)), "{lines:#?}");
    assert_eq!(stdout, "", "logs never go to stdout");
    accounts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let accounts = Accounts::start().await;

    let (lines, stdout) = run_until_running(&accounts, "json").await;

    assert!(lines.len() > 1, "{lines:#?}");
    for line in &lines {
        let object: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"));
        assert!(object["level"].is_string() && object["timestamp"].is_string(), "{line}");
        assert!(!line.contains(ESCAPE), "{line}");
    }
    let running = lines.last().unwrap();
    let running: serde_json::Value = serde_json::from_str(running).unwrap();
    assert!(running["message"].as_str().unwrap().contains("doorsync run is running"), "{running}");
    assert_eq!(stdout, "", "logs never go to stdout");
    accounts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shot_command_prints_only_its_answer_on_stdout() {
    let accounts = Accounts::start().await;
    let config = accounts.config("");

    let output = run(&config, &["check-config", "--online"], &[("DOORSYNC_LOG__FORMAT", "json")]).await;

    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("configuration from "), "{stdout}");
    assert!(stdout.lines().all(|line| !line.starts_with('{')), "no log line on stdout: {stdout}");
    let logged: Vec<&str> = stderr.lines().collect();
    assert!(!logged.is_empty(), "debug logs were asked for");
    for line in logged {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|error| panic!("{error}: {line}"));
    }
    accounts.stop().await;
}
