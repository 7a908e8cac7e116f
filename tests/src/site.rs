//! One coworking site: Nexudus and Kisi (the simulators, over loopback HTTP) with two meeting
//! rooms and a coworking floor, and doorsync between them as real processes of the binary.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::time::Duration;

use doorsync_access::NoAccessPolicy;
use doorsync_clock::{SharedClock, SystemClock};
use doorsync_ingest::webhook_path;
use doorsync_kisi_sim::{KeyAccess, KisiSimulator, SimHandle};
use doorsync_layout::Layout;
use doorsync_log_jetstream::permissions::Role;
use doorsync_nexudus::{NexudusDateTime, Secret, WebhookAction};
use doorsync_nexudus_sim::{NexudusSimulator, SimEntity};
use doorsync_proto::{KisiGroupId, KisiUserId, MemberId, Partition, Subjects, Timestamp};
use doorsync_test_support::{
    NatsServer, NkeyUser, Security, ServerUser, TestCertificates, UserCredential, UserPermissions,
};
use serde_json::{Value, json};

use crate::{Doorsync, HarnessError, ProcessStatus, doorsync_binary};

const KISI_API_KEY: &str = "doorsync-e2e-kisi-key";
/// The second writer of a replicated site writes as the same Kisi API user with a key of its own,
/// so that the simulator can tell which writer called.
const SECOND_WRITER_KISI_API_KEY: &str = "doorsync-e2e-kisi-key-2";
const WEBHOOK_SECRET: &str = "doorsync-e2e-webhook-secret";
/// Generous: several processes start at once on a shared 2-core machine.
const READY_LIMIT: Duration = Duration::from_secs(60);

const SUBJECT_PREFIX: &str = "e2e";
const PARTITIONS: u32 = 4;

/// How long a replicated site's engines and writers hold their leases unrenewed: short, so that
/// a survivor takes over from a killed process within seconds instead of the defaults' 15 s and
/// 30 s.
pub const REPLICATED_ENGINE_LEASE_TTL: Duration = Duration::from_secs(4);
pub const REPLICATED_WRITER_LEASE_TTL: Duration = Duration::from_secs(6);
/// A third of the writer lease, as the configuration requires; far more than the Kisi
/// simulator needs on loopback.
const REPLICATED_KISI_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The certificates and the role's nkeys of a site whose nats-server requires them.
#[derive(Debug)]
struct NatsSecurity {
    certificates: TestCertificates,
    server: Security,
    /// Each role's seed file, by role name.
    seed_files: HashMap<&'static str, PathBuf>,
}

impl NatsSecurity {
    /// A CA and the server's certificate, and an nkey for each role with the permissions of
    /// `doorsync_log_jetstream::permissions` for the site's layout, in `dir`.
    fn generate(dir: &Path, layout: &Layout) -> Result<Self, HarnessError> {
        let certificates = TestCertificates::generate(dir)?;
        let writer_consumer = doorsync_writer::WriterOptions::new("writer", "default").consumer_name;
        let mut users = Vec::new();
        let mut seed_files = HashMap::new();
        for role in Role::ALL {
            let user = NkeyUser::generate()?;
            let seed_file = dir.join(format!("nats-{role}.seed"));
            std::fs::write(&seed_file, &user.seed)
                .map_err(HarnessError::io(format!("writing {}", seed_file.display())))?;
            seed_files.insert(role.name(), seed_file);
            let permissions = role.permissions(layout, &writer_consumer);
            users.push(ServerUser {
                credential: UserCredential::Nkey { public_key: user.public_key },
                permissions: Some(UserPermissions::new(
                    permissions.publish_allow,
                    permissions.publish_deny,
                    permissions.subscribe_allow,
                    permissions.subscribe_deny,
                )),
            });
        }
        let server = Security { users, tls: Some(certificates.clone()), verify_client_certificates: false };
        Ok(Self { certificates, server, seed_files })
    }

    fn seed_file(&self, role: &str) -> Result<&Path, HarnessError> {
        self.seed_files
            .get(role)
            .map(PathBuf::as_path)
            .ok_or_else(|| HarnessError::Setup(format!("no NATS identity for the role {role}")))
    }
}

/// Nexudus numbers its webhook actions from 1 to 90 (reference/nexudus-api.md §3.2).
const WEBHOOK_ACTION_CODES: std::ops::RangeInclusive<u64> = 1..=90;

/// How doorsync runs on a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// `doorsync ingest`, `doorsync engine` and `doorsync writer`, one process each, sharing a
    /// nats-server of the site's own (JetStream) secured as in production: TLS with a CA made
    /// for the site, and each role connecting with its own nkey, which the server limits to that
    /// role's permissions (`doorsync_log_jetstream::permissions`).
    SeparateProcesses,
    /// `doorsync run`: every role in one process, on the embedded log.
    OneProcess,
    /// One `doorsync ingest`, two `doorsync engine` (`engine-1`, `engine-2`) splitting the
    /// partitions and two `doorsync writer` (`writer-1`, `writer-2`), one active and one on
    /// standby, on a nats-server of the site's own, with the short leases of
    /// [`REPLICATED_ENGINE_LEASE_TTL`] and [`REPLICATED_WRITER_LEASE_TTL`].
    Replicated,
}

impl Deployment {
    /// Each process's name (for its log and [`Site::process`]) and the role it runs.
    fn processes(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::SeparateProcesses => &[("ingest", "ingest"), ("engine", "engine"), ("writer", "writer")],
            Self::OneProcess => &[("run", "run")],
            Self::Replicated => &[
                ("ingest", "ingest"),
                ("engine-1", "engine"),
                ("engine-2", "engine"),
                ("writer-1", "writer"),
                ("writer-2", "writer"),
            ],
        }
    }

    /// Lines added to the configuration's `[kisi]` section, and sections added at its end.
    fn tuning(self) -> (String, String) {
        match self {
            Self::SeparateProcesses | Self::OneProcess => (String::new(), String::new()),
            Self::Replicated => (
                format!("request_timeout = \"{}ms\"\n", REPLICATED_KISI_REQUEST_TIMEOUT.as_millis()),
                format!(
                    "\n[engine]\nlease_ttl = \"{}ms\"\n\n[writer]\nlease_ttl = \"{}ms\"\n",
                    REPLICATED_ENGINE_LEASE_TTL.as_millis(),
                    REPLICATED_WRITER_LEASE_TTL.as_millis()
                ),
            ),
        }
    }
}

/// A Kisi user other than the integration's own, as the Kisi simulator holds it, without ids or
/// timestamps of its own, so that two sites' users compare equal when they have the same access.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KisiMember {
    pub email: String,
    pub access_enabled: bool,
    /// By group name.
    pub memberships: Vec<KisiMembership>,
}

/// A role assignment on a group, by the group's name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KisiMembership {
    pub group: String,
    pub role: String,
    pub valid_from: Option<Timestamp>,
    pub valid_until: Option<Timestamp>,
}

/// Nexudus's ids of the site's location, rooms and pass product.
#[derive(Debug, Clone, Copy)]
pub struct NexudusPlaces {
    pub business: u64,
    pub room_a: u64,
    pub room_b: u64,
    /// A time pass product (not a day pass) that opens the coworking floor.
    pub floor_pass: u64,
}

/// One of the site's two rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    A,
    B,
}

impl Room {
    /// The name of the Kisi group the room opens.
    pub fn group(self) -> &'static str {
        match self {
            Self::A => "Room A",
            Self::B => "Room B",
        }
    }

    /// The room's Nexudus resource.
    pub fn resource(self, places: &NexudusPlaces) -> u64 {
        match self {
            Self::A => places.room_a,
            Self::B => places.room_b,
        }
    }
}

/// Kisi's ids of the groups the site maps to: one per room, and the coworking floor.
#[derive(Debug, Clone, Copy)]
pub struct KisiGroups {
    pub room_a: KisiGroupId,
    pub room_b: KisiGroupId,
    pub floor: KisiGroupId,
}

/// A site with doorsync running on it. Dropping it stops doorsync's processes first, then the
/// simulators and the nats-server.
#[derive(Debug)]
pub struct Site {
    processes: Vec<Doorsync>,
    pub kisi: SimHandle,
    pub nexudus: NexudusSimulator,
    pub places: NexudusPlaces,
    pub groups: KisiGroups,
    kisi_simulator: KisiSimulator,
    api_user: KisiUserId,
    /// The Kisi API key each process that writes to Kisi uses, by process name.
    kisi_keys: HashMap<&'static str, &'static str>,
    subjects: Subjects,
    /// Stopped when the site is dropped; [`Site::kill_nats`] and [`Site::restart_nats`] take it
    /// away and bring it back meanwhile.
    nats: Option<NatsServer>,
    /// How each process was started, by name, so that [`Site::restart`] starts it the same way.
    launches: HashMap<&'static str, Launch>,
    /// The doorsync binary and the configuration file every process reads.
    binary: PathBuf,
    config: PathBuf,
    /// Restarts so far, which number the restarted processes' log files.
    restarts: u32,
    /// The certificates and each role's nkey when the site's nats-server requires them.
    nats_security: Option<NatsSecurity>,
    dir: tempfile::TempDir,
}

/// How one doorsync process is started: its role, its admin address and the environment added
/// to the configuration.
#[derive(Debug, Clone)]
struct Launch {
    role: &'static str,
    admin: SocketAddr,
    settings: Vec<(String, String)>,
}

impl Site {
    /// Starts the simulators (on the system clock: doorsync's processes live in real time), a
    /// nats-server for separate processes, writes the configuration with `no_access` as the
    /// policy, starts doorsync's processes and waits until each is ready, then registers the
    /// Nexudus webhooks to the ingestor.
    pub async fn start(deployment: Deployment, no_access: NoAccessPolicy) -> Result<Self, HarnessError> {
        Self::start_with_settings(deployment, no_access, |_| Vec::new()).await
    }

    /// [`Site::start`], with the environment variables `settings` gives for each role (`ingest`,
    /// `engine`, `writer` or `run`) added to that role's processes.
    pub async fn start_with_settings(
        deployment: Deployment,
        no_access: NoAccessPolicy,
        settings_for: impl Fn(&str) -> Vec<(&'static str, String)>,
    ) -> Result<Self, HarnessError> {
        Self::start_seeded(deployment, no_access, 0, settings_for).await
    }

    /// [`Site::start_with_settings`], with the Kisi simulator's random faults (switched on with
    /// `site.kisi.set_random_faults`) drawn from `kisi_fault_seed`.
    pub async fn start_seeded(
        deployment: Deployment,
        no_access: NoAccessPolicy,
        kisi_fault_seed: u64,
        settings_for: impl Fn(&str) -> Vec<(&'static str, String)>,
    ) -> Result<Self, HarnessError> {
        let binary = doorsync_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("doorsync-e2e-")
            .tempdir()
            .map_err(HarnessError::io("creating the site's directory"))?;
        let clock: SharedClock = Arc::new(SystemClock);

        let mut kisi_options = doorsync_kisi_sim::SimOptions::new(Arc::clone(&clock));
        kisi_options.seed = kisi_fault_seed;
        let kisi_simulator = KisiSimulator::start(kisi_options).await?;
        let kisi = kisi_simulator.handle();
        let api_user = kisi.add_api_account("integration@example.com", "doorsync", KISI_API_KEY)?;
        let groups = KisiGroups {
            room_a: kisi.add_group("Room A"),
            room_b: kisi.add_group("Room B"),
            floor: kisi.add_group("Coworking floor"),
        };

        let mut nexudus_options = doorsync_nexudus_sim::SimOptions::new(clock);
        nexudus_options.limits = None;
        // A delivery that failed (say, just before the ingestor listened) comes again soon.
        nexudus_options.webhook_retry_delay = Duration::from_secs(1);
        let credentials = nexudus_options.credentials.clone();
        let nexudus = NexudusSimulator::start(nexudus_options).await?;
        let places = furnish(&nexudus)?;

        let subjects = Subjects::new(SUBJECT_PREFIX, PARTITIONS)
            .map_err(|error| HarnessError::Setup(format!("the site's subjects: {error}")))?;
        let nats_security = match deployment {
            Deployment::SeparateProcesses => Some(NatsSecurity::generate(dir.path(), &Layout::new(subjects.clone()))?),
            Deployment::Replicated | Deployment::OneProcess => None,
        };
        let nats = match (deployment, &nats_security) {
            (_, Some(security)) => Some(NatsServer::start_secured(&security.server).await?),
            (Deployment::Replicated, None) => Some(NatsServer::start().await?),
            _ => None,
        };
        let processes = deployment.processes();
        let kisi_keys: HashMap<&'static str, &'static str> = processes
            .iter()
            .filter(|(_, role)| matches!(*role, "writer" | "run"))
            .zip([KISI_API_KEY, SECOND_WRITER_KISI_API_KEY])
            .map(|(&(name, _), key)| (name, key))
            .collect();
        if kisi_keys.values().any(|&key| key == SECOND_WRITER_KISI_API_KEY) {
            kisi.add_api_key(api_user, SECOND_WRITER_KISI_API_KEY, KeyAccess::Admin)?;
        }
        let log = match (&nats, &nats_security) {
            (Some(nats), Some(security)) => format!(
                "backend = \"jetstream\"\nnats_url = \"{}\"\ntls_ca_file = {:?}",
                nats.url(),
                security.certificates.ca_file
            ),
            (Some(nats), None) => format!("backend = \"jetstream\"\nnats_url = \"{}\"", nats.url()),
            (None, _) => format!("backend = \"embedded\"\npath = {:?}", dir.path().join("doorsync.redb")),
        };
        let webhook_listen = free_loopback_address()?;
        let config = dir.path().join("doorsync.toml");

        let nexudus_secrets = [
            ("NEXUDUS_USERNAME", credentials.username.clone()),
            ("NEXUDUS_PASSWORD", credentials.password.expose().to_owned()),
            ("NEXUDUS_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
        ];
        let mut site = Self {
            processes: Vec::new(),
            kisi,
            nexudus,
            places,
            groups,
            kisi_simulator,
            api_user,
            kisi_keys,
            subjects,
            nats,
            launches: HashMap::new(),
            binary,
            config: config.clone(),
            restarts: 0,
            nats_security,
            dir,
        };
        let text = site.config_toml(&log, webhook_listen, no_access, deployment);
        std::fs::write(&config, text).map_err(HarnessError::io(format!("writing {}", config.display())))?;
        let admins = processes
            .iter()
            .map(|&(name, role)| Ok((name, role, free_loopback_address()?)))
            .collect::<Result<Vec<(&str, &str, SocketAddr)>, HarnessError>>()?;
        // The engine's status page shows the writer's and the ingestor's status, asked from them.
        let peers: Vec<String> = admins
            .iter()
            .filter(|(_, role, _)| *role != "engine")
            .map(|(_, _, admin)| format!("\"http://{admin}\""))
            .collect();
        for &(name, role, admin) in &admins {
            // Each role gets only the secrets it needs.
            let kisi_secret = site.kisi_keys.get(name).map(|&key| ("KISI_API_KEY", key.to_owned()));
            let mut settings: Vec<(&str, String)> = match role {
                "ingest" | "run" => nexudus_secrets.to_vec(),
                _ => Vec::new(),
            };
            settings.extend(kisi_secret);
            // Each role's own NATS identity, as each role's pod mounts its own seed.
            if let Some(security) = &site.nats_security {
                settings.push(("DOORSYNC_LOG__NATS_NKEY_SEED_FILE", security.seed_file(role)?.display().to_string()));
            }
            settings.extend(settings_for(role));
            if role == "engine" {
                settings.push(("DOORSYNC_ADMIN__PEERS", format!("[{}]", peers.join(", "))));
            }
            let command = doorsync_command(&site.binary, role, &config, admin, &settings);
            let log_path = site.dir.path().join(format!("{name}.log"));
            site.processes.push(Doorsync::start(name, command, admin, &log_path)?);
            let settings = settings.into_iter().map(|(variable, value)| (variable.to_owned(), value)).collect();
            site.launches.insert(name, Launch { role, admin, settings });
        }
        for process in &mut site.processes {
            process.wait_ready(READY_LIMIT).await?;
        }
        // Every action Nexudus names, as an operator who ticks every box would: the ingestor
        // answers those it does not act on with 2xx.
        let actions = WEBHOOK_ACTION_CODES.map(WebhookAction::from_code).filter(|action| action.name().is_some());
        for action in actions {
            let url = url::Url::parse(&format!("http://{webhook_listen}{}", webhook_path(action)))?;
            site.nexudus.register_webhook(action, &url, Secret::new(WEBHOOK_SECRET))?;
        }
        Ok(site)
    }

    /// Runs one of the operator's commands (`explain`, `dlq`, `replay`) with the site's
    /// configuration and, on a secured nats-server, the operator's own NATS identity.
    pub async fn operator(&self, arguments: &[&str]) -> Result<std::process::Output, HarnessError> {
        let mut settings: Vec<(&str, String)> = vec![("KISI_API_KEY", KISI_API_KEY.to_owned())];
        if let Some(security) = &self.nats_security {
            settings.push(("DOORSYNC_LOG__NATS_NKEY_SEED_FILE", security.seed_file("operator")?.display().to_string()));
        }
        let admin = free_loopback_address()?;
        let mut command = doorsync_command(&self.binary, arguments[0], &self.config, admin, &settings);
        command.args(&arguments[1..]);
        let output = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(HarnessError::io(format!("running doorsync {arguments:?}")))?;
        Ok(output)
    }

    /// A page (`path`, such as "/system") of the status page of the process that runs the engine
    /// (`doorsync run`, or `doorsync engine` showing its peers' status too).
    pub async fn status_page(&self, path: &str) -> Result<String, HarnessError> {
        let engine = self
            .processes
            .iter()
            .find(|process| process.name().starts_with("engine") || process.name() == "run")
            .ok_or_else(|| HarnessError::Setup("no process runs the engine".into()))?;
        Ok(reqwest::get(format!("http://{}{path}", engine.admin())).await?.error_for_status()?.text().await?)
    }

    /// The running process called `name` (see [`Deployment`]).
    pub fn process(&self, name: &str) -> Result<&Doorsync, HarnessError> {
        self.processes
            .iter()
            .find(|process| process.name() == name)
            .ok_or_else(|| HarnessError::Setup(format!("no doorsync process called {name} runs on this site")))
    }

    /// What the process called `name` reports at `/api/status`.
    pub async fn status_of(&self, name: &str) -> Result<ProcessStatus, HarnessError> {
        self.process(name)?.status().await
    }

    /// Kills the process called `name` with SIGKILL (see [`Doorsync::kill`]) and returns how it
    /// ended; the site no longer stops it.
    pub async fn kill(&mut self, name: &str) -> Result<ExitStatus, HarnessError> {
        self.take_process(name)?.kill().await
    }

    /// Stops the process called `name` with SIGTERM, as a rollout or an operator's restart
    /// does: it checkpoints and gives back its leases. [`Site::restart`] starts it again.
    pub async fn stop_process(&mut self, name: &str) -> Result<(), HarnessError> {
        self.take_process(name)?.stop().await
    }

    fn take_process(&mut self, name: &str) -> Result<Doorsync, HarnessError> {
        let index = self
            .processes
            .iter()
            .position(|process| process.name() == name)
            .ok_or_else(|| HarnessError::Setup(format!("no doorsync process called {name} runs on this site")))?;
        Ok(self.processes.remove(index))
    }

    /// Starts the process called `name` again after [`Site::kill`], as its supervisor (Kubernetes)
    /// would: the same role, configuration, environment and admin address, with a log file of its
    /// own (`<name>.<n>.log`). Waits until it is ready.
    pub async fn restart(&mut self, name: &str) -> Result<(), HarnessError> {
        if self.processes.iter().any(|process| process.name() == name) {
            return Err(HarnessError::Setup(format!("doorsync {name} is running: kill it before restarting it")));
        }
        let (&name, launch) = self.launches.get_key_value(name).ok_or_else(|| {
            HarnessError::Setup(format!("no doorsync process called {name} was started on this site"))
        })?;
        let settings: Vec<(&str, String)> =
            launch.settings.iter().map(|(variable, value)| (variable.as_str(), value.clone())).collect();
        let command = doorsync_command(&self.binary, launch.role, &self.config, launch.admin, &settings);
        self.restarts += 1;
        let log_path = self.dir.path().join(format!("{name}.{}.log", self.restarts));
        let mut process = Doorsync::start(name, command, launch.admin, &log_path)?;
        let ready = process.wait_ready(READY_LIMIT).await;
        // Kept even when it is not ready, so that the site stops it (and shows its log).
        self.processes.push(process);
        ready
    }

    /// Rewrites the configuration file every process reads, as an operator editing it would;
    /// processes read it when they (re)start.
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) -> Result<(), HarnessError> {
        let path = self.config.display().to_string();
        let text = std::fs::read_to_string(&self.config).map_err(HarnessError::io(format!("reading {path}")))?;
        std::fs::write(&self.config, edit(text)).map_err(HarnessError::io(format!("writing {path}")))
    }

    /// An error naming the first process that has exited by itself (a crash, not a kill), with
    /// the end of its log.
    pub fn check_running(&mut self) -> Result<(), HarnessError> {
        self.processes.iter_mut().try_for_each(Doorsync::check_running)
    }

    /// Kills the site's nats-server with SIGKILL, as a crash would; doorsync's processes keep
    /// running and reconnect once [`Site::restart_nats`] brings it back.
    pub async fn kill_nats(&mut self) -> Result<(), HarnessError> {
        let nats = self.nats.as_mut().ok_or_else(|| HarnessError::Setup("this site runs no nats-server".into()))?;
        Ok(nats.kill().await?)
    }

    /// Starts the site's nats-server again on the same port and store (killing it first if it
    /// runs), and waits until JetStream answers.
    pub async fn restart_nats(&mut self) -> Result<(), HarnessError> {
        let nats = self.nats.as_mut().ok_or_else(|| HarnessError::Setup("this site runs no nats-server".into()))?;
        Ok(nats.restart().await?)
    }

    /// The URL of the site's nats-server, for a test that reads the log itself.
    pub fn nats_url(&self) -> Option<String> {
        self.nats.as_ref().map(NatsServer::url)
    }

    /// Where doorsync's messages live in the site's log: streams and buckets.
    pub fn layout(&self) -> Layout {
        Layout::new(self.subjects.clone())
    }

    /// Keeps the site's directory (configuration and every process's log, the killed ones'
    /// included) when the site is dropped, or lets it be removed again; returns where it is.
    pub fn keep_files(&mut self, keep: bool) -> &Path {
        self.dir.disable_cleanup(keep);
        self.dir.path()
    }

    /// Requests the Kisi simulator received with the API key of the process called `name`.
    pub fn kisi_calls_by(&self, name: &str) -> Result<u64, HarnessError> {
        let key = self
            .kisi_keys
            .get(name)
            .ok_or_else(|| HarnessError::Setup(format!("doorsync {name} has no Kisi API key on this site")))?;
        Ok(self.kisi.calls_with_key(key))
    }

    /// The partition the engine processes a Nexudus customer's events in.
    pub fn partition_of(&self, member: u64) -> Partition {
        self.subjects.partition_of(MemberId(member))
    }

    pub fn partitions(&self) -> u32 {
        PARTITIONS
    }

    /// An active Nexudus customer with the email `<name in lower case>@example.com`.
    pub fn add_member(&self, name: &str) -> Result<u64, HarnessError> {
        let fields = json!({"FullName": name, "Email": email_of(name), "Active": true});
        Ok(self.nexudus.create(SimEntity::Coworker, fields)?)
    }

    /// A confirmed booking of `resource` by `member`.
    pub fn book(&self, member: u64, resource: u64, from: Timestamp, to: Timestamp) -> Result<u64, HarnessError> {
        let fields = json!({"ResourceId": resource, "CoworkerId": member, "Tentative": false,
            "FromTime": nexudus_time(from), "ToTime": nexudus_time(to)});
        Ok(self.nexudus.create(SimEntity::Booking, fields)?)
    }

    pub fn cancel_booking(&self, booking: u64) -> Result<(), HarnessError> {
        self.nexudus.cancel_booking(booking, 1)?;
        Ok(())
    }

    /// An unused pass of the coworking floor's product, valid until `expires` (`None`: for good).
    pub fn issue_floor_pass(&self, member: u64, expires: Option<Timestamp>) -> Result<u64, HarnessError> {
        let fields = json!({"CoworkerId": member, "TimePassId": self.places.floor_pass,
            "BusinessId": self.places.business, "Used": false, "ExpireDate": expires.map(nexudus_time)});
        Ok(self.nexudus.create(SimEntity::CoworkerTimePass, fields)?)
    }

    /// Every Kisi user but the integration's own, with their role assignments, by email (a
    /// duplicated user appears twice).
    pub fn kisi_state(&self) -> Vec<KisiMember> {
        let groups: HashMap<KisiGroupId, String> =
            self.kisi.groups().into_iter().map(|group| (group.id, group.name)).collect();
        let assignments = self.kisi.assignments();
        let mut members: Vec<KisiMember> = self
            .kisi
            .users()
            .into_iter()
            .filter(|user| user.id != self.api_user)
            .map(|user| {
                let mut memberships: Vec<KisiMembership> = assignments
                    .iter()
                    .filter(|assignment| assignment.user == user.id)
                    .map(|assignment| KisiMembership {
                        group: groups.get(&assignment.group).cloned().unwrap_or_else(|| assignment.group.to_string()),
                        role: assignment.role_id.clone(),
                        valid_from: assignment.valid_from,
                        valid_until: assignment.valid_until,
                    })
                    .collect();
                memberships.sort();
                KisiMember { email: user.email, access_enabled: user.access_enabled, memberships }
            })
            .collect();
        members.sort();
        members
    }

    /// The Kisi user of the member called `name` (see [`Site::add_member`]), if there is one.
    pub fn kisi_member(&self, name: &str) -> Option<KisiMember> {
        let email = email_of(name);
        self.kisi_state().into_iter().find(|member| member.email == email)
    }

    /// Stops doorsync's processes with SIGTERM, the ingestor first; an error if one does not
    /// exit successfully, or if the site's nats-server refused any of their operations. Then
    /// stops the simulators.
    pub async fn stop(mut self) -> Result<(), HarnessError> {
        let mut outcome = Ok(());
        for process in std::mem::take(&mut self.processes) {
            let stopped = process.stop().await;
            if outcome.is_ok() {
                outcome = stopped;
            }
        }
        // On a secured server, a role that needed more than its permissions shows here even
        // when it got over it (a refused request that was retried, say).
        let refused: Vec<String> = self
            .nats
            .as_ref()
            .map(|nats| nats.log().lines().filter(|line| line.contains("Violation")).map(str::to_owned).collect())
            .unwrap_or_default();
        if outcome.is_ok() && !refused.is_empty() {
            outcome = Err(HarnessError::Setup(format!(
                "nats-server refused operations of doorsync's roles:\n{}",
                refused.join("\n")
            )));
        }
        let Self { kisi_simulator, nexudus, .. } = self;
        nexudus.shutdown().await;
        kisi_simulator.shutdown().await;
        outcome
    }
}

fn email_of(name: &str) -> String {
    format!("{}@example.com", name.to_lowercase())
}

fn nexudus_time(at: Timestamp) -> Value {
    NexudusDateTime::from_utc(at).map_or(Value::Null, |written| Value::String(written.to_string()))
}

/// A location in London with two meeting rooms and a ten-hour time pass.
fn furnish(nexudus: &NexudusSimulator) -> Result<NexudusPlaces, HarnessError> {
    let business = nexudus.create_location("Soho", "GMT Standard Time")?;
    let room = |name: &str| nexudus.create(SimEntity::Resource, json!({"BusinessId": business, "Name": name}));
    let room_a = room("Room A")?;
    let room_b = room("Room B")?;
    let floor_pass = nexudus
        .create(SimEntity::TimePass, json!({"Name": "Ten hours", "BusinessId": business, "MinutesIncluded": 600}))?;
    Ok(NexudusPlaces { business, room_a, room_b, floor_pass })
}

impl Site {
    /// The configuration every process of the site reads, for its simulators and places.
    fn config_toml(
        &self,
        log: &str,
        webhook_listen: SocketAddr,
        no_access: NoAccessPolicy,
        deployment: Deployment,
    ) -> String {
        let (places, groups) = (self.places, self.groups);
        let no_access = match no_access {
            NoAccessPolicy::Suspend => "suspend",
            NoAccessPolicy::Delete => "delete",
            NoAccessPolicy::RemoveMembershipsOnly => "remove_memberships_only",
        };
        let (kisi_tuning, more_sections) = deployment.tuning();
        format!(
            r#"[log]
{log}
subject_prefix = "{SUBJECT_PREFIX}"
partitions = {PARTITIONS}

[nexudus]
base_url = "{nexudus_url}"
webhook_listen = "{webhook_listen}"
# A quick backstop for a delivery that fails; the simulator does not throttle, so neither does
# the client.
poll_every = "5s"
min_request_interval = "0s"
requests_per_minute = 100000
requests_per_hour = 1000000

[kisi]
base_url = "{kisi_url}"
{kisi_tuning}
[access]
no_access = "{no_access}"

[[mapping]]
resource = {room_a}
kisi_group = {group_a}

[[mapping]]
resource = {room_b}
kisi_group = {group_b}

[[mapping]]
pass_product = {floor_pass}
kisi_group = {floor}
{more_sections}"#,
            nexudus_url = self.nexudus.base_url(),
            kisi_url = self.kisi_simulator.base_url(),
            room_a = places.room_a,
            room_b = places.room_b,
            floor_pass = places.floor_pass,
            group_a = groups.room_a,
            group_b = groups.room_b,
            floor = groups.floor,
        )
    }
}

/// `doorsync <role> --config <config>` with its own admin address and `secrets` in the
/// environment, and none of the test's own `DOORSYNC_*` and `OTEL_*` settings.
fn doorsync_command(
    binary: &Path,
    role: &str,
    config: &Path,
    admin: SocketAddr,
    secrets: &[(&str, String)],
) -> Command {
    let mut command = Command::new(binary);
    command.arg(role).arg("--config").arg(config);
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("DOORSYNC_") || name_text.starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    for inherited in ["KISI_API_KEY", "NEXUDUS_USERNAME", "NEXUDUS_PASSWORD", "NEXUDUS_WEBHOOK_SECRET"] {
        command.env_remove(inherited);
    }
    // Plain text logs: they go to files.
    command.env("DOORSYNC_ADMIN__LISTEN", admin.to_string()).env("RUST_LOG", "info").env("NO_COLOR", "1");
    command.envs(secrets.iter().map(|(name, value)| (name, value)));
    command
}

/// A loopback address nothing listens on right now (the port is released for the process that
/// will listen on it).
fn free_loopback_address() -> Result<SocketAddr, HarnessError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(HarnessError::io("finding a free port"))?;
    listener.local_addr().map_err(HarnessError::io("finding a free port"))
}
