//! What must hold, checked after every step against what Kisi holds:
//!
//! * nobody can open a group's doors outside their entitlement, beyond [`EDGE_SLACK`] around its
//!   edges or the tolerance after a change in Nexudus that ended it ([`excess_tolerance`], which
//!   is minutes for a change made in calm and counted in polls for one made under faults);
//! * once faults have stopped for [`CALM_DELAY`], nobody entitled to a group lacks it beyond
//!   [`WINDOW_START_GRACE`] after their window starts or [`missing_delay`] after the change in
//!   Nexudus that entitled them;
//! * no user, group or assignment that is not doorsync's changes in any way; a user someone else
//!   made with a member's email (staff, the built-in integration's users) is linked but never
//!   suspended, re-enabled or deleted, and the assignments others made for it stay as they were;
//! * no two Kisi users for one member or with one email, no two assignments for one user and
//!   group;
//! * Nexudus never sees a webhook answered with an error (the simulation's log refuses no
//!   append), so it never disables one;
//! * when doorsync starts on the built-in integration's assignments, a member entitled at the
//!   start keeps access while doorsync narrows them to exact windows ([`adoption_gaps`]);
//!
//! and at the end, after a calm spell, that Kisi holds exactly the one window per member and
//! group doorsync promises, users doorsync made are enabled, suspended or deleted as the policy
//! in force says (under `RemoveMembershipsOnly`, a user suspended under an earlier `Suspend` may
//! stay suspended), adopted assignments nobody is entitled to are gone, and nothing was dead-lettered or
//! parked but what Kisi refused: commands for the group it refuses to the key, and grants an
//! assignment someone else made does not cover.
//!
//! Access is judged by doorsync's assignments (its own and adopted ones) when it is too much,
//! and by every assignment when it is missing. A member holding someone else's assignment in a
//! group is not checked for missing access there, nor for the exact window at the end: doorsync
//! may not change it, and Kisi holds one assignment per user and group. The group Kisi refuses
//! to the key is not checked from the step it is refused in on.
//!
//! Access is checked over the whole stretch of virtual time between two steps, not only at the
//! steps: doorsync acts only at steps (time stands still while it works), so between them Kisi's
//! answer changes only by the validity of what it holds, which is computed exactly.

use std::collections::BTreeMap;

use doorsync_access::NoAccessPolicy;
use doorsync_ingest::WebhookCounts;
use doorsync_kisi_sim::{SimAssignment, SimHandle, SimUser};
use doorsync_proto::{KisiGroupId, KisiUserId, MemberId};

use super::configuration::Timeline;
use super::doorsync::{POLL_EVERY, SWEEP_EVERY, WRITER_BACKOFF_MAX};
use super::intervals::{IntervalSet, Millis, OPEN_END, OPEN_START};
use super::oracle::{Entitlements, Key};
use super::workload::{Propagation, iso};
use super::world::{Site, Unmanaged};

const MINUTE_MS: Millis = 60_000;

fn millis(duration: std::time::Duration) -> Millis {
    Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX)
}

/// Kisi keeps whole seconds, rounding a window's start down and its end up.
pub(crate) const EDGE_SLACK: Millis = 1_000;
/// Kisi is written ahead of each window, except one that takes over from the member's previous
/// window in the same group (Kisi holds one per user and group): that one is written when the
/// previous one ends, and may come one step of the simulation late.
pub(crate) const WINDOW_START_GRACE: Millis = 2 * MINUTE_MS;
/// Under faults a key keeps failing for a while: a few backoffs at their longest, plus a 429's
/// `Retry-After` (at most a minute).
pub(crate) fn retry_slack() -> Millis {
    4 * millis(WRITER_BACKOFF_MAX) + 2 * MINUTE_MS
}

/// A change made while nothing fails reaches Kisi within the step it is made in (time stands
/// still while doorsync works); this leaves room for Nexudus retrying a delivery that failed
/// all the same (after 30 s) and a writer key finishing a backoff from earlier faults.
pub(crate) const CALM_PROPAGATION: Millis = 5 * MINUTE_MS;

/// How long after a change in Nexudus that ends an entitlement Kisi may still let the member in.
/// Made while faults were on (or their aftermath, see [`calm_delay`]): a lost webhook leaves the
/// change to the next poll, and a throttled poll that gives up to the one after; a hard delete
/// whose webhook was lost is found only by the next sweep. Made in calm: at once, except a room's
/// group link, which has no webhook and waits for the next poll. An edit of doorsync's own
/// configuration counts as a change notified at once: the restarted engine evaluates everyone.
pub(crate) fn excess_tolerance(propagation: Propagation, disturbed: bool) -> Millis {
    match (propagation, disturbed) {
        (Propagation::Notified | Propagation::Configured | Propagation::HardDelete, false) => CALM_PROPAGATION,
        (Propagation::Polled, false) => millis(POLL_EVERY) + CALM_PROPAGATION,
        (Propagation::Notified | Propagation::Configured | Propagation::Polled, true) => {
            2 * millis(POLL_EVERY) + retry_slack()
        }
        (Propagation::HardDelete, true) => millis(SWEEP_EVERY) + millis(POLL_EVERY) + retry_slack(),
        // Until the reconciler's first complete pass, which the history is told of; a failed
        // pass waits a whole period, and a restarted writer counts its period afresh.
        (Propagation::Reconciled, _) => Millis::MAX,
    }
}

/// How long after a change in Nexudus that entitles a member Kisi may lack it, once faults are
/// over: as [`excess_tolerance`] in calm (changes made under faults are excused wholesale until
/// [`calm_delay`] after they stop).
pub(crate) fn missing_delay(propagation: Propagation) -> Millis {
    match propagation {
        // What the reconciler finds entitles nobody.
        Propagation::Reconciled => 0,
        propagation => excess_tolerance(propagation, false),
    }
}

/// After faults stop, how long doorsync may take to catch up with what they held up: a change
/// whose webhook was lost waits for a poll (two, if one gave up under throttling), and keys that
/// kept failing wait out their backoff.
pub(crate) fn calm_delay() -> Millis {
    2 * millis(POLL_EVERY) + retry_slack()
}

/// A change in Nexudus that altered a member's entitlement to a group.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Change {
    pub(crate) at: Millis,
    pub(crate) propagation: Propagation,
    /// Made while faults were on, or so soon after that doorsync may still be catching up.
    pub(crate) disturbed: bool,
}

/// The changes in Nexudus that altered each member's entitlement to each group, for the
/// tolerances above.
#[derive(Debug, Default)]
pub(crate) struct ChangeHistory {
    changes: BTreeMap<Key, Vec<Change>>,
    /// When the writer's reconciler first finished a pass with nothing failed.
    reconciled_at: Option<Millis>,
}

impl ChangeHistory {
    pub(crate) fn record(&mut self, key: Key, change: Change) {
        self.changes.entry(key).or_default().push(change);
    }

    pub(crate) fn reconciler_finished(&mut self, at: Millis) {
        self.reconciled_at.get_or_insert(at);
    }

    pub(crate) fn reconciled(&self) -> bool {
        self.reconciled_at.is_some()
    }

    fn windows(&self, key: Key, length: impl Fn(&Change) -> Millis) -> IntervalSet {
        let changes = self.changes.get(&key).map(Vec::as_slice).unwrap_or_default();
        IntervalSet::of(changes.iter().map(|change| {
            let end = change.at.saturating_add(length(change));
            match (change.propagation, self.reconciled_at) {
                (Propagation::Reconciled, Some(reconciled)) => (change.at, end.min(reconciled)),
                _ => (change.at, end),
            }
        }))
    }

    fn last_change(&self, key: Key) -> Option<Change> {
        self.changes.get(&key).and_then(|changes| changes.last().copied())
    }
}

/// What Kisi holds, read once per step.
#[derive(Debug)]
pub(crate) struct KisiView {
    users: Vec<SimUser>,
    assignments: Vec<SimAssignment>,
}

impl KisiView {
    pub(crate) fn read(kisi: &SimHandle) -> Self {
        Self { users: kisi.users(), assignments: kisi.assignments() }
    }

    /// The member's users in Kisi: those with any email the member has had.
    fn users_of(&self, site: &Site, member: MemberId) -> Vec<&SimUser> {
        let Some(known) = site.member(member) else { return Vec::new() };
        self.users.iter().filter(|user| known.emails.contains(&user.email.to_lowercase())).collect()
    }

    /// Whether doorsync made the user or an assignment of it: a user someone else made with a
    /// member's former email is the member's only once doorsync linked it.
    fn linked(&self, site: &Site, user: &SimUser) -> bool {
        user.created_by == Some(site.doorsync_user)
            || self.assignments.iter().any(|held| held.user == user.id && held.created_by == Some(site.doorsync_user))
    }

    /// The member's assignments in the group.
    fn held(&self, site: &Site, key: Key) -> Vec<&SimAssignment> {
        let (member, group) = key;
        let users = self.users_of(site, member);
        self.assignments
            .iter()
            .filter(|held| held.group == group && users.iter().any(|user| user.id == held.user))
            .collect()
    }

    /// Whether the member holds an assignment in the group that someone else made.
    fn holds_others(&self, site: &Site, key: Key) -> bool {
        self.held(site, key).iter().any(|held| !site.is_doorsyncs(held))
    }

    /// When, from `from` on, Kisi lets the member through the group's doors by what it holds now:
    /// by every assignment, or only by doorsync's.
    fn grants(&self, site: &Site, key: Key, from: Millis, whose: Whose) -> IntervalSet {
        let (member, group) = key;
        let mut granted = IntervalSet::default();
        for user in self.users_of(site, member).into_iter().filter(|user| user.access_enabled) {
            let counted = |held: &&SimAssignment| whose == Whose::Anyone || site.is_doorsyncs(held);
            for assignment in
                self.assignments.iter().filter(|held| held.user == user.id && held.group == group).filter(counted)
            {
                let start = assignment.valid_from.map_or(OPEN_START, |at| at.as_unix_millis()).max(from);
                let end = assignment.valid_until.map_or(OPEN_END, |at| at.as_unix_millis());
                granted = granted.union(&IntervalSet::span(start, end));
            }
        }
        granted
    }
}

/// Whose assignments count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whose {
    Doorsyncs,
    Anyone,
}

/// Where the run stands with faults, for the missing-access check.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Weather {
    Faulty,
    /// Calm since this instant.
    CalmSince(Millis),
}

/// Violations of the access invariants over `[from, until)`.
pub(crate) fn access(
    site: &Site,
    kisi: &KisiView,
    entitled: &Entitlements,
    history: &ChangeHistory,
    weather: Weather,
    (from, until): (Millis, Millis),
) -> Vec<String> {
    let stretch = IntervalSet::span(from, until);
    let mut violations = Vec::new();
    for member in &site.members {
        for &group in site.managed_groups.iter().filter(|group| !site.refuses(**group, until)) {
            let key = (member.id, group);
            let entitlement = entitled.of(key);
            let granted = kisi.grants(site, key, from, Whose::Doorsyncs).intersect(&stretch);
            let change_grace = history.windows(key, |change| excess_tolerance(change.propagation, change.disturbed));
            let allowed = entitlement.widened(EDGE_SLACK, EDGE_SLACK).union(&change_grace);
            if let Some(at) = granted.subtract(&allowed).first() {
                violations.push(format!(
                    "{}: member {} can open group {group} but is not entitled to it{}",
                    iso(at),
                    member.id,
                    describe(history.last_change(key), &entitlement)
                ));
            }
            let calm_from = match weather {
                Weather::Faulty => continue,
                Weather::CalmSince(since) => since.saturating_add(calm_delay()),
            };
            if kisi.holds_others(site, key) {
                continue;
            }
            let excused = IntervalSet::span(OPEN_START, calm_from)
                .union(&history.windows(key, |change| missing_delay(change.propagation)))
                .union(&entitlement.beginnings(WINDOW_START_GRACE));
            let granted = kisi.grants(site, key, from, Whose::Anyone).intersect(&stretch);
            let missing = entitlement.intersect(&stretch).subtract(&granted).subtract(&excused);
            if let Some(at) = missing.first() {
                violations.push(format!(
                    "{}: member {} is entitled to group {group} but Kisi does not let them in{}",
                    iso(at),
                    member.id,
                    describe(history.last_change(key), &entitlement)
                ));
            }
        }
    }
    violations
}

fn describe(last_change: Option<Change>, entitlement: &IntervalSet) -> String {
    let windows: Vec<String> =
        entitlement.intervals().iter().map(|(start, end)| format!("[{}, {})", shown(*start), shown(*end))).collect();
    let change = last_change.map_or_else(String::new, |change| {
        let when = if change.disturbed { "under faults" } else { "in calm" };
        format!("; last changed in Nexudus at {} ({:?}, {when})", iso(change.at), change.propagation)
    });
    format!(" (entitled: {}{change})", if windows.is_empty() { "never".to_owned() } else { windows.join(" ") })
}

fn shown(at: Millis) -> String {
    match at {
        OPEN_START => "-inf".to_owned(),
        OPEN_END => "+inf".to_owned(),
        at => iso(at),
    }
}

/// Violations of "what is not doorsync's stays exactly as it was".
pub(crate) fn unmanaged(site: &Site, kisi: &SimHandle, before: &Unmanaged) -> Vec<String> {
    let now = Unmanaged::read(kisi, site);
    let mut violations = Vec::new();
    for user in &before.users {
        match now.users.iter().find(|other| other.id == user.id) {
            None => violations.push(format!("unmanaged Kisi user {} ({}) was deleted", user.id, user.email)),
            Some(other) if other != user => {
                violations.push(format!("unmanaged Kisi user {} was changed: {user:?} became {other:?}", user.id))
            }
            Some(_) => {}
        }
    }
    let users = kisi.users();
    for user in &before.found_users {
        match users.iter().find(|other| other.id == user.id) {
            None => violations.push(format!(
                "Kisi user {} ({}), made by someone else and linked to a member, was deleted",
                user.id, user.email
            )),
            Some(other) if other.access_enabled != user.access_enabled => violations.push(format!(
                "Kisi user {} ({}), made by someone else and linked to a member, had access_enabled {} set to {}",
                user.id, user.email, user.access_enabled, other.access_enabled
            )),
            Some(_) => {}
        }
    }
    for assignment in &before.assignments {
        match now.assignments.iter().find(|other| other.id == assignment.id) {
            None => violations.push(format!("Kisi assignment {} that is not doorsync's was deleted", assignment.id)),
            Some(other) if other != assignment => violations.push(format!(
                "Kisi assignment {} that is not doorsync's was changed: {assignment:?} became {other:?}",
                assignment.id
            )),
            Some(_) => {}
        }
    }
    for assignment in now.assignments.iter().filter(|new| !before.assignments.iter().any(|old| old.id == new.id)) {
        violations
            .push(format!("a Kisi assignment was made for a user or group that is not doorsync's: {assignment:?}"));
    }
    for user in now.users.iter().filter(|new| !before.users.iter().any(|old| old.id == new.id)) {
        violations.push(format!("a Kisi user was made with an email no member has had: {user:?}"));
    }
    violations
}

/// Violations of "one user per member and email, one assignment per user and group".
pub(crate) fn duplicates(site: &Site, kisi: &KisiView) -> Vec<String> {
    let mut violations = Vec::new();
    let mut by_email: BTreeMap<String, Vec<KisiUserId>> = BTreeMap::new();
    for user in &kisi.users {
        by_email.entry(user.email.to_lowercase()).or_default().push(user.id);
    }
    for (email, users) in by_email.iter().filter(|(_, users)| users.len() > 1) {
        violations.push(format!("Kisi has {} users with email {email}: {users:?}", users.len()));
    }
    for member in &site.members {
        let users: Vec<KisiUserId> =
            kisi.users_of(site, member.id).iter().filter(|user| kisi.linked(site, user)).map(|user| user.id).collect();
        if users.len() > 1 {
            violations.push(format!("member {} has {} Kisi users: {users:?}", member.id, users.len()));
        }
    }
    let mut by_pair: BTreeMap<(KisiUserId, KisiGroupId), usize> = BTreeMap::new();
    for assignment in &kisi.assignments {
        *by_pair.entry((assignment.user, assignment.group)).or_default() += 1;
    }
    for ((user, group), count) in by_pair.into_iter().filter(|(_, count)| *count > 1) {
        violations.push(format!("Kisi user {user} has {count} assignments on group {group}"));
    }
    violations
}

/// At the end, after a calm spell: Kisi holds exactly what doorsync promises.
pub(crate) fn end_state(
    site: &Site,
    kisi: &KisiView,
    entitled: &Entitlements,
    found_users: &[SimUser],
    left_to_reconciler: &[Key],
    timeline: &Timeline,
    now: Millis,
) -> Vec<String> {
    let policy = timeline.current().policy.no_access;
    // `RemoveMembershipsOnly` leaves a user as it finds it, so one suspended under an earlier
    // `Suspend` stays suspended.
    let suspended_before = timeline.ever_had(NoAccessPolicy::Suspend);
    let mut violations = Vec::new();
    for member in &site.members {
        let users = kisi.users_of(site, member.id);
        let mut holds_any = false;
        for &group in &site.managed_groups {
            let key = (member.id, group);
            let expected = entitled.of(key).current_or_next(now);
            holds_any |= expected.is_some();
            if site.refuses(group, now) || kisi.holds_others(site, key) || left_to_reconciler.contains(&key) {
                continue;
            }
            let held_window: Vec<(Option<Millis>, Option<Millis>)> = kisi
                .held(site, key)
                .iter()
                .map(|assignment| {
                    (
                        assignment.valid_from.map(|at| at.as_unix_millis()),
                        assignment.valid_until.map(|at| at.as_unix_millis()),
                    )
                })
                .collect();
            let expected_window =
                expected.map(|(start, end)| ((start != OPEN_START).then_some(start), (end != OPEN_END).then_some(end)));
            let matches = match expected_window {
                Some(window) => held_window == [window],
                None => held_window.is_empty(),
            };
            if !matches {
                violations.push(format!(
                    "at the end, member {} on group {group}: Kisi holds {held_window:?}, expected {expected_window:?}",
                    member.id
                ));
            }
        }
        let found = |user: &&&SimUser| found_users.iter().any(|found| found.id == user.id);
        let user = users.iter().find(|user| !found(user));
        // Users someone else made are left as they were (checked step by step).
        if user.is_none() && users.iter().any(|user| found(&user)) {
            continue;
        }
        let state = user.map(|user| user.access_enabled);
        let fine = match (holds_any, policy) {
            (true, _) => state == Some(true),
            (false, NoAccessPolicy::Suspend) => state != Some(true),
            (false, NoAccessPolicy::Delete) => state.is_none(),
            (false, NoAccessPolicy::RemoveMembershipsOnly) => state != Some(false) || suspended_before,
        };
        if !fine {
            violations.push(format!(
                "at the end, member {} (holding {}) under policy {policy:?} has Kisi user {:?}",
                member.id,
                if holds_any { "access" } else { "nothing" },
                user.map(|user| (user.id, user.access_enabled))
            ));
        }
    }
    violations
}

/// Violations of "Nexudus never sees a webhook answered with an error, and never disables one":
/// the receiver's own counts (which restart with the ingestor) and the hooks' state in Nexudus.
pub(crate) fn webhooks(answered: &WebhookCounts, disabled: &[u64]) -> Vec<String> {
    let mut violations = Vec::new();
    if answered.failed + answered.unreadable + answered.refused > 0 {
        violations.push(format!("doorsync answered webhooks with errors: {answered:?}"));
    }
    if !disabled.is_empty() {
        violations.push(format!("Nexudus disabled webhooks {disabled:?} after failed deliveries"));
    }
    violations
}

/// Where a member entitled at the start lacked access, over `[from, until)`, though they held
/// the built-in integration's assignment in that group when doorsync started: the stretches
/// doorsync's narrowing of the adopted assignment left uncovered (beyond [`WINDOW_START_GRACE`]
/// after a window starts, which every member is allowed).
pub(crate) fn adoption_gaps(
    site: &Site,
    kisi: &KisiView,
    entitled: &Entitlements,
    adopted: &[Key],
    (from, until): (Millis, Millis),
) -> Vec<(Key, Millis, Millis)> {
    let stretch = IntervalSet::span(from, until);
    let mut gaps = Vec::new();
    for &key in adopted.iter().filter(|(_, group)| !site.refuses(*group, until)) {
        let entitlement = entitled.of(key);
        let granted = kisi.grants(site, key, from, Whose::Anyone);
        let missing =
            entitlement.intersect(&stretch).subtract(&granted).subtract(&entitlement.beginnings(WINDOW_START_GRACE));
        gaps.extend(missing.intervals().iter().map(|&(start, end)| (key, start, end)));
    }
    gaps
}
