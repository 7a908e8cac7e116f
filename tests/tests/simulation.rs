//! The deterministic simulation (see `doorsync_integration_tests::simulation`): many seeds, each
//! a day and a half of a coworking operator's changes in Nexudus under seeded faults, with
//! doorsync's invariants checked against an independent oracle after every step.
//!
//! * `cargo test -p doorsync-integration-tests --test simulation` runs the CI seeds
//!   ([`CI_SEEDS`] of them from seed 1);
//! * `DOORSYNC_SIM_SEEDS=5000 DOORSYNC_SIM_FIRST_SEED=100000` runs as many as asked from where
//!   asked (`just soak 5000`);
//! * `DOORSYNC_SIM_SEED=1234` replays one seed (and prints its journal even when it passes);
//! * `DOORSYNC_SIM_THREADS` sets how many seeds run at once;
//! * `RUST_LOG` (say `doorsync_writer=debug`) prints doorsync's own logs, in real time;
//! * `DOORSYNC_SIM_TRACE=1` prints the journal and every step as the seed runs;
//! * `DOORSYNC_SIM_CHECK_SETTLE=1` looks again 300 ms after every settle and prints what still
//!   moved, to check the settling rules themselves.
//!
//! A failing seed is printed with its journal and the command that replays it.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed step should stop the test loudly")]

use std::time::Instant;

use doorsync_integration_tests::simulation::{self, Hiding, SeedReport};

/// Seeds CI runs on every `cargo test`.
const CI_SEEDS: u64 = 300;
/// Seeds run at once by default: each spends most of its real time waiting (for the runtime's
/// other tasks, the log's thread, a hung request's timeout), so more than there are cores.
const DEFAULT_THREADS: usize = 8;

fn variable(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(value.trim().parse().unwrap_or_else(|_| panic!("{name}={value:?} is not a whole number")))
}

#[test]
fn doorsync_keeps_its_invariants_through_seeded_workloads_and_faults() {
    if std::env::var_os("RUST_LOG").is_some() {
        let filter = tracing_subscriber::EnvFilter::from_default_env();
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
    let (seeds, single): (Vec<u64>, bool) = match variable("DOORSYNC_SIM_SEED") {
        Some(seed) => (vec![seed], true),
        None => {
            let first = variable("DOORSYNC_SIM_FIRST_SEED").unwrap_or(1);
            let count = variable("DOORSYNC_SIM_SEEDS").unwrap_or(CI_SEEDS);
            ((first..first.saturating_add(count)).collect(), false)
        }
    };
    let threads = variable("DOORSYNC_SIM_THREADS").map_or(DEFAULT_THREADS, |threads| threads as usize);
    let started = Instant::now();
    let results = simulation::run_seeds(seeds.clone(), threads);
    let elapsed = started.elapsed();

    let reports: Vec<&SeedReport> = results.iter().filter_map(|result| result.as_ref().ok()).collect();
    let failures: Vec<String> =
        results.iter().filter_map(|result| result.as_ref().err()).map(ToString::to_string).collect();
    let total = |field: fn(&SeedReport) -> u64| reports.iter().map(|report| field(report)).sum::<u64>();
    println!(
        "simulation: {} seeds ({}..={}) on {threads} threads in {:.1} s: {} steps, {} changes, {} disruptions, \
         {} Kisi and {} Nexudus requests, {} log operations, {} steps moved on unsettled; {} failed",
        seeds.len(),
        seeds.first().copied().unwrap_or_default(),
        seeds.last().copied().unwrap_or_default(),
        elapsed.as_secs_f64(),
        total(|report| report.steps),
        total(|report| report.changes as u64),
        total(|report| report.disruptions as u64),
        total(|report| report.kisi_requests),
        total(|report| report.nexudus_requests),
        total(|report| report.log_operations),
        total(|report| report.unsettled_steps),
        failures.len(),
    );
    println!("{}", coverage(&reports));
    println!("{}", operators(&reports));
    if single {
        for report in &reports {
            println!("{report:#?}");
        }
    }
    assert!(failures.is_empty(), "{} of {} seeds failed:\n\n{}", failures.len(), seeds.len(), failures.join("\n\n"));
}

/// What operators did across the seeds: edits of the configuration (each with a restart of
/// doorsync), stops of the engine, records made unreadable and members deleted by mistake.
fn operators(reports: &[&SeedReport]) -> String {
    let seeds = |did: fn(&SeedReport) -> usize| reports.iter().filter(|report| did(report) > 0).count();
    let total = |did: fn(&SeedReport) -> usize| reports.iter().map(|report| did(report)).sum::<usize>();
    let edits = |kind: &str| {
        reports.iter().flat_map(|report| &report.operators.edits).filter(|edit| edit.contains(kind)).count()
    };
    format!(
        "operators: a pass product left unconnected at first in {} seeds; {} edits of the configuration with a \
         restart in {} seeds (relinks {}, maps {}, unmaps {}, booking timing {}, a room's timing {}, pass lag {}, \
         no-access policy {}); engine restarted {} times, crashed {}, stopped as a window ends {}, crashed after a \
         checkpoint {}; {} records made unreadable in {} seeds; {} members deleted by mistake and restored in {} seeds",
        reports.iter().filter(|report| report.operators.unconnected_product).count(),
        total(|report| report.operators.edits.len()),
        seeds(|report| report.operators.edits.len()),
        edits(" relinks "),
        edits(" maps "),
        edits(" unmaps "),
        edits(" booking lead "),
        edits(" gives resource "),
        edits(" pass lag "),
        edits(" no-access policy "),
        total(|report| report.operators.engine_restarts),
        total(|report| report.operators.engine_crashes),
        total(|report| report.operators.stops_at_wake),
        total(|report| report.operators.crashes_after_checkpoint),
        total(|report| report.operators.records_made_unreadable),
        seeds(|report| report.operators.records_made_unreadable),
        total(|report| report.operators.members_deleted),
        seeds(|report| report.operators.members_deleted),
    )
}

/// How many seeds drew each form of what the real APIs leave open, and what came of it.
fn coverage(reports: &[&SeedReport]) -> String {
    let count = |drawn: fn(&SeedReport) -> bool| reports.iter().filter(|report| drawn(report)).count();
    let patch = |form| reports.iter().filter(|report| report.conditions.patch_validity == form).count();
    let unknown = |form| reports.iter().filter(|report| report.conditions.unknown_ids == form).count();
    let longest_gap = reports.iter().map(|report| report.longest_adoption_gap).max().unwrap_or_default();
    format!(
        "draws: Nexudus missing record 500 in {} seeds, 404 in {}; UpdatedOn filters read on the wall clock in {}, \
         as UTC in {}; pages capped below the size asked in {}; Kisi PATCH of a window applied {}, ignored {}, \
         refused {}; unknown ids 403 {}, 404 {}; 429 with Retry-After {}, without {}; a group refused from the start \
         {}, mid-run {}; staff users with members' emails in {} seeds ({} users); built-in integration start in {} \
         seeds ({} adopted assignments, longest gap while narrowing them {} ms, {} seeds ending before any \
         reconciliation finished, leaving {} stale ones); {} dead letters, all expected; the writer found PATCH \
         applied in {} seeds, not applied in {}",
        count(|report| report.conditions.missing_record == doorsync_nexudus_sim::MissingRecord::ServerError),
        count(|report| report.conditions.missing_record == doorsync_nexudus_sim::MissingRecord::NotFound),
        count(|report| report.conditions.updated_on_filter == doorsync_nexudus_sim::UpdatedOnFilter::Local),
        count(|report| report.conditions.updated_on_filter == doorsync_nexudus_sim::UpdatedOnFilter::Utc),
        count(|report| report.conditions.max_page_size.is_some()),
        patch(doorsync_kisi_sim::PatchValidity::Apply),
        patch(doorsync_kisi_sim::PatchValidity::Ignore),
        patch(doorsync_kisi_sim::PatchValidity::Reject),
        unknown(doorsync_kisi_sim::UnknownIds::Forbidden),
        unknown(doorsync_kisi_sim::UnknownIds::NotFound),
        count(|report| report.conditions.retry_after_on_429),
        count(|report| !report.conditions.retry_after_on_429),
        count(|report| matches!(report.conditions.hidden_group, Some((_, Hiding::FromTheStart)))),
        count(|report| matches!(report.conditions.hidden_group, Some((_, Hiding::At(_))))),
        count(|report| report.found_users > 0 && report.conditions.staff_emails),
        reports.iter().filter(|report| report.conditions.staff_emails).map(|report| report.found_users).sum::<usize>(),
        count(|report| report.conditions.integration_start),
        reports.iter().map(|report| report.adopted_assignments).sum::<usize>(),
        longest_gap,
        count(|report| report.adopted_left_unreconciled > 0),
        reports.iter().map(|report| report.adopted_left_unreconciled).sum::<usize>(),
        reports.iter().map(|report| report.dead_letters).sum::<usize>(),
        count(|report| report.patch_applies_validity == Some(true)),
        count(|report| report.patch_applies_validity == Some(false)),
    )
}
