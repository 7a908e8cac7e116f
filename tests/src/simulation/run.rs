//! One seed, from an empty world to the checks at the end.

use std::time::{Duration, Instant};

use doorsync_clock::Clock;
use doorsync_kisi_sim::{Fault, FaultRule};
use doorsync_nexudus_sim::WebhookFaults;
use doorsync_proto::Timestamp;
use jiff::tz::TimeZone;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::SimFailure;
use super::clock::SimClock;
use super::conditions::{Conditions, Hiding};
use super::configuration::{Configuration, Timeline};
use super::doorsync::{Doorsync, POLICIES};
use super::faults::{Disruption, FaultPlan, Phase};
use super::intervals::Millis;
use super::invariants::{self, Change, ChangeHistory, KisiView, Weather, calm_delay};
use super::oracle::{self, Entitlements, Key};
use super::settle::Settler;
use super::workload::{ClockChangeDay, Propagation, Workload, iso};
use super::world::{LOCATIONS, World};

const MINUTE_MS: Millis = 60_000;
const HOUR_MS: Millis = 60 * MINUTE_MS;
/// Virtual time simulated per seed, crossing a change of the clocks: ten hours by default (a
/// faulty phase, the calm after it, and enough changes before, during and after), as many as
/// `DOORSYNC_SIM_HOURS` says (a soak can afford longer seeds).
const DEFAULT_SIMULATED_HOURS: i64 = 10;
/// The shortest step: what comes due within it (a limiter slot, a backoff) is served together.
const MIN_STEP: Millis = 1_000;
/// The longest step, when nobody waits for anything sooner: it bounds how far time can run
/// ahead of work that settling mistook for done.
const MAX_STEP: Millis = 60 * MINUTE_MS;
/// After the end, how long the simulation goes on while something is due: the last instant may
/// be a window's edge, which takes doorsync a few spaced-out Kisi calls.
const FINISHING: Millis = 5 * MINUTE_MS;
/// Journal lines shown with a failure.
const JOURNAL_TAIL: usize = 60;
/// How long a member entitled at the start may lack access while doorsync narrows the built-in
/// integration's window-less assignment (a delete and a create when Kisi ignores or refuses the
/// PATCH): the requests between the two are spaced out on the virtual clock.
/// The simulation's shortest step is the window-edge tolerance, so a gap of one request (a
/// fraction of a second in Kisi) shows as one step here.
const ADOPTION_GAP_TOLERANCE: Millis = invariants::EDGE_SLACK;
/// What operators do starts after this long: doorsync has read Nexudus and written Kisi once.
const FIRST_SYNC: Millis = 30 * MINUTE_MS;

/// How a seed went.
#[derive(Debug, Clone)]
pub struct SeedReport {
    pub seed: u64,
    pub steps: u64,
    pub changes: usize,
    pub disruptions: usize,
    pub members: usize,
    /// Where and when the clocks change during the run.
    pub clock_change: String,
    /// Steps after which the simulation moved on without the system having settled.
    pub unsettled_steps: u64,
    pub kisi_requests: u64,
    pub nexudus_requests: u64,
    /// Operations made on the log (appends, reads, key-value reads and writes, settlements).
    pub log_operations: u64,
    pub real_time: Duration,
    /// How the real APIs behaved and what Kisi held before doorsync, as drawn.
    pub conditions: Conditions,
    /// The group Kisi refused to doorsync's key, if any.
    pub refused_group: Option<u64>,
    /// Users someone else made that members' emails matched.
    pub found_users: usize,
    /// Assignments the built-in integration left, which doorsync adopted.
    pub adopted_assignments: usize,
    /// The longest stretch a member entitled at the start lacked access while doorsync narrowed
    /// the built-in integration's assignment.
    pub longest_adoption_gap: Millis,
    /// Commands dead-lettered as expected (Kisi refused the group, or someone else's assignment
    /// stood in the way).
    pub dead_letters: usize,
    /// Adopted assignments nobody is entitled to that were left because no reconciliation
    /// finished during the run.
    pub adopted_left_unreconciled: usize,
    /// Whether the writer found that Kisi applies a PATCH of a window.
    pub patch_applies_validity: Option<bool>,
    /// What operators did, as drawn and as it came about.
    pub operators: Operators,
}

/// What the seed's operators did: edits of the configuration (each followed by a restart of
/// doorsync), stops of the engine, records made unreadable and members deleted by mistake.
#[derive(Debug, Clone, Default)]
pub struct Operators {
    /// A pass product the first configuration leaves unconnected.
    pub unconnected_product: bool,
    /// Edits of the configuration, each followed by a restart, in words.
    pub edits: Vec<String>,
    pub engine_restarts: usize,
    pub engine_crashes: usize,
    /// Stops right as a window ends, before the engine settled.
    pub stops_at_wake: usize,
    /// Crashes after a forced checkpoint and a change of the workload.
    pub crashes_after_checkpoint: usize,
    pub records_made_unreadable: usize,
    pub members_deleted: usize,
}

/// A stop of the engine waiting for the clock to reach the end of a window.
#[derive(Debug, Clone, Copy)]
struct StopAtWake {
    at: Millis,
    crash: bool,
    yields: u32,
}

/// A seed that broke an invariant (or could not be simulated), with its story.
#[derive(Debug, Clone)]
pub struct SeedFailure {
    pub seed: u64,
    pub reason: String,
    /// The last changes, faults and findings before the failure, oldest first.
    pub journal: Vec<String>,
}

impl std::fmt::Display for SeedFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {} failed: {}", self.seed, self.reason)?;
        writeln!(f, "  what happened last (virtual time):")?;
        for line in &self.journal {
            writeln!(f, "    {line}")?;
        }
        write!(
            f,
            "  replay with: DOORSYNC_SIM_SEED={} cargo test -p doorsync-integration-tests --test simulation -- --nocapture",
            self.seed
        )
    }
}

#[derive(Debug, Default)]
struct Journal {
    lines: Vec<String>,
    /// Also print each line as it is written (`DOORSYNC_SIM_TRACE=1`), to watch a seed live.
    live: bool,
}

impl Journal {
    fn note(&mut self, at: Millis, text: impl std::fmt::Display) {
        let line = format!("{} {text}", iso(at));
        if self.live {
            eprintln!("{line}");
        }
        self.lines.push(line);
    }

    fn tail(self) -> Vec<String> {
        let skip = self.lines.len().saturating_sub(JOURNAL_TAIL);
        self.lines.into_iter().skip(skip).collect()
    }
}

/// Runs one seed. Everything the seed decides (the world, the workload, the faults and when
/// they come) follows from it; see the module documentation for what does not.
pub async fn run_seed(seed: u64) -> Result<SeedReport, SeedFailure> {
    let started = Instant::now();
    let mut journal = Journal { lines: Vec::new(), live: std::env::var_os("DOORSYNC_SIM_TRACE").is_some() };
    match simulate(seed, &mut journal).await {
        Ok(mut report) => {
            report.real_time = started.elapsed();
            Ok(report)
        }
        Err(failure) => Err(SeedFailure { seed, reason: failure.to_string(), journal: journal.tail() }),
    }
}

async fn simulate(seed: u64, journal: &mut Journal) -> Result<SeedReport, SimFailure> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (change_location, change_at) = clock_change(&mut rng)?;
    let start = change_at - rng.random_range(2 * 60..=5 * 60) * MINUTE_MS;
    let end = start + simulated_hours() * HOUR_MS;
    // The workload stops early enough for its last change to reach Kisi by the end even if it
    // waits for a poll (a room's group link has no webhook), so that the end state is exact.
    let changes_end = end - invariants::missing_delay(Propagation::Polled);
    let clock = SimClock::new(Timestamp::from_unix_millis(start));
    let members = rng.random_range(3..=5);
    let conditions = Conditions::draw(&mut rng, start, changes_end);
    let mut world = World::build(&clock, members, &conditions, &mut rng).await?;
    let policy = POLICIES[rng.random_range(0..POLICIES.len())];
    let unconnected_product = rng.random_bool(0.25).then(|| rng.random_range(0..usize::MAX));
    let mut timeline = Timeline::new(Configuration::initial(&world.site, policy, unconnected_product));
    let mut operators = Operators { unconnected_product: unconnected_product.is_some(), ..Operators::default() };
    let clock_change =
        format!("{} at {} ({})", LOCATIONS[change_location].0, iso(change_at), LOCATIONS[change_location].2);
    journal.note(start, format!("{members} members, no-access policy {policy:?}, clocks change in {clock_change}"));
    if unconnected_product.is_some() {
        journal.note(start, format!("the configuration connects {:?}", timeline.current().mapping));
    }
    journal.note(
        start,
        format!(
            "{conditions:?}; Kisi refuses {:?} to doorsync's key; users someone else made with members' emails: {:?}",
            world.site.refused_group,
            world.unmanaged.found_users.iter().map(|user| (user.id, &user.email)).collect::<Vec<_>>()
        ),
    );
    let mut group_to_hide = match conditions.hidden_group {
        Some((_, Hiding::At(_))) => world.site.refused_group,
        _ => None,
    };
    let mut doorsync = Doorsync::start(&world, &clock, timeline.current(), rng.random()).await?;
    let mut plan = FaultPlan::draw(&mut rng, start, end, calm_delay() + 90 * MINUTE_MS, members);
    let by_operators = plan.add_operators(&mut rng, start + FIRST_SYNC, changes_end);
    let by_operators: Vec<String> =
        by_operators.iter().map(|(at, disruption)| format!("{} {disruption:?}", iso(*at))).collect();
    journal.note(start, format!("operators will: {by_operators:?}"));
    let first_faults = plan.phases.iter().find(|phase| phase.faults.is_some()).map_or(end, |phase| phase.start);
    let day =
        ClockChangeDay { location: change_location, pass_used_at: change_at + rng.random_range(0..=180) * MINUTE_MS };
    let mut workload =
        Workload::new(StdRng::seed_from_u64(rng.random()), Timestamp::from_unix_millis(start), changes_end, day);

    // The first read of Nexudus, as `doorsync run` is asked for at start.
    let first_read = doorsync.ingest.clone();
    tokio::spawn(async move { first_read.poll_now().await });

    let mut settler = Settler::default();
    let mut history = ChangeHistory::default();
    let mut entitled = Entitlements::default();
    let mut disruptions = plan.disruptions.iter().copied().peekable();
    let mut current_phase: Option<Phase> = None;
    let (mut steps, mut changes, mut disrupted) = (0_u64, 0_usize, 0_usize);
    let mut now = start;
    let mut first = true;
    let mut adopted_at_start: Vec<Key> = Vec::new();
    let mut longest_adoption_gap: Millis = 0;
    let mut stop_at_wake: Option<StopAtWake> = None;
    // Set: the workload's next change comes between a checkpoint and a crash (after the
    // runtime turns this many times, or once settled).
    let mut crash_after_checkpoint: Option<Option<u32>> = None;
    loop {
        // First of all, before anything settles: the clock has just reached the edge, and the
        // engine's wake-ups are due or on their way.
        if let Some(stop) = stop_at_wake.take_if(|stop| stop.at <= now) {
            for _ in 0..stop.yields {
                tokio::task::yield_now().await;
            }
            let how = if stop.crash { "crashes" } else { "stops gracefully" };
            journal.note(now, format!("as a window ends, the engine {how} after {} turns of the runtime", stop.yields));
            if stop.crash {
                doorsync.crash_engine().await?
            } else {
                doorsync.restart_engine().await?
            }
            operators.stops_at_wake += 1;
        }
        // The last phase, calm, lasts while the run finishes past its end.
        let phase = plan.phase_at(now.min(end - 1)).copied();
        if phase != current_phase {
            if let Some(phase) = phase {
                enter(&phase, &world, journal, now);
            }
            current_phase = phase;
        }
        let disturbed = match current_phase {
            Some(Phase { faults: None, start: calm_since, .. }) => {
                calm_since != start && now < calm_since + calm_delay()
            }
            _ => true,
        };
        while let Some((_, disruption)) = disruptions.next_if(|(at, _)| *at <= now) {
            disrupted += 1;
            match disruption {
                Disruption::ConfigurationEdited(edit) => {
                    let Some((configuration, text)) = edit.apply(&world.site, timeline.current()) else { continue };
                    journal.note(now, &text);
                    doorsync.reconfigure(&world, &configuration).await?;
                    let ledger = &workload.ledger;
                    let before = oracle::entitlements(&world.nexudus, &world.site, ledger, &timeline.latest())?;
                    timeline.edit(now, configuration);
                    let after = oracle::entitlements(&world.nexudus, &world.site, ledger, &timeline.latest())?;
                    let fresh = oracle::entitlements(&world.nexudus, &world.site, ledger, &timeline)?;
                    // A window the edit changes only before now (a booking under way given
                    // another lead) is rewritten all the same, which may open a gap as short as
                    // one of the rewrites after other changes.
                    for key in fresh.changed_keys(&entitled).into_iter().chain(after.changed_keys(&before)) {
                        history.record(key, Change { at: now, propagation: Propagation::Configured, disturbed });
                    }
                    entitled = fresh;
                    operators.edits.push(text);
                }
                Disruption::EngineStoppedAtWake { crash, yields } => {
                    journal.note(now, format!("{disruption:?}"));
                    let at = entitled.next_window_end(now).filter(|edge| *edge < end).unwrap_or_else(|| {
                        journal.note(now, "no window ends before the end of the run: the engine stops now");
                        now
                    });
                    stop_at_wake = Some(StopAtWake { at, crash, yields });
                }
                Disruption::EngineCrashedAfterCheckpoint { yields } => {
                    journal.note(now, format!("{disruption:?}: at the workload's next change"));
                    crash_after_checkpoint = Some(yields);
                }
                _ => disrupt(disruption, &world, &mut doorsync, &conditions, journal, now).await?,
            }
            match disruption {
                Disruption::EngineRestarted => operators.engine_restarts += 1,
                Disruption::EngineCrashed => operators.engine_crashes += 1,
                _ => {}
            }
        }
        if let Some(refused) = group_to_hide.filter(|refused| refused.from <= now) {
            world.kisi.handle().hide_group(refused.group);
            journal.note(now, format!("an administrator takes group {} away from doorsync's key", refused.group));
            group_to_hide = None;
        }
        let made = if first {
            first = false;
            // Settled first: the members and the rooms' links are read before anyone holds anything.
            settle(&mut settler, &clock, &world, &doorsync, journal, now).await;
            let furnished = workload.furnish(&mut world, now)?;
            if conditions.integration_start {
                let at_start = oracle::entitlements(&world.nexudus, &world.site, &workload.ledger, &timeline)?;
                adopted_at_start = world.seed_integration_start(&at_start, now, &mut rng)?;
                for &key in &world.stale_adopted {
                    history.record(key, Change { at: now, propagation: Propagation::Reconciled, disturbed: false });
                }
                journal.note(
                    now,
                    format!(
                        "the built-in integration left window-less assignments for {adopted_at_start:?}, and for \
                         {:?} entitled to nothing there",
                        world.stale_adopted
                    ),
                );
            }
            furnished
        } else if workload.next_at() <= now && now < changes_end {
            let crash_after = crash_after_checkpoint.take();
            if crash_after.is_some() {
                doorsync
                    .engine
                    .checkpoint()
                    .await
                    .map_err(|error| SimFailure::Invariant(format!("the engine could not checkpoint: {error}")))?;
            }
            let made = workload.act(&mut world, now)?;
            if let Some(yields) = crash_after {
                let after = match yields {
                    Some(yields) => {
                        for _ in 0..yields {
                            tokio::task::yield_now().await;
                        }
                        format!("{yields} turns of the runtime")
                    }
                    None => {
                        settle(&mut settler, &clock, &world, &doorsync, journal, now).await;
                        "everything settled".to_owned()
                    }
                };
                journal
                    .note(now, format!("the engine checkpointed, the workload changed, and {after} later it crashes"));
                doorsync.crash_engine().await?;
                operators.crashes_after_checkpoint += 1;
            }
            made
        } else {
            Vec::new()
        };
        if !made.is_empty() {
            let fresh = oracle::entitlements(&world.nexudus, &world.site, &workload.ledger, &timeline)?;
            let propagation = made.iter().map(|change| change.propagation).max();
            if let Some(propagation) = propagation {
                for key in fresh.changed_keys(&entitled) {
                    history.record(key, Change { at: now, propagation, disturbed });
                }
            }
            for group in made.iter().filter_map(|change| change.unlinked) {
                for member in &world.site.members {
                    history.record((member.id, group), Change { at: now, propagation: Propagation::Polled, disturbed });
                }
            }
            entitled = fresh;
            for change in &made {
                journal.note(now, &change.text);
            }
            changes += made.len();
        }
        let settling = Instant::now();
        settle(&mut settler, &clock, &world, &doorsync, journal, now).await;
        steps += 1;
        if journal.live {
            let writer = doorsync.writer.status();
            eprintln!(
                "{} step {steps} settled in {:?}: writer backlog {} keys, {} calls; next sleeper {:?}",
                iso(now),
                settling.elapsed(),
                writer.backlog_keys,
                writer.calls.total(),
                clock.next_deadline().map(|at| iso(at.as_unix_millis()))
            );
        }

        let kisi = world.kisi.handle();
        let view = KisiView::read(&kisi);
        if doorsync.writer.status().last_reconcile.is_some_and(|report| report.failed == 0 && report.held.is_none()) {
            history.reconciler_finished(now);
        }
        let mut violations = invariants::unmanaged(&world.site, &kisi, &world.unmanaged);
        violations.extend(invariants::duplicates(&world.site, &view));
        violations
            .extend(invariants::webhooks(&doorsync.ingest.status().webhooks, &doorsync.disabled_webhooks(&world)));
        // The end comes once nothing is due soon: a window edge may fall on the last instant,
        // and the writer must be let finish the calls it is spacing out.
        let due_soon = clock.next_deadline().is_some_and(|deadline| deadline.as_unix_millis() <= now + FINISHING)
            || doorsync.writer.status().backlog_keys > 0;
        if now >= end + FINISHING || (now >= end && !due_soon) {
            fail_on(violations, &world, &doorsync, journal, now).await?;
            break;
        }
        let horizon = if now >= end { end + FINISHING } else { end };
        let planned = [
            (now < changes_end).then(|| workload.next_at()),
            plan.next_boundary(now),
            disruptions.peek().map(|(at, _)| *at),
            group_to_hide.map(|refused| refused.from),
            stop_at_wake.map(|stop| stop.at),
        ];
        let next = next_step(now, horizon, &clock, planned);
        let weather = match current_phase {
            Some(Phase { faults: None, start, .. }) => Weather::CalmSince(start),
            _ => Weather::Faulty,
        };
        violations.extend(invariants::access(&world.site, &view, &entitled, &history, weather, (now, next)));
        if now < first_faults {
            let stretch = (now, next.min(first_faults));
            for (key, gap_start, gap_end) in
                invariants::adoption_gaps(&world.site, &view, &entitled, &adopted_at_start, stretch)
            {
                longest_adoption_gap = longest_adoption_gap.max(gap_end - gap_start);
                if gap_end - gap_start > ADOPTION_GAP_TOLERANCE {
                    violations.push(format!(
                        "{}: member {} held the built-in integration's assignment on group {} and is entitled, \
                         but lacks access for {} ms while doorsync narrows it",
                        iso(gap_start),
                        key.0,
                        key.1,
                        gap_end - gap_start
                    ));
                }
            }
        }
        fail_on(violations, &world, &doorsync, journal, now).await?;
        clock.advance_to(Timestamp::from_unix_millis(next));
        now = next;
    }

    // The writer counts its reconciliation period afresh at every start and waits a whole one
    // after a failed pass, so a writer restarted often enough never reconciles: what only the
    // reconciler removes is then left, and counted rather than failed (see the module docs).
    let left_to_reconciler = if history.reconciled() { Vec::new() } else { world.stale_adopted.clone() };
    if !left_to_reconciler.is_empty() {
        journal.note(now, format!("no reconciliation finished: adopted assignments {left_to_reconciler:?} are left"));
    }
    // Kisi holds one window per member and group, as the configuration in force draws it: a
    // window that began before the last edit begins where its record says, not at the edit.
    let promised = oracle::entitlements(&world.nexudus, &world.site, &workload.ledger, &timeline.latest())?;
    let mut violations = invariants::end_state(
        &world.site,
        &KisiView::read(&world.kisi.handle()),
        &promised,
        &world.unmanaged.found_users,
        &left_to_reconciler,
        &timeline,
        clock.now().as_unix_millis(),
    );
    let dead_letters = doorsync.dead_letter_reasons().await?;
    let unexpected: Vec<&String> = dead_letters.iter().filter(|reason| !expected_dead_letter(&world, reason)).collect();
    if !unexpected.is_empty() {
        violations.push(format!("{} commands were dead-lettered: {unexpected:#?}", unexpected.len()));
    }
    let writer = doorsync.writer.status();
    let refused_by_mistake: Vec<_> = writer
        .refused_groups
        .iter()
        .filter(|refused| world.site.refused_group.is_none_or(|hidden| hidden.group != refused.group))
        .collect();
    if !refused_by_mistake.is_empty() {
        violations
            .push(format!("the writer reports groups as refused that Kisi does not refuse: {refused_by_mistake:?}"));
    }
    let ingest = doorsync.ingest.status();
    if !ingest.parked.is_empty() {
        violations.push(format!("the ingestor parked records it should have read: {:?}", ingest.parked));
    }
    if !ingest.retrying.is_empty() {
        violations.push(format!("the ingestor still retries records after a calm spell: {:?}", ingest.retrying));
    }
    let backlog = doorsync.writer.status().backlog_keys;
    if backlog > 0 {
        violations.push(format!("the writer still has {backlog} keys to work on after a calm spell"));
    }
    fail_on(violations, &world, &doorsync, journal, end).await?;

    let report = SeedReport {
        seed,
        steps,
        changes,
        disruptions: disrupted,
        members,
        clock_change,
        unsettled_steps: settler.gave_up,
        kisi_requests: world.kisi.handle().calls().total(),
        nexudus_requests: world.nexudus.stats().requests,
        log_operations: doorsync.log_gauge.finished(),
        real_time: Duration::ZERO,
        conditions,
        refused_group: world.site.refused_group.map(|refused| refused.group.0),
        found_users: world.unmanaged.found_users.len(),
        adopted_assignments: adopted_at_start.len() + world.stale_adopted.len(),
        longest_adoption_gap,
        dead_letters: dead_letters.len(),
        adopted_left_unreconciled: left_to_reconciler.len(),
        patch_applies_validity: writer.patch_applies_validity,
        operators: Operators {
            records_made_unreadable: workload.records_made_unreadable,
            members_deleted: workload.members_deleted,
            ..operators
        },
    };
    doorsync.shutdown().await;
    world.shutdown().await;
    Ok(report)
}

/// Hours of virtual time per seed.
fn simulated_hours() -> i64 {
    std::env::var("DOORSYNC_SIM_HOURS")
        .ok()
        .and_then(|hours| hours.trim().parse::<i64>().ok())
        .filter(|hours| *hours >= 8)
        .unwrap_or(DEFAULT_SIMULATED_HOURS)
}

/// Fails with the violations, if any, after writing what doorsync and Kisi hold in the journal.
async fn fail_on(
    violations: Vec<String>,
    world: &World,
    doorsync: &Doorsync,
    journal: &mut Journal,
    now: Millis,
) -> Result<(), SimFailure> {
    if violations.is_empty() {
        return Ok(());
    }
    diagnose(world, doorsync, journal, now).await;
    Err(SimFailure::Invariant(violations.join("\n  ")))
}

/// What each part holds, for the story of a failure.
async fn diagnose(world: &World, doorsync: &Doorsync, journal: &mut Journal, now: Millis) {
    let ingest = doorsync.ingest.status();
    journal.note(
        now,
        format!(
            "ingest: appended {:?}, parked {:?}, webhooks {:?}, last poll {:?} ({:?}), last sweep {:?} ({:?})",
            ingest.appended,
            ingest.parked,
            ingest.webhooks,
            ingest.last_poll,
            ingest.last_poll_error,
            ingest.last_sweep,
            ingest.last_sweep_error
        ),
    );
    let writer = doorsync.writer.status();
    journal.note(
        now,
        format!(
            "writer: {:?}, backlog {} keys / {} commands, applied {}, dead letters {}, calls {:?}",
            writer.role,
            writer.backlog_keys,
            writer.backlog_commands,
            writer.commands_applied,
            writer.dead_letters,
            writer.calls
        ),
    );
    journal.note(now, format!("nexudus: {:?}", world.nexudus.stats()));
    let kisi = world.kisi.handle();
    let (users, assignments) = (kisi.users(), kisi.assignments());
    for member in &world.site.members {
        let state = doorsync.engine.member(member.id).await;
        let engine = match state {
            Ok(Some(state)) => format!(
                "status {:?}, bookings {:?}, passes {:?}, contracts {:?}, emitted {:?}, kisi {:?}",
                state.status(),
                state.bookings().keys().collect::<Vec<_>>(),
                state.passes(),
                state.contracts().keys().collect::<Vec<_>>(),
                state.emitted(),
                state.kisi()
            ),
            Ok(None) => "unknown to the engine".to_owned(),
            Err(error) => format!("engine: {error}"),
        };
        journal.note(now, format!("member {} in the engine: {engine}", member.id));
        for user in users.iter().filter(|user| member.emails.contains(&user.email.to_lowercase())) {
            let held: Vec<String> = assignments
                .iter()
                .filter(|assignment| assignment.user == user.id)
                .map(|assignment| {
                    format!("group {} {:?}..{:?}", assignment.group, assignment.valid_from, assignment.valid_until)
                })
                .collect();
            journal.note(
                now,
                format!(
                    "member {} in Kisi: user {} enabled {} holding {held:?}",
                    member.id, user.id, user.access_enabled
                ),
            );
        }
    }
}

async fn settle(
    settler: &mut Settler,
    clock: &SimClock,
    world: &World,
    doorsync: &Doorsync,
    journal: &mut Journal,
    now: Millis,
) {
    if !settler.settle(clock, world, doorsync).await {
        let reason = settler.last_reason.clone().unwrap_or_default();
        journal.note(now, format!("moving on without having settled: {reason}"));
    }
}

/// Where the clocks change: a location and the instant, somewhere in 2025 or 2026.
fn clock_change(rng: &mut StdRng) -> Result<(usize, Millis), SimFailure> {
    let location = rng.random_range(0..LOCATIONS.len());
    let (_, _, iana) = LOCATIONS[location];
    let zone = TimeZone::get(iana).map_err(|error| SimFailure::harness("load a time zone", error.to_string()))?;
    let from = jiff::Timestamp::from_millisecond(1_735_689_600_000 + rng.random_range(0..730) * 24 * HOUR_MS)
        .map_err(|error| SimFailure::harness("pick a date", error.to_string()))?;
    let transition = zone
        .following(from)
        .next()
        .ok_or_else(|| SimFailure::harness("find a change of the clocks", format!("none in {iana} after {from}")))?;
    Ok((location, transition.timestamp().as_millisecond()))
}

/// The next instant anything happens: someone's deadline on the clock (served together with
/// whatever else is due within [`MIN_STEP`]), a planned change or fault, or `horizon`.
fn next_step(now: Millis, horizon: Millis, clock: &SimClock, planned: [Option<Millis>; 5]) -> Millis {
    let mut next = horizon.min(now + MAX_STEP);
    if let Some(deadline) = clock.next_deadline() {
        next = next.min(deadline.as_unix_millis().max(now + MIN_STEP));
    }
    for planned in planned.into_iter().flatten() {
        next = next.min(planned.max(now + 1));
    }
    next
}

/// Switches the faults of a phase on, or all of them off.
fn enter(phase: &Phase, world: &World, journal: &mut Journal, now: Millis) {
    let kisi = world.kisi.handle();
    match phase.faults {
        Some(faults) => {
            kisi.set_random_faults(Some(faults.kisi));
            world.nexudus.set_faults(faults.webhooks);
            journal.note(
                now,
                format!("faults on until {}: Kisi {:?}, webhooks {:?}", iso(phase.end), faults.kisi, faults.webhooks),
            );
        }
        None => {
            kisi.set_random_faults(None);
            world.nexudus.set_faults(WebhookFaults::default());
            journal.note(now, format!("calm until {}", iso(phase.end)));
        }
    }
}

async fn disrupt(
    disruption: Disruption,
    world: &World,
    doorsync: &mut Doorsync,
    conditions: &Conditions,
    journal: &mut Journal,
    now: Millis,
) -> Result<(), SimFailure> {
    journal.note(now, format!("{disruption:?}"));
    match disruption {
        Disruption::KisiRateLimited { requests, retry_after_seconds } => {
            let retry_after = conditions.retry_after_on_429.then(|| retry_after_seconds.to_string());
            let fault = Fault::Status { status: 429, retry_after };
            world.kisi.handle().inject(FaultRule::new(fault).times(requests));
        }
        Disruption::NexudusThrottled { requests } => world.nexudus.throttle_next(requests),
        Disruption::MemberActorKilled { member } => {
            if let Some(member) = world.site.members.get(member) {
                doorsync
                    .engine
                    .kill_member_actor(member.id)
                    .await
                    .map_err(SimFailure::setup("killing a member actor"))?;
            }
        }
        Disruption::EngineRestarted => doorsync.restart_engine().await?,
        Disruption::EngineCrashed => doorsync.crash_engine().await?,
        Disruption::WriterRestarted => doorsync.restart_writer(world).await?,
        Disruption::IngestRestarted => doorsync.restart_ingest(world).await?,
        // These wait for an instant the run loop picks (a window's end, the workload's next
        // change) or change what the oracle reads, so the loop carries them out.
        Disruption::EngineStoppedAtWake { .. }
        | Disruption::EngineCrashedAfterCheckpoint { .. }
        | Disruption::ConfigurationEdited(_) => {}
    }
    Ok(())
}

/// Whether Kisi's own refusals explain a dead letter: the group it refuses to the key, or an
/// assignment someone else made that does not cover the window doorsync was to grant.
fn expected_dead_letter(world: &World, reason: &str) -> bool {
    let refused_group = world
        .site
        .refused_group
        .is_some_and(|refused| reason.starts_with(&format!("Kisi refused group {} ", refused.group)));
    let others_assignment = world.unmanaged.assignments.iter().any(|assignment| {
        reason.starts_with(&format!(
            "role assignment {} on group {} was created by someone else",
            assignment.id, assignment.group
        ))
    });
    refused_group || others_assignment
}
