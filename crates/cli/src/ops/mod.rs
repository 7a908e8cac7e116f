//! Operator commands that work on the log itself rather than through a running process:
//! `doorsync replay --dry-run` (what a rebuild from the log would change in Kisi) and
//! `doorsync dlq` (the commands the writer dead-lettered: list, retry, drop).
//!
//! The rebuild folds the log with `doorsync-access` exactly as the engine does, the comparison
//! with Kisi is the writer's own ([`doorsync_writer::dry_run`]), and only the edges read the log
//! and Kisi.

mod dlq;
mod kisi_read;
mod rebuild;
mod replay;
mod table;
#[cfg(test)]
pub(crate) mod testing;

use doorsync_layout::Layout;
use doorsync_log::EventLog;

pub(crate) use dlq::{DlqAction, dlq};
pub(crate) use replay::{reconcile_dry_run, replay};

use doorsync_node::Context;
use doorsync_node::setup;

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
