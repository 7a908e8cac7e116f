//! One process of doorsync: the roles it runs (ingest, engine, writer) assembled on one log.
//!
//! Two layers, so that every way of running doorsync starts its roles the same way, and the roles
//! are wired in one place only:
//! * [`roles`] starts one role from its options and its client's options on a [`Foundation`] (a
//!   log, its layout and the clock). The deterministic simulation starts each role there, on its
//!   in-memory log and virtual clock, and restarts them one at a time.
//! * [`start`] builds on a [`Context`] (the checked configuration, the clock and this process's
//!   name): [`setup`] opens the log the configuration names (the embedded log for `doorsync run`,
//!   JetStream for `doorsync ingest`, `engine` and `writer`) and makes each role's options and
//!   clients; the [`RoleSet`] is started through [`roles`], and one admin listener serves the
//!   roles' JSON API (`/api/status`, the writer's `/api/writer/reconcile`, the engine's
//!   `/api/explain/{member}`, and [`operations`]' dead letters and dry run), the probes, the
//!   metrics and the routes the caller adds (the status page). `doorsync run`, `ingest`, `engine`, `writer` and `demo` start here (the end-to-end
//!   tests run those commands).
//!
//! While running, the process keeps `/healthz` (failed for good once the embedded log refuses
//! everything after a failed write), `/readyz` (connected to NATS, the engine caught up, the writer
//! neither paused nor held by a `Retry-After`) and the roles' metrics (each role's defined in its
//! own crate's `metric_definitions`) current from the roles' statuses. In a split deployment
//! `admin.peers` lists the other processes, whose status it asks for.
//!
//! [`Process::shutdown`] stops the roles in order within [`setup::SHUTDOWN_BUDGET`] (30 seconds):
//! webhooks first, then the engine's checkpoints, the writer giving back what it holds, the admin
//! listener, and the log closed or drained.
//!
//! The operator's setup tools read both accounts through the same configuration and clients:
//! [`inventory`] lists what a `[[mapping]]` entry can link (Nexudus's resources, pass products and
//! desks and offices, and the Kisi groups the key sees), [`online_check`] checks the accounts and
//! names both sides of each entry (`doorsync check-config --online`), and [`suggest`] matches the
//! two sides by name (`doorsync mapping suggest`).
//!
//! The node decides nothing a role decides: it reads the configuration into the roles' options and
//! starts them.
#![forbid(unsafe_code)]

mod api;
mod context;
mod error;
pub mod inventory;
mod metrics;
pub mod online_check;
pub mod operations;
mod process;
pub mod roles;
pub mod setup;
mod status;
pub mod suggest;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use context::Context;
pub use error::{NodeError, with_causes};
pub use process::{Peers, Process, RoleSet, Running, start};
pub use roles::{Foundation, StartedIngest};
pub use status::Status;

/// "1 group", "3 groups": counts in what operators read.
pub(crate) fn counted(number: usize, one: &str, many: &str) -> String {
    format!("{number} {}", if number == 1 { one } else { many })
}
