//! Commands: what the engine wants to be true in Kisi, for the writer to make so.
//!
//! Commands are level-triggered: each states the desired end state for one member (and group),
//! not a step to perform, so applying one twice, or applying only the latest of several, is
//! always right. The `basis` lets the writer drop a command overtaken by a newer one.

use serde::{Deserialize, Serialize};

use crate::wire::wire_message_family;
use crate::{KisiGroupId, MemberId, Timestamp};

wire_message_family! {
    /// An instruction from the engine to the Kisi writer.
    pub enum Command as "command" {
        EnsureUser = "ensure_user",
        GrantGroup = "grant_group",
        RevokeGroup = "revoke_group",
        SuspendUser = "suspend_user",
        RestoreUser = "restore_user",
        DeleteUser = "delete_user",
    }
}

impl Command {
    pub fn member(&self) -> MemberId {
        match self {
            Self::EnsureUser(command) => command.member,
            Self::GrantGroup(command) => command.member,
            Self::RevokeGroup(command) => command.member,
            Self::SuspendUser(command) => command.member,
            Self::RestoreUser(command) => command.member,
            Self::DeleteUser(command) => command.member,
        }
    }

    /// The highest sequence of the member's events that this command was computed from; of two
    /// commands for the same target, the one with the lower basis is stale.
    pub fn basis(&self) -> u64 {
        match self {
            Self::EnsureUser(command) => command.basis,
            Self::GrantGroup(command) => command.basis,
            Self::RevokeGroup(command) => command.basis,
            Self::SuspendUser(command) => command.basis,
            Self::RestoreUser(command) => command.basis,
            Self::DeleteUser(command) => command.basis,
        }
    }
}

/// The member has a Kisi user with this email and name: link an existing one or create it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnsureUser {
    pub member: MemberId,
    pub email: String,
    pub name: String,
    pub basis: u64,
}

/// The member is in the group, for exactly this window (an open bound is unlimited).
///
/// The bounds are written to Kisi so that Kisi ends access on time even if doorsync is down;
/// they are the member's merged windows for the group, since Kisi keeps one assignment per
/// (user, group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantGroup {
    pub member: MemberId,
    pub group: KisiGroupId,
    pub valid_from: Option<Timestamp>,
    pub valid_until: Option<Timestamp>,
    pub basis: u64,
}

/// The member is not in the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeGroup {
    pub member: MemberId,
    pub group: KisiGroupId,
    pub basis: u64,
}

/// The member's Kisi user exists but cannot open any door (`access_enabled = false`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspendUser {
    pub member: MemberId,
    pub basis: u64,
}

/// The member's Kisi user may open doors again (`access_enabled = true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreUser {
    pub member: MemberId,
    pub basis: u64,
}

/// The member has no Kisi user (only ever acted on for users doorsync created or linked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteUser {
    pub member: MemberId,
    pub basis: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_and_basis_come_from_the_variant() {
        let command = Command::RevokeGroup(RevokeGroup { member: MemberId(5), group: KisiGroupId(8), basis: 41 });
        assert_eq!(command.member(), MemberId(5));
        assert_eq!(command.basis(), 41);
    }
}
