//! Outcomes: what the Kisi writer found or did, reported back to the engine.

use serde::{Deserialize, Serialize};

use crate::wire::wire_message_family;
use crate::{KisiAssignmentId, KisiGroupId, KisiUserId, MemberId, MessageId, Timestamp};

wire_message_family! {
    /// A report from the Kisi writer to the engine.
    pub enum Outcome as "outcome" {
        UserLinked = "user_linked",
        GrantApplied = "grant_applied",
        Revoked = "revoked",
        UserAccessChanged = "user_access_changed",
        Failed = "failed",
    }
}

impl Outcome {
    pub fn member(&self) -> MemberId {
        match self {
            Self::UserLinked(outcome) => outcome.member,
            Self::GrantApplied(outcome) => outcome.member,
            Self::Revoked(outcome) => outcome.member,
            Self::UserAccessChanged(outcome) => outcome.member,
            Self::Failed(outcome) => outcome.member,
        }
    }
}

/// The member's Kisi user is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLinked {
    pub member: MemberId,
    pub kisi_user: KisiUserId,
    /// Whether doorsync created the user (rather than finding one by email); recorded because the
    /// no-access policy may only suspend or delete users doorsync is responsible for.
    pub created_by_doorsync: bool,
}

/// Kisi now holds this assignment of the member to the group, with these bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantApplied {
    pub member: MemberId,
    pub group: KisiGroupId,
    pub assignment: KisiAssignmentId,
    pub valid_from: Option<Timestamp>,
    pub valid_until: Option<Timestamp>,
}

/// The member is no longer in the group in Kisi (or never was).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    pub member: MemberId,
    pub group: KisiGroupId,
}

/// The member's Kisi user is now in this state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAccessChanged {
    pub member: MemberId,
    pub state: KisiUserState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KisiUserState {
    Enabled,
    /// The user exists with `access_enabled = false`.
    Suspended,
    Deleted,
}

/// A command could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failed {
    pub member: MemberId,
    /// The id of the command's envelope.
    pub command: MessageId,
    /// Why, for operators. Must never contain secrets (API keys, tokens), since it is logged.
    pub reason: String,
    /// `true` when retrying cannot help (the command was dead-lettered); `false` when the writer
    /// gave up for now but the same command may succeed later.
    pub permanent: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_comes_from_the_variant() {
        let outcome = Outcome::Revoked(Revoked { member: MemberId(5), group: KisiGroupId(8) });
        assert_eq!(outcome.member(), MemberId(5));
    }
}
