//! The simulated Nexudus and Kisi of the demo and what they hold before doorsync starts: Kisi
//! groups and the integration's API key; Nexudus locations in three time zones with meeting
//! rooms, pass products, desks and offices, and the members. Also the names of all of it, so
//! that what happens can be told in words.

use std::collections::BTreeMap;

use doorsync_clock::SharedClock;
use doorsync_config::MappingEntry;
use doorsync_kisi_sim::KisiSimulator;
use doorsync_nexudus::{Credentials, Secret};
use doorsync_nexudus_sim::{NexudusSimulator, SimEntity};
use doorsync_proto::{KisiGroupId, MemberId};
use jiff::tz::{TimeZone, TimeZoneDatabase};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde_json::json;

use super::DemoError;

/// The Kisi simulator admits this many requests per second, twenty times what Kisi allows (5 per
/// API user), so that the first sync of a few hundred members takes seconds rather than minutes.
pub(super) const KISI_REQUESTS_PER_SECOND: u32 = 100;
/// What the Kisi writer is set to, below the simulator's limit as the real one is below Kisi's.
pub(super) const WRITER_REQUESTS_PER_SECOND: u32 = 80;

/// The demo's locations: a city, its Windows time zone id (as Nexudus reports zones) and two
/// meeting rooms.
const LOCATIONS: [(&str, &str, [&str; 2]); 3] = [
    ("London", "GMT Standard Time", ["Thames", "Fleet"]),
    ("San Francisco", "Pacific Standard Time", ["Presidio", "Mission"]),
    ("Sydney", "AUS Eastern Standard Time", ["Bondi", "Manly"]),
];
const DESKS_PER_LOCATION: usize = 10;
const OFFICES_PER_LOCATION: usize = 3;
/// Minutes of coworking a time pass includes (a pass without any is a day pass).
const TIME_PASS_MINUTES: u32 = 600;

const FIRST_NAMES: [&str; 32] = [
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Barbara",
    "Dennis",
    "Margaret",
    "Ken",
    "Radia",
    "Tim",
    "Frances",
    "Edsger",
    "Katherine",
    "Donald",
    "Hedy",
    "John",
    "Sophie",
    "Niklaus",
    "Mary",
    "Bjarne",
    "Shafi",
    "Guido",
    "Annie",
    "Leslie",
    "Jean",
    "Vint",
    "Karen",
    "Whitfield",
    "Hal",
    "Joan",
    "Yukihiro",
    "Evelyn",
];
const LAST_NAMES: [&str; 32] = [
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Liskov",
    "Ritchie",
    "Hamilton",
    "Thompson",
    "Perlman",
    "Berners-Lee",
    "Allen",
    "Dijkstra",
    "Johnson",
    "Knuth",
    "Lamarr",
    "McCarthy",
    "Wilson",
    "Wirth",
    "Keller",
    "Stroustrup",
    "Goldwasser",
    "Kay",
    "Easley",
    "Lamport",
    "Sammet",
    "Cerf",
    "Jones",
    "Diffie",
    "Abelson",
    "Clarke",
    "Matsumoto",
    "Berezin",
];

/// A location and its zone.
#[derive(Debug)]
pub(super) struct Location {
    pub(super) city: &'static str,
    pub(super) business: u64,
    pub(super) windows_zone: &'static str,
    pub(super) iana_zone: &'static str,
    pub(super) zone: TimeZone,
    pub(super) day_pass: u64,
    pub(super) time_pass: u64,
    /// The group a pass or a desk opens.
    pub(super) floor: KisiGroupId,
}

#[derive(Debug)]
pub(super) struct Room {
    pub(super) resource: u64,
    pub(super) name: String,
    pub(super) location: usize,
    pub(super) group: KisiGroupId,
}

/// A dedicated desk or a private office on a location's floor plan.
#[derive(Debug)]
pub(super) struct Space {
    pub(super) id: u64,
    pub(super) name: String,
    pub(super) location: usize,
}

#[derive(Debug)]
pub(super) struct Member {
    pub(super) full_name: String,
    pub(super) email: String,
    /// The location the member usually works from.
    pub(super) location: usize,
}

#[derive(Debug)]
pub(super) struct Group {
    pub(super) name: String,
    /// Whose wall clock the group's doors keep.
    pub(super) location: usize,
}

/// Everything the demo created, by id, with the names to tell it by.
#[derive(Debug, Default)]
pub(super) struct Directory {
    pub(super) locations: Vec<Location>,
    pub(super) rooms: Vec<Room>,
    pub(super) spaces: Vec<Space>,
    pub(super) members: BTreeMap<MemberId, Member>,
    pub(super) groups: BTreeMap<KisiGroupId, Group>,
    /// Pass products by id: their name.
    pub(super) products: BTreeMap<u64, String>,
    /// `[[mapping]]` entries: which room, pass product, desk or office opens which group.
    pub(super) mapping: Vec<MappingEntry>,
}

impl Directory {
    /// "Ada L. (member 1042)"
    pub(super) fn member(&self, member: MemberId) -> String {
        match self.members.get(&member) {
            Some(known) => format!("{} (member {member})", short_name(&known.full_name)),
            None => format!("member {member}"),
        }
    }

    /// "London · Room Thames (Kisi group 3)"
    pub(super) fn group(&self, group: KisiGroupId) -> String {
        match self.groups.get(&group) {
            Some(known) => format!("{} (Kisi group {group})", known.name),
            None => format!("Kisi group {group}"),
        }
    }

    pub(super) fn group_location(&self, group: KisiGroupId) -> Option<&Location> {
        self.groups.get(&group).and_then(|known| self.locations.get(known.location))
    }

    pub(super) fn space(&self, id: u64) -> Option<&Space> {
        self.spaces.iter().find(|space| space.id == id)
    }

    fn map(&mut self, entry: MappingEntry) {
        self.mapping.push(entry);
    }
}

/// "Ada Lovelace" -> "Ada L."
fn short_name(full_name: &str) -> String {
    match full_name.split_once(' ') {
        Some((first, last)) => match last.chars().next() {
            Some(initial) => format!("{first} {initial}."),
            None => first.to_owned(),
        },
        None => full_name.to_owned(),
    }
}

/// The credentials doorsync is given for the simulators, made up for each run.
pub(super) struct DemoSecrets {
    pub(super) kisi_api_key: String,
    pub(super) nexudus_username: String,
    pub(super) nexudus_password: String,
    pub(super) webhook_secret: String,
}

impl std::fmt::Debug for DemoSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoSecrets").field("nexudus_username", &self.nexudus_username).finish_non_exhaustive()
    }
}

impl DemoSecrets {
    fn generate(rng: &mut StdRng) -> Self {
        let mut token = || (0..4).map(|_| format!("{:016x}", rng.random::<u64>())).collect::<String>();
        Self {
            kisi_api_key: token(),
            nexudus_username: "integrations@demo.invalid".to_owned(),
            nexudus_password: token(),
            webhook_secret: token(),
        }
    }
}

/// Both simulators, started and filled with the places and members of the demo.
#[derive(Debug)]
pub(super) struct World {
    pub(super) nexudus: NexudusSimulator,
    pub(super) kisi: KisiSimulator,
    pub(super) directory: Directory,
    pub(super) secrets: DemoSecrets,
}

impl World {
    pub(super) async fn start(clock: SharedClock, members: u32, rng: &mut StdRng) -> Result<Self, DemoError> {
        let secrets = DemoSecrets::generate(rng);
        let mut kisi_options = doorsync_kisi_sim::SimOptions::new(clock.clone());
        kisi_options.requests_per_second = KISI_REQUESTS_PER_SECOND;
        kisi_options.organization_name = "doorsync demo coworking".to_owned();
        let kisi = KisiSimulator::start(kisi_options)
            .await
            .map_err(|source| DemoError::Kisi { what: "starting the Kisi simulator", source: Box::new(source) })?;
        kisi.handle().add_api_account("integration@example.com", "doorsync", &secrets.kisi_api_key).map_err(
            |source| DemoError::Kisi {
                what: "creating the integration's API key in the Kisi simulator",
                source: Box::new(source),
            },
        )?;

        let mut nexudus_options = doorsync_nexudus_sim::SimOptions::new(clock);
        nexudus_options.credentials = Credentials {
            username: secrets.nexudus_username.clone(),
            password: Secret::new(&secrets.nexudus_password),
        };
        // Webhooks and reads are what the demo is about; Nexudus's request limits would only slow
        // the first read of a few hundred members.
        nexudus_options.limits = None;
        nexudus_options.seed = rng.random();
        let nexudus = NexudusSimulator::start(nexudus_options).await.map_err(|source| DemoError::Nexudus {
            what: "starting the Nexudus simulator",
            source: Box::new(source),
        })?;

        let mut directory = Directory::default();
        furnish(&nexudus, &kisi, &mut directory).map_err(|error| DemoError::Furnish(Box::new(error)))?;
        enrol(&nexudus, &mut directory, members, rng).map_err(|error| DemoError::Enrol(Box::new(error)))?;
        Ok(Self { nexudus, kisi, directory, secrets })
    }

    pub(super) async fn shutdown(self) {
        self.nexudus.shutdown().await;
        self.kisi.shutdown().await;
    }
}

/// Locations with their rooms, pass products, desks and offices in Nexudus, the groups of doors
/// they open in Kisi, and the mapping between the two.
fn furnish(nexudus: &NexudusSimulator, kisi: &KisiSimulator, directory: &mut Directory) -> Result<(), DemoError> {
    let kisi = kisi.handle();
    for (index, (city, windows_zone, rooms)) in LOCATIONS.into_iter().enumerate() {
        let iana_zone =
            doorsync_access::iana_zone_for_windows(windows_zone).ok_or(DemoError::UnknownZone(windows_zone))?;
        let zone = TimeZoneDatabase::bundled()
            .get(iana_zone)
            .map_err(|source| DemoError::TimeZone { zone: iana_zone, source: Box::new(source) })?;
        let business = nexudus.create_location(city, windows_zone)?;
        let mut group = |name: String| {
            let id = kisi.add_group(&name);
            directory.groups.insert(id, Group { name, location: index });
            id
        };
        let floor = group(format!("{city} · Coworking floor"));
        let offices = group(format!("{city} · Private offices"));
        let room_groups: Vec<(&str, KisiGroupId)> =
            rooms.iter().map(|room| (*room, group(format!("{city} · Room {room}")))).collect();

        for (room, kisi_group) in room_groups {
            let name = format!("Room {room}");
            let resource = nexudus.create(SimEntity::Resource, json!({"BusinessId": business, "Name": name}))?;
            directory.rooms.push(Room { resource, name, location: index, group: kisi_group });
            directory.map(entry(Source::Resource(resource), kisi_group));
        }
        let mut product = |name: String, minutes: Option<u32>| -> Result<u64, DemoError> {
            let mut fields = json!({"Name": name, "BusinessId": business});
            if let Some(minutes) = minutes {
                fields["MinutesIncluded"] = json!(minutes);
            }
            let id = nexudus.create(SimEntity::TimePass, fields)?;
            directory.products.insert(id, name);
            directory.map(entry(Source::PassProduct(id), floor));
            Ok(id)
        };
        let day_pass = product(format!("{city} day pass"), None)?;
        let time_pass = product(format!("{city} {}-hour pass", TIME_PASS_MINUTES / 60), Some(TIME_PASS_MINUTES))?;
        // Nexudus's floor-plan item types: 1 is a private office, 2 a dedicated desk.
        let spaces = (1..=DESKS_PER_LOCATION)
            .map(|number| (format!("desk {number}"), 2, floor))
            .chain((1..=OFFICES_PER_LOCATION).map(|number| (format!("office {number}"), 1, offices)));
        for (name, item_type, kisi_group) in spaces {
            let name = format!("{city} {name}");
            let fields = json!({"Name": name, "ItemType": item_type, "FloorPlanBusinessId": business});
            let id = nexudus.create(SimEntity::FloorPlanDesk, fields)?;
            directory.spaces.push(Space { id, name, location: index });
            directory.map(entry(Source::FloorPlanItem(id), kisi_group));
        }
        directory.locations.push(Location {
            city,
            business,
            windows_zone,
            iana_zone,
            zone,
            day_pass,
            time_pass,
            floor,
        });
    }
    Ok(())
}

enum Source {
    Resource(u64),
    PassProduct(u64),
    FloorPlanItem(u64),
}

fn entry(source: Source, group: KisiGroupId) -> MappingEntry {
    let (resource, pass_product, floor_plan_item) = match source {
        Source::Resource(id) => (Some(id), None, None),
        Source::PassProduct(id) => (None, Some(id), None),
        Source::FloorPlanItem(id) => (None, None, Some(id)),
    };
    MappingEntry { resource, pass_product, floor_plan_item, kisi_group: Some(group.0), kisi_group_name: None }
}

/// `count` active members, each working mostly from one location.
fn enrol(
    nexudus: &NexudusSimulator,
    directory: &mut Directory,
    count: u32,
    rng: &mut StdRng,
) -> Result<(), doorsync_nexudus_sim::SimError> {
    for number in 1..=count {
        let first = FIRST_NAMES.choose(rng).copied().unwrap_or("Ada");
        let last = LAST_NAMES.choose(rng).copied().unwrap_or("Lovelace");
        let full_name = format!("{first} {last}");
        let local_part: String = format!("{first}.{last}")
            .to_lowercase()
            .chars()
            .map(|character| if character.is_ascii_alphanumeric() || character == '.' { character } else { '-' })
            .collect();
        let email = format!("{local_part}.{number}@demo.invalid");
        let fields = json!({"FullName": full_name, "Email": email, "Active": true});
        let id = nexudus.create(SimEntity::Coworker, fields)?;
        let location = rng.random_range(0..directory.locations.len());
        directory.members.insert(MemberId(id), Member { full_name, email, location });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_told_by_first_name_and_initial() {
        assert_eq!(short_name("Ada Lovelace"), "Ada L.");
        assert_eq!(short_name("Tim Berners-Lee"), "Tim B.");
        assert_eq!(short_name("Hedy"), "Hedy");
    }
}
