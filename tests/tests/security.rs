//! Security, checked on the real `doorsync` binary against the Nexudus and Kisi simulators over
//! loopback HTTP:
//!
//! * the configured secrets (Nexudus password, Kisi API key, webhook secret, admin token, and the
//!   bearer tokens Nexudus issues) appear nowhere doorsync writes or serves: its logs at `trace`
//!   level, the spans it exports, `doorsync status`, `check-config`, `explain` and `reconcile`,
//!   `/api/status`, `/metrics`, the status pages, and the errors of runs with a wrong Kisi key or
//!   Nexudus password; not as written, nor base64-encoded (as in a Basic `Authorization`
//!   header), nor in hex;
//! * with an admin token configured, every route of the admin listener but `/healthz` and
//!   `/readyz` answers 401 without it or with anything else, and the routes work with it;
//! * a webhook delivery replayed with a valid signature over another body is refused with 401
//!   and appends nothing, though the same body correctly signed is read and reaches Kisi; the
//!   captured delivery replayed as it was costs no Nexudus call, and an action in the path that
//!   is not Nexudus's never reaches the log.
//!
//! Each test starts its own simulators and processes, with secrets of its own: distinctive
//! strings of letters, digits and dashes, so that percent- and form-encoding leave them as they
//! are and any leak shows verbatim or in one of the encodings searched.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use doorsync_clock::{Clock, SharedClock, SystemClock};
use doorsync_ingest::{WEBHOOK_ACTIONS, webhook_path};
use doorsync_integration_tests::otlp::OtlpReceiver;
use doorsync_integration_tests::{Doorsync, HarnessError, doorsync_binary, eventually};
use doorsync_kisi_sim::{KisiSimulator, SimHandle};
use doorsync_nexudus::webhook::{SIGNATURE_HEADER, body_for, sign};
use doorsync_nexudus::{Credentials, NexudusDateTime, Secret};
use doorsync_nexudus_sim::{NexudusSimulator, SimEntity, WebhookFaults};
use doorsync_proto::{KisiGroupId, Timestamp};
use serde_json::{Value, json};

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

const READY_LIMIT: Duration = Duration::from_secs(60);
/// How long a change may take to reach Kisi: far more than it takes, for a loaded machine.
const WAIT: Duration = Duration::from_secs(30);

const NEXUDUS_USERNAME: &str = "ops-7f3a@example.com";
const NEXUDUS_PASSWORD: &str = "nx-pw-Q7vK2mZ9xR4tJ8";
const KISI_API_KEY: &str = "kisi-key-H8sD3fJ6wL1pV5";
const WEBHOOK_SECRET: &str = "hook-secret-T5yB9cN2vM7qG3";
const ADMIN_TOKEN: &str = "admin-token-P4gX8kR3zW6eY2";
/// Configured by the runs that must fail: secrets too, so they must not show either.
const WRONG_KISI_API_KEY: &str = "kisi-wrong-key-B6nQ1tZ8cV4x";
const WRONG_NEXUDUS_PASSWORD: &str = "nx-wrong-pw-M3hW7aK9dS2f";
/// The simulator issues Nexudus bearer tokens as `sim-access-<n>` and `sim-refresh-<n>`.
const ISSUED_TOKEN_PREFIXES: [&str; 2] = ["sim-access-", "sim-refresh-"];

/// The Nexudus and Kisi simulators with a location, a meeting room, and the Kisi group it opens.
struct Simulators {
    nexudus: NexudusSimulator,
    kisi_simulator: KisiSimulator,
    kisi: SimHandle,
    room: u64,
    group: KisiGroupId,
    dir: tempfile::TempDir,
}

impl Simulators {
    async fn start() -> Result<Self, HarnessError> {
        let clock: SharedClock = Arc::new(SystemClock);
        let kisi_simulator = KisiSimulator::start(doorsync_kisi_sim::SimOptions::new(Arc::clone(&clock))).await?;
        let kisi = kisi_simulator.handle();
        kisi.add_api_account("integration@example.com", "doorsync", KISI_API_KEY)?;
        let group = kisi.add_group("Room A");
        let mut options = doorsync_nexudus_sim::SimOptions::new(clock);
        options.limits = None;
        options.webhook_retry_delay = Duration::from_secs(1);
        options.credentials =
            Credentials { username: NEXUDUS_USERNAME.to_owned(), password: Secret::new(NEXUDUS_PASSWORD) };
        let nexudus = NexudusSimulator::start(options).await?;
        let business = nexudus.create_location("Soho", "GMT Standard Time")?;
        let room = nexudus.create(SimEntity::Resource, json!({"BusinessId": business, "Name": "Room A"}))?;
        let dir = tempfile::Builder::new()
            .prefix("doorsync-security-")
            .tempdir()
            .map_err(io("creating the test's directory"))?;
        Ok(Self { nexudus, kisi_simulator, kisi, room, group, dir })
    }

    fn add_member(&self, name: &str) -> Result<u64, HarnessError> {
        let fields = json!({"FullName": name, "Email": format!("{}@example.com", name.to_lowercase()), "Active": true});
        Ok(self.nexudus.create(SimEntity::Coworker, fields)?)
    }

    /// A confirmed booking of the room by `member`, starting in `minutes` for an hour.
    fn book(&self, member: u64, minutes: i64) -> Result<u64, HarnessError> {
        let at = |offset: i64| {
            let instant = Timestamp::from_unix_millis(SystemClock.now().as_unix_millis() + offset * 60_000);
            NexudusDateTime::from_utc(instant).map(|written| written.to_string())
        };
        let fields = json!({"ResourceId": self.room, "CoworkerId": member, "Tentative": false,
            "FromTime": at(minutes), "ToTime": at(minutes + 60)});
        Ok(self.nexudus.create(SimEntity::Booking, fields)?)
    }

    /// Whether Kisi holds an assignment of the member with `email` to the room's group.
    fn in_group(&self, email: &str) -> bool {
        let Some(user) = self.kisi.user_by_email(email) else { return false };
        self.kisi.assignments().iter().any(|assignment| assignment.user == user.id && assignment.group == self.group)
    }

    async fn stop(self) {
        self.nexudus.shutdown().await;
        self.kisi_simulator.shutdown().await;
    }
}

/// How one `doorsync run` is configured.
#[derive(Debug, Clone)]
struct RunSpec {
    name: &'static str,
    /// `basic` (the password on every request) or `bearer_token` (the password in a form, a
    /// token on every request).
    nexudus_auth: &'static str,
    nexudus_password: &'static str,
    kisi_api_key: &'static str,
    /// Map the room by the group's name, which `doorsync run` resolves through Kisi at start.
    group_by_name: bool,
    poll_every: &'static str,
    rust_log: &'static str,
    otlp_endpoint: Option<String>,
}

impl RunSpec {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            nexudus_auth: "basic",
            nexudus_password: NEXUDUS_PASSWORD,
            kisi_api_key: KISI_API_KEY,
            group_by_name: false,
            poll_every: "1h",
            rust_log: "trace",
            otlp_endpoint: None,
        }
    }
}

/// A `doorsync run` started from a [`RunSpec`] (or one that failed to start).
struct Run {
    process: Option<Doorsync>,
    admin: SocketAddr,
    webhooks: SocketAddr,
    config: PathBuf,
    log: PathBuf,
    spec: RunSpec,
}

/// An I/O error, saying what was being done.
fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let context = context.into();
    move |source| HarnessError::Io { context, source }
}

fn free_loopback_address() -> Result<SocketAddr, HarnessError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    listener.local_addr().map_err(io("finding a free port"))
}

/// A `doorsync` command with none of this process's doorsync, OpenTelemetry, Kisi or Nexudus
/// settings: only what the caller adds.
fn doorsync_command() -> Result<std::process::Command, HarnessError> {
    let mut command = std::process::Command::new(doorsync_binary()?);
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if ["DOORSYNC_", "OTEL_", "KISI_", "NEXUDUS_", "RUST_LOG"].iter().any(|prefix| text.starts_with(prefix)) {
            command.env_remove(name);
        }
    }
    command.env("NO_COLOR", "1");
    Ok(command)
}

impl Run {
    /// Writes the run's configuration and starts `doorsync run` with its secrets in the
    /// environment; does not wait for it.
    fn start(sims: &Simulators, spec: RunSpec) -> Result<Self, HarnessError> {
        let (admin, webhooks) = (free_loopback_address()?, free_loopback_address()?);
        let dir = sims.dir.path();
        let config = dir.join(format!("{}.toml", spec.name));
        let group = if spec.group_by_name {
            "kisi_group_name = \"Room A\"".to_owned()
        } else {
            format!("kisi_group = {}", sims.group)
        };
        let text = format!(
            "[log]\nbackend = \"embedded\"\npath = {log:?}\nsubject_prefix = \"sec\"\npartitions = 2\n\n\
             [nexudus]\nbase_url = \"{nexudus}\"\nauth = \"{auth}\"\nwebhook_listen = \"{webhooks}\"\n\
             poll_every = \"{poll}\"\nmin_request_interval = \"0s\"\nrequests_per_minute = 100000\n\
             requests_per_hour = 1000000\n\n[kisi]\nbase_url = \"{kisi}\"\n\n\
             [[mapping]]\nresource = {room}\n{group}\n",
            log = dir.join(format!("{}.redb", spec.name)),
            nexudus = sims.nexudus.base_url(),
            auth = spec.nexudus_auth,
            poll = spec.poll_every,
            kisi = sims.kisi_simulator.base_url(),
            room = sims.room,
        );
        std::fs::write(&config, text).map_err(io(format!("writing {}", config.display())))?;
        let mut command = doorsync_command()?;
        command
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env("DOORSYNC_ADMIN__LISTEN", admin.to_string())
            .env("DOORSYNC_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("NEXUDUS_USERNAME", NEXUDUS_USERNAME)
            .env("NEXUDUS_PASSWORD", spec.nexudus_password)
            .env("NEXUDUS_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("KISI_API_KEY", spec.kisi_api_key)
            .env("RUST_LOG", spec.rust_log);
        if let Some(endpoint) = &spec.otlp_endpoint {
            command
                .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
                .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
                .env("OTEL_BSP_SCHEDULE_DELAY", "200");
        }
        let log = dir.join(format!("{}.log", spec.name));
        let process = Doorsync::start(spec.name, command, admin, &log)?;
        Ok(Self { process: Some(process), admin, webhooks, config, log, spec })
    }

    /// [`Run::start`], then waits until it is ready. The free ports it picks are free only when
    /// picked: a test running beside it, or one of its outgoing connections, may take one first,
    /// so a start that failed on a taken port is tried again on new ones.
    async fn start_ready(sims: &Simulators, spec: RunSpec) -> Result<Self, HarnessError> {
        const ATTEMPTS: usize = 3;
        let mut attempt = 1;
        loop {
            let mut run = Self::start(sims, spec.clone())?;
            match run.wait_ready().await {
                Ok(()) => return Ok(run),
                Err(HarnessError::Exited { log, .. })
                    if log.contains("Address already in use") && attempt < ATTEMPTS =>
                {
                    attempt += 1;
                    eprintln!("doorsync {} found a port taken; starting it again on others", spec.name);
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn wait_ready(&mut self) -> Result<(), HarnessError> {
        match self.process.as_mut() {
            Some(process) => process.wait_ready(READY_LIMIT).await,
            None => Err(HarnessError::Setup(format!("doorsync {} is not running", self.spec.name))),
        }
    }

    /// Registers the run's webhook receiver in Nexudus for every action it acts on.
    fn register_webhooks(&self, sims: &Simulators) -> Result<(), HarnessError> {
        for &action in WEBHOOK_ACTIONS {
            let url = url::Url::parse(&format!("http://{}{}", self.webhooks, webhook_path(action)))?;
            sims.nexudus.register_webhook(action, &url, Secret::new(WEBHOOK_SECRET))?;
        }
        Ok(())
    }

    /// GETs `path` from the admin listener with the admin token: (status, body).
    async fn admin_get(&self, path: &str) -> Result<(u16, String), HarnessError> {
        let response =
            reqwest::Client::new().get(format!("http://{}{path}", self.admin)).bearer_auth(ADMIN_TOKEN).send().await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }

    async fn status(&self) -> Result<Value, HarnessError> {
        let (status, body) = self.admin_get("/api/status").await?;
        if status != 200 {
            return Err(HarnessError::Setup(format!("/api/status answered {status}: {body}")));
        }
        serde_json::from_str(&body).map_err(|error| HarnessError::Setup(format!("/api/status: {error}: {body}")))
    }

    /// Runs the binary with `args` (after `--config <this run's config>`), the run's admin address
    /// and `environment`: whether it succeeded, and what it printed on both streams.
    async fn cli(&self, args: &[&str], environment: &[(&str, &str)]) -> Result<(bool, String), HarnessError> {
        let mut command = doorsync_command()?;
        command
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", self.spec.rust_log)
            .env("DOORSYNC_ADMIN__LISTEN", self.admin.to_string())
            .envs(environment.iter().copied());
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(true);
        let output = command.output().await.map_err(io(format!("running doorsync {args:?}")))?;
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        Ok((output.status.success(), text))
    }

    /// Stops the process (SIGTERM; an error unless it exits successfully) and returns everything
    /// it wrote, shutdown included.
    async fn stop(mut self) -> Result<String, HarnessError> {
        if let Some(process) = self.process.take() {
            process.stop().await?;
        }
        self.written()
    }

    /// Everything the process wrote so far, for one that has exited by itself.
    fn written(&self) -> Result<String, HarnessError> {
        std::fs::read_to_string(&self.log).map_err(io(format!("reading {}", self.log.display())))
    }
}

/// Base64 (RFC 4648) of `bytes`, with the standard alphabet or the URL-safe one, padded.
fn base64(bytes: &[u8], url_safe: bool) -> String {
    let alphabet: &[u8; 64] = if url_safe {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut encoded = String::new();
    for chunk in bytes.chunks(3) {
        let group = chunk.iter().enumerate().fold(0_u32, |group, (at, &byte)| group | u32::from(byte) << (16 - 8 * at));
        for at in 0..4 {
            if at <= chunk.len() {
                encoded.push(char::from(alphabet[(group >> (18 - 6 * at)) as usize & 63]));
            } else {
                encoded.push('=');
            }
        }
    }
    encoded
}

/// The forms `secret` takes in base64 wherever it sits in the encoded bytes (in `user:password`,
/// say): for each of the three alignments, the characters that depend on the secret alone.
fn base64_forms(secret: &str) -> Vec<String> {
    let mut forms = Vec::new();
    for url_safe in [false, true] {
        for offset in 0..3 {
            let mut bytes = vec![0_u8; offset];
            bytes.extend_from_slice(secret.as_bytes());
            let encoded = base64(&bytes, url_safe);
            let first_group = offset.div_ceil(3);
            let last_group = bytes.len() / 3;
            if last_group > first_group {
                forms.push(encoded[4 * first_group..4 * last_group].to_owned());
            }
        }
    }
    forms
}

/// Every form of every secret to look for: as written, base64 in any alignment (both
/// alphabets), hex in either case; and the bearer tokens Nexudus issued.
fn secret_forms(secrets: &[&str]) -> Vec<(String, String)> {
    let mut forms = Vec::new();
    for secret in secrets {
        forms.push((format!("{secret:?}"), (*secret).to_owned()));
        for form in base64_forms(secret) {
            forms.push((format!("{secret:?} in base64"), form));
        }
        let hex: String = secret.bytes().map(|byte| format!("{byte:02x}")).collect();
        forms.push((format!("{secret:?} in hex"), hex.clone()));
        forms.push((format!("{secret:?} in hex"), hex.to_uppercase()));
    }
    for prefix in ISSUED_TOKEN_PREFIXES {
        forms.push(("a Nexudus bearer token".to_owned(), prefix.to_owned()));
    }
    forms
}

/// Each place a secret shows in `outputs` (what wrote it, which secret in which form, and the
/// text around it).
fn leaks(outputs: &[(String, String)], forms: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (source, text) in outputs {
        for (what, form) in forms {
            if let Some(at) = text.find(form.as_str()) {
                // (`floor_char_boundary` is newer than the crate's minimum Rust.)
                let start = (0..=at.saturating_sub(120)).rev().find(|&start| text.is_char_boundary(start)).unwrap_or(0);
                let end = (at + form.len() + 120).min(text.len());
                let end = (end..=text.len()).find(|&end| text.is_char_boundary(end)).unwrap_or(text.len());
                found.push(format!("{what} in {source}: …{}…", &text[start..end]));
            }
        }
    }
    found
}

#[test]
fn the_leak_search_finds_a_secret_in_every_form_it_takes() {
    // RFC 4648's test vectors.
    for (plain, encoded) in
        [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE=")]
    {
        assert_eq!(base64(plain.as_bytes(), false), encoded);
    }
    assert_eq!(base64(&[0xfb, 0xff], true), "-_8=");
    let forms = secret_forms(&[NEXUDUS_PASSWORD]);
    let basic = base64(format!("{NEXUDUS_USERNAME}:{NEXUDUS_PASSWORD}").as_bytes(), false);
    for (label, text) in [
        ("as written", format!("password={NEXUDUS_PASSWORD}&grant_type=password")),
        ("in a Basic header", format!("authorization: Basic {basic}")),
        ("base64 alone", base64(NEXUDUS_PASSWORD.as_bytes(), false)),
        ("base64 after one byte", base64(format!("x{NEXUDUS_PASSWORD}").as_bytes(), true)),
        ("in hex", NEXUDUS_PASSWORD.bytes().map(|byte| format!("{byte:02X}")).collect()),
        ("a token", "Bearer sim-access-3".to_owned()),
    ] {
        assert!(!leaks(&[(label.to_owned(), text)], &forms).is_empty(), "not found {label}");
    }
    let innocent =
        [("a log line".to_owned(), "nexudus: 401 from GET /api/spaces/coworkers: check NEXUDUS_PASSWORD".to_owned())];
    assert_eq!(leaks(&innocent, &forms), Vec::<String>::new());
}

/// A booking driven through one `doorsync run` with every secret configured and everything logged,
/// and runs with a wrong Kisi key and a wrong Nexudus password; everything any of them wrote or
/// served is searched for the secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_what_doorsync_writes_or_serves() -> TestResult {
    let sims = Simulators::start().await?;
    let receiver = OtlpReceiver::start().await?;
    let mut outputs: Vec<(String, String)> = Vec::new();

    // The run that works, on Basic auth: the password travels on every request to Nexudus.
    let run = Run::start_ready(&sims, RunSpec { otlp_endpoint: Some(receiver.endpoint()), ..RunSpec::new("working") })
        .await?;
    run.register_webhooks(&sims)?;
    let ada = sims.add_member("Ada")?;
    let booking = sims.book(ada, 16)?;
    eventually("Ada's booking reaches Kisi", WAIT, || sims.in_group("ada@example.com").then_some(())).await?;
    // A forged delivery, so that the refusal's path writes what it writes too.
    let forged = reqwest::Client::new()
        .post(format!("http://{}/webhooks/nexudus/BookingUpdate", run.webhooks))
        .header(SIGNATURE_HEADER, sign(&Secret::new(WEBHOOK_SECRET), b"[{\"Id\": 1}]"))
        .body(body_for(&json!({"Id": booking})))
        .send()
        .await?;
    assert_eq!(forged.status().as_u16(), 401);
    sims.nexudus.cancel_booking(booking, 1)?;
    eventually("the cancellation reaches Kisi", WAIT, || (!sims.in_group("ada@example.com")).then_some(())).await?;

    for path in [
        "/api/status",
        "/metrics",
        "/",
        &format!("/members/{ada}"),
        "/dead-letters",
        &format!("/api/explain/{ada}"),
        "/readyz",
    ] {
        let (status, body) = run.admin_get(path).await?;
        assert_eq!(status, 200, "{path}: {body}");
        outputs.push((format!("GET {path}"), body));
    }
    let refused = reqwest::get(format!("http://{}/api/status", run.admin)).await?;
    assert_eq!(refused.status().as_u16(), 401);
    outputs.push(("GET /api/status without the token".to_owned(), refused.text().await?));
    let admin_url = format!("http://{}", run.admin);
    let secrets_environment = [
        ("DOORSYNC_ADMIN_TOKEN", ADMIN_TOKEN),
        ("KISI_API_KEY", KISI_API_KEY),
        ("NEXUDUS_USERNAME", NEXUDUS_USERNAME),
        ("NEXUDUS_PASSWORD", NEXUDUS_PASSWORD),
        ("NEXUDUS_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ];
    for (label, args, environment) in [
        ("doorsync status", vec!["status", "--json", "--admin", admin_url.as_str()], &secrets_environment[..1]),
        ("doorsync status without the token", vec!["status", "--json", "--admin", admin_url.as_str()], &[][..]),
        ("doorsync check-config", vec!["check-config"], &secrets_environment[..]),
        ("doorsync explain", vec!["explain", &ada.to_string()], &secrets_environment[..1]),
        ("doorsync reconcile", vec!["reconcile", "--admin", admin_url.as_str()], &secrets_environment[..1]),
    ] {
        let (succeeded, text) = run.cli(&args, environment).await?;
        assert_eq!(succeeded, !label.ends_with("without the token"), "{label}: {text}");
        outputs.push((label.to_owned(), text));
    }
    let nexudus_requests = sims.nexudus.stats().requests;
    outputs.push(("doorsync run (working)".to_owned(), run.stop().await?));
    assert!(nexudus_requests > 0, "the run read Nexudus");

    // The runs that must fail, each with a wrong secret configured; at the same time.
    let (wrong_key_at_start, wrong_key_at_work, wrong_password) = tokio::join!(
        a_run_that_cannot_resolve_its_mapping(&sims),
        a_writer_whose_key_kisi_refuses(&sims),
        an_ingestor_whose_password_nexudus_refuses(&sims),
    );
    outputs.extend(wrong_key_at_start?);
    outputs.extend(wrong_key_at_work?);
    outputs.extend(wrong_password?);

    let spans = receiver.spans();
    assert!(!spans.is_empty(), "the working run exported its spans");
    outputs.extend(spans.iter().map(|span| (format!("span {} of {}", span.name, span.service), format!("{span:?}"))));

    // What was searched is what doorsync says: each log at trace level, with the HTTP exchanges.
    let log = &outputs.iter().find(|(source, _)| source == "doorsync run (working)").ok_or("no log")?.1;
    assert!(
        log.contains("TRACE") && log.contains("/api/spaces/bookings"),
        "a trace-level log: {}",
        &log[..log.len().min(2_000)]
    );
    // The search sees what was written: the member's email, which is no secret, is found by it.
    let control = [("a control".to_owned(), "ada@example.com".to_owned())];
    assert!(!leaks(&outputs, &control).is_empty(), "the outputs hold what doorsync wrote");
    let forms = secret_forms(&[
        NEXUDUS_PASSWORD,
        KISI_API_KEY,
        WEBHOOK_SECRET,
        ADMIN_TOKEN,
        WRONG_KISI_API_KEY,
        WRONG_NEXUDUS_PASSWORD,
    ]);
    let found = leaks(&outputs, &forms);
    let searched: usize = outputs.iter().map(|(_, text)| text.len()).sum();
    println!("searched {} outputs, {searched} bytes, for {} forms of the secrets", outputs.len(), forms.len());
    assert!(found.is_empty(), "secrets leaked:\n{}", found.join("\n\n"));
    sims.stop().await;
    Ok(())
}

/// `doorsync run` and `check-config --online` with a Kisi key Kisi refuses and a group named,
/// which is looked up in Kisi before anything starts: both fail, saying why.
async fn a_run_that_cannot_resolve_its_mapping(sims: &Simulators) -> Result<Vec<(String, String)>, HarnessError> {
    let spec = RunSpec { kisi_api_key: WRONG_KISI_API_KEY, group_by_name: true, ..RunSpec::new("wrong-key-at-start") };
    let mut run = Run::start(sims, spec)?;
    let outcome = run.wait_ready().await;
    if !matches!(outcome, Err(HarnessError::Exited { .. })) {
        return Err(HarnessError::Setup(format!("doorsync run with a refused Kisi key did not exit: {outcome:?}")));
    }
    let (succeeded, check) = run
        .cli(
            &["check-config", "--online"],
            &[("KISI_API_KEY", WRONG_KISI_API_KEY), ("NEXUDUS_PASSWORD", NEXUDUS_PASSWORD)],
        )
        .await?;
    if succeeded || !check.contains("401") {
        return Err(HarnessError::Setup(format!("check-config with a refused Kisi key: {check}")));
    }
    let log = run.written()?;
    if !(log.contains("mapping[0]") && log.contains("401")) {
        return Err(HarnessError::Setup(format!("the failed start does not say what it was doing: {log}")));
    }
    Ok(vec![
        ("doorsync run (refused Kisi key at start)".to_owned(), log),
        ("check-config (refused Kisi key)".to_owned(), check),
    ])
}

/// `doorsync run` whose Kisi key is refused once it has something to write: the writer pauses.
/// It reads Nexudus with bearer tokens, so that tokens are issued and used.
async fn a_writer_whose_key_kisi_refuses(sims: &Simulators) -> Result<Vec<(String, String)>, HarnessError> {
    let spec =
        RunSpec { kisi_api_key: WRONG_KISI_API_KEY, nexudus_auth: "bearer_token", ..RunSpec::new("wrong-key-at-work") };
    // Counted before the start: the writer may check its key with Kisi as soon as it starts.
    let refused_before = sims.kisi.calls().by_status.get(&401).copied().unwrap_or(0);
    let run = Run::start_ready(sims, spec).await?;
    // Its own member and booking, sent to this run only.
    let bo = sims.add_member("Bo")?;
    let booking = sims.book(bo, 30)?;
    let client = reqwest::Client::new();
    for (action, id) in [("CoworkerCreate", bo), ("BookingCreate", booking)] {
        let body = body_for(&json!({"Id": id}));
        let answer = client
            .post(format!("http://{}/webhooks/nexudus/{action}", run.webhooks))
            .header(SIGNATURE_HEADER, sign(&Secret::new(WEBHOOK_SECRET), &body))
            .body(body)
            .send()
            .await?;
        if !answer.status().is_success() {
            return Err(HarnessError::Setup(format!("{action} for {id} answered {}", answer.status())));
        }
    }
    let mut paused = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !paused && tokio::time::Instant::now() < deadline {
        paused = run.status().await?["writer"]["paused"].is_object();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = run.status().await?;
    if !paused || sims.kisi.calls().by_status.get(&401).copied().unwrap_or(0) <= refused_before {
        return Err(HarnessError::Setup(format!("the writer was not refused by Kisi: {status}")));
    }
    if sims.nexudus.stats().token_grants == 0 {
        return Err(HarnessError::Setup("no Nexudus bearer token was issued".to_owned()));
    }
    let (_, metrics) = run.admin_get("/metrics").await?;
    let (_, page) = run.admin_get("/").await?;
    let log = run.stop().await?;
    Ok(vec![
        ("/api/status (refused Kisi key)".to_owned(), status.to_string()),
        ("/metrics (refused Kisi key)".to_owned(), metrics),
        ("status page (refused Kisi key)".to_owned(), page),
        ("doorsync run (refused Kisi key at work)".to_owned(), log),
    ])
}

/// `doorsync run` on bearer tokens with a password Nexudus refuses: its polls and webhooks fail.
async fn an_ingestor_whose_password_nexudus_refuses(sims: &Simulators) -> Result<Vec<(String, String)>, HarnessError> {
    let spec = RunSpec {
        nexudus_auth: "bearer_token",
        nexudus_password: WRONG_NEXUDUS_PASSWORD,
        poll_every: "1s",
        ..RunSpec::new("wrong-password")
    };
    let run = Run::start_ready(sims, spec).await?;
    let body = body_for(&json!({"Id": sims.room}));
    let answer = reqwest::Client::new()
        .post(format!("http://{}/webhooks/nexudus/CoworkerUpdate", run.webhooks))
        .header(SIGNATURE_HEADER, sign(&Secret::new(WEBHOOK_SECRET), &body))
        .body(body)
        .send()
        .await?;
    let webhook_answer = format!("{}: {}", answer.status(), answer.text().await?);
    let mut status = run.status().await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while status["ingest"]["last_poll_error"].is_null() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = run.status().await?;
    }
    if !status["ingest"]["last_poll_error"].as_str().is_some_and(|error| error.contains("401")) {
        return Err(HarnessError::Setup(format!("the poll was not refused by Nexudus: {status}")));
    }
    let (_, page) = run.admin_get("/").await?;
    let log = run.stop().await?;
    Ok(vec![
        ("webhook answer (refused Nexudus password)".to_owned(), webhook_answer),
        ("/api/status (refused Nexudus password)".to_owned(), status.to_string()),
        ("status page (refused Nexudus password)".to_owned(), page),
        ("doorsync run (refused Nexudus password)".to_owned(), log),
    ])
}

/// With a token configured, the admin listener of `doorsync run` answers every route but the
/// probes with 401 unless the request carries exactly that token as a bearer token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_token_the_admin_listener_answers_only_the_probes() -> TestResult {
    let sims = Simulators::start().await?;
    let run = Run::start_ready(&sims, RunSpec { rust_log: "info", ..RunSpec::new("admin") }).await?;
    let client = reqwest::Client::new();
    let base = format!("http://{}", run.admin);
    let routes: [(&str, &str, u16); 11] = [
        ("GET", "/", 200),
        // No such member: the page says so.
        ("GET", "/members/1", 404),
        ("GET", "/dead-letters", 200),
        ("GET", "/api/status", 200),
        ("GET", "/api/explain/1", 200),
        ("GET", "/metrics", 200),
        ("POST", "/api/writer/reconcile", 200),
        // Nothing is held back, so there is nothing to confirm.
        ("POST", "/api/writer/reconcile/confirm", 409),
        ("GET", "/no-such-page", 404),
        ("GET", "/metrics/", 404),
        ("GET", "/HEALTHZ", 404),
    ];
    let token_prefix = &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1];
    let refused_credentials: Vec<(&str, String)> = vec![
        ("no credentials", String::new()),
        ("another token", "Bearer admin-token-0000000000000".to_owned()),
        ("the token cut short", format!("Bearer {token_prefix}")),
        ("the token and more", format!("Bearer {ADMIN_TOKEN}0")),
        ("the token in another case", format!("Bearer {}", ADMIN_TOKEN.to_uppercase())),
        ("the token without its scheme", ADMIN_TOKEN.to_owned()),
        (
            "the token as Basic credentials",
            format!("Basic {}", base64(format!("admin:{ADMIN_TOKEN}").as_bytes(), false)),
        ),
        ("an empty bearer token", "Bearer ".to_owned()),
    ];
    for (method, path, expected) in routes {
        let method: reqwest::Method = method.parse()?;
        for (label, credentials) in &refused_credentials {
            let mut request = client.request(method.clone(), format!("{base}{path}"));
            if !credentials.is_empty() {
                request = request.header("authorization", credentials.as_str());
            }
            let answer = request.send().await?;
            assert_eq!(answer.status().as_u16(), 401, "{method} {path} with {label}");
            assert!(answer.headers().contains_key("www-authenticate"), "{method} {path} with {label}");
            assert!(!answer.text().await?.contains(ADMIN_TOKEN), "the refusal shows the token");
        }
        // The token anywhere but the Authorization header is no token either.
        let elsewhere = client
            .request(method.clone(), format!("{base}{path}?token={ADMIN_TOKEN}"))
            .header("x-admin-token", ADMIN_TOKEN)
            .header("cookie", format!("token={ADMIN_TOKEN}"))
            .send()
            .await?;
        assert_eq!(elsewhere.status().as_u16(), 401, "{method} {path} with the token outside Authorization");
        let right = client.request(method.clone(), format!("{base}{path}")).bearer_auth(ADMIN_TOKEN).send().await?;
        assert_eq!(right.status().as_u16(), expected, "{method} {path} with the token");
    }
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(client.get(format!("{base}{probe}")).send().await?.status().as_u16(), 200, "{probe}");
    }

    // The operator's commands carry the token they are configured with, and say when they have none.
    let (succeeded, text) = run.cli(&["status", "--json", "--admin", &base], &[]).await?;
    assert!(!succeeded && text.contains("asks for the admin token"), "{text}");
    let (succeeded, text) =
        run.cli(&["status", "--json", "--admin", &base], &[("DOORSYNC_ADMIN_TOKEN", "admin-token-wrong")]).await?;
    assert!(!succeeded && text.contains("asks for the admin token"), "{text}");
    let (succeeded, text) =
        run.cli(&["status", "--json", "--admin", &base], &[("DOORSYNC_ADMIN_TOKEN", ADMIN_TOKEN)]).await?;
    assert!(succeeded && text.contains("\"writer\""), "{text}");
    run.stop().await?;
    sims.stop().await;
    Ok(())
}

/// A delivery Nexudus signed, replayed with its body altered: refused with 401, appending nothing,
/// though the altered body names a booking doorsync has not read and, signed, would reach Kisi.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_delivery_replayed_with_its_body_altered_is_refused_and_appends_nothing() -> TestResult {
    let sims = Simulators::start().await?;
    let run = Run::start_ready(&sims, RunSpec { rust_log: "info", ..RunSpec::new("replay") }).await?;
    run.register_webhooks(&sims)?;
    let cy = sims.add_member("Cy")?;
    eventually("Nexudus's deliveries about Cy are answered", WAIT, || {
        (sims.nexudus.stats().deliveries_succeeded >= 2).then_some(())
    })
    .await?;
    // From now on Nexudus delivers nothing, and the poller's next run is an hour away: only the
    // deliveries below tell doorsync about Cy's booking.
    sims.nexudus.set_faults(WebhookFaults { drop_probability: 1.0, ..WebhookFaults::default() });
    let booking = sims.book(cy, 20)?;

    // What Nexudus sent about Cy, and its signature: a delivery an attacker could have captured.
    let captured = body_for(&sims.nexudus.record(SimEntity::Coworker, cy).ok_or("no record of Cy")?);
    let signature = sign(&Secret::new(WEBHOOK_SECRET), &captured);
    let appended = |status: &Value| status["ingest"]["appended"].clone();
    let before = run.status().await?;
    let client = reqwest::Client::new();
    let post = |action: &str, body: Vec<u8>, signature: String| {
        client
            .post(format!("http://{}/webhooks/nexudus/{action}", run.webhooks))
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
    };
    let mut with_space = captured.clone();
    with_space.push(b' ');
    // (The signature covers the body, not the URL: the captured body sent to another action's
    // URL is what Nexudus sent, and is re-read by id like any delivery.)
    let alterations: [(&str, Vec<u8>); 3] = [
        ("the booking instead", body_for(&json!({"Id": booking}))),
        (
            "the booking added",
            format!("[{{\"Id\": {booking}}},{}", String::from_utf8_lossy(&captured[1..])).into_bytes(),
        ),
        ("a space added", with_space),
    ];
    for (label, body) in alterations {
        let answer = post("BookingCreate", body, signature.clone()).await?;
        assert_eq!(answer.status().as_u16(), 401, "replayed with {label}");
    }
    let after = run.status().await?;
    assert_eq!(appended(&after), appended(&before), "nothing was appended");
    assert_eq!(
        after["ingest"]["webhooks"]["refused"].as_u64(),
        before["ingest"]["webhooks"]["refused"].as_u64().map(|refused| refused + 3),
        "each altered replay was counted as refused"
    );
    assert!(!sims.in_group("cy@example.com"), "Kisi got nothing from the altered deliveries");

    // The captured delivery itself is still good: read again, unchanged, nothing appended.
    assert_eq!(post("CoworkerUpdate", captured.clone(), signature.clone()).await?.status().as_u16(), 204);
    assert_eq!(appended(&run.status().await?), appended(&before), "an unchanged record appends nothing");
    // And the booking, signed with the secret, is read and reaches Kisi: the altered deliveries
    // would have had an effect had they been let through.
    let signed = body_for(&json!({"Id": booking}));
    let answer = post("BookingCreate", signed.clone(), sign(&Secret::new(WEBHOOK_SECRET), &signed)).await?;
    assert_eq!(answer.status().as_u16(), 204);
    eventually("Cy's booking reaches Kisi", WAIT, || sims.in_group("cy@example.com").then_some(())).await?;

    // Replaying the captured delivery again within minutes costs doorsync no Nexudus call.
    let requests_before = sims.nexudus.stats().requests;
    for _ in 0..3 {
        assert_eq!(post("CoworkerUpdate", captured.clone(), signature.clone()).await?.status().as_u16(), 204);
    }
    assert_eq!(sims.nexudus.stats().requests, requests_before, "a replay within minutes is answered from memory");
    // An action that is not Nexudus's is not repeated into the log, whatever the path says.
    let forged_action = "Forged-Action-Qz7Wv3";
    assert_eq!(post(forged_action, captured.clone(), "00".to_owned()).await?.status().as_u16(), 401);
    assert_eq!(post(forged_action, captured.clone(), signature.clone()).await?.status().as_u16(), 200);
    let log = run.stop().await?;
    assert!(log.contains("action=\"unknown\""), "the refusal is logged, naming no action: {log}");
    assert!(!log.contains(forged_action), "the path's text reached the log: {log}");
    sims.stop().await;
    Ok(())
}
