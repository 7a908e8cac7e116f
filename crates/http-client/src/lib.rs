//! How doorsync's API clients (Kisi, Nexudus) talk HTTP.
//!
//! Both carry credentials in every request (an API key, a bearer token or a password), so:
//! * a redirect is never followed: neither API uses them, and following one would send the
//!   request, and with a `Location` on another host perhaps its credentials, where the API
//!   did not say;
//! * the base URL must be https, except to a loopback address, where the simulators and the
//!   tests listen: plain http anywhere else puts the credentials on the wire.
#![forbid(unsafe_code)]

use std::net::IpAddr;

use url::{Host, Url};

/// A `reqwest` client builder that follows no redirect; callers add their timeouts and headers.
pub fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none())
}

/// `Ok` when `url` may be the base of `api`'s requests (`api` names it in the refusal).
pub fn check_base_url(api: &str, url: &Url) -> Result<(), String> {
    if url.cannot_be_a_base() {
        return Err(format!("the {api} URL {url} cannot have paths appended"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        scheme => Err(format!(
            "the {api} URL {url} uses {scheme}; {api} needs https (plain http only to a loopback address, for a \
             simulator)"
        )),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str) -> Result<(), String> {
        check_base_url("Nexudus", &Url::parse(url).map_err(|error| error.to_string())?)
    }

    #[test]
    fn https_anywhere_and_http_only_to_loopback() {
        for allowed in ["https://spaces.nexudus.com", "http://127.0.0.1:8080/", "http://[::1]:1", "http://localhost:9"]
        {
            assert_eq!(check(allowed), Ok(()), "{allowed}");
        }
        for refused in ["http://spaces.nexudus.com", "http://10.0.0.1", "http://127.0.0.1.nip.io", "ftp://127.0.0.1"] {
            let error = check(refused).err().unwrap_or_default();
            assert!(error.contains("Nexudus needs https"), "{refused}: {error}");
        }
        assert!(check("mailto:ops@example.com").is_err_and(|error| error.contains("cannot have paths")));
    }
}
