//! doorsync's configuration: one TOML file (an annotated example is [`EXAMPLE`]), overridden key by
//! key from the environment (`DOORSYNC_<SECTION>__<KEY>`, e.g. `DOORSYNC_KISI__BASE_URL`), with
//! secrets read from the environment or from mounted files and never kept in the file itself.
//! Every key is documented in [`EXAMPLE`], which a test loads; the sources are merged with
//! figment, and secrets are kept as `secrecy` strings ([`Secret`]).
//!
//! Every error names the key, where its value came from (the file or the variable), and what
//! would be valid: an operator fixes a config from the message alone.
#![forbid(unsafe_code)]

mod error;
mod secret;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use doorsync_access::{AccessPolicy, BookingTiming, NoAccessPolicy};
use doorsync_engine::EngineSettings;
use doorsync_proto::ResourceId;
use doorsync_writer::{ReconcileSettings, WriterSettings};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use url::Url;

pub use error::{ConfigError, Problem};
pub use secrecy::ExposeSecret;
pub use secret::{PLACEHOLDER, Secret};

/// The annotated example configuration, every key with its default and what it does.
pub const EXAMPLE: &str = include_str!("../doorsync.example.toml");

/// Environment variables that override keys start with this; sections are separated by `__`.
pub const ENV_PREFIX: &str = "DOORSYNC_";

/// Everything one doorsync deployment is told. Every key has a default, so an empty file (or
/// none) is a valid configuration for the embedded log; credentials come from the environment.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub log: LogConfig,
    pub nexudus: NexudusConfig,
    pub kisi: KisiConfig,
    pub access: AccessConfig,
    /// `[[mapping]]` entries: which Nexudus resource, pass product or floor-plan item opens which
    /// Kisi group.
    pub mapping: Vec<MappingEntry>,
    /// The engine's own settings type, so a key has one name and one default.
    pub engine: EngineSettings,
    /// The writer's own settings type; `lease_ttl` is checked against `kisi.request_timeout`.
    pub writer: WriterSettings,
    pub reconcile: ReconcileSettings,
    pub admin: AdminConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogBackend {
    /// One redb file on this machine: `doorsync run`.
    #[default]
    Embedded,
    /// NATS JetStream, shared by several processes: `doorsync ingest | engine | writer | reconcile`.
    Jetstream,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub backend: LogBackend,
    /// The embedded log's file.
    pub path: PathBuf,
    pub nats_url: String,
    /// Subjects are `<prefix>.evt.<partition>.<member>`; streams and buckets are named after it.
    pub subject_prefix: String,
    /// Fixed for the life of a deployment: members are assigned to partitions by it.
    pub partitions: u32,
    /// Copies of each JetStream stream and bucket in a NATS cluster (3 for a three-server cluster).
    pub replicas: u32,
    /// A file holding this process's nkey seed (`SU...`); the server knows its public key.
    pub nats_nkey_seed_file: Option<PathBuf>,
    /// A NATS creds file (a user JWT and its nkey seed), for servers in operator mode.
    pub nats_creds_file: Option<PathBuf>,
    /// A NATS user, with its password in `nats_password_file`.
    pub nats_user: Option<String>,
    pub nats_password_file: Option<PathBuf>,
    /// The PEM certificate(s) of the authority that signed the NATS servers' certificates: the
    /// connection then requires TLS and checks the server against it.
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate and its key (PEM) for servers that verify clients (mutual TLS).
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// How doorsync's own log lines on stderr are written (not the event log's format).
    pub format: LogFormat,
}

/// How doorsync writes its own log lines on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Lines for people: coloured only on a terminal, and never when `NO_COLOR` is set.
    #[default]
    Text,
    /// One JSON object per line, for a log collector (the Kubernetes overlays use it).
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            backend: LogBackend::Embedded,
            path: PathBuf::from("doorsync.redb"),
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            subject_prefix: "doorsync".to_owned(),
            partitions: 16,
            replicas: 1,
            nats_nkey_seed_file: None,
            nats_creds_file: None,
            nats_user: None,
            nats_password_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            format: LogFormat::Text,
        }
    }
}

/// How a process proves who it is to NATS (`[log]`'s `nats_*` keys).
#[derive(Debug, Clone)]
pub enum NatsCredentials {
    /// No credentials: a server without authorization.
    None,
    NkeySeed(Secret),
    /// The creds file's contents.
    Creds(Secret),
    UserPassword {
        user: String,
        password: Secret,
    },
}

/// TLS to NATS (`[log]`'s `tls_*` keys), with files that exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsTls {
    pub ca_file: PathBuf,
    /// A client certificate and its key.
    pub client: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NexudusAuth {
    #[default]
    BearerToken,
    Basic,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NexudusConfig {
    /// The Nexudus host, without `/api`.
    pub base_url: String,
    /// The Nexudus admin account's email; `NEXUDUS_USERNAME` when unset.
    pub username: Option<String>,
    /// A mounted file holding the password; `NEXUDUS_PASSWORD` when unset.
    pub password_file: Option<PathBuf>,
    /// A mounted file holding the webhooks' signing secret; `NEXUDUS_WEBHOOK_SECRET` when unset.
    pub webhook_secret_file: Option<PathBuf>,
    pub auth: NexudusAuth,
    /// Where the webhook receiver listens.
    pub webhook_listen: SocketAddr,
    /// Larger webhook bodies are refused with 413.
    pub webhook_body_limit_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub poll_every: Duration,
    /// How far before the last watermark each poll reads again (the filter has minute precision).
    #[serde(with = "humantime_serde")]
    pub poll_overlap: Duration,
    #[serde(with = "humantime_serde")]
    pub sweep_every: Duration,
    /// Take resource, pass product and desk groups from Nexudus's own access-control fields too.
    pub mapping_from_nexudus: bool,
    #[serde(with = "humantime_serde")]
    pub min_request_interval: Duration,
    pub requests_per_minute: u32,
    pub requests_per_hour: u32,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// When a calendar day pass's day begins at every location, as `HH:MM` on the location's
    /// wall clock: Nexudus runs a day pass from the location's daily cutoff (e.g. 03:00) to the
    /// next, and no field of its API that doorsync reads gives it.
    pub day_pass_cutoff: String,
    /// The cutoff of particular locations (Nexudus business ids as keys), over `day_pass_cutoff`.
    pub day_pass_cutoffs: BTreeMap<String, String>,
}

/// `HH:MM` (00:00 to 23:59) as hours and minutes.
pub fn hour_and_minute(text: &str) -> Option<(u8, u8)> {
    let (hours, minutes) = text.trim().split_once(':')?;
    let (hours, minutes) = (hours.parse::<u8>().ok()?, minutes.parse::<u8>().ok()?);
    (hours < 24 && minutes < 60 && text.trim().len() == 5).then_some((hours, minutes))
}

impl NexudusConfig {
    /// The day-pass cutoff of every location, and of those that differ (checked when loaded).
    pub fn day_pass_cutoffs(&self) -> ((u8, u8), BTreeMap<u64, (u8, u8)>) {
        let every = hour_and_minute(&self.day_pass_cutoff).unwrap_or((0, 0));
        let by_location = self
            .day_pass_cutoffs
            .iter()
            .filter_map(|(location, cutoff)| Some((location.parse().ok()?, hour_and_minute(cutoff)?)))
            .collect();
        (every, by_location)
    }
}

impl Default for NexudusConfig {
    fn default() -> Self {
        Self {
            base_url: "https://spaces.nexudus.com".to_owned(),
            username: None,
            password_file: None,
            webhook_secret_file: None,
            auth: NexudusAuth::BearerToken,
            webhook_listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            webhook_body_limit_bytes: 256 * 1024,
            poll_every: Duration::from_secs(60),
            poll_overlap: Duration::from_secs(120),
            sweep_every: Duration::from_secs(3_600),
            mapping_from_nexudus: false,
            min_request_interval: Duration::from_millis(100),
            requests_per_minute: 120,
            requests_per_hour: 5_000,
            request_timeout: Duration::from_secs(30),
            day_pass_cutoff: "00:00".to_owned(),
            day_pass_cutoffs: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KisiConfig {
    pub base_url: String,
    /// A mounted file holding the API key; `KISI_API_KEY` when unset.
    pub api_key_file: Option<PathBuf>,
    /// Sent as `X-Kisi-Integration-Identifier`.
    pub integration_identifier: String,
    /// Sent as `X-Kisi-Integration-Contact` when set.
    pub integration_contact: Option<String>,
    /// Create users as managed users (no Kisi emails, confirmed at once); off, as regular users,
    /// who get Kisi's welcome email and sign up.
    pub managed_users: bool,
    /// The writer sends at most this many requests in any rolling second (1 to 5: Kisi allows 5
    /// in a second per API user, shared by all its keys; 4 leaves room for an operator's dry run).
    pub requests_per_second: u32,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Names the writer lease: one active writer per Kisi account.
    pub account: String,
    /// Also suspend, restore and delete Kisi users doorsync found by email rather than created
    /// (staff, admins, another integration's users). Off: they are linked for memberships only.
    pub manage_found_users: bool,
    /// Emails of Kisi users whose role assignments doorsync takes over, such as the user whose
    /// key Nexudus's built-in Kisi integration used.
    pub adopt_created_by: Vec<String>,
}

impl Default for KisiConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.kisi.io".to_owned(),
            api_key_file: None,
            integration_identifier: "doorsync".to_owned(),
            integration_contact: None,
            managed_users: true,
            requests_per_second: 4,
            request_timeout: Duration::from_secs(10),
            account: "default".to_owned(),
            manage_found_users: false,
            adopt_created_by: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// How long before a booking starts its member may open the doors.
    #[serde(with = "humantime_serde")]
    pub lead: Duration,
    /// How long after a booking ends its member may still open the doors.
    #[serde(with = "humantime_serde")]
    pub lag: Duration,
    /// How long a pass keeps opening doors after it runs out.
    #[serde(with = "humantime_serde")]
    pub pass_lag: Duration,
    pub no_access: NoAccessPolicy,
    /// `[[access.resource_timing]]`: lead and lag for particular resources.
    pub resource_timing: Vec<ResourceTiming>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            lead: Duration::from_secs(15 * 60),
            lag: Duration::from_secs(15 * 60),
            pass_lag: Duration::ZERO,
            no_access: NoAccessPolicy::Suspend,
            resource_timing: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceTiming {
    pub resource: u64,
    #[serde(with = "humantime_serde")]
    pub lead: Duration,
    #[serde(with = "humantime_serde")]
    pub lag: Duration,
}

/// One `[[mapping]]` entry: exactly one Nexudus source and exactly one Kisi group.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingEntry {
    pub resource: Option<u64>,
    pub pass_product: Option<u64>,
    pub floor_plan_item: Option<u64>,
    pub kisi_group: Option<u64>,
    /// Resolved to the group's id through the Kisi API at start; must match one group exactly.
    pub kisi_group_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `/healthz`, `/readyz`, `/metrics` and the status page: an IP address and port, or
    /// `localhost:<port>` for loopback.
    #[serde(deserialize_with = "listen_address")]
    pub listen: SocketAddr,
    /// A mounted file holding the admin bearer token; `DOORSYNC_ADMIN_TOKEN` when unset. With
    /// neither, the admin listener needs no token.
    pub token_file: Option<PathBuf>,
    /// The admin addresses of the other doorsync processes of a split deployment (the writer's,
    /// the ingestor's), whose status the engine's status page shows with its own.
    pub peers: Vec<String>,
    /// Lets the admin listener bind beyond loopback without a token (behind a proxy that
    /// authenticates, say). Off: such a bind is a configuration error, since whoever reaches
    /// the listener could confirm a mass revocation or retry dead letters.
    pub allow_without_token: bool,
    /// The IANA time zone the status page's own clock shows (such as "Europe/London"); the first
    /// location's zone when unset. Each booking's times are shown in its own location's zone.
    pub time_zone: Option<String>,
}

/// `admin.listen`: a socket address, or `localhost:<port>`, which binds loopback. Other host
/// names are refused: a name that resolves to several addresses would bind one of them at random.
fn listen_address<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    let port = text.strip_prefix("localhost:").map(str::parse::<u16>);
    match port {
        Some(Ok(port)) => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
        _ => Err(serde::de::Error::custom(format!(
            "{text:?} is not an address to listen on: write an IP address and port, such as \"127.0.0.1:9090\" \
             (this machine only), \"localhost:9090\" (the same) or \"0.0.0.0:9090\" (every interface)"
        ))),
    }
}

/// Where the admin token is read from when `admin.token_file` is unset.
const ADMIN_TOKEN_ENV: &str = "DOORSYNC_ADMIN_TOKEN";

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            token_file: None,
            peers: Vec::new(),
            allow_without_token: false,
            time_zone: None,
        }
    }
}

impl Config {
    /// Reads `file` (when given; it must exist), then the `DOORSYNC_<SECTION>__<KEY>` variables of
    /// this process, and checks the result.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::MissingFile { file: file.to_path_buf() });
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        // Only variables with a section separator are keys; others with the prefix (such as
        // DOORSYNC_ADMIN_TOKEN) are secrets or settings of the binary.
        let overrides = Env::prefixed(ENV_PREFIX).filter(|key| key.as_str().contains("__")).split("__");
        error::refuse_unreadable_variables(&overrides)?;
        let figment = figment.merge(overrides);
        let config: Config = figment.extract().map_err(|error| ConfigError::from_figment(error, file))?;
        validate::check(&config, &figment)?;
        Ok(config)
    }

    /// Reads the example shipped with doorsync: it must always be a valid configuration.
    pub fn example() -> Result<Config, ConfigError> {
        let figment = Figment::from(Toml::string(EXAMPLE));
        let config: Config = figment.extract().map_err(|error| ConfigError::from_figment(error, None))?;
        validate::check(&config, &figment)?;
        Ok(config)
    }

    /// The access rules the fold applies.
    pub fn access_policy(&self) -> AccessPolicy {
        AccessPolicy {
            booking_lead_ms: millis(self.access.lead),
            booking_lag_ms: millis(self.access.lag),
            resource_timing: self
                .access
                .resource_timing
                .iter()
                .map(|timing| {
                    (
                        ResourceId(timing.resource),
                        BookingTiming { lead_ms: millis(timing.lead), lag_ms: millis(timing.lag) },
                    )
                })
                .collect(),
            pass_lag_ms: millis(self.access.pass_lag),
            no_access: self.access.no_access,
        }
    }

    pub fn nexudus_base_url(&self) -> Result<Url, ConfigError> {
        validate::url("nexudus.base_url", &self.nexudus.base_url)
    }

    pub fn kisi_base_url(&self) -> Result<Url, ConfigError> {
        validate::url("kisi.base_url", &self.kisi.base_url)
    }

    pub fn nexudus_username(&self) -> Result<String, ConfigError> {
        match &self.nexudus.username {
            Some(username) => {
                secret::refuse_placeholder("nexudus.username", username, "the configuration").map(str::to_owned)
            }
            None => {
                secret::from_env("nexudus.username", "NEXUDUS_USERNAME").map(|secret| secret.expose_secret().to_owned())
            }
        }
    }

    pub fn nexudus_password(&self) -> Result<Secret, ConfigError> {
        secret::read("nexudus.password_file", self.nexudus.password_file.as_deref(), "NEXUDUS_PASSWORD")
    }

    pub fn nexudus_webhook_secret(&self) -> Result<Secret, ConfigError> {
        secret::read(
            "nexudus.webhook_secret_file",
            self.nexudus.webhook_secret_file.as_deref(),
            "NEXUDUS_WEBHOOK_SECRET",
        )
    }

    /// This process's NATS credentials, read from the files the config names.
    pub fn nats_credentials(&self) -> Result<NatsCredentials, ConfigError> {
        let log = &self.log;
        if let Some(file) = &log.nats_nkey_seed_file {
            return Ok(NatsCredentials::NkeySeed(secret::read_file("log.nats_nkey_seed_file", file)?));
        }
        if let Some(file) = &log.nats_creds_file {
            return Ok(NatsCredentials::Creds(secret::read_file("log.nats_creds_file", file)?));
        }
        match (&log.nats_user, &log.nats_password_file) {
            (Some(user), Some(file)) => Ok(NatsCredentials::UserPassword {
                user: secret::refuse_placeholder("log.nats_user", user, "the configuration")?.to_owned(),
                password: secret::read_file("log.nats_password_file", file)?,
            }),
            // Checked when the configuration is loaded.
            _ => Ok(NatsCredentials::None),
        }
    }

    /// TLS to NATS when `log.tls_ca_file` names a CA, with every file it names readable.
    pub fn nats_tls(&self) -> Result<Option<NatsTls>, ConfigError> {
        let log = &self.log;
        let Some(ca_file) = &log.tls_ca_file else { return Ok(None) };
        let readable = |key: &'static str, file: &PathBuf| {
            std::fs::metadata(file).map(drop).map_err(|source| ConfigError::UnreadableSecret {
                key,
                file: file.clone(),
                source,
            })
        };
        readable("log.tls_ca_file", ca_file)?;
        let client = match (&log.tls_cert_file, &log.tls_key_file) {
            (Some(cert), Some(key)) => {
                readable("log.tls_cert_file", cert)?;
                readable("log.tls_key_file", key)?;
                Some((cert.clone(), key.clone()))
            }
            _ => None,
        };
        Ok(Some(NatsTls { ca_file: ca_file.clone(), client }))
    }

    pub fn kisi_api_key(&self) -> Result<Secret, ConfigError> {
        secret::read("kisi.api_key_file", self.kisi.api_key_file.as_deref(), "KISI_API_KEY")
    }

    /// `None` when no token is configured: the admin listener is then open.
    pub fn admin_token(&self) -> Result<Option<Secret>, ConfigError> {
        match secret::read("admin.token_file", self.admin.token_file.as_deref(), ADMIN_TOKEN_ENV) {
            Ok(token) => Ok(Some(token)),
            Err(ConfigError::MissingSecret { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[allow(clippy::result_large_err, reason = "figment's Jail fixes the closures' error type")]
mod tests {
    use figment::Jail;
    use secrecy::ExposeSecret;

    use super::*;

    fn load_in(jail: &Jail, toml: &str) -> Result<Config, ConfigError> {
        let file = jail.directory().join("doorsync.toml");
        std::fs::write(&file, toml).map_err(|source| ConfigError::UnreadableSecret {
            key: "test",
            file: file.clone(),
            source,
        })?;
        Config::load(Some(&file))
    }

    fn problems(result: Result<Config, ConfigError>) -> Vec<Problem> {
        match result {
            Err(ConfigError::Invalid { problems }) => problems,
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }

    #[test]
    fn the_shipped_example_is_valid_and_matches_the_defaults_it_documents() {
        let example = Config::example().unwrap();
        let defaults = Config::default();
        assert_eq!(example.log, defaults.log);
        assert_eq!(example.nexudus, defaults.nexudus);
        assert_eq!(example.kisi, defaults.kisi);
        assert_eq!(example.access, defaults.access);
        assert_eq!(example.engine, defaults.engine);
        assert_eq!(example.writer, defaults.writer);
        assert_eq!(example.reconcile, defaults.reconcile);
        assert_eq!(example.admin, defaults.admin);
        assert_eq!(example.mapping.len(), 3);
        assert_eq!(example.mapping[1].kisi_group_name.as_deref(), Some("Coworking floor"));
    }

    #[test]
    fn no_file_means_the_defaults() {
        Jail::expect_with(|_| {
            assert_eq!(Config::load(None).unwrap(), Config::default());
            Ok(())
        });
    }

    #[test]
    fn a_missing_file_is_an_error_not_the_defaults() {
        let error = Config::load(Some(Path::new("/nonexistent/doorsync.toml"))).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/doorsync.toml does not exist"), "{error}");
    }

    #[test]
    fn the_environment_overrides_the_file_key_by_key() {
        Jail::expect_with(|jail| {
            jail.set_env("DOORSYNC_KISI__BASE_URL", "http://127.0.0.1:9999");
            jail.set_env("DOORSYNC_ACCESS__LEAD", "5m");
            jail.set_env("DOORSYNC_ADMIN_TOKEN", "not a key");
            jail.set_env("DOORSYNC_ADMIN__PEERS", "[\"http://doorsync-writer:9090\", \"http://doorsync-ingest:9090\"]");
            let config =
                load_in(jail, "[kisi]\nbase_url = \"https://api.kisi.io\"\nrequests_per_second = 3\n").unwrap();
            assert_eq!(config.kisi.base_url, "http://127.0.0.1:9999");
            assert_eq!(config.kisi.requests_per_second, 3, "keys the environment does not name stay as in the file");
            assert_eq!(config.access.lead, Duration::from_secs(300));
            assert_eq!(config.access_policy().booking_lead_ms, 300_000);
            assert_eq!(config.admin.peers, ["http://doorsync-writer:9090", "http://doorsync-ingest:9090"]);
            Ok(())
        });
    }

    #[test]
    fn an_unknown_key_is_named_with_its_file() {
        Jail::expect_with(|jail| {
            let found = problems(load_in(jail, "[kisi]\nrequests_per_secnd = 3\n"));
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].key, "kisi.requests_per_secnd");
            assert!(found[0].origin.ends_with("doorsync.toml"), "{found:?}");
            assert!(found[0].problem.contains("requests_per_second"), "the valid keys are listed: {found:?}");
            Ok(())
        });
    }

    #[test]
    fn a_bad_value_says_what_would_be_valid() {
        Jail::expect_with(|jail| {
            let found = problems(load_in(jail, "[access]\nlead = \"soon\"\n"));
            let text = ConfigError::Invalid { problems: found }.to_string();
            assert!(text.contains("`access.lead`") && text.contains("doorsync.toml"), "{text}");
            assert!(text.contains("such as \"15m\""), "{text}");

            let found = problems(load_in(jail, "[access]\nno_access = \"ban\"\n"));
            assert_eq!(found[0].key, "access.no_access");
            assert!(found[0].problem.contains("remove_memberships_only"), "the valid values are listed: {found:?}");
            Ok(())
        });
    }

    #[test]
    fn a_bad_value_from_the_environment_names_the_variable() {
        Jail::expect_with(|jail| {
            jail.set_env("DOORSYNC_LOG__PARTITIONS", "many");
            let found = problems(Config::load(None));
            assert_eq!(found[0].key, "log.partitions");
            assert_eq!(found[0].origin, "the environment variable DOORSYNC_LOG__PARTITIONS");
            Ok(())
        });
    }

    #[test]
    fn ranges_and_mapping_entries_are_checked_together() {
        Jail::expect_with(|jail| {
            let toml = r#"
                [kisi]
                requests_per_second = 9
                [reconcile]
                max_revocation_share = 0
                [nexudus]
                poll_overlap = "10s"
                [[mapping]]
                resource = 1
                pass_product = 2
                kisi_group = 3
                [[mapping]]
                resource = 4
                [[mapping]]
                resource = 4
                kisi_group = 5
            "#;
            let found = problems(load_in(jail, toml));
            let keys: Vec<&str> = found.iter().map(|problem| problem.key.as_str()).collect();
            assert_eq!(
                keys,
                [
                    "kisi.requests_per_second",
                    "nexudus.poll_overlap",
                    "reconcile.max_revocation_share",
                    "mapping[0]",
                    "mapping[1]",
                    "mapping[2]"
                ],
                "{found:#?}"
            );
            assert!(found[0].problem.contains("Kisi allows 5 requests/s"), "{found:?}");
            assert!(found[5].problem.contains("resource 4 is mapped twice"), "{found:?}");
            assert!(found.iter().all(|problem| problem.origin.ends_with("doorsync.toml")), "{found:?}");
            Ok(())
        });
    }

    #[test]
    fn a_writer_lease_that_a_kisi_request_could_outlast_is_refused() {
        Jail::expect_with(|jail| {
            let found = problems(load_in(jail, "[kisi]\nrequest_timeout = \"5s\"\n[writer]\nlease_ttl = \"12s\"\n"));
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].key, "writer.lease_ttl");
            assert!(found[0].problem.contains("3 × kisi.request_timeout (5s)"), "{found:?}");

            let config = load_in(jail, "[kisi]\nrequest_timeout = \"2s\"\n[writer]\nlease_ttl = \"6s\"\n").unwrap();
            assert_eq!(config.writer.lease_ttl, Duration::from_secs(6));
            Ok(())
        });
    }

    #[test]
    fn the_writer_ack_wait_is_read_and_must_be_at_least_a_second() {
        Jail::expect_with(|jail| {
            assert_eq!(Config::default().writer.ack_wait, Duration::from_secs(60));
            let config = load_in(jail, "[writer]\nack_wait = \"3s\"\n").unwrap();
            assert_eq!(config.writer.ack_wait, Duration::from_secs(3));

            let found = problems(load_in(jail, "[writer]\nack_wait = \"500ms\"\n"));
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].key, "writer.ack_wait");
            assert!(found[0].origin.ends_with("doorsync.toml"), "{found:?}");
            assert!(found[0].problem.contains("at least 1s"), "{found:?}");

            jail.set_env("DOORSYNC_WRITER__ACK_WAIT", "0s");
            let found = problems(load_in(jail, "[writer]\nack_wait = \"3s\"\n"));
            assert_eq!(found[0].key, "writer.ack_wait");
            assert_eq!(found[0].origin, "the environment variable DOORSYNC_WRITER__ACK_WAIT", "{found:?}");
            Ok(())
        });
    }

    #[test]
    fn day_pass_cutoffs_are_times_of_day_for_every_location_or_one() {
        Jail::expect_with(|jail| {
            let config =
                load_in(jail, "[nexudus]\nday_pass_cutoff = \"03:00\"\nday_pass_cutoffs = { \"1001\" = \"04:30\" }\n")
                    .unwrap();
            assert_eq!(config.nexudus.day_pass_cutoffs(), ((3, 0), BTreeMap::from([(1001, (4, 30))])));
            assert_eq!(Config::default().nexudus.day_pass_cutoffs(), ((0, 0), BTreeMap::new()));

            let found = problems(load_in(
                jail,
                "[nexudus]\nday_pass_cutoff = \"3am\"\nday_pass_cutoffs = { \"Soho\" = \"25:00\" }\n",
            ));
            let keys: Vec<&str> = found.iter().map(|problem| problem.key.as_str()).collect();
            assert_eq!(keys, ["nexudus.day_pass_cutoff", "nexudus.day_pass_cutoffs", "nexudus.day_pass_cutoffs"]);
            assert!(found[0].problem.contains("\"3am\" is not a time of day like \"03:00\""), "{found:?}");
            Ok(())
        });
    }

    #[test]
    fn a_base_url_that_is_not_http_is_refused() {
        Jail::expect_with(|jail| {
            let found = problems(load_in(jail, "[kisi]\nbase_url = \"ftp://api.kisi.io\"\n"));
            assert_eq!(found[0].key, "kisi.base_url");
            assert!(found[0].problem.contains("use https"), "{found:?}");
            Ok(())
        });
    }

    #[test]
    fn secrets_come_from_the_environment_or_a_file_and_say_which_is_missing() {
        Jail::expect_with(|jail| {
            let config = Config::load(None).unwrap();
            let error = config.kisi_api_key().unwrap_err().to_string();
            assert!(error.contains("KISI_API_KEY") && error.contains("kisi.api_key_file"), "{error}");
            assert!(config.admin_token().unwrap().is_none(), "no admin token configured means an open listener");

            jail.set_env("KISI_API_KEY", "from-env");
            assert_eq!(config.kisi_api_key().unwrap().expose_secret(), "from-env");

            jail.create_file("kisi-key", "from-file\n")?;
            let key_file = jail.directory().join("kisi-key");
            jail.set_env("DOORSYNC_KISI__API_KEY_FILE", key_file.display().to_string());
            let config = Config::load(None).unwrap();
            assert_eq!(config.kisi_api_key().unwrap().expose_secret(), "from-file", "a configured file wins");
            Ok(())
        });
    }

    #[test]
    fn an_admin_listener_beyond_loopback_needs_a_token_unless_allowed_without() {
        Jail::expect_with(|jail| {
            jail.set_env("DOORSYNC_ADMIN__LISTEN", "0.0.0.0:9090");
            let error = Config::load(None).unwrap_err().to_string();
            assert!(error.contains("admin.listen") && error.contains("0.0.0.0:9090"), "{error}");
            assert!(error.contains("admin.token_file") && error.contains("allow_without_token"), "{error}");

            jail.set_env("DOORSYNC_ADMIN__ALLOW_WITHOUT_TOKEN", "true");
            assert!(Config::load(None).is_ok(), "allowed without a token on purpose");
            jail.set_env("DOORSYNC_ADMIN__ALLOW_WITHOUT_TOKEN", "false");
            jail.set_env("DOORSYNC_ADMIN_TOKEN", "an-admin-token");
            assert!(Config::load(None).is_ok(), "with a token from the environment");

            jail.set_env("DOORSYNC_ADMIN_TOKEN", "");
            jail.set_env("DOORSYNC_ADMIN__LISTEN", "[::1]:9090");
            assert!(Config::load(None).is_ok(), "loopback needs no token");
            Ok(())
        });
    }

    #[test]
    fn admin_listen_takes_localhost_and_refuses_other_host_names_with_a_hint() {
        Jail::expect_with(|jail| {
            let config = load_in(jail, "[admin]\nlisten = \"localhost:9191\"\n").unwrap();
            assert_eq!(config.admin.listen, SocketAddr::from(([127, 0, 0, 1], 9191)));

            let refused = problems(load_in(jail, "[admin]\nlisten = \"doorsync.internal:9090\"\n"));
            assert_eq!(refused.len(), 1, "{refused:?}");
            assert_eq!(refused[0].key, "admin.listen");
            assert!(refused[0].problem.contains("\"0.0.0.0:9090\" (every interface)"), "{}", refused[0].problem);
            Ok(())
        });
    }

    #[test]
    fn admin_time_zone_must_be_a_zone_of_the_bundled_database() {
        Jail::expect_with(|jail| {
            let config = load_in(jail, "[admin]\ntime_zone = \"Europe/London\"\n").unwrap();
            assert_eq!(config.admin.time_zone.as_deref(), Some("Europe/London"));

            let refused = problems(load_in(jail, "[admin]\ntime_zone = \"Europe/Londres\"\n"));
            assert_eq!(refused.len(), 1, "{refused:?}");
            assert_eq!(refused[0].key, "admin.time_zone");
            assert!(refused[0].problem.contains("\"Europe/Londres\""), "{}", refused[0].problem);
            Ok(())
        });
    }

    #[test]
    fn log_format_is_text_or_json_from_the_file_or_the_environment() {
        Jail::expect_with(|jail| {
            assert_eq!(Config::load(None).unwrap().log.format, LogFormat::Text);
            jail.set_env("DOORSYNC_LOG__FORMAT", "json");
            assert_eq!(Config::load(None).unwrap().log.format, LogFormat::Json);
            jail.set_env("DOORSYNC_LOG__FORMAT", "yaml");
            let refused = problems(Config::load(None));
            assert_eq!(refused[0].key, "log.format", "{refused:?}");
            Ok(())
        });
    }

    #[test]
    fn placeholder_secrets_from_the_example_manifests_are_refused_by_name() {
        Jail::expect_with(|jail| {
            jail.create_file("kisi-key", "REPLACE_ME\n")?;
            jail.set_env("DOORSYNC_KISI__API_KEY_FILE", jail.directory().join("kisi-key").display().to_string());
            jail.set_env("NEXUDUS_PASSWORD", "REPLACE_ME");
            jail.set_env("DOORSYNC_ADMIN_TOKEN", "REPLACE_ME");
            let config = Config::load(None).unwrap();
            let error = config.kisi_api_key().unwrap_err().to_string();
            assert!(error.contains("`kisi.api_key_file`") && error.contains("kisi-key"), "{error}");
            assert!(error.contains("placeholder REPLACE_ME") && error.contains("deploy/README.md"), "{error}");
            let error = config.nexudus_password().unwrap_err().to_string();
            assert!(error.contains("NEXUDUS_PASSWORD") && error.contains("placeholder"), "{error}");
            let error = config.admin_token().unwrap_err().to_string();
            assert!(error.contains("DOORSYNC_ADMIN_TOKEN"), "a placeholder token is not an absent one: {error}");
            Ok(())
        });
    }

    #[test]
    fn nats_credentials_and_tls_come_from_files() {
        Jail::expect_with(|jail| {
            assert!(matches!(Config::default().nats_credentials().unwrap(), NatsCredentials::None));
            assert_eq!(Config::default().nats_tls().unwrap(), None);
            jail.create_file("seed", "SUAEXAMPLE\n")?;
            jail.create_file("ca.pem", "-----BEGIN CERTIFICATE-----\n")?;
            let config = load_in(jail, "[log]\nnats_nkey_seed_file = \"seed\"\ntls_ca_file = \"ca.pem\"\n").unwrap();
            match config.nats_credentials().unwrap() {
                NatsCredentials::NkeySeed(seed) => assert_eq!(seed.expose_secret(), "SUAEXAMPLE"),
                other => panic!("expected an nkey seed, got {other:?}"),
            }
            assert_eq!(config.nats_tls().unwrap().map(|tls| tls.ca_file), Some(PathBuf::from("ca.pem")));

            jail.create_file("password", "hunter2")?;
            let config = load_in(
                jail,
                "[log]\nnats_user = \"engine\"\nnats_password_file = \"password\"\ntls_ca_file = \"none.pem\"\n",
            )
            .unwrap();
            match config.nats_credentials().unwrap() {
                NatsCredentials::UserPassword { user, password } => {
                    assert_eq!((user.as_str(), password.expose_secret()), ("engine", "hunter2"));
                }
                other => panic!("expected a user and password, got {other:?}"),
            }
            let error = config.nats_tls().unwrap_err().to_string();
            assert!(error.contains("`log.tls_ca_file`") && error.contains("none.pem"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn a_nats_url_with_credentials_is_refused_without_printing_them() {
        Jail::expect_with(|jail| {
            for url in ["nats://engine:hunter2@nats:4222", "nats://nats-0:4222,nats://hunter2@nats-1:4222"] {
                jail.set_env("DOORSYNC_LOG__NATS_URL", url);
                let error = ConfigError::Invalid { problems: problems(Config::load(None)) }.to_string();
                assert!(!error.contains("hunter2"), "{error}");
                assert!(error.contains("`log.nats_url`") && error.contains("DOORSYNC_LOG__NATS_URL"), "{error}");
                assert!(error.contains("log.nats_password_file"), "{error}");
            }
            Ok(())
        });
    }

    #[test]
    fn nats_credentials_must_be_one_kind_and_complete() {
        Jail::expect_with(|jail| {
            let found = problems(load_in(
                jail,
                "[log]\nnats_nkey_seed_file = \"a\"\nnats_creds_file = \"b\"\nnats_user = \"c\"\ntls_cert_file = \"d\"\n",
            ));
            let keys: Vec<&str> = found.iter().map(|problem| problem.key.as_str()).collect();
            assert_eq!(
                keys,
                ["log.nats_nkey_seed_file", "log.nats_user", "log.tls_key_file", "log.tls_ca_file"],
                "{found:#?}"
            );
            assert!(found[0].problem.contains("only one of"), "{found:?}");
            assert!(found[1].problem.contains("nats_password_file"), "{found:?}");
            Ok(())
        });
    }

    proptest::proptest! {
        #[test]
        fn any_file_content_gives_a_config_or_an_error_never_a_panic(text in "\\PC{0,200}") {
            Jail::expect_with(|jail| {
                let _ = load_in(jail, &text);
                Ok(())
            });
        }

        #[test]
        fn toml_shaped_content_gives_a_config_or_an_error_never_a_panic(
            section in "(log|kisi|nexudus|access|mapping|admin|engine|reconcile|x)",
            key in "[a-z_]{1,20}",
            value in "(\"[^\"]{0,12}\"|-?[0-9]{1,12}|true|false|\\[\\]|[0-9]\\.[0-9])",
        ) {
            let text = format!("[{section}]\n{key} = {value}\n");
            Jail::expect_with(|jail| {
                if let Err(error) = load_in(jail, &text) {
                    assert!(!error.to_string().is_empty());
                }
                Ok(())
            });
        }
    }
}
