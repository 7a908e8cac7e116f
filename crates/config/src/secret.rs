use std::path::Path;

use secrecy::SecretString;

use crate::ConfigError;

/// A credential: readable through [`ExposeSecret`] only, printed as `[REDACTED]`.
pub type Secret = SecretString;

/// What the example manifests hold where a real secret belongs (`deploy/kustomize/base`).
pub const PLACEHOLDER: &str = "REPLACE_ME";

/// The secret from `file` when the config names one (a mounted Kubernetes Secret, say),
/// otherwise from the environment variable `env`.
pub(crate) fn read(key: &'static str, file: Option<&Path>, env: &'static str) -> Result<Secret, ConfigError> {
    match file {
        Some(file) => read_file(key, file),
        None => from_env(key, env),
    }
}

/// The secret in `file`, which the config key `key` names.
pub(crate) fn read_file(key: &'static str, file: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::UnreadableSecret {
        key,
        file: file.to_path_buf(),
        source,
    })?;
    // Mounted secrets and `echo secret > file` end with a newline that is not part of it.
    let value = text.trim_end_matches(['\r', '\n']);
    if value.is_empty() {
        return Err(ConfigError::EmptySecret { key, file: file.to_path_buf() });
    }
    refuse_placeholder(key, value, &file.display().to_string())?;
    Ok(Secret::from(value))
}

pub(crate) fn from_env(key: &'static str, env: &'static str) -> Result<Secret, ConfigError> {
    match std::env::var(env) {
        Ok(value) if !value.is_empty() => {
            refuse_placeholder(key, &value, &format!("the environment variable {env}"))?;
            Ok(Secret::from(value))
        }
        _ => Err(ConfigError::MissingSecret { what: describe(env), key, env }),
    }
}

/// A deployment applied without its secrets filled in would otherwise start and fail later,
/// at its first call to Kisi or Nexudus, with a message about a refused key.
pub(crate) fn refuse_placeholder<'a>(key: &'static str, value: &'a str, origin: &str) -> Result<&'a str, ConfigError> {
    if value.contains(PLACEHOLDER) {
        return Err(ConfigError::PlaceholderSecret { key, origin: origin.to_owned() });
    }
    Ok(value)
}

fn describe(env: &str) -> &'static str {
    match env {
        "KISI_API_KEY" => "Kisi API key",
        "NEXUDUS_USERNAME" => "Nexudus username",
        "NEXUDUS_PASSWORD" => "Nexudus password",
        "NEXUDUS_WEBHOOK_SECRET" => "Nexudus webhook secret",
        "DOORSYNC_ADMIN_TOKEN" => "admin token",
        _ => "secret",
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn debug_output_never_shows_the_value() {
        let secret = Secret::from("hunter2");
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert_eq!(secret.expose_secret(), "hunter2");
    }

    #[test]
    fn a_mounted_file_is_read_without_its_trailing_newline() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("key");
        std::fs::write(&file, "s3cret\n")?;
        assert_eq!(read("kisi.api_key_file", Some(&file), "KISI_API_KEY")?.expose_secret(), "s3cret");
        std::fs::write(&file, "\n")?;
        let error = read("kisi.api_key_file", Some(&file), "KISI_API_KEY").unwrap_err().to_string();
        assert!(error.contains("kisi.api_key_file") && error.contains("empty"), "{error}");
        Ok(())
    }

    #[test]
    fn a_placeholder_in_a_file_is_refused_naming_the_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("kisi-api-key");
        std::fs::write(&file, "REPLACE_ME")?;
        let error = read("kisi.api_key_file", Some(&file), "KISI_API_KEY").unwrap_err().to_string();
        assert!(error.contains("`kisi.api_key_file`") && error.contains(&file.display().to_string()), "{error}");
        assert!(error.contains("REPLACE_ME"), "{error}");
        Ok(())
    }

    #[test]
    fn a_missing_file_is_named_with_its_key() {
        let error = read("kisi.api_key_file", Some(Path::new("/nonexistent/key")), "KISI_API_KEY").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("`kisi.api_key_file`") && text.contains("/nonexistent/key"), "{text}");
    }
}
