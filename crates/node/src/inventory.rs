//! Both sides of the mapping as the accounts hold them now: the Nexudus resources, pass
//! products and floor-plan desks and offices a `[[mapping]]` entry can link, and the Kisi groups
//! it can link them to. `doorsync check-config --online` names what the mapping links with them,
//! and `doorsync mapping suggest` matches them by name.

use std::fmt;

use doorsync_clock::SharedClock;
use doorsync_config::Config;
use doorsync_kisi::{Group, KisiClient, KisiError};
use doorsync_nexudus::{
    Entity, FloorPlanDesk, ListQuery, MAX_PAGE_SIZE, NexudusClient, NexudusError, Resource, SetupError, TimePass,
};

use crate::{NodeError, setup};

/// What a `[[mapping]]` entry links to a Kisi group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKind {
    Resource,
    PassProduct,
    FloorPlanItem,
}

impl SourceKind {
    pub const ALL: [SourceKind; 3] = [SourceKind::Resource, SourceKind::PassProduct, SourceKind::FloorPlanItem];

    /// The entry's key naming the source: `resource = 14`.
    pub fn config_key(self) -> &'static str {
        match self {
            SourceKind::Resource => "resource",
            SourceKind::PassProduct => "pass_product",
            SourceKind::FloorPlanItem => "floor_plan_item",
        }
    }

    /// What an operator calls it.
    pub fn label(self) -> &'static str {
        match self {
            SourceKind::Resource => "resource",
            SourceKind::PassProduct => "pass product",
            SourceKind::FloorPlanItem => "desk or office",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            SourceKind::Resource => "resources",
            SourceKind::PassProduct => "pass products",
            SourceKind::FloorPlanItem => "desks and offices",
        }
    }
}

/// A Nexudus record a mapping entry can link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub kind: SourceKind,
    pub id: u64,
    /// Nexudus's name for it, when it has one.
    pub name: Option<String>,
    /// Archived in Nexudus: nothing new is booked or sold on it.
    pub archived: bool,
}

impl fmt::Display for Source {
    /// `resource 14 "Room 1"`, or `resource 14` without a name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.label(), self.id)?;
        if let Some(name) = &self.name {
            write!(f, " \"{name}\"")?;
        }
        if self.archived {
            f.write_str(" (archived)")?;
        }
        Ok(())
    }
}

/// Everything a mapping entry can link in Nexudus, with how many records could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NexudusInventory {
    pub sources: Vec<Source>,
    /// Records Nexudus listed that are not readable as their entity (named in the log).
    pub unreadable: usize,
}

impl NexudusInventory {
    pub fn find(&self, kind: SourceKind, id: u64) -> Option<&Source> {
        self.sources.iter().find(|source| source.kind == kind && source.id == id)
    }

    pub fn count(&self, kind: SourceKind) -> usize {
        self.sources.iter().filter(|source| source.kind == kind).count()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error(transparent)]
    Setup(#[from] NodeError),
    #[error("{0}")]
    NexudusClient(#[source] SetupError),
    #[error("reading the {what} from Nexudus: {source}")]
    Nexudus {
        what: &'static str,
        #[source]
        source: NexudusError,
    },
    #[error("listing the Kisi groups this API key can see: {0}")]
    Kisi(#[source] Box<KisiError>),
}

impl InventoryError {
    /// Nexudus or Kisi refused the credentials (not a network or server failure).
    pub fn is_credentials_problem(&self) -> bool {
        match self {
            InventoryError::Nexudus { source, .. } => {
                matches!(source, NexudusError::Unauthorized { .. } | NexudusError::Forbidden { .. })
            }
            InventoryError::Kisi(source) => source.is_credentials_problem(),
            InventoryError::Setup(_) | InventoryError::NexudusClient(_) => false,
        }
    }
}

/// The Nexudus client of the operator's tools, on the configuration's credentials.
pub fn nexudus_client(config: &Config, clock: SharedClock) -> Result<NexudusClient, InventoryError> {
    NexudusClient::new(setup::nexudus_options(config)?, clock).map_err(InventoryError::NexudusClient)
}

/// Every resource, pass product (day and time passes) and floor-plan desk or office Nexudus
/// lists, archived ones included.
pub async fn read_nexudus(client: &NexudusClient) -> Result<NexudusInventory, InventoryError> {
    let mut inventory = NexudusInventory::default();
    list_into(client, SourceKind::Resource, &mut inventory, |resource: Resource| {
        (resource.id, resource.name, resource.archived)
    })
    .await?;
    list_into(client, SourceKind::PassProduct, &mut inventory, |product: TimePass| {
        (product.id, product.name, product.archived)
    })
    .await?;
    list_into(client, SourceKind::FloorPlanItem, &mut inventory, |desk: FloorPlanDesk| (desk.id, desk.name, false))
        .await?;
    Ok(inventory)
}

/// Adds every record of `E` to the inventory as a source of `kind`, `read` giving its id, name
/// and whether it is archived; an unreadable record is counted and named in the log.
async fn list_into<E: Entity>(
    client: &NexudusClient,
    kind: SourceKind,
    inventory: &mut NexudusInventory,
    read: impl Fn(E) -> (u64, Option<String>, bool),
) -> Result<(), InventoryError> {
    let listing = client
        .list(&ListQuery::<E>::new().page_size(MAX_PAGE_SIZE))
        .await
        .map_err(|source| InventoryError::Nexudus { what: kind.plural(), source })?;
    for malformed in &listing.malformed {
        tracing::warn!(%malformed, "a Nexudus record is not readable; it is left out");
    }
    inventory.unreadable += listing.malformed.len();
    inventory.sources.extend(listing.records.into_iter().map(|record| {
        let (id, name, archived) = read(record);
        Source { kind, id, name, archived }
    }));
    Ok(())
}

/// Every Kisi group the API key can see.
pub async fn read_kisi_groups(client: &KisiClient) -> Result<Vec<Group>, InventoryError> {
    client.groups().await.map_err(|error| InventoryError::Kisi(Box::new(error)))
}
