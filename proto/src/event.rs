//! Events: facts from Nexudus, normalised, as the ingestor appends them to the log.
//!
//! Events are edge-triggered: each one reports that something changed, and carries the whole new
//! state of that one thing (a booking, a pass, a contract) so that folding the latest event for it
//! is enough; nothing is a delta.

use serde::{Deserialize, Serialize};

use crate::wire::wire_message_family;
use crate::{
    BookingId, CivilDate, ContractId, FloorPlanItemId, KisiGroupId, MemberId, PassId, PassProductId, ResourceId,
    Timestamp,
};

wire_message_family! {
    /// A fact from Nexudus.
    pub enum Event as "event" {
        MemberChanged = "member_changed",
        MemberRemoved = "member_removed",
        BookingChanged = "booking_changed",
        BookingCancelled = "booking_cancelled",
        PassChanged = "pass_changed",
        PassRemoved = "pass_removed",
        ContractChanged = "contract_changed",
        ContractRemoved = "contract_removed",
        MappingChanged = "mapping_changed",
        EntitlementWithheld = "entitlement_withheld",
    }
}

impl Event {
    /// The member the event is about, or `None` for events that concern everyone (mappings).
    pub fn member(&self) -> Option<MemberId> {
        match self {
            Self::MemberChanged(event) => Some(event.member),
            Self::MemberRemoved(event) => Some(event.member),
            Self::BookingChanged(event) => Some(event.member),
            Self::BookingCancelled(event) => Some(event.member),
            Self::PassChanged(event) => Some(event.member),
            Self::PassRemoved(event) => Some(event.member),
            Self::ContractChanged(event) => Some(event.member),
            Self::ContractRemoved(event) => Some(event.member),
            Self::MappingChanged(_) => None,
            Self::EntitlementWithheld(event) => Some(event.member),
        }
    }
}

/// A member was created or their details changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberChanged {
    pub member: MemberId,
    /// How the Kisi user for this member is found or created.
    pub email: String,
    pub name: String,
    /// Nexudus's own active flag; an inactive member holds nothing, whatever else they have.
    pub active: bool,
}

/// A member was deleted in Nexudus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRemoved {
    pub member: MemberId,
}

/// A booking was made, moved or otherwise changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingChanged {
    pub member: MemberId,
    pub booking: BookingId,
    pub resource: ResourceId,
    /// The booked start, before the engine applies its lead time.
    pub starts_at: Timestamp,
    /// The booked end, before the engine applies its lag time.
    pub ends_at: Timestamp,
    /// Tentative bookings grant nothing until confirmed.
    pub tentative: bool,
}

/// A booking was cancelled or deleted; either way it grants nothing from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingCancelled {
    pub member: MemberId,
    pub booking: BookingId,
}

/// A time pass was issued to a member or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassChanged {
    pub member: MemberId,
    pub pass: PassId,
    pub product: PassProductId,
    pub validity: PassValidity,
    /// All of the pass's uses are spent, so it grants nothing even inside its validity.
    pub used_up: bool,
}

/// When a pass may be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PassValidity {
    /// Valid between two instants; a missing bound is open.
    Window { from: Option<Timestamp>, until: Option<Timestamp> },
    /// Valid for one calendar day where the member uses it. The zone travels with the pass
    /// because "the day" only becomes a window once the engine knows the location's zone.
    Day {
        date: CivilDate,
        /// An IANA time zone id such as "Europe/London".
        time_zone: String,
    },
}

/// A pass was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassRemoved {
    pub member: MemberId,
    pub pass: PassId,
}

/// A contract was created or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractChanged {
    pub member: MemberId,
    pub contract: ContractId,
    pub starts_at: Timestamp,
    /// `None` for a contract that runs until cancelled.
    pub ends_at: Option<Timestamp>,
    /// When a cancellation takes effect, which may be before `ends_at`.
    pub cancelled_at: Option<Timestamp>,
    pub active: bool,
    /// The desks and offices the contract includes.
    pub spaces: Vec<FloorPlanItem>,
}

/// A desk or office on a floor plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloorPlanItem {
    pub id: FloorPlanItemId,
    pub kind: FloorPlanItemKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FloorPlanItemKind {
    Desk,
    Office,
}

/// A contract was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractRemoved {
    pub member: MemberId,
    pub contract: ContractId,
}

/// The latest version of a booking, pass or contract the member held cannot be read (it refers
/// to a desk that no longer exists, a zone that cannot be mapped, a used pass misses the day it
/// was used, ...). What the previous version granted must not go on granting: the entitlement
/// grants nothing until a readable version, or its removal, follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntitlementWithheld {
    pub member: MemberId,
    pub entitlement: EntitlementId,
    /// Why the record cannot be read, for operators (`UsedDate: is missing ...`); never names
    /// or emails.
    pub reason: String,
}

/// One of a member's bookings, passes or contracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntitlementId {
    Booking(BookingId),
    Pass(PassId),
    Contract(ContractId),
}

impl std::fmt::Display for EntitlementId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Booking(id) => write!(f, "booking {id}"),
            Self::Pass(id) => write!(f, "pass {id}"),
            Self::Contract(id) => write!(f, "contract {id}"),
        }
    }
}

/// A Nexudus resource, pass product or floor-plan item was connected to a Kisi group,
/// reconnected to another, or disconnected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingChanged {
    pub source: MappingSource,
    /// `None` means the source is no longer connected to any group.
    pub group: Option<KisiGroupId>,
}

/// The Nexudus things that can be mapped to a Kisi group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MappingSource {
    Resource(ResourceId),
    PassProduct(PassProductId),
    FloorPlanItem(FloorPlanItemId),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mapping_changes_have_no_member() {
        let mapping =
            Event::MappingChanged(MappingChanged { source: MappingSource::Resource(ResourceId(3)), group: None });
        assert_eq!(mapping.member(), None);

        let removed = Event::MemberRemoved(MemberRemoved { member: MemberId(9) });
        assert_eq!(removed.member(), Some(MemberId(9)));
    }
}
