//! One process of doorsync: the roles it runs (ingest, engine, writer) assembled on one log.
//!
//! Two layers, so that every way of running doorsync starts its roles the same way:
//! * [`roles`] starts one role from its options and its client's options on a [`Foundation`]
//!   (a log, its layout and the clock). The deterministic simulation starts each role there, on
//!   its in-memory log and virtual clock, and restarts them one at a time.
//! * [`start`] reads the configuration through [`setup`] (the log it names, the options and
//!   clients of each role), starts the [`RoleSet`] through [`roles`], and serves the roles' API,
//!   probes and metrics on one admin listener; [`Process::shutdown`] stops them within the
//!   shutdown budget. `doorsync run`, `ingest`, `engine`, `writer` and `demo` start here.
#![forbid(unsafe_code)]

mod api;
mod context;
mod error;
mod metrics;
mod process;
pub mod roles;
pub mod setup;
mod status;

pub use context::Context;
pub use error::{NodeError, with_causes};
pub use process::{Peers, Process, RoleSet, Running, start};
pub use roles::{Foundation, StartedIngest};
pub use status::Status;
