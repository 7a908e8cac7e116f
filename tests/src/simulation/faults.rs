//! When things go wrong, drawn from the seed: phases of faults (Kisi answering 5xx, dropping
//! answers to writes it made, hanging and dawdling; Nexudus losing, repeating and delaying
//! webhooks) between calm phases, and single disruptions within the faulty phases (bursts of
//! Kisi 429s and Nexudus 409s, a member actor killed, the engine, the writer or the ingestor
//! restarted on the same log). Besides, at any time, calm or not, what operators do: edit the
//! configuration and restart doorsync, and stop the engine (gracefully or as a crash) at
//! arbitrary points, among them right after a wake-up and right after a checkpoint.

use std::time::Duration;

use doorsync_kisi_sim::RandomFaults;
use doorsync_nexudus_sim::WebhookFaults;
use rand::Rng;
use rand::rngs::StdRng;

use super::configuration::Edit;
use super::intervals::Millis;

const MINUTE_MS: Millis = 60_000;

/// What goes wrong throughout a faulty phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PhaseFaults {
    pub(crate) kisi: RandomFaults,
    pub(crate) webhooks: WebhookFaults,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Phase {
    pub(crate) start: Millis,
    pub(crate) end: Millis,
    /// `None`: calm.
    pub(crate) faults: Option<PhaseFaults>,
}

/// One thing that goes wrong at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disruption {
    /// Kisi answers the next `requests` requests 429, with `Retry-After` if the seed's Kisi
    /// sends one.
    KisiRateLimited {
        requests: u32,
        retry_after_seconds: u32,
    },
    /// Nexudus answers the next `requests` requests 409 (throttled).
    NexudusThrottled {
        requests: u32,
    },
    /// A member's actor crashes (the member by its index among the members).
    MemberActorKilled {
        member: usize,
    },
    EngineRestarted,
    WriterRestarted,
    IngestRestarted,
    /// The engine stops as a crash would, and starts again.
    EngineCrashed,
    /// The clock moves to the next end of anyone's window, where the engine wakes the member up,
    /// and the engine is stopped (as a crash would, or gracefully) after the runtime has turned
    /// `yields` times, before it settles: between a wake-up and its evaluation, or soon after.
    EngineStoppedAtWake {
        crash: bool,
        yields: u32,
    },
    /// At the workload's next change, the engine writes its checkpoints, the change is made,
    /// and the engine crashes after the runtime has turned `yields` times (`None`: once
    /// everything settled): what it folded after the checkpoint is read again from the log.
    EngineCrashedAfterCheckpoint {
        yields: Option<u32>,
    },
    /// The operator edits doorsync's configuration and restarts all of it.
    ConfigurationEdited(Edit),
}

#[derive(Debug, Clone)]
pub(crate) struct FaultPlan {
    pub(crate) phases: Vec<Phase>,
    /// In time order.
    pub(crate) disruptions: Vec<(Millis, Disruption)>,
}

impl FaultPlan {
    /// Calm at first (the first sync, one to two hours) and for at least `final_calm` at the end,
    /// faulty phases of an hour and a half to four between calm ones as long.
    pub(crate) fn draw(rng: &mut StdRng, start: Millis, end: Millis, final_calm: Millis, members: usize) -> Self {
        let mut phases = Vec::new();
        let mut disruptions = Vec::new();
        let mut at = start;
        let mut calm_until = start + rng.random_range(60..=120) * MINUTE_MS;
        let last_fault = end - final_calm;
        while calm_until < last_fault {
            phases.push(Phase { start: at, end: calm_until, faults: None });
            let faulty_until = (calm_until + rng.random_range(90..=4 * 60) * MINUTE_MS).min(last_fault);
            phases.push(Phase { start: calm_until, end: faulty_until, faults: Some(phase_faults(rng)) });
            for _ in 0..rng.random_range(2..=8) {
                let when = rng.random_range(calm_until..faulty_until);
                disruptions.push((when - when.rem_euclid(MINUTE_MS), disruption(rng, members)));
            }
            at = faulty_until;
            calm_until = faulty_until + rng.random_range(90..=4 * 60) * MINUTE_MS;
        }
        phases.push(Phase { start: at, end, faults: None });
        disruptions.sort_by_key(|(when, _)| *when);
        Self { phases, disruptions }
    }

    /// Adds what operators do, at any time from `from` to `until`, calm or not: in about half
    /// the seeds one to three edits of the configuration, each followed by a restart of doorsync,
    /// and in about as many one to three stops of the engine. Returns them, for the story.
    pub(crate) fn add_operators(&mut self, rng: &mut StdRng, from: Millis, until: Millis) -> Vec<(Millis, Disruption)> {
        let at = |rng: &mut StdRng| {
            let when = rng.random_range(from..until);
            when - when.rem_euclid(MINUTE_MS)
        };
        let mut drawn = Vec::new();
        if rng.random_bool(0.5) {
            for _ in 0..rng.random_range(1..=3) {
                drawn.push((at(rng), Disruption::ConfigurationEdited(Edit::draw(rng))));
            }
        }
        if rng.random_bool(0.5) {
            for _ in 0..rng.random_range(1..=3) {
                let when = at(rng);
                let stop = match rng.random_range(0..4) {
                    0 => Disruption::EngineRestarted,
                    1 => Disruption::EngineCrashed,
                    2 => Disruption::EngineStoppedAtWake {
                        crash: rng.random_bool(0.5),
                        yields: rng.random_range(0..=12),
                    },
                    _ => Disruption::EngineCrashedAfterCheckpoint {
                        yields: rng.random_bool(0.7).then(|| rng.random_range(0..=12)),
                    },
                };
                drawn.push((when, stop));
            }
        }
        drawn.sort_by_key(|(when, _)| *when);
        self.disruptions.extend(drawn.iter().copied());
        self.disruptions.sort_by_key(|(when, _)| *when);
        drawn
    }

    pub(crate) fn phase_at(&self, at: Millis) -> Option<&Phase> {
        self.phases.iter().find(|phase| phase.start <= at && at < phase.end)
    }

    /// The next phase boundary after `at`.
    pub(crate) fn next_boundary(&self, at: Millis) -> Option<Millis> {
        self.phases.iter().map(|phase| phase.start).find(|start| *start > at)
    }
}

fn phase_faults(rng: &mut StdRng) -> PhaseFaults {
    let kisi = RandomFaults {
        server_error: rng.random_range(0.03..0.15),
        drop_response: rng.random_range(0.01..0.08),
        hang: rng.random_range(0.0..0.03),
        // No latency: a request held back on the virtual clock looks like one in flight, and
        // settling could not tell it from one being worked on. Hangs cover slow answers.
        max_latency: Duration::ZERO,
    };
    let webhooks = WebhookFaults {
        drop_probability: rng.random_range(0.1..0.6),
        duplicate_probability: rng.random_range(0.05..0.3),
        delay_probability: rng.random_range(0.1..0.5),
        max_extra_delay: Duration::from_secs(rng.random_range(60..=30 * 60)),
    };
    PhaseFaults { kisi, webhooks }
}

fn disruption(rng: &mut StdRng, members: usize) -> Disruption {
    match rng.random_range(0..6) {
        0 => Disruption::KisiRateLimited {
            requests: rng.random_range(1..=6),
            retry_after_seconds: rng.random_range(1..=60),
        },
        1 => Disruption::NexudusThrottled { requests: rng.random_range(1..=8) },
        2 => Disruption::MemberActorKilled { member: rng.random_range(0..members.max(1)) },
        3 => Disruption::EngineRestarted,
        4 => Disruption::WriterRestarted,
        _ => Disruption::IngestRestarted,
    }
}
