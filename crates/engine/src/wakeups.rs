//! When each member of a partition next needs evaluating.
//!
//! A member taken off the queue because its instant came keeps that instant as its wake-up
//! until the evaluation it was taken for reports the next one: a checkpoint or a stop in between
//! saves the instant that is due, so a restart evaluates the member at once instead of never.

use std::collections::{BTreeSet, HashMap};

use doorsync_proto::{MemberId, Timestamp};

#[derive(Debug, Default)]
pub(crate) struct Wakeups {
    /// Each member's wake-up, due or not: what a checkpoint saves.
    wake_at: HashMap<MemberId, Timestamp>,
    /// The wake-ups still to come, earliest first: what the timer waits for.
    queue: BTreeSet<(Timestamp, MemberId)>,
}

impl Wakeups {
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

    /// The earliest wake-up still to come.
    pub(crate) fn earliest(&self) -> Option<Timestamp> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// How many wake-ups are still to come.
    pub(crate) fn scheduled(&self) -> usize {
        self.queue.len()
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

    #[test]
    fn a_member_taken_due_keeps_its_wake_up_for_a_checkpoint_until_its_evaluation_replaces_it() {
        let mut wakeups = Wakeups::default();
        wakeups.schedule(ANN, Some(at(100)));
        wakeups.schedule(BOB, Some(at(300)));

        assert_eq!(wakeups.take_due(at(150)), vec![ANN]);
        assert_eq!(wakeups.saved(ANN), Some(at(100)), "a checkpoint taken before the evaluation replies saves it");
        assert_eq!(wakeups.earliest(), Some(at(300)), "the timer does not fire for it again");
        assert!(wakeups.take_due(at(150)).is_empty());

        wakeups.schedule(ANN, Some(at(200)));
        assert_eq!(wakeups.saved(ANN), Some(at(200)));
        assert_eq!(wakeups.take_due(at(250)), vec![ANN]);

        wakeups.schedule(ANN, None);
        assert_eq!(wakeups.saved(ANN), None, "an evaluation with no next change clears it");
        assert_eq!(wakeups.scheduled(), 1);
    }

    #[test]
    fn due_members_come_earliest_first_and_later_ones_wait() {
        let mut wakeups = Wakeups::default();
        wakeups.schedule(BOB, Some(at(20)));
        wakeups.schedule(ANN, Some(at(10)));
        wakeups.schedule(MemberId(3), Some(at(30)));
        assert_eq!(wakeups.take_due(at(20)), vec![ANN, BOB]);
        assert_eq!(wakeups.earliest(), Some(at(30)));
    }
}
