//! What the operator writes in doorsync's configuration, and how they edit it: the mapping of
//! rooms, pass products, desks and offices to Kisi groups, the booking lead and lag (for all
//! rooms and for one), the pass lag and the no-access policy. Each edit is followed by a
//! restart of doorsync with the edited configuration, as an operator running `doorsync run`
//! would do. The oracle reads the configuration in force at each instant from a [`Timeline`].

use doorsync_access::{AccessPolicy, BookingTiming, Mapping, NoAccessPolicy};
use doorsync_proto::{FloorPlanItemId, KisiGroupId, MappingChanged, MappingSource, PassProductId, ResourceId};
use rand::Rng;
use rand::rngs::StdRng;

use super::doorsync::POLICIES;
use super::intervals::{Millis, OPEN_START};
use super::world::Site;

const MINUTE_MS: Millis = 60_000;

/// The configuration doorsync runs with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Configuration {
    pub(crate) mapping: Mapping,
    pub(crate) policy: AccessPolicy,
}

impl Configuration {
    /// The operator's first configuration: every room but the one Nexudus links, every pass
    /// product, desk and office connected (bar the pass product the seed leaves unconnected), and
    /// the default timing.
    pub(crate) fn initial(site: &Site, no_access: NoAccessPolicy, unconnected_product: Option<usize>) -> Self {
        let mut mapping = site.configured.clone();
        if let Some(nth) = unconnected_product {
            let products: Vec<PassProductId> = mapping.pass_products.keys().copied().collect();
            if let Some(product) = products.get(nth % products.len().max(1)) {
                mapping.pass_products.remove(product);
            }
        }
        Self { mapping, policy: AccessPolicy { no_access, ..AccessPolicy::default() } }
    }
}

/// Everything the operator could connect to a group: each location's rooms, pass products,
/// desks and office.
fn every_source(site: &Site) -> Vec<MappingSource> {
    let mut sources = Vec::new();
    for location in &site.locations {
        sources.extend(location.rooms.iter().map(|room| MappingSource::Resource(ResourceId(room.resource))));
        sources.extend(
            [location.day_pass, location.time_pass].map(|product| MappingSource::PassProduct(PassProductId(product))),
        );
        sources.extend(
            location
                .desks
                .iter()
                .chain([&location.office])
                .map(|item| MappingSource::FloorPlanItem(FloorPlanItemId(*item))),
        );
    }
    sources
}

fn group_of(source: MappingSource, mapping: &Mapping) -> Option<KisiGroupId> {
    match source {
        MappingSource::Resource(id) => mapping.resources.get(&id).copied(),
        MappingSource::PassProduct(id) => mapping.pass_products.get(&id).copied(),
        MappingSource::FloorPlanItem(id) => mapping.floor_plan_items.get(&id).copied(),
    }
}

/// One edit of the configuration, drawn before the run and applied to whatever configuration
/// is in force when it comes (`pick` and `target` choose among what is there then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edit {
    /// A connected room, pass product, desk or office is connected to another managed group.
    Relink {
        pick: usize,
        target: usize,
    },
    /// Something not connected (the room Nexudus links, the pass product the seed leaves
    /// unconnected, whatever an earlier edit unmapped) is connected to a managed group.
    Map {
        pick: usize,
        target: usize,
    },
    /// A connected room, pass product, desk or office is disconnected.
    Unmap {
        pick: usize,
    },
    BookingTiming {
        lead_minutes: i64,
        lag_minutes: i64,
    },
    /// Lead and lag for one room, replacing the defaults.
    ResourceTiming {
        pick: usize,
        lead_minutes: i64,
        lag_minutes: i64,
    },
    PassLag {
        minutes: i64,
    },
    NoAccess {
        pick: usize,
    },
}

impl Edit {
    pub(crate) fn draw(rng: &mut StdRng) -> Self {
        let (pick, target) = (rng.random_range(0..usize::MAX), rng.random_range(0..usize::MAX));
        let minutes = |rng: &mut StdRng| rng.random_range(0..=12) * 5;
        match rng.random_range(0..7) {
            0 => Self::Relink { pick, target },
            1 => Self::Map { pick, target },
            2 => Self::Unmap { pick },
            3 => Self::BookingTiming { lead_minutes: minutes(rng), lag_minutes: minutes(rng) },
            4 => Self::ResourceTiming { pick, lead_minutes: minutes(rng), lag_minutes: minutes(rng) },
            5 => Self::PassLag { minutes: rng.random_range(0..=8) * 15 },
            _ => Self::NoAccess { pick },
        }
    }

    /// The configuration after the edit, and what the operator did, in words; `None` when the
    /// edit finds nothing to change (nothing left to map, say).
    pub(crate) fn apply(self, site: &Site, before: &Configuration) -> Option<(Configuration, String)> {
        let mut after = before.clone();
        let sources = every_source(site);
        let connected: Vec<MappingSource> =
            sources.iter().copied().filter(|source| group_of(*source, &before.mapping).is_some()).collect();
        let text = match self {
            Self::Relink { pick, target } => {
                let source = *connected.get(pick % connected.len().max(1))?;
                let current = group_of(source, &before.mapping);
                let targets: Vec<KisiGroupId> =
                    site.managed_groups.iter().copied().filter(|group| Some(*group) != current).collect();
                let group = *targets.get(target % targets.len().max(1))?;
                after.mapping.apply(&MappingChanged { source, group: Some(group) });
                format!("relinks {source:?} from group {current:?} to group {group}")
            }
            Self::Map { pick, target } => {
                let unconnected: Vec<MappingSource> =
                    sources.iter().copied().filter(|source| group_of(*source, &before.mapping).is_none()).collect();
                let source = *unconnected.get(pick % unconnected.len().max(1))?;
                let group = *site.managed_groups.get(target % site.managed_groups.len().max(1))?;
                after.mapping.apply(&MappingChanged { source, group: Some(group) });
                format!("maps {source:?} to group {group}")
            }
            Self::Unmap { pick } => {
                let source = *connected.get(pick % connected.len().max(1))?;
                after.mapping.apply(&MappingChanged { source, group: None });
                format!("unmaps {source:?} (was group {:?})", group_of(source, &before.mapping))
            }
            Self::BookingTiming { lead_minutes, lag_minutes } => {
                after.policy.booking_lead_ms = lead_minutes * MINUTE_MS;
                after.policy.booking_lag_ms = lag_minutes * MINUTE_MS;
                format!("sets the booking lead to {lead_minutes} min and the lag to {lag_minutes} min")
            }
            Self::ResourceTiming { pick, lead_minutes, lag_minutes } => {
                let rooms: Vec<ResourceId> = site
                    .locations
                    .iter()
                    .flat_map(|location| location.rooms.iter().map(|room| ResourceId(room.resource)))
                    .collect();
                let room = *rooms.get(pick % rooms.len().max(1))?;
                let timing = BookingTiming { lead_ms: lead_minutes * MINUTE_MS, lag_ms: lag_minutes * MINUTE_MS };
                after.policy.resource_timing.insert(room, timing);
                format!("gives resource {room} a lead of {lead_minutes} min and a lag of {lag_minutes} min")
            }
            Self::PassLag { minutes } => {
                after.policy.pass_lag_ms = minutes * MINUTE_MS;
                format!("sets the pass lag to {minutes} min")
            }
            Self::NoAccess { pick } => {
                let others: Vec<NoAccessPolicy> =
                    POLICIES.iter().copied().filter(|policy| *policy != before.policy.no_access).collect();
                let policy = *others.get(pick % others.len().max(1))?;
                after.policy.no_access = policy;
                format!("switches the no-access policy from {:?} to {policy:?}", before.policy.no_access)
            }
        };
        (after != *before).then(|| (after, format!("the operator {text} and restarts doorsync")))
    }
}

/// The configurations in force over the run, each from an instant until the next one's.
#[derive(Debug, Clone)]
pub(crate) struct Timeline {
    /// In time order; the first is in force from the beginning of time.
    periods: Vec<(Millis, Configuration)>,
}

impl Timeline {
    pub(crate) fn new(initial: Configuration) -> Self {
        Self { periods: vec![(OPEN_START, initial)] }
    }

    pub(crate) fn current(&self) -> &Configuration {
        // Never empty: made with one period, and periods are only added.
        &self.periods[self.periods.len() - 1].1
    }

    /// The configuration in force now, as if it always had been: what doorsync draws windows
    /// with, from their records' own starts.
    pub(crate) fn latest(&self) -> Self {
        Self::new(self.current().clone())
    }

    pub(crate) fn edit(&mut self, at: Millis, configuration: Configuration) {
        self.periods.push((at, configuration));
    }

    /// Each configuration with the stretch `[from, until)` it is in force.
    pub(crate) fn periods(&self) -> impl Iterator<Item = (Millis, Millis, &Configuration)> {
        self.periods.iter().enumerate().map(|(index, (from, configuration))| {
            let until = self.periods.get(index + 1).map_or(super::intervals::OPEN_END, |(next, _)| *next);
            (*from, until, configuration)
        })
    }

    /// Whether any configuration in force so far had this no-access policy.
    pub(crate) fn ever_had(&self, policy: NoAccessPolicy) -> bool {
        self.periods.iter().any(|(_, configuration)| configuration.policy.no_access == policy)
    }
}
