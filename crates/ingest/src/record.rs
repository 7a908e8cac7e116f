//! The Nexudus records whose appended state the ingestor keeps, and who holds what they grant.

use doorsync_nexudus::{
    Booking, Coworker, CoworkerContract, CoworkerTimePass, Entity, FloorPlanDesk, Resource, TimePass,
};
use doorsync_proto::MemberId;
use serde::{Deserialize, Serialize};

/// A kind of Nexudus record that becomes events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum RecordKind {
    Coworker,
    Booking,
    CoworkerTimePass,
    CoworkerContract,
    /// Only with the mapping taken from Nexudus.
    Resource,
    /// A pass product; only with the mapping taken from Nexudus.
    TimePass,
    /// Only with the mapping taken from Nexudus.
    FloorPlanDesk,
}

impl RecordKind {
    const ALL: [Self; 7] = [
        Self::Coworker,
        Self::Booking,
        Self::CoworkerTimePass,
        Self::CoworkerContract,
        Self::Resource,
        Self::TimePass,
        Self::FloorPlanDesk,
    ];

    /// Nexudus's name for the entity, as in its filters and in [`MalformedRecord::entity`](doorsync_nexudus::MalformedRecord).
    pub(crate) fn entity(self) -> &'static str {
        match self {
            Self::Coworker => Coworker::NAME,
            Self::Booking => Booking::NAME,
            Self::CoworkerTimePass => CoworkerTimePass::NAME,
            Self::CoworkerContract => CoworkerContract::NAME,
            Self::Resource => Resource::NAME,
            Self::TimePass => TimePass::NAME,
            Self::FloorPlanDesk => FloorPlanDesk::NAME,
        }
    }

    pub(crate) fn from_entity(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.entity() == name)
    }
}

/// One Nexudus record: its kind and `Id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RecordKey {
    pub(crate) kind: RecordKind,
    pub(crate) id: u64,
}

const RECORD_PREFIX: &str = "record.";

impl RecordKey {
    pub(crate) fn new(kind: RecordKind, id: u64) -> Self {
        Self { kind, id }
    }

    /// Where its state lives in the ingest bucket: `record.<Entity>.<id>`.
    pub(crate) fn kv_key(self) -> String {
        format!("{RECORD_PREFIX}{}.{}", self.kind.entity(), self.id)
    }

    /// The record a bucket key holds the state of; `None` for other keys.
    pub(crate) fn from_kv_key(key: &str) -> Option<Self> {
        let (entity, id) = key.strip_prefix(RECORD_PREFIX)?.split_once('.')?;
        Some(Self { kind: RecordKind::from_entity(entity)?, id: id.parse().ok()? })
    }
}

/// Who holds what a record's last event grants: a member, or (for a resource, pass product or
/// desk) the deployment's mapping. A change of holder removes the grant from the old one first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Holder {
    Member(MemberId),
    Mapping,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_keys_round_trip_and_other_keys_are_not_records() {
        for kind in RecordKind::ALL {
            let key = RecordKey::new(kind, 1_234);
            assert_eq!(RecordKey::from_kv_key(&key.kv_key()), Some(key));
            assert!(doorsync_log::validate_kv_key(&key.kv_key()).is_ok());
        }
        assert_eq!(RecordKey::new(RecordKind::Booking, 7).kv_key(), "record.Booking.7");
        for other in ["watermark.Booking", "parked.Booking.7", "record.Invoice.7", "record.Booking.x"] {
            assert_eq!(RecordKey::from_kv_key(other), None, "{other}");
        }
    }
}
