//! A site for the `doorsync` binary to run against: simulators of Kisi and Nexudus in the test
//! process, a configuration file, the binary itself as a child process, and a real headless
//! browser to look at its pages.
#![allow(dead_code, reason = "each test file uses its own part of this module")]

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use doorsync_clock::{Clock, SystemClock};
use doorsync_kisi_sim::{KisiSimulator, SimHandle};
use doorsync_nexudus::Secret;
use doorsync_nexudus_sim::NexudusSimulator;
use doorsync_proto::Timestamp;
use serde_json::Value;
use tokio::process::{Child, Command};
use url::Url;

pub(crate) const KISI_KEY: &str = "status-page-test-key";
pub(crate) const WEBHOOK_SECRET: &str = "status-page-hook-secret";
pub(crate) const ADMIN_TOKEN: &str = "status-page-admin-token";
const NEXUDUS_USER: &str = "admin@example.com";
const NEXUDUS_PASSWORD: &str = "password";
/// How long a test waits for something the binary does in well under a second.
const PATIENCE: Duration = Duration::from_secs(60);

/// Kisi and Nexudus, simulated on loopback ports on the system clock (the binary's clock).
pub(crate) struct Site {
    pub(crate) kisi: KisiSimulator,
    pub(crate) nexudus: NexudusSimulator,
    pub(crate) dir: tempfile::TempDir,
}

impl Site {
    pub(crate) async fn start() -> Self {
        let clock: doorsync_clock::SharedClock = Arc::new(SystemClock);
        let kisi = KisiSimulator::start(doorsync_kisi_sim::SimOptions::new(Arc::clone(&clock))).await.unwrap();
        kisi.handle().add_api_account("integration@example.com", "doorsync", KISI_KEY).unwrap();
        let mut options = doorsync_nexudus_sim::SimOptions::new(clock);
        options.limits = None;
        options.webhook_retry_delay = Duration::from_secs(1);
        let nexudus = NexudusSimulator::start(options).await.unwrap();
        Self { kisi, nexudus, dir: tempfile::tempdir().unwrap() }
    }

    pub(crate) fn kisi(&self) -> SimHandle {
        self.kisi.handle()
    }

    /// Writes a configuration with these `[[mapping]]` entries (TOML) and starts
    /// `doorsync run` on it, on free loopback ports, with the admin token set.
    pub(crate) async fn run_doorsync(&self, mappings: &str) -> Doorsync {
        self.start_doorsync(mappings, Command::new(env!("CARGO_BIN_EXE_doorsync"))).await
    }

    /// [`Site::run_doorsync`], with SIGXFSZ ignored, so that a write past a file-size limit
    /// (`prlimit --fsize`) fails with an I/O error instead of killing the process: a disk that
    /// refuses writes.
    pub(crate) async fn run_doorsync_where_a_full_disk_fails_writes(&self, mappings: &str) -> Doorsync {
        let mut shell = Command::new("sh");
        shell.args(["-c", "trap '' XFSZ; exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_doorsync")]);
        self.start_doorsync(mappings, shell).await
    }

    /// The embedded log's file.
    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.path().join("doorsync.redb")
    }

    async fn start_doorsync(&self, mappings: &str, mut command: Command) -> Doorsync {
        let admin = free_address();
        let webhooks = free_address();
        let config = self.dir.path().join("doorsync.toml");
        let text = format!(
            "[log]\npath = {log:?}\npartitions = 4\n\n\
             [nexudus]\nbase_url = {nexudus:?}\nwebhook_listen = \"{webhooks}\"\npoll_every = \"5s\"\n\n\
             [kisi]\nbase_url = {kisi:?}\n\n[reconcile]\nevery = \"1h\"\n\n[admin]\nlisten = \"{admin}\"\n\n{mappings}",
            log = self.log_path(),
            nexudus = self.nexudus.base_url().as_str().trim_end_matches('/'),
            kisi = self.kisi.base_url().as_str(),
        );
        std::fs::write(&config, text).unwrap();
        let log_file = self.dir.path().join("doorsync.log");
        // Overrides from the environment the tests run in would win over the file.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("DOORSYNC_") {
                command.env_remove(name);
            }
        }
        let child = command
            .args(["run", "--config"])
            .arg(&config)
            .env("KISI_API_KEY", KISI_KEY)
            .env("NEXUDUS_USERNAME", NEXUDUS_USER)
            .env("NEXUDUS_PASSWORD", NEXUDUS_PASSWORD)
            .env("NEXUDUS_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("DOORSYNC_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_file).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let doorsync = Doorsync { child: Some(child), admin, webhooks, log_file };
        doorsync.wait_until_ready().await;
        doorsync
    }

    /// Registers a signed webhook for every action the ingestor acts on, pointing at `doorsync`.
    pub(crate) fn register_webhooks(&self, doorsync: &Doorsync) {
        for &action in doorsync_ingest::WEBHOOK_ACTIONS {
            let url =
                Url::parse(&format!("http://{}{}", doorsync.webhooks, doorsync_ingest::webhook_path(action))).unwrap();
            self.nexudus.register_webhook(action, &url, Secret::new(WEBHOOK_SECRET)).unwrap();
        }
    }

    pub(crate) async fn stop(self) {
        self.nexudus.shutdown().await;
        self.kisi.shutdown().await;
    }
}

/// A running `doorsync` child process. Its log is printed if the test fails while it runs.
pub(crate) struct Doorsync {
    child: Option<Child>,
    pub(crate) admin: SocketAddr,
    pub(crate) webhooks: SocketAddr,
    log_file: PathBuf,
}

impl Doorsync {
    async fn wait_until_ready(&self) {
        let url = format!("http://{}/readyz", self.admin);
        let client = reqwest::Client::new();
        wait_until("doorsync answers /readyz with 200", || {
            let request = client.get(&url).timeout(Duration::from_secs(5)).send();
            async move { request.await.is_ok_and(|response| response.status().is_success()) }
        })
        .await;
    }

    /// `/api/status` as JSON, with the admin token.
    pub(crate) async fn status(&self) -> Value {
        let response = reqwest::Client::new()
            .get(format!("http://{}/api/status", self.admin))
            .bearer_auth(ADMIN_TOKEN)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "/api/status answered {}", response.status());
        response.json().await.unwrap()
    }

    /// The process's id (the shell that started it exec'd it, keeping its own).
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().and_then(Child::id).unwrap()
    }

    /// What the admin listener answers for `path` without the token.
    pub(crate) async fn status_without_token(&self, path: &str) -> u16 {
        reqwest::get(format!("http://{}{path}", self.admin)).await.unwrap().status().as_u16()
    }

    /// Stops the process as Kubernetes would (SIGTERM) and waits for it to exit.
    pub(crate) async fn stop(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let pid = child.id().unwrap().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        match tokio::time::timeout(PATIENCE, child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => {
                self.print_log();
                panic!("doorsync did not stop within {PATIENCE:?} of SIGTERM");
            }
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    fn print_log(&self) {
        let _ = writeln!(std::io::stderr(), "--- doorsync's log ---\n{}--- end of doorsync's log ---", self.log());
    }
}

impl Drop for Doorsync {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            self.print_log();
        }
    }
}

/// The proxy's page that frames `?path=` `?width=` pixels wide and says whether it overflows
/// (see [`Browser::overflow`]): same origin as the framed page, so it can read its width.
pub(crate) const OVERFLOW_CHECK: &str = "/test-support/overflow-check";
/// The proxy's page that is 900 pixels wide whatever its window: the overflow check must fail it.
pub(crate) const TOO_WIDE: &str = "/test-support/too-wide";

#[derive(serde::Deserialize)]
struct OverflowCheck {
    path: String,
    width: u32,
}

async fn overflow_check(axum::extract::Query(check): axum::extract::Query<OverflowCheck>) -> Response {
    let path = check.path.replace('&', "&amp;").replace('"', "&quot;");
    let width = check.width;
    let page = format!(
        "<!doctype html><html><body><iframe id=\"framed\" src=\"{path}\" width=\"{width}\" height=\"900\" \
         style=\"border:0\"></iframe><script>var framed=document.getElementById('framed');\
         framed.addEventListener('load',function(){{var d=framed.contentDocument.documentElement,\
         w=d.scrollWidth,v=framed.contentWindow.innerWidth;\
         document.body.setAttribute('data-overflow',(w>v?'overflow ':'fits ')+w+' in '+v);}});</script></body></html>"
    );
    axum::response::Html(page).into_response()
}

async fn too_wide() -> Response {
    axum::response::Html("<!doctype html><html><body><div style=\"width:900px\">too wide</div></body></html>")
        .into_response()
}

/// Answers every GET by asking `target` for the same path with the admin token: how an
/// operator's browser reaches a token-protected admin listener (an authenticating proxy).
pub(crate) async fn token_proxy(target: SocketAddr) -> SocketAddr {
    async fn forward(State(target): State<SocketAddr>, request: Request) -> Response {
        let path = request.uri().path_and_query().map_or("/", |path| path.as_str()).to_owned();
        let answer = reqwest::Client::new()
            .get(format!("http://{target}{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .timeout(Duration::from_secs(60))
            .send()
            .await;
        let Ok(answer) = answer else { return StatusCode::BAD_GATEWAY.into_response() };
        let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let content_type =
            answer.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).map(str::to_owned);
        let body = answer.bytes().await.unwrap_or_default();
        let mut response = (status, body).into_response();
        if let Some(content_type) = content_type.and_then(|value| value.parse().ok()) {
            response.headers_mut().insert(header::CONTENT_TYPE, content_type);
        }
        response
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new()
        .route(OVERFLOW_CHECK, axum::routing::get(overflow_check))
        .route(TOO_WIDE, axum::routing::get(too_wide))
        .fallback(forward)
        .with_state(target);
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// Debian's chromium, for `--dump-dom`.
pub(crate) struct Browser {
    binary: PathBuf,
    profile: tempfile::TempDir,
}

impl Browser {
    /// The browser on `PATH` (`chromium` or `chromium-browser`); fails the test when there is none.
    pub(crate) fn find() -> Self {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let binary = std::env::split_paths(&path)
            .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
            .find(|candidate| is_executable(candidate));
        match binary {
            Some(binary) => Self { binary, profile: tempfile::tempdir().unwrap() },
            None => panic!(
                "no chromium (or chromium-browser) on PATH: the status page is tested in a real headless browser. \
                 Run `just tools`, which installs Debian's chromium with apt (`just test` does so first)."
            ),
        }
    }

    /// The page at `url` as the browser built it (after parsing), serialised back to HTML.
    pub(crate) async fn dom(&self, url: &str) -> String {
        self.run_dumping_dom(url, &[]).await
    }

    /// Saves what the browser shows of `url` in a window `width` by `height` pixels as a PNG.
    pub(crate) async fn screenshot(&self, url: &str, width: u32, height: u32, png: &Path) {
        let run = Command::new(&self.binary)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars"])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--screenshot={}", png.display()))
            .arg(url)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(PATIENCE, run).await.expect("chromium did not finish").unwrap();
        assert!(
            output.status.success() && png.exists(),
            "chromium could not take a screenshot of {url} ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Whether the page at `path` of `proxy` (a [`token_proxy`]), laid out `width` pixels wide,
    /// is wider than its window: "fits 400 in 400" or "overflow 908 in 400".
    ///
    /// Headless chromium lays out `--dump-dom` pages at least 500 pixels wide whatever the
    /// window size, so the proxy's [`OVERFLOW_CHECK`] page frames the page `width` pixels wide and,
    /// once it has loaded, writes the framed document's width against the frame's into its own
    /// `<body data-overflow>`, before the browser dumps it.
    pub(crate) async fn overflow(&self, proxy: SocketAddr, path: &str, width: u32) -> String {
        let check = Url::parse_with_params(
            &format!("http://{proxy}{OVERFLOW_CHECK}"),
            [("path", path.to_owned()), ("width", width.to_string())],
        )
        .unwrap();
        let dom = self.run_dumping_dom(check.as_str(), &[]).await;
        let Some(answer) = dom.split("<body data-overflow=\"").nth(1).and_then(|rest| rest.split('"').next()) else {
            panic!("the overflow check of {path} said nothing: {dom}")
        };
        answer.to_owned()
    }

    async fn run_dumping_dom(&self, url: &str, flags: &[&str]) -> String {
        let run = Command::new(&self.binary)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--dump-dom"])
            .args(flags)
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(PATIENCE, run).await.expect("chromium did not finish").unwrap();
        let dom = String::from_utf8(output.stdout).unwrap();
        assert!(
            output.status.success() && dom.contains("</html>"),
            "chromium could not load {url} ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        dom
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// The element that starts with the tag containing `marker`, up to its end tag `</name>`
/// (for elements that do not nest in themselves, such as table rows).
pub(crate) fn element_containing<'a>(dom: &'a str, marker: &str, name: &str) -> Option<&'a str> {
    let at = dom.find(marker)?;
    let start = dom[..at + marker.len()].rfind(&format!("<{name}"))?;
    let end_tag = format!("</{name}>");
    let end = start + dom[start..].find(&end_tag)? + end_tag.len();
    Some(&dom[start..end])
}

/// The value of the first `attribute="..."` in `html`.
pub(crate) fn attribute<'a>(html: &'a str, attribute: &str) -> Option<&'a str> {
    let marker = format!("{attribute}=\"");
    let start = html.find(&marker)? + marker.len();
    let end = start + html[start..].find('"')?;
    Some(&html[start..end])
}

/// A loopback address nobody listens on right now.
fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// Waits (real time, generously) until `condition` holds.
pub(crate) async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn now() -> Timestamp {
    SystemClock.now()
}

/// `at` as Nexudus writes UTC instants: `2026-12-01T09:15:00Z`.
pub(crate) fn nexudus_time(at: Timestamp) -> String {
    jiff::Timestamp::from_millisecond(at.as_unix_millis()).unwrap().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `minutes` from `from`, to the second.
pub(crate) fn minutes_from(from: Timestamp, minutes: i64) -> Timestamp {
    Timestamp::from_unix_millis((from.as_unix_millis() / 1_000 + minutes * 60) * 1_000)
}
