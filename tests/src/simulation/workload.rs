//! What the operator and the members do in Nexudus, drawn from the seed: bookings made, moved,
//! cancelled and deleted; day passes and time passes bought, used up and expiring; contracts
//! starting and ending; a room's Kisi group changed in Nexudus; emails changed; accounts
//! deactivated and reactivated; members deleted by mistake and restored later with the same id
//! and records; and records that granted made unreadable for a while (a used day pass that lost
//! its `UsedDate`, a contract naming a desk Nexudus does not have, a booking of a resource
//! Nexudus does not have), which doorsync parks. The choices depend only on the seed and on what the workload
//! itself made, never on what doorsync did, so a seed always makes the same changes at the same
//! virtual instants.

use doorsync_nexudus_sim::SimEntity;
use doorsync_proto::{KisiGroupId, MemberId, Timestamp};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};

use super::SimFailure;
use super::intervals::Millis;
use super::oracle::Ledger;
use super::world::World;

const MINUTE_MS: Millis = 60_000;
const HOUR_MS: Millis = 60 * MINUTE_MS;
/// Nexudus's reason code for a booking the customer cancelled.
const CANCELLED_BY_CUSTOMER: u64 = 1;

/// How a change reaches doorsync, which bounds how late doorsync may be to act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Propagation {
    /// A webhook at once, or failing that the next poll.
    Notified,
    /// Only the next poll (Nexudus sends no webhook for a resource's group link).
    Polled,
    /// A webhook at once, or failing that the next sweep (a poll cannot see what is gone).
    HardDelete,
    /// The operator edited doorsync's configuration and restarted it: the engine evaluates every
    /// member again once it has caught up.
    Configured,
    /// Nothing tells doorsync: its reconciler finds it (an adopted assignment nobody is entitled
    /// to, left by the built-in integration before doorsync started).
    Reconciled,
}

/// One change the workload made.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub(crate) text: String,
    pub(crate) propagation: Propagation,
    /// The group a room was linked to before this change: until doorsync reads the new link, a
    /// booking of that room made meanwhile opens it.
    pub(crate) unlinked: Option<KisiGroupId>,
}

#[derive(Debug, Clone)]
struct LiveBooking {
    id: u64,
    member: MemberId,
    location: usize,
    starts: Millis,
    ends: Millis,
}

#[derive(Debug, Clone)]
struct LivePass {
    id: u64,
    member: MemberId,
    day_pass: bool,
}

#[derive(Debug, Clone)]
struct LiveContract {
    id: u64,
    member: MemberId,
}

/// A record made unreadable, to be made readable again at `readable_at`.
#[derive(Debug, Clone)]
struct Unreadable {
    readable_at: Millis,
    kind: SimEntity,
    id: u64,
    /// The fields as they were, put back to make it readable.
    readable: Value,
    /// Where it lives among the workload's records, to go back to once readable.
    live: Live,
}

#[derive(Debug, Clone)]
enum Live {
    Booking(LiveBooking),
    Pass(LivePass),
    Contract(LiveContract),
}

/// A member deleted by mistake, to be restored at `restored_at` as they were.
#[derive(Debug, Clone)]
struct Deleted {
    restored_at: Millis,
    member: MemberId,
    record: Value,
}

/// An id Nexudus never gives (the simulator counts up from 1,000), for a desk or resource that
/// does not exist.
const NEVER_MADE: u64 = 4_000_000_000;
/// How long a record stays unreadable, or a member deleted, at least and at most.
const MISTAKE_LASTS: (Millis, Millis) = (30 * MINUTE_MS, 5 * HOUR_MS);

#[derive(Debug, Clone, Copy)]
enum Kind {
    Book,
    MoveBooking,
    CancelBooking,
    DeleteBooking,
    DayPass,
    TimePass,
    UseUpPass,
    DeletePass,
    StartContract,
    EndContract,
    DeactivateContract,
    RemapRoom,
    ChangeEmail,
    ToggleMember,
    MakeUnreadable,
    DeleteMember,
}

/// How often each kind of change comes, relative to the others.
const KINDS: [(Kind, u32); 16] = [
    (Kind::Book, 26),
    (Kind::MoveBooking, 10),
    (Kind::CancelBooking, 9),
    (Kind::DeleteBooking, 3),
    (Kind::DayPass, 8),
    (Kind::TimePass, 8),
    (Kind::UseUpPass, 4),
    (Kind::DeletePass, 2),
    (Kind::StartContract, 6),
    (Kind::EndContract, 5),
    (Kind::DeactivateContract, 2),
    (Kind::RemapRoom, 5),
    (Kind::ChangeEmail, 4),
    (Kind::ToggleMember, 3),
    (Kind::MakeUnreadable, 5),
    (Kind::DeleteMember, 3),
];

/// A day pass bought on the day the clocks change at one location, so that every seed has a
/// 23- or 25-hour day to get right.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClockChangeDay {
    pub(crate) location: usize,
    /// When, during that local day, the pass is used.
    pub(crate) pass_used_at: Millis,
}

#[derive(Debug)]
pub(crate) struct Workload {
    rng: StdRng,
    pub(crate) ledger: Ledger,
    bookings: Vec<LiveBooking>,
    passes: Vec<LivePass>,
    contracts: Vec<LiveContract>,
    next_at: Millis,
    email_changes: u32,
    clock_change_day: Option<ClockChangeDay>,
    unreadable: Vec<Unreadable>,
    deleted: Vec<Deleted>,
    /// Every record is readable and every member back by then, for the end to be exact.
    mistakes_end: Millis,
    pub(crate) records_made_unreadable: usize,
    pub(crate) members_deleted: usize,
}

impl Workload {
    /// A workload from `start`, whose records are all readable again and members all back
    /// before `mistakes_end`.
    pub(crate) fn new(rng: StdRng, start: Timestamp, mistakes_end: Millis, clock_change_day: ClockChangeDay) -> Self {
        Self {
            rng,
            ledger: Ledger::default(),
            bookings: Vec::new(),
            passes: Vec::new(),
            contracts: Vec::new(),
            next_at: start.as_unix_millis(),
            email_changes: 0,
            clock_change_day: Some(clock_change_day),
            unreadable: Vec::new(),
            deleted: Vec::new(),
            mistakes_end,
            records_made_unreadable: 0,
            members_deleted: 0,
        }
    }

    /// When the workload next changes something.
    pub(crate) fn next_at(&self) -> Millis {
        let day = self.clock_change_day.map(|day| day.pass_used_at);
        let readable = self.unreadable.iter().map(|record| record.readable_at);
        let restored = self.deleted.iter().map(|member| member.restored_at);
        readable.chain(restored).chain(day).fold(self.next_at, Millis::min)
    }

    /// What members hold when doorsync starts: for each, perhaps a booking, a day pass, a time
    /// pass and a contract.
    pub(crate) fn furnish(&mut self, world: &mut World, now: Millis) -> Result<Vec<Change>, SimFailure> {
        let mut changes = Vec::new();
        let members: Vec<MemberId> = world.site.members.iter().map(|member| member.id).collect();
        for member in members {
            if self.rng.random_bool(0.7) {
                changes.push(self.book(world, now, Some(member))?);
            }
            if self.rng.random_bool(0.3) {
                changes.push(self.day_pass(world, now, Some(member))?);
            }
            if self.rng.random_bool(0.3) {
                changes.push(self.time_pass(world, now, Some(member))?);
            }
            if self.rng.random_bool(0.3) {
                changes.push(self.start_contract(world, now, Some(member))?);
            }
        }
        self.next_at = now + self.rng.random_range(15..=100) * MINUTE_MS;
        Ok(changes)
    }

    /// Makes the changes due at `now`.
    pub(crate) fn act(&mut self, world: &mut World, now: Millis) -> Result<Vec<Change>, SimFailure> {
        let mut changes = Vec::new();
        if let Some(day) = self.clock_change_day.filter(|day| day.pass_used_at <= now) {
            self.clock_change_day = None;
            let member = world.site.members.iter().find(|member| member.home == day.location).map(|member| member.id);
            changes.push(self.buy_day_pass(world, now, member.unwrap_or(world.site.members[0].id), day.location)?);
        }
        changes.extend(self.undo_mistakes(world, now)?);
        if self.next_at <= now {
            let kind = self.kind();
            changes.extend(self.change(world, now, kind)?);
            self.next_at = now + self.rng.random_range(15..=100) * MINUTE_MS;
        }
        Ok(changes)
    }

    fn kind(&mut self) -> Kind {
        let total: u32 = KINDS.iter().map(|(_, weight)| weight).sum();
        let mut roll = self.rng.random_range(0..total);
        for (kind, weight) in KINDS {
            if roll < weight {
                return kind;
            }
            roll -= weight;
        }
        Kind::Book
    }

    fn change(&mut self, world: &mut World, now: Millis, kind: Kind) -> Result<Option<Change>, SimFailure> {
        Ok(Some(match kind {
            Kind::Book => self.book(world, now, None)?,
            Kind::MoveBooking => return self.move_booking(world, now),
            Kind::CancelBooking => return self.cancel_booking(world, now),
            Kind::DeleteBooking => return self.delete_booking(world, now),
            Kind::DayPass => self.day_pass(world, now, None)?,
            Kind::TimePass => self.time_pass(world, now, None)?,
            Kind::UseUpPass => return self.use_up_pass(world, now),
            Kind::DeletePass => return self.delete_pass(world),
            Kind::StartContract => self.start_contract(world, now, None)?,
            Kind::EndContract => return self.end_contract(world, now),
            Kind::DeactivateContract => return self.deactivate_contract(world),
            Kind::RemapRoom => self.remap_room(world)?,
            Kind::ChangeEmail => self.change_email(world)?,
            Kind::ToggleMember => self.toggle_member(world)?,
            Kind::MakeUnreadable => return self.make_unreadable(world, now),
            Kind::DeleteMember => return self.delete_member(world, now),
        }))
    }

    /// A member who is in Nexudus (not deleted by mistake): one is, since a member is deleted
    /// only while another one is there.
    fn some_member(&mut self, world: &World) -> MemberId {
        let present: Vec<MemberId> = world
            .site
            .members
            .iter()
            .map(|member| member.id)
            .filter(|member| !self.deleted.iter().any(|deleted| deleted.member == *member))
            .collect();
        present.choose(&mut self.rng).copied().unwrap_or(MemberId(0))
    }

    /// When a mistake made now is undone: before the mistakes end, or `None` if too little is
    /// left of the run for one.
    fn undone_at(&mut self, now: Millis) -> Option<Millis> {
        let (shortest, longest) = MISTAKE_LASTS;
        (now + shortest < self.mistakes_end)
            .then(|| minute(now + self.rng.random_range(shortest..=longest)).min(self.mistakes_end - MINUTE_MS))
    }

    /// A record that grants (a booking not over yet, a day pass, a contract) becomes unreadable:
    /// a booking's resource or a contract's desk is one Nexudus does not have, or a day pass is
    /// used without its `UsedDate`.
    fn make_unreadable(&mut self, world: &World, now: Millis) -> Result<Option<Change>, SimFailure> {
        let Some(readable_at) = self.undone_at(now) else { return Ok(None) };
        let (kind, live, broken, text) = match self.rng.random_range(0..3) {
            0 => {
                self.bookings.retain(|booking| booking.ends > now);
                let Some(index) = self.pick_index(self.bookings.len()) else { return Ok(None) };
                let booking = self.bookings.swap_remove(index);
                let text = format!("booking {} of member {} names resource {NEVER_MADE}", booking.id, booking.member);
                (SimEntity::Booking, Live::Booking(booking), json!({"ResourceId": NEVER_MADE}), text)
            }
            1 => {
                let day_passes: Vec<usize> =
                    (0..self.passes.len()).filter(|index| self.passes[*index].day_pass).collect();
                let Some(&index) = day_passes.choose(&mut self.rng) else { return Ok(None) };
                let pass = self.passes.swap_remove(index);
                let text = format!("day pass {} of member {} is used with no UsedDate", pass.id, pass.member);
                (SimEntity::CoworkerTimePass, Live::Pass(pass), json!({"Used": true, "UsedDate": null}), text)
            }
            _ => {
                let Some(index) = self.pick_index(self.contracts.len()) else { return Ok(None) };
                let contract = self.contracts.swap_remove(index);
                let text = format!("contract {} of member {} names desk {NEVER_MADE}", contract.id, contract.member);
                let desks = json!({"Desks": [NEVER_MADE], "FloorPlanDeskIds": NEVER_MADE.to_string()});
                (SimEntity::CoworkerContract, Live::Contract(contract), desks, text)
            }
        };
        let id = match &live {
            Live::Booking(booking) => booking.id,
            Live::Pass(pass) => pass.id,
            Live::Contract(contract) => contract.id,
        };
        let record = world
            .nexudus
            .record(kind, id)
            .ok_or_else(|| SimFailure::harness("make a record unreadable", format!("{} {id} is gone", kind.name())))?;
        let Value::Object(changed) = &broken else {
            return Err(SimFailure::harness("make a record unreadable", "its changes are not an object"));
        };
        let readable: serde_json::Map<String, Value> =
            changed.keys().map(|field| (field.clone(), record.get(field).cloned().unwrap_or(Value::Null))).collect();
        update(world, kind, id, broken)?;
        self.unreadable.push(Unreadable { readable_at, kind, id, readable: Value::Object(readable), live });
        self.records_made_unreadable += 1;
        Ok(Some(notified(format!("{text}: unreadable until {}", iso(readable_at)))))
    }

    /// An admin deletes a member by mistake (their records stay), to restore them later.
    fn delete_member(&mut self, world: &World, now: Millis) -> Result<Option<Change>, SimFailure> {
        if self.deleted.len() + 1 >= world.site.members.len() {
            return Ok(None);
        }
        let Some(restored_at) = self.undone_at(now) else { return Ok(None) };
        let member = self.some_member(world);
        let record = world
            .nexudus
            .record(SimEntity::Coworker, member.0)
            .ok_or_else(|| SimFailure::harness("delete a member", format!("{member} is not in Nexudus")))?;
        world
            .nexudus
            .delete(SimEntity::Coworker, member.0)
            .map_err(SimFailure::setup("deleting a member in Nexudus"))?;
        self.deleted.push(Deleted { restored_at, member, record });
        self.members_deleted += 1;
        Ok(Some(Change {
            text: format!("an admin deletes member {member} by mistake, to restore them at {}", iso(restored_at)),
            propagation: Propagation::HardDelete,
            unlinked: None,
        }))
    }

    /// Makes readable again the records due, and restores the members due.
    fn undo_mistakes(&mut self, world: &World, now: Millis) -> Result<Vec<Change>, SimFailure> {
        let mut changes = Vec::new();
        let (due, later): (Vec<Unreadable>, Vec<Unreadable>) =
            std::mem::take(&mut self.unreadable).into_iter().partition(|record| record.readable_at <= now);
        self.unreadable = later;
        for record in due {
            update(world, record.kind, record.id, record.readable.clone())?;
            changes.push(notified(format!(
                "{} {} is readable again: {}",
                record.kind.name(),
                record.id,
                record.readable
            )));
            match record.live {
                Live::Booking(booking) => self.bookings.push(booking),
                Live::Pass(pass) => self.passes.push(pass),
                Live::Contract(contract) => self.contracts.push(contract),
            }
        }
        let (due, later): (Vec<Deleted>, Vec<Deleted>) =
            std::mem::take(&mut self.deleted).into_iter().partition(|member| member.restored_at <= now);
        self.deleted = later;
        for member in due {
            world
                .nexudus
                .restore(SimEntity::Coworker, member.record)
                .map_err(SimFailure::setup("restoring a member in Nexudus"))?;
            changes.push(notified(format!("an admin restores member {} with the same id and records", member.member)));
        }
        Ok(changes)
    }

    /// The member's home location most of the time, another one now and then.
    fn location_for(&mut self, world: &World, member: MemberId) -> usize {
        let home = world.site.member(member).map_or(0, |member| member.home);
        if self.rng.random_bool(0.8) { home } else { self.rng.random_range(0..world.site.locations.len()) }
    }

    fn book(&mut self, world: &World, now: Millis, member: Option<MemberId>) -> Result<Change, SimFailure> {
        let member = member.unwrap_or_else(|| self.some_member(world));
        let location = self.location_for(world, member);
        let room = self.rng.random_range(0..world.site.locations[location].rooms.len());
        let starts = quarter_hour(now + self.rng.random_range(-60..=20 * 60) * MINUTE_MS);
        let ends = starts + self.rng.random_range(2..=12) * 15 * MINUTE_MS;
        let tentative = self.rng.random_bool(0.1);
        let resource = world.site.locations[location].rooms[room].resource;
        let fields = json!({"ResourceId": resource, "CoworkerId": member.0, "Tentative": tentative,
            "FromTime": nexudus_time(starts)?, "ToTime": nexudus_time(ends)?});
        let id = create(world, SimEntity::Booking, fields)?;
        self.ledger.bookings.push(id);
        self.bookings.push(LiveBooking { id, member, location, starts, ends });
        let tentative = if tentative { " (tentative)" } else { "" };
        Ok(notified(format!(
            "member {member} books room {room} at location {location}{tentative}: booking {id}, {}",
            span(starts, ends)
        )))
    }

    fn move_booking(&mut self, world: &World, now: Millis) -> Result<Option<Change>, SimFailure> {
        let Some(index) = self.pick_index(self.bookings.len()) else { return Ok(None) };
        let rooms = world.site.locations[self.bookings[index].location].rooms.len();
        let booking = &mut self.bookings[index];
        let text = if self.rng.random_bool(0.3) {
            let room = self.rng.random_range(0..rooms);
            let resource = world.site.locations[booking.location].rooms[room].resource;
            update(world, SimEntity::Booking, booking.id, json!({"ResourceId": resource}))?;
            format!("booking {} moves to room {room}", booking.id)
        } else {
            let shift = self.rng.random_range(-8..=8) * 15 * MINUTE_MS;
            let stretch = self.rng.random_range(-2..=4) * 15 * MINUTE_MS;
            booking.starts = (booking.starts + shift).max(quarter_hour(now - HOUR_MS));
            booking.ends = (booking.ends + shift + stretch).max(booking.starts + 15 * MINUTE_MS);
            let times = json!({"FromTime": nexudus_time(booking.starts)?, "ToTime": nexudus_time(booking.ends)?});
            update(world, SimEntity::Booking, booking.id, times)?;
            format!("booking {} moves to {}", booking.id, span(booking.starts, booking.ends))
        };
        Ok(Some(notified(text)))
    }

    fn cancel_booking(&mut self, world: &World, now: Millis) -> Result<Option<Change>, SimFailure> {
        // Bookings over for a while are left alone: cancelling them changes nothing.
        self.bookings.retain(|booking| booking.ends + HOUR_MS > now);
        let Some(index) = self.pick_index(self.bookings.len()) else { return Ok(None) };
        let booking = self.bookings.swap_remove(index);
        world
            .nexudus
            .cancel_booking(booking.id, CANCELLED_BY_CUSTOMER)
            .map_err(SimFailure::setup("cancelling a booking in Nexudus"))?;
        Ok(Some(notified(format!("member {} cancels booking {}", booking.member, booking.id))))
    }

    fn delete_booking(&mut self, world: &World, now: Millis) -> Result<Option<Change>, SimFailure> {
        self.bookings.retain(|booking| booking.ends + HOUR_MS > now);
        let Some(index) = self.pick_index(self.bookings.len()) else { return Ok(None) };
        let booking = self.bookings.swap_remove(index);
        world
            .nexudus
            .delete(SimEntity::Booking, booking.id)
            .map_err(SimFailure::setup("deleting a booking in Nexudus"))?;
        Ok(Some(Change {
            text: format!("an admin deletes booking {} of member {} for good", booking.id, booking.member),
            propagation: Propagation::HardDelete,
            unlinked: None,
        }))
    }

    fn day_pass(&mut self, world: &World, now: Millis, member: Option<MemberId>) -> Result<Change, SimFailure> {
        let member = member.unwrap_or_else(|| self.some_member(world));
        let location = self.location_for(world, member);
        if self.rng.random_bool(0.75) {
            return self.buy_day_pass(world, now, member, location);
        }
        let location_record = &world.site.locations[location];
        let expires = now + self.rng.random_range(1..=30) * HOUR_MS;
        let fields = json!({"CoworkerId": member.0, "TimePassId": location_record.day_pass,
            "BusinessId": location_record.business, "Used": false, "ExpireDate": nexudus_time(expires)?});
        let id = create(world, SimEntity::CoworkerTimePass, fields)?;
        self.ledger.passes.push(id);
        self.passes.push(LivePass { id, member, day_pass: true });
        Ok(notified(format!("member {member} buys unused day pass {id} expiring {}", iso(expires))))
    }

    /// A day pass used now: valid for today on the location's wall clock.
    fn buy_day_pass(
        &mut self,
        world: &World,
        now: Millis,
        member: MemberId,
        location: usize,
    ) -> Result<Change, SimFailure> {
        let location_record = &world.site.locations[location];
        let fields = json!({"CoworkerId": member.0, "TimePassId": location_record.day_pass,
            "BusinessId": location_record.business, "Used": true, "UsedDate": nexudus_time(now)?});
        let id = create(world, SimEntity::CoworkerTimePass, fields)?;
        self.ledger.passes.push(id);
        self.passes.push(LivePass { id, member, day_pass: true });
        Ok(notified(format!("member {member} uses day pass {id} in {}", location_record.city)))
    }

    fn time_pass(&mut self, world: &World, now: Millis, member: Option<MemberId>) -> Result<Change, SimFailure> {
        let member = member.unwrap_or_else(|| self.some_member(world));
        let location = &world.site.locations[self.location_for(world, member)];
        let expires = now + self.rng.random_range(30..=30 * 60) * MINUTE_MS;
        let uses = self.rng.random_range(1..=10);
        let fields = json!({"CoworkerId": member.0, "TimePassId": location.time_pass, "BusinessId": location.business,
            "Used": false, "RemainingUses": uses, "TotalUses": uses, "ExpireDate": nexudus_time(expires)?});
        let id = create(world, SimEntity::CoworkerTimePass, fields)?;
        self.ledger.passes.push(id);
        self.passes.push(LivePass { id, member, day_pass: false });
        Ok(notified(format!("member {member} buys time pass {id} expiring {}", iso(expires))))
    }

    fn use_up_pass(&mut self, world: &World, now: Millis) -> Result<Option<Change>, SimFailure> {
        let Some(index) = self.pick_index(self.passes.len()) else { return Ok(None) };
        let pass = self.passes[index].clone();
        let fields = if self.rng.random_bool(0.5) {
            json!({"RemainingUses": 0})
        } else {
            // Expiring early (a refund), perhaps already in the past.
            json!({"ExpireDate": nexudus_time(now + self.rng.random_range(-60..=120) * MINUTE_MS)?})
        };
        update(world, SimEntity::CoworkerTimePass, pass.id, fields.clone())?;
        Ok(Some(notified(format!("pass {} of member {} changes: {fields}", pass.id, pass.member))))
    }

    fn delete_pass(&mut self, world: &World) -> Result<Option<Change>, SimFailure> {
        let Some(index) = self.pick_index(self.passes.len()) else { return Ok(None) };
        let pass = self.passes.swap_remove(index);
        world
            .nexudus
            .delete(SimEntity::CoworkerTimePass, pass.id)
            .map_err(SimFailure::setup("deleting a pass in Nexudus"))?;
        Ok(Some(Change {
            text: format!("an admin deletes pass {} of member {} for good", pass.id, pass.member),
            propagation: Propagation::HardDelete,
            unlinked: None,
        }))
    }

    fn start_contract(&mut self, world: &World, now: Millis, member: Option<MemberId>) -> Result<Change, SimFailure> {
        let member = member.unwrap_or_else(|| self.some_member(world));
        let location = &world.site.locations[self.location_for(world, member)];
        let space = if self.rng.random_bool(0.3) {
            location.office
        } else {
            location.desks.choose(&mut self.rng).copied().unwrap_or(location.office)
        };
        let starts = minute(now + self.rng.random_range(-3 * 24 * 60..=12 * 60) * MINUTE_MS);
        let fields = json!({"CoworkerId": member.0, "IssuedById": location.business, "StartDate": nexudus_time(starts)?,
            "Active": true, "Desks": [space], "FloorPlanDeskIds": space.to_string()});
        let id = create(world, SimEntity::CoworkerContract, fields)?;
        self.ledger.contracts.push(id);
        self.contracts.push(LiveContract { id, member });
        Ok(notified(format!("member {member} signs contract {id} for space {space} from {}", iso(starts))))
    }

    fn end_contract(&mut self, world: &World, now: Millis) -> Result<Option<Change>, SimFailure> {
        let Some(index) = self.pick_index(self.contracts.len()) else { return Ok(None) };
        let contract = self.contracts.swap_remove(index);
        // Sometimes dated back a little, as an operator catching up would.
        let ends = minute(now + self.rng.random_range(-30..=12 * 60) * MINUTE_MS);
        update(world, SimEntity::CoworkerContract, contract.id, json!({"CancellationDate": nexudus_time(ends)?}))?;
        Ok(Some(notified(format!(
            "contract {} of member {} is cancelled from {}",
            contract.id,
            contract.member,
            iso(ends)
        ))))
    }

    fn deactivate_contract(&mut self, world: &World) -> Result<Option<Change>, SimFailure> {
        let Some(index) = self.pick_index(self.contracts.len()) else { return Ok(None) };
        let contract = self.contracts.swap_remove(index);
        update(world, SimEntity::CoworkerContract, contract.id, json!({"Active": false}))?;
        Ok(Some(notified(format!("contract {} of member {} is deactivated", contract.id, contract.member))))
    }

    /// The operator links a location's Nexudus-mapped room to another group, or to none.
    fn remap_room(&mut self, world: &World) -> Result<Change, SimFailure> {
        let location = self.rng.random_range(0..world.site.locations.len());
        let place = &world.site.locations[location];
        let Some(room) = place.nexudus_mapped_room() else {
            return Err(SimFailure::harness("remap a room", format!("location {location} has none mapped in Nexudus")));
        };
        let target: Option<KisiGroupId> =
            if self.rng.random_bool(0.2) { None } else { place.remap_targets().choose(&mut self.rng).copied() };
        let value = target.map_or(Value::Null, |group| json!(group.0.to_string()));
        let unlinked = world
            .nexudus
            .record(SimEntity::Resource, room.resource)
            .and_then(|record| {
                record.get("AccessControlGroupId").and_then(Value::as_str).and_then(|id| id.parse().ok())
            })
            .map(KisiGroupId);
        update(world, SimEntity::Resource, room.resource, json!({"AccessControlGroupId": value}))?;
        let told = target.map_or_else(|| "no group".to_owned(), |group| format!("group {group}"));
        Ok(Change {
            text: format!("the operator links room C in {} (resource {}) to {told}", place.city, room.resource),
            propagation: Propagation::Polled,
            unlinked,
        })
    }

    fn change_email(&mut self, world: &mut World) -> Result<Change, SimFailure> {
        let member = self.some_member(world);
        self.email_changes += 1;
        let email = format!("member{}.renamed{}@members.invalid", member.0, self.email_changes);
        update(world, SimEntity::Coworker, member.0, json!({"Email": email}))?;
        if let Some(known) = world.site.members.iter_mut().find(|known| known.id == member) {
            known.emails.push(email.clone());
        }
        Ok(notified(format!("member {member} changes their email to {email}")))
    }

    fn toggle_member(&mut self, world: &mut World) -> Result<Change, SimFailure> {
        let member = self.some_member(world);
        let Some(known) = world.site.members.iter_mut().find(|known| known.id == member) else {
            return Err(SimFailure::harness("toggle a member", format!("{member} is unknown")));
        };
        known.active = !known.active;
        let active = known.active;
        update(world, SimEntity::Coworker, member.0, json!({"Active": active}))?;
        let told = if active { "reactivated" } else { "deactivated (an unpaid invoice)" };
        Ok(notified(format!("member {member}'s account is {told}")))
    }

    fn pick_index(&mut self, len: usize) -> Option<usize> {
        (len > 0).then(|| self.rng.random_range(0..len))
    }
}

fn notified(text: String) -> Change {
    Change { text, propagation: Propagation::Notified, unlinked: None }
}

fn create(world: &World, kind: SimEntity, fields: Value) -> Result<u64, SimFailure> {
    world.nexudus.create(kind, fields).map_err(SimFailure::setup("creating a Nexudus record"))
}

fn update(world: &World, kind: SimEntity, id: u64, fields: Value) -> Result<(), SimFailure> {
    world.nexudus.update(kind, id, fields).map_err(SimFailure::setup("changing a Nexudus record"))
}

/// An instant as Nexudus writes it: whole seconds, UTC.
pub(crate) fn nexudus_time(at: Millis) -> Result<String, SimFailure> {
    let instant = jiff::Timestamp::from_millisecond(at - at.rem_euclid(1_000))
        .map_err(|error| SimFailure::harness("write a Nexudus time", error.to_string()))?;
    Ok(instant.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

pub(crate) fn iso(at: Millis) -> String {
    jiff::Timestamp::from_millisecond(at).map_or_else(|_| at.to_string(), |instant| instant.to_string())
}

fn span(starts: Millis, ends: Millis) -> String {
    format!("{} to {}", iso(starts), iso(ends))
}

/// Rounded down to a quarter of an hour, as bookings are made.
fn quarter_hour(at: Millis) -> Millis {
    at - at.rem_euclid(15 * MINUTE_MS)
}

fn minute(at: Millis) -> Millis {
    at - at.rem_euclid(MINUTE_MS)
}
