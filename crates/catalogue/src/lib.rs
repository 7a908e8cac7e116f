//! What doorsync's ids stand for, and the one way every operator surface shows them.
//!
//! The roles work in ids: the engine's events name a `ResourceId`, a `PassProductId`, a
//! `FloorPlanItemId` and a `KisiGroupId`, and every instant is UTC. An operator reads names and
//! local times. This crate keeps the reference data that turns one into the other, in the log's
//! `_CATALOGUE` bucket (see `doorsync_layout::Layout::catalogue_bucket`), one record per key:
//!
//! * `location.<id>`: a Nexudus location (business), its name and IANA time zone;
//! * `resource.<id>`, `pass_product.<id>`, `floor_plan_item.<id>`: a name and the location;
//! * `kisi_group.<id>`: a Kisi group's name and place.
//!
//! The ingestor writes the Nexudus records from what its directory already reads, the writer the
//! Kisi groups it reads, each through a [`CatalogueWriter`] that puts a key only when its value
//! changed. Readers take a [`Catalogue`], read once and cheap to clone and query, and show
//! names through its labels ([`Label`]) and times through [`LocalTimes`]. The catalogue is for
//! people only: nothing is granted or revoked because of what it says, so a name it lacks falls
//! back to the id ("resource 42"), never to nothing.
#![forbid(unsafe_code)]

mod catalogue;
mod error;
mod local_times;
mod records;
mod writer;

pub use catalogue::{Catalogue, Label};
pub use error::CatalogueError;
pub use local_times::{LocalTimes, zone_named};
pub use records::{CatalogueKey, KisiGroup, Location, Named};
pub use writer::CatalogueWriter;
