//! The commands that take Kisi from what was last asked for to what is desired now.

use doorsync_proto::{Command, DeleteUser, EnsureUser, GrantGroup, RestoreUser, RevokeGroup, SuspendUser, Timestamp};

use crate::desired::{Desired, DesiredUser, UserAccess, Window};
use crate::state::MemberState;

/// The commands that take what was last emitted for the member (see [`record_command`]) to
/// `desired`, each computed from the state's last event (`basis`).
///
/// In the order the writer should apply them: the user is ensured (and restored) before groups
/// are granted, grants come by group, then revocations, and a suspension or deletion comes last,
/// after the member has been taken out of every group.
pub fn commands(state: &MemberState, desired: &Desired) -> Vec<Command> {
    let member = state.member();
    let basis = state.last_sequence();
    let emitted = state.emitted();
    let emitted_access = emitted.user.as_ref().map(|user| user.access);
    let mut commands = Vec::new();

    if let Some(user) = desired.user.as_ref().filter(|user| user.access == UserAccess::Enabled) {
        let known_to_kisi = emitted.user.as_ref().filter(|emitted| emitted.access != UserAccess::Deleted);
        if known_to_kisi.is_none_or(|emitted| emitted.email != user.email || emitted.name != user.name) {
            commands.push(Command::EnsureUser(EnsureUser {
                member,
                email: user.email.clone(),
                name: user.name.clone(),
                basis,
            }));
        }
        if emitted_access == Some(UserAccess::Suspended) {
            commands.push(Command::RestoreUser(RestoreUser { member, basis }));
        }
    }
    for (&group, window) in &desired.grants {
        if emitted.grants.get(&group) != Some(window) {
            commands.push(Command::GrantGroup(GrantGroup {
                member,
                group,
                valid_from: window.from,
                valid_until: window.until,
                basis,
            }));
        }
    }
    for &group in emitted.grants.keys() {
        if !desired.grants.contains_key(&group) {
            commands.push(Command::RevokeGroup(RevokeGroup { member, group, basis }));
        }
    }
    // Only a user doorsync emitted is ever suspended or deleted.
    if let (Some(user), Some(before)) = (&desired.user, emitted_access)
        && user.access != before
    {
        match user.access {
            UserAccess::Suspended => commands.push(Command::SuspendUser(SuspendUser { member, basis })),
            UserAccess::Deleted => commands.push(Command::DeleteUser(DeleteUser { member, basis })),
            UserAccess::Enabled => {}
        }
    }
    commands
}

/// The edge of an access window whose passing makes `command` necessary at `now`, if one does:
/// for a grant, the start of its window once that has come, or the end of the window it takes
/// over from; for a revocation, the end of the window it takes away; for a suspension or
/// deletion, the end of the member's last window. `None` when an event made the command
/// necessary: Kisi is written ahead of every edge still to come, a change to a window that is
/// running leaves the door open meanwhile, and a user is ensured or restored for the grants that
/// follow it, which carry their own edge.
///
/// The edge is what was due, so a command decided late (after a replay, or for an event that
/// arrived after the edge) carries the edge it is late for. `state` is the state `command` was
/// computed from, before it is recorded.
pub fn window_edge(state: &MemberState, command: &Command, now: Timestamp) -> Option<Timestamp> {
    let emitted = state.emitted();
    let passed = |instant: Option<Timestamp>| instant.filter(|instant| *instant <= now);
    match command {
        Command::GrantGroup(grant) => {
            let before = emitted.grants.get(&grant.group);
            if before.is_some_and(|window| window.contains(now)) {
                return None;
            }
            passed(grant.valid_from).max(before.and_then(|window| passed(window.until)))
        }
        Command::RevokeGroup(revoke) => emitted.grants.get(&revoke.group).and_then(|window| passed(window.until)),
        Command::SuspendUser(_) | Command::DeleteUser(_) => {
            // Only when every window has ended: a window cut short is an event's doing.
            let ends: Option<Vec<Timestamp>> = emitted.grants.values().map(|window| passed(window.until)).collect();
            ends.and_then(|ends| ends.into_iter().max())
        }
        Command::EnsureUser(_) | Command::RestoreUser(_) => None,
    }
}

/// Notes in the state that `command` was emitted, so that [`commands`] computes what is still
/// missing. Used right after the engine appends a command and when it replays its own commands
/// after a restart; recording the same command again changes nothing.
pub fn record_command(state: &mut MemberState, command: &Command) {
    if command.member() != state.member() {
        return;
    }
    let emitted = state.emitted_mut();
    match command {
        Command::EnsureUser(ensure) => match &mut emitted.user {
            // Ensuring finds or creates the user; it does not change whether the user may open doors.
            Some(user) if user.access != UserAccess::Deleted => {
                user.email.clone_from(&ensure.email);
                user.name.clone_from(&ensure.name);
            }
            _ => {
                emitted.user = Some(DesiredUser {
                    email: ensure.email.clone(),
                    name: ensure.name.clone(),
                    access: UserAccess::Enabled,
                });
            }
        },
        Command::RestoreUser(_) => set_access(&mut emitted.user, UserAccess::Enabled),
        Command::SuspendUser(_) => set_access(&mut emitted.user, UserAccess::Suspended),
        Command::DeleteUser(_) => {
            if let Some(user) = &mut emitted.user {
                user.access = UserAccess::Deleted;
            }
        }
        Command::GrantGroup(grant) => {
            emitted.grants.insert(grant.group, Window { from: grant.valid_from, until: grant.valid_until });
        }
        Command::RevokeGroup(revoke) => {
            emitted.grants.remove(&revoke.group);
        }
    }
}

/// Restoring or suspending acts on an existing user only: a deleted one must be ensured first.
fn set_access(user: &mut Option<DesiredUser>, access: UserAccess) {
    if let Some(user) = user
        && user.access != UserAccess::Deleted
    {
        user.access = access;
    }
}
