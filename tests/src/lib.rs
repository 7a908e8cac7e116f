//! Helpers for doorsync's cross-process tests (in `tests/`): the `doorsync` binary run as child
//! processes ([`Doorsync`]) against a real nats-server and the Kisi and Nexudus simulators over
//! loopback HTTP, set up as one coworking site ([`Site`]).
//!
//! The binary is the one cargo built next to the test executable (`target/<profile>/doorsync`);
//! build it with `cargo build -p doorsync-cli` before running these tests on their own.
//!
//! Each test file says what it proves: `end_to_end.rs` (one scenario on separate processes on a
//! secured nats-server and on one `doorsync run`, which must leave Kisi the same), `replicas.rs`
//! (two engines and two writers, one of each SIGKILLed), `chaos.rs` (seeded kills and restarts of
//! every process and of nats-server; `DOORSYNC_CHAOS_SEED` replays one), `jetstream_restart.rs`,
//! `security.rs`, `tracing.rs` (one trace from webhook to Kisi call, received by [`otlp`]), and
//! `simulation.rs`.
//!
//! [`simulation`] is the deterministic simulation: the roles started through `doorsync-node` on
//! one in-memory log and a virtual clock, seeds 1 to 300 in CI and as many more as `just soak`
//! asks for. Its oracle (`oracle.rs`) computes who may open what with its own reading of the
//! rules, never with `doorsync-access`; a failure prints its seed, its journal and the command
//! that replays it.
#![forbid(unsafe_code)]

mod error;
mod latencies;
pub mod otlp;
mod process;
pub mod simulation;
mod site;

use std::time::Duration;

pub use error::HarnessError;
pub use latencies::Latencies;
pub use process::{Doorsync, ProcessStatus, doorsync_binary};
pub use site::{
    Deployment, KisiMember, KisiMembership, NexudusPlaces, REPLICATED_ENGINE_LEASE_TTL, REPLICATED_WRITER_LEASE_TTL,
    Room, Site,
};

/// Polls `probe` (every 5 ms, so a caller timing the wait is off by 5 ms at most) until it gives
/// a value, and returns it; an error naming `what` after `limit`.
pub async fn eventually<T>(
    what: &str,
    limit: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T, HarnessError> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe() {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(HarnessError::Timeout { what: what.to_owned(), waited: limit });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
