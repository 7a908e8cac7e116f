//! The subcommands: serving roles until a signal, and the operator's one-shot commands.

use std::path::Path;

use anyhow::{Context as _, bail};
use doorsync_catalogue::Catalogue;
use doorsync_config::{Config, LogBackend};
use doorsync_proto::{MemberId, Timestamp};

use doorsync_node::{Context, RoleSet, setup};

use crate::ops::admin::Admin;

/// Runs `roles` until SIGTERM or Ctrl-C, then shuts down gracefully.
pub(crate) async fn serve(config_file: Option<&Path>, roles: RoleSet, command: &str) -> anyhow::Result<()> {
    let context = Context::load(config_file)?;
    let layout = setup::layout(&context.config)?;
    let needs = if roles == RoleSet::ALL { None } else { Some(LogBackend::Jetstream) };
    let opened = setup::open_log(&context.config, &layout, needs, command).await?;
    let mapping =
        if roles.engine || roles.writer { setup::mapping(&context.config).await? } else { Default::default() };
    let process = doorsync_node::start(&context, roles, opened, layout, mapping, doorsync_status_page::routes).await?;
    tracing::info!(
        admin = %process.admin.local_addr(),
        webhooks = ?process.running.webhook_address,
        instance = %context.instance,
        "doorsync {command} is running; SIGTERM or Ctrl-C stops it"
    );
    stop_signal().await?;
    tracing::info!("stopping: finishing what is in flight");
    process.shutdown().await;
    Ok(())
}

async fn stop_signal() -> anyhow::Result<()> {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("listening for SIGTERM")?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted.context("listening for Ctrl-C")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

pub(crate) async fn explain(config_file: Option<&Path>, who: &str, at: Option<&str>) -> anyhow::Result<()> {
    let context = Context::load(config_file)?;
    let config = &context.config;
    let at = match at {
        Some(text) => parse_instant(text)?,
        None => context.clock.now(),
    };
    let layout = setup::layout(config)?;
    if config.log.backend == LogBackend::Embedded
        && at_is_now(at, &context)
        && let Some(text) = ask_running_process(config, who).await?
    {
        print!("{text}");
        return Ok(());
    }
    let opened = setup::open_log(config, &layout, None, "explain").await?;
    let members = match who.parse::<u64>() {
        Ok(id) => vec![MemberId(id)],
        Err(_) => doorsync_engine::members_with_email(opened.log.as_ref(), &layout, who).await?,
    };
    if members.is_empty() {
        bail!("no member has the email {who:?} in the log (try their Nexudus coworker id)");
    }
    let mapping = setup::mapping(config).await?;
    let policy = config.access_policy();
    // Names only help the reader: without them the explanation says ids instead.
    let catalogue = Catalogue::read(opened.log.as_ref(), &layout).await.unwrap_or_else(|error| {
        tracing::warn!(%error, "explaining in ids: the catalogue of names cannot be read");
        Catalogue::default()
    });
    let zone = catalogue.operator_zone(config.admin.time_zone.as_deref());
    for member in members {
        let explanation = doorsync_engine::explain_named(
            opened.log.as_ref(),
            &layout,
            &mapping,
            &policy,
            member,
            at,
            &catalogue,
            &zone,
        )
        .await?;
        println!("{}", explanation.display_with(&catalogue, &zone));
    }
    Ok(())
}

fn at_is_now(at: Timestamp, context: &Context) -> bool {
    (context.clock.now().as_unix_millis() - at.as_unix_millis()).abs() < 1_000
}

/// The explanation from a running process that holds the embedded log, or `None` when none
/// answers at the configured admin address.
async fn ask_running_process(config: &Config, who: &str) -> anyhow::Result<Option<String>> {
    let Ok(member) = who.parse::<u64>() else { return Ok(None) };
    let admin = Admin::new(config, None)?;
    Ok(admin.ask_running_process(config, reqwest::Method::GET, &format!("/api/explain/{member}")).await?)
}

fn parse_instant(text: &str) -> anyhow::Result<Timestamp> {
    let instant: jiff::Timestamp = text
        .parse()
        .with_context(|| format!("--at {text:?} is not an RFC 3339 instant such as 2026-12-01T09:00:00Z"))?;
    Ok(Timestamp::from_unix_millis(instant.as_millisecond()))
}

/// Asks the active writer to reconcile now (or to carry out the revocations it held back), and
/// prints its report.
pub(crate) async fn reconcile(config_file: Option<&Path>, admin: Option<&str>, confirm: bool) -> anyhow::Result<()> {
    let context = Context::load(config_file)?;
    let admin = Admin::new(&context.config, admin)?;
    let path = if confirm { "/api/writer/reconcile/confirm" } else { "/api/writer/reconcile" };
    let report: serde_json::Value = admin.json(reqwest::Method::POST, path).await?;
    println!("{}", serde_json::to_string_pretty(&report).context("printing the report")?);
    Ok(())
}

pub(crate) async fn status(config_file: Option<&Path>, admin: Option<&str>, json: bool) -> anyhow::Result<()> {
    let context = Context::load(config_file)?;
    crate::ops::status(&Admin::new(&context.config, admin)?, json).await
}

/// Loads the configuration and checks what it names: the secrets each role needs and, where the
/// API key is there, the Kisi groups it maps to.
pub(crate) async fn check_config(config_file: Option<&Path>) -> anyhow::Result<()> {
    let config = Config::load(config_file).context("the configuration is not valid")?;
    let source =
        config_file.map_or_else(|| "the defaults and the environment".to_owned(), |file| file.display().to_string());
    println!("configuration from {source}: valid");
    println!(
        "  log: {:?} ({})",
        config.log.backend,
        match config.log.backend {
            LogBackend::Embedded => config.log.path.display().to_string(),
            LogBackend::Jetstream => config.log.nats_url.clone(),
        }
    );
    println!(
        "  mapping: {} entries; lead {:?}, lag {:?}, no-access policy {:?}",
        config.mapping.len(),
        config.access.lead,
        config.access.lag,
        config.access.no_access
    );
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
    let mut refused = Vec::new();
    if config.kisi_api_key().is_ok() {
        let mapping = setup::mapping(&config).await.context("resolving the mapping's Kisi groups")?;
        let groups = mapping.resources.len() + mapping.pass_products.len() + mapping.floor_plan_items.len();
        println!("  Kisi groups of the mapping: {groups} resolved");
        if groups > 0 {
            refused = invisible_groups(&config, &mapping).await?;
        }
    }
    if !missing.is_empty() {
        bail!("{} secret(s) missing: {}", missing.len(), missing.join(", "));
    }
    if !refused.is_empty() {
        bail!(
            "{} mapped Kisi group(s) this API key cannot see (a mistyped id, or a group of another organization): {}",
            refused.len(),
            refused.join("; ")
        );
    }
    Ok(())
}

/// The mapped groups that are not among the groups the API key can see (Kisi answers 403 for
/// them, which the writer treats as that group's commands failing), each with its `[[mapping]]`
/// entries.
async fn invisible_groups(config: &Config, mapping: &doorsync_access::Mapping) -> anyhow::Result<Vec<String>> {
    let kisi = setup::kisi_client(config)?;
    let visible: std::collections::BTreeSet<_> = kisi
        .groups()
        .await
        .context("listing the Kisi groups this API key can see")?
        .into_iter()
        .map(|group| group.id)
        .collect();
    let labels = setup::mapping_labels(config, mapping);
    let invisible: Vec<String> = labels
        .iter()
        .filter(|(group, _)| !visible.contains(group))
        .map(|(group, entries)| format!("group {group} ({entries})"))
        .collect();
    println!(
        "  Kisi groups of the mapping visible to the API key: {} of {}",
        labels.len() - invisible.len(),
        labels.len()
    );
    Ok(invisible)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::ops::testing::{Kisi, context};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn check_config_names_the_mapped_groups_the_key_cannot_see() {
        let kisi = Kisi::start(50).await;
        let (lounge, typo) = (kisi.handle.add_group("Lounge"), kisi.handle.add_group("Another organisation's"));
        kisi.handle.hide_group(typo);
        let dir = tempfile::tempdir().unwrap();
        let context = context(&dir, Some(&kisi), &[(1, lounge), (2, typo), (3, doorsync_proto::KisiGroupId(999_999))]);
        let mapping = setup::mapping(&context.config).await.unwrap();

        let invisible = invisible_groups(&context.config, &mapping).await.unwrap();

        assert_eq!(
            invisible,
            [format!("group {typo} (mapping[1] (resource 2))"), "group 999999 (mapping[2] (resource 3))".to_owned(),]
        );
    }
}
