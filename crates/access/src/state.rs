//! A member's access state and the fold that builds it from their events and the writer's outcomes.

use std::collections::BTreeMap;

use doorsync_proto::{
    BookingChanged, BookingId, CivilDate, ContractChanged, ContractId, EntitlementId, EntitlementWithheld, Envelope,
    Event, FloorPlanItem, KisiAssignmentId, KisiGroupId, KisiUserId, KisiUserState, MemberChanged, MemberId, MessageId,
    Outcome, PassId, PassProductId, PassValidity, ResourceId, Timestamp,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::day::{DaySpan, day_span, latest_possible_end};
use crate::desired::{Desired, Window};
use crate::{AccessPolicy, Mapping};

/// How long after an entitlement ended (by the time of the latest folded event) it is forgotten.
///
/// Without it a member's state would grow with every booking they ever made. An entitlement this
/// long over cannot open a door again unless a booking's lag or a pass's lag is longer than this,
/// which no deployment needs; explaining old access reads the event log, not the state.
pub const FORGET_ENDED_AFTER_MS: i64 = 31 * 24 * 60 * 60 * 1_000;

/// Everything doorsync knows about one member: what they hold in Nexudus (folded from events),
/// what doorsync last asked the Kisi writer for, and what the writer reported back.
///
/// Built only by [`fold`], [`fold_outcome`] and [`record_command`](crate::record_command), so that
/// replaying the same messages always builds the same state. Serialised as a snapshot with
/// `rmp_serde::to_vec_named`; fields added later must default so that old snapshots still load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    member: MemberId,
    /// The sequence of the last event folded; events at or below it are already in the state.
    last_sequence: u64,
    /// When the last folded event happened: the time commands computed from this state carry, so
    /// that their ids depend only on the log.
    basis_time: Timestamp,
    status: MemberStatus,
    bookings: BTreeMap<BookingId, Booking>,
    passes: BTreeMap<PassId, Pass>,
    contracts: BTreeMap<ContractId, Contract>,
    /// Bookings, passes and contracts whose latest version Nexudus holds cannot be read: what an
    /// earlier version granted is gone from the maps above, and this says why. Left off the
    /// encoding when empty, so the snapshots and digests of members with nothing withheld are
    /// those of builds before it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    withheld: BTreeMap<EntitlementId, Withheld>,
    /// The user and grants that the commands emitted so far ask for.
    emitted: Desired,
    kisi: KisiRecord,
}

/// Whether Nexudus has told us about the member, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    /// No `MemberChanged` yet: the member holds nothing, since there is no one to create a user for.
    Unknown,
    Known(Profile),
    /// Deleted in Nexudus: holds nothing (a later `MemberChanged` brings the member back).
    Removed,
}

/// The member's details, as Nexudus last reported them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub email: String,
    pub name: String,
    /// An inactive member holds nothing, whatever else they have.
    pub active: bool,
}

/// One booking of a resource, as booked (lead and lag are applied when access is derived).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booking {
    pub resource: ResourceId,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    /// Tentative bookings grant nothing; kept so that explaining a closed door can say why.
    pub tentative: bool,
}

/// One time pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pass {
    pub product: PassProductId,
    pub term: PassTerm,
    /// A used-up pass grants nothing even within its term.
    pub used_up: bool,
}

/// When a pass is valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PassTerm {
    /// Between two instants; a missing bound is open.
    Window { from: Option<Timestamp>, until: Option<Timestamp> },
    /// For one calendar day in a time zone, resolved to instants when the pass was folded (the
    /// date, zone and tz database never change afterwards, so neither does the answer).
    Day { date: CivilDate, time_zone: String, span: DaySpan },
}

/// Why an entitlement grants nothing until Nexudus holds a readable version of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withheld {
    /// What the ingestor could not read, as it reported it.
    pub reason: String,
    /// When the unreadable version was written (as far as the ingestor could tell).
    pub since: Timestamp,
}

/// One contract and the desks and offices it includes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contract {
    pub starts_at: Timestamp,
    pub ends_at: Option<Timestamp>,
    pub cancelled_at: Option<Timestamp>,
    pub active: bool,
    pub spaces: Vec<FloorPlanItem>,
}

impl Contract {
    /// When the contract stops granting access: the earlier of its end and its cancellation,
    /// `None` if it has neither.
    pub fn effective_end(&self) -> Option<Timestamp> {
        match (self.ends_at, self.cancelled_at) {
            (Some(ends), Some(cancelled)) => Some(ends.min(cancelled)),
            (ends, cancelled) => ends.or(cancelled),
        }
    }
}

/// What the Kisi writer reported about the member: for `status` and `explain`, never for deciding
/// what access the member should have.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KisiRecord {
    pub user: Option<KisiUserId>,
    /// Whether doorsync created the Kisi user (rather than finding one by email).
    pub created_by_doorsync: bool,
    /// The user's state as last reported, if it was reported since the user was linked.
    pub user_state: Option<KisiUserState>,
    pub assignments: BTreeMap<KisiGroupId, Assignment>,
    pub last_failure: Option<CommandFailure>,
}

/// A role assignment Kisi holds for the member in one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub id: KisiAssignmentId,
    pub window: Window,
}

/// The last command the writer could not carry out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandFailure {
    pub command: MessageId,
    pub reason: String,
    /// Whether the command was dead-lettered (retrying cannot help).
    pub permanent: bool,
}

impl MemberState {
    /// The state of a member doorsync has heard nothing about.
    pub fn new(member: MemberId) -> Self {
        Self {
            member,
            last_sequence: 0,
            basis_time: Timestamp::from_unix_millis(0),
            status: MemberStatus::Unknown,
            bookings: BTreeMap::new(),
            passes: BTreeMap::new(),
            contracts: BTreeMap::new(),
            withheld: BTreeMap::new(),
            emitted: Desired::default(),
            kisi: KisiRecord::default(),
        }
    }

    pub fn member(&self) -> MemberId {
        self.member
    }

    /// The sequence of the last event folded (0 before any).
    pub fn last_sequence(&self) -> u64 {
        self.last_sequence
    }

    pub fn status(&self) -> &MemberStatus {
        &self.status
    }

    pub fn bookings(&self) -> &BTreeMap<BookingId, Booking> {
        &self.bookings
    }

    pub fn passes(&self) -> &BTreeMap<PassId, Pass> {
        &self.passes
    }

    pub fn contracts(&self) -> &BTreeMap<ContractId, Contract> {
        &self.contracts
    }

    /// The bookings, passes and contracts that grant nothing until they can be read again.
    pub fn withheld(&self) -> &BTreeMap<EntitlementId, Withheld> {
        &self.withheld
    }

    /// What the commands emitted so far ask Kisi to hold for the member.
    pub fn emitted(&self) -> &Desired {
        &self.emitted
    }

    pub fn kisi(&self) -> &KisiRecord {
        &self.kisi
    }

    /// Whether anything the member holds may open a door: they are known, active and not removed.
    pub(crate) fn holds_access(&self) -> bool {
        matches!(&self.status, MemberStatus::Known(profile) if profile.active)
    }

    pub(crate) fn basis_time(&self) -> Timestamp {
        self.basis_time
    }

    pub(crate) fn emitted_mut(&mut self) -> &mut Desired {
        &mut self.emitted
    }

    fn forget_ended_before(&mut self, cutoff: Timestamp) {
        // Looking is cheaper than `retain`, and there is rarely anything to forget.
        if self.bookings.values().any(|booking| booking.ends_at < cutoff) {
            self.bookings.retain(|_, booking| booking.ends_at >= cutoff);
        }
        let pass_over = |pass: &Pass| pass.latest_end().is_some_and(|end| end < cutoff);
        if self.passes.values().any(pass_over) {
            self.passes.retain(|_, pass| !pass_over(pass));
        }
        let contract_over = |contract: &Contract| contract.effective_end().is_some_and(|end| end < cutoff);
        if self.contracts.values().any(contract_over) {
            self.contracts.retain(|_, contract| !contract_over(contract));
        }
        if self.withheld.values().any(|withheld| withheld.since < cutoff) {
            self.withheld.retain(|_, withheld| withheld.since >= cutoff);
        }
    }

    /// Takes the entitlement out of what grants, and notes why; an entitlement withheld already
    /// keeps the time it was first withheld, with the latest reason.
    fn withhold(&mut self, withheld: &EntitlementWithheld, at: Timestamp) {
        match withheld.entitlement {
            EntitlementId::Booking(booking) => {
                self.bookings.remove(&booking);
            }
            EntitlementId::Pass(pass) => {
                self.passes.remove(&pass);
            }
            EntitlementId::Contract(contract) => {
                self.contracts.remove(&contract);
            }
        }
        self.withheld
            .entry(withheld.entitlement)
            .and_modify(|known| known.reason.clone_from(&withheld.reason))
            .or_insert_with(|| Withheld { reason: withheld.reason.clone(), since: at });
    }

    /// A readable version or the removal of `entitlement` arrived: it is no longer withheld.
    fn readable(&mut self, entitlement: EntitlementId) {
        if !self.withheld.is_empty() {
            self.withheld.remove(&entitlement);
        }
    }
}

impl Pass {
    /// An instant after which the pass certainly grants nothing, before any lag; `None` if it
    /// never runs out.
    fn latest_end(&self) -> Option<Timestamp> {
        match &self.term {
            PassTerm::Window { until, .. } => *until,
            PassTerm::Day { span: DaySpan::Resolved { end, .. }, .. } => Some(*end),
            PassTerm::Day { date, .. } => latest_possible_end(*date),
        }
    }
}

/// Folds one of the member's events into their state: `state' = fold(state, event)`, in place.
///
/// An event whose `sequence` is not above the last one folded is already in the state and is
/// ignored, so replaying the log from before a snapshot is harmless. Events about someone else,
/// and mapping changes (which concern every member and go to the [`Mapping`](crate::Mapping)),
/// are ignored too and do not advance the sequence.
pub fn fold(state: &mut MemberState, sequence: u64, envelope: &Envelope<Event>) {
    let event = &envelope.message;
    if sequence <= state.last_sequence || event.member() != Some(state.member) {
        return;
    }
    state.last_sequence = sequence;
    state.basis_time = envelope.occurred_at;
    match event {
        Event::MemberChanged(changed) => set_profile(&mut state.status, changed),
        Event::MemberRemoved(_) => {
            // The member's bookings, passes and contracts stay: `Removed` already grants nothing,
            // and a removal Nexudus takes back (the member is seen again) must not leave them
            // without access until each record changes. Records Nexudus deleted with the member
            // are removed by their own events, or forgotten once over.
            state.status = MemberStatus::Removed;
        }
        Event::BookingChanged(changed) => {
            state.readable(EntitlementId::Booking(changed.booking));
            state.bookings.insert(changed.booking, booking_from(changed));
        }
        Event::BookingCancelled(cancelled) => {
            state.readable(EntitlementId::Booking(cancelled.booking));
            state.bookings.remove(&cancelled.booking);
        }
        Event::PassChanged(changed) => {
            state.readable(EntitlementId::Pass(changed.pass));
            let term = pass_term(state.passes.get(&changed.pass), &changed.validity);
            state.passes.insert(changed.pass, Pass { product: changed.product, term, used_up: changed.used_up });
        }
        Event::PassRemoved(removed) => {
            state.readable(EntitlementId::Pass(removed.pass));
            state.passes.remove(&removed.pass);
        }
        Event::ContractChanged(changed) => {
            state.readable(EntitlementId::Contract(changed.contract));
            state.contracts.insert(changed.contract, contract_from(changed));
        }
        Event::ContractRemoved(removed) => {
            state.readable(EntitlementId::Contract(removed.contract));
            state.contracts.remove(&removed.contract);
        }
        Event::EntitlementWithheld(withheld) => state.withhold(withheld, envelope.occurred_at),
        Event::MappingChanged(_) => {}
    }
    state.forget_ended_before(Timestamp::from_unix_millis(
        envelope.occurred_at.as_unix_millis().saturating_sub(FORGET_ENDED_AFTER_MS),
    ));
}

fn set_profile(status: &mut MemberStatus, changed: &MemberChanged) {
    if let MemberStatus::Known(profile) = status {
        // `clone_from` reuses the strings' buffers: member changes are frequent, renames are not.
        profile.email.clone_from(&changed.email);
        profile.name.clone_from(&changed.name);
        profile.active = changed.active;
    } else {
        *status = MemberStatus::Known(Profile {
            email: changed.email.clone(),
            name: changed.name.clone(),
            active: changed.active,
        });
    }
}

fn booking_from(changed: &BookingChanged) -> Booking {
    Booking {
        resource: changed.resource,
        starts_at: changed.starts_at,
        ends_at: changed.ends_at,
        tentative: changed.tentative,
    }
}

fn pass_term(previous: Option<&Pass>, validity: &PassValidity) -> PassTerm {
    match validity {
        PassValidity::Window { from, until } => PassTerm::Window { from: *from, until: *until },
        PassValidity::Day { date, time_zone } => {
            // A pass re-sent with the same day (e.g. when it is used up) keeps its resolved span
            // rather than redoing the time zone arithmetic.
            if let Some(Pass { term: previous @ PassTerm::Day { date: old_date, time_zone: old_zone, .. }, .. }) =
                previous
                && old_date == date
                && old_zone == time_zone
            {
                return previous.clone();
            }
            PassTerm::Day { date: *date, time_zone: time_zone.clone(), span: day_span(*date, time_zone) }
        }
    }
}

fn contract_from(changed: &ContractChanged) -> Contract {
    Contract {
        starts_at: changed.starts_at,
        ends_at: changed.ends_at,
        cancelled_at: changed.cancelled_at,
        active: changed.active,
        spaces: changed.spaces.clone(),
    }
}

/// Records what the Kisi writer reported, for `status` and `explain`.
///
/// Deliberately leaves everything [`desired`](crate::desired) reads untouched: what a member
/// should have depends only on Nexudus's facts and the policy, never on whether Kisi has caught up.
pub fn fold_outcome(state: &mut MemberState, outcome: &Outcome) {
    if outcome.member() != state.member {
        return;
    }
    let kisi = &mut state.kisi;
    match outcome {
        Outcome::UserLinked(linked) => {
            // Finding by email the user whose creation response was lost must not make doorsync
            // forget it created that user.
            let same_user = kisi.user == Some(linked.kisi_user);
            kisi.created_by_doorsync = linked.created_by_doorsync || (same_user && kisi.created_by_doorsync);
            kisi.user = Some(linked.kisi_user);
            if !same_user {
                kisi.user_state = None;
            }
        }
        Outcome::GrantApplied(applied) => {
            kisi.assignments.insert(
                applied.group,
                Assignment {
                    id: applied.assignment,
                    window: Window { from: applied.valid_from, until: applied.valid_until },
                },
            );
        }
        Outcome::Revoked(revoked) => {
            kisi.assignments.remove(&revoked.group);
        }
        Outcome::UserAccessChanged(changed) => {
            kisi.user_state = Some(changed.state);
            if changed.state == KisiUserState::Deleted {
                // Kisi removes a deleted user's role assignments with it.
                kisi.assignments.clear();
            }
        }
        Outcome::Failed(failed) => {
            kisi.last_failure = Some(CommandFailure {
                command: failed.command.clone(),
                reason: failed.reason.clone(),
                permanent: failed.permanent,
            });
        }
    }
}

/// The time to put on commands computed from this state: when the last folded event happened
/// (the Unix epoch before any), so that a command's content-derived id depends only on the log.
pub fn command_time(state: &MemberState) -> Timestamp {
    state.basis_time()
}

/// SHA-256 of the state's canonical encoding (MessagePack with field names, maps in key order).
///
/// Two replays of the same log give the same digest on every machine; tests compare digests
/// rather than whole states.
pub fn state_digest(state: &MemberState) -> [u8; 32] {
    canonical_digest(state)
}

/// SHA-256 of what members are evaluated with besides their state: the configured mapping and
/// the policy. The engine keeps it with its checkpoints, so that a restart with an edited
/// configuration re-evaluates every member, not only those whose records change.
pub fn configuration_digest(mapping: &Mapping, policy: &AccessPolicy) -> [u8; 32] {
    canonical_digest(&(mapping, policy))
}

fn canonical_digest(value: &impl Serialize) -> [u8; 32] {
    let mut hasher = HashingWriter(Sha256::new());
    // Encoding into a hasher cannot fail: the writer never fails and every map encoded has a
    // known length and integer or string keys. Should it ever fail, the digest covers the bytes
    // written up to the failure and the marker below, so it is still a function of the value.
    if rmp_serde::encode::write_named(&mut hasher, value).is_err() {
        hasher.0.update(b"\0doorsync: value could not be encoded");
    }
    hasher.0.finalize().into()
}

struct HashingWriter(Sha256);

impl std::io::Write for HashingWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
