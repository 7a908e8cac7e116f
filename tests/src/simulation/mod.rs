//! The deterministic simulation: doorsync's whole pipeline in one process, on a virtual clock and
//! an in-memory log, between the Nexudus and Kisi simulators (real HTTP on loopback), through
//! seeded workloads and faults, checked step by step against an independent oracle.
//!
//! Each seed builds a coworking operator with locations in London, San Francisco and Sydney and
//! a handful of members, starts doorsync's ingestor, engine and writer through the functions
//! `doorsync run` starts them with (`doorsync_node::roles`), and simulates a day and a half that crosses a change of the clocks in one of the
//! three zones. Meanwhile the workload books, moves, cancels and deletes bookings; buys, uses up,
//! expires and deletes day and time passes (one day pass on the very day the clocks change);
//! starts, cancels and deactivates contracts; relinks a room's Kisi group in Nexudus; changes
//! emails; and deactivates and reactivates members. Faulty phases make Kisi answer 5xx, drop
//! answers to writes it made, hang and dawdle, and make Nexudus lose, repeat and delay (so
//! reorder) webhooks; single disruptions in them throttle Nexudus (409), rate-limit Kisi (429),
//! kill member actors (which come back from their snapshot and the log) and restart the engine
//! (from its checkpoints and snapshots), the writer and the ingestor on the same log. Members
//! idle for hours are passivated and come back from their snapshots too. Kisi also holds staff,
//! another integration's user and groups that are not doorsync's, which must stay untouched.
//!
//! Operators act too, calm or not (`configuration.rs`, `faults.rs`, `workload.rs`). In about
//! half the seeds they edit doorsync's configuration one to three times, each time restarting
//! all three components with the edited configuration as `doorsync run` would be restarted:
//! they relink a mapped room, pass product, desk or office to another managed group, map
//! something unmapped (the room Nexudus links, a pass product a quarter of the seeds start
//! with unconnected, whatever an earlier edit unmapped), unmap something, change the booking
//! lead and lag, give one room its own, change the pass lag, or switch the no-access policy. In
//! about half the seeds they stop the engine one to three times: a graceful restart, a crash
//! (no checkpoint, no snapshot, leases kept), a stop (either way) right when the clock reaches
//! the next end of anyone's window, after a drawn number of turns of the runtime and before
//! anything settles, so between a wake-up and its evaluation, and a crash after a forced
//! checkpoint and the workload's next change. The workload deletes members by mistake and
//! restores them later with the same id and records, and makes records that grant unreadable
//! for a while (a used day pass without its `UsedDate`, a contract naming a desk Nexudus does
//! not have, a booking of a resource Nexudus does not have), which the ingestor parks, and
//! readable again. The oracle reads the configuration in force at each instant from a timeline
//! of configurations, grants nothing for an unreadable record or a deleted member, and an edit
//! is given the tolerances of a change notified at once; the end is checked against the
//! configuration in force by then.
//!
//! Each seed also draws what the real APIs leave open (`conditions.rs`, after
//! `quirks.md`): Nexudus's 500 or 404 for a record that is gone; Kisi applying, ignoring or
//! refusing a PATCH of a window, answering 403 or 404 for unknown ids, and sending Retry-After
//! with its 429s or not; a mapped group Kisi refuses to doorsync's key, from the start or from a
//! drawn instant; staff users someone else made with members' emails, some holding assignments
//! of their own in the members' groups, with a window or without; and a start on what Nexudus's
//! built-in Kisi integration left (users and window-less assignments for the members entitled
//! then, and some for members entitled to nothing there), which doorsync is told to adopt. The
//! draws are in the failure story and in each seed's report.
//!
//! The invariants and their tolerances are stated in `invariants.rs`. One gap is counted rather
//! than failed: the writer counts its reconciliation period afresh at every start and waits a
//! whole period after a failed pass, so in a seed whose writer restarts often enough no
//! reconciliation finishes, and adopted assignments nobody is entitled to, which only the
//! reconciler removes, are still there at the end (the summary says in how many seeds).
//!
//! Time is virtual: it stands still while doorsync works, and moves only when everything has
//! settled (see `settle.rs`), straight to the next instant anyone waits for on the clock (a
//! poll, a member's next window edge, a backoff), the next change of the workload or the next
//! fault, so a day and a half takes a few hundred steps.
//!
//! **What a seed fixes, and what it does not.** The seed fixes the operator's setup, the
//! workload (every change and its virtual instant), the fault phases and the disruptions and
//! their instants, the operators' edits and stops, the no-access policy, and the seeds of the simulators' and writer's own
//! generators. It does not fix how threads interleave: each seed runs on its own single-threaded
//! runtime, but the log's writer thread, blocking reads and loopback sockets answer when they
//! do, and the simulators draw a random fault per request in the order requests arrive. A
//! replay of a failing seed makes the same changes and the same faults at the same instants; the
//! invariants are written to hold for every legitimate interleaving, so a failure is worth
//! replaying, usually reproduces, and when it does not, its journal still tells the story.

mod clock;
mod conditions;
mod configuration;
mod doorsync;
mod faults;
mod intervals;
mod invariants;
mod oracle;
mod run;
mod settle;
mod watched_log;
mod workload;
mod world;

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};

pub use conditions::{Conditions, Hiding};
pub use run::{Operators, SeedFailure, SeedReport, run_seed};

/// Why a seed could not go on.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum SimFailure {
    /// The harness itself could not do something (start a simulator, read a record).
    #[error("the simulation could not {what}: {reason}")]
    Harness { what: String, reason: String },
    /// doorsync broke an invariant.
    #[error("invariant broken:\n  {0}")]
    Invariant(String),
}

impl SimFailure {
    pub(crate) fn harness(what: &str, reason: impl Into<String>) -> Self {
        Self::Harness { what: what.to_owned(), reason: reason.into() }
    }

    /// For `map_err`: the harness could not do `what`.
    pub(crate) fn setup<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> Self {
        move |error| Self::harness(what, error.to_string())
    }
}

/// Runs `seeds` on `threads` threads, each seed on a single-threaded runtime of its own, and
/// returns every result in the order of the seeds.
pub fn run_seeds(seeds: Vec<u64>, threads: usize) -> Vec<Result<SeedReport, SeedFailure>> {
    let queue = Arc::new(Mutex::new(seeds.iter().copied().collect::<VecDeque<u64>>()));
    let results = Arc::new(Mutex::new(Vec::with_capacity(seeds.len())));
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (queue, results) = (Arc::clone(&queue), Arc::clone(&results));
            std::thread::spawn(move || {
                loop {
                    let next = queue.lock().unwrap_or_else(PoisonError::into_inner).pop_front();
                    let Some(seed) = next else { return };
                    let result = run_on_own_runtime(seed);
                    results.lock().unwrap_or_else(PoisonError::into_inner).push(result);
                }
            })
        })
        .collect();
    for worker in workers {
        // A worker only ends by running out of seeds: a seed's panic is caught inside.
        let _ = worker.join();
    }
    let mut results = std::mem::take(&mut *results.lock().unwrap_or_else(PoisonError::into_inner));
    results.sort_by_key(|result| match result {
        Ok(report) => report.seed,
        Err(failure) => failure.seed,
    });
    results
}

fn run_on_own_runtime(seed: u64) -> Result<SeedReport, SeedFailure> {
    let failed = |reason: String| SeedFailure { seed, reason, journal: Vec::new() };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| failed(format!("could not build a runtime: {error}")))?;
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| runtime.block_on(run_seed(seed))));
    // Whatever the seed left running (timers, servers, actors) goes with its runtime.
    runtime.shutdown_background();
    match outcome {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                .unwrap_or_else(|| "a panic without a message".to_owned());
            Err(failed(format!("panicked: {message}")))
        }
    }
}
