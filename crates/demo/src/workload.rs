//! What members hold in Nexudus: the bookings, passes and contracts made before doorsync starts
//! (timed so that doors open and close while the demo runs), and the changes made while it runs:
//! bookings made, moved and cancelled, passes bought, contracts cancelled, an account deactivated,
//! and once a membership removed by hand in Kisi for the reconciler to put back.

use doorsync_kisi_sim::SimHandle;
use doorsync_nexudus::NexudusDateTime;
use doorsync_nexudus_sim::{NexudusSimulator, SimEntity};
use doorsync_proto::{KisiGroupId, MemberId, Timestamp};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use serde_json::{Value, json};
use std::time::Duration;

use super::DemoError;
use super::text::{MINUTE_MS, SECOND_MS, wall_clock};
use super::world::{Directory, World};

/// doorsync's default lead and lag: a booked room opens this long before the booking and closes
/// this long after it.
const LEAD_LAG_MS: i64 = 15 * MINUTE_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Random tries to find a member a change gives new access to.
const PICKS: usize = 50;
/// Nexudus's reason code for a booking the customer cancelled.
const CANCELLED_BY_CUSTOMER: u64 = 1;

/// When a generated booking falls, relative to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BookingTiming {
    /// The room's doors open within the next few minutes (lead before the start).
    OpensSoon,
    /// The booking ended a while ago; its doors close within the next few minutes (lag after).
    ClosesSoon,
    UnderWay,
    /// Later today or tonight.
    Later,
}

/// A tenth of the bookings open their doors within minutes and a tenth close them; a fifth are
/// under way.
const BOOKING_TIMINGS: [BookingTiming; 10] = [
    BookingTiming::OpensSoon,
    BookingTiming::ClosesSoon,
    BookingTiming::UnderWay,
    BookingTiming::Later,
    BookingTiming::Later,
    BookingTiming::Later,
    BookingTiming::UnderWay,
    BookingTiming::Later,
    BookingTiming::Later,
    BookingTiming::Later,
];

/// What was generated before doorsync started, for the opening summary.
#[derive(Debug, Default)]
pub(super) struct Generated {
    pub(super) bookings: usize,
    pub(super) opening_soon: usize,
    pub(super) closing_soon: usize,
    pub(super) day_passes: usize,
    pub(super) time_passes: usize,
    pub(super) passes_running_out: usize,
    pub(super) contracts: usize,
    pub(super) contracts_starting: usize,
    pub(super) contracts_ending: usize,
    /// A member whose door opens within minutes: a good one to explain.
    pub(super) example: Option<MemberId>,
}

/// Whether Kisi holds, now or ahead, a group for a member.
pub(super) type Holds<'a> = dyn Fn(MemberId, KisiGroupId) -> bool + 'a;

/// A change the demo made, to be printed.
#[derive(Debug)]
pub(super) struct Change {
    pub(super) member: MemberId,
    /// Where it was made: `nexudus`, or `kisi` for a change by hand in Kisi's dashboard.
    pub(super) place: &'static str,
    pub(super) text: String,
    /// A membership removed by hand in Kisi, which the reconciler is expected to put back.
    pub(super) removed_by_hand: Option<KisiGroupId>,
}

#[derive(Debug, Clone)]
struct LiveBooking {
    id: u64,
    member: MemberId,
    room: usize,
    starts: i64,
    ends: i64,
}

impl LiveBooking {
    /// "Ada L. (member 1042) cancels booking 1600 of Room Thames in London"
    fn told(&self, directory: &Directory, verb: &str) -> String {
        format!("{} {verb} booking {} of {}", directory.member(self.member), self.id, room_name(directory, self.room))
    }

    fn span(&self, directory: &Directory, now: i64) -> String {
        local_span(directory, self.room, self.starts, self.ends, now)
    }
}

#[derive(Debug, Clone)]
struct LiveContract {
    id: u64,
    member: MemberId,
    space: usize,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    NewBooking,
    DayPass,
    MoveBooking,
    CancelBooking,
    TimePass,
    RemoveByHand,
    CancelContract,
    Deactivate,
}

/// The order live changes come in, so that a short run shows each kind early.
const ROTATION: [Kind; 10] = [
    Kind::NewBooking,
    Kind::DayPass,
    Kind::MoveBooking,
    Kind::CancelBooking,
    Kind::TimePass,
    Kind::NewBooking,
    Kind::RemoveByHand,
    Kind::MoveBooking,
    Kind::CancelContract,
    Kind::Deactivate,
];

/// The generated bookings and contracts the live changes may move or cancel.
#[derive(Debug)]
pub(super) struct Workload {
    rng: StdRng,
    bookings: Vec<LiveBooking>,
    contracts: Vec<LiveContract>,
    members: Vec<MemberId>,
    /// Accounts are deactivated only while more than half of the members are left.
    enough_members: usize,
    changes_made: usize,
    removed_by_hand: bool,
}

impl Workload {
    /// Fills Nexudus with bookings, passes and contracts for the members, at `now`.
    pub(super) fn generate(world: &World, rng: StdRng, now: Timestamp) -> Result<(Self, Generated), DemoError> {
        let members: Vec<MemberId> = world.directory.members.keys().copied().collect();
        let enough_members = members.len() / 2;
        let mut workload = Self {
            rng,
            bookings: Vec::new(),
            contracts: Vec::new(),
            members,
            enough_members,
            changes_made: 0,
            removed_by_hand: false,
        };
        let mut generated = Generated::default();
        let now = now.as_unix_millis();
        workload.bookings_ahead(world, now, &mut generated)?;
        workload.passes(world, now, &mut generated)?;
        workload.contracts(world, now, &mut generated)?;
        Ok((workload, generated))
    }

    fn bookings_ahead(&mut self, world: &World, now: i64, generated: &mut Generated) -> Result<(), DemoError> {
        let count = (self.members.len() * 2 / 5).max(BOOKING_TIMINGS.len());
        for (index, timing) in BOOKING_TIMINGS.iter().cycle().take(count).enumerate() {
            let member = self.some_member();
            let room = self.room_near(&world.directory, member);
            let rng = &mut self.rng;
            let (starts, ends) = match timing {
                BookingTiming::OpensSoon => {
                    let starts = now + LEAD_LAG_MS + rng.random_range(40..=240) * SECOND_MS;
                    (starts, starts + rng.random_range(2..=6) * 15 * MINUTE_MS)
                }
                BookingTiming::ClosesSoon => {
                    let ends = now - LEAD_LAG_MS + rng.random_range(30..=180) * SECOND_MS;
                    (ends - rng.random_range(2..=6) * 15 * MINUTE_MS, ends)
                }
                BookingTiming::UnderWay => {
                    let starts = quarter_hour(now - rng.random_range(0..=45) * MINUTE_MS);
                    (starts, quarter_hour(now + rng.random_range(30..=150) * MINUTE_MS))
                }
                BookingTiming::Later => {
                    let starts = quarter_hour(now + rng.random_range(45..=8 * 60) * MINUTE_MS);
                    (starts, starts + rng.random_range(2..=8) * 15 * MINUTE_MS)
                }
            };
            let id = book(&world.nexudus, &world.directory, member, room, starts, ends)?;
            match timing {
                BookingTiming::OpensSoon => {
                    generated.opening_soon += 1;
                    if index == 0 {
                        generated.example = Some(member);
                    }
                }
                BookingTiming::ClosesSoon => generated.closing_soon += 1,
                BookingTiming::UnderWay | BookingTiming::Later => {}
            }
            if starts > now + LEAD_LAG_MS {
                self.bookings.push(LiveBooking { id, member, room, starts, ends });
            }
            generated.bookings += 1;
        }
        Ok(())
    }

    fn passes(&mut self, world: &World, now: i64, generated: &mut Generated) -> Result<(), DemoError> {
        for _ in 0..(self.members.len() / 7).max(3) {
            let member = self.some_member();
            buy_day_pass(&world.nexudus, &world.directory, member, now)?;
            generated.day_passes += 1;
        }
        for index in 0..(self.members.len() / 10).max(3) {
            let member = self.some_member();
            let expires = if index % 3 == 0 {
                generated.passes_running_out += 1;
                now + self.rng.random_range(60..=300) * SECOND_MS
            } else {
                now + self.rng.random_range(2..=30) * DAY_MS
            };
            buy_time_pass(&world.nexudus, &world.directory, member, expires)?;
            generated.time_passes += 1;
        }
        Ok(())
    }

    fn contracts(&mut self, world: &World, now: i64, generated: &mut Generated) -> Result<(), DemoError> {
        let directory = &world.directory;
        let mut spaces: Vec<usize> = (0..directory.spaces.len()).collect();
        spaces.shuffle(&mut self.rng);
        let count = (self.members.len() / 10).max(2).min(spaces.len());
        for (index, space) in spaces.into_iter().take(count).enumerate() {
            let member = self.some_member();
            let soon = now + self.rng.random_range(60..=240) * SECOND_MS;
            let long_ago = now - self.rng.random_range(10..=400) * DAY_MS;
            let (starts, cancelled) = match index % 10 {
                0 => {
                    generated.contracts_starting += 1;
                    (soon, None)
                }
                1 => {
                    generated.contracts_ending += 1;
                    (long_ago, Some(soon))
                }
                _ => (long_ago, None),
            };
            let location = &directory.locations[directory.spaces[space].location];
            let mut fields = json!({
                "CoworkerId": member.0, "IssuedById": location.business, "StartDate": nexudus_time(starts),
                "Active": true, "Desks": [directory.spaces[space].id],
                "FloorPlanDeskIds": directory.spaces[space].id.to_string(),
            });
            if let Some(cancelled) = cancelled {
                fields["CancellationDate"] = json!(nexudus_time(cancelled));
            }
            let id = world.nexudus.create(SimEntity::CoworkerContract, fields)?;
            if cancelled.is_none() {
                self.contracts.push(LiveContract { id, member, space });
            }
            generated.contracts += 1;
        }
        Ok(())
    }

    /// Makes the next live change. `holds` says whether Kisi already holds (now or ahead) a group
    /// for a member: new bookings and passes go to members they give new access to, so that
    /// every change shows in Kisi.
    pub(super) fn change(&mut self, world: &World, now: Timestamp, holds: &Holds<'_>) -> Result<Change, DemoError> {
        let kind = ROTATION[self.changes_made % ROTATION.len()];
        self.changes_made += 1;
        let now = now.as_unix_millis();
        let made = match kind {
            Kind::NewBooking => None,
            Kind::DayPass => Some(self.day_pass(world, now, holds)?),
            Kind::TimePass => Some(self.time_pass(world, now, holds)?),
            Kind::MoveBooking => self.move_booking(world, now)?,
            Kind::CancelBooking => self.cancel_booking(world, now)?,
            Kind::CancelContract => self.cancel_contract(world, now)?,
            Kind::Deactivate if self.members.len() > self.enough_members => Some(self.deactivate(world)?),
            Kind::Deactivate => None,
            Kind::RemoveByHand => self.remove_by_hand(world, now),
        };
        match made {
            Some(change) => Ok(change),
            None => self.new_booking(world, now, holds),
        }
    }

    fn new_booking(&mut self, world: &World, now: i64, holds: &Holds<'_>) -> Result<Change, DemoError> {
        let directory = &world.directory;
        let (member, room) = self.pick(|workload| {
            let member = workload.some_member();
            let room = workload.room_near(directory, member);
            ((member, room), !holds(member, directory.rooms[room].group))
        });
        // A third open their doors within a couple of minutes.
        let starts = if self.rng.random_bool(1.0 / 3.0) {
            now + LEAD_LAG_MS + self.rng.random_range(30..=120) * SECOND_MS
        } else {
            quarter_hour(now + self.rng.random_range(30..=4 * 60) * MINUTE_MS)
        };
        let ends = starts + self.rng.random_range(2..=6) * 15 * MINUTE_MS;
        let id = book(&world.nexudus, directory, member, room, starts, ends)?;
        self.bookings.push(LiveBooking { id, member, room, starts, ends });
        let text = format!(
            "{} books {} {} (booking {id})",
            directory.member(member),
            room_name(directory, room),
            local_span(directory, room, starts, ends, now)
        );
        Ok(Change { member, place: "nexudus", text, removed_by_hand: None })
    }

    fn move_booking(&mut self, world: &World, now: i64) -> Result<Option<Change>, DemoError> {
        let Some(index) = self.future_booking(now) else { return Ok(None) };
        let directory = &world.directory;
        let booking = &mut self.bookings[index];
        let later_by = self.rng.random_range(1..=4) * 15 * MINUTE_MS;
        let other_room =
            directory.rooms.iter().enumerate().position(|(index, room)| {
                index != booking.room && room.location == directory.rooms[booking.room].location
            });
        let text = match other_room.filter(|_| self.rng.random_bool(0.5)) {
            Some(room) => {
                world.nexudus.update(
                    SimEntity::Booking,
                    booking.id,
                    json!({"ResourceId": directory.rooms[room].resource}),
                )?;
                let text = format!(
                    "{} moves booking {} from {} to {}",
                    directory.member(booking.member),
                    booking.id,
                    room_name(directory, booking.room),
                    room_name(directory, room)
                );
                booking.room = room;
                text
            }
            None => {
                booking.starts += later_by;
                booking.ends += later_by;
                let times = json!({"FromTime": nexudus_time(booking.starts), "ToTime": nexudus_time(booking.ends)});
                world.nexudus.update(SimEntity::Booking, booking.id, times)?;
                format!("{} to {}", booking.told(directory, "moves"), booking.span(directory, now))
            }
        };
        Ok(Some(Change { member: booking.member, place: "nexudus", text, removed_by_hand: None }))
    }

    fn cancel_booking(&mut self, world: &World, now: i64) -> Result<Option<Change>, DemoError> {
        let Some(index) = self.future_booking(now) else { return Ok(None) };
        let booking = self.bookings.swap_remove(index);
        world.nexudus.cancel_booking(booking.id, CANCELLED_BY_CUSTOMER)?;
        let directory = &world.directory;
        let text = format!("{} {}", booking.told(directory, "cancels"), booking.span(directory, now));
        Ok(Some(Change { member: booking.member, place: "nexudus", text, removed_by_hand: None }))
    }

    fn day_pass(&mut self, world: &World, now: i64, holds: &Holds<'_>) -> Result<Change, DemoError> {
        let member = self.newcomer(&world.directory, holds);
        let id = buy_day_pass(&world.nexudus, &world.directory, member, now)?;
        let directory = &world.directory;
        let text =
            format!("{} buys a day pass for {} (pass {id})", directory.member(member), home(directory, member).city);
        Ok(Change { member, place: "nexudus", text, removed_by_hand: None })
    }

    fn time_pass(&mut self, world: &World, now: i64, holds: &Holds<'_>) -> Result<Change, DemoError> {
        let member = self.newcomer(&world.directory, holds);
        // Expiring within minutes, so that the demo shows it running out too.
        let expires = now + self.rng.random_range(90..=180) * SECOND_MS;
        let id = buy_time_pass(&world.nexudus, &world.directory, member, expires)?;
        let directory = &world.directory;
        let location = home(directory, member);
        let text = format!(
            "{} buys a time pass for {}, valid until {} {} (pass {id})",
            directory.member(member),
            location.city,
            wall_clock(Timestamp::from_unix_millis(expires), &location.zone, Timestamp::from_unix_millis(now)),
            location.iana_zone
        );
        Ok(Change { member, place: "nexudus", text, removed_by_hand: None })
    }

    fn cancel_contract(&mut self, world: &World, now: i64) -> Result<Option<Change>, DemoError> {
        if self.contracts.is_empty() {
            return Ok(None);
        }
        let contract = self.contracts.swap_remove(self.rng.random_range(0..self.contracts.len()));
        let ends = now + self.rng.random_range(60..=120) * SECOND_MS;
        let cancellation = json!({"CancellationDate": nexudus_time(ends)});
        world.nexudus.update(SimEntity::CoworkerContract, contract.id, cancellation)?;
        let directory = &world.directory;
        let space = &directory.spaces[contract.space];
        let location = &directory.locations[space.location];
        let text = format!(
            "{}'s contract {} for {} is cancelled, ending {} {}",
            directory.member(contract.member),
            contract.id,
            space.name,
            wall_clock(Timestamp::from_unix_millis(ends), &location.zone, Timestamp::from_unix_millis(now)),
            location.iana_zone
        );
        Ok(Some(Change { member: contract.member, place: "nexudus", text, removed_by_hand: None }))
    }

    fn deactivate(&mut self, world: &World) -> Result<Change, DemoError> {
        // Someone with a future booking, so that there is access to take away.
        let member = match self.bookings.choose(&mut self.rng) {
            Some(booking) => booking.member,
            None => self.some_member(),
        };
        world.nexudus.update(SimEntity::Coworker, member.0, json!({"Active": false}))?;
        self.members.retain(|other| *other != member);
        self.bookings.retain(|booking| booking.member != member);
        self.contracts.retain(|contract| contract.member != member);
        let text = format!("{}'s account is deactivated (an unpaid invoice)", world.directory.member(member));
        Ok(Change { member, place: "nexudus", text, removed_by_hand: None })
    }

    /// An operator removes a current membership by hand in Kisi's dashboard (one that lasts a
    /// while yet): drift, which the reconciler repairs. Done once.
    fn remove_by_hand(&mut self, world: &World, now: i64) -> Option<Change> {
        if self.removed_by_hand {
            return None;
        }
        let kisi: SimHandle = world.kisi.handle();
        let at = Timestamp::from_unix_millis(now);
        let lasting = Timestamp::from_unix_millis(now + 30 * MINUTE_MS);
        let users = kisi.users();
        let (assignment, member) = kisi
            .assignments()
            .into_iter()
            .filter(|assignment| {
                assignment.valid_from.is_none_or(|from| from <= at)
                    && assignment.valid_until.is_none_or(|until| until > lasting)
            })
            .find_map(|assignment| {
                let email = &users.iter().find(|user| user.id == assignment.user)?.email;
                let member = world.directory.members.iter().find(|(_, known)| &known.email == email)?.0;
                Some((assignment, *member))
            })?;
        if !kisi.remove_assignment(assignment.id) {
            return None;
        }
        self.removed_by_hand = true;
        let text = format!(
            "an operator removes {} from {} by hand in Kisi's dashboard, then runs `doorsync reconcile`",
            world.directory.member(member),
            world.directory.group(assignment.group)
        );
        Some(Change { member, place: "kisi", text, removed_by_hand: Some(assignment.group) })
    }

    /// A member to whom a pass gives access they do not have yet.
    fn newcomer(&mut self, directory: &Directory, holds: &Holds<'_>) -> MemberId {
        self.pick(|workload| {
            let member = workload.some_member();
            (member, !holds(member, home(directory, member).floor))
        })
    }

    /// The first of a few random candidates that fits, else the last one tried.
    fn pick<T>(&mut self, mut candidate: impl FnMut(&mut Self) -> (T, bool)) -> T {
        let (mut found, mut fits) = candidate(self);
        for _ in 1..PICKS {
            if fits {
                break;
            }
            (found, fits) = candidate(self);
        }
        found
    }

    /// How long to wait before the next live change: a few seconds.
    pub(super) fn pause(&mut self) -> Duration {
        Duration::from_millis(self.rng.random_range(3_000..=6_000))
    }

    fn some_member(&mut self) -> MemberId {
        self.members.choose(&mut self.rng).copied().unwrap_or(MemberId(0))
    }

    /// A room at the member's location.
    fn room_near(&mut self, directory: &Directory, member: MemberId) -> usize {
        let location = directory.members.get(&member).map_or(0, |known| known.location);
        let rooms: Vec<usize> = directory
            .rooms
            .iter()
            .enumerate()
            .filter(|(_, room)| room.location == location)
            .map(|(index, _)| index)
            .collect();
        rooms.choose(&mut self.rng).copied().unwrap_or(0)
    }

    /// A booking whose doors have not opened yet, if any.
    fn future_booking(&mut self, now: i64) -> Option<usize> {
        self.bookings.retain(|booking| booking.starts > now + LEAD_LAG_MS);
        if self.bookings.is_empty() { None } else { Some(self.rng.random_range(0..self.bookings.len())) }
    }
}

fn book(
    nexudus: &NexudusSimulator,
    directory: &Directory,
    member: MemberId,
    room: usize,
    starts: i64,
    ends: i64,
) -> Result<u64, DemoError> {
    let resource = directory.rooms.get(room).ok_or(DemoError::Missing("a room of the demo"))?.resource;
    let fields = json!({"ResourceId": resource, "CoworkerId": member.0, "Tentative": false,
        "FromTime": nexudus_time(starts), "ToTime": nexudus_time(ends)});
    Ok(nexudus.create(SimEntity::Booking, fields)?)
}

/// A day pass used today at the member's location: valid for today on its wall clock.
fn buy_day_pass(
    nexudus: &NexudusSimulator,
    directory: &Directory,
    member: MemberId,
    now: i64,
) -> Result<u64, DemoError> {
    let location = home(directory, member);
    let fields = json!({"CoworkerId": member.0, "TimePassId": location.day_pass, "BusinessId": location.business,
        "Used": true, "UsedDate": nexudus_time(now)});
    Ok(nexudus.create(SimEntity::CoworkerTimePass, fields)?)
}

fn buy_time_pass(
    nexudus: &NexudusSimulator,
    directory: &Directory,
    member: MemberId,
    expires: i64,
) -> Result<u64, DemoError> {
    let location = home(directory, member);
    let fields = json!({"CoworkerId": member.0, "TimePassId": location.time_pass, "BusinessId": location.business,
        "Used": false, "RemainingUses": 600, "TotalUses": 600, "ExpireDate": nexudus_time(expires)});
    Ok(nexudus.create(SimEntity::CoworkerTimePass, fields)?)
}

fn home(directory: &Directory, member: MemberId) -> &super::world::Location {
    let location = directory.members.get(&member).map_or(0, |known| known.location);
    &directory.locations[location.min(directory.locations.len().saturating_sub(1))]
}

/// "Room Thames in London"
fn room_name(directory: &Directory, room: usize) -> String {
    match directory.rooms.get(room) {
        Some(known) => format!("{} in {}", known.name, directory.locations[known.location].city),
        None => format!("room {room}"),
    }
}

/// "14:00–15:30 Europe/London", on the wall clock of the room's location.
fn local_span(directory: &Directory, room: usize, starts: i64, ends: i64, now: i64) -> String {
    let location = &directory.locations[directory.rooms.get(room).map_or(0, |known| known.location)];
    let now = Timestamp::from_unix_millis(now);
    let clock = |at: i64| wall_clock(Timestamp::from_unix_millis(at), &location.zone, now);
    format!("{}–{} {}", clock(starts), clock(ends), location.iana_zone)
}

/// An instant as Nexudus writes it (whole seconds, UTC).
fn nexudus_time(at: i64) -> Value {
    let whole = Timestamp::from_unix_millis(at - at.rem_euclid(SECOND_MS));
    NexudusDateTime::from_utc(whole).map_or(Value::Null, |written| json!(written.to_string()))
}

/// Rounded down to a quarter of an hour, as bookings are made.
fn quarter_hour(at: i64) -> i64 {
    at - at.rem_euclid(15 * MINUTE_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nexudus_times_are_whole_seconds_in_utc() {
        assert_eq!(nexudus_time(1_751_356_800_999), json!("2025-07-01T08:00:00Z"));
    }

    #[test]
    fn bookings_start_on_the_quarter_hour() {
        assert_eq!(quarter_hour(1_751_356_800_000 + 14 * MINUTE_MS + 59 * SECOND_MS), 1_751_356_800_000);
    }
}
