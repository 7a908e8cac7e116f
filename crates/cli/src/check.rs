//! `doorsync check-config [--online]`: the configuration, the secrets it names and, online, the
//! accounts themselves (through `doorsync_node::online_check`), in plain words and the
//! configuration's own spelling of every value.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use doorsync_config::{Config, LogBackend, LogFormat};

use crate::ops::table;

/// Loads the configuration and checks what it names: the secrets each role needs and, with
/// `online`, the Nexudus login, the Kisi API key, the mapped groups and the names of both sides
/// of each mapping entry.
pub(crate) async fn check_config(config_file: Option<&Path>, online: bool) -> anyhow::Result<()> {
    let config = Config::load(config_file).context("the configuration is not valid")?;
    let source =
        config_file.map_or_else(|| "the defaults and the environment".to_owned(), |file| file.display().to_string());
    println!("configuration from {source}: valid");
    let (backend, location) = match config.log.backend {
        LogBackend::Embedded => ("embedded", config.log.path.display().to_string()),
        LogBackend::Jetstream => ("jetstream", config.log.nats_url.clone()),
    };
    let log_lines = match config.log.format {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    };
    println!("  log: {backend} ({location}); doorsync's own log lines as {log_lines}");
    let entries = match config.mapping.len() {
        1 => "1 entry".to_owned(),
        count => format!("{count} entries"),
    };
    println!(
        "  mapping: {entries}; lead {}, lag {}, no-access policy {}",
        duration_text(config.access.lead),
        duration_text(config.access.lag),
        config_spelling(&config.access.no_access)?
    );
    let missing = missing_secrets(&config);
    let mut problems = Vec::new();
    if online {
        println!("online:");
        let report = doorsync_node::online_check::check_online(&config, Arc::new(doorsync_clock::SystemClock)).await;
        for line in &report.lines {
            println!("  {line}");
        }
        problems = report.problems;
    }
    match (missing.is_empty(), problems.is_empty()) {
        (true, true) => Ok(()),
        (false, true) => bail!("{} missing: {}", table::count(missing.len(), "secret", "secrets"), missing.join(", ")),
        (missing_none, false) => {
            let mut text = format!("{} found online:", table::count(problems.len(), "problem", "problems"));
            for problem in &problems {
                text.push_str(&format!("\n  - {problem}"));
            }
            if !missing_none {
                text.push_str(&format!(
                    "\nand {} missing: {}",
                    table::count(missing.len(), "secret", "secrets"),
                    missing.join(", ")
                ));
            }
            bail!(text)
        }
    }
}

/// Says for each secret whether it is there, and returns the missing ones.
fn missing_secrets(config: &Config) -> Vec<&'static str> {
    let mut missing = Vec::new();
    // Each role's pod mounts its own NATS credentials: this checks the ones of this machine.
    let nats = match config.log.backend {
        LogBackend::Jetstream => vec![
            ("NATS credentials (log.nats_*)", config.nats_credentials().map(drop)),
            ("NATS TLS files (log.tls_*)", config.nats_tls().map(drop)),
        ],
        LogBackend::Embedded => Vec::new(),
    };
    for (what, found) in [
        ("Kisi API key (writer)", config.kisi_api_key().map(drop)),
        ("Nexudus username (ingest)", config.nexudus_username().map(drop)),
        ("Nexudus password (ingest)", config.nexudus_password().map(drop)),
        ("Nexudus webhook secret (ingest)", config.nexudus_webhook_secret().map(drop)),
    ]
    .into_iter()
    .chain(nats)
    {
        match found {
            Ok(()) => println!("  {what}: present"),
            Err(error) => {
                println!("  {what}: MISSING: {error}");
                missing.push(what);
            }
        }
    }
    missing
}

/// A value as the configuration spells it (`remove_memberships_only`).
fn config_spelling(value: &impl serde::Serialize) -> anyhow::Result<String> {
    match serde_json::to_value(value).context("spelling a configuration value")? {
        serde_json::Value::String(text) => Ok(text),
        other => Ok(other.to_string()),
    }
}

/// A duration as the configuration takes it: `15m`, `1h 30m`, `0s`, `250ms`.
fn duration_text(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let parts: Vec<String> = [
        (seconds / 86_400, "d"),
        (seconds % 86_400 / 3_600, "h"),
        (seconds % 3_600 / 60, "m"),
        (seconds % 60, "s"),
        (u64::from(duration.subsec_millis()), "ms"),
    ]
    .into_iter()
    .filter(|(amount, _)| *amount > 0)
    .map(|(amount, unit)| format!("{amount}{unit}"))
    .collect();
    if parts.is_empty() { "0s".to_owned() } else { parts.join(" ") }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn durations_and_policies_read_as_the_configuration_writes_them() {
        assert_eq!(duration_text(Duration::from_secs(15 * 60)), "15m");
        assert_eq!(duration_text(Duration::from_secs(5_400)), "1h 30m");
        assert_eq!(duration_text(Duration::from_secs(2 * 86_400 + 1)), "2d 1s");
        assert_eq!(duration_text(Duration::from_millis(250)), "250ms");
        assert_eq!(duration_text(Duration::ZERO), "0s");
        assert_eq!(
            config_spelling(&doorsync_access::NoAccessPolicy::RemoveMembershipsOnly).unwrap(),
            "remove_memberships_only"
        );
        for text in ["15m", "1h 30m", "250ms", "0s"] {
            assert!(humantime_parses(text), "{text}");
        }
    }

    /// The configuration reads durations through humantime.
    fn humantime_parses(text: &str) -> bool {
        let toml = format!("[access]\nlead = \"{text}\"\n");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("doorsync.toml");
        std::fs::write(&file, toml).unwrap();
        Config::load(Some(&file)).is_ok()
    }
}
