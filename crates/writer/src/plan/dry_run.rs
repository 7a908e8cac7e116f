//! What the writer would change in Kisi to make it hold what every member should have at an
//! instant: `doorsync replay --dry-run` and `doorsync reconcile --dry-run`. A pure function of the
//! rebuilt member states, the mapping, the policy, the instant and what Kisi was seen to hold.
//!
//! It compares Kisi with what each member should have now (`doorsync_access::desired`), not with
//! what the writer last made true, so it shows both drift in Kisi (an assignment removed by hand)
//! and work the writer has not done yet (a backlog, dead letters). Each comparison is the
//! writer's own: `user_step` and `group_step` on what
//! Kisi holds, so windows are compared as Kisi holds them, assignments someone else made are
//! left alone and users doorsync found are not suspended or deleted, as the writer would.

use std::collections::{BTreeMap, BTreeSet};

use doorsync_access::{AccessPolicy, Desired, DesiredUser, Mapping, MemberState, UserAccess, Window};
use doorsync_kisi::{RoleAssignment, Validity};
use doorsync_proto::{KisiAssignmentId, KisiGroupId, KisiUserId, KisiUserState, MemberId, Timestamp};
use serde::{Deserialize, Serialize};

use super::{GroupRules, GroupStep, UserStep, group_step, user_step};
use crate::knowledge::{GroupDesire, HeldAssignment, KnownAssignment, KnownUser, UserDesire};

/// What Kisi holds, as far as the plan needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KisiView {
    /// The role assignments users hold in each managed group.
    pub assignments: BTreeMap<KisiGroupId, Vec<SeenAssignment>>,
    /// The users doorsync linked, as Kisi answered for each.
    pub users: BTreeMap<KisiUserId, SeenUser>,
    /// The users found by the emails of members who should have a user and have none linked
    /// yet (lowercase email): the writer would link them.
    pub found_by_email: BTreeMap<String, KisiUserId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenAssignment {
    pub id: KisiAssignmentId,
    pub user: KisiUserId,
    pub window: Window,
    /// Created by the API key's user, that is by doorsync, or by an adopted creator.
    pub ours: bool,
    /// Created by a user `kisi.adopt_created_by` names: doorsync takes it over.
    pub adopted: bool,
}

/// Whose assignments doorsync treats as its own, told apart as the writer tells them: the API
/// key's user's, and those of the users `kisi.adopt_created_by` names, which it takes over.
#[derive(Debug, Clone)]
pub struct Creators(crate::worker::Creators);

impl Creators {
    pub fn new(api_user: KisiUserId, adopted: impl IntoIterator<Item = KisiUserId>) -> Self {
        Self(crate::worker::Creators { api_user: Some(api_user), adopted: adopted.into_iter().collect() })
    }

    /// The assignment as a plan sees it; `None` for one that is not a user's.
    pub fn seen(&self, assignment: &RoleAssignment) -> Option<SeenAssignment> {
        Some(SeenAssignment {
            id: assignment.id,
            user: assignment.user()?,
            window: Window { from: assignment.valid_from, until: assignment.valid_until },
            ours: self.0.made(assignment),
            adopted: self.0.adopted(assignment),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeenUser {
    Enabled,
    Suspended,
    /// Kisi has no such user (any more).
    Gone,
}

/// What Kisi needs to be read for a plan: the managed groups and the users doorsync linked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToRead {
    pub groups: BTreeSet<KisiGroupId>,
    pub users: BTreeSet<KisiUserId>,
    /// Emails of members who should have a Kisi user and have none linked (lowercase).
    pub emails: BTreeSet<String>,
}

/// The groups doorsync manages (every mapped group, and any group the writer reported an
/// assignment in), the users it linked that the writer has not reported deleted, and the emails
/// of members who should have a user at `now` and have none linked.
pub fn to_read(
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    pub touch_foreign_assignments: bool,
    pub manage_found_users: bool,
}

/// One change the writer would make in Kisi.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Foreign {
    pub member: MemberId,
    pub user: KisiUserId,
    pub group: KisiGroupId,
    pub assignment: KisiAssignmentId,
    pub held: Window,
    /// `None` when the member should not be in the group at all.
    pub wanted: Option<Window>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// By member (in id order), each in the order the writer would make them; assignments of
    /// users no member has come last.
    pub changes: Vec<Change>,
    pub foreign: Vec<Foreign>,
    /// Assignments of adopted creators doorsync would take over as they are (their window is
    /// already the member's).
    pub taken_over_as_they_are: usize,
}

/// What it would take to make Kisi hold what every member should have at `now`.
pub fn plan(
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
    let group_rules =
        GroupRules { touch_foreign_assignments: rules.touch_foreign_assignments, patch_applies_validity: None };
    let mut plan = Plan::default();
    for (&member, state) in members {
        let desired = doorsync_access::desired(state, mapping, policy, now);
        let linked = live_user(state);
        let seen = linked.map_or(SeenUser::Gone, |user| kisi.users.get(&user).copied().unwrap_or(SeenUser::Gone));
        let user = linked.filter(|_| seen != SeenUser::Gone).map(|id| KnownUser {
            id,
            created_by_doorsync: state.kisi().created_by_doorsync,
            state: if seen == SeenUser::Suspended { KisiUserState::Suspended } else { KisiUserState::Enabled },
            assignments_listed: true,
            access_in_doubt: false,
        });
        let user_change = desired
            .user
            .as_ref()
            .and_then(|wanted| user_change(member, wanted, user.as_ref(), seen, rules.manage_found_users));
        // A member with no user linked yet gets the one Kisi has for their email, if any: a user
        // doorsync found, whose assignments the writer lists once linked.
        let user = user.or_else(|| {
            let found = wanted_email(&desired).and_then(|email| kisi.found_by_email.get(&email).copied())?;
            Some(KnownUser {
                id: found,
                created_by_doorsync: false,
                state: KisiUserState::Enabled,
                assignments_listed: true,
                access_in_doubt: false,
            })
        });
        // In the engine's order: a user is linked or restored before its groups, and suspended or
        // deleted after it has been taken out of them.
        let (before, after) = match user_change {
            Some(Change::LinkUser { .. } | Change::RestoreUser { .. }) => (user_change, None),
            _ => (None, user_change),
        };
        plan.changes.extend(before);
        let groups = managed.iter().chain(desired.grants.keys()).copied().collect::<BTreeSet<_>>();
        for group in groups {
            let actual = user.as_ref().and_then(|user| held.remove(&(group, user.id)));
            let wanted = desired.grants.get(&group).copied();
            compare_group(&mut plan, member, user.as_ref(), group, wanted, actual, group_rules);
        }
        plan.changes.extend(after);
    }
    // Assignments of users no member is linked to are not doorsync's business, even those its
    // key's owner made, except an adopted creator's: what a former integration left for people
    // no longer entitled goes (as the writer's reconciler removes them).
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

/// The change the writer's next step for the member's user is, with Kisi holding `user`.
fn user_change(
    member: MemberId,
    wanted: &DesiredUser,
    user: Option<&KnownUser>,
    seen: SeenUser,
    manage_found: bool,
) -> Option<Change> {
    let desire = UserDesire {
        email: Some(wanted.email.clone()),
        name: Some(wanted.name.clone()),
        access: match wanted.access {
            UserAccess::Enabled => KisiUserState::Enabled,
            UserAccess::Suspended => KisiUserState::Suspended,
            UserAccess::Deleted => KisiUserState::Deleted,
        },
    };
    match user_step(&desire, user, false, manage_found) {
        // A member who should hold nothing and whose user Kisi lost misses nothing they could use.
        UserStep::Find { .. } | UserStep::Create { .. } => {
            (wanted.access == UserAccess::Enabled).then_some(Change::LinkUser { member })
        }
        UserStep::SetAccess { access_enabled: true } => Some(Change::RestoreUser { member, user: user?.id }),
        UserStep::SetAccess { access_enabled: false } => Some(Change::SuspendUser { member, user: user?.id }),
        UserStep::Delete => Some(Change::DeleteUser { member, user: user?.id, held: seen }),
        // What Kisi holds was read: the listing and the reading these would make are done.
        UserStep::ListAssignments | UserStep::Read => None,
        UserStep::Done | UserStep::AwaitEnsureUser | UserStep::LeaveAlone => None,
    }
}

/// Adds the change the writer's next step for the member's membership of `group` is, or the
/// assignment it leaves alone.
fn compare_group(
    plan: &mut Plan,
    member: MemberId,
    user: Option<&KnownUser>,
    group: KisiGroupId,
    wanted: Option<Window>,
    actual: Option<SeenAssignment>,
    rules: GroupRules,
) {
    let desire = wanted.map_or(GroupDesire::NotMember, |window| GroupDesire::Member {
        valid_from: window.from,
        valid_until: window.until,
    });
    let wanted = desire.validity().map(as_window);
    let known = actual.map_or(KnownAssignment::Absent, |seen| {
        KnownAssignment::Present(HeldAssignment {
            id: seen.id,
            valid_from: seen.window.from,
            valid_until: seen.window.until,
            ours: seen.ours,
        })
    });
    match (group_step(desire, user, known, rules), actual) {
        (GroupStep::Create { validity }, _) => plan.changes.push(Change::CreateAssignment {
            member,
            user: user.map(|user| user.id),
            group,
            window: as_window(validity),
        }),
        // The writer creates the member's user first, then the assignment.
        (GroupStep::RefuseNoUser, _) => {
            if let Some(window) = wanted {
                plan.changes.push(Change::CreateAssignment { member, user: None, group, window });
            }
        }
        (GroupStep::Update { validity, .. }, Some(actual)) => plan.changes.push(Change::FixWindow {
            member,
            user: actual.user,
            group,
            assignment: actual.id,
            held: actual.window,
            wanted: as_window(validity),
            adopted: actual.adopted,
        }),
        (GroupStep::Delete { .. }, Some(actual)) => plan.changes.push(Change::DeleteAssignment {
            member: Some(member),
            user: actual.user,
            group,
            assignment: actual.id,
            held: actual.window,
            adopted: actual.adopted,
        }),
        (GroupStep::Done, Some(actual)) if wanted == Some(actual.window) => {
            if actual.adopted {
                plan.taken_over_as_they_are += 1;
            }
        }
        // Not what the member should have, and not the writer's to change.
        (GroupStep::Done | GroupStep::RefuseForeign { .. }, Some(actual)) => plan.foreign.push(Foreign {
            member,
            user: actual.user,
            group,
            assignment: actual.id,
            held: actual.window,
            wanted,
        }),
        // What Kisi holds was read, so there is nothing to look up; without an assignment there
        // is nothing to change or delete.
        (GroupStep::Lookup, _)
        | (
            GroupStep::Done | GroupStep::RefuseForeign { .. } | GroupStep::Update { .. } | GroupStep::Delete { .. },
            None,
        ) => {}
    }
}

fn as_window(validity: Validity) -> Window {
    Window { from: validity.from, until: validity.until }
}

#[cfg(test)]
mod tests {
    use doorsync_access::NoAccessPolicy;
    use doorsync_proto::{
        BookingChanged, BookingId, Command, EnsureUser, Envelope, Event, GrantApplied, MemberChanged, Outcome,
        ResourceId, UserLinked,
    };

    use super::*;

    /// 2026-11-30T09:00:00Z
    const T0: i64 = 1_796_029_200_000;
    const MINUTE: i64 = 60_000;

    fn at(minutes: i64) -> Timestamp {
        Timestamp::from_unix_millis(T0 + minutes * MINUTE)
    }

    fn member(id: u64) -> Event {
        Event::MemberChanged(MemberChanged {
            member: MemberId(id),
            email: format!("m{id}@example.test"),
            name: format!("Member {id}"),
            active: true,
        })
    }

    /// The engine's command for the member's user, with the email and name [`member`] gives them.
    fn ensure(member: u64) -> Command {
        Command::EnsureUser(EnsureUser {
            member: MemberId(member),
            email: format!("m{member}@example.test"),
            name: format!("Member {member}"),
            basis: 1,
        })
    }

    /// The writer's report that it created `user` for the member.
    fn linked(member: u64, user: KisiUserId) -> Outcome {
        Outcome::UserLinked(UserLinked { member: MemberId(member), kisi_user: user, created_by_doorsync: true })
    }

    fn booking(member: u64, booking: u64, resource: u64, starts_at: Timestamp, ends_at: Timestamp) -> Event {
        Event::BookingChanged(BookingChanged {
            member: MemberId(member),
            booking: BookingId(booking),
            resource: ResourceId(resource),
            starts_at,
            ends_at,
            tentative: false,
        })
    }

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

        let touching = fixture
            .plan_with(&AccessPolicy::default(), Rules { touch_foreign_assignments: true, manage_found_users: false });
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
        let managing = Rules { touch_foreign_assignments: false, manage_found_users: true };
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
        assert_eq!(plan.taken_over_as_they_are, 1);
    }

    #[test]
    fn the_api_keys_users_and_the_adopted_creators_assignments_are_doorsyncs_and_a_teams_is_no_users() {
        let (me, builtin, staff) = (KisiUserId(1), KisiUserId(2), KisiUserId(3));
        let creators = Creators::new(me, [builtin]);
        let made_by = |creator: KisiUserId, assignee_type| RoleAssignment {
            id: KisiAssignmentId(creator.0 * 10),
            role_id: doorsync_kisi::GROUP_BASIC_ROLE.to_owned(),
            applies_to_type: doorsync_kisi::AppliesToType::Group,
            applies_to_id: ROOM_GROUP.0,
            assignee_type,
            assignee_id: 40,
            created_by_type: Some("User".to_owned()),
            created_by_id: Some(creator),
            notify: false,
            valid_from: Some(at(0)),
            valid_until: None,
        };
        let seen = |creator| creators.seen(&made_by(creator, doorsync_kisi::AssigneeType::User)).unwrap();
        let window = Window { from: Some(at(0)), until: None };
        assert_eq!(
            seen(me),
            SeenAssignment { id: KisiAssignmentId(10), user: KisiUserId(40), window, ours: true, adopted: false }
        );
        assert_eq!((seen(builtin).ours, seen(builtin).adopted), (true, true));
        assert_eq!((seen(staff).ours, seen(staff).adopted), (false, false));
        assert_eq!(creators.seen(&made_by(me, doorsync_kisi::AssigneeType::Team)), None);
    }
}
