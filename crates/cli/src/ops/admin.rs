//! A running doorsync's admin API, as the operator's commands reach it: at `--admin` (or
//! `DOORSYNC_ADMIN_URL`) when given, else at `admin.listen` from the configuration (asked on
//! loopback when it binds every address), with the admin token when one is configured.
//!
//! `doorsync run` holds its embedded log's file, which no other process can open meanwhile, so
//! the commands that read or change the log ask the running process first and open the log
//! themselves only when nothing answers ([`Admin::ask_running_process`]).

use doorsync_config::{Config, ConfigError, ExposeSecret, LogBackend, Secret};
use serde::de::DeserializeOwned;

/// How long a request may take: a dry run reads Kisi at its rate limit.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Where the admin API is, and the token it asks for.
pub(crate) struct Admin {
    base: String,
    token: Option<Secret>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminRequestError {
    #[error("nothing answers at {0}: is doorsync running there? (--admin, or admin.listen in the config)")]
    Unreachable(String),
    #[error("{url} asks for the admin token: set DOORSYNC_ADMIN_TOKEN or admin.token_file")]
    Unauthorized { url: String },
    #[error("{body} (answered {status} by {url})")]
    Refused { url: String, status: reqwest::StatusCode, body: String },
    #[error("{url} answered something else than expected")]
    Unexpected {
        url: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Admin {
    /// The admin API at `flag` (`--admin`) when given, else at the configured `admin.listen`.
    pub(crate) fn new(config: &Config, flag: Option<&str>) -> Result<Self, ConfigError> {
        let base = match flag {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", loopback(config.admin.listen)),
        };
        Ok(Self { base, token: config.admin_token()? })
    }

    /// The answer's body, as text.
    pub(crate) async fn request(&self, method: reqwest::Method, path: &str) -> Result<String, AdminRequestError> {
        let url = format!("{}{path}", self.base);
        let mut request = reqwest::Client::new().request(method, &url).timeout(REQUEST_TIMEOUT);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose_secret());
        }
        let response = request.send().await.map_err(|_| AdminRequestError::Unreachable(url.clone()))?;
        let status = response.status();
        let body = response.text().await.map_err(|_| AdminRequestError::Unreachable(url.clone()))?;
        match status {
            status if status.is_success() => Ok(body),
            reqwest::StatusCode::UNAUTHORIZED => Err(AdminRequestError::Unauthorized { url }),
            status => Err(AdminRequestError::Refused { url, status, body: body.trim_end().to_owned() }),
        }
    }

    /// The answer, read from its JSON.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<T, AdminRequestError> {
        let body = self.request(method, path).await?;
        self.read_json(path, &body)
    }

    /// `body`, the answer to `path`, read from its JSON.
    pub(crate) fn read_json<T: DeserializeOwned>(&self, path: &str, body: &str) -> Result<T, AdminRequestError> {
        serde_json::from_str(body)
            .map_err(|source| AdminRequestError::Unexpected { url: format!("{}{path}", self.base), source })
    }

    /// The running process's answer when the configuration names the embedded log and a process
    /// answers (it holds the log's file); `None` when nothing answers, or on JetStream, which
    /// every command opens beside the running roles.
    pub(crate) async fn ask_running_process(
        &self,
        config: &Config,
        method: reqwest::Method,
        path: &str,
    ) -> Result<Option<String>, AdminRequestError> {
        if config.log.backend != LogBackend::Embedded {
            return Ok(None);
        }
        match self.request(method, path).await {
            Ok(body) => Ok(Some(body)),
            Err(AdminRequestError::Unreachable(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }
}

fn loopback(listen: std::net::SocketAddr) -> std::net::SocketAddr {
    if listen.ip().is_unspecified() { std::net::SocketAddr::from(([127, 0, 0, 1], listen.port())) } else { listen }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_listener_is_asked_on_loopback_unless_admin_names_another_address() {
        let mut config = Config::default();
        config.admin.listen = std::net::SocketAddr::from(([0, 0, 0, 0], 9191));
        assert_eq!(Admin::new(&config, None).unwrap().base, "http://127.0.0.1:9191");
        config.admin.listen = std::net::SocketAddr::from(([10, 1, 2, 3], 9191));
        assert_eq!(Admin::new(&config, None).unwrap().base, "http://10.1.2.3:9191");
        let named = Admin::new(&config, Some("http://doorsync-writer:9090/")).unwrap();
        assert_eq!(named.base, "http://doorsync-writer:9090", "--admin wins over admin.listen");
    }
}
