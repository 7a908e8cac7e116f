//! doorsync's configuration for the demo, pointing at the simulators: the embedded log in the
//! data directory, the secrets in files there (readable by this user only), listeners on free
//! loopback ports, the mapping of the generated rooms, passes and desks, and short intervals.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use doorsync_config::{AdminConfig, Config, KisiConfig, LogConfig, NexudusAuth, NexudusConfig};

use super::DemoError;
use super::world::{WRITER_REQUESTS_PER_SECOND, World};

/// The poller backs up the webhooks; the first read of Nexudus is asked for at start.
const POLL_EVERY: Duration = Duration::from_secs(30);
const SWEEP_EVERY: Duration = Duration::from_secs(300);

const ANY_FREE_LOOPBACK_PORT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// The configuration of a demo whose files go in `data_dir`.
pub(super) fn config(world: &World, data_dir: &Path) -> Result<Config, DemoError> {
    let secrets = &world.secrets;
    let secret_dir = data_dir.join("secrets");
    std::fs::create_dir_all(&secret_dir).map_err(DemoError::io(format!("creating {}", secret_dir.display())))?;
    let secret_file = |name: &str, value: &str| write_secret(&secret_dir.join(name), value);
    Ok(Config {
        log: LogConfig { path: log_path(data_dir), ..LogConfig::default() },
        nexudus: NexudusConfig {
            base_url: world.nexudus.base_url().to_string(),
            username: Some(secrets.nexudus_username.clone()),
            password_file: Some(secret_file("nexudus-password", &secrets.nexudus_password)?),
            webhook_secret_file: Some(secret_file("nexudus-webhook-secret", &secrets.webhook_secret)?),
            auth: NexudusAuth::BearerToken,
            webhook_listen: ANY_FREE_LOOPBACK_PORT,
            poll_every: POLL_EVERY,
            sweep_every: SWEEP_EVERY,
            // The simulator does not throttle in the demo (see `World::start`).
            min_request_interval: Duration::ZERO,
            requests_per_minute: 100_000,
            requests_per_hour: 1_000_000,
            ..NexudusConfig::default()
        },
        kisi: KisiConfig {
            base_url: world.kisi.base_url().to_string(),
            api_key_file: Some(secret_file("kisi-api-key", &secrets.kisi_api_key)?),
            integration_identifier: "doorsync-demo".to_owned(),
            requests_per_second: WRITER_REQUESTS_PER_SECOND,
            ..KisiConfig::default()
        },
        mapping: world.directory.mapping.clone(),
        admin: AdminConfig { listen: ANY_FREE_LOOPBACK_PORT, ..AdminConfig::default() },
        ..Config::default()
    })
}

pub(super) fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.join("doorsync.redb")
}

fn write_secret(path: &Path, value: &str) -> Result<PathBuf, DemoError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(DemoError::io(format!("writing {}", path.display())))?;
    file.write_all(value.as_bytes()).map_err(DemoError::io(format!("writing {}", path.display())))?;
    Ok(path.to_path_buf())
}

/// Writes the part of the configuration that `doorsync explain` and `doorsync status` need to
/// find the running demo (its admin listener) or, once it stopped, its log: returns the file.
pub(super) fn write_explain_config(config: &Config, admin: SocketAddr, data_dir: &Path) -> Result<PathBuf, DemoError> {
    let path = data_dir.join("doorsync.toml");
    let log_path = serde_json::to_string(&config.log.path.to_string_lossy()).map_err(DemoError::TomlString)?;
    let mut text = format!(
        "# Written by `doorsync demo`, for `doorsync --config {} explain <member>`: the demo's log,\n\
         # its admin listener (asked while the demo runs) and its mapping.\n\n\
         [log]\npath = {log_path}\npartitions = {}\n\n[admin]\nlisten = \"{admin}\"\n",
        path.display(),
        config.log.partitions
    );
    for entry in &config.mapping {
        let (key, id) = match (entry.resource, entry.pass_product, entry.floor_plan_item) {
            (Some(id), _, _) => ("resource", id),
            (_, Some(id), _) => ("pass_product", id),
            (_, _, Some(id)) => ("floor_plan_item", id),
            (None, None, None) => continue,
        };
        if let Some(group) = entry.kisi_group {
            text.push_str(&format!("\n[[mapping]]\n{key} = {id}\nkisi_group = {group}\n"));
        }
    }
    std::fs::write(&path, text).map_err(DemoError::io(format!("writing {}", path.display())))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use doorsync_config::MappingEntry;

    use super::*;

    #[test]
    fn the_explain_config_loads_with_the_demos_log_admin_listener_and_mapping() {
        let dir = tempfile::tempdir().unwrap();
        // A path TOML must escape.
        let data_dir = dir.path().join("a \"quoted\" \\ dir");
        std::fs::create_dir_all(&data_dir).unwrap();
        let entry = |resource, pass_product, floor_plan_item, group| MappingEntry {
            resource,
            pass_product,
            floor_plan_item,
            kisi_group: Some(group),
            kisi_group_name: None,
        };
        let config = Config {
            log: LogConfig { path: log_path(&data_dir), partitions: 8, ..LogConfig::default() },
            mapping: vec![
                entry(Some(5), None, None, 50),
                entry(None, Some(6), None, 60),
                entry(None, None, Some(7), 70),
            ],
            ..Config::default()
        };
        let admin = SocketAddr::from(([127, 0, 0, 1], 4321));
        let file = write_explain_config(&config, admin, &data_dir).unwrap();
        let loaded = Config::load(Some(&file)).unwrap();
        assert_eq!((loaded.log.path, loaded.log.partitions), (config.log.path, 8));
        assert_eq!(loaded.admin.listen, admin);
        assert_eq!(loaded.mapping, config.mapping);
    }

    #[cfg(unix)]
    #[test]
    fn secrets_are_readable_by_this_user_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = write_secret(&dir.path().join("key"), "s3cret").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "s3cret");
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
