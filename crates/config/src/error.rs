use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::error::{Kind, OneOf};

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
    #[error("config: `{key}`: cannot read {}: {source}", file.display())]
    UnreadableSecret {
        key: &'static str,
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config: `{key}`: {} is empty", file.display())]
    EmptySecret { key: &'static str, file: PathBuf },
    #[error(
        "config: `{key}`: {origin} still holds the placeholder REPLACE_ME of the example manifests: put the real value in the Secret (deploy/README.md says how)"
    )]
    PlaceholderSecret { key: &'static str, origin: String },
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
        _ if metadata.name.contains("environment") => variables_under(path),
        _ => metadata.name.to_string(),
    }
}

/// Values nest no deeper than this (`[{ resource = 1, kisi_group = 2 }]` is two): deeper ones
/// are refused before figment's parser, which recurses once per level, can overflow the stack.
const MAX_VARIABLE_NESTING: usize = 16;

/// Refuses the variables figment 0.10 cannot read safely (found by `tests/fuzz_config.rs`):
/// * it applies a quoted value's escapes at the character count where the backslash is, as if
///   that were a byte offset, so a non-ASCII character before a backslash loses part of the
///   value or panics;
/// * it parses nested arrays and tables recursively, so deep nesting overflows the stack.
pub(crate) fn refuse_unreadable_variables(overrides: &figment::providers::Env) -> Result<(), ConfigError> {
    let problems: Vec<Problem> = overrides
        .iter()
        .filter_map(|(key, value)| {
            let problem = if value.contains('"') && value.contains('\\') && !value.is_ascii() {
                "a quoted value with both a backslash escape and a non-ASCII character cannot be read reliably: \
                 leave out the quotes, or write the character as a \\u escape"
                    .to_owned()
            } else if nesting(&value) > MAX_VARIABLE_NESTING {
                format!("nests arrays or tables deeper than {MAX_VARIABLE_NESTING} levels, which no key takes")
            } else {
                return None;
            };
            let path: Vec<String> = key.as_str().split('.').map(str::to_owned).collect();
            Some(Problem { key: key.as_str().to_owned(), origin: variables_under(&path), problem })
        })
        .collect();
    if problems.is_empty() { Ok(()) } else { Err(ConfigError::Invalid { problems }) }
}

/// How deep brackets and braces nest in `value`, counting those inside quotes too (which can
/// only overstate it).
fn nesting(value: &str) -> usize {
    let mut depth = 0_usize;
    let mut deepest = 0;
    for character in value.chars() {
        match character {
            '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The variables that set `path`: those that set it or keys below it, or else the one that set
/// the key above it. A value of the wrong shape is reported where the shape breaks, which need
/// not be where a variable was set: `mapping` for `DOORSYNC_MAPPING__RESOURCE`, and
/// `access.resource_timing.0` for `DOORSYNC_ACCESS__RESOURCE_TIMING`.
fn variables_under(path: &[String]) -> String {
    let names: Vec<String> = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok()).collect();
    let variable_of = |path: &[String]| format!("{}{}", crate::ENV_PREFIX, path.join("__").to_uppercase());
    for length in (1..=path.len()).rev() {
        let named = variable_of(&path[..length]);
        let below = format!("{named}__");
        let mut set: Vec<&String> = names
            .iter()
            .filter(|name| {
                let upper = name.to_uppercase();
                upper == named || (length == path.len() && upper.starts_with(&below))
            })
            .collect();
        set.sort();
        match set.as_slice() {
            [] => continue,
            [one] => return format!("the environment variable {one}"),
            several => {
                let several: Vec<&str> = several.iter().map(|name| name.as_str()).collect();
                return format!("the environment variables {}", several.join(", "));
            }
        }
    }
    format!("the environment variable {}", variable_of(path))
}

/// serde's message, with what a valid value looks like where serde does not say.
fn explain(kind: &Kind) -> String {
    // figment quotes the expected names once in `OneOf` and once more around it ("expected
    // ``embedded` or `jetstream``"): the names are quoted here once.
    let message = match kind {
        Kind::UnknownVariant(found, expected) => {
            format!("unknown variant: found `{found}`, expected {}", OneOf(expected))
        }
        Kind::UnknownField(found, expected) => format!("unknown field: found `{found}`, expected {}", OneOf(expected)),
        kind => kind.to_string(),
    };
    if message.contains("expected a duration") {
        format!("{message} such as \"15m\", \"90s\" or \"1h 30m\"")
    } else {
        message
    }
}
