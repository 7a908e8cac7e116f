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

pub(crate) async fn explain(
    config_file: Option<&Path>,
    admin: Option<&str>,
    who: &str,
    at: Option<&str>,
) -> anyhow::Result<()> {
    let context = Context::load(config_file)?;
    let config = &context.config;
    let at = match at {
        Some(text) => parse_instant(text)?,
        None => context.clock.now(),
    };
    let layout = setup::layout(config)?;
    if config.log.backend == LogBackend::Embedded
        && at_is_now(at, &context)
        && let Some(text) = ask_running_process(config, admin, who).await?
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
/// answers at the admin address (`--admin`, else the configured one).
async fn ask_running_process(config: &Config, admin: Option<&str>, who: &str) -> anyhow::Result<Option<String>> {
    let Ok(member) = who.parse::<u64>() else { return Ok(None) };
    let admin = Admin::new(config, admin)?;
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
    let zone = context.config.admin.time_zone.as_deref().and_then(doorsync_catalogue::zone_named);
    let times = doorsync_catalogue::LocalTimes::new(zone.unwrap_or(jiff::tz::TimeZone::UTC), context.clock.now());
    crate::ops::status(&Admin::new(&context.config, admin)?, json, &times).await
}
