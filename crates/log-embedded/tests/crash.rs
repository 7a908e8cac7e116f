//! Durability across a crash: a child process (this test binary, re-executed) writes and reports
//! each acknowledgement on stdout, is killed with SIGKILL mid-flight, and the parent checks that
//! everything acknowledged is in the file.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed step should stop the test loudly")]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use doorsync_log::{ConsumerSpec, EventLog, LogError, NewMessage, ReplayRequest, Sequence, StreamSpec};
use doorsync_log_embedded::{EmbeddedLog, EmbeddedOptions};
use futures::StreamExt;

/// Tells a re-executed test binary which child role to play; absent in the parent.
const ROLE: &str = "DOORSYNC_CRASH_TEST_ROLE";
const PATH: &str = "DOORSYNC_CRASH_TEST_PATH";
const STREAM: &str = "CRASH";

fn streams() -> Vec<StreamSpec> {
    vec![StreamSpec::new(STREAM, ["crash.>"])]
}

fn open(path: &Path) -> Result<EmbeddedLog, LogError> {
    EmbeddedLog::open(EmbeddedOptions::new(path, streams()))
}

fn message(n: u64) -> NewMessage {
    NewMessage::new(format!("crash.{}.{n}", n % 7), format!("m{n}"), Bytes::from(format!("payload {n}")))
}

fn child_role() -> Option<(String, PathBuf)> {
    Some((std::env::var(ROLE).ok()?, PathBuf::from(std::env::var(PATH).ok()?)))
}

/// A child process, killed when dropped so that a failing parent leaves none behind.
struct ChildProcess(Child);

impl ChildProcess {
    /// SIGKILL: no destructor runs, the file is not closed cleanly.
    fn kill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }

    fn stdout(&mut self) -> BufReader<ChildStdout> {
        BufReader::new(self.0.stdout.take().unwrap())
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs one child test function of this binary in its own process, stdout piped.
fn spawn_child(test: &str, role: &str, path: &Path) -> ChildProcess {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(PATH, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    ChildProcess(child)
}

/// Reads the child's `acked <id> <sequence>` lines until `wanted` of them, then kills it.
fn acks_until_killed(mut child: ChildProcess, wanted: usize) -> BTreeMap<String, u64> {
    let stdout = child.stdout();
    let mut acked = BTreeMap::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        // libtest may print `test <name> ... ` on the line before the child's first words.
        let Some((_, rest)) = line.split_once("acked ") else { continue };
        let (id, sequence) = rest.split_once(' ').unwrap();
        assert!(acked.insert(id.to_owned(), sequence.parse().unwrap()).is_none(), "{id} acked twice");
        if acked.len() == wanted {
            break;
        }
    }
    assert_eq!(acked.len(), wanted, "the child stopped before {wanted} acknowledgements");
    child.kill();
    acked
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn acknowledged_appends_survive_a_kill() {
    if child_role().is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let acked = acks_until_killed(spawn_child("child_appends", "appends", &path), 300);

    runtime().block_on(async {
        let log = open(&path).unwrap();
        let last = log.last_sequence(STREAM).await.unwrap();
        let stored: Vec<_> =
            log.replay(ReplayRequest::whole(STREAM)).await.unwrap().map(Result::unwrap).collect().await;
        assert_eq!(stored.len() as u64, last.0);
        let sequences: Vec<Sequence> = stored.iter().map(|m| m.sequence).collect();
        assert_eq!(sequences, (1..=last.0).map(Sequence).collect::<Vec<_>>(), "no gaps");
        let by_id: BTreeMap<&str, u64> = stored.iter().map(|m| (m.id.as_deref().unwrap(), m.sequence.0)).collect();
        assert_eq!(by_id.len(), stored.len(), "every id is stored once");
        for (id, sequence) in &acked {
            assert_eq!(by_id.get(id.as_str()), Some(sequence), "{id} was acknowledged at {sequence}");
        }

        let (id, sequence) = acked.iter().next().unwrap();
        let n: u64 = id.trim_start_matches('m').parse().unwrap();
        let again = log.append(message(n)).await.unwrap();
        assert_eq!((again.sequence, again.duplicate), (Sequence(*sequence), true), "ids are remembered after a crash");
        let fresh = log.append(message(1_000_000)).await.unwrap();
        assert_eq!((fresh.sequence, fresh.duplicate), (last.next(), false));
        log.close().await;
    });
}

/// The child of [`acknowledged_appends_survive_a_kill`]: appends until killed, mixing single
/// appends and batches.
#[tokio::test]
async fn child_appends() {
    let Some((role, path)) = child_role() else { return };
    assert_eq!(role, "appends");
    let log = open(&path).unwrap();
    let mut n = 0;
    // Bounded, in case the parent dies without killing us.
    while n < 100_000 {
        if n % 10 == 0 {
            let batch: Vec<_> = (n..n + 5).map(message).collect();
            for (result, m) in log.append_batch(batch).await.into_iter().zip(n..) {
                println!("acked m{m} {}", result.unwrap().sequence);
            }
            n += 5;
        } else {
            println!("acked m{n} {}", log.append(message(n)).await.unwrap().sequence);
            n += 1;
        }
    }
}

#[test]
fn acknowledged_consumer_acks_survive_a_kill() {
    if child_role().is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let total = 600;
    runtime().block_on(async {
        let log = open(&path).unwrap();
        for result in log.append_batch((0..total).map(message).collect()).await {
            result.unwrap();
        }
        log.close().await;
    });

    let acked = acks_until_killed(spawn_child("child_acks", "acks", &path), 200);

    runtime().block_on(async {
        let log = open(&path).unwrap();
        let mut consumer = log.durable_consumer(consumer_spec()).await.unwrap();
        let mut delivered = Vec::new();
        while let Ok(delivery) = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await {
            let delivery = delivery.unwrap();
            delivered.push(delivery.message.id.clone().unwrap());
            delivery.ack().await.unwrap();
        }
        let delivered_set: BTreeSet<&str> = delivered.iter().map(String::as_str).collect();
        assert_eq!(delivered_set.len(), delivered.len(), "each message delivered once after the restart");
        for id in acked.keys() {
            assert!(!delivered_set.contains(id.as_str()), "{id} was acknowledged before the kill, yet delivered again");
        }
        // The child settles one message at a time: at most one ack was stored but not reported.
        let unaccounted = total as usize - acked.len() - delivered.len();
        assert!(unaccounted <= 1, "{unaccounted} messages neither acknowledged nor delivered");
        drop(consumer);
        log.close().await;
    });
}

fn consumer_spec() -> ConsumerSpec {
    ConsumerSpec::new(STREAM, "crash-test").ack_wait(Duration::from_secs(30))
}

/// The child of [`acknowledged_consumer_acks_survive_a_kill`]: acknowledges until killed.
#[tokio::test]
async fn child_acks() {
    let Some((role, path)) = child_role() else { return };
    assert_eq!(role, "acks");
    let log = open(&path).unwrap();
    let mut consumer = log.durable_consumer(consumer_spec()).await.unwrap();
    loop {
        let delivery = consumer.next().await.unwrap();
        let id = delivery.message.id.clone().unwrap();
        let sequence = delivery.message.sequence;
        delivery.ack().await.unwrap();
        println!("acked {id} {sequence}");
    }
}

#[test]
fn a_file_in_use_by_another_process_is_refused() {
    if child_role().is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let mut child = spawn_child("child_holds", "holds", &path);
    let mut stdout = child.stdout();
    let mut line = String::new();
    while !line.contains("log-open") {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "the child stopped before opening the log");
    }
    let refused = open(&path).unwrap_err();
    assert!(matches!(refused, LogError::Unavailable { .. }), "{refused:?}");
    assert!(refused.to_string().contains("another doorsync process"), "{refused}");
    child.kill();
    runtime().block_on(async {
        let log = open(&path).expect("the lock goes with the process");
        log.close().await;
    });
}

/// The child of [`a_file_in_use_by_another_process_is_refused`]: keeps the log open until killed.
#[tokio::test]
async fn child_holds() {
    let Some((role, path)) = child_role() else { return };
    assert_eq!(role, "holds");
    let _log = open(&path).unwrap();
    println!("log-open");
    tokio::time::sleep(Duration::from_secs(60)).await;
}
