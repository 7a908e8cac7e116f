//! What a rebuild from the log would change in Kisi: a pure function of the rebuilt member
//! states, the mapping, the policy, an instant and what Kisi was seen to hold.
//!
//! It compares Kisi with what each member should have now (`doorsync_access::desired`), not with
//! what the writer last made true, so it shows both drift in Kisi (an assignment removed by hand)
//! and work the writer has not done yet (a backlog, dead letters). It follows the writer's rules:
//! windows as Kisi holds them (whole seconds), only assignments doorsync created (or took over
//! from an adopted creator) are changed or deleted unless foreign ones may be touched, only users
//! doorsync created are suspended, restored or deleted (unless found users may be managed), and
//! of the assignments of users no member is linked to, only an adopted creator's go.

use std::collections::{BTreeMap, BTreeSet};

use doorsync_access::{AccessPolicy, Desired, Mapping, MemberState, UserAccess, Window};
use doorsync_kisi::Validity;
use doorsync_proto::{KisiAssignmentId, KisiGroupId, KisiUserId, KisiUserState, MemberId, Timestamp};

/// What Kisi holds, as far as the plan needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KisiView {
    /// The role assignments users hold in each managed group.
    pub(crate) assignments: BTreeMap<KisiGroupId, Vec<SeenAssignment>>,
    /// The users doorsync linked, as Kisi answered for each.
    pub(crate) users: BTreeMap<KisiUserId, SeenUser>,
    /// The users found by the emails of members who should have a user and have none linked
    /// yet (lowercase email): the writer would link them.
    pub(crate) found_by_email: BTreeMap<String, KisiUserId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeenAssignment {
    pub(crate) id: KisiAssignmentId,
    pub(crate) user: KisiUserId,
    pub(crate) window: Window,
    /// Created by the API key's user, that is by doorsync, or by an adopted creator.
    pub(crate) ours: bool,
    /// Created by a user `kisi.adopt_created_by` names: doorsync takes it over.
    pub(crate) adopted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeenUser {
    Enabled,
    Suspended,
    /// Kisi has no such user (any more).
    Gone,
}

/// What Kisi needs to be read for a plan: the managed groups and the users doorsync linked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ToRead {
    pub(crate) groups: BTreeSet<KisiGroupId>,
    pub(crate) users: BTreeSet<KisiUserId>,
    /// Emails of members who should have a Kisi user and have none linked (lowercase).
    pub(crate) emails: BTreeSet<String>,
}

/// The groups doorsync manages (every mapped group, and any group the writer reported an
/// assignment in), the users it linked that the writer has not reported deleted, and the emails
/// of members who should have a user at `now` and have none linked.
pub(crate) fn to_read(
    members: &BTreeMap<MemberId, MemberState>,
    mapping: &Mapping,
    policy: &AccessPolicy,
    now: Timestamp,
) -> ToRead {
    let groups = managed_groups(members, mapping);
    let users = members.values().filter_map(live_user).collect();
    let emails = members
        .values()
        .filter(|state| live_user(state).is_none())
        .filter_map(|state| wanted_email(&doorsync_access::desired(state, mapping, policy, now)))
        .collect();
    ToRead { groups, users, emails }
}

fn managed_groups(members: &BTreeMap<MemberId, MemberState>, mapping: &Mapping) -> BTreeSet<KisiGroupId> {
    let reported = members.values().flat_map(|state| state.kisi().assignments.keys().copied());
    mapping.groups().into_iter().chain(reported).collect()
}

/// The email of a member who should have an enabled Kisi user.
fn wanted_email(desired: &Desired) -> Option<String> {
    desired.user.as_ref().filter(|user| user.access == UserAccess::Enabled).map(|user| user.email.to_lowercase())
}

/// The member's linked Kisi user, unless the writer reported deleting it.
fn live_user(state: &MemberState) -> Option<KisiUserId> {
    let kisi = state.kisi();
    kisi.user.filter(|_| kisi.user_state != Some(KisiUserState::Deleted))
}

/// What the writer may touch: the assignments someone else made
/// (`reconcile.touch_foreign_assignments`), and users doorsync found rather than created
/// (`kisi.manage_found_users`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Rules {
    pub(crate) modify_foreign: bool,
    pub(crate) manage_found_users: bool,
}

/// One change the writer would make in Kisi.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// The member should have a Kisi user and has none (none linked yet, or Kisi no longer has
    /// it): the writer finds one by email or creates it.
    LinkUser {
        member: MemberId,
    },
    /// `user` is `None` while the member has no user yet.
    CreateAssignment {
        member: MemberId,
        user: Option<KisiUserId>,
        group: KisiGroupId,
        window: Window,
    },
    /// `adopted` when the assignment is taken over from an adopted creator.
    FixWindow {
        member: MemberId,
        user: KisiUserId,
        group: KisiGroupId,
        assignment: KisiAssignmentId,
        held: Window,
        wanted: Window,
        adopted: bool,
    },
    /// `member` is `None` for an adopted creator's assignment for a user no member is linked to.
    DeleteAssignment {
        member: Option<MemberId>,
        user: KisiUserId,
        group: KisiGroupId,
        assignment: KisiAssignmentId,
        held: Window,
        adopted: bool,
    },
    SuspendUser {
        member: MemberId,
        user: KisiUserId,
    },
    RestoreUser {
        member: MemberId,
        user: KisiUserId,
    },
    DeleteUser {
        member: MemberId,
        user: KisiUserId,
        held: SeenUser,
    },
}

/// An assignment that is not what the member should have, left alone because someone else
/// created it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Foreign {
    pub(crate) member: MemberId,
    pub(crate) user: KisiUserId,
    pub(crate) group: KisiGroupId,
    pub(crate) assignment: KisiAssignmentId,
    pub(crate) held: Window,
    /// `None` when the member should not be in the group at all.
    pub(crate) wanted: Option<Window>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// By member (in id order), each in the order the writer would make them; assignments of
    /// users no member has come last.
    pub(crate) changes: Vec<Change>,
    pub(crate) foreign: Vec<Foreign>,
    /// Assignments of adopted creators doorsync would take over as they are (their window is
    /// already the member's).
    pub(crate) taken_over_as_they_are: usize,
}

/// What it would take to make Kisi hold what every member should have at `now`.
pub(crate) fn plan(
    members: &BTreeMap<MemberId, MemberState>,
    mapping: &Mapping,
    policy: &AccessPolicy,
    now: Timestamp,
    kisi: &KisiView,
    rules: Rules,
) -> Plan {
    let managed = managed_groups(members, mapping);
    let mut held: BTreeMap<(KisiGroupId, KisiUserId), SeenAssignment> = BTreeMap::new();
    for (&group, assignments) in &kisi.assignments {
        for assignment in assignments {
            held.entry((group, assignment.user)).or_insert(*assignment);
        }
    }
    let mut plan = Plan::default();
    for (&member, state) in members {
        let desired = doorsync_access::desired(state, mapping, policy, now);
        let linked = live_user(state);
        let seen = linked.map_or(SeenUser::Gone, |user| kisi.users.get(&user).copied().unwrap_or(SeenUser::Gone));
        let user = linked.filter(|_| seen != SeenUser::Gone);
        let manageable = state.kisi().created_by_doorsync || rules.manage_found_users;
        // In the engine's order: a user is linked or restored before its groups, and suspended or
        // deleted after it has been taken out of them.
        let user_change = user_change(member, &desired, user, seen, manageable);
        // A member with no user linked yet gets the one Kisi has for their email, if any.
        let user = user.or_else(|| wanted_email(&desired).and_then(|email| kisi.found_by_email.get(&email).copied()));
        let (before, after) = match user_change {
            Some(Change::LinkUser { .. } | Change::RestoreUser { .. }) => (user_change, None),
            _ => (None, user_change),
        };
        plan.changes.extend(before);
        let groups = managed.iter().chain(desired.grants.keys()).copied().collect::<BTreeSet<_>>();
        for group in groups {
            let actual = user.and_then(|user| held.remove(&(group, user)));
            compare_group(&mut plan, member, user, group, desired.grants.get(&group).copied(), actual, rules);
        }
        plan.changes.extend(after);
    }
    // Assignments of users no member is linked to are not doorsync's business, even those its
    // key's owner made, except an adopted creator's: what a former integration left for people
    // no longer entitled goes.
    for ((group, user), assignment) in held {
        if assignment.adopted && managed.contains(&group) {
            plan.changes.push(Change::DeleteAssignment {
                member: None,
                user,
                group,
                assignment: assignment.id,
                held: assignment.window,
                adopted: true,
            });
        }
    }
    plan
}

/// The change that takes the member's user, as Kisi holds it, to the desired one.
fn user_change(
    member: MemberId,
    desired: &Desired,
    user: Option<KisiUserId>,
    seen: SeenUser,
    manageable: bool,
) -> Option<Change> {
    let access = desired.user.as_ref()?.access;
    match (access, user) {
        (UserAccess::Enabled, None) => Some(Change::LinkUser { member }),
        _ if !manageable => None,
        (UserAccess::Enabled, Some(user)) if seen == SeenUser::Suspended => Some(Change::RestoreUser { member, user }),
        (UserAccess::Suspended, Some(user)) if seen == SeenUser::Enabled => Some(Change::SuspendUser { member, user }),
        (UserAccess::Deleted, Some(user)) => Some(Change::DeleteUser { member, user, held: seen }),
        _ => None,
    }
}

fn compare_group(
    plan: &mut Plan,
    member: MemberId,
    user: Option<KisiUserId>,
    group: KisiGroupId,
    wanted: Option<Window>,
    actual: Option<SeenAssignment>,
    rules: Rules,
) {
    let wanted = wanted.map(as_kisi_holds_it);
    let Some(actual) = actual else {
        if let Some(window) = wanted {
            plan.changes.push(Change::CreateAssignment { member, user, group, window });
        }
        return;
    };
    if wanted == Some(actual.window) {
        if actual.adopted {
            plan.taken_over_as_they_are += 1;
        }
        return;
    }
    if !(actual.ours || rules.modify_foreign) {
        plan.foreign.push(Foreign {
            member,
            user: actual.user,
            group,
            assignment: actual.id,
            held: actual.window,
            wanted,
        });
        return;
    }
    plan.changes.push(match wanted {
        Some(wanted) => Change::FixWindow {
            member,
            user: actual.user,
            group,
            assignment: actual.id,
            held: actual.window,
            wanted,
            adopted: actual.adopted,
        },
        None => Change::DeleteAssignment {
            member: Some(member),
            user: actual.user,
            group,
            assignment: actual.id,
            held: actual.window,
            adopted: actual.adopted,
        },
    });
}

/// The window as the writer writes it to Kisi: whole seconds, never shorter than asked.
fn as_kisi_holds_it(window: Window) -> Window {
    let written = Validity::new(window.from, window.until).in_whole_seconds();
    Window { from: written.from, until: written.until }
}

/// How many changes of each kind a plan holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) users_to_link: usize,
    pub(crate) assignments_to_create: usize,
    pub(crate) windows_to_fix: usize,
    pub(crate) assignments_to_delete: usize,
    pub(crate) users_to_suspend: usize,
    pub(crate) users_to_restore: usize,
    pub(crate) users_to_delete: usize,
    /// Adopted creators' assignments among the windows to fix and the assignments to delete.
    pub(crate) adopted_to_change: usize,
}

impl Plan {
    pub(crate) fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for change in &self.changes {
            let count = match change {
                Change::LinkUser { .. } => &mut totals.users_to_link,
                Change::CreateAssignment { .. } => &mut totals.assignments_to_create,
                Change::FixWindow { .. } => &mut totals.windows_to_fix,
                Change::DeleteAssignment { .. } => &mut totals.assignments_to_delete,
                Change::SuspendUser { .. } => &mut totals.users_to_suspend,
                Change::RestoreUser { .. } => &mut totals.users_to_restore,
                Change::DeleteUser { .. } => &mut totals.users_to_delete,
            };
            *count += 1;
            if matches!(
                change,
                Change::FixWindow { adopted: true, .. } | Change::DeleteAssignment { adopted: true, .. }
            ) {
                totals.adopted_to_change += 1;
            }
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use doorsync_access::NoAccessPolicy;
    use doorsync_proto::{Command, Envelope, Event, GrantApplied, Outcome, ResourceId};

    use super::*;
    use crate::ops::testing::{at, booking, ensure, linked, member};

    const ROOM: u64 = 1;
    const DESK: u64 = 2;
    const ROOM_GROUP: KisiGroupId = KisiGroupId(100);
    const DESK_GROUP: KisiGroupId = KisiGroupId(200);

    /// Members folded from their messages, and what Kisi holds.
    #[derive(Default)]
    struct Fixture {
        members: BTreeMap<MemberId, MemberState>,
        kisi: KisiView,
    }

    impl Fixture {
        fn member(&mut self, id: u64, events: &[Event], commands: &[Command], outcomes: &[Outcome]) {
            let mut state = MemberState::new(MemberId(id));
            for (sequence, event) in (1..).zip(events) {
                doorsync_access::fold(&mut state, sequence, &Envelope::new(at(0), event.clone()).unwrap());
            }
            for command in commands {
                doorsync_access::record_command(&mut state, command);
            }
            for outcome in outcomes {
                doorsync_access::fold_outcome(&mut state, outcome);
            }
            self.members.insert(MemberId(id), state);
        }

        /// A member with a booking of `resource` from minute 60 to 120, linked to `user`.
        fn booked(&mut self, id: u64, resource: u64, user: Option<u64>) {
            let outcomes: Vec<Outcome> = user.into_iter().map(|user| linked(id, KisiUserId(user))).collect();
            self.member(id, &[member(id), booking(id, 1, resource, at(60), at(120))], &[], &outcomes);
        }

        fn assignment(&mut self, group: KisiGroupId, id: u64, user: u64, window: Window, ours: bool) {
            self.seen(group, id, user, window, ours, false);
        }

        /// Made by a creator `kisi.adopt_created_by` names, so doorsync's own.
        fn adopted_assignment(&mut self, group: KisiGroupId, id: u64, user: u64, window: Window) {
            self.seen(group, id, user, window, true, true);
        }

        fn seen(&mut self, group: KisiGroupId, id: u64, user: u64, window: Window, ours: bool, adopted: bool) {
            let seen = SeenAssignment { id: KisiAssignmentId(id), user: KisiUserId(user), window, ours, adopted };
            self.kisi.assignments.entry(group).or_default().push(seen);
        }

        fn user(&mut self, user: u64, seen: SeenUser) {
            self.kisi.users.insert(KisiUserId(user), seen);
        }

        fn plan_with(&self, policy: &AccessPolicy, rules: Rules) -> Plan {
            plan(&self.members, &mapping(), policy, at(0), &self.kisi, rules)
        }

        fn plan(&self) -> Plan {
            self.plan_with(&AccessPolicy::default(), Rules::default())
        }
    }

    fn mapping() -> Mapping {
        let mut mapping = Mapping::default();
        mapping.resources.insert(ResourceId(ROOM), ROOM_GROUP);
        mapping.resources.insert(ResourceId(DESK), DESK_GROUP);
        mapping
    }

    /// Minutes 60 to 120 with the default lead and lag of 15 minutes.
    fn booked_window() -> Window {
        Window { from: Some(at(45)), until: Some(at(135)) }
    }

    #[test]
    fn a_booking_missing_in_kisi_is_created_for_the_linked_user() {
        let mut fixture = Fixture::default();
        fixture.booked(1, ROOM, Some(11));
        fixture.user(11, SeenUser::Enabled);
        let plan = fixture.plan();
        assert_eq!(
            plan.changes,
            [Change::CreateAssignment {
                member: MemberId(1),
                user: Some(KisiUserId(11)),
                group: ROOM_GROUP,
                window: booked_window()
            }]
        );
        assert!(plan.foreign.is_empty());
    }

    #[test]
    fn windows_are_compared_as_kisi_holds_them_in_whole_seconds() {
        let mut fixture = Fixture::default();
        let start = Timestamp::from_unix_millis(at(60).as_unix_millis() + 400);
        let end = Timestamp::from_unix_millis(at(120).as_unix_millis() + 1);
        fixture.member(1, &[member(1), booking(1, 1, ROOM, start, end)], &[], &[linked(1, KisiUserId(11))]);
        fixture.user(11, SeenUser::Enabled);
        let held =
            Window { from: Some(at(45)), until: Some(Timestamp::from_unix_millis(at(135).as_unix_millis() + 1_000)) };
        fixture.assignment(ROOM_GROUP, 31, 11, held, true);
        assert_eq!(fixture.plan(), Plan::default(), "what Kisi holds is what the writer would write");
    }

    #[test]
    fn a_different_window_is_fixed_on_doorsyncs_assignment_and_left_alone_on_someone_elses() {
        let mut fixture = Fixture::default();
        let stale = Window { from: Some(at(45)), until: Some(at(140)) };
        fixture.booked(1, ROOM, Some(11));
        fixture.user(11, SeenUser::Enabled);
        fixture.assignment(ROOM_GROUP, 31, 11, stale, true);
        fixture.booked(2, ROOM, Some(12));
        fixture.user(12, SeenUser::Enabled);
        fixture.assignment(ROOM_GROUP, 32, 12, stale, false);
        let fix = |member: u64, user: u64, assignment: u64| Change::FixWindow {
            member: MemberId(member),
            user: KisiUserId(user),
            group: ROOM_GROUP,
            assignment: KisiAssignmentId(assignment),
            held: stale,
            wanted: booked_window(),
            adopted: false,
        };

        let plan = fixture.plan();
        assert_eq!(plan.changes, [fix(1, 11, 31)]);
        assert_eq!(
            plan.foreign,
            [Foreign {
                member: MemberId(2),
                user: KisiUserId(12),
                group: ROOM_GROUP,
                assignment: KisiAssignmentId(32),
                held: stale,
                wanted: Some(booked_window()),
            }]
        );

        let touching =
            fixture.plan_with(&AccessPolicy::default(), Rules { modify_foreign: true, manage_found_users: false });
        assert_eq!(touching.changes, [fix(1, 11, 31), fix(2, 12, 32)]);
        assert!(touching.foreign.is_empty());
    }

    #[test]
    fn a_member_holding_nothing_loses_doorsyncs_assignments_and_is_suspended_or_deleted_by_policy() {
        let mut fixture = Fixture::default();
        let applied = Outcome::GrantApplied(GrantApplied {
            member: MemberId(4),
            group: DESK_GROUP,
            assignment: KisiAssignmentId(41),
            valid_from: None,
            valid_until: None,
        });
        fixture.member(4, &[member(4)], &[ensure(4)], &[linked(4, KisiUserId(14)), applied]);
        fixture.user(14, SeenUser::Enabled);
        let always = Window { from: None, until: None };
        fixture.assignment(DESK_GROUP, 41, 14, always, true);
        let delete = Change::DeleteAssignment {
            member: Some(MemberId(4)),
            user: KisiUserId(14),
            group: DESK_GROUP,
            assignment: KisiAssignmentId(41),
            held: always,
            adopted: false,
        };
        let (member, user) = (MemberId(4), KisiUserId(14));
        let with =
            |no_access| fixture.plan_with(&AccessPolicy { no_access, ..AccessPolicy::default() }, Rules::default());

        assert_eq!(with(NoAccessPolicy::Suspend).changes, [delete, Change::SuspendUser { member, user }]);
        assert_eq!(
            with(NoAccessPolicy::Delete).changes,
            [delete, Change::DeleteUser { member, user, held: SeenUser::Enabled }]
        );
        assert_eq!(with(NoAccessPolicy::RemoveMembershipsOnly).changes, [delete]);
    }

    #[test]
    fn a_member_without_a_user_in_kisi_gets_one_before_their_groups() {
        let mut fixture = Fixture::default();
        fixture.booked(5, DESK, None);
        fixture.booked(7, ROOM, Some(17));
        fixture.user(17, SeenUser::Gone);
        let plan = fixture.plan();
        let needs_user = |member: u64, group: KisiGroupId| {
            [
                Change::LinkUser { member: MemberId(member) },
                Change::CreateAssignment { member: MemberId(member), user: None, group, window: booked_window() },
            ]
        };
        assert_eq!(plan.changes, [needs_user(5, DESK_GROUP), needs_user(7, ROOM_GROUP)].concat());
    }

    #[test]
    fn a_suspended_user_with_access_is_restored_and_someone_elses_unwanted_assignment_is_left_alone() {
        let mut fixture = Fixture::default();
        fixture.booked(6, ROOM, Some(16));
        fixture.user(16, SeenUser::Suspended);
        fixture.assignment(ROOM_GROUP, 61, 16, booked_window(), true);
        let theirs = Window { from: None, until: Some(at(500)) };
        fixture.assignment(DESK_GROUP, 62, 16, theirs, false);
        let plan = fixture.plan();
        assert_eq!(plan.changes, [Change::RestoreUser { member: MemberId(6), user: KisiUserId(16) }]);
        assert_eq!(
            plan.foreign,
            [Foreign {
                member: MemberId(6),
                user: KisiUserId(16),
                group: DESK_GROUP,
                assignment: KisiAssignmentId(62),
                held: theirs,
                wanted: None,
            }]
        );
    }

    #[test]
    fn of_the_assignments_of_users_no_member_has_only_an_adopted_creators_are_deleted() {
        let mut fixture = Fixture::default();
        let always = Window { from: None, until: None };
        fixture.adopted_assignment(ROOM_GROUP, 91, 99, always);
        fixture.assignment(ROOM_GROUP, 92, 98, always, false);
        fixture.adopted_assignment(KisiGroupId(300), 93, 97, always);
        // The key's owner may have made one by hand for a guest: not doorsync's business.
        fixture.assignment(ROOM_GROUP, 94, 96, always, true);
        let plan = fixture.plan();
        assert_eq!(
            plan.changes,
            [Change::DeleteAssignment {
                member: None,
                user: KisiUserId(99),
                group: ROOM_GROUP,
                assignment: KisiAssignmentId(91),
                held: always,
                adopted: true,
            }],
            "group 300 is not managed"
        );
        assert!(plan.foreign.is_empty());
        assert_eq!(plan.totals(), Totals { assignments_to_delete: 1, adopted_to_change: 1, ..Totals::default() });
    }

    #[test]
    fn kisi_is_read_for_the_mapped_groups_the_writers_groups_and_the_live_linked_users() {
        let mut fixture = Fixture::default();
        let elsewhere = Outcome::GrantApplied(GrantApplied {
            member: MemberId(1),
            group: KisiGroupId(300),
            assignment: KisiAssignmentId(1),
            valid_from: None,
            valid_until: None,
        });
        fixture.member(1, &[member(1)], &[], &[linked(1, KisiUserId(11)), elsewhere]);
        let deleted = Outcome::UserAccessChanged(doorsync_proto::UserAccessChanged {
            member: MemberId(2),
            state: KisiUserState::Deleted,
        });
        fixture.member(2, &[member(2)], &[], &[linked(2, KisiUserId(12)), deleted]);
        fixture.member(3, &[member(3)], &[], &[]);
        let wanted = to_read(&fixture.members, &mapping(), &AccessPolicy::default(), at(0));
        assert_eq!(wanted.groups, BTreeSet::from([ROOM_GROUP, DESK_GROUP, KisiGroupId(300)]));
        assert_eq!(wanted.users, BTreeSet::from([KisiUserId(11)]), "user 12 was deleted, member 3 has none");
    }

    #[test]
    fn a_user_doorsync_found_is_never_suspended_or_deleted_unless_found_users_are_managed() {
        let mut fixture = Fixture::default();
        let found = Outcome::UserLinked(doorsync_proto::UserLinked {
            member: MemberId(4),
            kisi_user: KisiUserId(14),
            created_by_doorsync: false,
        });
        fixture.member(4, &[member(4)], &[ensure(4)], &[found]);
        fixture.user(14, SeenUser::Enabled);
        let policy = AccessPolicy { no_access: NoAccessPolicy::Delete, ..AccessPolicy::default() };
        assert_eq!(fixture.plan_with(&policy, Rules::default()).changes, []);
        let managing = Rules { modify_foreign: false, manage_found_users: true };
        assert_eq!(
            fixture.plan_with(&policy, managing).changes,
            [Change::DeleteUser { member: MemberId(4), user: KisiUserId(14), held: SeenUser::Enabled }]
        );
    }

    #[test]
    fn moving_over_from_the_built_in_integration_takes_its_assignments_over_by_email() {
        let mut fixture = Fixture::default();
        // Member 1 has a booking and no Kisi user linked yet; Kisi has one for their email, with
        // the built-in integration's assignment without a window. Member 2 matches already.
        fixture.member(1, &[member(1), booking(1, 1, ROOM, at(60), at(120))], &[], &[]);
        let email =
            doorsync_access::desired(&fixture.members[&MemberId(1)], &mapping(), &AccessPolicy::default(), at(0))
                .user
                .map(|user| user.email.to_lowercase())
                .unwrap();
        fixture.kisi.found_by_email.insert(email, KisiUserId(11));
        let always = Window { from: None, until: None };
        fixture.adopted_assignment(ROOM_GROUP, 31, 11, always);
        fixture.booked(2, ROOM, Some(12));
        fixture.user(12, SeenUser::Enabled);
        fixture.adopted_assignment(ROOM_GROUP, 32, 12, booked_window());

        let plan = fixture.plan();
        assert_eq!(
            plan.changes,
            [
                Change::LinkUser { member: MemberId(1) },
                Change::FixWindow {
                    member: MemberId(1),
                    user: KisiUserId(11),
                    group: ROOM_GROUP,
                    assignment: KisiAssignmentId(31),
                    held: always,
                    wanted: booked_window(),
                    adopted: true,
                },
            ]
        );
        assert_eq!((plan.taken_over_as_they_are, plan.totals().adopted_to_change), (1, 1));
    }
}
