//! What records refer to: locations and their time zones, resources, pass products and
//! floor-plan desks. Cached; a reference the cache does not know is read by id (one that answers
//! 404 or 500 does not exist only if a listing by its id is empty), and the sweeper refreshes
//! everything.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use doorsync_nexudus::{
    Business, Entity, FloorPlanDesk, NexudusClient, NexudusError, Resource, SimpleTimeZone, TimePass,
};

use crate::error::IngestError;
use crate::ingestor::confirm_deleted;
use crate::normalise::{Unnormalisable, Zone};

#[derive(Debug, Default)]
pub(crate) struct Known {
    zones: BTreeMap<u64, SimpleTimeZone>,
    businesses: BTreeMap<u64, Business>,
    resources: BTreeMap<u64, Resource>,
    products: BTreeMap<u64, TimePass>,
    desks: BTreeMap<u64, FloorPlanDesk>,
}

/// An entity the directory caches.
pub(crate) trait Referenced: Entity + Clone + Send + Sync {
    fn cached(known: &mut Known) -> &mut BTreeMap<u64, Self>;
}

macro_rules! referenced {
    ($($entity:ty => $field:ident,)*) => {
        $(impl Referenced for $entity {
            fn cached(known: &mut Known) -> &mut BTreeMap<u64, Self> {
                &mut known.$field
            }
        })*
    };
}

referenced! {
    SimpleTimeZone => zones,
    Business => businesses,
    Resource => resources,
    TimePass => products,
    FloorPlanDesk => desks,
}

#[derive(Debug)]
pub(crate) struct Directory {
    client: NexudusClient,
    known: Mutex<Known>,
}

impl Directory {
    pub(crate) fn new(client: NexudusClient) -> Self {
        Self { client, known: Mutex::new(Known::default()) }
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

    pub(crate) fn remember<E: Referenced>(&self, record: E) {
        E::cached(&mut self.known()).insert(record.id(), record);
    }

    /// Reads record `id` of `E` again after Nexudus said it changed; one it no longer has, or
    /// cannot be read, is forgotten, so the next lookup says why.
    pub(crate) async fn refresh<E: Referenced>(&self, id: u64) -> Result<(), IngestError> {
        match self.client.get::<E>(id).await {
            Ok(record) => self.remember(record),
            Err(answer) if answer.may_mean_deleted() => {
                confirm_deleted::<E>(&self.client, id, answer).await?;
                E::cached(&mut self.known()).remove(&id);
            }
            Err(NexudusError::Malformed(_)) => {
                E::cached(&mut self.known()).remove(&id);
            }
            Err(error) => return Err(error.into()),
        }
        Ok(())
    }

    /// Replaces everything known of `E` by a full listing.
    pub(crate) fn replace_all<E: Referenced>(&self, records: Vec<E>) {
        *E::cached(&mut self.known()) = records.into_iter().map(|record| (record.id(), record)).collect();
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

    /// The time zone of the location of `resource`, when it can be known.
    pub(crate) async fn zone_of_resource(&self, resource: u64) -> Result<Option<Zone>, IngestError> {
        let Ok(resource) = self.lookup::<Resource>(resource).await? else { return Ok(None) };
        Ok(self.zone_of(resource.business_id).await?.ok())
    }
}
