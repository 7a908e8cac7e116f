//! Which Kisi group each Nexudus thing opens.

use std::collections::{BTreeMap, BTreeSet};

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

    /// The mapping members are evaluated with: what Nexudus's own fields connect (`self`, folded
    /// from `MappingChanged` events), with each connection the configuration makes taking
    /// precedence, since an operator who wrote a `[[mapping]]` entry meant it.
    pub fn overlaid_with(&self, configured: &Mapping) -> Mapping {
        let mut mapping = self.clone();
        mapping.resources.extend(&configured.resources);
        mapping.pass_products.extend(&configured.pass_products);
        mapping.floor_plan_items.extend(&configured.floor_plan_items);
        mapping
    }

    /// Every group something is connected to, each once, in order.
    pub fn groups(&self) -> BTreeSet<KisiGroupId> {
        self.resources
            .values()
            .chain(self.pass_products.values())
            .chain(self.floor_plan_items.values())
            .copied()
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_wins_over_nexudus_and_groups_are_listed_once() {
        let mut from_nexudus = Mapping::default();
        from_nexudus.resources.insert(ResourceId(1), KisiGroupId(10));
        from_nexudus.resources.insert(ResourceId(2), KisiGroupId(20));
        let mut configured = Mapping::default();
        configured.resources.insert(ResourceId(1), KisiGroupId(11));
        configured.pass_products.insert(PassProductId(7), KisiGroupId(20));
        let mapping = from_nexudus.overlaid_with(&configured);
        assert_eq!(mapping.resources.get(&ResourceId(1)), Some(&KisiGroupId(11)));
        assert_eq!(mapping.resources.get(&ResourceId(2)), Some(&KisiGroupId(20)));
        assert_eq!(mapping.groups().into_iter().collect::<Vec<_>>(), [KisiGroupId(11), KisiGroupId(20)]);
    }
}
