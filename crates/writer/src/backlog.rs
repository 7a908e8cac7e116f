//! Commands received and not yet settled, collapsed per key.
//!
//! A key is a member's user or a member's membership of one group. Every unsettled delivery of a
//! key is kept, but only the newest command (by stream sequence) decides what the key should be;
//! when it is carried out, all of them are acknowledged together.
//!
//! Live keys go first: a key is live while any command it holds came from a live change (a
//! webhook, a window edge) rather than bulk work (a sweep, a first sync, a mapping's
//! re-evaluation), which the engine marks with `doorsync_layout::BULK_HEADER`. A key that takes
//! access away goes first too, whatever marked it: a door left open behind a first sync is a door
//! open to someone who should not pass.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use doorsync_log::{Delivery, Sequence};
use doorsync_proto::{Command, KisiGroupId, KisiUserState, MemberId, MessageId, Outcome, Timestamp};
use doorsync_telemetry::TraceParent;

use crate::knowledge::{GroupDesire, MemberRecord, UserDesire};

/// What one command is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Key {
    User(MemberId),
    Group(MemberId, KisiGroupId),
}

impl Key {
    pub(crate) fn of(command: &Command) -> Self {
        match command {
            Command::GrantGroup(grant) => Self::Group(grant.member, grant.group),
            Command::RevokeGroup(revoke) => Self::Group(revoke.member, revoke.group),
            other => Self::User(other.member()),
        }
    }

    pub(crate) fn member(self) -> MemberId {
        match self {
            Self::User(member) | Self::Group(member, _) => member,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Desire {
    User(UserDesire),
    Group(KisiGroupId, GroupDesire),
}

impl Desire {
    /// Whether carrying it out closes doors: no group membership, or a user without access.
    fn withdraws_access(&self) -> bool {
        match self {
            Self::User(desire) => desire.access != KisiUserState::Enabled,
            Self::Group(_, desire) => *desire == GroupDesire::NotMember,
        }
    }
}

/// The newest command of a key, kept whole for a dead letter.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) id: MessageId,
    pub(crate) sequence: Sequence,
    /// The window edge the command is due to, if one made it necessary.
    pub(crate) window_edge: Option<Timestamp>,
    pub(crate) command: Command,
    pub(crate) payload: Bytes,
    /// The trace the command was appended in: the calls that carry it out join it.
    pub(crate) trace: Option<TraceParent>,
    /// Whether the command is bulk work rather than a live change.
    pub(crate) bulk: bool,
}

#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) desire: Desire,
    pub(crate) latest: Received,
    /// Every unsettled delivery of the key, by stream sequence.
    pub(crate) deliveries: BTreeMap<Sequence, Delivery>,
    /// Keys are worked on in the order their oldest command arrived, live keys first.
    pub(crate) first_sequence: Sequence,
    /// Any of the key's commands is a live change.
    pub(crate) live: bool,
    /// When this writer first received a command for the key: how long it has waited for a
    /// command it needs that has not come (see `worker::Active::await_command`).
    pub(crate) received_at: Timestamp,
    /// Transient failures in a row.
    pub(crate) attempts: u32,
    pub(crate) not_before: Timestamp,
    pub(crate) transient_reported: bool,
    /// Times Kisi disagreed with what was known (a create refused as a duplicate, a user gone).
    pub(crate) conflicts: u32,
    /// Outcomes of the calls made so far, published when the key is settled.
    pub(crate) outcomes: Vec<Outcome>,
}

impl Pending {
    /// Whether the key goes before bulk work: it holds a live change, or its desire takes access
    /// away (out of a group, a user suspended or deleted).
    pub(crate) fn goes_first(&self) -> bool {
        self.live || self.desire.withdraws_access()
    }

    /// Records in the member's record that the key's commands are settled, and that what they
    /// ask for is the key's desire from now on, for the reconciler and for folding the next
    /// command. Carried out or dead-lettered alike: a desire left at an older command would have
    /// the reconciler defend what the engine took back (a revoke Kisi refused left "granted").
    pub(crate) fn record_settled(&self, record: &mut MemberRecord) {
        match &self.desire {
            Desire::User(desire) => {
                record.user.desired = Some(desire.clone());
                record.user.settled_sequence = self.latest.sequence;
            }
            Desire::Group(group, desire) => {
                let group_record = record.group_mut(*group);
                group_record.desired = Some(*desire);
                group_record.settled_sequence = self.latest.sequence;
            }
        }
    }
}

/// What became of a delivery handed to [`Backlog::add`].
#[derive(Debug)]
pub(crate) enum Added {
    /// Now held with its key.
    Held,
    /// Older than what the key already holds: settled as superseded by the caller.
    Stale(Delivery),
}

#[derive(Debug, Default)]
pub(crate) struct Backlog {
    pending: HashMap<Key, Pending>,
}

impl Backlog {
    /// Adds a delivery of `received` for `key`. `settled_sequence` is the key's last settled
    /// command; `desire` computes the key's new desire from its previous one (the pending one, or
    /// `None` to start from the last one carried out).
    pub(crate) fn add(
        &mut self,
        key: Key,
        received: Received,
        delivery: Delivery,
        settled_sequence: Sequence,
        desire: impl FnOnce(Option<&Desire>) -> Option<Desire>,
        now: Timestamp,
    ) -> Added {
        let sequence = received.sequence;
        let live = !received.bulk;
        match self.pending.get_mut(&key) {
            Some(pending) => {
                // A redelivery replaces the copy held (whose settlement is then void).
                pending.deliveries.insert(sequence, delivery);
                pending.live |= live;
                if sequence > pending.latest.sequence
                    && let Some(desire) = desire(Some(&pending.desire))
                {
                    pending.desire = desire;
                    pending.latest = received;
                    pending.attempts = 0;
                    pending.conflicts = 0;
                    pending.not_before = now;
                }
                Added::Held
            }
            None if sequence <= settled_sequence => Added::Stale(delivery),
            None => match desire(None) {
                Some(desire) => {
                    let deliveries = BTreeMap::from([(sequence, delivery)]);
                    self.pending.insert(
                        key,
                        Pending {
                            desire,
                            latest: received,
                            deliveries,
                            first_sequence: sequence,
                            live,
                            received_at: now,
                            attempts: 0,
                            not_before: now,
                            transient_reported: false,
                            conflicts: 0,
                            outcomes: Vec::new(),
                        },
                    );
                    Added::Held
                }
                None => Added::Stale(delivery),
            },
        }
    }

    /// Takes the email and name of a member's `EnsureUser` that came after newer commands for the
    /// user (a writer that died holding it gave it back late) into a pending desire that has
    /// none, as folding the commands in order would have; the key, which was waiting for them,
    /// is tried again at once. A desire that has them came from a newer `EnsureUser`, which wins.
    pub(crate) fn learn_identity(&mut self, key: Key, email: &str, name: &str, now: Timestamp) {
        if let Some(pending) = self.pending.get_mut(&key)
            && let Desire::User(desire) = &mut pending.desire
            && desire.email.is_none()
        {
            desire.email = Some(email.to_owned());
            desire.name = Some(name.to_owned());
            pending.attempts = 0;
            pending.not_before = now;
        }
    }

    /// The key to work on next among those not waiting out a backoff: the live key whose oldest
    /// command came first, or if none is ready, the bulk key whose oldest command came first. A
    /// member's groups wait for the member's user, which they need.
    pub(crate) fn next_ready(&self, now: Timestamp) -> Option<Key> {
        self.next_live(now).or_else(|| self.oldest_ready(now, |_, _| true))
    }

    /// The live key to work on next, if one is ready. A member's user that live groups wait for
    /// is live too: they cannot go before it.
    pub(crate) fn next_live(&self, now: Timestamp) -> Option<Key> {
        let awaited_by_live_groups: HashSet<MemberId> = self
            .pending
            .iter()
            .filter(|(key, pending)| pending.goes_first() && matches!(key, Key::Group(..)))
            .map(|(key, _)| key.member())
            .collect();
        self.oldest_ready(now, |key, pending| {
            pending.goes_first() || (matches!(key, Key::User(_)) && awaited_by_live_groups.contains(&key.member()))
        })
    }

    /// Among the ready keys that `wanted` picks, the one whose oldest command came first.
    fn oldest_ready(&self, now: Timestamp, wanted: impl Fn(&Key, &Pending) -> bool) -> Option<Key> {
        self.pending
            .iter()
            .filter(|(key, pending)| pending.not_before <= now && !self.waits_for_its_user(key) && wanted(key, pending))
            .min_by_key(|(key, pending)| (pending.first_sequence, **key))
            .map(|(key, _)| *key)
    }

    /// When the earliest key waiting out a backoff may be tried. A group waiting for its
    /// member's user is due when the user is: counting its own `not_before`, already past,
    /// would wake the writer at once, again and again, until the user's backoff ended.
    pub(crate) fn next_wakeup(&self) -> Option<Timestamp> {
        self.pending
            .iter()
            .filter(|(key, _)| !self.waits_for_its_user(key))
            .map(|(_, pending)| pending.not_before)
            .min()
    }

    fn waits_for_its_user(&self, key: &Key) -> bool {
        match key {
            Key::Group(member, _) => self.pending.contains_key(&Key::User(*member)),
            Key::User(_) => false,
        }
    }

    pub(crate) fn get_mut(&mut self, key: &Key) -> Option<&mut Pending> {
        self.pending.get_mut(key)
    }

    pub(crate) fn get(&self, key: &Key) -> Option<&Pending> {
        self.pending.get(key)
    }

    pub(crate) fn contains(&self, key: &Key) -> bool {
        self.pending.contains_key(key)
    }

    pub(crate) fn take(&mut self, key: &Key) -> Option<Pending> {
        self.pending.remove(key)
    }

    /// Puts back a key taken to be settled, when settling failed.
    pub(crate) fn restore(&mut self, key: Key, pending: Pending) {
        self.pending.insert(key, pending);
    }

    pub(crate) fn keys(&self) -> usize {
        self.pending.len()
    }

    /// Keys holding a live change.
    pub(crate) fn live_keys(&self) -> usize {
        self.pending.values().filter(|pending| pending.live).count()
    }

    pub(crate) fn deliveries(&self) -> usize {
        self.pending.values().map(|pending| pending.deliveries.len()).sum()
    }

    /// Everything held, for giving back on shutdown.
    pub(crate) fn drain(&mut self) -> Vec<Delivery> {
        self.pending.drain().flat_map(|(_, pending)| pending.deliveries.into_values()).collect()
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use doorsync_log::{LogError, Settle, Settlement, StoredMessage};
    use doorsync_proto::{EnsureUser, GrantGroup, KisiGroupId, KisiUserState, RevokeGroup, SuspendUser};

    use super::*;
    use crate::plan;

    struct Ignore;

    #[async_trait]
    impl Settle for Ignore {
        async fn settle(&self, _: Settlement) -> Result<(), LogError> {
            Ok(())
        }
    }

    const MEMBER: MemberId = MemberId(3);
    const GROUP: KisiGroupId = KisiGroupId(9);

    fn delivery(sequence: u64) -> Delivery {
        let message = StoredMessage {
            stream: "CMD".into(),
            sequence: Sequence(sequence),
            subject: "cmd.0.3".into(),
            id: None,
            payload: Bytes::new(),
            headers: Vec::new(),
        };
        Delivery::new(message, 1, Box::new(Ignore))
    }

    fn received(sequence: u64, command: Command) -> Received {
        Received {
            id: format!("{sequence:032x}").parse().unwrap(),
            sequence: Sequence(sequence),
            window_edge: None,
            command,
            payload: Bytes::new(),
            trace: None,
            bulk: false,
        }
    }

    fn grant(until: i64) -> Command {
        Command::GrantGroup(GrantGroup {
            member: MEMBER,
            group: GROUP,
            valid_from: None,
            valid_until: Some(Timestamp::from_unix_millis(until)),
            basis: 1,
        })
    }

    fn revoke() -> Command {
        Command::RevokeGroup(RevokeGroup { member: MEMBER, group: GROUP, basis: 1 })
    }

    fn add(backlog: &mut Backlog, sequence: u64, command: Command, settled: u64) -> Added {
        let key = Key::of(&command);
        let desire = |_: Option<&Desire>| plan::group_desire(&command).map(|desire| Desire::Group(GROUP, desire));
        let received = received(sequence, command.clone());
        backlog.add(key, received, delivery(sequence), Sequence(settled), desire, Timestamp::from_unix_millis(0))
    }

    #[test]
    fn grant_revoke_grant_collapses_into_the_last_grant_with_every_delivery_held() {
        let mut backlog = Backlog::default();
        for (sequence, command) in [(4, grant(10_000)), (5, revoke()), (6, grant(20_000))] {
            assert!(matches!(add(&mut backlog, sequence, command, 0), Added::Held));
        }
        assert_eq!(backlog.keys(), 1);
        assert_eq!(backlog.deliveries(), 3);
        let pending = backlog.get(&Key::Group(MEMBER, GROUP)).unwrap();
        assert_eq!(pending.latest.sequence, Sequence(6));
        assert_eq!(pending.first_sequence, Sequence(4));
        let Desire::Group(_, desire) = pending.desire else { panic!("a group desire") };
        assert_eq!(desire.validity().unwrap().until, Some(Timestamp::from_unix_millis(20_000)));
    }

    #[test]
    fn redeliveries_replace_their_copy_and_an_older_command_never_wins() {
        let mut backlog = Backlog::default();
        add(&mut backlog, 6, grant(20_000), 0);
        add(&mut backlog, 5, revoke(), 0);
        add(&mut backlog, 6, grant(20_000), 0);
        assert_eq!(backlog.deliveries(), 2);
        let pending = backlog.get(&Key::Group(MEMBER, GROUP)).unwrap();
        assert!(matches!(pending.desire, Desire::Group(_, desire) if desire.validity().is_some()));
    }

    #[test]
    fn an_ensure_user_that_comes_late_gives_a_pending_desire_the_identity_it_lacked() {
        let mut backlog = Backlog::default();
        let (early, late) = (Timestamp::from_unix_millis(0), Timestamp::from_unix_millis(70));
        let suspend = Command::SuspendUser(SuspendUser { member: MEMBER, basis: 2 });
        let desire = |_: Option<&Desire>| plan::fold_user_desire(None, &suspend).map(Desire::User);
        backlog.add(Key::User(MEMBER), received(5, suspend.clone()), delivery(5), Sequence(0), desire, early);
        backlog.get_mut(&Key::User(MEMBER)).unwrap().not_before = Timestamp::from_unix_millis(500);
        backlog.learn_identity(Key::User(MEMBER), "a@x", "Ann", late);
        let pending = backlog.get(&Key::User(MEMBER)).unwrap();
        let Desire::User(desire) = &pending.desire else { panic!("a user desire") };
        assert_eq!((desire.email.as_deref(), desire.name.as_deref()), (Some("a@x"), Some("Ann")));
        assert_eq!(desire.access, KisiUserState::Suspended, "the newer command still decides the access");
        assert_eq!(pending.not_before, late, "tried again at once");
        backlog.learn_identity(Key::User(MEMBER), "b@x", "Bo", late);
        let Desire::User(desire) = &backlog.get(&Key::User(MEMBER)).unwrap().desire else { panic!("a user desire") };
        assert_eq!(desire.email.as_deref(), Some("a@x"), "an identity once known is kept");
    }

    #[test]
    fn commands_already_settled_are_stale() {
        let mut backlog = Backlog::default();
        assert!(matches!(add(&mut backlog, 5, grant(1_000), 7), Added::Stale(_)));
        assert_eq!(backlog.keys(), 0);
    }

    /// A member's grant, then a suspension of their user, both ready at `now`.
    fn a_group_and_its_user(now: Timestamp) -> Backlog {
        let mut backlog = Backlog::default();
        add(&mut backlog, 2, grant(1_000), 0);
        let suspend = Command::SuspendUser(SuspendUser { member: MEMBER, basis: 1 });
        let desire = |_: Option<&Desire>| plan::fold_user_desire(None, &suspend).map(Desire::User);
        backlog.add(Key::User(MEMBER), received(3, suspend.clone()), delivery(3), Sequence(0), desire, now);
        backlog
    }

    #[test]
    fn a_member_s_groups_wait_for_its_user_and_keys_go_in_arrival_order() {
        let now = Timestamp::from_unix_millis(0);
        let mut backlog = a_group_and_its_user(now);
        assert_eq!(backlog.next_ready(now), Some(Key::User(MEMBER)));
        let user = backlog.take(&Key::User(MEMBER)).unwrap();
        assert!(matches!(user.desire, Desire::User(ref desire) if desire.access == KisiUserState::Suspended));
        assert_eq!(backlog.next_ready(now), Some(Key::Group(MEMBER, GROUP)));
        backlog.get_mut(&Key::Group(MEMBER, GROUP)).unwrap().not_before = Timestamp::from_unix_millis(50);
        assert_eq!(backlog.next_ready(now), None);
        assert_eq!(backlog.next_wakeup(), Some(Timestamp::from_unix_millis(50)));
    }

    /// The simulation found the writer spinning: a group ready since long ago but waiting for
    /// its user, whose call had met a 429, made `next_wakeup` an instant already past.
    #[test]
    fn a_group_waiting_for_its_user_wakes_the_writer_when_the_user_is_due() {
        let now = Timestamp::from_unix_millis(0);
        let mut backlog = a_group_and_its_user(now);
        let user_due = Timestamp::from_unix_millis(58_000);
        backlog.get_mut(&Key::User(MEMBER)).unwrap().not_before = user_due;
        assert_eq!(backlog.next_ready(now), None);
        assert_eq!(backlog.next_wakeup(), Some(user_due));
    }

    fn ensure(member: u64) -> Command {
        Command::EnsureUser(EnsureUser {
            member: MemberId(member),
            email: format!("m{member}@x"),
            name: format!("Member {member}"),
            basis: 1,
        })
    }

    fn grant_to(member: u64) -> Command {
        Command::GrantGroup(GrantGroup {
            member: MemberId(member),
            group: GROUP,
            valid_from: None,
            valid_until: None,
            basis: 1,
        })
    }

    /// Adds `command` as the `sequence`th of the stream, bulk work or a live change.
    fn add_marked(backlog: &mut Backlog, sequence: u64, command: Command, bulk: bool) {
        let key = Key::of(&command);
        let desire = |_: Option<&Desire>| match key {
            Key::User(_) => plan::fold_user_desire(None, &command).map(Desire::User),
            Key::Group(_, group) => plan::group_desire(&command).map(|desire| Desire::Group(group, desire)),
        };
        let received = Received { bulk, ..received(sequence, command.clone()) };
        let now = Timestamp::from_unix_millis(0);
        assert!(matches!(backlog.add(key, received, delivery(sequence), Sequence(0), desire, now), Added::Held));
    }

    /// Takes keys in the order the writer works on them, each as soon as it is ready.
    fn work_order(backlog: &mut Backlog) -> Vec<Key> {
        let now = Timestamp::from_unix_millis(0);
        std::iter::from_fn(|| {
            let key = backlog.next_ready(now)?;
            backlog.take(&key);
            Some(key)
        })
        .collect()
    }

    #[test]
    fn live_keys_go_before_bulk_keys_each_oldest_first() {
        let mut backlog = Backlog::default();
        add_marked(&mut backlog, 1, grant_to(1), true);
        add_marked(&mut backlog, 2, grant_to(2), false);
        add_marked(&mut backlog, 3, grant_to(3), true);
        add_marked(&mut backlog, 4, grant_to(4), false);
        assert_eq!(backlog.live_keys(), 2);
        let now = Timestamp::from_unix_millis(0);
        assert_eq!(backlog.next_live(now), Some(Key::Group(MemberId(2), GROUP)));
        let order = work_order(&mut backlog);
        let members: Vec<u64> = order.iter().map(|key| key.member().0).collect();
        assert_eq!(members, [2, 4, 1, 3]);
        assert_eq!(backlog.next_live(now), None);
    }

    #[test]
    fn a_key_is_live_once_any_of_its_commands_is_and_a_bulk_key_has_no_live_key_to_give() {
        let mut backlog = Backlog::default();
        add_marked(&mut backlog, 1, grant_to(1), true);
        add_marked(&mut backlog, 2, grant_to(2), true);
        let now = Timestamp::from_unix_millis(0);
        assert_eq!(backlog.next_live(now), None, "only bulk work");
        assert_eq!(backlog.next_ready(now), Some(Key::Group(MemberId(1), GROUP)));
        add_marked(&mut backlog, 3, grant_to(2), false);
        add_marked(&mut backlog, 4, grant_to(2), true);
        assert_eq!(
            backlog.next_live(now),
            Some(Key::Group(MemberId(2), GROUP)),
            "a later bulk command does not undo it"
        );
        assert_eq!(backlog.next_ready(now), Some(Key::Group(MemberId(2), GROUP)));
    }

    #[test]
    fn a_user_that_live_groups_wait_for_is_live_and_a_backoff_still_holds_a_live_key() {
        let mut backlog = Backlog::default();
        add_marked(&mut backlog, 1, grant_to(1), true);
        add_marked(&mut backlog, 2, ensure(5), true);
        add_marked(&mut backlog, 3, grant_to(5), false);
        let now = Timestamp::from_unix_millis(0);
        assert_eq!(backlog.next_live(now), Some(Key::User(MemberId(5))), "its live group needs it first");
        backlog.get_mut(&Key::User(MemberId(5))).unwrap().not_before = Timestamp::from_unix_millis(50);
        assert_eq!(backlog.next_live(now), None, "the user waits out its backoff, and its group waits for it");
        assert_eq!(backlog.next_ready(now), Some(Key::Group(MemberId(1), GROUP)), "bulk work meanwhile");
    }

    #[test]
    fn bulk_work_that_takes_access_away_goes_with_the_live_keys() {
        let mut backlog = Backlog::default();
        add_marked(&mut backlog, 1, grant_to(1), true);
        let revoke_of_two = Command::RevokeGroup(RevokeGroup { member: MemberId(2), group: GROUP, basis: 1 });
        add_marked(&mut backlog, 2, revoke_of_two, true);
        let suspend_three = Command::SuspendUser(SuspendUser { member: MemberId(3), basis: 1 });
        add_marked(&mut backlog, 3, suspend_three, true);
        add_marked(&mut backlog, 4, grant_to(4), false);
        let members: Vec<u64> = work_order(&mut backlog).iter().map(|key| key.member().0).collect();
        assert_eq!(
            members,
            [2, 3, 4, 1],
            "a revoke and a suspension from a sweep close doors before a grant opens one"
        );
    }
}
