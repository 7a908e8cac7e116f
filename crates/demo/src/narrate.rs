//! Tells what happens, in words: what the Kisi writer reports Kisi now holds (the outcomes in the
//! log), the doors Kisi opens and closes on its own at the bounds doorsync wrote, and the changes
//! the demo makes. The first sync is summed up; after it, every change gets its own line.

use std::collections::{BTreeMap, BTreeSet};

use doorsync_access::{AccessPolicy, Grant, Mapping, Source, Window, desired, entitlements};
use doorsync_engine::EngineHandle;
use doorsync_kisi_sim::SimHandle;
use doorsync_proto::{KisiGroupId, KisiUserId, KisiUserState, MemberId, Outcome, Timestamp};

use super::text::{SECOND_MS, at_location, say, seconds, window};
use super::workload::Change;
use super::world::Directory;

/// How many grants of the first sync are shown one by one, as examples.
const EXAMPLES: usize = 3;
/// The first sync is over once the writer has nothing left to do and no outcome came for this long.
const QUIET_MS: i64 = 1_500;
const PROGRESS_EVERY_MS: i64 = 2 * SECOND_MS;
/// With no outcome at all this long into the first sync, there was nothing to write.
const NOTHING_TO_WRITE_AFTER_MS: i64 = 5 * SECOND_MS;
/// A change that got no answer from Kisi within this long is looked into: maybe Kisi already
/// holds what the member should have.
const ANSWER_WITHIN_MS: i64 = 3 * SECOND_MS;

#[derive(Debug, Default)]
struct Tally {
    users: usize,
    grants: usize,
    revocations: usize,
    suspensions: usize,
    restorations: usize,
    deletions: usize,
    failures: usize,
}

#[derive(Debug)]
enum Phase {
    FirstSync { since: Timestamp, last_outcome: Option<Timestamp>, last_progress: Timestamp },
    Live,
}

/// What the writer is doing, as far as the first sync cares.
#[derive(Debug, Clone, Copy)]
pub(super) struct Progress {
    /// Whether the first read of Nexudus is done.
    pub(super) nexudus_read: bool,
    pub(super) writer_backlog: usize,
    pub(super) engine_caught_up: bool,
}

#[derive(Debug)]
pub(super) struct Narrator {
    started: Timestamp,
    engine: Option<EngineHandle>,
    mapping: Mapping,
    policy: AccessPolicy,
    phase: Phase,
    tally: Tally,
    /// What Kisi holds by the writer's reports: each (member, group) and its window.
    held: BTreeMap<(MemberId, KisiGroupId), (Option<Timestamp>, Option<Timestamp>)>,
    kisi_users: BTreeMap<KisiUserId, MemberId>,
    /// Changes made and not yet seen in Kisi, by member: when they were made.
    pending: BTreeMap<MemberId, Timestamp>,
    /// How long each live change took to show in Kisi.
    latencies: Vec<i64>,
    removed_by_hand: BTreeSet<(MemberId, KisiGroupId)>,
    /// Lines told at the next tick: member, text, and when the outcome came.
    deferred: Vec<(MemberId, String, Timestamp)>,
    doors_checked_at: Timestamp,
    examples_shown: usize,
    changes_made: usize,
    /// Live changes after which Kisi already held what the member should have.
    needless: usize,
}

impl Narrator {
    pub(super) fn new(
        started: Timestamp,
        engine: Option<EngineHandle>,
        mapping: Mapping,
        policy: AccessPolicy,
    ) -> Self {
        Self {
            started,
            engine,
            mapping,
            policy,
            phase: Phase::FirstSync { since: started, last_outcome: None, last_progress: started },
            tally: Tally::default(),
            held: BTreeMap::new(),
            kisi_users: BTreeMap::new(),
            pending: BTreeMap::new(),
            latencies: Vec::new(),
            removed_by_hand: BTreeSet::new(),
            deferred: Vec::new(),
            doors_checked_at: started,
            examples_shown: 0,
            changes_made: 0,
            needless: 0,
        }
    }

    /// Whether Kisi holds `group` for `member`, now or ahead, by the writer's reports.
    pub(super) fn holds(&self, member: MemberId, group: KisiGroupId) -> bool {
        self.held.contains_key(&(member, group))
    }

    pub(super) fn live(&self) -> bool {
        matches!(self.phase, Phase::Live)
    }

    /// One report of the Kisi writer.
    pub(super) async fn outcome(&mut self, directory: &Directory, outcome: Outcome, now: Timestamp) {
        let show = match &mut self.phase {
            Phase::Live => true,
            Phase::FirstSync { last_outcome, last_progress, .. } => {
                if last_outcome.replace(now).is_none() {
                    *last_progress = now;
                }
                matches!(outcome, Outcome::GrantApplied(_)) && self.examples_shown < EXAMPLES
            }
        };
        let text = if show { self.describe(directory, &outcome, now).await } else { None };
        self.record(&outcome);
        let Some(text) = text else { return };
        let member = outcome.member();
        match self.phase {
            // Told after the member's grants and revocations of the same moment, which the writer
            // may report later.
            Phase::Live if matches!(outcome, Outcome::UserAccessChanged(_)) => self.deferred.push((member, text, now)),
            Phase::Live => {
                let after = self.latency_of(member, now);
                say(self.started, now, "kisi", &format!("{text}{after}"));
            }
            Phase::FirstSync { .. } => {
                self.examples_shown += 1;
                say(self.started, now, "kisi", &text);
            }
        }
    }

    /// How long after the demo's change to `member` this is, the first time Kisi shows it.
    fn latency_of(&mut self, member: MemberId, now: Timestamp) -> String {
        match self.pending.remove(&member) {
            Some(made) => {
                let took = now.as_unix_millis() - made.as_unix_millis();
                self.latencies.push(took);
                format!("  [{} after the change]", latency(took))
            }
            None => String::new(),
        }
    }

    /// Prints the lines held back for a moment.
    fn flush(&mut self) {
        for (member, text, came) in std::mem::take(&mut self.deferred) {
            let after = self.latency_of(member, came);
            say(self.started, came, "kisi", &format!("{text}{after}"));
        }
    }

    /// Keeps count, and keeps what Kisi holds by the writer's reports.
    fn record(&mut self, outcome: &Outcome) {
        let member = outcome.member();
        let tally = &mut self.tally;
        match outcome {
            Outcome::UserLinked(linked) => {
                self.kisi_users.insert(linked.kisi_user, member);
                tally.users += 1;
            }
            Outcome::GrantApplied(grant) => {
                self.held.insert((member, grant.group), (grant.valid_from, grant.valid_until));
                tally.grants += 1;
            }
            Outcome::Revoked(revoked) => {
                self.held.remove(&(member, revoked.group));
                tally.revocations += 1;
            }
            Outcome::UserAccessChanged(changed) => match changed.state {
                KisiUserState::Suspended => tally.suspensions += 1,
                KisiUserState::Enabled => tally.restorations += 1,
                KisiUserState::Deleted => tally.deletions += 1,
            },
            Outcome::Failed(_) => tally.failures += 1,
        }
    }

    /// The outcome in words, before it is recorded; `None` for a user found or created, which
    /// is told with its grants.
    async fn describe(&mut self, directory: &Directory, outcome: &Outcome, now: Timestamp) -> Option<String> {
        let member = directory.member(outcome.member());
        let text = match outcome {
            Outcome::UserLinked(_) => return None,
            Outcome::GrantApplied(grant) => {
                let span = window(grant.valid_from, grant.valid_until, directory.group_location(grant.group), now);
                let why = if self.removed_by_hand.remove(&(grant.member, grant.group)) {
                    " — put back by the reconciler after the removal by hand".to_owned()
                } else {
                    let sources =
                        self.sources(directory, grant.member, grant.group, grant.valid_from, grant.valid_until).await;
                    if sources.is_empty() { String::new() } else { format!(" — {}", sources.join(", ")) }
                };
                let group = directory.group(grant.group);
                if self.holds(grant.member, grant.group) {
                    format!("{member} keeps {group}, now {span}{why}")
                } else {
                    format!("{member} gets {group} {span}{why}")
                }
            }
            Outcome::Revoked(revoked) => {
                let group = directory.group(revoked.group);
                let ended = self
                    .held
                    .get(&(revoked.member, revoked.group))
                    .and_then(|(_, until)| *until)
                    .filter(|until| until.as_unix_millis() <= now.as_unix_millis() + SECOND_MS);
                match ended {
                    Some(until) => format!(
                        "{member} loses {group}: its window ended at {}",
                        at_location(until, directory.group_location(revoked.group), now)
                    ),
                    None => format!("{member} loses {group}: nothing covers it any more"),
                }
            }
            Outcome::UserAccessChanged(changed) => match changed.state {
                KisiUserState::Suspended => format!("{member} holds nothing any more: Kisi user suspended"),
                KisiUserState::Enabled => format!("{member}: Kisi user restored"),
                KisiUserState::Deleted => format!("{member}: Kisi user deleted"),
            },
            Outcome::Failed(failed) => {
                let next = if failed.permanent { "dead-lettered" } else { "retrying" };
                format!("writing to Kisi for {member} failed ({next}): {}", failed.reason)
            }
        };
        Some(text)
    }

    /// The bookings, passes and contract spaces of the member that give this window of the group,
    /// as doorsync's engine holds them.
    async fn sources(
        &self,
        directory: &Directory,
        member: MemberId,
        group: KisiGroupId,
        from: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Vec<String> {
        let Some(engine) = &self.engine else { return Vec::new() };
        let Ok(Some(state)) = engine.member(member).await else { return Vec::new() };
        let overlaps = |start: Option<Timestamp>, end: Option<Timestamp>| {
            let starts_before_end = match (start, until) {
                (Some(start), Some(until)) => start < until,
                _ => true,
            };
            let ends_after_start = match (end, from) {
                (Some(end), Some(from)) => end > from,
                _ => true,
            };
            starts_before_end && ends_after_start
        };
        entitlements(&state, &self.mapping, &self.policy)
            .into_iter()
            .filter(|entitlement| {
                matches!(entitlement.grant, Grant::Group { group: given, window }
                    if given == group && overlaps(window.from, window.until))
            })
            .map(|entitlement| describe_source(directory, entitlement.source))
            .collect()
    }

    /// A change the demo made.
    pub(super) fn announce(&mut self, change: &Change, now: Timestamp) {
        self.changes_made += 1;
        match change.removed_by_hand {
            Some(group) => {
                self.removed_by_hand.insert((change.member, group));
                self.held.remove(&(change.member, group));
            }
            None => {
                self.pending.insert(change.member, now);
            }
        }
        say(self.started, now, change.place, &change.text);
    }

    /// Once a second: the lines held back, the changes that needed no write, then the doors Kisi
    /// opened or closed by itself since the last look, at the bounds of the memberships doorsync
    /// wrote ahead.
    pub(super) async fn tick(&mut self, directory: &Directory, kisi: &SimHandle, now: Timestamp) {
        self.flush();
        self.unanswered(directory, now).await;
        let since = self.doors_checked_at;
        self.doors_checked_at = now;
        let crossed = |bound: Timestamp| since < bound && bound <= now;
        for assignment in kisi.assignments() {
            let Some(&member) = self.kisi_users.get(&assignment.user) else { continue };
            let location = directory.group_location(assignment.group);
            let edges = [
                (
                    assignment.valid_from,
                    "can open",
                    " from now: Kisi opens it by itself at the valid_from doorsync wrote ahead",
                ),
                (
                    assignment.valid_until,
                    "can no longer open",
                    ": Kisi closes it by itself at the valid_until doorsync wrote",
                ),
            ];
            for (bound, can, how) in edges {
                if let Some(at) = bound.filter(|at| crossed(*at)) {
                    let (member, group) = (directory.member(member), directory.group(assignment.group));
                    let text = format!("{member} {can} {group}{how} ({})", at_location(at, location, now));
                    say(self.started, now, "door", &text);
                }
            }
        }
    }

    /// Changes Kisi showed nothing of for a while: says so where doorsync wants nothing else of
    /// Kisi (other bookings, passes or contracts still give the member the same access); the
    /// others are still on their way.
    async fn unanswered(&mut self, directory: &Directory, now: Timestamp) {
        let overdue: Vec<MemberId> = self
            .pending
            .iter()
            .filter(|(_, made)| now.as_unix_millis() - made.as_unix_millis() >= ANSWER_WITHIN_MS)
            .map(|(member, _)| *member)
            .collect();
        for member in overdue {
            let Some(engine) = &self.engine else { continue };
            let Ok(Some(state)) = engine.member(member).await else { continue };
            let wanted = desired(&state, &self.mapping, &self.policy, now).grants;
            let held: BTreeMap<KisiGroupId, Window> = self
                .held
                .range((member, KisiGroupId(0))..=(member, KisiGroupId(u64::MAX)))
                .map(|(&(_, group), &(from, until))| (group, Window { from, until }))
                .collect();
            let same = wanted.len() == held.len()
                && wanted.iter().zip(&held).all(|((group, want), (had, has))| group == had && alike(*want, *has));
            if same {
                self.pending.remove(&member);
                self.needless += 1;
                let text = format!(
                    "nothing to write for {}: Kisi already holds what their bookings, passes and contracts give",
                    directory.member(member)
                );
                say(self.started, now, "kisi", &text);
            }
        }
    }

    /// During the first sync, once a second: prints progress, and says whether the sync is over.
    pub(super) fn first_sync(&mut self, progress: Progress, now: Timestamp) -> bool {
        let Phase::FirstSync { since, last_outcome, last_progress } = &mut self.phase else { return false };
        let quiet = last_outcome.is_none_or(|last| now.as_unix_millis() - last.as_unix_millis() >= QUIET_MS);
        let started_writing =
            last_outcome.is_some() || now.as_unix_millis() - since.as_unix_millis() >= NOTHING_TO_WRITE_AFTER_MS;
        let idle = progress.nexudus_read && progress.writer_backlog == 0 && progress.engine_caught_up;
        if idle && quiet && started_writing {
            let took = now.as_unix_millis() - since.as_unix_millis();
            let members: BTreeSet<MemberId> = self.held.keys().map(|(member, _)| *member).collect();
            let ahead = self.held.values().filter(|(from, _)| from.is_some_and(|from| from > now)).count();
            println!(
                "  first sync done in {}: Kisi holds {} group memberships for {} members ({ahead} written ahead \
                 with a valid_from, so Kisi opens those doors on time by itself); {} Kisi users created, {} failures",
                seconds(took),
                self.held.len(),
                members.len(),
                self.tally.users,
                self.tally.failures
            );
            self.phase = Phase::Live;
            return true;
        }
        if now.as_unix_millis() - last_progress.as_unix_millis() >= PROGRESS_EVERY_MS && last_outcome.is_some() {
            *last_progress = now;
            let text = format!(
                "… {} Kisi users and {} grants written so far ({} waiting in the writer's backlog)",
                self.tally.users, self.tally.grants, progress.writer_backlog
            );
            say(self.started, now, "kisi", &text);
        }
        false
    }

    /// A line of the story from elsewhere.
    pub(super) fn say(&self, now: Timestamp, tag: &str, text: &str) {
        say(self.started, now, tag, text);
    }

    /// The closing summary under `heading`, with what the Kisi simulator itself holds.
    pub(super) fn finish(&mut self, kisi: &SimHandle, heading: &str) {
        self.flush();
        println!();
        println!("{heading}");
        let tally = &self.tally;
        println!(
            "  doorsync wrote {} grants, {} revocations, {} suspensions, {} restorations, {} deletions; {} failures",
            tally.grants, tally.revocations, tally.suspensions, tally.restorations, tally.deletions, tally.failures
        );
        if self.changes_made > 0 {
            let mut latencies = self.latencies.clone();
            latencies.sort_unstable();
            let seen = match (latencies.first(), latencies.get(latencies.len() / 2), latencies.last()) {
                (Some(low), Some(median), Some(high)) => format!(
                    "; {} of them showed in Kisi after {} (median; from {} to {})",
                    latencies.len(),
                    latency(*median),
                    latency(*low),
                    latency(*high)
                ),
                _ => String::new(),
            };
            let needless = match self.needless {
                0 => String::new(),
                needless => format!("; {needless} needed no write"),
            };
            println!("  {} live changes made{seen}{needless}", self.changes_made);
        }
        let users = kisi.users();
        let members: Vec<_> = users.iter().filter(|user| self.kisi_users.contains_key(&user.id)).collect();
        let suspended = members.iter().filter(|user| !user.access_enabled).count();
        println!(
            "  Kisi (simulated) holds {} group memberships for {} users, {suspended} of them suspended",
            kisi.assignments().len(),
            members.len()
        );
    }
}

/// The same window as Kisi keeps it, in whole seconds.
fn alike(wanted: Window, held: Window) -> bool {
    let close = |a: Option<Timestamp>, b: Option<Timestamp>| match (a, b) {
        (Some(a), Some(b)) => (a.as_unix_millis() - b.as_unix_millis()).abs() < SECOND_MS,
        (a, b) => a == b,
    };
    close(wanted.from, held.from) && close(wanted.until, held.until)
}

/// `38 ms`, or `1.2 s` from a second on.
fn latency(millis: i64) -> String {
    if millis < SECOND_MS { format!("{millis} ms") } else { seconds(millis) }
}

fn describe_source(directory: &Directory, source: Source) -> String {
    match source {
        Source::Booking { booking, .. } => format!("booking {booking}"),
        Source::Pass { pass, product } => match directory.products.get(&product.0) {
            Some(name) => format!("{name} {pass}"),
            None => format!("pass {pass}"),
        },
        Source::ContractSpace { contract, space } => match directory.space(space.0) {
            Some(known) => format!("contract {contract} ({})", known.name),
            None => format!("contract {contract}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use doorsync_proto::GrantApplied;

    use super::*;

    #[test]
    fn latencies_below_a_second_are_told_in_milliseconds() {
        assert_eq!(latency(38), "38 ms");
        assert_eq!(latency(1_250), "1.2 s");
    }

    #[tokio::test]
    async fn the_first_sync_ends_once_nexudus_is_read_the_writer_is_idle_and_kisi_quiet() {
        let start = 1_751_356_800_000;
        let at = |millis: i64| Timestamp::from_unix_millis(start + millis);
        let mut narrator = Narrator::new(at(0), None, Mapping::default(), AccessPolicy::default());
        let (member, group) = (MemberId(7), KisiGroupId(3));
        let grant = GrantApplied {
            member,
            group,
            assignment: doorsync_proto::KisiAssignmentId(9),
            valid_from: None,
            valid_until: Some(at(3_600_000)),
        };
        narrator.outcome(&Directory::default(), Outcome::GrantApplied(grant), at(1_000)).await;
        assert!(narrator.holds(member, group));

        let idle = Progress { nexudus_read: true, writer_backlog: 0, engine_caught_up: true };
        assert!(!narrator.first_sync(idle, at(1_500)), "an outcome came just now");
        assert!(!narrator.first_sync(Progress { writer_backlog: 2, ..idle }, at(5_000)), "the writer is busy");
        assert!(!narrator.first_sync(Progress { engine_caught_up: false, ..idle }, at(5_000)));
        assert!(!narrator.first_sync(Progress { nexudus_read: false, ..idle }, at(5_000)));
        assert!(!narrator.live());
        assert!(narrator.first_sync(idle, at(5_000)));
        assert!(narrator.live());
    }
}
