//! The level-triggered core, as plain functions: what a key should be after a command, and the
//! one next Kisi call that brings what is known closer to it (or that nothing is left to do).
//!
//! The writer calls [`user_step`] or [`group_step`], makes the call, updates what it knows from
//! the answer, and asks again, until the answer is "done". A backlog of commands for one key is
//! folded into one desire first, so grant/revoke/grant costs what the last grant costs, and an
//! already-true desire costs nothing.

pub mod dry_run;

use doorsync_kisi::Validity;
use doorsync_proto::{Command, KisiAssignmentId, KisiUserState};

use crate::knowledge::{GroupDesire, KnownAssignment, KnownUser, UserDesire};

/// The user desire after `command`, from the one before it; `None` if the command is not about
/// the user. Mirrors how the engine folds what it emitted (`doorsync_access::record_command`):
/// ensuring a user keeps its suspension, a deleted user is ensured afresh, restoring or suspending
/// a deleted user changes nothing.
pub(crate) fn fold_user_desire(before: Option<&UserDesire>, command: &Command) -> Option<UserDesire> {
    let live = before.filter(|desire| desire.access != KisiUserState::Deleted);
    let with_access = |access| match before {
        Some(desire) => UserDesire { access, ..desire.clone() },
        None => UserDesire { email: None, name: None, access },
    };
    Some(match command {
        Command::EnsureUser(ensure) => UserDesire {
            email: Some(ensure.email.clone()),
            name: Some(ensure.name.clone()),
            access: live.map_or(KisiUserState::Enabled, |desire| desire.access),
        },
        Command::RestoreUser(_) if live.is_some() || before.is_none() => with_access(KisiUserState::Enabled),
        Command::SuspendUser(_) if live.is_some() || before.is_none() => with_access(KisiUserState::Suspended),
        Command::RestoreUser(_) | Command::SuspendUser(_) => before?.clone(),
        Command::DeleteUser(_) => with_access(KisiUserState::Deleted),
        Command::GrantGroup(_) | Command::RevokeGroup(_) => return None,
    })
}

/// The group desire a command states, if it is about a group.
pub(crate) fn group_desire(command: &Command) -> Option<GroupDesire> {
    match command {
        Command::GrantGroup(grant) => {
            Some(GroupDesire::Member { valid_from: grant.valid_from, valid_until: grant.valid_until })
        }
        Command::RevokeGroup(_) => Some(GroupDesire::NotMember),
        _ => None,
    }
}

/// The next call for a member's user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UserStep {
    /// Look for an existing user with the email before creating one.
    Find {
        email: String,
    },
    Create {
        email: String,
        name: String,
        access_enabled: bool,
    },
    /// A user found by email may already be in groups: read them once.
    ListAssignments,
    /// What became of a change to the user's access is not known: read the user.
    Read,
    SetAccess {
        access_enabled: bool,
    },
    Delete,
    Done,
    /// No `EnsureUser` has come for the member, so there is no email to find or create its user
    /// with. It may still come: a writer that died holding it gives it back only after the ack
    /// wait, and newer commands may come first.
    AwaitEnsureUser,
    /// A user doorsync found rather than created, asked to be suspended, restored or deleted:
    /// it belongs to someone else (staff, an admin, another integration), so nothing is done.
    LeaveAlone,
}

/// The next call that brings the member's user from `known` towards `desire`.
///
/// `searched_absent` says Kisi was just searched for the email and had no such user.
/// `manage_found` allows suspending, restoring and deleting users doorsync found by email rather
/// than created; without it such a user is left as it is ([`UserStep::LeaveAlone`]).
pub(crate) fn user_step(
    desire: &UserDesire,
    known: Option<&KnownUser>,
    searched_absent: bool,
    manage_found: bool,
) -> UserStep {
    let live = known.filter(|user| user.state != KisiUserState::Deleted);
    let manageable = |user: &KnownUser| user.created_by_doorsync || manage_found;
    if desire.access == KisiUserState::Deleted {
        return match live {
            None => UserStep::Done,
            Some(user) if manageable(user) => UserStep::Delete,
            Some(_) => UserStep::LeaveAlone,
        };
    }
    let Some(user) = live else {
        let Some(email) = &desire.email else {
            return UserStep::AwaitEnsureUser;
        };
        if !searched_absent {
            return UserStep::Find { email: email.clone() };
        }
        return UserStep::Create {
            email: email.clone(),
            name: desire.name.clone().unwrap_or_default(),
            access_enabled: desire.access == KisiUserState::Enabled,
        };
    };
    if user.access_in_doubt {
        return UserStep::Read;
    }
    if !user.assignments_listed {
        return UserStep::ListAssignments;
    }
    if user.state == desire.access {
        return UserStep::Done;
    }
    if !manageable(user) {
        return UserStep::LeaveAlone;
    }
    UserStep::SetAccess { access_enabled: desire.access == KisiUserState::Enabled }
}

/// The next call for a member's membership of one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupStep {
    /// What Kisi holds is unknown: look before writing.
    Lookup,
    Create {
        validity: Validity,
    },
    Update {
        assignment: KisiAssignmentId,
        validity: Validity,
    },
    Delete {
        assignment: KisiAssignmentId,
        /// The member keeps the group: the assignment is deleted to be created again with the
        /// new window (the account ignores a PATCH), so the create must follow at once.
        recreate: bool,
    },
    Done,
    RefuseNoUser,
    RefuseForeign {
        assignment: KisiAssignmentId,
    },
}

/// What the writer may do with assignments, from its options and what it learnt of the account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GroupRules {
    /// Change or delete assignments someone else made.
    pub(crate) touch_foreign_assignments: bool,
    /// Whether a PATCH of an assignment's validity is known to be applied by this Kisi account:
    /// `Some(false)` once one was read back unchanged or refused, and then a window changes by
    /// deleting the assignment and creating it again.
    pub(crate) patch_applies_validity: Option<bool>,
}

/// The next call that brings the member's membership of a group from `known` towards `desire`.
///
/// `user` is the member's live Kisi user. An assignment someone else made is never changed
/// (unless the rules allow it): a revocation leaves it, since the access it gives is not
/// doorsync's, and a grant it already covers needs nothing more.
pub(crate) fn group_step(
    desire: GroupDesire,
    user: Option<&KnownUser>,
    known: KnownAssignment,
    rules: GroupRules,
) -> GroupStep {
    let user = user.filter(|user| user.state != KisiUserState::Deleted);
    let Some(validity) = desire.validity() else {
        // Not a member: without a user there is nothing to take away.
        return match (user, known) {
            (None, _) | (Some(_), KnownAssignment::Absent) => GroupStep::Done,
            (Some(_), KnownAssignment::Unknown) => GroupStep::Lookup,
            (Some(_), KnownAssignment::Present(held)) if held.ours || rules.touch_foreign_assignments => {
                GroupStep::Delete { assignment: held.id, recreate: false }
            }
            (Some(_), KnownAssignment::Present(_)) => GroupStep::Done,
        };
    };
    if user.is_none() {
        return GroupStep::RefuseNoUser;
    }
    match known {
        KnownAssignment::Unknown => GroupStep::Lookup,
        KnownAssignment::Absent => GroupStep::Create { validity },
        KnownAssignment::Present(held) if held.validity() == validity => GroupStep::Done,
        KnownAssignment::Present(held) if held.ours || rules.touch_foreign_assignments => {
            if rules.patch_applies_validity == Some(false) {
                GroupStep::Delete { assignment: held.id, recreate: true }
            } else {
                GroupStep::Update { assignment: held.id, validity }
            }
        }
        KnownAssignment::Present(held) if covers(held.validity(), validity) => GroupStep::Done,
        KnownAssignment::Present(held) => GroupStep::RefuseForeign { assignment: held.id },
    }
}

/// Whether every instant `wanted` covers, `held` covers too.
fn covers(held: Validity, wanted: Validity) -> bool {
    let starts_in_time = match (held.from, wanted.from) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(held), Some(wanted)) => held <= wanted,
    };
    let lasts_long_enough = match (held.until, wanted.until) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(held), Some(wanted)) => held >= wanted,
    };
    starts_in_time && lasts_long_enough
}

#[cfg(test)]
mod tests {
    use doorsync_proto::{
        DeleteUser, EnsureUser, GrantGroup, KisiGroupId, KisiUserId, MemberId, RestoreUser, RevokeGroup, SuspendUser,
        Timestamp,
    };

    use super::*;
    use crate::knowledge::HeldAssignment;

    const MEMBER: MemberId = MemberId(1);
    const FOREIGN_TOO: GroupRules = GroupRules { touch_foreign_assignments: true, patch_applies_validity: None };

    fn ensure(email: &str) -> Command {
        Command::EnsureUser(EnsureUser { member: MEMBER, email: email.into(), name: "Ann".into(), basis: 1 })
    }

    fn fold_all(commands: &[Command]) -> Option<UserDesire> {
        commands.iter().fold(None, |desire, command| fold_user_desire(desire.as_ref(), command))
    }

    fn user(created: bool, state: KisiUserState) -> KnownUser {
        KnownUser {
            id: KisiUserId(7),
            created_by_doorsync: created,
            state,
            assignments_listed: true,
            access_in_doubt: false,
        }
    }

    fn at(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp::from_unix_millis(seconds * 1_000))
    }

    fn held(ours: bool, from: Option<Timestamp>, until: Option<Timestamp>) -> KnownAssignment {
        KnownAssignment::Present(HeldAssignment { id: KisiAssignmentId(3), valid_from: from, valid_until: until, ours })
    }

    #[test]
    fn user_commands_fold_like_the_engine_records_them() {
        let suspend = Command::SuspendUser(SuspendUser { member: MEMBER, basis: 2 });
        let restore = Command::RestoreUser(RestoreUser { member: MEMBER, basis: 3 });
        let delete = Command::DeleteUser(DeleteUser { member: MEMBER, basis: 4 });
        let suspended = fold_all(&[ensure("a@x"), suspend.clone()]).unwrap();
        assert_eq!(suspended.access, KisiUserState::Suspended);
        assert_eq!(suspended.email.as_deref(), Some("a@x"));
        // Ensuring again (a new email) keeps the suspension; restoring lifts it.
        assert_eq!(
            fold_all(&[ensure("a@x"), suspend.clone(), ensure("b@x")]).unwrap().access,
            KisiUserState::Suspended
        );
        assert_eq!(
            fold_all(&[ensure("a@x"), suspend.clone(), restore.clone()]).unwrap().access,
            KisiUserState::Enabled
        );
        // A deleted user is not suspended or restored, only ensured afresh.
        let deleted = fold_all(&[ensure("a@x"), delete.clone(), suspend]).unwrap();
        assert_eq!(deleted.access, KisiUserState::Deleted);
        assert_eq!(fold_all(&[ensure("a@x"), delete, ensure("a@x")]).unwrap().access, KisiUserState::Enabled);
        let grant = Command::RevokeGroup(RevokeGroup { member: MEMBER, group: KisiGroupId(2), basis: 1 });
        assert_eq!(fold_user_desire(None, &grant), None);
    }

    #[test]
    fn a_user_is_looked_for_then_created_then_its_groups_read_once_when_linked() {
        let desire = fold_all(&[ensure("a@x")]).unwrap();
        assert_eq!(user_step(&desire, None, false, true), UserStep::Find { email: "a@x".into() });
        assert_eq!(
            user_step(&desire, None, true, true),
            UserStep::Create { email: "a@x".into(), name: "Ann".into(), access_enabled: true }
        );
        let linked = KnownUser { assignments_listed: false, ..user(false, KisiUserState::Enabled) };
        assert_eq!(user_step(&desire, Some(&linked), false, true), UserStep::ListAssignments);
        assert_eq!(user_step(&desire, Some(&user(false, KisiUserState::Enabled)), false, true), UserStep::Done);
    }

    #[test]
    fn only_users_doorsync_manages_are_suspended_or_deleted() {
        let suspend = fold_all(&[ensure("a@x"), Command::SuspendUser(SuspendUser { member: MEMBER, basis: 2 })]);
        let suspend = suspend.unwrap();
        let created = user(true, KisiUserState::Enabled);
        let linked = user(false, KisiUserState::Enabled);
        assert_eq!(user_step(&suspend, Some(&created), false, false), UserStep::SetAccess { access_enabled: false });
        assert_eq!(user_step(&suspend, Some(&linked), false, true), UserStep::SetAccess { access_enabled: false });
        assert_eq!(user_step(&suspend, Some(&linked), false, false), UserStep::LeaveAlone);
        let delete = UserDesire { access: KisiUserState::Deleted, ..suspend.clone() };
        assert_eq!(user_step(&delete, Some(&created), false, false), UserStep::Delete);
        assert_eq!(user_step(&delete, Some(&linked), false, false), UserStep::LeaveAlone);
        assert_eq!(user_step(&delete, None, false, false), UserStep::Done, "no user is already no user");
        let no_email = fold_all(&[Command::SuspendUser(SuspendUser { member: MEMBER, basis: 2 })]).unwrap();
        assert_eq!(user_step(&no_email, None, false, true), UserStep::AwaitEnsureUser);
    }

    #[test]
    fn a_user_whose_access_is_in_doubt_is_read_before_anything_is_decided() {
        let restore = fold_all(&[ensure("a@x")]).unwrap();
        let in_doubt = KnownUser { access_in_doubt: true, ..user(true, KisiUserState::Enabled) };
        assert_eq!(user_step(&restore, Some(&in_doubt), false, true), UserStep::Read);
        let delete = UserDesire { access: KisiUserState::Deleted, ..restore };
        assert_eq!(user_step(&delete, Some(&in_doubt), false, true), UserStep::Delete, "deleting twice is harmless");
    }

    #[test]
    fn grants_create_update_or_do_nothing_and_never_touch_foreign_assignments() {
        let grant = group_desire(&Command::GrantGroup(GrantGroup {
            member: MEMBER,
            group: KisiGroupId(2),
            valid_from: at(10),
            valid_until: at(20),
            basis: 1,
        }))
        .unwrap();
        let validity = Validity::new(at(10), at(20));
        let user = user(true, KisiUserState::Enabled);
        assert_eq!(group_step(grant, Some(&user), KnownAssignment::Unknown, GroupRules::default()), GroupStep::Lookup);
        assert_eq!(
            group_step(grant, Some(&user), KnownAssignment::Absent, GroupRules::default()),
            GroupStep::Create { validity }
        );
        assert_eq!(group_step(grant, Some(&user), held(true, at(10), at(20)), GroupRules::default()), GroupStep::Done);
        assert_eq!(
            group_step(grant, Some(&user), held(true, at(10), at(30)), GroupRules::default()),
            GroupStep::Update { assignment: KisiAssignmentId(3), validity }
        );
        assert_eq!(
            group_step(grant, Some(&user), held(false, None, None), GroupRules::default()),
            GroupStep::Done,
            "someone else's assignment without a window already gives the access"
        );
        assert_eq!(
            group_step(grant, Some(&user), held(false, at(10), at(15)), GroupRules::default()),
            GroupStep::RefuseForeign { assignment: KisiAssignmentId(3) },
            "someone else's narrower assignment is not widened"
        );
        assert_eq!(
            group_step(grant, Some(&user), held(false, None, None), FOREIGN_TOO),
            GroupStep::Update { assignment: KisiAssignmentId(3), validity }
        );
        assert_eq!(group_step(grant, None, KnownAssignment::Absent, GroupRules::default()), GroupStep::RefuseNoUser);
    }

    #[test]
    fn revocations_delete_only_what_doorsync_made_and_nothing_when_already_out() {
        let revoke = GroupDesire::NotMember;
        let user = user(true, KisiUserState::Enabled);
        assert_eq!(group_step(revoke, Some(&user), KnownAssignment::Absent, GroupRules::default()), GroupStep::Done);
        assert_eq!(group_step(revoke, None, KnownAssignment::Unknown, GroupRules::default()), GroupStep::Done);
        assert_eq!(group_step(revoke, Some(&user), KnownAssignment::Unknown, GroupRules::default()), GroupStep::Lookup);
        assert_eq!(
            group_step(revoke, Some(&user), held(true, None, None), GroupRules::default()),
            GroupStep::Delete { assignment: KisiAssignmentId(3), recreate: false }
        );
        assert_eq!(
            group_step(revoke, Some(&user), held(false, None, None), GroupRules::default()),
            GroupStep::Done,
            "someone else's assignment is not doorsync's access to take away"
        );
        let deleted = KnownUser { state: KisiUserState::Deleted, ..user };
        assert_eq!(group_step(revoke, Some(&deleted), held(true, None, None), GroupRules::default()), GroupStep::Done);
    }

    #[test]
    fn once_patch_is_known_not_to_apply_a_window_changes_by_delete_and_create() {
        let grant = GroupDesire::Member { valid_from: at(10), valid_until: at(20) };
        let user = user(true, KisiUserState::Enabled);
        let ignored = GroupRules { touch_foreign_assignments: false, patch_applies_validity: Some(false) };
        assert_eq!(
            group_step(grant, Some(&user), held(true, at(10), at(30)), ignored),
            GroupStep::Delete { assignment: KisiAssignmentId(3), recreate: true }
        );
        assert_eq!(
            group_step(grant, Some(&user), KnownAssignment::Absent, ignored),
            GroupStep::Create { validity: Validity::new(at(10), at(20)) }
        );
        let applies = GroupRules { patch_applies_validity: Some(true), ..ignored };
        assert!(matches!(
            group_step(grant, Some(&user), held(true, at(10), at(30)), applies),
            GroupStep::Update { .. }
        ));
    }
}
