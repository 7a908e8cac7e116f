//! From a checked configuration to the parts a role runs on: the log, the layout, the clients
//! and each component's options.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use doorsync_access::Mapping;
use doorsync_config::{Config, ExposeSecret, LogBackend, NatsCredentials, NexudusAuth};
use doorsync_engine::EngineOptions;
use doorsync_ingest::IngestOptions;
use doorsync_kisi::{ApiKey, KisiClient, KisiOptions};
use doorsync_layout::Layout;
use doorsync_log::EventLog;
use doorsync_log_embedded::{EmbeddedLog, EmbeddedOptions};
use doorsync_log_jetstream::permissions::Role;
use doorsync_log_jetstream::{ClientCertificate, JetStreamLog, JetStreamOptions, NatsAuth, SecretText, TlsOptions};
use doorsync_nexudus::{AuthMode, Credentials, Limits, NexudusOptions};
use doorsync_proto::{FloorPlanItemId, KisiGroupId, PassProductId, ResourceId, Subjects};
use doorsync_writer::WriterOptions;

use crate::NodeError;
use crate::context::Context as Run;

/// The subjects, streams and buckets named by `log.subject_prefix` and `log.partitions`.
pub fn layout(config: &Config) -> Result<Layout, NodeError> {
    let subjects = Subjects::new(&config.log.subject_prefix, config.log.partitions).map_err(NodeError::Subjects)?;
    Ok(Layout::new(subjects))
}

/// The log the configuration names. `needs` says which backend the command requires, if any.
pub async fn open_log(
    config: &Config,
    layout: &Layout,
    needs: Option<LogBackend>,
    command: &str,
) -> Result<Opened, NodeError> {
    let backend = needs.unwrap_or(config.log.backend);
    if needs.is_some_and(|needed| needed != config.log.backend) {
        return Err(NodeError::WrongBackend {
            command: command.to_owned(),
            needed: backend_name(backend),
            configured: backend_name(config.log.backend),
        });
    }
    match backend {
        LogBackend::Embedded => {
            if let Some(parent) = config.log.path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|source| NodeError::LogDirectory { directory: parent.to_path_buf(), source })?;
            }
            let log =
                EmbeddedLog::open(EmbeddedOptions::new(&config.log.path, layout.streams())).map_err(|source| {
                    NodeError::OpenEmbedded { path: config.log.path.clone(), source: Box::new(source) }
                })?;
            Ok(Opened { log: Arc::new(log.clone()), embedded: Some(log), jetstream: None })
        }
        LogBackend::Jetstream => {
            let mut options = JetStreamOptions::new(&config.log.nats_url, layout.streams());
            options.replicas = usize::try_from(config.log.replicas).unwrap_or(1);
            options.connection_name = format!("doorsync {command}");
            options.auth = nats_auth(config)?;
            options.tls = config.nats_tls()?.map(|tls| TlsOptions {
                ca_file: tls.ca_file,
                client_certificate: tls.client.map(|(cert_file, key_file)| ClientCertificate { cert_file, key_file }),
            });
            options.inbox_prefix = Some(nats_role(command).inbox_prefix(layout));
            let log = JetStreamLog::connect(options).await.map_err(|source| NodeError::ConnectNats {
                url: config.log.nats_url.clone(),
                source: Box::new(source),
            })?;
            let log = Arc::new(log);
            Ok(Opened { log: Arc::clone(&log) as Arc<dyn EventLog>, embedded: None, jetstream: Some(log) })
        }
    }
}

/// The credentials a command connects with; a placeholder left in a mounted file is refused here,
/// before anything is started.
fn nats_auth(config: &Config) -> Result<NatsAuth, NodeError> {
    Ok(match config.nats_credentials()? {
        NatsCredentials::None => NatsAuth::None,
        NatsCredentials::NkeySeed(seed) => NatsAuth::NkeySeed(SecretText::new(seed.expose_secret())),
        NatsCredentials::Creds(creds) => NatsAuth::Credentials(SecretText::new(creds.expose_secret())),
        NatsCredentials::UserPassword { user, password } => {
            NatsAuth::UserPassword { user, password: SecretText::new(password.expose_secret()) }
        }
    })
}

/// Whose permissions a command's connection has, which decides where the server sends it
/// answers: each role's credentials may read only its own inbox.
fn nats_role(command: &str) -> Role {
    match command {
        "ingest" => Role::Ingest,
        "engine" => Role::Engine,
        "writer" => Role::Writer,
        _ => Role::Operator,
    }
}

fn backend_name(backend: LogBackend) -> &'static str {
    match backend {
        LogBackend::Embedded => "embedded",
        LogBackend::Jetstream => "jetstream",
    }
}

/// An open log, also kept by its type so that shutdown can close the file or drain the
/// connection.
pub struct Opened {
    pub log: Arc<dyn EventLog>,
    pub embedded: Option<EmbeddedLog>,
    pub jetstream: Option<Arc<JetStreamLog>>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("embedded", &self.embedded.is_some())
            .field("jetstream", &self.jetstream.is_some())
            .finish_non_exhaustive()
    }
}

impl Opened {
    /// Lets go of the log once its other users are gone: the embedded file is closed (so the
    /// next command can open it at once) and the NATS connection drained.
    pub async fn close(self) {
        let Self { log, embedded, jetstream } = self;
        drop(log);
        if let Some(embedded) = embedded {
            embedded.close().await;
        }
        if let Some(jetstream) = jetstream
            && let Err(error) = jetstream.drain().await
        {
            tracing::warn!(%error, "the NATS connection did not drain cleanly");
        }
    }
}

/// The Kisi client of the operator's tools and of group names in the mapping.
pub fn kisi_client(config: &Config) -> Result<KisiClient, NodeError> {
    KisiClient::new(kisi_options(config)?).map_err(|error| NodeError::KisiClient(Box::new(error)))
}

/// How the writer and the operator's tools reach Kisi.
pub fn kisi_options(config: &Config) -> Result<KisiOptions, NodeError> {
    let key = config.kisi_api_key()?;
    let mut options = KisiOptions::new(
        config.kisi_base_url()?,
        ApiKey::new(key.expose_secret()),
        config.kisi.integration_identifier.clone(),
    );
    options.integration_contact = config.kisi.integration_contact.clone();
    options.request_timeout = config.kisi.request_timeout;
    Ok(options)
}

/// How the ingestor reaches Nexudus.
pub fn nexudus_options(config: &Config) -> Result<NexudusOptions, NodeError> {
    let credentials = Credentials {
        username: config.nexudus_username()?,
        password: doorsync_nexudus::Secret::new(config.nexudus_password()?.expose_secret()),
    };
    let mut options = NexudusOptions::new(config.nexudus_base_url()?, credentials);
    options.auth = match config.nexudus.auth {
        NexudusAuth::BearerToken => AuthMode::BearerToken,
        NexudusAuth::Basic => AuthMode::Basic,
    };
    options.limits = Limits {
        min_interval: config.nexudus.min_request_interval,
        per_minute: config.nexudus.requests_per_minute,
        per_hour: config.nexudus.requests_per_hour,
    };
    options.request_timeout = config.nexudus.request_timeout;
    Ok(options)
}

/// The mapping from the configuration, with group names resolved through the Kisi API (which
/// needs the API key only when names are used).
pub async fn mapping(config: &Config) -> Result<Mapping, NodeError> {
    let mut mapping = Mapping::default();
    let named = config.mapping.iter().any(|entry| entry.kisi_group_name.is_some());
    let kisi = if named {
        Some(kisi_client(config).map_err(|error| NodeError::MappingClient(Box::new(error)))?)
    } else {
        None
    };
    for (index, entry) in config.mapping.iter().enumerate() {
        let group = match (entry.kisi_group, &entry.kisi_group_name, &kisi) {
            (Some(id), _, _) => KisiGroupId(id),
            (None, Some(name), Some(kisi)) => {
                let found = kisi.group_by_name(name).await.map_err(|source| NodeError::GroupLookup {
                    index,
                    name: name.clone(),
                    source: Box::new(source),
                })?;
                match found {
                    Some(group) => group.id,
                    None => return Err(NodeError::NoSuchGroup { index, name: name.clone() }),
                }
            }
            _ => return Err(NodeError::UnnamedGroup { index }),
        };
        if let Some(resource) = entry.resource {
            mapping.resources.insert(ResourceId(resource), group);
        } else if let Some(product) = entry.pass_product {
            mapping.pass_products.insert(PassProductId(product), group);
        } else if let Some(item) = entry.floor_plan_item {
            mapping.floor_plan_items.insert(FloorPlanItemId(item), group);
        }
    }
    Ok(mapping)
}

pub fn engine_options(config: &Config, run: &Run, layout: &Layout, mapping: Mapping) -> EngineOptions {
    let mut options = EngineOptions::new(format!("engine-{}", run.instance), layout.clone());
    options.policy = config.access_policy();
    options.mapping = mapping;
    options.settings = config.engine.clone();
    options
}

/// The writer's options: `[writer]` and `[reconcile]` are its own settings, and `[kisi]` holds
/// the rest under the same names.
pub fn writer_options(config: &Config, run: &Run, mapping: &Mapping) -> WriterOptions {
    let mut options = WriterOptions::new(format!("writer-{}", run.instance), config.kisi.account.clone());
    // Checked against kisi.request_timeout when the configuration is loaded.
    options.settings = config.writer.clone();
    options.reconcile = config.reconcile.clone();
    options.requests_per_second = config.kisi.requests_per_second;
    options.manage_found_users = config.kisi.manage_found_users;
    options.managed_users = config.kisi.managed_users;
    options.adopt_created_by = config.kisi.adopt_created_by.clone();
    options.group_labels = mapping_labels(config, mapping);
    options.reconcile_groups = mapping.groups().into_iter().collect();
    options
}

/// How the configuration names each mapped group: `mapping[2] (resource 14)`, several entries
/// joined when they share a group.
pub fn mapping_labels(config: &Config, mapping: &Mapping) -> BTreeMap<KisiGroupId, String> {
    let mut labels: BTreeMap<KisiGroupId, Vec<String>> = BTreeMap::new();
    for (index, entry) in config.mapping.iter().enumerate() {
        let (group, source) = if let Some(resource) = entry.resource {
            (mapping.resources.get(&ResourceId(resource)), format!("resource {resource}"))
        } else if let Some(product) = entry.pass_product {
            (mapping.pass_products.get(&PassProductId(product)), format!("pass product {product}"))
        } else if let Some(item) = entry.floor_plan_item {
            (mapping.floor_plan_items.get(&FloorPlanItemId(item)), format!("floor plan item {item}"))
        } else {
            continue;
        };
        if let Some(&group) = group {
            labels.entry(group).or_default().push(format!("mapping[{index}] ({source})"));
        }
    }
    labels.into_iter().map(|(group, entries)| (group, entries.join(", "))).collect()
}

/// The ingestor's options, from `[nexudus]` under the same names; its lease is held in this
/// process's name.
pub fn ingest_options(config: &Config, run: &Run) -> Result<IngestOptions, NodeError> {
    let secret = config.nexudus_webhook_secret()?;
    let mut options = IngestOptions::new(doorsync_nexudus::Secret::new(secret.expose_secret()));
    options.poll_every = config.nexudus.poll_every;
    options.sweep_every = config.nexudus.sweep_every;
    options.poll_overlap = config.nexudus.poll_overlap;
    options.webhook_body_limit_bytes = config.nexudus.webhook_body_limit_bytes;
    options.mapping_from_nexudus = config.nexudus.mapping_from_nexudus;
    let (every_location, by_location) = config.nexudus.day_pass_cutoffs();
    options.day_pass_cutoffs = doorsync_ingest::DayPassCutoffs { every_location, by_location };
    options.lease_owner = format!("ingest-{}", run.instance);
    Ok(options)
}

/// How long a graceful shutdown may take before the process gives up waiting.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use std::path::Path;

    use doorsync_config::{KisiConfig, NexudusConfig};
    use doorsync_engine::EngineSettings;
    use doorsync_writer::{ReconcileSettings, WriterSettings};

    use super::*;

    /// Every key of every section that ends up in an option, none at its default. The sections
    /// are written out whole, so a key added to one does not compile here until it is given a
    /// value and followed to its option below.
    fn every_key_changed(secrets: &Path) -> Config {
        let secret_file = |name: &str, value: &str| {
            let path = secrets.join(name);
            std::fs::write(&path, value).expect("the test's temporary directory is writable");
            Some(path)
        };
        Config {
            nexudus: NexudusConfig {
                base_url: "https://nexudus.example.com".to_owned(),
                username: Some("operator@example.com".to_owned()),
                password_file: secret_file("nexudus-password", "the password"),
                webhook_secret_file: secret_file("webhook-secret", "the webhook secret"),
                auth: NexudusAuth::Basic,
                webhook_listen: "127.0.0.1:8181".parse().expect("an address"),
                webhook_body_limit_bytes: 1_024,
                poll_every: Duration::from_secs(61),
                poll_overlap: Duration::from_secs(181),
                sweep_every: Duration::from_secs(7_201),
                mapping_from_nexudus: true,
                min_request_interval: Duration::from_millis(250),
                requests_per_minute: 61,
                requests_per_hour: 1_001,
                request_timeout: Duration::from_secs(11),
                day_pass_cutoff: "03:00".to_owned(),
                day_pass_cutoffs: BTreeMap::from([("1001".to_owned(), "04:30".to_owned())]),
            },
            kisi: KisiConfig {
                base_url: "https://kisi.example.com".to_owned(),
                api_key_file: secret_file("kisi-api-key", "the api key"),
                integration_identifier: "doorsync-test".to_owned(),
                integration_contact: Some("ops@example.com".to_owned()),
                managed_users: false,
                requests_per_second: 3,
                request_timeout: Duration::from_secs(4),
                account: "second".to_owned(),
                manage_found_users: true,
                adopt_created_by: vec!["integration@example.com".to_owned()],
            },
            engine: EngineSettings {
                lease_ttl: Duration::from_secs(16),
                passivate_after: Duration::from_secs(601),
                checkpoint_every: Duration::from_secs(61),
            },
            writer: WriterSettings { lease_ttl: Duration::from_secs(31), ack_wait: Duration::from_secs(61) },
            reconcile: ReconcileSettings {
                every: Duration::from_secs(901),
                max_revocation_share: 0.3,
                touch_foreign_assignments: true,
            },
            ..Config::default()
        }
    }

    #[test]
    fn every_key_of_a_section_lands_in_the_option_of_its_name() {
        let secrets = tempfile::tempdir().expect("a temporary directory");
        let config = every_key_changed(secrets.path());
        let run = Run::with(config.clone());
        let layout = layout(&config).expect("the default layout");
        let mapping = Mapping::default();

        let ingest = ingest_options(&config, &run).expect("the webhook secret is in its file");
        let nexudus = nexudus_options(&config).expect("the Nexudus credentials are in their files");
        let NexudusConfig {
            base_url,
            username,
            password_file: _,
            webhook_secret_file: _,
            auth,
            webhook_listen: _,
            webhook_body_limit_bytes,
            poll_every,
            poll_overlap,
            sweep_every,
            mapping_from_nexudus,
            min_request_interval,
            requests_per_minute,
            requests_per_hour,
            request_timeout,
            day_pass_cutoff: _,
            day_pass_cutoffs: _,
        } = &config.nexudus;
        assert_eq!(nexudus.base_url, url::Url::parse(base_url).unwrap());
        assert_eq!(Some(&nexudus.credentials.username), username.as_ref());
        assert_eq!(nexudus.credentials.password.expose(), "the password");
        assert_eq!((nexudus.auth, *auth), (AuthMode::Basic, NexudusAuth::Basic));
        assert_eq!(nexudus.limits.min_interval, *min_request_interval);
        assert_eq!(nexudus.limits.per_minute, *requests_per_minute);
        assert_eq!(nexudus.limits.per_hour, *requests_per_hour);
        assert_eq!(nexudus.request_timeout, *request_timeout);
        assert_eq!(ingest.webhook_secret.expose(), "the webhook secret");
        assert_eq!(ingest.webhook_body_limit_bytes, *webhook_body_limit_bytes);
        assert_eq!(ingest.poll_every, *poll_every);
        assert_eq!(ingest.poll_overlap, *poll_overlap);
        assert_eq!(ingest.sweep_every, *sweep_every);
        assert_eq!(ingest.mapping_from_nexudus, *mapping_from_nexudus);
        assert_eq!(ingest.day_pass_cutoffs.every_location, (3, 0));
        assert_eq!(ingest.day_pass_cutoffs.by_location, BTreeMap::from([(1001, (4, 30))]));

        let kisi = kisi_options(&config).expect("the Kisi API key is in its file");
        let writer = writer_options(&config, &run, &mapping);
        let KisiConfig {
            base_url,
            api_key_file: _,
            integration_identifier,
            integration_contact,
            managed_users,
            requests_per_second,
            request_timeout,
            account,
            manage_found_users,
            adopt_created_by,
        } = &config.kisi;
        assert_eq!(kisi.base_url, url::Url::parse(base_url).unwrap());
        assert_eq!(kisi.api_key.expose_secret(), "the api key");
        assert_eq!(&kisi.integration_identifier, integration_identifier);
        assert_eq!(&kisi.integration_contact, integration_contact);
        assert_eq!(kisi.request_timeout, *request_timeout);
        assert_eq!(writer.requests_per_second, *requests_per_second);
        assert_eq!(&writer.account, account);
        assert_eq!(writer.manage_found_users, *manage_found_users);
        assert_eq!(writer.managed_users, *managed_users);
        assert_eq!(&writer.adopt_created_by, adopt_created_by);
        assert_eq!(writer.settings, config.writer);
        assert_eq!(writer.reconcile, config.reconcile);

        let engine = engine_options(&config, &run, &layout, mapping);
        assert_eq!(engine.settings, config.engine);
    }
}
