//! `doorsync` child processes: started with a configuration file and environment, waited on until
//! `/readyz` answers 200, and stopped with SIGTERM (SIGKILL if they outstay their grace).

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use doorsync_engine::ShardStats;
use doorsync_proto::Partition;
use doorsync_writer::WriterStatus;
use rustix::process::{Pid, Signal};

use crate::HarnessError;

/// How long a process may take to stop after SIGTERM before it is killed: doorsync's shutdown
/// budget (30 s) and a margin.
const STOP_GRACE: Duration = Duration::from_secs(35);

/// How much of a process's log an error or a failing test shows.
const LOG_TAIL_LINES: usize = 60;

/// The `doorsync` binary cargo built for the profile the tests run in: integration tests live in
/// `target/<profile>/deps/`, binaries in `target/<profile>/`.
pub fn doorsync_binary() -> Result<PathBuf, HarnessError> {
    let test = std::env::current_exe().map_err(HarnessError::io("locating the test executable"))?;
    let profile_dir = test.parent().and_then(Path::parent).unwrap_or(Path::new("."));
    let path = profile_dir.join(format!("doorsync{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() { Ok(path) } else { Err(HarnessError::BinaryMissing { path }) }
}

/// What a process's roles report at `/api/status`; `None` for a role the process does not run.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ProcessStatus {
    /// One entry per partition the engine owns.
    pub engine: Option<Vec<ShardStats>>,
    pub writer: Option<WriterStatus>,
}

impl ProcessStatus {
    /// The partitions the engine owns, in order (none for a process without an engine).
    pub fn owned_partitions(&self) -> Vec<Partition> {
        let mut partitions: Vec<Partition> = self.engine.iter().flatten().map(|shard| shard.partition).collect();
        partitions.sort_unstable();
        partitions
    }

    /// Whether the engine owns partitions and every one of them has caught up with the log.
    pub fn engine_caught_up(&self) -> bool {
        self.engine.as_ref().is_some_and(|shards| !shards.is_empty() && shards.iter().all(|shard| shard.caught_up))
    }
}

/// A running `doorsync` child process. Dropping it stops the process (SIGTERM, then SIGKILL after
/// the grace period); when a test is failing, the drop also prints the end of the process's log.
#[derive(Debug)]
pub struct Doorsync {
    name: String,
    admin: SocketAddr,
    log_path: PathBuf,
    child: Option<Child>,
}

impl Doorsync {
    /// Starts `command` (the doorsync binary with its arguments and environment) with its output
    /// going to `log_path`; `admin` is where its admin listener will be.
    pub fn start(name: &str, mut command: Command, admin: SocketAddr, log_path: &Path) -> Result<Self, HarnessError> {
        let log = File::create(log_path).map_err(HarnessError::io(format!("creating {}", log_path.display())))?;
        let stderr = log.try_clone().map_err(HarnessError::io(format!("opening {}", log_path.display())))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(HarnessError::io(format!("starting doorsync {name}")))?;
        Ok(Self { name: name.to_owned(), admin, log_path: log_path.to_owned(), child: Some(child) })
    }

    /// The last lines the process wrote.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    pub fn log_tail(&self) -> String {
        match std::fs::read_to_string(&self.log_path) {
            Ok(log) => {
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
            }
            Err(error) => format!("(no log at {}: {error})", self.log_path.display()),
        }
    }

    /// Waits until `/readyz` answers 200; fails at once if the process exits meanwhile.
    pub async fn wait_ready(&mut self, limit: Duration) -> Result<(), HarnessError> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let url = format!("http://{}/readyz", self.admin);
        let deadline = tokio::time::Instant::now() + limit;
        let mut last_answer = "none yet".to_owned();
        while tokio::time::Instant::now() < deadline {
            self.fail_if_exited()?;
            match client.get(&url).send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    let status = response.status();
                    last_answer = format!("{status}: {}", response.text().await.unwrap_or_default().trim());
                }
                Err(error) => last_answer = format!("no answer: {error}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(HarnessError::NotReady { process: self.name.clone(), waited: limit, last_answer, log: self.log_tail() })
    }

    /// What the process's roles report, from its admin listener.
    pub async fn status(&self) -> Result<ProcessStatus, HarnessError> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        let url = format!("http://{}/api/status", self.admin);
        Ok(client.get(url).send().await?.error_for_status()?.json().await?)
    }

    /// Kills the process with SIGKILL, as a crash or the OOM killer would: it gets no chance to
    /// give back its leases or commands. Returns how it ended, which a caller checks to tell a
    /// kill from a process that had already exited by itself.
    pub async fn kill(mut self) -> Result<ExitStatus, HarnessError> {
        let Some(mut child) = self.child.take() else {
            return Err(HarnessError::Setup(format!("doorsync {} was already stopped", self.name)));
        };
        let context = format!("killing doorsync {}", self.name);
        // A process that has exited but was not waited for is still there to signal (a zombie),
        // so this fails only if something else reaped it.
        rustix::process::kill_process(Pid::from_child(&child), Signal::KILL)
            .map_err(|errno| HarnessError::io(context.clone())(errno.into()))?;
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .map_err(|error| HarnessError::io(context.clone())(std::io::Error::other(error)))?
            .map_err(HarnessError::io(context))
    }

    /// An error if the process has exited by itself (it was neither killed nor stopped), with the
    /// end of its log.
    pub fn check_running(&mut self) -> Result<(), HarnessError> {
        self.fail_if_exited()
    }

    fn fail_if_exited(&mut self) -> Result<(), HarnessError> {
        let Some(child) = self.child.as_mut() else { return Ok(()) };
        match child.try_wait().map_err(HarnessError::io(format!("checking on doorsync {}", self.name)))? {
            Some(status) => Err(HarnessError::Exited { process: self.name.clone(), status, log: self.log_tail() }),
            None => Ok(()),
        }
    }

    /// Stops the process with SIGTERM and waits for it; an error unless it exits successfully
    /// within the grace period.
    pub async fn stop(mut self) -> Result<(), HarnessError> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let context = format!("stopping doorsync {}", self.name);
        let status = tokio::task::spawn_blocking(move || terminate(&mut child))
            .await
            .map_err(|error| HarnessError::io(context.clone())(std::io::Error::other(error)))?
            .map_err(HarnessError::io(context))?;
        if status.success() {
            Ok(())
        } else {
            Err(HarnessError::Exited { process: self.name.clone(), status, log: self.log_tail() })
        }
    }
}

impl Drop for Doorsync {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let stopped = terminate(&mut child);
            if std::thread::panicking() {
                eprintln!("--- doorsync {} ({stopped:?}), end of its log:\n{}\n---", self.name, self.log_tail());
            }
        }
    }
}

/// SIGTERM, then SIGKILL if the process is still there after [`STOP_GRACE`].
fn terminate(child: &mut Child) -> std::io::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    // It may have exited since: then there is nothing to signal, which is fine.
    let _ = rustix::process::kill_process(Pid::from_child(child), Signal::TERM);
    let deadline = std::time::Instant::now() + STOP_GRACE;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill()?;
    child.wait()
}
