//! Several replicas, really: one `doorsync ingest`, two `doorsync engine` and two `doorsync
//! writer` processes on one nats-server, against the Nexudus and Kisi simulators over loopback
//! HTTP, in real time.
//!
//! The two engines split the partitions between them and only one writer calls Kisi (each writer
//! has an API key of its own for the same Kisi API user, so the simulator tells them apart).
//! Members in every partition get access; once Kisi holds it, one engine and the active writer
//! are killed with SIGKILL, as a crash or the OOM killer would, so neither gives anything back.
//! Changes made while they are dead (cancellations, new bookings, passes, a new member), in the
//! dead engine's partitions and the survivor's, must reach Kisi once the surviving engine has
//! taken every partition and the standby writer has become active, and Kisi must end up holding
//! exactly what Nexudus implies: no user or assignment twice, none missing, no window off.
//!
//! The leases are short (see [`REPLICATED_ENGINE_LEASE_TTL`]) so that takeover takes seconds; the
//! times it took are printed (`--nocapture`), never asserted: the machine is shared and noisy.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use doorsync_access::NoAccessPolicy;
use doorsync_clock::{Clock, SystemClock};
use doorsync_integration_tests::{
    Deployment, HarnessError, KisiMember, KisiMembership, ProcessStatus, REPLICATED_ENGINE_LEASE_TTL,
    REPLICATED_WRITER_LEASE_TTL, Room, Site, eventually,
};
use doorsync_proto::{Partition, Timestamp};
use doorsync_writer::WriterRole;

const ENGINES: [&str; 2] = ["engine-1", "engine-2"];
const WRITERS: [&str; 2] = ["writer-1", "writer-2"];
/// How long the processes may take to split the partitions, and a change to reach Kisi while
/// every process runs: far more than they need, for a loaded two-core machine.
const WAIT: Duration = Duration::from_secs(60);
/// How long the survivors may take to take over and bring Kisi to the end state: the leases
/// lapsing, the partitions replayed, and every change of the second round written.
const TAKEOVER_WAIT: Duration = Duration::from_secs(120);
/// How often a wait asks the processes and the simulator.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Members per partition the scenario needs: one for each part it plays in every partition.
const MEMBERS_PER_PARTITION: usize = 4;
/// Enough customers that every partition gets its share, with member ids hashed to partitions.
const MAX_MEMBERS: usize = 64;
/// doorsync's default lead and lag around bookings, which the site keeps.
const LEAD: Duration = Duration::from_secs(15 * 60);
const LAG: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone)]
struct Booking {
    id: u64,
    room: Room,
    from: Timestamp,
    to: Timestamp,
}

/// What the test made a Nexudus customer hold, from which what Kisi must hold follows.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    id: u64,
    partition: Partition,
    bookings: Vec<Booking>,
    floor_pass: bool,
    /// Once doorsync gave a member access, Kisi keeps their user when they hold nothing any more
    /// (suspended, under the site's policy); a member who never held anything has no user.
    ever_held_access: bool,
}

impl Member {
    fn holds_access(&self) -> bool {
        self.floor_pass || !self.bookings.is_empty()
    }

    /// What Kisi must hold for this member under the suspend policy, `None` for no user.
    fn expected_in_kisi(&self) -> Option<KisiMember> {
        if !self.holds_access() {
            return self.ever_held_access.then(|| kisi_member(&self.name, false, Vec::new()));
        }
        // Every member books a room at most once, so each group has one window.
        let mut memberships: Vec<KisiMembership> = self
            .bookings
            .iter()
            .map(|booking| {
                membership(booking.room.group(), Some(minus(booking.from, LEAD)), Some(plus(booking.to, LAG)))
            })
            .collect();
        if self.floor_pass {
            memberships.push(membership("Coworking floor", None, None));
        }
        Some(kisi_member(&self.name, true, memberships))
    }
}

/// The customers the test made, and through them what Kisi must hold.
#[derive(Debug)]
struct Nexudus {
    members: Vec<Member>,
    /// Bookings last an hour and start two hours apart on whole hours from tomorrow on, so no
    /// window opens or closes while the test runs, no two overlap, and every window is in whole
    /// seconds (as Kisi holds them).
    first_booking_at: i64,
    bookings_made: i64,
}

impl Nexudus {
    fn new() -> Self {
        let hour = 3_600_000;
        let now = SystemClock.now().as_unix_millis();
        Self { members: Vec::new(), first_booking_at: (now / hour + 24) * hour, bookings_made: 0 }
    }

    fn add_member(&mut self, site: &Site, name: &str) -> Result<usize, HarnessError> {
        let id = site.add_member(name)?;
        let member = Member {
            name: name.to_owned(),
            id,
            partition: site.partition_of(id),
            bookings: Vec::new(),
            floor_pass: false,
            ever_held_access: false,
        };
        self.members.push(member);
        Ok(self.members.len() - 1)
    }

    fn book(&mut self, site: &Site, member: usize, room: Room) -> Result<(), HarnessError> {
        let from = Timestamp::from_unix_millis(self.first_booking_at + self.bookings_made * 2 * 3_600_000);
        let to = plus(from, Duration::from_secs(3_600));
        self.bookings_made += 1;
        let resource = room.resource(&site.places);
        let held = &mut self.members[member];
        let id = site.book(held.id, resource, from, to)?;
        held.bookings.push(Booking { id, room, from, to });
        held.ever_held_access = true;
        Ok(())
    }

    fn cancel_bookings(&mut self, site: &Site, member: usize) -> Result<(), HarnessError> {
        for booking in std::mem::take(&mut self.members[member].bookings) {
            site.cancel_booking(booking.id)?;
        }
        Ok(())
    }

    fn issue_floor_pass(&mut self, site: &Site, member: usize) -> Result<(), HarnessError> {
        let held = &mut self.members[member];
        site.issue_floor_pass(held.id, None)?;
        held.floor_pass = true;
        held.ever_held_access = true;
        Ok(())
    }

    /// Kisi's state as these customers imply it, in the order [`Site::kisi_state`] gives.
    fn expected_kisi_state(&self) -> Vec<KisiMember> {
        let mut expected: Vec<KisiMember> = self.members.iter().filter_map(Member::expected_in_kisi).collect();
        expected.sort();
        expected
    }
}

/// The part each member plays, by its place among its partition's members: every part is played
/// in every partition, so in the killed engine's partitions as well as in the survivor's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Books Room A, and cancels while the processes are dead: suspended in the end.
    BooksThenCancels,
    /// Holds a floor pass, and books Room B while the processes are dead.
    PassThenBooks,
    /// Holds nothing at first, and gets a floor pass while the processes are dead: a Kisi user
    /// created by the writer that took over.
    NothingThenPass,
    /// Books Room B and holds a floor pass, and keeps both.
    Keeps,
}

fn part(place_in_partition: usize) -> Part {
    match place_in_partition {
        0 => Part::BooksThenCancels,
        1 => Part::PassThenBooks,
        2 => Part::NothingThenPass,
        _ => Part::Keeps,
    }
}

fn plus(at: Timestamp, by: Duration) -> Timestamp {
    Timestamp::from_unix_millis(at.as_unix_millis().saturating_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX)))
}

fn minus(at: Timestamp, by: Duration) -> Timestamp {
    Timestamp::from_unix_millis(at.as_unix_millis().saturating_sub(i64::try_from(by.as_millis()).unwrap_or(i64::MAX)))
}

fn membership(group: &str, from: Option<Timestamp>, until: Option<Timestamp>) -> KisiMembership {
    KisiMembership { group: group.to_owned(), role: "group_basic".to_owned(), valid_from: from, valid_until: until }
}

fn kisi_member(name: &str, access_enabled: bool, mut memberships: Vec<KisiMembership>) -> KisiMember {
    memberships.sort();
    KisiMember { email: format!("{}@example.com", name.to_lowercase()), access_enabled, memberships }
}

/// Each process's status, or why it could not be had (a process busy past the request's timeout
/// on a loaded machine, say: a wait asks again).
async fn statuses(site: &Site, names: &[&str]) -> BTreeMap<String, Result<ProcessStatus, String>> {
    let mut found = BTreeMap::new();
    for &name in names {
        found.insert(name.to_owned(), site.status_of(name).await.map_err(|error| error.to_string()));
    }
    found
}

/// Polls `probe` until it gives a value; after `limit`, fails with its description of the last
/// state it saw.
async fn wait_for<T>(what: &str, limit: Duration, mut probe: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let last_seen = match probe().await {
            Ok(found) => return found,
            Err(last_seen) => last_seen,
        };
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting until {what}; last seen:\n{last_seen}");
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// One line per process: what its engine owns and its writer's role and work, or why its status
/// could not be had.
fn describe(statuses: &BTreeMap<String, Result<ProcessStatus, String>>) -> String {
    let line = |(name, status): (&String, &Result<ProcessStatus, String>)| match status {
        Err(error) => format!("{name}: no status ({error})"),
        Ok(status) => {
            let mut parts = Vec::new();
            if status.engine.is_some() {
                let caught_up = if status.engine_caught_up() { "caught up" } else { "not caught up" };
                parts.push(format!("owns partitions {:?}, {caught_up}", status.owned_partitions()));
            }
            if let Some(writer) = &status.writer {
                parts.push(format!(
                    "writer {:?}, {} commands in backlog, {} Kisi calls, paused: {:?}",
                    writer.role,
                    writer.backlog_commands,
                    writer.calls.total(),
                    writer.paused
                ));
            }
            format!("{name}: {}", parts.join("; "))
        }
    };
    statuses.iter().map(line).collect::<Vec<String>>().join("\n")
}

/// Waits until the writer `name` holds no command it has not carried out: Kisi will not change
/// any more without a new command.
async fn until_idle(site: &Site, name: &str) {
    wait_for(&format!("{name} has carried out every command"), WAIT, async || {
        let seen = statuses(site, &[name]).await;
        let writer = seen.get(name).and_then(|status| status.as_ref().ok()).and_then(|status| status.writer.as_ref());
        if writer.is_some_and(|writer| writer.backlog_commands == 0) { Ok(()) } else { Err(describe(&seen)) }
    })
    .await;
}

/// The engines' partitions once they are split: each engine holds its share (half, rounded up)
/// and has caught up with them, and together they own every partition exactly once.
fn split_partitions(
    statuses: &BTreeMap<String, Result<ProcessStatus, String>>,
    partitions: u32,
) -> Option<BTreeMap<String, Vec<Partition>>> {
    let share = partitions.div_ceil(ENGINES.len() as u32) as usize;
    let mut owned = BTreeMap::new();
    for engine in ENGINES {
        let status = statuses.get(engine)?.as_ref().ok()?;
        if !status.engine_caught_up() || status.owned_partitions().len() != share {
            return None;
        }
        owned.insert(engine.to_owned(), status.owned_partitions());
    }
    let mut all: Vec<Partition> = owned.values().flatten().copied().collect();
    all.sort_unstable();
    (all == (0..partitions).map(Partition).collect::<Vec<_>>()).then_some(owned)
}

/// The active writer and the standby, once exactly one is active and the other on standby.
fn active_and_standby(
    statuses: &BTreeMap<String, Result<ProcessStatus, String>>,
) -> Option<(&'static str, &'static str)> {
    let role = |name: &str| statuses.get(name)?.as_ref().ok()?.writer.as_ref().map(|writer| writer.role);
    match (role(WRITERS[0])?, role(WRITERS[1])?) {
        (WriterRole::Active, WriterRole::Standby) => Some((WRITERS[0], WRITERS[1])),
        (WriterRole::Standby, WriterRole::Active) => Some((WRITERS[1], WRITERS[0])),
        _ => None,
    }
}

/// Users whose email Kisi holds more than once.
fn duplicated_users(site: &Site) -> Vec<String> {
    let mut seen = BTreeSet::new();
    site.kisi
        .users()
        .into_iter()
        .filter(|user| !seen.insert(user.email.to_lowercase()))
        .map(|user| user.email)
        .collect()
}

fn difference(actual: &[KisiMember], expected: &[KisiMember]) -> String {
    let missing: Vec<&KisiMember> = expected.iter().filter(|member| !actual.contains(member)).collect();
    let unexpected: Vec<&KisiMember> = actual.iter().filter(|member| !expected.contains(member)).collect();
    // A user held twice is neither missing nor unexpected: the counts show it.
    format!(
        "Kisi holds {} users where {} are expected; it lacks {missing:#?}\nand holds what it should not: {unexpected:#?}",
        actual.len(),
        expected.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivors_take_over_from_a_killed_engine_and_the_killed_active_writer_and_kisi_ends_exactly_right()
-> Result<(), HarnessError> {
    let started = Instant::now();
    let mut site = Site::start(Deployment::Replicated, NoAccessPolicy::Suspend).await?;
    let partitions = site.partitions();
    let all_processes = [ENGINES[0], ENGINES[1], WRITERS[0], WRITERS[1]];

    // The engines split the partitions evenly (3 and 1 is only a moment while the second engine
    // arrives); exactly one writer is active.
    let (owned, (active_writer, standby_writer)) =
        wait_for("the engines split the partitions and one writer is active", WAIT, async || {
            let seen = statuses(&site, &all_processes).await;
            split_partitions(&seen, partitions).zip(active_and_standby(&seen)).ok_or_else(|| describe(&seen))
        })
        .await;
    for (engine, partitions) in &owned {
        assert!(!partitions.is_empty(), "{engine} owns no partition: {owned:?}");
    }
    println!("partitions owned: {owned:?}; active writer {active_writer}, standby {standby_writer}");

    // Customers until every partition has one for each part of the scenario.
    let mut nexudus = Nexudus::new();
    let mut parts = Vec::new();
    let mut per_partition: BTreeMap<Partition, usize> = BTreeMap::new();
    while per_partition.len() < partitions as usize
        || per_partition.values().any(|&count| count < MEMBERS_PER_PARTITION)
    {
        assert!(nexudus.members.len() < MAX_MEMBERS, "member ids fill the partitions unevenly: {per_partition:?}");
        let index = nexudus.add_member(&site, &format!("Member{:02}", nexudus.members.len()))?;
        let place = per_partition.entry(nexudus.members[index].partition).or_default();
        parts.push(part(*place));
        *place += 1;
    }
    println!("{} members over {partitions} partitions: {per_partition:?}", nexudus.members.len());

    // First round, with every process running.
    for (index, part) in parts.iter().enumerate() {
        match part {
            Part::BooksThenCancels => nexudus.book(&site, index, Room::A)?,
            Part::PassThenBooks => nexudus.issue_floor_pass(&site, index)?,
            Part::NothingThenPass => {}
            Part::Keeps => {
                nexudus.book(&site, index, Room::B)?;
                nexudus.issue_floor_pass(&site, index)?;
            }
        }
    }
    let first_round = nexudus.expected_kisi_state();
    let reached =
        eventually("Kisi holds the first round", WAIT, || (site.kisi_state() == first_round).then_some(())).await;
    if let Err(error) = reached {
        panic!("{error}: {}", difference(&site.kisi_state(), &first_round));
    }
    // Nothing left in flight: commands the killed writer held unacknowledged would come to the
    // survivor only after the consumer's ack wait (a minute), which would be measured as takeover.
    until_idle(&site, active_writer).await;

    // Only the active writer called Kisi, and said so itself.
    let seen = statuses(&site, &all_processes).await;
    let writer_status =
        |name: &str| seen.get(name).and_then(|status| status.as_ref().ok()).and_then(|status| status.writer.clone());
    let (Some(active_status), Some(standby_status)) = (writer_status(active_writer), writer_status(standby_writer))
    else {
        panic!("the writers' status: {}", describe(&seen));
    };
    assert_eq!(active_status.role, WriterRole::Active, "{}", describe(&seen));
    assert_eq!(standby_status.role, WriterRole::Standby, "{}", describe(&seen));
    assert!(active_status.calls.total() > 0, "the active writer reports no Kisi calls: {active_status:#?}");
    assert_eq!(standby_status.calls.total(), 0, "the standby writer reports Kisi calls: {standby_status:#?}");
    // That no call came without one of the writers' keys is checked at the end, when no call can
    // be on its way between two counts.
    assert_eq!(site.kisi_calls_by(standby_writer)?, 0, "Kisi received calls with the standby writer's key");
    assert!(site.kisi_calls_by(active_writer)? > 0, "Kisi received no call with the active writer's key");
    // Which partitions the killed engine leaves behind, as they are just before the kill.
    let Some(owned_at_kill) = split_partitions(&seen, partitions) else {
        panic!("the engines no longer split the partitions: {}", describe(&seen));
    };
    let Some(owned_by_victim) = owned_at_kill.get(ENGINES[0]).cloned() else {
        panic!("{} owns nothing: {owned_at_kill:?}", ENGINES[0]);
    };
    let (victim_engine, surviving_engine) = (ENGINES[0], ENGINES[1]);

    // SIGKILL: neither gives back its leases nor its commands.
    let killed_at = Instant::now();
    for process in [victim_engine, active_writer] {
        let status = site.kill(process).await?;
        assert_eq!(status.signal(), Some(9), "doorsync {process} had exited before it was killed: {status}");
    }
    let active_writer_calls = site.kisi_calls_by(active_writer)?;
    let calls_before_kill = site.kisi.calls().total();

    // Second round, while the killed processes' leases have not lapsed yet: every change waits
    // for the survivors.
    let mut changed = Vec::new();
    for (index, part) in parts.iter().enumerate() {
        match part {
            Part::BooksThenCancels => nexudus.cancel_bookings(&site, index)?,
            Part::PassThenBooks => nexudus.book(&site, index, Room::B)?,
            Part::NothingThenPass => nexudus.issue_floor_pass(&site, index)?,
            Part::Keeps => continue,
        }
        changed.push(index);
    }
    let latecomer = nexudus.add_member(&site, "Latecomer")?;
    nexudus.book(&site, latecomer, Room::A)?;
    changed.push(latecomer);
    let changes_made_in = killed_at.elapsed();
    let changed_in_victims_partitions =
        changed.iter().filter(|&&index| owned_by_victim.contains(&nexudus.members[index].partition)).count();
    assert!(changed_in_victims_partitions > 0, "the scenario changes nothing the killed engine owned");
    let end_state = nexudus.expected_kisi_state();

    // The survivors take over: one engine owns every partition, the standby writer is active, and
    // Kisi holds the end state. Each is timed from the kill as it is first seen.
    let mut engine_took_over = None;
    let mut writer_took_over = None;
    let mut kisi_right = None;
    wait_for("the survivors take over and Kisi holds the end state", TAKEOVER_WAIT, async || {
        let seen = statuses(&site, &[surviving_engine, standby_writer]).await;
        let status = |name: &str| seen.get(name).and_then(|status| status.as_ref().ok());
        let all: Vec<Partition> = (0..partitions).map(Partition).collect();
        if engine_took_over.is_none()
            && status(surviving_engine)
                .is_some_and(|status| status.engine_caught_up() && status.owned_partitions() == all)
        {
            engine_took_over = Some(killed_at.elapsed());
        }
        if writer_took_over.is_none()
            && status(standby_writer)
                .and_then(|status| status.writer.as_ref())
                .is_some_and(|writer| writer.role == WriterRole::Active)
        {
            writer_took_over = Some(killed_at.elapsed());
        }
        let kisi = site.kisi_state();
        if kisi_right.is_none() && kisi == end_state {
            kisi_right = Some(killed_at.elapsed());
        }
        if engine_took_over.is_some() && writer_took_over.is_some() && kisi_right.is_some() {
            return Ok(());
        }
        Err(format!(
            "{}\n(engine took over after {engine_took_over:?}, writer after {writer_took_over:?}, Kisi right after \
                 {kisi_right:?})\n{}",
            describe(&seen),
            difference(&kisi, &end_state)
        ))
    })
    .await;

    // Kisi stays right once the survivor has worked off everything it was given.
    until_idle(&site, standby_writer).await;
    assert_eq!(duplicated_users(&site), Vec::<String>::new(), "Kisi users created twice");
    let end = site.kisi_state();
    assert!(end == end_state, "Kisi's end state is not what Nexudus implies: {}", difference(&end, &end_state));

    // From the kill on, only the writer that took over called Kisi.
    let survivor = site.status_of(standby_writer).await?;
    let survivor_calls = survivor.writer.as_ref().map_or(0, |writer| writer.calls.total());
    assert!(survivor_calls > 0, "the writer that took over reports no Kisi calls: {survivor:#?}");
    assert_eq!(site.kisi_calls_by(active_writer)?, active_writer_calls, "calls with the killed writer's key");
    assert_eq!(
        site.kisi_calls_by(active_writer)? + site.kisi_calls_by(standby_writer)?,
        site.kisi.calls().total(),
        "every call Kisi received, before the kill and after, came with one writer's key"
    );

    let seconds = |elapsed: Option<Duration>| {
        elapsed.map_or_else(|| "-".to_owned(), |elapsed| format!("{:.1} s", elapsed.as_secs_f64()))
    };
    println!(
        "takeover after SIGKILL of {victim_engine} and {active_writer} (engine lease {:?}, writer lease {:?}): \
         {surviving_engine} owned all {partitions} partitions, caught up, after {}; {standby_writer} active after {}; \
         Kisi right after {} ({} members changed in {changes_made_in:.1?}, {changed_in_victims_partitions} of them in the \
         killed engine's partitions {owned_by_victim:?}); Kisi calls: {calls_before_kill} before the kill, {} after; \
         whole test {:.1} s",
        REPLICATED_ENGINE_LEASE_TTL,
        REPLICATED_WRITER_LEASE_TTL,
        seconds(engine_took_over),
        seconds(writer_took_over),
        seconds(kisi_right),
        changed.len(),
        site.kisi_calls_by(standby_writer)?,
        started.elapsed().as_secs_f64(),
    );
    site.stop().await
}
