//! The simulated coworking operator: Nexudus locations in three time zones with their rooms,
//! pass products, desks and offices; the Kisi groups they open, and what Kisi holds that
//! doorsync did not make: other people's users, groups and assignments, which it must never
//! touch; staff users whose emails members use, which it links for memberships only; and, when
//! the seed says so, what Nexudus's built-in Kisi integration left, which it adopts.

use std::sync::Arc;

use doorsync_access::Mapping;
use doorsync_clock::{Clock, SharedClock};
use doorsync_kisi_sim::{KisiSimulator, SeedUser, SimAssignment, SimHandle, SimUser};
use doorsync_nexudus::{Credentials, Secret};
use doorsync_nexudus_sim::{NexudusSimulator, SimEntity};
use doorsync_proto::{FloorPlanItemId, KisiGroupId, KisiUserId, MemberId, PassProductId, ResourceId, Timestamp};
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::json;

use super::SimFailure;
use super::clock::SimClock;
use super::conditions::{Conditions, Hiding};
use super::intervals::Millis;
use super::oracle::{Entitlements, Key};

pub(crate) const KISI_API_KEY: &str = "doorsync-simulation-kisi-key";
pub(crate) const WEBHOOK_SECRET: &str = "doorsync-simulation-webhook-secret";
pub(crate) const NEXUDUS_USER: &str = "integrations@operator.invalid";
pub(crate) const NEXUDUS_PASSWORD: &str = "doorsync-simulation-nexudus-password";
/// The Kisi user whose key Nexudus's built-in Kisi integration used, which doorsync adopts.
pub(crate) const INTEGRATION_EMAIL: &str = "nexudus-kisi@operator.invalid";
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
const HOUR_MS: Millis = 3_600_000;
/// Minutes a time pass includes; a product without `MinutesIncluded` is a day pass.
const TIME_PASS_MINUTES: u64 = 600;

#[derive(Debug, Clone)]
pub(crate) struct Room {
    pub(crate) resource: u64,
    /// The group the operator's first configuration links it to; `None` for the room whose group
    /// comes from its own `AccessControlGroupId` in Nexudus, which the workload changes.
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
    /// The mapping the operator first writes in doorsync's configuration (edits of it are in the
    /// configuration's timeline).
    pub(crate) configured: Mapping,
    /// Every group doorsync may manage: the configured ones and those a room may be remapped to.
    pub(crate) managed_groups: Vec<KisiGroupId>,
    /// The owner of doorsync's API key, who makes doorsync's users and assignments.
    pub(crate) doorsync_user: KisiUserId,
    /// The built-in integration's user, whose assignments doorsync is told to adopt.
    pub(crate) adopted_creator: Option<KisiUserId>,
    /// A managed group Kisi refuses to doorsync's key, and from when.
    pub(crate) refused_group: Option<RefusedGroup>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RefusedGroup {
    pub(crate) group: KisiGroupId,
    pub(crate) from: Millis,
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

    /// Whether doorsync answers for the assignment: made by its key's owner or by a creator it
    /// adopts.
    pub(crate) fn is_doorsyncs(&self, assignment: &SimAssignment) -> bool {
        assignment
            .created_by
            .is_some_and(|creator| creator == self.doorsync_user || self.adopted_creator == Some(creator))
    }

    /// Whether Kisi refuses the group to doorsync's key at some instant before `until`.
    pub(crate) fn refuses(&self, group: KisiGroupId, until: Millis) -> bool {
        self.refused_group.is_some_and(|refused| refused.group == group && refused.from < until)
    }
}

/// What Kisi held before doorsync wrote anything that is not doorsync's: users who are not
/// members (with doorsync's own API user), which must stay exactly as they were; users someone
/// else made with members' emails, which doorsync links but must never suspend, re-enable or
/// delete; and every assignment but those doorsync adopts, which must stay exactly as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unmanaged {
    pub(crate) users: Vec<SimUser>,
    pub(crate) found_users: Vec<SimUser>,
    pub(crate) assignments: Vec<SimAssignment>,
}

impl Unmanaged {
    /// Reads what Kisi holds now that is not doorsync's.
    pub(crate) fn read(kisi: &SimHandle, site: &Site) -> Self {
        let made_by_doorsync = |creator: Option<KisiUserId>| creator == Some(site.doorsync_user);
        let (mut users, mut found_users): (Vec<SimUser>, Vec<SimUser>) = kisi
            .users()
            .into_iter()
            .filter(|user| !(site.member_with_email(&user.email).is_some() && made_by_doorsync(user.created_by)))
            .partition(|user| site.member_with_email(&user.email).is_none());
        users.sort_by_key(|user| user.id);
        found_users.sort_by_key(|user| user.id);
        let members_user = |id: KisiUserId| !users.iter().any(|user| user.id == id);
        let mut assignments: Vec<SimAssignment> = kisi
            .assignments()
            .into_iter()
            .filter(|assignment| {
                let managed = site.managed_groups.contains(&assignment.group);
                !(managed && members_user(assignment.user) && site.is_doorsyncs(assignment))
            })
            .collect();
        assignments.sort_by_key(|assignment| assignment.id);
        Self { users, found_users, assignments }
    }
}

/// Both simulators, furnished.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) nexudus: NexudusSimulator,
    pub(crate) kisi: KisiSimulator,
    pub(crate) site: Site,
    pub(crate) unmanaged: Unmanaged,
    /// Adopted assignments the built-in integration left for members entitled to nothing there.
    pub(crate) stale_adopted: Vec<Key>,
}

impl World {
    pub(crate) async fn build(
        clock: &SimClock,
        members: usize,
        conditions: &Conditions,
        rng: &mut StdRng,
    ) -> Result<Self, SimFailure> {
        let shared: SharedClock = Arc::new(clock.clone());
        let mut kisi_options = doorsync_kisi_sim::SimOptions::new(Arc::clone(&shared));
        kisi_options.seed = rng.random();
        kisi_options.requests_per_second = KISI_REQUESTS_PER_SECOND;
        kisi_options.patch_validity = conditions.patch_validity;
        kisi_options.unknown_ids = conditions.unknown_ids;
        kisi_options.retry_after_on_429 = conditions.retry_after_on_429;
        let kisi =
            KisiSimulator::start(kisi_options).await.map_err(SimFailure::setup("starting the Kisi simulator"))?;
        let handle = kisi.handle();
        let doorsync_user = handle
            .add_api_account("integration@operator.invalid", "doorsync", KISI_API_KEY)
            .map_err(SimFailure::setup("creating doorsync's Kisi API key"))?;
        // Made before doorsync starts, since doorsync looks the adopted creators up once.
        let adopted_creator = if conditions.integration_start {
            let integration = handle
                .add_api_user(INTEGRATION_EMAIL, "Nexudus")
                .map_err(SimFailure::setup("creating the built-in integration's Kisi user"))?;
            Some(integration)
        } else {
            None
        };

        let mut nexudus_options = doorsync_nexudus_sim::SimOptions::new(shared);
        nexudus_options.credentials =
            Credentials { username: NEXUDUS_USER.to_owned(), password: Secret::new(NEXUDUS_PASSWORD) };
        // Throttling is injected as a fault (`throttle_next`) rather than by request windows,
        // which would make every poll wait out seconds of virtual time request by request.
        nexudus_options.limits = None;
        nexudus_options.seed = rng.random();
        nexudus_options.webhook_timeout = std::time::Duration::from_secs(5);
        nexudus_options.missing_record = conditions.missing_record;
        nexudus_options.updated_on_filter = conditions.updated_on_filter;
        nexudus_options.max_page_size = conditions.max_page_size;
        let nexudus = NexudusSimulator::start(nexudus_options)
            .await
            .map_err(SimFailure::setup("starting the Nexudus simulator"))?;

        let mut site = Site {
            locations: Vec::new(),
            members: Vec::new(),
            configured: Mapping::default(),
            managed_groups: Vec::new(),
            doorsync_user,
            adopted_creator,
            refused_group: None,
        };
        furnish(&nexudus, &handle, &mut site).map_err(SimFailure::setup("furnishing the locations"))?;
        enrol(&nexudus, &mut site, members, rng).map_err(SimFailure::setup("creating the members"))?;
        seed_unmanaged(&handle, &site).map_err(SimFailure::setup("seeding Kisi with what is not doorsync's"))?;
        if conditions.staff_emails {
            seed_staff_with_members_emails(&handle, &site, clock.now().as_unix_millis(), rng)
                .map_err(SimFailure::setup("seeding staff users with members' emails"))?;
        }
        if let Some((nth, hiding)) = conditions.hidden_group {
            let group = site.managed_groups[nth % site.managed_groups.len()];
            let from = match hiding {
                Hiding::FromTheStart => {
                    handle.hide_group(group);
                    clock.now().as_unix_millis()
                }
                Hiding::At(at) => at,
            };
            site.refused_group = Some(RefusedGroup { group, from });
        }
        let unmanaged = Unmanaged::read(&handle, &site);
        Ok(Self { nexudus, kisi, site, unmanaged, stale_adopted: Vec::new() })
    }

    /// What Nexudus's built-in Kisi integration left before doorsync's first write: for each
    /// member entitled to a group now or later, a user (the one Kisi has for the email, or one it
    /// made) and a window-less assignment there; and the same for some groups members are no
    /// longer entitled to (kept in `stale_adopted`). Returns the members and groups entitled.
    pub(crate) fn seed_integration_start(
        &mut self,
        entitled: &Entitlements,
        now: Millis,
        rng: &mut StdRng,
    ) -> Result<Vec<Key>, SimFailure> {
        let Some(integration) = self.site.adopted_creator else { return Ok(Vec::new()) };
        let kisi = self.kisi.handle();
        let mut entitled_keys = Vec::new();
        for member in self.site.members.clone() {
            let home = &self.site.locations[member.home];
            let stale_group = rng.random_bool(0.4).then(|| {
                let mut candidates = vec![home.floor, home.nexudus_mapped_group];
                candidates.extend(home.rooms.iter().filter_map(|room| room.configured_group));
                candidates[rng.random_range(0..candidates.len())]
            });
            let mut groups: Vec<KisiGroupId> = self
                .site
                .managed_groups
                .iter()
                .copied()
                .filter(|group| entitled.of((member.id, *group)).current_or_next(now).is_some())
                .collect();
            let stale = stale_group.filter(|group| !groups.contains(group));
            groups.extend(stale);
            if groups.is_empty() || !member.active {
                continue;
            }
            let email = &member.emails[0];
            let user = match kisi.user_by_email(email) {
                Some(user) => user.id,
                None => kisi
                    .seed_user(SeedUser::new(email, &format!("Member {}", member.id)).created_by(integration))
                    .map_err(SimFailure::setup("creating a member's user as the built-in integration"))?,
            };
            let assignments = kisi.assignments();
            for group in groups {
                if assignments.iter().any(|held| held.user == user && held.group == group) {
                    continue;
                }
                kisi.add_assignment_as(Some(integration), user, group, None, None).map_err(|error| {
                    SimFailure::harness("seed the built-in integration's assignments", error.to_string())
                })?;
                if Some(group) == stale {
                    self.stale_adopted.push((member.id, group));
                } else {
                    entitled_keys.push((member.id, group));
                }
            }
        }
        self.unmanaged = Unmanaged::read(&kisi, &self.site);
        Ok(entitled_keys)
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
    // Made by hand as the owner of doorsync's key, for someone who is no member: not doorsync's.
    if let Some(floor) = managed.first() {
        kisi.add_assignment_as(Some(site.doorsync_user), cleaner, *floor, None, None)?;
    }
    Ok(())
}

/// Staff users whose emails one or two members also use in Nexudus (an employee who is a member
/// too), made by an administrator, by signing up or by another integration, some with
/// assignments of their own in the member's home groups, with a window or without.
fn seed_staff_with_members_emails(
    kisi: &SimHandle,
    site: &Site,
    now: Millis,
    rng: &mut StdRng,
) -> Result<(), doorsync_kisi_sim::SimError> {
    let badge_printer = kisi.user_by_email("badges@operator.invalid").map(|user| user.id);
    let count = rng.random_range(1..=2.min(site.members.len()));
    for member in site.members.iter().take(count) {
        let mut staff = SeedUser::new(&member.emails[0], &format!("Staff member {}", member.id));
        match rng.random_range(0..3) {
            0 => staff = staff.regular(),
            1 => {
                if let Some(creator) = badge_printer {
                    staff = staff.created_by(creator).notes("badge printer");
                }
            }
            _ => {}
        }
        let user = kisi.seed_user(staff)?;
        let home = &site.locations[member.home];
        let mut groups = vec![home.floor];
        groups.extend(home.rooms.iter().filter_map(|room| room.configured_group));
        for group in groups {
            if rng.random_bool(0.6) {
                continue;
            }
            let (from, until) = if rng.random_bool(0.5) {
                (None, None)
            } else {
                let from = now - rng.random_range(1..=48) * HOUR_MS;
                (
                    Some(Timestamp::from_unix_millis(from)),
                    Some(Timestamp::from_unix_millis(now + rng.random_range(1..=12) * HOUR_MS)),
                )
            };
            kisi.add_assignment_as(None, user, group, from, until)?;
        }
    }
    Ok(())
}
