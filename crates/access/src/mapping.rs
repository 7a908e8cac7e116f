//! Which Kisi group each Nexudus thing opens.

use std::collections::BTreeMap;

use doorsync_proto::{FloorPlanItemId, KisiGroupId, MappingChanged, MappingSource, PassProductId, ResourceId};
use serde::{Deserialize, Serialize};

/// The connections between Nexudus resources, pass products and floor-plan items and Kisi groups.
///
/// One for the whole deployment, not per member: a member's state names what they hold, and the
/// mapping is consulted when their access is derived, so a changed connection reaches every
/// member without refolding anyone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Mapping {
    pub resources: BTreeMap<ResourceId, KisiGroupId>,
    pub pass_products: BTreeMap<PassProductId, KisiGroupId>,
    pub floor_plan_items: BTreeMap<FloorPlanItemId, KisiGroupId>,
}

impl Mapping {
    /// Connects the change's source to its group, or disconnects it when the group is `None`.
    pub fn apply(&mut self, change: &MappingChanged) {
        match change.source {
            MappingSource::Resource(resource) => set_or_remove(&mut self.resources, resource, change.group),
            MappingSource::PassProduct(product) => set_or_remove(&mut self.pass_products, product, change.group),
            MappingSource::FloorPlanItem(item) => set_or_remove(&mut self.floor_plan_items, item, change.group),
        }
    }
}

fn set_or_remove<K: Ord>(map: &mut BTreeMap<K, KisiGroupId>, key: K, group: Option<KisiGroupId>) {
    match group {
        Some(group) => {
            map.insert(key, group);
        }
        None => {
            map.remove(&key);
        }
    }
}
