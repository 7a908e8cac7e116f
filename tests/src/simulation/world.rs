//! The simulated coworking operator: Nexudus locations in three time zones with their rooms,
//! pass products, desks and offices; the Kisi groups they open, and what Kisi holds that
//! doorsync must never touch (other people's users, groups and assignments).

use std::sync::Arc;

use doorsync_access::Mapping;
use doorsync_clock::SharedClock;
use doorsync_kisi_sim::{KisiSimulator, SimAssignment, SimUser};
use doorsync_nexudus::{Credentials, Secret};
use doorsync_nexudus_sim::{NexudusSimulator, SimEntity};
use doorsync_proto::{FloorPlanItemId, KisiGroupId, KisiUserId, MemberId, PassProductId, ResourceId};
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::json;

use super::SimFailure;
use super::clock::SimClock;

pub(crate) const KISI_API_KEY: &str = "doorsync-simulation-kisi-key";
pub(crate) const WEBHOOK_SECRET: &str = "doorsync-simulation-webhook-secret";
pub(crate) const NEXUDUS_USER: &str = "integrations@operator.invalid";
pub(crate) const NEXUDUS_PASSWORD: &str = "doorsync-simulation-nexudus-password";
/// Kisi admits this many requests per second and API user (the real Kisi: 5). A little more
/// than Kisi so that a reconciliation of every group does not stretch over many steps.
pub(crate) const KISI_REQUESTS_PER_SECOND: u32 = 10;

/// The locations: a city, its Windows zone id as Nexudus reports it, and the IANA zone the
/// oracle reads it as. The oracle's own table, not doorsync's, so that the two can disagree.
pub(crate) const LOCATIONS: [(&str, &str, &str); 3] = [
    ("London", "GMT Standard Time", "Europe/London"),
    ("San Francisco", "Pacific Standard Time", "America/Los_Angeles"),
    ("Sydney", "AUS Eastern Standard Time", "Australia/Sydney"),
];

/// Nexudus's floor-plan item types.
const OFFICE_ITEM_TYPE: u64 = 1;
const DEDICATED_DESK_ITEM_TYPE: u64 = 2;
const DESKS_PER_LOCATION: usize = 2;
/// Minutes a time pass includes; a product without `MinutesIncluded` is a day pass.
const TIME_PASS_MINUTES: u64 = 600;

#[derive(Debug, Clone)]
pub(crate) struct Room {
    pub(crate) resource: u64,
    /// The group the configuration links it to; `None` for the room whose group comes from its
    /// own `AccessControlGroupId` in Nexudus, which the workload changes.
    pub(crate) configured_group: Option<KisiGroupId>,
}

#[derive(Debug, Clone)]
pub(crate) struct Location {
    pub(crate) city: &'static str,
    pub(crate) business: u64,
    pub(crate) floor: KisiGroupId,
    pub(crate) rooms: Vec<Room>,
    /// A group only the Nexudus-mapped room ever opens.
    pub(crate) nexudus_mapped_group: KisiGroupId,
    pub(crate) day_pass: u64,
    pub(crate) time_pass: u64,
    pub(crate) desks: Vec<u64>,
    pub(crate) office: u64,
}

impl Location {
    /// The room whose group Nexudus says (and the workload changes).
    pub(crate) fn nexudus_mapped_room(&self) -> Option<&Room> {
        self.rooms.iter().find(|room| room.configured_group.is_none())
    }

    /// The groups the Nexudus-mapped room may be linked to (or none of them).
    pub(crate) fn remap_targets(&self) -> Vec<KisiGroupId> {
        let mut targets = vec![self.nexudus_mapped_group];
        targets.extend(self.rooms.iter().filter_map(|room| room.configured_group));
        targets
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) id: MemberId,
    pub(crate) home: usize,
    /// Every email the member has had, oldest first: doorsync finds Kisi users by email, and an
    /// email change leaves the user with the old one.
    pub(crate) emails: Vec<String>,
    pub(crate) active: bool,
}

/// Everything the operator set up, by id.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub(crate) locations: Vec<Location>,
    pub(crate) members: Vec<Member>,
    /// The mapping in doorsync's configuration.
    pub(crate) configured: Mapping,
    /// Every group doorsync may manage: the configured ones and those a room may be remapped to.
    pub(crate) managed_groups: Vec<KisiGroupId>,
}

impl Site {
    pub(crate) fn member(&self, id: MemberId) -> Option<&Member> {
        self.members.iter().find(|member| member.id == id)
    }

    /// The member whose email (current or former) this is.
    pub(crate) fn member_with_email(&self, email: &str) -> Option<&Member> {
        let email = email.to_lowercase();
        self.members.iter().find(|member| member.emails.contains(&email))
    }
}

/// What Kisi held before doorsync started that is not doorsync's: users who are not members
/// (with doorsync's own API user) and every assignment of them or on a group doorsync does not
/// manage. It must stay exactly as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unmanaged {
    pub(crate) users: Vec<SimUser>,
    pub(crate) assignments: Vec<SimAssignment>,
}

impl Unmanaged {
    /// Reads the unmanaged part of what Kisi holds now.
    pub(crate) fn read(kisi: &doorsync_kisi_sim::SimHandle, site: &Site) -> Self {
        let mut users: Vec<SimUser> =
            kisi.users().into_iter().filter(|user| site.member_with_email(&user.email).is_none()).collect();
        users.sort_by_key(|user| user.id);
        let unmanaged_user = |id: KisiUserId| users.iter().any(|user| user.id == id);
        let mut assignments: Vec<SimAssignment> = kisi
            .assignments()
            .into_iter()
            .filter(|assignment| unmanaged_user(assignment.user) || !site.managed_groups.contains(&assignment.group))
            .collect();
        assignments.sort_by_key(|assignment| assignment.id);
        Self { users, assignments }
    }
}

/// Both simulators, furnished.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) nexudus: NexudusSimulator,
    pub(crate) kisi: KisiSimulator,
    pub(crate) site: Site,
    pub(crate) unmanaged: Unmanaged,
}

impl World {
    pub(crate) async fn build(clock: &SimClock, members: usize, rng: &mut StdRng) -> Result<Self, SimFailure> {
        let shared: SharedClock = Arc::new(clock.clone());
        let mut kisi_options = doorsync_kisi_sim::SimOptions::new(Arc::clone(&shared));
        kisi_options.seed = rng.random();
        kisi_options.requests_per_second = KISI_REQUESTS_PER_SECOND;
        let kisi =
            KisiSimulator::start(kisi_options).await.map_err(SimFailure::setup("starting the Kisi simulator"))?;
        let handle = kisi.handle();
        handle
            .add_api_account("integration@operator.invalid", "doorsync", KISI_API_KEY)
            .map_err(SimFailure::setup("creating doorsync's Kisi API key"))?;

        let mut nexudus_options = doorsync_nexudus_sim::SimOptions::new(shared);
        nexudus_options.credentials =
            Credentials { username: NEXUDUS_USER.to_owned(), password: Secret::new(NEXUDUS_PASSWORD) };
        // Throttling is injected as a fault (`throttle_next`) rather than by request windows,
        // which would make every poll wait out seconds of virtual time request by request.
        nexudus_options.limits = None;
        nexudus_options.seed = rng.random();
        nexudus_options.webhook_timeout = std::time::Duration::from_secs(5);
        let nexudus = NexudusSimulator::start(nexudus_options)
            .await
            .map_err(SimFailure::setup("starting the Nexudus simulator"))?;

        let mut site = Site {
            locations: Vec::new(),
            members: Vec::new(),
            configured: Mapping::default(),
            managed_groups: Vec::new(),
        };
        furnish(&nexudus, &handle, &mut site).map_err(SimFailure::setup("furnishing the locations"))?;
        enrol(&nexudus, &mut site, members, rng).map_err(SimFailure::setup("creating the members"))?;
        seed_unmanaged(&handle, &site).map_err(SimFailure::setup("seeding Kisi with what is not doorsync's"))?;
        let unmanaged = Unmanaged::read(&handle, &site);
        Ok(Self { nexudus, kisi, site, unmanaged })
    }

    pub(crate) async fn shutdown(self) {
        self.nexudus.shutdown().await;
        self.kisi.shutdown().await;
    }
}

fn furnish(
    nexudus: &NexudusSimulator,
    kisi: &doorsync_kisi_sim::SimHandle,
    site: &mut Site,
) -> Result<(), doorsync_nexudus_sim::SimError> {
    for (city, windows_zone, _) in LOCATIONS {
        let business = nexudus.create_location(city, windows_zone)?;
        let floor = kisi.add_group(&format!("{city} coworking floor"));
        let offices = kisi.add_group(&format!("{city} private offices"));
        let nexudus_mapped_group = kisi.add_group(&format!("{city} room C"));
        let mut rooms = Vec::new();
        for name in ["A", "B"] {
            let group = kisi.add_group(&format!("{city} room {name}"));
            let resource =
                nexudus.create(SimEntity::Resource, json!({"BusinessId": business, "Name": format!("Room {name}")}))?;
            site.configured.resources.insert(ResourceId(resource), group);
            rooms.push(Room { resource, configured_group: Some(group) });
        }
        // Linked in Nexudus itself; doorsync reads the link because `mapping_from_nexudus` is on.
        let fields = json!({"BusinessId": business, "Name": "Room C",
            "AccessControlGroupId": nexudus_mapped_group.0.to_string()});
        rooms.push(Room { resource: nexudus.create(SimEntity::Resource, fields)?, configured_group: None });

        let day_pass =
            nexudus.create(SimEntity::TimePass, json!({"Name": format!("{city} day pass"), "BusinessId": business}))?;
        let time_pass = nexudus.create(
            SimEntity::TimePass,
            json!({"Name": format!("{city} 10-hour pass"), "BusinessId": business, "MinutesIncluded": TIME_PASS_MINUTES}),
        )?;
        site.configured.pass_products.insert(PassProductId(day_pass), floor);
        site.configured.pass_products.insert(PassProductId(time_pass), floor);
        let mut desks = Vec::new();
        for number in 1..=DESKS_PER_LOCATION {
            let fields = json!({"Name": format!("{city} desk {number}"), "ItemType": DEDICATED_DESK_ITEM_TYPE,
                "FloorPlanBusinessId": business});
            let desk = nexudus.create(SimEntity::FloorPlanDesk, fields)?;
            site.configured.floor_plan_items.insert(FloorPlanItemId(desk), floor);
            desks.push(desk);
        }
        let fields =
            json!({"Name": format!("{city} office"), "ItemType": OFFICE_ITEM_TYPE, "FloorPlanBusinessId": business});
        let office = nexudus.create(SimEntity::FloorPlanDesk, fields)?;
        site.configured.floor_plan_items.insert(FloorPlanItemId(office), offices);

        site.managed_groups.extend(rooms.iter().filter_map(|room| room.configured_group));
        site.managed_groups.extend([floor, offices, nexudus_mapped_group]);
        site.locations.push(Location {
            city,
            business,
            floor,
            rooms,
            nexudus_mapped_group,
            day_pass,
            time_pass,
            desks,
            office,
        });
    }
    site.managed_groups.sort_unstable();
    Ok(())
}

fn enrol(
    nexudus: &NexudusSimulator,
    site: &mut Site,
    count: usize,
    rng: &mut StdRng,
) -> Result<(), doorsync_nexudus_sim::SimError> {
    for number in 1..=count {
        let email = format!("member{number}@members.invalid");
        let fields = json!({"FullName": format!("Member {number}"), "Email": email, "Active": true});
        let id = MemberId(nexudus.create(SimEntity::Coworker, fields)?);
        let home = rng.random_range(0..site.locations.len());
        site.members.push(Member { id, home, emails: vec![email], active: true });
    }
    Ok(())
}

/// Staff the operator let in by hand (on doorsync's groups too, with no end), another
/// integration's API user with its own assignments, and groups doorsync has nothing to do with.
fn seed_unmanaged(kisi: &doorsync_kisi_sim::SimHandle, site: &Site) -> Result<(), doorsync_kisi_sim::SimError> {
    let server_room = kisi.add_group("Server room");
    let kitchen = kisi.add_group("Staff kitchen");
    let badge_printer = kisi.add_api_account("badges@operator.invalid", "badge printer", "badge-printer-key")?;
    let mut managed = Vec::new();
    for location in &site.locations {
        managed.push(location.floor);
        managed.extend(location.rooms.first().and_then(|room| room.configured_group));
    }
    for (number, creator) in [(1, None), (2, Some(badge_printer))] {
        let staff = kisi.add_user(&format!("staff{number}@operator.invalid"), &format!("Staff {number}"))?;
        kisi.add_assignment_as(creator, staff, server_room, None, None)?;
        kisi.add_assignment_as(creator, staff, kitchen, None, None)?;
        for group in &managed {
            kisi.add_assignment_as(creator, staff, *group, None, None)?;
        }
    }
    let cleaner = kisi.add_user("cleaning@contractor.invalid", "Cleaning contractor")?;
    kisi.add_assignment_as(Some(badge_printer), cleaner, kitchen, None, None)?;
    Ok(())
}
