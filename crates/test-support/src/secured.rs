//! What a secured nats-server needs: a certificate authority made for the test, the users it
//! admits and what each of them may publish and subscribe to.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::HarnessError;

/// A certificate authority made for one test, the server's certificate for `127.0.0.1` and
/// `localhost`, and a client certificate, all as PEM files in one directory.
#[derive(Debug, Clone)]
pub struct TestCertificates {
    /// What clients trust: the authority that signed the server's certificate.
    pub ca_file: PathBuf,
    pub server_cert_file: PathBuf,
    pub server_key_file: PathBuf,
    /// For clients that present a certificate (mutual TLS).
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
}

impl TestCertificates {
    /// Makes the authority and both certificates in `directory`, with ring's keys.
    pub fn generate(directory: &Path) -> Result<Self, HarnessError> {
        let failed =
            |reason: rcgen::Error| HarnessError::Credentials { what: "certificates", reason: reason.to_string() };
        let mut authority = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        authority.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        authority.distinguished_name.push(rcgen::DnType::CommonName, "doorsync test authority");
        authority.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let authority_key = rcgen::KeyPair::generate().map_err(failed)?;
        let authority = rcgen::CertifiedIssuer::self_signed(authority, authority_key).map_err(failed)?;

        let signed = |names: Vec<String>, usage: rcgen::ExtendedKeyUsagePurpose| {
            let mut params = rcgen::CertificateParams::new(names).map_err(failed)?;
            params.extended_key_usages = vec![usage];
            let key = rcgen::KeyPair::generate().map_err(failed)?;
            let certificate = params.signed_by(&key, &authority).map_err(failed)?;
            Ok::<_, HarnessError>((certificate.pem(), key.serialize_pem()))
        };
        let (server_cert, server_key) =
            signed(vec!["127.0.0.1".into(), "localhost".into()], rcgen::ExtendedKeyUsagePurpose::ServerAuth)?;
        let (client_cert, client_key) =
            signed(vec!["doorsync-test-client".into()], rcgen::ExtendedKeyUsagePurpose::ClientAuth)?;

        let write = |name: &str, contents: &str| {
            let file = directory.join(name);
            std::fs::write(&file, contents)
                .map_err(|source| HarnessError::Io { context: format!("writing {}", file.display()), source })?;
            Ok::<_, HarnessError>(file)
        };
        Ok(Self {
            ca_file: write("ca.pem", &authority.pem())?,
            server_cert_file: write("server.pem", &server_cert)?,
            server_key_file: write("server-key.pem", &server_key)?,
            client_cert_file: write("client.pem", &client_cert)?,
            client_key_file: write("client-key.pem", &client_key)?,
        })
    }
}

/// An nkey user's key pair: the server is told the public key, the client holds the seed.
#[derive(Debug, Clone)]
pub struct NkeyUser {
    pub public_key: String,
    pub seed: String,
}

impl NkeyUser {
    pub fn generate() -> Result<Self, HarnessError> {
        let pair = nkeys::KeyPair::new_user();
        let seed =
            pair.seed().map_err(|error| HarnessError::Credentials { what: "nkey seed", reason: error.to_string() })?;
        Ok(Self { public_key: pair.public_key(), seed })
    }
}

/// How a user proves who it is.
#[derive(Debug, Clone)]
pub enum UserCredential {
    /// The public key of an [`NkeyUser`].
    Nkey {
        public_key: String,
    },
    Password {
        user: String,
        password: String,
    },
}

/// Subjects a user may and may not publish and subscribe to (NATS wildcards; a deny wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPermissions {
    pub publish_allow: Vec<String>,
    pub publish_deny: Vec<String>,
    pub subscribe_allow: Vec<String>,
    pub subscribe_deny: Vec<String>,
}

impl UserPermissions {
    pub fn new(
        publish_allow: impl IntoIterator<Item = String>,
        publish_deny: impl IntoIterator<Item = String>,
        subscribe_allow: impl IntoIterator<Item = String>,
        subscribe_deny: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            publish_allow: publish_allow.into_iter().collect(),
            publish_deny: publish_deny.into_iter().collect(),
            subscribe_allow: subscribe_allow.into_iter().collect(),
            subscribe_deny: subscribe_deny.into_iter().collect(),
        }
    }
}

/// One user the server admits; without permissions it may do anything.
#[derive(Debug, Clone)]
pub struct ServerUser {
    pub credential: UserCredential,
    pub permissions: Option<UserPermissions>,
}

/// How a secured server is started.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// Only these users are admitted; none means anyone is.
    pub users: Vec<ServerUser>,
    /// TLS on the client port with these certificates.
    pub tls: Option<TestCertificates>,
    /// Clients must present a certificate the test authority signed (mutual TLS).
    pub verify_client_certificates: bool,
}

impl Security {
    /// The nats-server configuration file's text.
    pub(crate) fn server_config(&self) -> String {
        let mut config = String::new();
        if let Some(tls) = &self.tls {
            let _ = writeln!(
                config,
                "tls {{\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n  verify: {}\n  timeout: 5\n}}",
                quoted(&tls.server_cert_file.display().to_string()),
                quoted(&tls.server_key_file.display().to_string()),
                quoted(&tls.ca_file.display().to_string()),
                self.verify_client_certificates,
            );
        }
        if !self.users.is_empty() {
            config.push_str("authorization {\n  users: [\n");
            for user in &self.users {
                let credential = match &user.credential {
                    UserCredential::Nkey { public_key } => format!("nkey: {}", quoted(public_key)),
                    UserCredential::Password { user, password } => {
                        format!("user: {}, password: {}", quoted(user), quoted(password))
                    }
                };
                let permissions = user.permissions.as_ref().map_or_else(String::new, |permissions| {
                    format!(
                        ", permissions: {{ publish: {{ allow: {}, deny: {} }}, subscribe: {{ allow: {}, deny: {} }} }}",
                        list(&permissions.publish_allow),
                        list(&permissions.publish_deny),
                        list(&permissions.subscribe_allow),
                        list(&permissions.subscribe_deny),
                    )
                });
                let _ = writeln!(config, "    {{ {credential}{permissions} }}");
            }
            config.push_str("  ]\n}\n");
        }
        config
    }
}

/// A double-quoted string, in which nats-server reads `$` literally rather than as a variable.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|item| quoted(item)).collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_quotes_subjects_and_lists_each_user() {
        let security = Security {
            users: vec![
                ServerUser {
                    credential: UserCredential::Nkey { public_key: "UABC".into() },
                    permissions: Some(UserPermissions {
                        publish_allow: vec!["$JS.API.STREAM.INFO.X".into()],
                        subscribe_allow: vec!["_INBOX.a.>".into()],
                        ..UserPermissions::default()
                    }),
                },
                ServerUser {
                    credential: UserCredential::Password { user: "ops".into(), password: "p\"w".into() },
                    permissions: None,
                },
            ],
            tls: None,
            verify_client_certificates: false,
        };
        let config = security.server_config();
        assert!(config.contains("{ nkey: \"UABC\", permissions: { publish: { allow: [\"$JS.API.STREAM.INFO.X\"], deny: [] }, subscribe: { allow: [\"_INBOX.a.>\"], deny: [] } } }"), "{config}");
        assert!(config.contains("{ user: \"ops\", password: \"p\\\"w\" }"), "{config}");
        assert!(!config.contains("tls"), "{config}");
    }
}
