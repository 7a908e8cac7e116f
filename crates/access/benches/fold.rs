//! How fast one core folds a realistic stream of member events, and derives access from the result.
//!
//! A plain timed loop rather than criterion: the figures wanted are throughputs of whole runs over
//! many members (events/s, calls/s) and the sizes of the states they leave, which it prints as is.
//! Run with `cargo bench -p doorsync-access --bench fold`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark should fail loudly at the first surprise")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use doorsync_access::{
    AccessPolicy, Mapping, MemberState, commands, desired, fold, next_change, record_command, state_digest,
};
use doorsync_proto::{
    BookingCancelled, BookingChanged, BookingId, CivilDate, ContractChanged, ContractId, Envelope, Event,
    FloorPlanItem, FloorPlanItemId, FloorPlanItemKind, KisiGroupId, MemberChanged, MemberId, PassChanged, PassId,
    PassProductId, PassRemoved, PassValidity, ResourceId, Timestamp,
};

const MEMBERS: u64 = 10_000;
const EVENTS_PER_MEMBER: u64 = 60;
const ROUNDS: usize = 5;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// 2024-05-01T00:00:00Z.
const START: i64 = 1_714_521_600_000;
const ZONES: [&str; 3] = ["Europe/London", "Europe/Berlin", "America/New_York"];

/// A small deterministic generator (xorshift64*), so that every run folds the same events.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn millis_below(&mut self, bound: i64) -> i64 {
        i64::try_from(self.below(u64::try_from(bound).unwrap())).unwrap()
    }
}

fn member_changed(member: MemberId, active: bool) -> Event {
    Event::MemberChanged(MemberChanged {
        member,
        email: format!("member{}@example.com", member.0),
        name: format!("Member {}", member.0),
        active,
    })
}

/// One member's next event: mostly bookings made, moved and cancelled, then passes, member
/// updates and contracts, roughly as a coworking space's webhooks arrive.
fn next_event(random: &mut Random, member: MemberId, now: i64) -> Event {
    let booking = BookingId(member.0 * 100 + random.below(8));
    let pass = PassId(member.0 * 100 + random.below(4));
    match random.below(100) {
        0..=44 => {
            let starts_at = now + random.millis_below(7 * DAY) / (15 * MINUTE) * (15 * MINUTE);
            Event::BookingChanged(BookingChanged {
                member,
                booking,
                resource: ResourceId(1 + random.below(20)),
                starts_at: Timestamp::from_unix_millis(starts_at),
                ends_at: Timestamp::from_unix_millis(starts_at + (1 + random.millis_below(8)) * 30 * MINUTE),
                tentative: random.below(10) == 0,
            })
        }
        45..=59 => Event::BookingCancelled(BookingCancelled { member, booking }),
        60..=74 => {
            let validity = if random.below(2) == 0 {
                let day = (now + random.millis_below(5 * DAY)) / DAY * DAY;
                let date = jiff::Timestamp::from_millisecond(day).unwrap().to_zoned_datetime(jiff::tz::TimeZone::UTC);
                PassValidity::Day {
                    date: date.date().to_string().parse::<CivilDate>().unwrap(),
                    time_zone: ZONES[usize::try_from(random.below(3)).unwrap()].to_owned(),
                }
            } else {
                let from = now + random.millis_below(2 * DAY);
                PassValidity::Window {
                    from: Some(Timestamp::from_unix_millis(from)),
                    until: Some(Timestamp::from_unix_millis(from + (1 + random.millis_below(12)) * HOUR)),
                }
            };
            Event::PassChanged(PassChanged {
                member,
                pass,
                product: PassProductId(1 + random.below(3)),
                validity,
                used_up: random.below(5) == 0,
            })
        }
        75..=79 => Event::PassRemoved(PassRemoved { member, pass }),
        80..=84 => Event::ContractChanged(ContractChanged {
            member,
            contract: ContractId(member.0),
            starts_at: Timestamp::from_unix_millis(START - 30 * DAY),
            ends_at: Some(Timestamp::from_unix_millis(START + 60 * DAY)),
            cancelled_at: None,
            active: random.below(10) != 0,
            spaces: vec![FloorPlanItem { id: FloorPlanItemId(1 + random.below(50)), kind: FloorPlanItemKind::Desk }],
        }),
        _ => member_changed(member, random.below(20) != 0),
    }
}

/// The events of every member, interleaved as a shard receives them, with their sequences and
/// the index of the member they are about.
fn workload() -> Vec<(usize, u64, Envelope<Event>)> {
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let mut log = Vec::new();
    let mut sequence = 0;
    for round in 0..EVENTS_PER_MEMBER {
        for index in 0..MEMBERS {
            let member = MemberId(index + 1);
            let now = START + i64::try_from(round).unwrap() * 10 * MINUTE + random.millis_below(10 * MINUTE);
            let event = if round == 0 { member_changed(member, true) } else { next_event(&mut random, member, now) };
            sequence += 1;
            let envelope = Envelope::new(Timestamp::from_unix_millis(now), event).unwrap();
            log.push((usize::try_from(index).unwrap(), sequence, envelope));
        }
    }
    log
}

fn mapping() -> Mapping {
    let mut mapping = Mapping::default();
    for resource in 1..=20 {
        mapping.resources.insert(ResourceId(resource), KisiGroupId(100 + resource % 8));
    }
    for product in 1..=3 {
        mapping.pass_products.insert(PassProductId(product), KisiGroupId(1));
    }
    for item in 1..=50 {
        mapping.floor_plan_items.insert(FloorPlanItemId(item), KisiGroupId(200 + item % 5));
    }
    mapping
}

fn fresh_states() -> Vec<MemberState> {
    (1..=MEMBERS).map(|member| MemberState::new(MemberId(member))).collect()
}

fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let setup = Instant::now();
    let log = workload();
    let mapping = mapping();
    let policy = AccessPolicy::default();
    println!("workload: {} members, {} events (built in {:.1} s)", MEMBERS, log.len(), setup.elapsed().as_secs_f64());

    // Fold: every round starts from empty states, so that every event is folded, not skipped.
    let mut fold_rates = Vec::new();
    let mut folded = None;
    for _ in 0..ROUNDS {
        let mut states = fresh_states();
        let started = Instant::now();
        for (index, sequence, envelope) in &log {
            fold(&mut states[*index], *sequence, envelope);
        }
        fold_rates.push(per_second(log.len(), started.elapsed()));
        folded = Some(states);
    }
    let mut states = folded.unwrap();
    let fold_median = median(fold_rates.clone());
    println!(
        "fold: {fold_median:.0} events/s median of {ROUNDS} rounds (best {:.0})",
        fold_rates.iter().copied().fold(0.0, f64::max)
    );
    // For `scripts/bench-report.py`: FIGURE <key> <value> <unit> <target> <description>.
    println!(
        "FIGURE fold.events_per_s {fold_median:.0} events/s >=1000000 Fold on one core, median of {ROUNDS} rounds \
         ({MEMBERS} members, {} events)",
        log.len()
    );

    // Derive: what every member should have, and when that next changes, over a day of instants.
    let instants: Vec<Timestamp> =
        (0..8).map(|step| Timestamp::from_unix_millis(START + 10 * HOUR + step * 3 * HOUR)).collect();
    let mut derive_rates = Vec::new();
    let mut granted = 0_usize;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for &now in &instants {
            for state in &states {
                let wanted = desired(state, &mapping, &policy, now);
                granted += wanted.grants.len();
                black_box((wanted, next_change(state, &mapping, &policy, now)));
            }
        }
        derive_rates.push(per_second(instants.len() * states.len(), started.elapsed()));
    }
    let derive_median = median(derive_rates);
    println!(
        "desired + next_change: {derive_median:.0} calls/s (one call = both), median of {ROUNDS} rounds; {:.1} groups granted per member",
        granted as f64 / (ROUNDS * instants.len() * states.len()) as f64
    );
    println!(
        "FIGURE fold.desired_next_change {derive_median:.0} calls/s - desired + next_change on one core (one call = \
         both), median of {ROUNDS} rounds"
    );

    // Commands: diff and record, as the engine does after each event.
    let now = instants[0];
    let started = Instant::now();
    let mut emitted = 0_usize;
    for state in &mut states {
        let wanted = desired(state, &mapping, &policy, now);
        let commands = commands(state, &wanted);
        emitted += commands.len();
        for command in &commands {
            record_command(state, command);
        }
    }
    println!(
        "desired + commands + record_command: {:.0} members/s ({emitted} commands)",
        per_second(states.len(), started.elapsed())
    );

    let started = Instant::now();
    for state in &states {
        black_box(state_digest(state));
    }
    println!("state_digest: {:.0} states/s", per_second(states.len(), started.elapsed()));

    let mut sizes: Vec<usize> = states.iter().map(|state| rmp_serde::to_vec_named(state).unwrap().len()).collect();
    sizes.sort_unstable();
    let entitlements: usize =
        states.iter().map(|state| state.bookings().len() + state.passes().len() + state.contracts().len()).sum();
    println!(
        "size_of::<MemberState>() = {} bytes; snapshot (rmp, named) median {} bytes, p90 {} bytes, max {} bytes; {:.1} entitlements per member",
        size_of::<MemberState>(),
        sizes[sizes.len() / 2],
        sizes[sizes.len() * 9 / 10],
        sizes[sizes.len() - 1],
        entitlements as f64 / states.len() as f64
    );
}
