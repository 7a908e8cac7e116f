//! What records refer to: locations and their time zones, resources, pass products and
//! floor-plan desks. Cached, never read per change: every poll and sweep lists them all again,
//! and their own webhooks (`FloorPlanDesk*`, `BusinessUpdate`) read or drop one entry. A
//! reference the cache does not know is read by id, never guessed (one that answers 404 or 500
//! does not exist only if a listing by its id is empty).
//!
//! What the directory learns it also names in the catalogue (`doorsync_catalogue`): each
//! location with its IANA zone, each resource, pass product and desk/office with its name and
//! location, put only when changed, from what it read anyway.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use doorsync_catalogue::{CatalogueWriter, Location, Named};
use doorsync_proto::{FloorPlanItemId, MappingSource, PassProductId, ResourceId, Timestamp};

use doorsync_nexudus::{
    Business, Entity, FloorPlanDesk, NexudusClient, NexudusError, Resource, SimpleTimeZone, TimePass,
};

use crate::DayPassCutoffs;
use crate::error::IngestError;
use crate::ingestor::confirm_deleted;
use crate::normalise::{LocationZone, Unnormalisable, Zone};

/// UTC-12:00 (Etc/GMT+12, Windows "Dateline Standard Time"): no zone is further west.
const WESTERNMOST_OFFSET: Duration = Duration::from_secs(12 * 3_600);
const DAY: Duration = Duration::from_secs(24 * 3_600);

#[derive(Debug, Default)]
pub(crate) struct Known {
    zones: BTreeMap<u64, SimpleTimeZone>,
    businesses: BTreeMap<u64, Business>,
    resources: BTreeMap<u64, Resource>,
    products: BTreeMap<u64, TimePass>,
    desks: BTreeMap<u64, FloorPlanDesk>,
    /// Learned or read again since the catalogue was last written.
    unpublished: BTreeSet<Learned>,
}

/// A record the catalogue names, by what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Learned {
    /// A time zone: the locations in it are named again.
    Zone(u64),
    Location(u64),
    Source(MappingSource),
}

/// An entity the directory caches.
pub(crate) trait Referenced: Entity + Clone + Send + Sync {
    fn cached(known: &mut Known) -> &mut BTreeMap<u64, Self>;

    fn learned(id: u64) -> Learned;
}

macro_rules! referenced {
    ($($entity:ty => $field:ident, $learned:expr;)*) => {
        $(impl Referenced for $entity {
            fn cached(known: &mut Known) -> &mut BTreeMap<u64, Self> {
                &mut known.$field
            }

            fn learned(id: u64) -> Learned {
                $learned(id)
            }
        })*
    };
}

referenced! {
    SimpleTimeZone => zones, Learned::Zone;
    Business => businesses, Learned::Location;
    Resource => resources, |id| Learned::Source(MappingSource::Resource(ResourceId(id)));
    TimePass => products, |id| Learned::Source(MappingSource::PassProduct(PassProductId(id)));
    FloorPlanDesk => desks, |id| Learned::Source(MappingSource::FloorPlanItem(FloorPlanItemId(id)));
}

/// A catalogue record to put.
enum Naming {
    Location(u64, Location),
    Source(MappingSource, Named),
}

impl Known {
    /// The Windows time zone id of location `business`, where known.
    fn windows_zone<'a>(&'a self, business: &'a Business) -> Option<&'a str> {
        match (&business.simple_time_zone_name, business.simple_time_zone_id) {
            (Some(name), _) => Some(name.as_str()),
            (None, Some(zone)) => self.zones.get(&zone).map(|zone| zone.name.as_str()),
            (None, None) => None,
        }
    }

    /// The records to name for what was learned; a zone names its locations again.
    fn namings(&self, learned: &BTreeSet<Learned>) -> Vec<Naming> {
        let mut locations = BTreeSet::new();
        let mut namings = Vec::new();
        for learned in learned {
            match *learned {
                Learned::Zone(zone) => locations.extend(
                    self.businesses
                        .values()
                        .filter(|business| business.simple_time_zone_name.is_none())
                        .filter(|business| business.simple_time_zone_id == Some(zone))
                        .map(|business| business.id),
                ),
                Learned::Location(business) => {
                    locations.insert(business);
                }
                Learned::Source(source) => {
                    namings.extend(self.named(source).map(|named| Naming::Source(source, named)))
                }
            }
        }
        for business in locations.into_iter().filter_map(|id| self.businesses.get(&id)) {
            let time_zone = self
                .windows_zone(business)
                .and_then(|windows| Zone::from_windows(windows).ok())
                .map(|zone| zone.iana().to_owned());
            namings.push(Naming::Location(business.id, Location { name: business.name.clone(), time_zone }));
        }
        namings
    }

    fn named(&self, source: MappingSource) -> Option<Named> {
        match source {
            MappingSource::Resource(id) => self
                .resources
                .get(&id.0)
                .map(|resource| Named { name: resource.name.clone(), location: Some(resource.business_id) }),
            MappingSource::PassProduct(id) => self.products.get(&id.0).map(|product| {
                // A product of several locations belongs to none of them in particular.
                let only = match product.business_ids.as_deref() {
                    Some([only]) => Some(*only),
                    _ => None,
                };
                Named { name: product.name.clone(), location: product.business_id.or(only) }
            }),
            MappingSource::FloorPlanItem(id) => {
                self.desks.get(&id.0).map(|desk| Named { name: desk.name.clone(), location: desk.business_id })
            }
        }
    }
}

/// How a location names its time zone (`SimpleTimeZoneName`, `SimpleTimeZoneId`), and the
/// Windows zone that comes to, where the directory knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocationZoneNaming {
    name: Option<String>,
    id: Option<u64>,
    windows: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Directory {
    client: NexudusClient,
    known: Mutex<Known>,
    /// Where what it learns is named; `None` in tests of the directory alone.
    catalogue: Option<CatalogueWriter>,
    /// Configured, not read from Nexudus: its API gives no day-pass cutoff.
    pub(crate) day_pass_cutoffs: DayPassCutoffs,
}

impl Directory {
    pub(crate) fn new(
        client: NexudusClient,
        day_pass_cutoffs: DayPassCutoffs,
        catalogue: Option<CatalogueWriter>,
    ) -> Self {
        Self { client, known: Mutex::new(Known::default()), catalogue, day_pass_cutoffs }
    }

    fn known(&self) -> MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Record `id` of `E`, from the cache or read by id; `Err` says why there is none (it does
    /// not exist, or it is malformed) for the record that refers to it to be parked with.
    pub(crate) async fn lookup<E: Referenced>(&self, id: u64) -> Result<Result<E, Unnormalisable>, IngestError> {
        if let Some(found) = E::cached(&mut self.known()).get(&id).cloned() {
            return Ok(Ok(found));
        }
        match self.client.get::<E>(id).await {
            Ok(record) => {
                self.remember(record.clone());
                self.publish_names().await;
                Ok(Ok(record))
            }
            Err(answer) if answer.may_mean_deleted() => {
                confirm_deleted::<E>(&self.client, id, answer).await?;
                Ok(Err(Unnormalisable::new(format!("{} {id} does not exist in Nexudus", E::NAME))))
            }
            Err(NexudusError::Malformed(malformed)) => Ok(Err(Unnormalisable::new(malformed.to_string()))),
            Err(error) => Err(error.into()),
        }
    }

    /// Keeps `record`, to be named at the next [`Directory::publish_names`].
    pub(crate) fn remember<E: Referenced>(&self, record: E) {
        let mut known = self.known();
        known.unpublished.insert(E::learned(record.id()));
        E::cached(&mut known).insert(record.id(), record);
    }

    /// Drops record `id` of `E`, which Nexudus no longer has: the next lookup reads it, and
    /// says why it cannot be used.
    pub(crate) fn forget<E: Referenced>(&self, id: u64) {
        E::cached(&mut self.known()).remove(&id);
    }

    /// Names in the catalogue what was learned since the last time. The names are for people
    /// only, so a failure to write them fails no reading: it is logged, and tried again next
    /// time.
    pub(crate) async fn publish_names(&self) {
        let Some(catalogue) = &self.catalogue else { return };
        let learned = std::mem::take(&mut self.known().unpublished);
        if learned.is_empty() {
            return;
        }
        let namings = self.known().namings(&learned);
        for naming in namings {
            let written = match &naming {
                Naming::Location(id, location) => catalogue.location(*id, location).await,
                Naming::Source(source, named) => catalogue.source(*source, named).await,
            };
            if let Err(error) = written {
                tracing::warn!(%error, "names could not be written to the catalogue; they are tried again later");
                self.known().unpublished.extend(learned);
                return;
            }
        }
    }

    /// Reads record `id` of `E` again after Nexudus said it changed; one it no longer has, or
    /// cannot be read, is forgotten, so the next lookup says why.
    pub(crate) async fn refresh<E: Referenced>(&self, id: u64) -> Result<(), IngestError> {
        match self.client.get::<E>(id).await {
            Ok(record) => {
                self.remember(record);
                self.publish_names().await;
            }
            Err(answer) if answer.may_mean_deleted() => {
                confirm_deleted::<E>(&self.client, id, answer).await?;
                self.forget::<E>(id);
            }
            Err(NexudusError::Malformed(_)) => self.forget::<E>(id),
            Err(error) => return Err(error.into()),
        }
        Ok(())
    }

    /// Replaces everything known of `E` by a full listing, all of it to be named.
    pub(crate) fn replace_all<E: Referenced>(&self, records: Vec<E>) {
        let mut known = self.known();
        known.unpublished.extend(records.iter().map(|record| E::learned(record.id())));
        *E::cached(&mut known) = records.into_iter().map(|record| (record.id(), record)).collect();
    }

    /// How each known location names its time zone, and the Windows zone that is, where known.
    pub(crate) fn location_zones(&self) -> BTreeMap<u64, LocationZoneNaming> {
        let known = self.known();
        known
            .businesses
            .values()
            .map(|business| {
                let naming = LocationZoneNaming {
                    name: business.simple_time_zone_name.clone(),
                    id: business.simple_time_zone_id,
                    windows: known.windows_zone(business).map(str::to_owned),
                };
                (business.id, naming)
            })
            .collect()
    }

    /// The time zone of location `business`, or why it has none doorsync can use.
    pub(crate) async fn zone_of(&self, business: u64) -> Result<Result<Zone, Unnormalisable>, IngestError> {
        let business = match self.lookup::<Business>(business).await? {
            Ok(business) => business,
            Err(reason) => return Ok(Err(reason)),
        };
        let windows = match (&business.simple_time_zone_name, business.simple_time_zone_id) {
            (Some(name), _) => name.clone(),
            (None, Some(zone)) => match self.lookup::<SimpleTimeZone>(zone).await? {
                Ok(zone) => zone.name,
                Err(reason) => return Ok(Err(reason)),
            },
            (None, None) => {
                let reason = format!("location {} has no SimpleTimeZoneId", business.id);
                return Ok(Err(Unnormalisable::new(reason)));
            }
        };
        Ok(Zone::from_windows(&windows))
    }

    /// How far west of UTC the westernmost known location is, at any instant from a day before
    /// `at` until `at` (a change of summer time in between counts): zero when every known
    /// location is at or east of UTC, and the westernmost offset in use anywhere when no
    /// location is known. Locations whose zone is unknown are left out, since their records are
    /// parked rather than read.
    pub(crate) fn westward_offset(&self, at: Timestamp) -> Duration {
        let known = self.known();
        if known.businesses.is_empty() {
            return WESTERNMOST_OFFSET;
        }
        let day_before = at - DAY;
        let westernmost = known
            .businesses
            .values()
            .filter_map(|business| Zone::from_windows(known.windows_zone(business)?).ok())
            .flat_map(|zone| [zone.offset_seconds_at(day_before), zone.offset_seconds_at(at)])
            .flatten()
            .min()
            .unwrap_or(0);
        Duration::from_secs(u64::from(westernmost.min(0).unsigned_abs()))
    }

    /// The time zone of the location of `resource`, or why it cannot be used.
    pub(crate) async fn zone_of_resource(&self, resource: u64) -> Result<LocationZone, IngestError> {
        let resource = match self.lookup::<Resource>(resource).await? {
            Ok(resource) => resource,
            Err(reason) => return Ok(LocationZone::Unusable(Unnormalisable::new(format!("ResourceId: {reason}")))),
        };
        Ok(LocationZone::from_lookup(self.zone_of(resource.business_id).await?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::Arc;

    use doorsync_clock::ManualClock;
    use doorsync_nexudus::{Credentials, NexudusOptions, Secret};
    use serde_json::json;

    use super::*;

    fn at(text: &str) -> Timestamp {
        doorsync_nexudus::NexudusDateTime::parse(text).unwrap().to_utc().unwrap()
    }

    fn directory_of(zones: &[&str]) -> Directory {
        let credentials = Credentials { username: "admin@example.com".into(), password: Secret::new("password") };
        let options = NexudusOptions::new("http://127.0.0.1:9/".parse().unwrap(), credentials);
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_millis(0)));
        let directory = Directory::new(NexudusClient::new(options, clock).unwrap(), DayPassCutoffs::default(), None);
        let businesses = zones
            .iter()
            .zip(1..)
            .map(|(zone, id)| {
                Business::from_record(&json!({"Id": id, "Name": "L", "SimpleTimeZoneName": zone})).unwrap()
            })
            .collect();
        directory.replace_all::<Business>(businesses);
        directory
    }

    #[test]
    fn the_westward_offset_is_the_westernmost_known_locations_with_summer_time_and_the_worst_when_none_is_known() {
        let hours = |hours: u64| Duration::from_secs(hours * 3_600);
        let july = at("2025-07-01T12:00:00Z");
        assert_eq!(directory_of(&[]).westward_offset(july), hours(12), "nothing known: as far west as zones go");
        assert_eq!(directory_of(&["AUS Eastern Standard Time", "GMT Standard Time"]).westward_offset(july), hours(0));
        let with_los_angeles = directory_of(&["GMT Standard Time", "Pacific Standard Time", "Mars Standard Time"]);
        assert_eq!(with_los_angeles.westward_offset(july), hours(7));
        assert_eq!(with_los_angeles.westward_offset(at("2025-01-15T12:00:00Z")), hours(8));
        // Summer time began at 10:00 UTC on 9 March 2025; a day before, the offset was still -8.
        assert_eq!(with_los_angeles.westward_offset(at("2025-03-09T20:00:00Z")), hours(8));
    }
}
