//! What every command starts from: the checked configuration, the clock, and a name for this
//! process among the others sharing the log.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use doorsync_clock::{SharedClock, SystemClock};
use doorsync_config::Config;

#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) config: Config,
    pub(crate) clock: SharedClock,
    /// Names this process's leases: the pod name on Kubernetes, else host and process id.
    pub(crate) instance: String,
}

impl Context {
    pub(crate) fn load(config_file: Option<&Path>) -> anyhow::Result<Self> {
        let config = Config::load(config_file).context("doorsync cannot start with this configuration")?;
        Ok(Self::with(config))
    }

    pub(crate) fn with(config: Config) -> Self {
        Self { config, clock: Arc::new(SystemClock), instance: instance_name() }
    }
}

fn instance_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|name| name.trim().to_owned()))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "doorsync".to_owned());
    format!("{host}-{}", std::process::id())
}
