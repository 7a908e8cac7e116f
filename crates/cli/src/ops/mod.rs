//! The operator's commands on the log: `doorsync replay --dry-run` and `doorsync reconcile
//! --dry-run` (what a rebuild from the log would change in Kisi) and `doorsync dlq` (the commands
//! the writer dead-lettered: list, retry, drop). What they do is `doorsync_node::operations`';
//! this is where it is done and the text. `doorsync status` reads the running process's status
//! and sums it up.
//!
//! Beside a running `doorsync run`, which holds the embedded log's file, they ask its admin API
//! ([`admin`]); otherwise they open the log themselves, and close it as soon as they are done.

pub(crate) mod admin;
mod dlq;
mod replay;
mod status;
pub(crate) mod table;
#[cfg(test)]
pub(crate) use doorsync_node::testing;

use doorsync_layout::Layout;
use doorsync_log::EventLog;
use serde::de::DeserializeOwned;

pub(crate) use dlq::{DlqAction, dlq};
pub(crate) use replay::{reconcile_dry_run, replay};
pub(crate) use status::status;

use admin::Admin;
use doorsync_node::Context;
use doorsync_node::setup;

/// The running process's answer to `method path` when one holds the embedded log, else `work`
/// done on the log the configuration names: the same answer either way.
async fn from_running_process_or_log<T: DeserializeOwned>(
    context: &Context,
    admin: &Admin,
    (method, path): (reqwest::Method, &str),
    command: &str,
    work: impl AsyncFnOnce(&dyn EventLog, &Layout) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    match admin.ask_running_process(&context.config, method, path).await? {
        Some(body) => Ok(admin.read_json(path, &body)?),
        None => with_log(context, command, work).await,
    }
}

/// Runs `work` on the log the configuration names, then closes it, so that the embedded log's
/// file is free again (for `doorsync run`, or the next command) as soon as this returns.
async fn with_log<T>(
    context: &Context,
    command: &str,
    work: impl AsyncFnOnce(&dyn EventLog, &Layout) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let layout = setup::layout(&context.config)?;
    let opened = setup::open_log(&context.config, &layout, None, command).await?;
    let result = work(opened.log.as_ref(), &layout).await;
    opened.close().await;
    result
}
