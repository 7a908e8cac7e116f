//! When a partition's shard next needs waking: each member's next evaluation, and the shard's
//! next look for idle members and a due checkpoint (its housekeeping). Pure: the shard reads the
//! time from the clock and its one timer waits for [`Schedule::next_wake`].
//!
//! A member taken off the queue because its instant came keeps that instant as its wake-up
//! until the evaluation it was taken for reports the next one: a checkpoint or a stop in between
//! saves the instant that is due, so a restart evaluates the member at once instead of never.
//!
//! Housekeeping is planned for the instant it can first have work (the checkpoint falls due, or
//! the member idle longest becomes idle), but never sooner than its least interval after the
//! last: on a virtual clock an idle engine then costs no wake-ups, and on a real one a busy
//! engine looks no more often than configured.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use doorsync_proto::{MemberId, Timestamp};

/// How long a member whose actor failed to start waits before it is started again.
const RETRY_START_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub(crate) struct Schedule {
    /// Each member's wake-up, due or not: what a checkpoint saves.
    wake_at: HashMap<MemberId, Timestamp>,
    /// The wake-ups still to come, earliest first.
    queue: BTreeSet<(Timestamp, MemberId)>,
    /// The next housekeeping; none until the partition has caught up.
    housekeeping_at: Option<Timestamp>,
}

/// What housekeeping waits for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HousekeepingDue {
    /// When the last checkpoint was written.
    pub(crate) last_checkpoint: Timestamp,
    pub(crate) checkpoint_every: Duration,
    /// The last activity of the member idle longest, if any member is live.
    pub(crate) least_recently_active: Option<Timestamp>,
    pub(crate) passivate_after: Duration,
    /// The least time between two housekeepings.
    pub(crate) at_least_every: Duration,
}

impl HousekeepingDue {
    /// The first instant after `now` that housekeeping can have work.
    fn next_after(&self, now: Timestamp) -> Timestamp {
        let checkpoint = self.last_checkpoint + self.checkpoint_every;
        let passivation = self.least_recently_active.map(|active| active + self.passivate_after);
        let first_work = passivation.map_or(checkpoint, |passivation| passivation.min(checkpoint));
        first_work.max(now + self.at_least_every)
    }
}

impl Schedule {
    /// Replaces the member's wake-up with `next_change` (none when `None`).
    pub(crate) fn schedule(&mut self, member: MemberId, next_change: Option<Timestamp>) {
        if let Some(previous) = self.wake_at.remove(&member) {
            self.queue.remove(&(previous, member));
        }
        if let Some(at) = next_change {
            self.wake_at.insert(member, at);
            self.queue.insert((at, member));
        }
    }

    /// Wakes a member whose actor failed to start a moment after `now`, to start it again.
    pub(crate) fn retry_start(&mut self, member: MemberId, now: Timestamp) {
        self.schedule(member, Some(now + RETRY_START_AFTER));
    }

    /// Members whose instant has come, taken off the queue; each keeps its wake-up until
    /// [`schedule`](Self::schedule) replaces it.
    pub(crate) fn take_due(&mut self, now: Timestamp) -> Vec<MemberId> {
        let mut due = Vec::new();
        while let Some(&(at, member)) = self.queue.first() {
            if at > now {
                break;
            }
            self.queue.remove(&(at, member));
            due.push(member);
        }
        due
    }

    /// The wake-up a checkpoint saves for the member.
    pub(crate) fn saved(&self, member: MemberId) -> Option<Timestamp> {
        self.wake_at.get(&member).copied()
    }

    /// How many members' wake-ups are still to come.
    pub(crate) fn scheduled(&self) -> usize {
        self.queue.len()
    }

    /// The earliest wake-up still to come, a member's or the housekeeping's: what the timer
    /// waits for.
    pub(crate) fn next_wake(&self) -> Option<Timestamp> {
        let member = self.queue.first().map(|(at, _)| *at);
        match (member, self.housekeeping_at) {
            (Some(member), Some(housekeeping)) => Some(member.min(housekeeping)),
            (member, housekeeping) => member.or(housekeeping),
        }
    }

    /// Plans the next housekeeping after the one done at `now` (or the first, once caught up).
    pub(crate) fn plan_housekeeping(&mut self, now: Timestamp, due: &HousekeepingDue) {
        self.housekeeping_at = Some(due.next_after(now));
    }

    /// A member just became live at `now`: housekeeping looks again when it may be idle.
    pub(crate) fn member_active(&mut self, now: Timestamp, passivate_after: Duration) {
        let idle_at = now + passivate_after;
        if let Some(planned) = &mut self.housekeeping_at {
            *planned = (*planned).min(idle_at);
        }
    }

    /// Whether housekeeping is due at `now`; if so it is taken off the schedule until planned
    /// again.
    pub(crate) fn take_housekeeping(&mut self, now: Timestamp) -> bool {
        let due = self.housekeeping_at.is_some_and(|at| at <= now);
        if due {
            self.housekeeping_at = None;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: i64) -> Timestamp {
        Timestamp::from_unix_millis(millis)
    }

    const ANN: MemberId = MemberId(1);
    const BOB: MemberId = MemberId(2);
    const SECOND: Duration = Duration::from_secs(1);

    fn due(last_checkpoint: i64, least_recently_active: Option<i64>) -> HousekeepingDue {
        HousekeepingDue {
            last_checkpoint: at(last_checkpoint),
            checkpoint_every: SECOND * 60,
            least_recently_active: least_recently_active.map(at),
            passivate_after: SECOND * 600,
            at_least_every: SECOND * 5,
        }
    }

    #[test]
    fn a_member_taken_due_keeps_its_wake_up_for_a_checkpoint_until_its_evaluation_replaces_it() {
        let mut schedule = Schedule::default();
        schedule.schedule(ANN, Some(at(100)));
        schedule.schedule(BOB, Some(at(300)));

        assert_eq!(schedule.take_due(at(150)), vec![ANN]);
        assert_eq!(schedule.saved(ANN), Some(at(100)), "a checkpoint taken before the evaluation replies saves it");
        assert_eq!(schedule.next_wake(), Some(at(300)), "the timer does not fire for it again");
        assert!(schedule.take_due(at(150)).is_empty());

        schedule.schedule(ANN, Some(at(200)));
        assert_eq!(schedule.saved(ANN), Some(at(200)));
        assert_eq!(schedule.take_due(at(250)), vec![ANN]);

        schedule.schedule(ANN, None);
        assert_eq!(schedule.saved(ANN), None, "an evaluation with no next change clears it");
        assert_eq!(schedule.scheduled(), 1);
    }

    #[test]
    fn due_members_come_earliest_first_and_later_ones_wait() {
        let mut schedule = Schedule::default();
        schedule.schedule(BOB, Some(at(20)));
        schedule.schedule(ANN, Some(at(10)));
        schedule.schedule(MemberId(3), Some(at(30)));
        assert_eq!(schedule.take_due(at(20)), vec![ANN, BOB]);
        assert_eq!(schedule.next_wake(), Some(at(30)));
    }

    #[test]
    fn a_member_that_failed_to_start_is_woken_a_second_later() {
        let mut schedule = Schedule::default();
        schedule.retry_start(ANN, at(5_000));
        assert_eq!(schedule.saved(ANN), Some(at(6_000)));
        assert!(schedule.take_due(at(5_999)).is_empty());
        assert_eq!(schedule.take_due(at(6_000)), vec![ANN]);
    }

    #[test]
    fn housekeeping_waits_for_the_checkpoint_or_the_first_idle_member_and_no_less_than_its_interval() {
        let mut schedule = Schedule::default();
        assert_eq!(schedule.next_wake(), None, "none before the partition caught up");
        assert!(!schedule.take_housekeeping(at(i64::MAX)));

        schedule.plan_housekeeping(at(0), &due(0, None));
        assert_eq!(schedule.next_wake(), Some(at(60_000)), "the checkpoint falls due");
        schedule.plan_housekeeping(at(0), &due(0, Some(-590_000)));
        assert_eq!(schedule.next_wake(), Some(at(10_000)), "a member becomes idle first");
        schedule.plan_housekeeping(at(0), &due(-60_000, Some(-600_000)));
        assert_eq!(schedule.next_wake(), Some(at(5_000)), "both are due: no sooner than its interval");

        assert!(!schedule.take_housekeeping(at(4_999)));
        assert!(schedule.take_housekeeping(at(5_000)));
        assert_eq!(schedule.next_wake(), None, "taken until planned again");
        assert!(!schedule.take_housekeeping(at(5_000)));
    }

    #[test]
    fn a_member_becoming_live_brings_housekeeping_forward_to_when_it_may_be_idle() {
        let mut schedule = Schedule::default();
        schedule.member_active(at(0), SECOND * 30);
        assert_eq!(schedule.next_wake(), None, "nothing is planned before the partition caught up");

        schedule.plan_housekeeping(at(0), &due(0, None));
        schedule.member_active(at(10_000), SECOND * 30);
        assert_eq!(schedule.next_wake(), Some(at(40_000)));
        schedule.member_active(at(50_000), SECOND * 30);
        assert_eq!(schedule.next_wake(), Some(at(40_000)), "never put back");

        schedule.schedule(ANN, Some(at(20_000)));
        assert_eq!(schedule.next_wake(), Some(at(20_000)), "a member's wake-up comes first");
    }
}
