//! What every command starts from: the checked configuration, the clock, and a name for this
//! process among the others sharing the log.

use std::path::Path;
use std::sync::Arc;

use doorsync_clock::{SharedClock, SystemClock};
use doorsync_config::Config;

use crate::NodeError;

#[derive(Debug)]
pub struct Context {
    pub config: Config,
    pub clock: SharedClock,
    /// Names this process's leases: the pod name on Kubernetes, else host and process id.
    pub instance: String,
}

impl Context {
    pub fn load(config_file: Option<&Path>) -> Result<Self, NodeError> {
        let config = Config::load(config_file).map_err(NodeError::Load)?;
        Ok(Self::with(config))
    }

    pub fn with(config: Config) -> Self {
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
