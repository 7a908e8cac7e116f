//! One named example per access rule of the design (design.md §1), through the public API.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test should fail loudly at the first surprise")]

use std::collections::BTreeMap;

use doorsync_access::{
    AccessPolicy, BookingTiming, DaySpan, Desired, DesiredUser, Entitlement, FORGET_ENDED_AFTER_MS, Grant, Mapping,
    MemberState, MemberStatus, NoAccessPolicy, PassTerm, Source, UserAccess, Window, Withheld, command_time, commands,
    desired, entitlements, fold, fold_outcome, next_change, record_command, state_digest, window_edge,
};
use doorsync_proto::{
    BookingCancelled, BookingChanged, BookingId, CivilDate, Command, ContractChanged, ContractId, ContractRemoved,
    DeleteUser, EnsureUser, EntitlementId, EntitlementWithheld, Envelope, Event, FloorPlanItem, FloorPlanItemId,
    FloorPlanItemKind, GrantApplied, GrantGroup, KisiAssignmentId, KisiGroupId, KisiUserId, MappingChanged,
    MappingSource, MemberChanged, MemberId, MemberRemoved, Outcome, PassChanged, PassId, PassProductId, PassRemoved,
    PassValidity, ResourceId, RestoreUser, RevokeGroup, SuspendUser, Timestamp, UserLinked, WireMessage,
};

const MEMBER: MemberId = MemberId(7);
const MINUTE: i64 = 60_000;

const ROOM: ResourceId = ResourceId(1);
const BOOTH: ResourceId = ResourceId(2);
const UNMAPPED_ROOM: ResourceId = ResourceId(99);
const DAY_PASS: PassProductId = PassProductId(1);
const DESK: FloorPlanItemId = FloorPlanItemId(1);
const OFFICE: FloorPlanItemId = FloorPlanItemId(2);

const ROOM_DOORS: KisiGroupId = KisiGroupId(10);
const BOOTH_DOORS: KisiGroupId = KisiGroupId(20);
const COWORKING_DOORS: KisiGroupId = KisiGroupId(30);
const DESK_DOORS: KisiGroupId = KisiGroupId(40);
const OFFICE_DOORS: KisiGroupId = KisiGroupId(41);

fn at(text: &str) -> Timestamp {
    Timestamp::from_unix_millis(text.parse::<jiff::Timestamp>().unwrap().as_millisecond())
}

fn plus(instant: Timestamp, millis: i64) -> Timestamp {
    Timestamp::from_unix_millis(instant.as_unix_millis() + millis)
}

fn window(from: &str, until: &str) -> Window {
    Window { from: Some(at(from)), until: Some(at(until)) }
}

/// A member as the engine would drive it: events folded with increasing sequences, access derived
/// with one mapping and policy, and commands recorded as emitted.
struct Member {
    state: MemberState,
    sequence: u64,
    mapping: Mapping,
    policy: AccessPolicy,
}

impl Member {
    /// A known, active member, with the rooms, the pass product and the desk and office mapped.
    fn new() -> Self {
        let mut member = Self::unknown();
        member.event(at("2024-01-01T00:00:00Z"), member_changed("ada@example.com", true));
        member
    }

    fn unknown() -> Self {
        let mut mapping = Mapping::default();
        mapping.resources.insert(ROOM, ROOM_DOORS);
        mapping.resources.insert(BOOTH, BOOTH_DOORS);
        mapping.pass_products.insert(DAY_PASS, COWORKING_DOORS);
        mapping.floor_plan_items.insert(DESK, DESK_DOORS);
        mapping.floor_plan_items.insert(OFFICE, OFFICE_DOORS);
        Self { state: MemberState::new(MEMBER), sequence: 0, mapping, policy: AccessPolicy::default() }
    }

    fn event(&mut self, occurred_at: Timestamp, event: Event) {
        self.sequence += 1;
        fold(&mut self.state, self.sequence, &Envelope::new(occurred_at, event).unwrap());
    }

    fn desired(&self, now: Timestamp) -> Desired {
        desired(&self.state, &self.mapping, &self.policy, now)
    }

    fn grant(&self, group: KisiGroupId, now: Timestamp) -> Option<Window> {
        self.desired(now).grants.get(&group).copied()
    }

    fn next_change(&self, now: Timestamp) -> Option<Timestamp> {
        next_change(&self.state, &self.mapping, &self.policy, now)
    }

    /// The commands that bring Kisi to what is desired at `now`, recorded as emitted.
    fn sync(&mut self, now: Timestamp) -> Vec<Command> {
        let commands = commands(&self.state, &self.desired(now));
        for command in &commands {
            record_command(&mut self.state, command);
        }
        commands
    }

    /// [`Member::sync`], with each command's type and the window edge that made it necessary.
    fn sync_with_edges(&mut self, now: Timestamp) -> Vec<(&'static str, Option<Timestamp>)> {
        let commands = commands(&self.state, &self.desired(now));
        let edges: Vec<Option<Timestamp>> =
            commands.iter().map(|command| window_edge(&self.state, command, now)).collect();
        for command in &commands {
            record_command(&mut self.state, command);
        }
        commands.iter().map(WireMessage::tag).zip(edges).collect()
    }
}

fn member_changed(email: &str, active: bool) -> Event {
    Event::MemberChanged(MemberChanged { member: MEMBER, email: email.to_owned(), name: "Ada L.".to_owned(), active })
}

fn booking(id: u64, resource: ResourceId, starts_at: &str, ends_at: &str) -> Event {
    Event::BookingChanged(BookingChanged {
        member: MEMBER,
        booking: BookingId(id),
        resource,
        starts_at: at(starts_at),
        ends_at: at(ends_at),
        tentative: false,
    })
}

fn tentative_booking(id: u64, resource: ResourceId, starts_at: &str, ends_at: &str) -> Event {
    let Event::BookingChanged(changed) = booking(id, resource, starts_at, ends_at) else { unreachable!() };
    Event::BookingChanged(BookingChanged { tentative: true, ..changed })
}

fn window_pass(id: u64, from: Option<&str>, until: Option<&str>, used_up: bool) -> Event {
    Event::PassChanged(PassChanged {
        member: MEMBER,
        pass: PassId(id),
        product: DAY_PASS,
        validity: PassValidity::Window { from: from.map(at), until: until.map(at) },
        used_up,
    })
}

fn day_pass(id: u64, date: &str, time_zone: &str) -> Event {
    Event::PassChanged(PassChanged {
        member: MEMBER,
        pass: PassId(id),
        product: DAY_PASS,
        validity: PassValidity::Day { date: date.parse::<CivilDate>().unwrap(), time_zone: time_zone.to_owned() },
        used_up: false,
    })
}

fn contract(
    id: u64,
    starts_at: &str,
    ends_at: Option<&str>,
    cancelled_at: Option<&str>,
    active: bool,
    spaces: &[FloorPlanItemId],
) -> Event {
    Event::ContractChanged(ContractChanged {
        member: MEMBER,
        contract: ContractId(id),
        starts_at: at(starts_at),
        ends_at: ends_at.map(at),
        cancelled_at: cancelled_at.map(at),
        active,
        spaces: spaces.iter().map(|&id| FloorPlanItem { id, kind: FloorPlanItemKind::Desk }).collect(),
    })
}

fn early() -> Timestamp {
    at("2024-05-01T06:00:00Z")
}

// Bookings

#[test]
fn a_booking_opens_its_rooms_doors_15_minutes_before_to_15_minutes_after_by_default() {
    let mut member = Member::new();
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));

    let expected = window("2024-05-01T08:45:00Z", "2024-05-01T10:15:00Z");
    assert_eq!(member.grant(ROOM_DOORS, at("2024-05-01T08:00:00Z")), Some(expected), "written ahead");
    assert!(expected.contains(at("2024-05-01T08:45:00Z")));
    assert!(!expected.contains(at("2024-05-01T08:44:59.999Z")));
    assert!(!expected.contains(at("2024-05-01T10:15:00Z")));
    assert_eq!(member.grant(ROOM_DOORS, at("2024-05-01T10:14:59.999Z")), Some(expected));
    assert_eq!(member.grant(ROOM_DOORS, at("2024-05-01T10:15:00Z")), None);
}

#[test]
fn a_resources_own_lead_and_lag_replace_the_defaults() {
    let mut member = Member::new();
    member.policy.resource_timing.insert(BOOTH, BookingTiming { lead_ms: 5 * MINUTE, lag_ms: 0 });
    member.event(early(), booking(1, BOOTH, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    member.event(early(), booking(2, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));

    let now = at("2024-05-01T08:00:00Z");
    assert_eq!(member.grant(BOOTH_DOORS, now), Some(window("2024-05-01T08:55:00Z", "2024-05-01T10:00:00Z")));
    assert_eq!(member.grant(ROOM_DOORS, now), Some(window("2024-05-01T08:45:00Z", "2024-05-01T10:15:00Z")));
}

#[test]
fn a_moved_booking_moves_the_window_at_once() {
    let mut member = Member::new();
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    let now = at("2024-05-01T09:30:00Z");
    assert_eq!(member.sync(now).len(), 2, "ensure the user, grant the room");

    member.event(now, booking(1, ROOM, "2024-05-01T14:00:00Z", "2024-05-01T15:00:00Z"));

    let moved = window("2024-05-01T13:45:00Z", "2024-05-01T15:15:00Z");
    assert_eq!(member.grant(ROOM_DOORS, now), Some(moved), "the old window is gone, the new one is written ahead");
    assert_eq!(
        member.sync(now),
        [Command::GrantGroup(GrantGroup {
            member: MEMBER,
            group: ROOM_DOORS,
            valid_from: moved.from,
            valid_until: moved.until,
            basis: 3,
        })]
    );
}

#[test]
fn a_booking_moved_to_another_room_opens_the_other_rooms_doors_instead() {
    let mut member = Member::new();
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    member.event(early(), booking(1, BOOTH, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));

    let grants = member.desired(at("2024-05-01T09:30:00Z")).grants;
    assert_eq!(grants.keys().copied().collect::<Vec<_>>(), [BOOTH_DOORS]);
}

#[test]
fn a_cancelled_booking_grants_nothing_and_its_grant_is_revoked() {
    let mut member = Member::new();
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    let now = at("2024-05-01T09:30:00Z");
    member.sync(now);

    member.event(now, Event::BookingCancelled(BookingCancelled { member: MEMBER, booking: BookingId(1) }));

    assert!(member.desired(now).grants.is_empty());
    assert_eq!(
        member.sync(now),
        [
            Command::RevokeGroup(RevokeGroup { member: MEMBER, group: ROOM_DOORS, basis: 3 }),
            Command::SuspendUser(SuspendUser { member: MEMBER, basis: 3 }),
        ]
    );
}

#[test]
fn a_tentative_booking_grants_nothing_until_it_is_confirmed() {
    let mut member = Member::new();
    member.event(early(), tentative_booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    let now = at("2024-05-01T09:30:00Z");
    assert_eq!(member.desired(now), Desired::default(), "no grant and no user");

    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    assert!(member.grant(ROOM_DOORS, now).is_some());
}

#[test]
fn a_booking_of_an_unmapped_resource_grants_nothing() {
    let mut member = Member::new();
    member.event(early(), booking(1, UNMAPPED_ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    assert_eq!(member.desired(at("2024-05-01T09:30:00Z")), Desired::default());
    assert!(member.state.bookings().contains_key(&BookingId(1)), "kept, for when the room is mapped");
}

// Passes

#[test]
fn a_pass_ends_exactly_at_its_expiry_by_default() {
    let mut member = Member::new();
    member.event(early(), window_pass(1, Some("2024-05-01T08:00:00Z"), Some("2024-05-01T18:00:00Z"), false));

    let expected = window("2024-05-01T08:00:00Z", "2024-05-01T18:00:00Z");
    assert_eq!(member.grant(COWORKING_DOORS, at("2024-05-01T12:00:00Z")), Some(expected));
    assert_eq!(member.next_change(at("2024-05-01T12:00:00Z")), Some(at("2024-05-01T18:00:00Z")));
    assert_eq!(member.grant(COWORKING_DOORS, at("2024-05-01T18:00:00Z")), None);
}

#[test]
fn a_pass_lag_keeps_the_doors_open_a_little_past_expiry() {
    let mut member = Member::new();
    member.policy.pass_lag_ms = 10 * MINUTE;
    member.event(early(), window_pass(1, Some("2024-05-01T08:00:00Z"), Some("2024-05-01T18:00:00Z"), false));
    assert_eq!(
        member.grant(COWORKING_DOORS, at("2024-05-01T12:00:00Z")),
        Some(window("2024-05-01T08:00:00Z", "2024-05-01T18:10:00Z"))
    );
}

#[test]
fn a_pass_with_open_bounds_stays_open() {
    let mut member = Member::new();
    member.policy.pass_lag_ms = 10 * MINUTE;
    member.event(early(), window_pass(1, None, None, false));
    let now = at("2024-05-01T12:00:00Z");
    assert_eq!(member.grant(COWORKING_DOORS, now), Some(Window { from: None, until: None }));
    assert_eq!(member.next_change(now), None);

    member.event(early(), window_pass(1, Some("2024-05-02T08:00:00Z"), None, false));
    assert_eq!(
        member.grant(COWORKING_DOORS, now),
        Some(Window { from: Some(at("2024-05-02T08:00:00Z")), until: None })
    );
}

#[test]
fn a_used_up_pass_grants_nothing() {
    let mut member = Member::new();
    member.event(early(), window_pass(1, Some("2024-05-01T08:00:00Z"), Some("2024-05-01T18:00:00Z"), true));
    assert_eq!(member.desired(at("2024-05-01T12:00:00Z")), Desired::default());
}

#[test]
fn a_removed_pass_grants_nothing() {
    let mut member = Member::new();
    member.event(early(), window_pass(1, Some("2024-05-01T08:00:00Z"), Some("2024-05-01T18:00:00Z"), false));
    member.event(early(), Event::PassRemoved(PassRemoved { member: MEMBER, pass: PassId(1) }));
    assert_eq!(member.desired(at("2024-05-01T12:00:00Z")), Desired::default());
}

#[test]
fn a_day_pass_in_london_is_valid_for_that_day_in_british_time() {
    let mut member = Member::new();
    member.event(early(), day_pass(1, "2024-07-10", "Europe/London"));
    assert_eq!(
        member.grant(COWORKING_DOORS, at("2024-07-10T12:00:00Z")),
        Some(window("2024-07-09T23:00:00Z", "2024-07-10T23:00:00Z"))
    );
}

#[test]
fn a_day_pass_on_the_spring_forward_day_lasts_23_hours() {
    let mut member = Member::new();
    member.event(early(), day_pass(1, "2024-03-31", "Europe/London"));
    let grant = member.grant(COWORKING_DOORS, at("2024-03-31T12:00:00Z")).unwrap();
    assert_eq!(grant, window("2024-03-31T00:00:00Z", "2024-03-31T23:00:00Z"));
}

#[test]
fn a_day_pass_on_the_fall_back_day_lasts_25_hours() {
    let mut member = Member::new();
    member.event(early(), day_pass(1, "2024-10-27", "Europe/London"));
    let grant = member.grant(COWORKING_DOORS, at("2024-10-27T12:00:00Z")).unwrap();
    assert_eq!(grant, window("2024-10-26T23:00:00Z", "2024-10-28T00:00:00Z"));
}

#[test]
fn a_day_pass_on_a_day_without_a_midnight_starts_when_the_clocks_jumped() {
    // São Paulo's clocks went from 00:00 straight to 01:00 on 2015-10-18.
    let mut member = Member::new();
    member.event(at("2015-10-01T00:00:00Z"), day_pass(1, "2015-10-18", "America/Sao_Paulo"));
    let grant = member.grant(COWORKING_DOORS, at("2015-10-18T12:00:00Z")).unwrap();
    assert_eq!(grant, window("2015-10-18T03:00:00Z", "2015-10-19T02:00:00Z"));
}

#[test]
fn a_day_pass_in_an_unknown_zone_grants_nothing_and_says_why() {
    let mut member = Member::new();
    member.event(early(), day_pass(1, "2024-07-10", "Mars/Olympus_Mons"));
    assert_eq!(member.desired(at("2024-07-10T12:00:00Z")), Desired::default());
    let pass = &member.state.passes()[&PassId(1)];
    assert!(
        matches!(&pass.term, PassTerm::Day { time_zone, span: DaySpan::UnknownTimeZone, .. } if time_zone == "Mars/Olympus_Mons")
    );
}

// Contracts

#[test]
fn a_contract_opens_its_desks_and_offices_from_its_start_until_it_ends() {
    let mut member = Member::new();
    member
        .event(early(), contract(1, "2024-05-01T00:00:00Z", Some("2024-06-01T00:00:00Z"), None, true, &[DESK, OFFICE]));
    let now = at("2024-05-10T12:00:00Z");
    let expected = window("2024-05-01T00:00:00Z", "2024-06-01T00:00:00Z");
    assert_eq!(member.grant(DESK_DOORS, now), Some(expected));
    assert_eq!(member.grant(OFFICE_DOORS, now), Some(expected));
    assert_eq!(member.desired(at("2024-06-01T00:00:00Z")).grants, BTreeMap::new());
}

#[test]
fn a_cancelled_contract_ends_at_its_cancellation_if_that_comes_first() {
    let mut member = Member::new();
    member.event(
        early(),
        contract(1, "2024-05-01T00:00:00Z", Some("2024-06-01T00:00:00Z"), Some("2024-05-20T00:00:00Z"), true, &[DESK]),
    );
    assert_eq!(
        member.grant(DESK_DOORS, at("2024-05-10T12:00:00Z")),
        Some(window("2024-05-01T00:00:00Z", "2024-05-20T00:00:00Z"))
    );

    member.event(
        early(),
        contract(1, "2024-05-01T00:00:00Z", Some("2024-06-01T00:00:00Z"), Some("2024-07-01T00:00:00Z"), true, &[DESK]),
    );
    assert_eq!(
        member.grant(DESK_DOORS, at("2024-05-10T12:00:00Z")),
        Some(window("2024-05-01T00:00:00Z", "2024-06-01T00:00:00Z"))
    );
}

#[test]
fn a_contract_without_end_or_cancellation_stays_open() {
    let mut member = Member::new();
    member.event(early(), contract(1, "2024-05-01T00:00:00Z", None, None, true, &[DESK]));
    let now = at("2030-01-01T00:00:00Z");
    assert_eq!(member.grant(DESK_DOORS, now), Some(Window { from: Some(at("2024-05-01T00:00:00Z")), until: None }));
    assert_eq!(member.next_change(now), None);
}

#[test]
fn an_inactive_or_removed_contract_grants_nothing() {
    let mut member = Member::new();
    member.event(early(), contract(1, "2024-05-01T00:00:00Z", None, None, false, &[DESK]));
    let now = at("2024-05-10T12:00:00Z");
    assert_eq!(member.desired(now), Desired::default());

    member.event(early(), contract(1, "2024-05-01T00:00:00Z", None, None, true, &[DESK]));
    assert!(member.grant(DESK_DOORS, now).is_some());
    member.event(early(), Event::ContractRemoved(ContractRemoved { member: MEMBER, contract: ContractId(1) }));
    assert_eq!(member.desired(now), Desired::default());
}

// The member

#[test]
fn a_member_nexudus_has_not_described_yet_holds_nothing() {
    let mut member = Member::unknown();
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    let now = at("2024-05-01T09:30:00Z");
    assert_eq!(member.desired(now), Desired::default());

    member.event(early(), member_changed("ada@example.com", true));
    assert!(member.grant(ROOM_DOORS, now).is_some(), "the booking counts once the member is known");
}

#[test]
fn an_inactive_member_holds_nothing() {
    let mut member = Member::new();
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    member.event(early(), member_changed("ada@example.com", false));
    assert_eq!(member.desired(at("2024-05-01T09:30:00Z")), Desired::default());
    assert_eq!(member.next_change(at("2024-05-01T09:30:00Z")), None);
}

#[test]
fn a_removed_member_holds_nothing_and_their_user_is_suspended() {
    let mut member = Member::new();
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    let now = at("2024-05-01T09:30:00Z");
    member.sync(now);

    member.event(now, Event::MemberRemoved(MemberRemoved { member: MEMBER }));

    assert_eq!(member.state.status(), &MemberStatus::Removed);
    assert_eq!(
        member.sync(now),
        [
            Command::RevokeGroup(RevokeGroup { member: MEMBER, group: ROOM_DOORS, basis: 3 }),
            Command::SuspendUser(SuspendUser { member: MEMBER, basis: 3 }),
        ]
    );
}

#[test]
fn a_removed_member_seen_again_holds_their_bookings_passes_and_contracts_again() {
    let mut member = Member::new();
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    member.event(early(), window_pass(2, None, Some("2024-05-02T00:00:00Z"), false));
    member.event(early(), contract(3, "2024-04-01T00:00:00Z", None, None, true, &[DESK]));
    let now = at("2024-05-01T09:30:00Z");
    let granted = [ROOM_DOORS, COWORKING_DOORS, DESK_DOORS];
    assert_eq!(member.desired(now).grants.keys().copied().collect::<Vec<_>>(), granted);
    member.sync(now);

    member.event(now, Event::MemberRemoved(MemberRemoved { member: MEMBER }));
    assert!(member.desired(now).grants.is_empty(), "nothing is granted while removed");
    assert_eq!(member.next_change(now), None);
    assert_eq!(member.sync(now).len(), 4, "three revocations and the suspension");

    member.event(now, member_changed("ada@example.com", true));
    assert_eq!(
        member.desired(now).grants.keys().copied().collect::<Vec<_>>(),
        granted,
        "a removal taken back leaves what the member held"
    );
    assert_eq!(member.sync(now).len(), 4, "restored, and granted again");
}

#[test]
fn a_changed_email_makes_the_engine_ensure_the_user_again() {
    let mut member = Member::new();
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    let now = at("2024-05-01T09:30:00Z");
    member.sync(now);

    member.event(now, member_changed("ada@new.example.com", true));

    assert_eq!(member.desired(now).user.unwrap().email, "ada@new.example.com");
    assert_eq!(
        member.sync(now),
        [Command::EnsureUser(EnsureUser {
            member: MEMBER,
            email: "ada@new.example.com".to_owned(),
            name: "Ada L.".to_owned(),
            basis: 3,
        })]
    );
}

// Records that cannot be read

fn withheld(entitlement: EntitlementId, reason: &str) -> Event {
    Event::EntitlementWithheld(EntitlementWithheld { member: MEMBER, entitlement, reason: reason.to_owned() })
}

#[test]
fn a_pass_whose_used_version_cannot_be_read_grants_nothing_after_its_day() {
    let mut member = Member::new();
    // An unused day pass grants until it expires; once used, only its day does.
    member.event(early(), window_pass(1, None, Some("2024-06-01T00:00:00Z"), false));
    let used_on = at("2024-05-01T09:00:00Z");
    assert!(member.grant(COWORKING_DOORS, used_on).is_some());
    member.sync(used_on);

    let reason = "UsedDate: is missing on a used day pass, so its day is unknown";
    member.event(used_on, withheld(EntitlementId::Pass(PassId(1)), reason));

    let days_later = at("2024-05-03T09:00:00Z");
    for now in [used_on, days_later] {
        assert_eq!(member.grant(COWORKING_DOORS, now), None, "at {now}");
        assert_eq!(member.next_change(now), None);
    }
    assert!(member.state.passes().is_empty());
    assert!(entitlements(&member.state, &member.mapping, &member.policy).is_empty());
    let expected =
        BTreeMap::from([(EntitlementId::Pass(PassId(1)), Withheld { reason: reason.into(), since: used_on })]);
    assert_eq!(member.state.withheld(), &expected, "kept for explain");
    assert_eq!(
        member.sync(used_on),
        [
            Command::RevokeGroup(RevokeGroup { member: MEMBER, group: COWORKING_DOORS, basis: 3 }),
            Command::SuspendUser(SuspendUser { member: MEMBER, basis: 3 }),
        ]
    );

    member.event(used_on, withheld(EntitlementId::Pass(PassId(1)), "BusinessId: is missing"));
    assert_eq!(member.state.withheld()[&EntitlementId::Pass(PassId(1))].since, used_on, "withheld since the first");

    // Readable again: the used version grants its day.
    member.event(days_later, day_pass(1, "2024-05-01", "Europe/London"));
    assert!(member.state.withheld().is_empty());
    assert!(member.grant(COWORKING_DOORS, at("2024-05-01T12:00:00Z")).is_some());
}

#[test]
fn a_withheld_booking_or_contract_grants_nothing_until_a_readable_version_or_its_removal() {
    let mut member = Member::new();
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    member.event(early(), contract(2, "2024-04-01T00:00:00Z", None, None, true, &[DESK]));
    let now = at("2024-05-01T09:30:00Z");
    member.event(early(), withheld(EntitlementId::Booking(BookingId(1)), "ResourceId: resource 1 does not exist"));
    member.event(early(), withheld(EntitlementId::Contract(ContractId(2)), "Desks: desk 1 does not exist"));
    assert_eq!(member.desired(now), Desired::default());
    assert_eq!(member.state.withheld().len(), 2);

    member.event(now, booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    assert!(member.grant(ROOM_DOORS, now).is_some(), "the booking is readable again");
    member.event(now, Event::ContractRemoved(ContractRemoved { member: MEMBER, contract: ContractId(2) }));
    assert!(member.state.withheld().is_empty(), "a removal ends the contract as usual");
    assert_eq!(member.grant(DESK_DOORS, now), None);
}

#[test]
fn a_withheld_entitlement_is_forgotten_like_an_ended_one() {
    let mut member = Member::new();
    member.event(early(), withheld(EntitlementId::Pass(PassId(1)), "UsedDate: is missing"));
    member.event(plus(early(), FORGET_ENDED_AFTER_MS), member_changed("ada@example.com", true));
    assert_eq!(member.state.withheld().len(), 1, "not yet");
    member.event(plus(early(), FORGET_ENDED_AFTER_MS + 1), member_changed("ada@example.com", true));
    assert!(member.state.withheld().is_empty());
}

#[test]
fn snapshots_from_before_withholding_load_and_keep_their_digest() {
    let mut member = Member::new();
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    let snapshot = rmp_serde::to_vec_named(&member.state).unwrap();
    assert!(!String::from_utf8_lossy(&snapshot).contains("withheld"), "nothing withheld is left off");
    let loaded: MemberState = rmp_serde::from_slice(&snapshot).unwrap();
    assert_eq!(loaded, member.state);

    member.event(early(), withheld(EntitlementId::Booking(BookingId(1)), "ResourceId: unknown"));
    let snapshot = rmp_serde::to_vec_named(&member.state).unwrap();
    assert_eq!(rmp_serde::from_slice::<MemberState>(&snapshot).unwrap(), member.state);
}

// Overlaps

#[test]
fn overlapping_and_touching_sources_merge_into_one_window_per_group() {
    let mut member = Member::new();
    member.mapping.resources.insert(BOOTH, ROOM_DOORS);
    // 08:45–10:15 and 10:15–11:15 touch; a pass 11:00–13:00 on the same doors overlaps the second.
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    member.event(early(), booking(2, BOOTH, "2024-05-01T10:30:00Z", "2024-05-01T11:00:00Z"));
    member.mapping.pass_products.insert(DAY_PASS, ROOM_DOORS);
    member.event(early(), window_pass(1, Some("2024-05-01T11:00:00Z"), Some("2024-05-01T13:00:00Z"), false));

    let merged = window("2024-05-01T08:45:00Z", "2024-05-01T13:00:00Z");
    for now in ["2024-05-01T08:00:00Z", "2024-05-01T10:15:00Z", "2024-05-01T12:59:59.999Z"] {
        assert_eq!(member.desired(at(now)).grants, BTreeMap::from([(ROOM_DOORS, merged)]), "{now}");
    }
    assert_eq!(member.next_change(at("2024-05-01T09:00:00Z")), Some(at("2024-05-01T13:00:00Z")));
}

#[test]
fn disjoint_windows_are_written_one_at_a_time_current_then_next() {
    let mut member = Member::new();
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    member.event(early(), booking(2, ROOM, "2024-05-01T14:00:00Z", "2024-05-01T15:00:00Z"));
    let first = window("2024-05-01T08:45:00Z", "2024-05-01T10:15:00Z");
    let second = window("2024-05-01T13:45:00Z", "2024-05-01T15:15:00Z");

    let now = at("2024-05-01T09:30:00Z");
    assert_eq!(member.grant(ROOM_DOORS, now), Some(first));
    assert_eq!(member.next_change(now), first.until);
    member.sync(now);

    let later = first.until.unwrap();
    assert_eq!(member.grant(ROOM_DOORS, later), Some(second), "the next window is written as the first ends");
    assert_eq!(
        member.sync(later),
        [Command::GrantGroup(GrantGroup {
            member: MEMBER,
            group: ROOM_DOORS,
            valid_from: second.from,
            valid_until: second.until,
            basis: 3,
        })]
    );
    assert_eq!(member.next_change(later), second.until);
    assert_eq!(member.desired(second.until.unwrap()).grants, BTreeMap::new());
    assert_eq!(member.next_change(second.until.unwrap()), None);
}

#[test]
fn sources_on_different_groups_are_granted_separately() {
    let mut member = Member::new();
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    member.event(early(), booking(2, BOOTH, "2024-05-01T09:30:00Z", "2024-05-01T11:00:00Z"));
    let now = at("2024-05-01T09:40:00Z");
    assert_eq!(member.desired(now).grants.len(), 2);
    assert_eq!(member.next_change(now), Some(at("2024-05-01T10:15:00Z")), "the earliest end of any group");
}

// Mapping

#[test]
fn mapping_changes_take_effect_without_refolding() {
    let mut member = Member::new();
    member.event(early(), booking(1, UNMAPPED_ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    let now = at("2024-05-01T09:30:00Z");
    assert!(member.sync(now).is_empty());

    let connect = |group| MappingChanged { source: MappingSource::Resource(UNMAPPED_ROOM), group };
    member.mapping.apply(&connect(Some(BOOTH_DOORS)));
    let commands = member.sync(now);
    assert!(
        matches!(commands.as_slice(), [Command::EnsureUser(_), Command::GrantGroup(grant)] if grant.group == BOOTH_DOORS)
    );

    member.mapping.apply(&connect(Some(ROOM_DOORS)));
    let commands = member.sync(now);
    assert!(matches!(commands.as_slice(), [Command::GrantGroup(grant), Command::RevokeGroup(revoke)]
            if grant.group == ROOM_DOORS && revoke.group == BOOTH_DOORS));

    member.mapping.apply(&connect(None));
    assert_eq!(member.desired(now).grants, BTreeMap::new());
}

#[test]
fn fold_ignores_mapping_changes_which_are_for_the_shard() {
    let mut member = Member::new();
    let before = state_digest(&member.state);
    member.event(early(), Event::MappingChanged(MappingChanged { source: MappingSource::Resource(ROOM), group: None }));
    assert_eq!(state_digest(&member.state), before);
    assert_eq!(member.state.last_sequence(), 1, "the mapping change's sequence is not the member's");
}

#[test]
fn fold_ignores_events_about_someone_else() {
    let mut member = Member::new();
    let before = state_digest(&member.state);
    let other = Event::MemberRemoved(MemberRemoved { member: MemberId(8) });
    fold(&mut member.state, 2, &Envelope::new(early(), other).unwrap());
    assert_eq!(state_digest(&member.state), before);
}

// Users and the no-access policy

fn member_whose_booking_ended(policy: NoAccessPolicy) -> (Member, Timestamp) {
    let mut member = Member::new();
    member.policy.no_access = policy;
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    member.sync(at("2024-05-01T09:30:00Z"));
    (member, at("2024-05-01T10:15:00Z"))
}

#[test]
fn with_the_suspend_policy_a_member_left_with_nothing_is_revoked_then_suspended() {
    let (mut member, after) = member_whose_booking_ended(NoAccessPolicy::Suspend);
    assert_eq!(member.desired(after).user.unwrap().access, UserAccess::Suspended);
    assert_eq!(
        member.sync(after),
        [
            Command::RevokeGroup(RevokeGroup { member: MEMBER, group: ROOM_DOORS, basis: 2 }),
            Command::SuspendUser(SuspendUser { member: MEMBER, basis: 2 }),
        ]
    );
    assert!(member.sync(after).is_empty(), "nothing more to do");
}

#[test]
fn with_the_delete_policy_a_member_left_with_nothing_is_revoked_then_deleted() {
    let (mut member, after) = member_whose_booking_ended(NoAccessPolicy::Delete);
    assert_eq!(
        member.sync(after),
        [
            Command::RevokeGroup(RevokeGroup { member: MEMBER, group: ROOM_DOORS, basis: 2 }),
            Command::DeleteUser(DeleteUser { member: MEMBER, basis: 2 }),
        ]
    );
}

#[test]
fn with_the_remove_memberships_only_policy_the_user_is_left_alone() {
    let (mut member, after) = member_whose_booking_ended(NoAccessPolicy::RemoveMembershipsOnly);
    let user = member.desired(after).user.unwrap();
    assert_eq!(
        user,
        DesiredUser { email: "ada@example.com".to_owned(), name: "Ada L.".to_owned(), access: UserAccess::Enabled }
    );
    assert_eq!(member.sync(after), [Command::RevokeGroup(RevokeGroup { member: MEMBER, group: ROOM_DOORS, basis: 2 })]);
}

#[test]
fn no_kisi_user_is_created_for_a_member_who_holds_nothing() {
    for policy in [NoAccessPolicy::Suspend, NoAccessPolicy::Delete, NoAccessPolicy::RemoveMembershipsOnly] {
        let mut member = Member::new();
        member.policy.no_access = policy;
        member.event(early(), booking(1, UNMAPPED_ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
        assert_eq!(member.desired(at("2024-05-01T09:30:00Z")), Desired::default(), "{policy:?}");
        assert!(member.sync(at("2024-05-01T09:30:00Z")).is_empty(), "{policy:?}");
    }
}

#[test]
fn a_suspended_user_who_gets_access_again_is_restored_before_the_grant() {
    let (mut member, after) = member_whose_booking_ended(NoAccessPolicy::Suspend);
    member.sync(after);
    member.event(after, booking(2, ROOM, "2024-05-02T09:00:00Z", "2024-05-02T10:00:00Z"));

    assert_eq!(member.desired(after).user.unwrap().access, UserAccess::Enabled);
    assert_eq!(
        member.sync(after),
        [
            Command::RestoreUser(RestoreUser { member: MEMBER, basis: 3 }),
            Command::GrantGroup(GrantGroup {
                member: MEMBER,
                group: ROOM_DOORS,
                valid_from: Some(at("2024-05-02T08:45:00Z")),
                valid_until: Some(at("2024-05-02T10:15:00Z")),
                basis: 3,
            }),
        ]
    );
}

#[test]
fn a_deleted_user_who_gets_access_again_is_ensured_anew() {
    let (mut member, after) = member_whose_booking_ended(NoAccessPolicy::Delete);
    member.sync(after);
    assert_eq!(member.desired(after).user.unwrap().access, UserAccess::Deleted, "stays deleted");
    member.event(after, booking(2, ROOM, "2024-05-02T09:00:00Z", "2024-05-02T10:00:00Z"));

    let commands = member.sync(after);
    assert!(matches!(commands.as_slice(), [Command::EnsureUser(_), Command::GrantGroup(_)]), "{commands:?}");
}

#[test]
fn a_deleted_user_stays_deleted_whatever_the_policy_becomes() {
    let (mut member, after) = member_whose_booking_ended(NoAccessPolicy::Delete);
    member.sync(after);
    for policy in [NoAccessPolicy::Suspend, NoAccessPolicy::RemoveMembershipsOnly] {
        member.policy.no_access = policy;
        assert!(member.sync(after).is_empty(), "{policy:?}: a deleted user has nothing left to suspend");
    }
}

#[test]
fn commands_come_user_first_then_grants_by_group_then_revocations() {
    let mut member = Member::new();
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    member.event(early(), contract(1, "2024-04-01T00:00:00Z", None, None, true, &[OFFICE, DESK]));
    let now = at("2024-05-01T09:30:00Z");
    let first = member.sync(now);
    let kinds: Vec<(&str, Option<KisiGroupId>)> = first.iter().map(describe).collect();
    assert_eq!(
        kinds,
        [
            ("ensure_user", None),
            ("grant_group", Some(ROOM_DOORS)),
            ("grant_group", Some(DESK_DOORS)),
            ("grant_group", Some(OFFICE_DOORS))
        ]
    );

    member.event(now, booking(2, BOOTH, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    member.event(now, Event::BookingCancelled(BookingCancelled { member: MEMBER, booking: BookingId(1) }));
    let kinds: Vec<(&str, Option<KisiGroupId>)> = member.sync(now).iter().map(describe).collect();
    assert_eq!(kinds, [("grant_group", Some(BOOTH_DOORS)), ("revoke_group", Some(ROOM_DOORS))]);
}

fn describe(command: &Command) -> (&'static str, Option<KisiGroupId>) {
    match command {
        Command::EnsureUser(_) => ("ensure_user", None),
        Command::GrantGroup(grant) => ("grant_group", Some(grant.group)),
        Command::RevokeGroup(revoke) => ("revoke_group", Some(revoke.group)),
        Command::SuspendUser(_) => ("suspend_user", None),
        Command::RestoreUser(_) => ("restore_user", None),
        Command::DeleteUser(_) => ("delete_user", None),
    }
}

// Replay, recording and outcomes

#[test]
fn an_event_with_an_old_sequence_is_ignored() {
    let mut member = Member::new();
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    let before = state_digest(&member.state);

    let replayed = Envelope::new(early(), member_changed("someone@else.example.com", false)).unwrap();
    fold(&mut member.state, 1, &replayed);
    fold(&mut member.state, 2, &replayed);

    assert_eq!(state_digest(&member.state), before);
    assert_eq!(member.state.last_sequence(), 2);
}

#[test]
fn commands_carry_the_last_events_sequence_and_time() {
    let mut member = Member::new();
    let booked_at = at("2024-04-30T17:00:00Z");
    member.event(booked_at, booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    assert_eq!(command_time(&member.state), booked_at);
    assert!(member.sync(at("2024-05-01T09:30:00Z")).iter().all(|command| command.basis() == 2));
    assert_eq!(command_time(&MemberState::new(MEMBER)), Timestamp::from_unix_millis(0));
}

#[test]
fn recording_a_command_twice_changes_nothing_and_replaying_them_rebuilds_the_record() {
    let mut member = Member::new();
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    let mut emitted = member.sync(at("2024-05-01T09:30:00Z"));
    emitted.extend(member.sync(at("2024-05-01T10:15:00Z")));
    let after_once = state_digest(&member.state);
    for command in &emitted {
        record_command(&mut member.state, command);
    }
    assert_eq!(state_digest(&member.state), after_once);

    let mut restarted = Member::new();
    restarted.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    for command in &emitted {
        record_command(&mut restarted.state, command);
    }
    assert_eq!(restarted.state, member.state);
}

#[test]
fn outcomes_are_recorded_without_changing_what_is_desired() {
    let mut member = Member::new();
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    let now = at("2024-05-01T09:30:00Z");
    member.sync(now);
    let desired_before = member.desired(now);

    let linked = UserLinked { member: MEMBER, kisi_user: KisiUserId(500), created_by_doorsync: true };
    fold_outcome(&mut member.state, &Outcome::UserLinked(linked));
    let applied = GrantApplied {
        member: MEMBER,
        group: ROOM_DOORS,
        assignment: KisiAssignmentId(900),
        valid_from: Some(at("2024-05-01T08:45:00Z")),
        valid_until: Some(at("2024-05-01T10:15:00Z")),
    };
    fold_outcome(&mut member.state, &Outcome::GrantApplied(applied));
    // Found again by email after a lost response: still doorsync's own user.
    let found = UserLinked { member: MEMBER, kisi_user: KisiUserId(500), created_by_doorsync: false };
    fold_outcome(&mut member.state, &Outcome::UserLinked(found));

    let kisi = member.state.kisi();
    assert_eq!(kisi.user, Some(KisiUserId(500)));
    assert!(kisi.created_by_doorsync);
    assert_eq!(kisi.assignments[&ROOM_DOORS].id, KisiAssignmentId(900));
    assert_eq!(member.desired(now), desired_before);
    assert!(member.sync(now).is_empty());
}

#[test]
fn entitlements_long_over_are_forgotten() {
    let mut member = Member::new();
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    member.event(early(), contract(1, "2024-04-01T00:00:00Z", None, None, true, &[DESK]));
    member.event(early(), day_pass(1, "2024-05-01", "Mars/Olympus_Mons"));

    // The booking ended at 10:00 on May 1st; the day pass's day, wherever it is, is over by May 3rd.
    member.event(plus(at("2024-05-01T10:00:00Z"), FORGET_ENDED_AFTER_MS), member_changed("ada@example.com", true));
    assert_eq!(member.state.bookings().len(), 1, "not yet over for the whole retention");
    assert_eq!(member.state.passes().len(), 1);

    member.event(plus(at("2024-05-03T00:00:00.001Z"), FORGET_ENDED_AFTER_MS), member_changed("ada@example.com", true));
    assert!(member.state.bookings().is_empty());
    assert!(member.state.passes().is_empty(), "an unresolvable day pass is forgotten once its day is over everywhere");
    assert_eq!(member.state.contracts().len(), 1, "an open-ended contract is never over");
}

#[test]
fn a_snapshot_decodes_to_the_same_state() {
    let mut member = Member::new();
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    member.event(early(), day_pass(2, "2024-05-01", "Europe/London"));
    member.event(early(), window_pass(3, None, Some("2024-05-03T00:00:00Z"), false));
    member.event(early(), contract(1, "2024-04-01T00:00:00Z", None, Some("2024-06-01T00:00:00Z"), true, &[DESK]));
    member.sync(at("2024-05-01T09:30:00Z"));

    let snapshot = rmp_serde::to_vec_named(&member.state).unwrap();
    let restored: MemberState = rmp_serde::from_slice(&snapshot).unwrap();
    assert_eq!(restored, member.state);
    assert_eq!(state_digest(&restored), state_digest(&member.state));
}

// Window edges: which commands time made necessary, and which edge each is late for

#[test]
fn a_window_written_ahead_of_its_start_carries_no_edge() {
    let mut member = Member::new();
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    assert_eq!(member.sync_with_edges(early()), [("ensure_user", None), ("grant_group", None)]);
}

#[test]
fn a_grant_decided_after_its_window_began_is_late_for_the_windows_start() {
    let mut member = Member::new();
    // The booking reached doorsync after its window (09:00 minus the 15 minutes' lead) began.
    member.event(at("2024-05-01T08:50:00Z"), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    let edges = member.sync_with_edges(at("2024-05-01T08:50:00Z"));
    assert_eq!(edges, [("ensure_user", None), ("grant_group", Some(at("2024-05-01T08:45:00Z")))]);
}

#[test]
fn the_next_window_written_when_one_ends_is_late_for_that_end() {
    let mut member = Member::new();
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    member.event(early(), booking(2, ROOM, "2024-05-01T14:00:00Z", "2024-05-01T15:00:00Z"));
    member.sync(early());
    let first_end = at("2024-05-01T10:15:00Z");
    assert_eq!(member.sync_with_edges(plus(first_end, 3_000)), [("grant_group", Some(first_end))]);
}

#[test]
fn the_revocation_and_suspension_after_the_last_window_are_late_for_its_end() {
    let (mut member, end) = member_whose_booking_ended(NoAccessPolicy::Suspend);
    // Decided an hour late, as after a replay: still late for the same edge.
    let edges = member.sync_with_edges(plus(end, 60 * MINUTE));
    assert_eq!(edges, [("revoke_group", Some(end)), ("suspend_user", Some(end))]);
}

#[test]
fn commands_an_event_made_necessary_carry_no_edge() {
    let mut member = Member::new();
    member.event(early(), booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    let now = at("2024-05-01T09:30:00Z");
    member.sync(now);

    member.event(now, booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T11:00:00Z"));
    assert_eq!(member.sync_with_edges(now), [("grant_group", None)], "the running window was extended");

    member.event(now, Event::BookingCancelled(BookingCancelled { member: MEMBER, booking: BookingId(1) }));
    assert_eq!(member.sync_with_edges(now), [("revoke_group", None), ("suspend_user", None)], "cancelled");
}

// Explaining

#[test]
fn every_entitlement_says_what_it_grants_or_why_it_grants_nothing() {
    let mut member = Member::new();
    let t = early();
    member.event(t, booking(1, ROOM, "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"));
    member.event(t, tentative_booking(2, ROOM, "2024-05-01T11:00:00Z", "2024-05-01T12:00:00Z"));
    member.event(t, booking(3, UNMAPPED_ROOM, "2024-05-01T11:00:00Z", "2024-05-01T12:00:00Z"));
    member.event(t, window_pass(4, None, Some("2024-05-02T00:00:00Z"), true));
    member.event(t, day_pass(5, "2024-05-01", "Mars/Olympus_Mons"));
    member.event(t, contract(6, "2024-04-01T00:00:00Z", None, None, false, &[DESK]));
    member.event(t, contract(7, "2024-04-01T00:00:00Z", Some("2024-06-01T00:00:00Z"), None, true, &[OFFICE]));

    let found = entitlements(&member.state, &member.mapping, &member.policy);
    let expected = [
        Entitlement {
            source: Source::Booking { booking: BookingId(1), resource: ROOM },
            grant: Grant::Group { group: ROOM_DOORS, window: window("2024-05-01T08:45:00Z", "2024-05-01T10:15:00Z") },
        },
        Entitlement { source: Source::Booking { booking: BookingId(2), resource: ROOM }, grant: Grant::Tentative },
        Entitlement {
            source: Source::Booking { booking: BookingId(3), resource: UNMAPPED_ROOM },
            grant: Grant::NotConnected,
        },
        Entitlement { source: Source::Pass { pass: PassId(4), product: DAY_PASS }, grant: Grant::UsedUp },
        Entitlement {
            source: Source::Pass { pass: PassId(5), product: DAY_PASS },
            grant: Grant::UnresolvedDay(DaySpan::UnknownTimeZone),
        },
        Entitlement { source: Source::ContractSpace { contract: ContractId(6), space: DESK }, grant: Grant::Inactive },
        Entitlement {
            source: Source::ContractSpace { contract: ContractId(7), space: OFFICE },
            grant: Grant::Group { group: OFFICE_DOORS, window: window("2024-04-01T00:00:00Z", "2024-06-01T00:00:00Z") },
        },
    ];
    assert_eq!(found, expected);
    let granted: BTreeMap<KisiGroupId, Window> = member.desired(t).grants;
    assert_eq!(granted.keys().copied().collect::<Vec<_>>(), [ROOM_DOORS, OFFICE_DOORS], "desired agrees");
}
