use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::error::Kind;

/// A configuration doorsync cannot run with, saying what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "config: {} does not exist: pass an existing file with --config, or no --config to run on the defaults",
        file.display()
    )]
    MissingFile { file: PathBuf },
    #[error("config: {}", Problems(problems))]
    Invalid { problems: Vec<Problem> },
    #[error("config: no {what}: set the environment variable {env}, or the config key `{key}`")]
    MissingSecret { what: &'static str, key: &'static str, env: &'static str },
    #[error("config: `{key}`: cannot read {}: {reason}", file.display())]
    UnreadableSecret { key: &'static str, file: PathBuf, reason: String },
}

/// One wrong key: which, where its value came from, and what would be valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    /// The file or environment variable the value came from.
    pub origin: String,
    pub problem: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` in {}: {}", self.key, self.origin, self.problem)
    }
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    pub(crate) fn from_figment(error: figment::Error, file: Option<&Path>) -> Self {
        let problems = error
            .into_iter()
            .map(|error| {
                let origin = match &error.metadata {
                    Some(metadata) => describe_origin(metadata, &error.path),
                    None => file.map_or_else(|| "the defaults".to_owned(), |file| file.display().to_string()),
                };
                Problem { key: key_of(&error.path), origin, problem: explain(&error.kind) }
            })
            .collect();
        Self::Invalid { problems }
    }
}

fn key_of(path: &[String]) -> String {
    if path.is_empty() { "(top level)".to_owned() } else { path.join(".") }
}

/// Where the value of `key` came from, for problems found after the values were read.
pub(crate) fn origin_of(figment: &Figment, key: &str) -> String {
    let path: Vec<String> = key.split('.').map(str::to_owned).collect();
    figment.find_metadata(key).map_or_else(|| "the defaults".to_owned(), |metadata| describe_origin(metadata, &path))
}

fn describe_origin(metadata: &figment::Metadata, path: &[String]) -> String {
    match &metadata.source {
        Some(figment::Source::File(file)) => file.display().to_string(),
        _ if metadata.name.contains("environment") => {
            format!("the environment variable {}{}", crate::ENV_PREFIX, path.join("__").to_uppercase())
        }
        _ => metadata.name.to_string(),
    }
}

/// serde's message, with what a valid value looks like where serde does not say.
fn explain(kind: &Kind) -> String {
    let message = kind.to_string();
    if message.contains("expected a duration") {
        format!("{message} such as \"15m\", \"90s\" or \"1h 30m\"")
    } else {
        message
    }
}
