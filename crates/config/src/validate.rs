//! Checks that need more than one value's type: ranges, and entries that must name exactly one
//! thing.

use std::collections::BTreeSet;
use std::time::Duration;

use figment::Figment;
use url::Url;

use crate::error::{Problem, origin_of};
use crate::{Config, ConfigError, MappingEntry};

const DAY: Duration = Duration::from_secs(24 * 3_600);
const KISI_REQUESTS_PER_SECOND: u32 = 5;

pub(crate) fn check(config: &Config, figment: &Figment) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    let mut problem = |key: &str, text: String| {
        let section = key.split('[').next().unwrap_or(key);
        problems.push(Problem { key: key.to_owned(), origin: origin_of(figment, section), problem: text });
    };

    check_urls(config, &mut problem);
    check_nats(config, &mut problem);
    check_admin_listen(config, &mut problem);
    check_admin_time_zone(config, &mut problem);
    check_log(config, &mut problem);
    check_kisi_rate(config, &mut problem);
    check_day_pass_cutoffs(config, &mut problem);
    check_writer(config, &mut problem);
    check_nexudus(config, &mut problem);
    check_access(config, &mut problem);
    check_mapping(config, &mut problem);

    if problems.is_empty() { Ok(()) } else { Err(ConfigError::Invalid { problems }) }
}

/// The base URLs and the peers' admin addresses.
fn check_urls(config: &Config, problem: &mut impl FnMut(&str, String)) {
    for (key, text) in [("nexudus.base_url", &config.nexudus.base_url), ("kisi.base_url", &config.kisi.base_url)] {
        if let Err(ConfigError::Invalid { problems: found }) = url(key, text) {
            for found in found {
                problem(key, found.problem);
            }
        }
    }
    for (index, peer) in config.admin.peers.iter().enumerate() {
        if let Err(ConfigError::Invalid { problems: found }) = url(&format!("admin.peers[{index}]"), peer) {
            for found in found {
                problem(&format!("admin.peers[{index}]"), found.problem);
            }
        }
    }
}

/// An admin listener beyond loopback needs a token, unless a proxy in front authenticates.
fn check_admin_listen(config: &Config, problem: &mut impl FnMut(&str, String)) {
    let token_configured = config.admin.token_file.is_some()
        || std::env::var_os(crate::ADMIN_TOKEN_ENV).is_some_and(|token| !token.is_empty());
    if !config.admin.listen.ip().is_loopback() && !token_configured && !config.admin.allow_without_token {
        problem(
            "admin.listen",
            format!(
                "{} is reachable from other machines but no admin token is configured: set admin.token_file or \
                 {}, listen on 127.0.0.1, or set admin.allow_without_token = true if a proxy in front \
                 authenticates",
                config.admin.listen,
                crate::ADMIN_TOKEN_ENV
            ),
        );
    }
}

/// The page's clock needs a zone the bundled tz database knows: the host's may differ.
fn check_admin_time_zone(config: &Config, problem: &mut impl FnMut(&str, String)) {
    if let Some(zone) = &config.admin.time_zone
        && jiff::tz::TimeZoneDatabase::bundled().get(zone).is_err()
    {
        problem(
            "admin.time_zone",
            format!(
                "{zone:?} is not an IANA time zone doorsync knows: write one such as \"Europe/London\" or \"America/New_York\""
            ),
        );
    }
}

/// The subjects and the replicas of the log.
fn check_log(config: &Config, problem: &mut impl FnMut(&str, String)) {
    if let Err(error) = doorsync_proto::Subjects::new(&config.log.subject_prefix, config.log.partitions) {
        let key = if config.log.partitions == 0 { "log.partitions" } else { "log.subject_prefix" };
        problem(key, error.to_string());
    }
    if !(1..=5).contains(&config.log.replicas) {
        problem("log.replicas", format!("{} is outside 1 to 5, the replicas JetStream allows", config.log.replicas));
    }
}

/// Kisi's request limit.
fn check_kisi_rate(config: &Config, problem: &mut impl FnMut(&str, String)) {
    if config.kisi.requests_per_second == 0 || config.kisi.requests_per_second > KISI_REQUESTS_PER_SECOND {
        problem(
            "kisi.requests_per_second",
            format!(
                "{} is outside 1 to {KISI_REQUESTS_PER_SECOND}: Kisi allows {KISI_REQUESTS_PER_SECOND} requests/s per API user",
                config.kisi.requests_per_second
            ),
        );
    }
}

/// The day-pass cutoffs are times of day, by location id.
fn check_day_pass_cutoffs(config: &Config, problem: &mut impl FnMut(&str, String)) {
    if crate::hour_and_minute(&config.nexudus.day_pass_cutoff).is_none() {
        problem(
            "nexudus.day_pass_cutoff",
            format!("{:?} is not a time of day like \"03:00\"", config.nexudus.day_pass_cutoff),
        );
    }
    for (location, cutoff) in &config.nexudus.day_pass_cutoffs {
        if location.parse::<u64>().is_err() {
            problem("nexudus.day_pass_cutoffs", format!("{location:?} is not a Nexudus location (business) id"));
        }
        if crate::hour_and_minute(cutoff).is_none() {
            problem(
                "nexudus.day_pass_cutoffs",
                format!("{cutoff:?} (location {location}) is not a time of day like \"03:00\""),
            );
        }
    }
}

/// What the writer names itself and its lease by, and its timings against Kisi's.
fn check_writer(config: &Config, problem: &mut impl FnMut(&str, String)) {
    if config.kisi.integration_identifier.trim().is_empty() {
        problem("kisi.integration_identifier", "must name the integration, e.g. \"doorsync\"".to_owned());
    }
    if config.kisi.account.trim().is_empty() {
        problem("kisi.account", "must name the Kisi account the writer lease is for, e.g. \"default\"".to_owned());
    }
    // A timeout too long to triple is longer than any lease.
    if config.kisi.request_timeout.checked_mul(3).is_none_or(|needed| config.writer.lease_ttl < needed) {
        problem(
            "writer.lease_ttl",
            format!(
                "{} is shorter than 3 × kisi.request_timeout ({}): the writer stops calling Kisi a third of \
                 its lease before the lease could lapse, and a request in flight must have ended by then; \
                 raise writer.lease_ttl or lower kisi.request_timeout",
                humantime::format_duration(config.writer.lease_ttl),
                humantime::format_duration(config.kisi.request_timeout)
            ),
        );
    }
    // One Kisi request alone may take longer than a shorter wait: every command the writer is
    // carrying out would keep coming back while Kisi answers.
    if config.writer.ack_wait < Duration::from_secs(1) {
        problem(
            "writer.ack_wait",
            format!(
                "{} is too short: it must be at least 1s, or commands would be delivered again while the \
                 writer is still carrying them out",
                humantime::format_duration(config.writer.ack_wait)
            ),
        );
    }
}

/// The poller's timings and the Nexudus limits.
fn check_nexudus(config: &Config, problem: &mut impl FnMut(&str, String)) {
    if config.nexudus.poll_overlap < Duration::from_secs(60) {
        problem(
            "nexudus.poll_overlap",
            "must be at least 1m: Nexudus filters `UpdatedOn` to the minute, so a shorter overlap misses changes"
                .to_owned(),
        );
    }
    if config.nexudus.poll_every < Duration::from_secs(1) {
        problem("nexudus.poll_every", "must be at least 1s".to_owned());
    }
    if config.nexudus.requests_per_minute == 0 || config.nexudus.requests_per_hour == 0 {
        problem("nexudus.requests_per_minute", "the Nexudus request limits must be at least 1".to_owned());
    }
    if config.nexudus.webhook_body_limit_bytes < 1_024 {
        problem("nexudus.webhook_body_limit_bytes", "must be at least 1024: Nexudus sends whole entities".to_owned());
    }
}

/// Access timings and the mass-revocation share.
fn check_access(config: &Config, problem: &mut impl FnMut(&str, String)) {
    for (key, value) in [
        ("access.lead", config.access.lead),
        ("access.lag", config.access.lag),
        ("access.pass_lag", config.access.pass_lag),
    ] {
        if value > DAY {
            problem(key, format!("{} is longer than a day", humantime::format_duration(value)));
        }
    }
    let share = config.reconcile.max_revocation_share;
    if !(share > 0.0 && share <= 1.0) {
        problem("reconcile.max_revocation_share", format!("{share} is not a share between 0 (exclusive) and 1"));
    }
    let mut timed = BTreeSet::new();
    for (index, timing) in config.access.resource_timing.iter().enumerate() {
        if !timed.insert(timing.resource) {
            problem(
                &format!("access.resource_timing[{index}]"),
                format!("resource {} is listed twice", timing.resource),
            );
        }
    }
}

/// Each `[[mapping]]` entry names one source, once, and one group.
fn check_mapping(config: &Config, problem: &mut impl FnMut(&str, String)) {
    let mut sources = BTreeSet::new();
    for (index, entry) in config.mapping.iter().enumerate() {
        let key = format!("mapping[{index}]");
        match source_of(entry) {
            Ok(source) => {
                if !sources.insert(source) {
                    problem(&key, format!("{} {} is mapped twice", source.0, source.1));
                }
            }
            Err(text) => problem(&key, text),
        }
        match (entry.kisi_group, &entry.kisi_group_name) {
            (Some(_), None) => {}
            (None, Some(name)) if !name.trim().is_empty() => {}
            (None, Some(_)) => problem(&key, "`kisi_group_name` is empty".to_owned()),
            _ => problem(&key, "needs exactly one of `kisi_group` (an id) or `kisi_group_name`".to_owned()),
        }
    }
}

/// Credentials in the URL would be printed wherever the URL is (errors, logs, `check-config`),
/// so they are refused, and the URL is not repeated in the message.
fn check_nats(config: &Config, problem: &mut impl FnMut(&str, String)) {
    let log = &config.log;
    let authority = |url: &str| {
        let rest = url.find("://").map_or(url, |index| &url[index + 3..]);
        rest.split(['/', '?', '#']).next().unwrap_or(rest).to_owned()
    };
    if log.nats_url.split(',').any(|url| authority(url).contains('@')) {
        problem(
            "log.nats_url",
            "holds a user, password or token (before an `@`), which would show in logs and errors: remove it \
             and give the credentials in files, with log.nats_nkey_seed_file, log.nats_creds_file, or \
             log.nats_user and log.nats_password_file"
                .to_owned(),
        );
    }
    let kinds = [log.nats_nkey_seed_file.is_some(), log.nats_creds_file.is_some(), log.nats_user.is_some()];
    if kinds.iter().filter(|given| **given).count() > 1 {
        problem(
            "log.nats_nkey_seed_file",
            "give only one of log.nats_nkey_seed_file, log.nats_creds_file, or log.nats_user with \
             log.nats_password_file"
                .to_owned(),
        );
    }
    match (&log.nats_user, &log.nats_password_file) {
        (Some(_), None) => {
            problem("log.nats_user", "needs log.nats_password_file, a file holding its password".to_owned())
        }
        (None, Some(_)) => problem("log.nats_password_file", "needs log.nats_user, whose password it holds".to_owned()),
        _ => {}
    }
    match (&log.tls_cert_file, &log.tls_key_file) {
        (Some(_), None) => {
            problem("log.tls_key_file", "log.tls_cert_file needs its key in log.tls_key_file".to_owned())
        }
        (None, Some(_)) => {
            problem("log.tls_cert_file", "log.tls_key_file needs its certificate in log.tls_cert_file".to_owned())
        }
        _ => {}
    }
    if log.tls_cert_file.is_some() && log.tls_ca_file.is_none() {
        problem("log.tls_ca_file", "a client certificate needs the server's CA in log.tls_ca_file".to_owned());
    }
}

fn source_of(entry: &MappingEntry) -> Result<(&'static str, u64), String> {
    let named: Vec<(&'static str, u64)> = [
        ("resource", entry.resource),
        ("pass_product", entry.pass_product),
        ("floor_plan_item", entry.floor_plan_item),
    ]
    .into_iter()
    .filter_map(|(name, id)| id.map(|id| (name, id)))
    .collect();
    match named.as_slice() {
        [one] => Ok(*one),
        _ => Err("needs exactly one of `resource`, `pass_product` or `floor_plan_item`".to_owned()),
    }
}

/// `text` as an http(s) URL, or a problem naming `key`.
pub(crate) fn url(key: &str, text: &str) -> Result<Url, ConfigError> {
    let invalid = |problem: String| ConfigError::Invalid {
        problems: vec![Problem { key: key.to_owned(), origin: "the configuration".to_owned(), problem }],
    };
    let parsed = Url::parse(text)
        .map_err(|error| invalid(format!("{text:?} is not a URL ({error}), e.g. \"https://api.kisi.io\"")))?;
    match parsed.scheme() {
        "https" | "http" => Ok(parsed),
        other => Err(invalid(format!("{text:?} has scheme {other:?}; use https (or http for a local simulator)"))),
    }
}
