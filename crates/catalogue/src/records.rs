//! The records of the catalogue and the keys they are stored under.

use std::fmt;

use doorsync_proto::{KisiGroupId, MappingSource};
use serde::{Deserialize, Serialize};

/// A Nexudus location (a business).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub name: String,
    /// The IANA name of its time zone (`Europe/London`), as the ingestor resolved it from
    /// Nexudus's Windows zone id; `None` when it could not.
    pub time_zone: Option<String>,
}

/// A resource, pass product or desk/office: its name and the location it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Named {
    /// `None` when Nexudus gives it no name.
    pub name: Option<String>,
    /// The location (business) id; `None` for a pass product valid at several or all locations.
    pub location: Option<u64>,
}

/// A Kisi group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KisiGroup {
    pub name: String,
    /// The Kisi place the group belongs to; Kisi's group gives its id only.
    pub place_id: Option<u64>,
}

/// What a catalogue record describes, which is also its key in the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CatalogueKey {
    Location(u64),
    Source(MappingSource),
    KisiGroup(KisiGroupId),
}

impl CatalogueKey {
    /// Reads a key of the bucket back; `None` for a key this version does not know.
    pub fn parse(key: &str) -> Option<Self> {
        let (kind, id) = key.split_once('.')?;
        let id: u64 = id.parse().ok()?;
        Some(match kind {
            "location" => Self::Location(id),
            "resource" => Self::Source(MappingSource::Resource(id.into())),
            "pass_product" => Self::Source(MappingSource::PassProduct(id.into())),
            "floor_plan_item" => Self::Source(MappingSource::FloorPlanItem(id.into())),
            "kisi_group" => Self::KisiGroup(KisiGroupId(id)),
            _ => return None,
        })
    }
}

/// The key in the bucket: `location.3`, `resource.42`, `pass_product.7`, `floor_plan_item.9`,
/// `kisi_group.12`.
impl fmt::Display for CatalogueKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Location(id) => write!(f, "location.{id}"),
            Self::Source(MappingSource::Resource(id)) => write!(f, "resource.{id}"),
            Self::Source(MappingSource::PassProduct(id)) => write!(f, "pass_product.{id}"),
            Self::Source(MappingSource::FloorPlanItem(id)) => write!(f, "floor_plan_item.{id}"),
            Self::KisiGroup(id) => write!(f, "kisi_group.{id}"),
        }
    }
}

/// How an id is shown as small print, and as the label of what has no name: "resource 42",
/// "pass product 7", "desk/office 9", "Kisi group 12", "location 3".
pub(crate) fn id_text(key: CatalogueKey) -> String {
    match key {
        CatalogueKey::Location(id) => format!("location {id}"),
        CatalogueKey::Source(MappingSource::Resource(id)) => format!("resource {id}"),
        CatalogueKey::Source(MappingSource::PassProduct(id)) => format!("pass product {id}"),
        CatalogueKey::Source(MappingSource::FloorPlanItem(id)) => format!("desk/office {id}"),
        CatalogueKey::KisiGroup(id) => format!("Kisi group {id}"),
    }
}

#[cfg(test)]
mod tests {
    use doorsync_proto::{FloorPlanItemId, PassProductId, ResourceId};

    use super::*;

    #[test]
    fn every_key_reads_back_as_itself_and_unknown_keys_are_none() {
        let keys = [
            CatalogueKey::Location(3),
            CatalogueKey::Source(MappingSource::Resource(ResourceId(42))),
            CatalogueKey::Source(MappingSource::PassProduct(PassProductId(7))),
            CatalogueKey::Source(MappingSource::FloorPlanItem(FloorPlanItemId(9))),
            CatalogueKey::KisiGroup(KisiGroupId(12)),
        ];
        let texts: Vec<String> = keys.iter().map(ToString::to_string).collect();
        assert_eq!(texts, ["location.3", "resource.42", "pass_product.7", "floor_plan_item.9", "kisi_group.12"]);
        for key in keys {
            assert_eq!(CatalogueKey::parse(&key.to_string()), Some(key));
        }
        for unknown in ["place.3", "resource", "resource.x", "resource.-1", ""] {
            assert_eq!(CatalogueKey::parse(unknown), None, "{unknown}");
        }
    }
}
