//! The catalogue as read: a value, cheap to clone and to query.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use doorsync_layout::Layout;
use doorsync_log::EventLog;
use doorsync_proto::{KisiGroupId, MappingSource, Timestamp};
use futures::{StreamExt, TryStreamExt};
use jiff::tz::TimeZone;

use crate::error::CatalogueError;
use crate::local_times::{LocalTimes, zone_named};
use crate::records::{CatalogueKey, KisiGroup, Location, Named, id_text};

/// How many records [`Catalogue::read`] reads at once.
const READS_IN_FLIGHT: usize = 16;

#[derive(Debug, Clone, Default)]
struct Entries {
    locations: BTreeMap<u64, Location>,
    sources: BTreeMap<MappingSource, Named>,
    groups: BTreeMap<KisiGroupId, KisiGroup>,
}

/// Every name and time zone the bucket held when it was read. An empty catalogue (the default)
/// knows nothing, so every label is the id and every zone UTC.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    entries: Arc<Entries>,
}

impl Catalogue {
    /// Reads the whole bucket once. A record this version cannot decode (written by a newer
    /// one) is left out with a warning: a name missing shows the id instead.
    pub async fn read(log: &dyn EventLog, layout: &Layout) -> Result<Self, CatalogueError> {
        let bucket = &layout.catalogue_bucket;
        let failed =
            |action: &'static str| move |source| CatalogueError::Log { action, bucket: bucket.clone(), source };
        let kv = log.key_value(bucket).await.map_err(failed("open"))?;
        let keys = kv.keys().await.map_err(failed("list the keys of"))?;
        // Several reads in flight: on JetStream each is a round trip, and a page waits for them.
        let mut entries =
            futures::stream::iter(keys.into_iter().filter_map(|key| Some((CatalogueKey::parse(&key)?, key))))
                .map(|(parsed, key)| {
                    let kv = Arc::clone(&kv);
                    async move { kv.get(&key).await.map(|entry| (parsed, key, entry)) }
                })
                .buffered(READS_IN_FLIGHT);
        let mut catalogue = Self::default();
        while let Some((parsed, key, entry)) = entries.try_next().await.map_err(failed("read"))? {
            let Some(entry) = entry else { continue };
            if let Err(error) = catalogue.insert_encoded(parsed, &entry.value) {
                tracing::warn!(%key, %error, "a catalogue record cannot be decoded; its id is shown instead of its name");
            }
        }
        Ok(catalogue)
    }

    fn insert_encoded(&mut self, key: CatalogueKey, value: &[u8]) -> Result<(), rmp_serde::decode::Error> {
        let entries = Arc::make_mut(&mut self.entries);
        match key {
            CatalogueKey::Location(id) => {
                entries.locations.insert(id, rmp_serde::from_slice(value)?);
            }
            CatalogueKey::Source(source) => {
                entries.sources.insert(source, rmp_serde::from_slice(value)?);
            }
            CatalogueKey::KisiGroup(group) => {
                entries.groups.insert(group, rmp_serde::from_slice(value)?);
            }
        }
        Ok(())
    }

    /// This catalogue and location `id` (for tests and tools that build one by hand).
    pub fn with_location(mut self, id: u64, location: Location) -> Self {
        Arc::make_mut(&mut self.entries).locations.insert(id, location);
        self
    }

    /// This catalogue and a resource, pass product or desk/office.
    pub fn with_source(mut self, source: MappingSource, named: Named) -> Self {
        Arc::make_mut(&mut self.entries).sources.insert(source, named);
        self
    }

    /// This catalogue and a Kisi group.
    pub fn with_group(mut self, id: KisiGroupId, group: KisiGroup) -> Self {
        Arc::make_mut(&mut self.entries).groups.insert(id, group);
        self
    }

    pub fn location(&self, id: u64) -> Option<&Location> {
        self.entries.locations.get(&id)
    }

    pub fn source(&self, source: MappingSource) -> Option<&Named> {
        self.entries.sources.get(&source)
    }

    /// The Kisi group's name.
    pub fn group(&self, id: KisiGroupId) -> Option<&str> {
        self.entries.groups.get(&id).map(|group| group.name.as_str())
    }

    pub fn kisi_group(&self, id: KisiGroupId) -> Option<&KisiGroup> {
        self.entries.groups.get(&id)
    }

    /// The time zone of location `id`, when known and in the bundled tz database.
    pub fn location_zone(&self, id: u64) -> Option<TimeZone> {
        zone_named(self.location(id)?.time_zone.as_deref()?)
    }

    /// The time zone of the location `source` belongs to.
    pub fn zone_of(&self, source: MappingSource) -> Option<TimeZone> {
        self.location_zone(self.source(source)?.location?)
    }

    /// The zone of the location with the lowest id that has a usable one.
    pub fn first_location_zone(&self) -> Option<TimeZone> {
        self.entries.locations.keys().find_map(|&id| self.location_zone(id))
    }

    /// The zone the operator reads times in: `configured` (`admin.time_zone`, an IANA name),
    /// else the first location's, else UTC.
    pub fn operator_zone(&self, configured: Option<&str>) -> TimeZone {
        configured.and_then(zone_named).or_else(|| self.first_location_zone()).unwrap_or(TimeZone::UTC)
    }

    /// Local times for `source`: in its location's zone, else the first location's, else UTC.
    pub fn times_for(&self, source: MappingSource, now: Timestamp) -> LocalTimes {
        let zone = self.zone_of(source).or_else(|| self.first_location_zone()).unwrap_or(TimeZone::UTC);
        LocalTimes::new(zone, now)
    }

    /// "Meeting Room 1 · London", with "resource 42" as its small print.
    pub fn source_label(&self, source: MappingSource) -> Label {
        let id = id_text(CatalogueKey::Source(source));
        match self.source(source) {
            Some(named) => Label {
                name: named.name.clone().filter(|name| !name.trim().is_empty()),
                place: named.location.and_then(|location| self.location_name(location)),
                id,
            },
            None => Label { name: None, place: None, id },
        }
    }

    /// "Members' entrance", with "Kisi group 12" as its small print.
    pub fn group_label(&self, id: KisiGroupId) -> Label {
        let name = self.group(id).filter(|name| !name.trim().is_empty()).map(str::to_owned);
        Label { name, place: None, id: id_text(CatalogueKey::KisiGroup(id)) }
    }

    /// "London", with "location 3" as its small print.
    pub fn location_label(&self, id: u64) -> Label {
        Label { name: self.location_name(id), place: None, id: id_text(CatalogueKey::Location(id)) }
    }

    fn location_name(&self, id: u64) -> Option<String> {
        self.location(id).map(|location| location.name.clone()).filter(|name| !name.trim().is_empty())
    }
}

/// How a thing is named to an operator: its name and place ("Meeting Room 1 · London"), or,
/// when the catalogue has no name for it, its id ("resource 42"). Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    name: Option<String>,
    place: Option<String>,
    id: String,
}

impl Label {
    /// The name alone, when the catalogue has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The location's name, when known.
    pub fn place(&self) -> Option<&str> {
        self.place.as_deref()
    }

    /// The id as small print: "resource 42".
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The label followed by its id in brackets ("Meeting Room 1 · London (resource 42)"), or
    /// the id alone when there is no name, for text with no room for small print.
    pub fn with_id(&self) -> String {
        match self.name {
            Some(_) => format!("{self} ({})", self.id),
            None => self.id.clone(),
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.name, &self.place) {
            (Some(name), Some(place)) => write!(f, "{name} · {place}"),
            (Some(name), None) => f.write_str(name),
            (None, _) => f.write_str(&self.id),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use doorsync_proto::{PassProductId, ResourceId, Subjects};

    use super::*;
    use crate::CatalogueWriter;

    fn london() -> Location {
        Location { name: "London".into(), time_zone: Some("Europe/London".into()) }
    }

    #[test]
    fn labels_say_the_name_and_place_and_fall_back_to_the_id() {
        let room = MappingSource::Resource(ResourceId(42));
        let catalogue = Catalogue::default()
            .with_location(3, london())
            .with_source(room, Named { name: Some("Meeting Room 1".into()), location: Some(3) })
            .with_source(MappingSource::PassProduct(PassProductId(7)), Named { name: None, location: Some(3) })
            .with_group(KisiGroupId(12), KisiGroup { name: "Members' entrance".into(), place_id: Some(1) });
        let label = catalogue.source_label(room);
        assert_eq!(label.to_string(), "Meeting Room 1 · London");
        assert_eq!(label.id(), "resource 42");
        assert_eq!(label.with_id(), "Meeting Room 1 · London (resource 42)");
        assert_eq!(catalogue.source_label(MappingSource::PassProduct(PassProductId(7))).to_string(), "pass product 7");
        assert_eq!(catalogue.source_label(MappingSource::Resource(ResourceId(43))).with_id(), "resource 43");
        assert_eq!(catalogue.group_label(KisiGroupId(12)).to_string(), "Members' entrance");
        assert_eq!(catalogue.group_label(KisiGroupId(13)).to_string(), "Kisi group 13");
        assert_eq!(catalogue.location_label(3).to_string(), "London");
        assert_eq!(catalogue.location_label(4).to_string(), "location 4");
    }

    #[test]
    fn zones_come_from_the_sources_location_then_the_first_location_then_utc() {
        let room = MappingSource::Resource(ResourceId(42));
        let empty = Catalogue::default();
        assert_eq!(empty.operator_zone(None), TimeZone::UTC);
        assert_eq!(empty.zone_of(room), None);
        let catalogue = Catalogue::default()
            .with_location(5, Location { name: "New York".into(), time_zone: Some("America/New_York".into()) })
            .with_location(2, Location { name: "Atlantis".into(), time_zone: Some("Atlantis/Central".into()) })
            .with_location(3, london())
            .with_source(room, Named { name: None, location: Some(5) });
        assert_eq!(catalogue.zone_of(room).unwrap().iana_name(), Some("America/New_York"));
        assert_eq!(catalogue.first_location_zone().unwrap().iana_name(), Some("Europe/London"), "2 has no usable zone");
        assert_eq!(catalogue.operator_zone(None).iana_name(), Some("Europe/London"));
        assert_eq!(catalogue.operator_zone(Some("Asia/Tokyo")).iana_name(), Some("Asia/Tokyo"));
        let at = Timestamp::from_unix_millis(0);
        assert_eq!(catalogue.times_for(MappingSource::Resource(ResourceId(1)), at).zone_name(), "Europe/London");
    }

    #[tokio::test]
    async fn what_the_writer_puts_is_what_a_read_finds() {
        let layout = Layout::new(Subjects::new("test", 4).unwrap());
        let log = doorsync_log_embedded::EmbeddedLog::in_memory(layout.streams()).unwrap();
        let writer = CatalogueWriter::open(&log, &layout).await.unwrap();
        let room = MappingSource::Resource(ResourceId(42));
        writer.location(3, &london()).await.unwrap();
        writer.source(room, &Named { name: Some("Meeting Room 1".into()), location: Some(3) }).await.unwrap();
        writer.group(KisiGroupId(12), &KisiGroup { name: "Front door".into(), place_id: None }).await.unwrap();
        let kv = doorsync_log::EventLog::key_value(&log, &layout.catalogue_bucket).await.unwrap();
        kv.put("location.x", bytes::Bytes::from_static(b"not a record")).await.unwrap();
        kv.put("location.4", bytes::Bytes::from_static(b"\xc1")).await.unwrap();

        let catalogue = Catalogue::read(&log, &layout).await.unwrap();
        assert_eq!(catalogue.source_label(room).to_string(), "Meeting Room 1 · London");
        assert_eq!(catalogue.group(KisiGroupId(12)), Some("Front door"));
        assert_eq!(catalogue.location(4), None, "an undecodable record is left out");
    }
}
