//! Random histories checked against a brute-force oracle.
//!
//! The oracle knows nothing of `MemberState`, merging or windows: it keeps the latest version of
//! every booking, pass and contract from the raw events and asks, for one instant and one group,
//! "does any of them cover this instant?". Day passes are checked by converting the instant to the
//! pass's zone and comparing calendar dates, the opposite direction from the fold's arithmetic.
//!
//! Histories are set around daylight-saving changes in London, New York and Sydney, São Paulo's
//! midnight change, and a quiet day, with day passes in those zones, Kolkata and an unknown zone.
//! `PROPTEST_CASES` raises the number of cases (default 256 per property).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test should fail loudly at the first surprise")]

use std::collections::BTreeMap;

use doorsync_access::{
    AccessPolicy, BookingTiming, Desired, Mapping, MemberState, NoAccessPolicy, UserAccess, commands, desired, fold,
    next_change, record_command, state_digest,
};
use doorsync_proto::{
    BookingCancelled, BookingChanged, BookingId, CivilDate, Command, ContractChanged, ContractId, ContractRemoved,
    EntitlementId, EntitlementWithheld, Envelope, Event, FloorPlanItem, FloorPlanItemId, FloorPlanItemKind,
    KisiGroupId, MappingChanged, MappingSource, MemberChanged, MemberId, MemberRemoved, PassChanged, PassId,
    PassProductId, PassRemoved, PassValidity, ResourceId, Timestamp,
};
use jiff::tz::TimeZoneDatabase;
use proptest::prelude::*;

const MEMBER: MemberId = MemberId(1);
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const GROUPS: [KisiGroupId; 3] = [KisiGroupId(1), KisiGroupId(2), KisiGroupId(3)];

/// Instants near which clocks change (and one where none do), as Unix milliseconds.
const PIVOTS: [&str; 8] = [
    "2024-03-31T01:00:00Z", // London springs forward
    "2024-10-27T01:00:00Z", // London falls back
    "2024-03-10T07:00:00Z", // New York springs forward
    "2024-11-03T06:00:00Z", // New York falls back
    "2024-04-06T16:00:00Z", // Sydney falls back
    "2024-10-05T16:00:00Z", // Sydney springs forward
    "2015-10-18T03:00:00Z", // São Paulo skips midnight
    "2024-06-15T12:00:00Z", // nothing changes anywhere
];

const ZONES: [&str; 6] =
    ["Europe/London", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "America/Sao_Paulo", "Mars/Olympus_Mons"];

fn pivot(index: usize) -> i64 {
    PIVOTS[index].parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

fn ts(millis: i64) -> Timestamp {
    Timestamp::from_unix_millis(millis)
}

/// One step of a history: an event for the member, or a mapping change for the shard.
#[derive(Debug, Clone)]
enum Step {
    Event(Event),
    Mapping(MappingChanged),
}

#[derive(Debug, Clone)]
struct History {
    /// Everything happens within two days of this instant.
    pivot: i64,
    mapping: Vec<MappingChanged>,
    policy: AccessPolicy,
    /// Steps with the time each happened, in log order (times never go backwards).
    steps: Vec<(i64, Step)>,
}

fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 256;
    }
    config
}

/// An instant within two days of the pivot: mostly one of the quarter hours in the three hours
/// around it, so that windows (whose leads and lags are quarter hours too) often touch or overlap
/// exactly; otherwise anywhere on a five-minute grid.
fn near(pivot: i64) -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => (-12_i64..=12).prop_map(move |quarters| pivot + quarters * 15 * MINUTE),
        1 => (-576_i64..=576).prop_map(move |steps| pivot + steps * 5 * MINUTE),
    ]
}

fn group() -> impl Strategy<Value = KisiGroupId> {
    prop::sample::select(GROUPS.to_vec())
}

fn mapping_change() -> impl Strategy<Value = MappingChanged> {
    let source = prop_oneof![
        (1_u64..=3).prop_map(|id| MappingSource::Resource(ResourceId(id))),
        (1_u64..=2).prop_map(|id| MappingSource::PassProduct(PassProductId(id))),
        (1_u64..=3).prop_map(|id| MappingSource::FloorPlanItem(FloorPlanItemId(id))),
    ];
    (source, prop::option::weighted(0.8, group())).prop_map(|(source, group)| MappingChanged { source, group })
}

/// Most sources connected, some not, several to the same group so that sources overlap.
fn initial_mapping() -> impl Strategy<Value = Vec<MappingChanged>> {
    let sources = [
        MappingSource::Resource(ResourceId(1)),
        MappingSource::Resource(ResourceId(2)),
        MappingSource::Resource(ResourceId(3)),
        MappingSource::PassProduct(PassProductId(1)),
        MappingSource::PassProduct(PassProductId(2)),
        MappingSource::FloorPlanItem(FloorPlanItemId(1)),
        MappingSource::FloorPlanItem(FloorPlanItemId(2)),
        MappingSource::FloorPlanItem(FloorPlanItemId(3)),
    ];
    prop::collection::vec(prop::option::weighted(0.85, group()), sources.len()).prop_map(move |groups| {
        sources.iter().zip(groups).map(|(&source, group)| MappingChanged { source, group }).collect()
    })
}

fn policy() -> impl Strategy<Value = AccessPolicy> {
    let minutes = |choices: Vec<i64>| prop::sample::select(choices).prop_map(|m| m * MINUTE);
    (
        minutes(vec![0, 15, 30]),
        minutes(vec![0, 15]),
        prop::option::of((minutes(vec![0, 5, 60]), minutes(vec![0, 10]))),
        minutes(vec![0, 10, 60]),
        prop::sample::select(vec![
            NoAccessPolicy::Suspend,
            NoAccessPolicy::Delete,
            NoAccessPolicy::RemoveMembershipsOnly,
        ]),
    )
        .prop_map(|(booking_lead_ms, booking_lag_ms, booth, pass_lag_ms, no_access)| AccessPolicy {
            booking_lead_ms,
            booking_lag_ms,
            resource_timing: booth
                .map(|(lead_ms, lag_ms)| BTreeMap::from([(ResourceId(2), BookingTiming { lead_ms, lag_ms })]))
                .unwrap_or_default(),
            pass_lag_ms,
            no_access,
        })
}

fn date_near(pivot: i64) -> impl Strategy<Value = CivilDate> {
    (-2_i64..=2).prop_map(move |days| {
        let day =
            jiff::Timestamp::from_millisecond(pivot + days * DAY).unwrap().to_zoned_datetime(jiff::tz::TimeZone::UTC);
        day.date().to_string().parse().unwrap()
    })
}

fn step(pivot: i64) -> impl Strategy<Value = Step> {
    let member = || Just(MEMBER);
    let member_changed = (prop::sample::select(vec!["a@example.com", "b@example.com"]), prop::bool::weighted(0.9))
        .prop_map(|(email, active)| {
            Event::MemberChanged(MemberChanged {
                member: MEMBER,
                email: email.to_owned(),
                name: "Member".to_owned(),
                active,
            })
        });
    let member_removed = member().prop_map(|member| Event::MemberRemoved(MemberRemoved { member }));
    let booking_changed = (
        1_u64..=4,
        1_u64..=3,
        near(pivot),
        prop_oneof![0_i64..=72, (0_i64..=8).prop_map(|quarters| quarters * 3)],
        prop::bool::weighted(0.2),
    )
        .prop_map(|(booking, resource, starts_at, five_minutes, tentative)| {
            Event::BookingChanged(BookingChanged {
                member: MEMBER,
                booking: BookingId(booking),
                resource: ResourceId(resource),
                starts_at: ts(starts_at),
                ends_at: ts(starts_at + five_minutes * 5 * MINUTE),
                tentative,
            })
        });
    let booking_cancelled = (1_u64..=4)
        .prop_map(|booking| Event::BookingCancelled(BookingCancelled { member: MEMBER, booking: BookingId(booking) }));
    let window = (prop::option::weighted(0.8, near(pivot)), prop::option::weighted(0.8, near(pivot)))
        .prop_map(|(from, until)| PassValidity::Window { from: from.map(ts), until: until.map(ts) });
    let day = (date_near(pivot), prop::sample::select(ZONES.to_vec()))
        .prop_map(|(date, zone)| PassValidity::Day { date, time_zone: zone.to_owned() });
    let pass_changed = (1_u64..=3, 1_u64..=2, prop_oneof![window, day], prop::bool::weighted(0.2)).prop_map(
        |(pass, product, validity, used_up)| {
            Event::PassChanged(PassChanged {
                member: MEMBER,
                pass: PassId(pass),
                product: PassProductId(product),
                validity,
                used_up,
            })
        },
    );
    let pass_removed =
        (1_u64..=3).prop_map(|pass| Event::PassRemoved(PassRemoved { member: MEMBER, pass: PassId(pass) }));
    let contract_changed = (
        1_u64..=2,
        near(pivot),
        prop::option::of(near(pivot)),
        prop::option::of(near(pivot)),
        prop::bool::weighted(0.8),
        prop::collection::btree_set(1_u64..=3, 0..=3),
    )
        .prop_map(|(contract, starts_at, ends_at, cancelled_at, active, spaces)| {
            Event::ContractChanged(ContractChanged {
                member: MEMBER,
                contract: ContractId(contract),
                starts_at: ts(starts_at),
                ends_at: ends_at.map(ts),
                cancelled_at: cancelled_at.map(ts),
                active,
                spaces: spaces
                    .into_iter()
                    .map(|id| FloorPlanItem { id: FloorPlanItemId(id), kind: FloorPlanItemKind::Office })
                    .collect(),
            })
        });
    let contract_removed = (1_u64..=2).prop_map(|contract| {
        Event::ContractRemoved(ContractRemoved { member: MEMBER, contract: ContractId(contract) })
    });
    let withheld = (
        prop_oneof![
            (1_u64..=4).prop_map(|booking| EntitlementId::Booking(BookingId(booking))),
            (1_u64..=3).prop_map(|pass| EntitlementId::Pass(PassId(pass))),
            (1_u64..=2).prop_map(|contract| EntitlementId::Contract(ContractId(contract))),
        ],
        prop::sample::select(vec!["UsedDate: is missing", "Desks: desk 3 does not exist"]),
    )
        .prop_map(|(entitlement, reason)| {
            Event::EntitlementWithheld(EntitlementWithheld { member: MEMBER, entitlement, reason: reason.to_owned() })
        });
    prop_oneof![
        3 => member_changed.prop_map(Step::Event),
        1 => member_removed.prop_map(Step::Event),
        12 => booking_changed.prop_map(Step::Event),
        2 => booking_cancelled.prop_map(Step::Event),
        8 => pass_changed.prop_map(Step::Event),
        1 => pass_removed.prop_map(Step::Event),
        5 => contract_changed.prop_map(Step::Event),
        1 => contract_removed.prop_map(Step::Event),
        2 => withheld.prop_map(Step::Event),
        2 => mapping_change().prop_map(Step::Mapping),
    ]
}

fn history() -> impl Strategy<Value = History> {
    (0..PIVOTS.len()).prop_flat_map(|index| {
        let pivot = pivot(index);
        (
            initial_mapping(),
            policy(),
            prop::bool::weighted(0.9),
            prop::collection::vec((near(pivot), step(pivot)), 1..24),
        )
            .prop_map(move |(mapping, policy, starts_known, mut steps)| {
                // The log is in the order things happened.
                steps.sort_by_key(|(at, _)| *at);
                if starts_known {
                    let introduced = Event::MemberChanged(MemberChanged {
                        member: MEMBER,
                        email: "a@example.com".to_owned(),
                        name: "Member".to_owned(),
                        active: true,
                    });
                    steps.insert(0, (pivot - 3 * DAY, Step::Event(introduced)));
                }
                History { pivot, mapping, policy, steps }
            })
    })
}

/// The member's state and the mapping after the whole history, as the engine and shard build them.
fn replay(history: &History) -> (MemberState, Mapping) {
    let mut mapping = Mapping::default();
    for change in &history.mapping {
        mapping.apply(change);
    }
    let mut state = MemberState::new(MEMBER);
    for (sequence, (at, step)) in (1_u64..).zip(&history.steps) {
        match step {
            Step::Event(event) => fold(&mut state, sequence, &Envelope::new(ts(*at), event.clone()).unwrap()),
            Step::Mapping(change) => mapping.apply(change),
        }
    }
    (state, mapping)
}

/// What the member holds, kept the simplest way: the latest version of everything, by id.
#[derive(Default)]
struct Oracle {
    active: Option<bool>,
    bookings: BTreeMap<BookingId, BookingChanged>,
    passes: BTreeMap<PassId, PassChanged>,
    contracts: BTreeMap<ContractId, ContractChanged>,
    mapping: BTreeMap<MappingSource, KisiGroupId>,
    policy: AccessPolicy,
}

impl Oracle {
    fn new(history: &History) -> Self {
        let mut oracle = Oracle { policy: history.policy.clone(), ..Oracle::default() };
        for change in &history.mapping {
            oracle.map(change);
        }
        for (_, step) in &history.steps {
            match step {
                Step::Mapping(change) => oracle.map(change),
                Step::Event(Event::MemberChanged(changed)) => oracle.active = Some(changed.active),
                // What a removed member held counts again if Nexudus sends the member again.
                Step::Event(Event::MemberRemoved(_)) => oracle.active = None,
                Step::Event(Event::BookingChanged(changed)) => {
                    oracle.bookings.insert(changed.booking, changed.clone());
                }
                Step::Event(Event::BookingCancelled(cancelled)) => {
                    oracle.bookings.remove(&cancelled.booking);
                }
                Step::Event(Event::PassChanged(changed)) => {
                    oracle.passes.insert(changed.pass, changed.clone());
                }
                Step::Event(Event::PassRemoved(removed)) => {
                    oracle.passes.remove(&removed.pass);
                }
                Step::Event(Event::ContractChanged(changed)) => {
                    oracle.contracts.insert(changed.contract, changed.clone());
                }
                Step::Event(Event::ContractRemoved(removed)) => {
                    oracle.contracts.remove(&removed.contract);
                }
                Step::Event(Event::EntitlementWithheld(withheld)) => match withheld.entitlement {
                    // Nothing readable is known of it until its next version.
                    EntitlementId::Booking(booking) => drop(oracle.bookings.remove(&booking)),
                    EntitlementId::Pass(pass) => drop(oracle.passes.remove(&pass)),
                    EntitlementId::Contract(contract) => drop(oracle.contracts.remove(&contract)),
                },
                Step::Event(Event::MappingChanged(_)) => unreachable!("mapping changes are generated as steps"),
            }
        }
        oracle
    }

    fn map(&mut self, change: &MappingChanged) {
        match change.group {
            Some(group) => self.mapping.insert(change.source, group),
            None => self.mapping.remove(&change.source),
        };
    }

    fn maps_to(&self, source: MappingSource, group: KisiGroupId) -> bool {
        self.mapping.get(&source) == Some(&group)
    }

    /// Whether the member may open `group`'s doors at `now`.
    fn in_group(&self, group: KisiGroupId, now: i64) -> bool {
        if self.active != Some(true) {
            return false;
        }
        let booked = self.bookings.values().any(|booking| {
            let (lead, lag) = match self.policy.resource_timing.get(&booking.resource) {
                Some(timing) => (timing.lead_ms, timing.lag_ms),
                None => (self.policy.booking_lead_ms, self.policy.booking_lag_ms),
            };
            !booking.tentative
                && self.maps_to(MappingSource::Resource(booking.resource), group)
                && booking.starts_at.as_unix_millis() - lead <= now
                && now < booking.ends_at.as_unix_millis() + lag
        });
        let passed = self.passes.values().any(|pass| {
            !pass.used_up
                && self.maps_to(MappingSource::PassProduct(pass.product), group)
                && match &pass.validity {
                    PassValidity::Window { from, until } => {
                        from.is_none_or(|from| from.as_unix_millis() <= now)
                            && until.is_none_or(|until| now < until.as_unix_millis() + self.policy.pass_lag_ms)
                    }
                    PassValidity::Day { date, time_zone } => {
                        // Valid while the zone's calendar says `date`, and for the lag after: the
                        // day was `date` at some instant of [now - lag, now].
                        let date_at = |instant: i64| -> Option<CivilDate> {
                            let zone = TimeZoneDatabase::bundled().get(time_zone).ok()?;
                            let local = jiff::Timestamp::from_millisecond(instant).ok()?.to_zoned_datetime(zone);
                            local.date().to_string().parse().ok()
                        };
                        date_at(now) == Some(*date) || date_at(now - self.policy.pass_lag_ms) == Some(*date)
                    }
                }
        });
        let contracted = self.contracts.values().any(|contract| {
            contract.active
                && contract.spaces.iter().any(|space| self.maps_to(MappingSource::FloorPlanItem(space.id), group))
                && contract.starts_at.as_unix_millis() <= now
                && contract.ends_at.is_none_or(|ends| now < ends.as_unix_millis())
                && contract.cancelled_at.is_none_or(|cancelled| now < cancelled.as_unix_millis())
        });
        booked || passed || contracted
    }
}

/// Instants to look at: a regular sweep over the history's four days (and a little either side)
/// plus every edge of every window desired ever shows, and the instants just before.
fn instants(history: &History, state: &MemberState, mapping: &Mapping) -> Vec<i64> {
    let sweep_start = history.pivot - 2 * DAY - 2 * HOUR;
    let sweep_end = history.pivot + 2 * DAY + 8 * HOUR;
    let mut instants: Vec<i64> = (sweep_start..=sweep_end).step_by(usize::try_from(40 * MINUTE).unwrap()).collect();
    let mut edges = Vec::new();
    for &now in &instants {
        let wanted = desired(state, mapping, &history.policy, ts(now));
        for window in wanted.grants.values() {
            edges.extend(window.from.into_iter().chain(window.until).map(Timestamp::as_unix_millis));
        }
        edges.extend(next_change(state, mapping, &history.policy, ts(now)).map(Timestamp::as_unix_millis));
    }
    instants.extend(edges.iter().flat_map(|&edge| [edge - 1, edge]));
    instants.sort_unstable();
    instants.dedup();
    instants
}

proptest! {
    #![proptest_config(config())]

    /// For every group and instant, the member is in the group exactly when the oracle says so;
    /// a window written ahead is exactly the next stretch the oracle sees; windows end exactly
    /// where the oracle's coverage ends (so touching stretches were merged).
    #[test]
    fn desired_access_matches_the_oracle(history in history()) {
        let (state, mapping) = replay(&history);
        let oracle = Oracle::new(&history);
        for now in instants(&history, &state, &mapping) {
            let wanted = desired(&state, &mapping, &history.policy, ts(now));
            for group in GROUPS {
                let window = wanted.grants.get(&group);
                let open = window.is_some_and(|window| window.contains(ts(now)));
                prop_assert_eq!(open, oracle.in_group(group, now), "group {} at {}", group, ts(now));
                if let Some(window) = window {
                    if let Some(until) = window.until {
                        prop_assert!(until.as_unix_millis() > now, "a window that is over is not desired");
                        prop_assert!(oracle.in_group(group, until.as_unix_millis() - 1));
                        prop_assert!(!oracle.in_group(group, until.as_unix_millis()), "ends where coverage ends");
                    }
                    if let Some(from) = window.from.filter(|from| from.as_unix_millis() > now) {
                        prop_assert!(oracle.in_group(group, from.as_unix_millis()));
                        prop_assert!(!oracle.in_group(group, from.as_unix_millis() - 1), "the next stretch, not a later one");
                    }
                }
            }
            prop_assert!(wanted.grants.keys().all(|group| GROUPS.contains(group)));
            // Nothing was ever emitted, so a user is wanted exactly when there is something to grant.
            prop_assert_eq!(wanted.user.is_some(), !wanted.grants.is_empty());
            prop_assert!(wanted.user.iter().all(|user| user.access == UserAccess::Enabled));
        }
    }

    /// `desired` stays the same from `now` until `next_change(now)` and differs there; with no
    /// next change it stays the same for good.
    #[test]
    fn desired_changes_exactly_at_next_change(history in history()) {
        let (state, mapping) = replay(&history);
        let policy = &history.policy;
        let at = |instant: i64| desired(&state, &mapping, policy, ts(instant));
        for now in instants(&history, &state, &mapping) {
            let wanted = at(now);
            match next_change(&state, &mapping, policy, ts(now)) {
                Some(change) => {
                    let change = change.as_unix_millis();
                    prop_assert!(change > now);
                    let probes = [now + 1, now + (change - now) / 3, now + (change - now) / 2, change - 1];
                    for probe in probes.into_iter().filter(|&probe| probe < change) {
                        prop_assert_eq!(&at(probe), &wanted, "between {} and {}", ts(now), ts(change));
                    }
                    prop_assert_ne!(&at(change), &wanted, "at the change {}", ts(change));
                }
                None => {
                    for later in [now + 1, now + 3 * DAY, now + 400 * DAY] {
                        prop_assert_eq!(&at(later), &wanted);
                    }
                }
            }
        }
    }

    /// Replaying the log after a snapshot, or replaying it twice, gives the same state, digest
    /// for digest; snapshots decode to the state they were taken of.
    #[test]
    fn replay_and_snapshots_give_the_same_state(history in history(), split in any::<prop::sample::Index>()) {
        let (state, _) = replay(&history);
        let envelopes: Vec<(u64, Envelope<Event>)> = (1_u64..)
            .zip(&history.steps)
            .filter_map(|(sequence, (at, step))| match step {
                Step::Event(event) => Some((sequence, Envelope::new(ts(*at), event.clone()).unwrap())),
                Step::Mapping(_) => None,
            })
            .collect();
        let split = split.index(envelopes.len() + 1);

        let mut restored = MemberState::new(MEMBER);
        for (sequence, envelope) in &envelopes[..split] {
            fold(&mut restored, *sequence, envelope);
        }
        let snapshot = rmp_serde::to_vec_named(&restored).unwrap();
        let mut restored: MemberState = rmp_serde::from_slice(&snapshot).unwrap();
        // The engine replays from a little before its snapshot: those events are already in.
        for (sequence, envelope) in &envelopes {
            fold(&mut restored, *sequence, envelope);
        }
        prop_assert_eq!(state_digest(&restored), state_digest(&state));
        prop_assert_eq!(&restored, &state);

        let mut twice = state.clone();
        for (sequence, envelope) in &envelopes {
            fold(&mut twice, *sequence, envelope);
        }
        prop_assert_eq!(state_digest(&twice), state_digest(&state));
    }

    /// Driving a member as the engine does (fold, derive, emit, record, wake at the next change)
    /// converges on what is desired, never acts on a user it did not make, and a restarted engine
    /// that replays events and its own commands ends where the first one did.
    #[test]
    fn commands_converge_and_only_touch_users_doorsync_made(history in history()) {
        let mut mapping = Mapping::default();
        for change in &history.mapping {
            mapping.apply(change);
        }
        let policy = &history.policy;
        let mut state = MemberState::new(MEMBER);
        let mut log: Vec<(u64, Envelope<Event>)> = Vec::new();
        let mut emitted: Vec<Command> = Vec::new();
        let mut user_exists = false;
        let mut check_and_record = |state: &mut MemberState, commands: Vec<Command>| -> Result<(), TestCaseError> {
            for command in commands {
                match &command {
                    Command::EnsureUser(_) => user_exists = true,
                    Command::GrantGroup(_) | Command::RestoreUser(_) => prop_assert!(user_exists, "{:?} before a user", command),
                    Command::SuspendUser(_) => prop_assert!(user_exists, "suspending a user doorsync did not make"),
                    Command::DeleteUser(_) => {
                        prop_assert!(user_exists, "deleting a user doorsync did not make");
                        user_exists = false;
                    }
                    Command::RevokeGroup(_) => {}
                }
                record_command(state, &command);
                emitted.push(command);
            }
            Ok(())
        };

        let sync = |state: &MemberState, mapping: &Mapping, now: i64| -> (Desired, Vec<Command>) {
            let wanted = desired(state, mapping, policy, ts(now));
            let commands = commands(state, &wanted);
            (wanted, commands)
        };
        for (sequence, (at, step)) in (1_u64..).zip(&history.steps) {
            match step {
                Step::Event(event) => {
                    let envelope = Envelope::new(ts(*at), event.clone()).unwrap();
                    fold(&mut state, sequence, &envelope);
                    log.push((sequence, envelope));
                }
                Step::Mapping(change) => mapping.apply(change),
            }
            let (wanted, commands) = sync(&state, &mapping, *at);
            check_and_record(&mut state, commands)?;
            prop_assert_eq!(state.emitted(), &wanted, "what was emitted is what is desired");
            let (_, more) = sync(&state, &mapping, *at);
            prop_assert!(more.is_empty(), "recorded commands leave nothing to do: {:?}", more);
            // Wake at each change until the next event.
            let next_event = history.steps.get(usize::try_from(sequence).unwrap()).map_or(i64::MAX, |(at, _)| *at);
            let mut wake = next_change(&state, &mapping, policy, ts(*at));
            while let Some(instant) = wake.map(Timestamp::as_unix_millis).filter(|&instant| instant < next_event && instant < history.pivot + 3 * DAY) {
                let (wanted, commands) = sync(&state, &mapping, instant);
                prop_assert!(!commands.is_empty(), "a change of what is desired is work for the writer");
                check_and_record(&mut state, commands)?;
                prop_assert_eq!(state.emitted(), &wanted);
                wake = next_change(&state, &mapping, policy, ts(instant));
            }
        }

        let mut restarted = MemberState::new(MEMBER);
        for (sequence, envelope) in &log {
            fold(&mut restarted, *sequence, envelope);
        }
        for command in &emitted {
            record_command(&mut restarted, command);
        }
        prop_assert_eq!(state_digest(&restarted), state_digest(&state));
    }
}
