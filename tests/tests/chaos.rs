//! Chaos with real processes: one `doorsync ingest`, two `doorsync engine` and two `doorsync
//! writer` processes on one nats-server, against the Nexudus and Kisi simulators over loopback
//! HTTP, in real time.
//!
//! While a seeded workload changes Nexudus (members added; bookings made, moved and cancelled,
//! some spanning now and some ahead; passes issued for good, until tomorrow, or expiring within
//! seconds) and Kisi answers with seeded faults (503s, 429s, latency, hangs, and writes whose
//! answer is lost), a seeded schedule SIGKILLs and restarts the ingestor, an engine, the active
//! writer and nats-server itself, each at least once. Webhooks Nexudus sends while the ingestor or
//! NATS is down fail (and Nexudus disables a hook after ten failures in a row): the ingestor's
//! poller, every 2 s here, catches up.
//!
//! Then, with the faults off and every process running again, once doorsync is quiet:
//! * Kisi holds exactly what Nexudus implies, computed here from what the workload did: per
//!   member and group the merged window that contains now or else the next one, a suspended user
//!   for a member left with nothing whose user doorsync made, no user for one it never made; no
//!   user or assignment twice;
//! * nothing was dead-lettered: every fault was transient, so the dead-letter stream is empty;
//! * no event is missing: every member, booking and pass the workload made is in the events
//!   stream as Nexudus holds it last (a superset of the webhooks answered 2xx).
//!
//! `DOORSYNC_CHAOS_SEED=<seed>` replays a run's schedule, workload and Kisi fault draws (the
//! processes' own timing is not replayed: which request draws which fault follows it). The
//! writers' ack wait is short (`writer.ack_wait`, 3 s) so that commands a killed writer held come
//! back within seconds. Timings are printed (`--nocapture`), never asserted. A failing run keeps
//! the site's directory (configuration and every process's log, the killed ones' included) and
//! prints where it is.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use doorsync_access::NoAccessPolicy;
use doorsync_clock::{Clock, SystemClock};
use doorsync_integration_tests::{
    Deployment, HarnessError, KisiMember, KisiMembership, NexudusPlaces, ProcessStatus, Room, Site,
};
use doorsync_kisi_sim::{Fault, FaultRule, RandomFaults, SimHandle};
use doorsync_log::{EventLog, ReplayRequest, StoredMessage};
use doorsync_log_jetstream::{JetStreamLog, JetStreamOptions};
use doorsync_nexudus::NexudusDateTime;
use doorsync_nexudus_sim::{NexudusSimulator, SimEntity};
use doorsync_proto::{Command, Event, Partition, PassValidity, Timestamp};
use doorsync_writer::WriterRole;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Replays a run: its schedule of kills, its workload and the Kisi simulator's fault draws.
const SEED_VARIABLE: &str = "DOORSYNC_CHAOS_SEED";
/// Set (to anything), keeps the site's directory after a run that passed too.
const KEEP_FILES_VARIABLE: &str = "DOORSYNC_CHAOS_KEEP_FILES";
/// How long the workload runs with the faults on; the kills it has not finished by then still
/// happen afterwards.
const CHAOS_PHASE: Duration = Duration::from_secs(40);
/// Short, so that commands a killed writer held come back to the survivor within seconds.
const WRITER_ACK_WAIT: &str = "3s";
/// Short, so that changes whose webhooks were lost while the ingestor or NATS was down arrive soon.
const NEXUDUS_POLL_EVERY: &str = "2s";
/// Customers with access before the chaos starts.
const FIRST_MEMBERS: usize = 8;
const MAX_MEMBERS: usize = 40;
/// Generous deadlines for a loaded two-core machine: for Kisi to hold the first members before the
/// chaos, for a writer to be active before it is killed, and for doorsync to be quiet afterwards.
const BASELINE_WAIT: Duration = Duration::from_secs(60);
const ACTIVE_WRITER_WAIT: Duration = Duration::from_secs(30);
const QUIET_WAIT: Duration = Duration::from_secs(120);
/// Once quiet, Kisi must stay as it is for this long.
const STILL_QUIET_AFTER: Duration = Duration::from_secs(3);
const POLL_EVERY: Duration = Duration::from_millis(500);
/// doorsync's default lead and lag around bookings, which the site keeps.
const LEAD_MS: i64 = 15 * 60 * 1_000;
const LAG_MS: i64 = 15 * 60 * 1_000;
const HOUR_MS: i64 = 3_600_000;
/// Passes that expire while the chaos runs do so this soon after they are issued, and no later
/// than this before the chaos phase ends, so that Kisi's end state no longer changes with time.
const SOON_EXPIRY_SECONDS: std::ops::RangeInclusive<i64> = 6..=20;
const LAST_EXPIRY_BEFORE_END: Duration = Duration::from_secs(5);
/// Faults Kisi answers with while the chaos runs: each request draws one.
const KISI_FAULTS: RandomFaults =
    RandomFaults { server_error: 0.08, drop_response: 0.05, hang: 0.02, max_latency: Duration::from_millis(200) };

const ENGINES: [&str; 2] = ["engine-1", "engine-2"];
const WRITERS: [&str; 2] = ["writer-1", "writer-2"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Ingestor,
    Engine,
    ActiveWriter,
    NatsServer,
}

const EVERY_TARGET: [Target; 4] = [Target::Ingestor, Target::Engine, Target::ActiveWriter, Target::NatsServer];
/// Random kills shuffled in among the first of each target (which a kill and restart takes about
/// five seconds on average, so that they all fall well within the chaos phase)...
const EXTRA_KILLS_AMONG_THE_FIRST: usize = 2;
/// ...and random kills after those, as many as the chaos phase has time for.
const EXTRA_KILLS_AFTER: usize = 6;

/// One planned kill: after `gap` since the previous one came back, kill `target`, and start it
/// again after `downtime`. Only the first of each target must happen.
#[derive(Debug, Clone, Copy)]
struct PlannedKill {
    target: Target,
    required: bool,
    gap: Duration,
    downtime: Duration,
}

fn plan_kills(rng: &mut StdRng) -> Vec<PlannedKill> {
    let mut first: Vec<(Target, bool)> = EVERY_TARGET.iter().map(|&target| (target, true)).collect();
    for _ in 0..EXTRA_KILLS_AMONG_THE_FIRST {
        first.extend(EVERY_TARGET.choose(rng).map(|&target| (target, false)));
    }
    first.shuffle(rng);
    let mut targets = first;
    for _ in 0..EXTRA_KILLS_AFTER {
        targets.extend(EVERY_TARGET.choose(rng).map(|&target| (target, false)));
    }
    targets
        .into_iter()
        .map(|(target, required)| PlannedKill {
            target,
            required,
            gap: Duration::from_millis(rng.random_range(1_000..=3_000)),
            downtime: Duration::from_millis(rng.random_range(300..=3_000)),
        })
        .collect()
}

/// What happened to one process.
#[derive(Debug)]
struct Kill {
    target: Target,
    name: String,
    /// Since the chaos started.
    killed_at: Duration,
    signal: Option<i32>,
    downtime: Duration,
    /// From the start until the restarted process was ready.
    ready_after: Duration,
}

#[derive(Debug, Clone)]
struct Booking {
    id: u64,
    room: Room,
    from: Timestamp,
    to: Timestamp,
    cancelled: bool,
}

#[derive(Debug, Clone)]
struct Pass {
    id: u64,
    /// `None`: valid for good.
    expires: Option<Timestamp>,
}

/// A Nexudus customer as the workload made it.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    id: u64,
    bookings: Vec<Booking>,
    passes: Vec<Pass>,
}

impl Member {
    fn email(&self) -> String {
        format!("{}@example.com", self.name.to_lowercase())
    }
}

/// Changes Nexudus as operators and members would, through the simulator (not through the site,
/// which the chaos holds meanwhile).
struct Workload {
    nexudus: NexudusSimulator,
    kisi: SimHandle,
    places: NexudusPlaces,
    rng: StdRng,
    /// Draws for the 429 bursts, apart from `rng`: whether a burst is due depends on how Kisi is
    /// called, which a replay does not repeat exactly.
    burst_rng: StdRng,
    /// The start of the hour the test started in: bookings start on whole hours from it, so no
    /// two booking windows of a room merely touch, and every window is in whole seconds (as Kisi
    /// holds them).
    hour_zero: i64,
    members: Vec<Member>,
    actions: BTreeMap<&'static str, u32>,
    /// Scripted 429 bursts injected.
    rate_limit_bursts: u32,
}

impl Workload {
    fn new(site: &Site, rng: StdRng, burst_rng: StdRng) -> Self {
        let places = site.places;
        let now = SystemClock.now().as_unix_millis();
        Self {
            nexudus: site.nexudus.clone(),
            kisi: site.kisi.clone(),
            places,
            rng,
            burst_rng,
            hour_zero: now / HOUR_MS * HOUR_MS,
            members: Vec::new(),
            actions: BTreeMap::new(),
            rate_limit_bursts: 0,
        }
    }

    fn count(&mut self, action: &'static str) {
        *self.actions.entry(action).or_default() += 1;
    }

    fn add_member(&mut self) -> Result<usize, HarnessError> {
        let name = format!("Chaos{:03}", self.members.len());
        let email = format!("{}@example.com", name.to_lowercase());
        let id = self.nexudus.create(SimEntity::Coworker, json!({"FullName": name, "Email": email, "Active": true}))?;
        self.members.push(Member { name, id, bookings: Vec::new(), passes: Vec::new() });
        self.count("member added");
        Ok(self.members.len() - 1)
    }

    /// A window on whole hours: spanning now (so that access is current) or starting within the
    /// next two days (written ahead).
    fn slot(&mut self) -> (Timestamp, Timestamp) {
        let (start_hour, hours) = if self.rng.random_bool(0.3) {
            (-self.rng.random_range(0..=1_i64), self.rng.random_range(3..=4_i64))
        } else {
            (self.rng.random_range(3..=40_i64), self.rng.random_range(1..=3_i64))
        };
        let from = self.hour_zero + start_hour * HOUR_MS;
        (Timestamp::from_unix_millis(from), Timestamp::from_unix_millis(from + hours * HOUR_MS))
    }

    fn book(&mut self, member: usize) -> Result<(), HarnessError> {
        let room = if self.rng.random_bool(0.5) { Room::A } else { Room::B };
        let (from, to) = self.slot();
        let fields = json!({"ResourceId": room.resource(&self.places), "CoworkerId": self.members[member].id,
            "Tentative": false, "FromTime": nexudus_time(from), "ToTime": nexudus_time(to)});
        let id = self.nexudus.create(SimEntity::Booking, fields)?;
        self.members[member].bookings.push(Booking { id, room, from, to, cancelled: false });
        self.count("booking made");
        Ok(())
    }

    /// A booking not cancelled, at random: (member, booking) indexes.
    fn live_booking(&mut self) -> Option<(usize, usize)> {
        let live: Vec<(usize, usize)> = self
            .members
            .iter()
            .enumerate()
            .flat_map(|(member, held)| {
                held.bookings
                    .iter()
                    .enumerate()
                    .filter(|(_, booking)| !booking.cancelled)
                    .map(move |(at, _)| (member, at))
            })
            .collect();
        live.choose(&mut self.rng).copied()
    }

    fn move_booking(&mut self) -> Result<(), HarnessError> {
        let Some((member, at)) = self.live_booking() else { return Ok(()) };
        let (from, to) = self.slot();
        let booking = &mut self.members[member].bookings[at];
        self.nexudus.update(
            SimEntity::Booking,
            booking.id,
            json!({"FromTime": nexudus_time(from), "ToTime": nexudus_time(to)}),
        )?;
        booking.from = from;
        booking.to = to;
        self.count("booking moved");
        Ok(())
    }

    fn cancel_booking(&mut self) -> Result<(), HarnessError> {
        let Some((member, at)) = self.live_booking() else { return Ok(()) };
        let booking = &mut self.members[member].bookings[at];
        self.nexudus.cancel_booking(booking.id, 1)?;
        booking.cancelled = true;
        self.count("booking cancelled");
        Ok(())
    }

    /// A pass for good, until tomorrow, or, while there is time for it to run out before the
    /// chaos ends, for a few seconds.
    fn issue_pass(&mut self, member: usize, latest_soon_expiry: Option<Timestamp>) -> Result<(), HarnessError> {
        let now_seconds = SystemClock.now().as_unix_millis().div_euclid(1_000) + 1;
        let soon = Timestamp::from_unix_millis((now_seconds + self.rng.random_range(SOON_EXPIRY_SECONDS)) * 1_000);
        let roll: f64 = self.rng.random();
        let (expires, action) = match latest_soon_expiry {
            Some(latest) if roll < 0.4 && soon <= latest => (Some(soon), "pass issued, expiring soon"),
            _ if roll < 0.7 => (None, "pass issued for good"),
            _ => (Some(Timestamp::from_unix_millis(self.hour_zero + 30 * HOUR_MS)), "pass issued until tomorrow"),
        };
        let fields = json!({"CoworkerId": self.members[member].id, "TimePassId": self.places.floor_pass,
            "BusinessId": self.places.business, "Used": false, "ExpireDate": expires.map(nexudus_time)});
        let id = self.nexudus.create(SimEntity::CoworkerTimePass, fields)?;
        self.members[member].passes.push(Pass { id, expires });
        self.count(action);
        Ok(())
    }

    /// Members with access for the start: half with a booking, half with a pass for good.
    fn first_members(&mut self) -> Result<(), HarnessError> {
        for index in 0..FIRST_MEMBERS {
            let member = self.add_member()?;
            if index % 2 == 0 { self.book(member)? } else { self.issue_pass(member, None)? }
        }
        Ok(())
    }

    /// A member cancels every booking they hold: one who holds no pass either is left with
    /// nothing, which the no-access policy applies to.
    fn cancel_every_booking(&mut self) -> Result<(), HarnessError> {
        let Some((member, _)) = self.live_booking() else { return Ok(()) };
        for at in 0..self.members[member].bookings.len() {
            let booking = &mut self.members[member].bookings[at];
            if !booking.cancelled {
                self.nexudus.cancel_booking(booking.id, 1)?;
                booking.cancelled = true;
            }
        }
        self.count("member cancelled every booking");
        Ok(())
    }

    /// One change at random.
    fn act(&mut self, latest_soon_expiry: Option<Timestamp>) -> Result<(), HarnessError> {
        let roll = self.rng.random_range(0..14);
        let member = self.rng.random_range(0..self.members.len());
        match roll {
            // A new member, with a booking or a pass (which may run out soon and leave them
            // with nothing).
            0..=1 if self.members.len() < MAX_MEMBERS => {
                let added = self.add_member()?;
                if self.rng.random_bool(0.5) { self.book(added) } else { self.issue_pass(added, latest_soon_expiry) }
            }
            0..=4 => self.book(member),
            5..=6 => self.move_booking(),
            7..=8 => self.cancel_booking(),
            9 => self.cancel_every_booking(),
            _ => self.issue_pass(member, latest_soon_expiry),
        }
    }

    /// Changes Nexudus every 0.3 to 1 s for `phase`, and now and then has Kisi answer the next
    /// requests with 429.
    async fn run(mut self, phase: Duration) -> Result<Self, HarnessError> {
        let started = Instant::now();
        let ends_at = SystemClock.now().as_unix_millis() + duration_millis(phase);
        let latest_soon_expiry = Some(Timestamp::from_unix_millis(ends_at - duration_millis(LAST_EXPIRY_BEFORE_END)));
        let mut next_burst = started + Duration::from_secs(2);
        // A burst is answered to requests as they come: the next waits until it has been, so
        // that bursts do not pile up while no writer calls Kisi.
        let mut answered_429_when_done = 0;
        while started.elapsed() < phase {
            self.act(latest_soon_expiry)?;
            if Instant::now() >= next_burst && self.kisi.calls().status(429) >= answered_429_when_done {
                let retry_after = self.burst_rng.random_range(1..=2_u32).to_string();
                let times = self.burst_rng.random_range(1..=3);
                answered_429_when_done = self.kisi.calls().status(429) + u64::from(times);
                self.kisi
                    .inject(FaultRule::new(Fault::Status { status: 429, retry_after: Some(retry_after) }).times(times));
                self.rate_limit_bursts += 1;
                next_burst = Instant::now() + Duration::from_millis(self.burst_rng.random_range(3_000..=7_000));
            }
            tokio::time::sleep(Duration::from_millis(self.rng.random_range(300..=1_000))).await;
        }
        Ok(self)
    }
}

fn nexudus_time(at: Timestamp) -> Value {
    NexudusDateTime::from_utc(at).map_or(Value::Null, |written| Value::String(written.to_string()))
}

fn duration_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A stretch of access; an open bound is `None`.
#[derive(Debug, Clone, Copy)]
struct Stretch {
    from: Option<i64>,
    until: Option<i64>,
}

/// Per group, the stretches merged where they overlap, and of those the one that contains `now`
/// or else the next one: what Kisi can hold.
fn chosen_stretch(mut stretches: Vec<Stretch>, now: i64) -> Option<Stretch> {
    // An open start sorts first, as `None < Some`.
    stretches.sort_by_key(|stretch| stretch.from);
    let mut merged: Vec<Stretch> = Vec::new();
    for stretch in stretches {
        match merged.last_mut() {
            Some(last) if last.until.is_none_or(|until| stretch.from.is_none_or(|from| from <= until)) => {
                last.until = match (last.until, stretch.until) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
            _ => merged.push(stretch),
        }
    }
    merged.into_iter().find(|stretch| stretch.until.is_none_or(|until| until > now))
}

/// What Kisi must hold for the workload's members at `now`, in [`Site::kisi_state`]'s order.
/// `users_made` are the members doorsync asked the writer to give a user (an `ensure_user`
/// command): one left with nothing keeps that user, suspended; one never given a user (whose
/// access came and went before an engine evaluated it, say) has none.
fn expected_kisi_state(members: &[Member], users_made: &BTreeSet<u64>, now: Timestamp) -> Vec<KisiMember> {
    let now = now.as_unix_millis();
    let mut expected: Vec<KisiMember> = members
        .iter()
        .filter_map(|member| {
            let mut by_group: BTreeMap<&str, Vec<Stretch>> = BTreeMap::new();
            for booking in member.bookings.iter().filter(|booking| !booking.cancelled) {
                by_group.entry(booking.room.group()).or_default().push(Stretch {
                    from: Some(booking.from.as_unix_millis() - LEAD_MS),
                    until: Some(booking.to.as_unix_millis() + LAG_MS),
                });
            }
            for pass in &member.passes {
                by_group
                    .entry("Coworking floor")
                    .or_default()
                    .push(Stretch { from: None, until: pass.expires.map(Timestamp::as_unix_millis) });
            }
            let mut memberships: Vec<KisiMembership> = by_group
                .into_iter()
                .filter_map(|(group, stretches)| {
                    let chosen = chosen_stretch(stretches, now)?;
                    Some(KisiMembership {
                        group: group.to_owned(),
                        role: "group_basic".to_owned(),
                        valid_from: chosen.from.map(Timestamp::from_unix_millis),
                        valid_until: chosen.until.map(Timestamp::from_unix_millis),
                    })
                })
                .collect();
            memberships.sort();
            let access_enabled = !memberships.is_empty();
            (access_enabled || users_made.contains(&member.id)).then(|| KisiMember {
                email: member.email(),
                access_enabled,
                memberships,
            })
        })
        .collect();
    expected.sort();
    expected
}

fn difference(actual: &[KisiMember], expected: &[KisiMember]) -> String {
    let missing: Vec<&KisiMember> = expected.iter().filter(|member| !actual.contains(member)).collect();
    let unexpected: Vec<&KisiMember> = actual.iter().filter(|member| !expected.contains(member)).collect();
    format!(
        "Kisi holds {} users where {} are expected; it lacks {missing:#?}\nand holds what it should not: {unexpected:#?}",
        actual.len(),
        expected.len()
    )
}

/// The site's log, read by the test itself.
struct LogReader {
    log: JetStreamLog,
    events: String,
    commands: String,
    outcomes: String,
    dead_letters: String,
}

impl LogReader {
    async fn connect(site: &Site) -> Result<Self, HarnessError> {
        let layout = site.layout();
        let url = site.nats_url().ok_or_else(|| HarnessError::Setup("the site runs no nats-server".into()))?;
        let log = JetStreamLog::connect(JetStreamOptions::new(url, layout.streams()))
            .await
            .map_err(|error| HarnessError::Setup(format!("reading the site's log: {error}")))?;
        Ok(Self {
            log,
            events: layout.events,
            commands: layout.commands,
            outcomes: layout.outcomes,
            dead_letters: layout.dead_letters,
        })
    }

    async fn read(&self, stream: &str) -> Result<Vec<StoredMessage>, HarnessError> {
        let failed = |error: &dyn std::fmt::Display| HarnessError::Setup(format!("reading stream {stream}: {error}"));
        let replay = self.log.replay(ReplayRequest::whole(stream)).await.map_err(|error| failed(&error))?;
        let read = tokio::time::timeout(Duration::from_secs(30), futures::TryStreamExt::try_collect(replay)).await;
        match read {
            Ok(Ok(messages)) => Ok(messages),
            Ok(Err(error)) => Err(failed(&error)),
            Err(elapsed) => Err(failed(&elapsed)),
        }
    }

    /// For a failure message: every event, command, outcome and dead letter about each of
    /// `members` (by Nexudus id), in stream order.
    async fn history(&self, members: &[u64]) -> String {
        let mut lines = Vec::new();
        for member in members {
            lines.push(format!("member {member}:"));
            let on_member = |message: &StoredMessage| message.subject.ends_with(&format!(".{member}"));
            for stream in [&self.events, &self.commands, &self.outcomes, &self.dead_letters] {
                let messages = match self.read(stream).await {
                    Ok(messages) => messages,
                    Err(error) => {
                        lines.push(format!("  {error}"));
                        continue;
                    }
                };
                for message in messages.iter().filter(|message| on_member(message)) {
                    let text = if stream == &self.events {
                        doorsync_proto::decode::<Event>(&message.payload)
                            .map(|envelope| format!("{:?}", envelope.message))
                    } else if stream == &self.outcomes {
                        doorsync_proto::decode::<doorsync_proto::Outcome>(&message.payload)
                            .map(|envelope| format!("{:?}", envelope.message))
                    } else {
                        doorsync_proto::decode::<Command>(&message.payload)
                            .map(|envelope| format!("{:?} (at {})", envelope.message, envelope.occurred_at))
                    };
                    let text = text.unwrap_or_else(|error| format!("undecodable: {error}"));
                    lines.push(format!("  {stream} #{}: {text} {:?}", message.sequence, message.headers));
                }
            }
        }
        lines.join("\n")
    }

    /// The members the engine asked the writer to give a Kisi user.
    async fn users_made(&self) -> Result<BTreeSet<u64>, HarnessError> {
        let mut made = BTreeSet::new();
        for message in self.read(&self.commands).await? {
            let envelope = doorsync_proto::decode::<Command>(&message.payload)
                .map_err(|error| HarnessError::Setup(format!("command {}: {error}", message.sequence)))?;
            if let Command::EnsureUser(ensure) = envelope.message {
                made.insert(ensure.member.0);
            }
        }
        Ok(made)
    }
}

/// The last state the events stream gives each record.
#[derive(Debug, Default)]
struct Logged {
    members: BTreeSet<u64>,
    /// `None` once cancelled.
    bookings: HashMap<u64, Option<(Timestamp, Timestamp)>>,
    passes: HashMap<u64, PassValidity>,
}

impl Logged {
    async fn read(reader: &LogReader) -> Result<Self, HarnessError> {
        let mut logged = Self::default();
        for message in reader.read(&reader.events).await? {
            let envelope = doorsync_proto::decode::<Event>(&message.payload)
                .map_err(|error| HarnessError::Setup(format!("event {}: {error}", message.sequence)))?;
            match envelope.message {
                Event::MemberChanged(changed) => {
                    logged.members.insert(changed.member.0);
                }
                Event::BookingChanged(changed) => {
                    logged.bookings.insert(changed.booking.0, Some((changed.starts_at, changed.ends_at)));
                }
                Event::BookingCancelled(cancelled) => {
                    logged.bookings.insert(cancelled.booking.0, None);
                }
                Event::PassChanged(changed) => {
                    logged.passes.insert(changed.pass.0, changed.validity);
                }
                _ => {}
            }
        }
        Ok(logged)
    }

    /// Every record of the workload whose last state is not in the log, described.
    fn missing(&self, members: &[Member]) -> Vec<String> {
        let mut missing = Vec::new();
        for member in members {
            if !self.members.contains(&member.id) {
                missing.push(format!("member {} ({})", member.id, member.name));
            }
            for booking in &member.bookings {
                let wanted = (!booking.cancelled).then_some((booking.from, booking.to));
                match self.bookings.get(&booking.id) {
                    Some(found) if *found == wanted => {}
                    found => {
                        missing.push(format!("booking {}: {wanted:?} in Nexudus, {found:?} in the log", booking.id))
                    }
                }
            }
            for pass in &member.passes {
                match self.passes.get(&pass.id) {
                    Some(PassValidity::Window { until, .. }) if *until == pass.expires => {}
                    found => missing
                        .push(format!("pass {}: expires {:?} in Nexudus, {found:?} in the log", pass.id, pass.expires)),
                }
            }
        }
        missing
    }
}

/// Each process's status, or why it could not be had.
async fn statuses(site: &Site) -> BTreeMap<String, Result<ProcessStatus, String>> {
    let mut found = BTreeMap::new();
    for name in ENGINES.iter().chain(WRITERS.iter()) {
        found.insert((*name).to_owned(), site.status_of(name).await.map_err(|error| error.to_string()));
    }
    found
}

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
                    "writer {:?}, {} commands in backlog, {} Kisi calls, {} dead letters, paused: {:?}",
                    writer.role,
                    writer.backlog_commands,
                    writer.calls.total(),
                    writer.dead_letters,
                    writer.paused
                ));
            }
            format!("{name}: {}", parts.join("; "))
        }
    };
    statuses.iter().map(line).collect::<Vec<String>>().join("\n")
}

/// Whether doorsync has nothing left to do: the engines own every partition between them and
/// have caught up, one writer is active, and no writer holds a command.
fn quiet(statuses: &BTreeMap<String, Result<ProcessStatus, String>>, partitions: u32) -> bool {
    let ok: Vec<&ProcessStatus> = statuses.values().filter_map(|status| status.as_ref().ok()).collect();
    if ok.len() != statuses.len() {
        return false;
    }
    let mut owned: Vec<Partition> = ok.iter().flat_map(|status| status.owned_partitions()).collect();
    owned.sort_unstable();
    let engines_done = owned == (0..partitions).map(Partition).collect::<Vec<_>>()
        && ok
            .iter()
            .filter(|status| status.engine.is_some())
            .all(|status| status.engine.as_ref().is_some_and(Vec::is_empty) || status.engine_caught_up());
    let writers: Vec<_> = ok.iter().filter_map(|status| status.writer.as_ref()).collect();
    let one_active = writers.iter().filter(|writer| writer.role == WriterRole::Active).count() == 1;
    engines_done && one_active && writers.iter().all(|writer| writer.backlog_commands == 0)
}

/// The writer that holds the lease now, waiting while a standby takes over.
async fn active_writer(site: &Site) -> Result<&'static str, HarnessError> {
    let deadline = Instant::now() + ACTIVE_WRITER_WAIT;
    loop {
        let seen = statuses(site).await;
        let active: Vec<&'static str> = WRITERS
            .into_iter()
            .filter(|name| {
                seen.get(*name)
                    .and_then(|status| status.as_ref().ok())
                    .and_then(|status| status.writer.as_ref())
                    .is_some_and(|writer| writer.role == WriterRole::Active)
            })
            .collect();
        if let [only] = active.as_slice() {
            return Ok(only);
        }
        if Instant::now() >= deadline {
            return Err(HarnessError::Timeout {
                what: format!("exactly one writer is active; seen:\n{}", describe(&seen)),
                waited: ACTIVE_WRITER_WAIT,
            });
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Kills `planned.target` with SIGKILL, leaves it down for `planned.downtime`, and starts it again.
async fn kill_and_restart(
    site: &mut Site,
    planned: PlannedKill,
    rng: &mut StdRng,
    chaos_started: Instant,
) -> Result<Kill, HarnessError> {
    let name = match planned.target {
        Target::Ingestor => "ingest",
        Target::Engine => ENGINES.choose(rng).copied().unwrap_or(ENGINES[0]),
        Target::ActiveWriter => active_writer(site).await?,
        Target::NatsServer => "nats-server",
    };
    let killed_at = chaos_started.elapsed();
    let signal = match planned.target {
        Target::NatsServer => {
            // `NatsServer::kill` sends SIGKILL (tokio's `Child::kill`) and waits for the exit.
            site.kill_nats().await?;
            Some(9)
        }
        _ => site.kill(name).await?.signal(),
    };
    tokio::time::sleep(planned.downtime).await;
    let restarting = Instant::now();
    match planned.target {
        Target::NatsServer => site.restart_nats().await?,
        _ => site.restart(name).await?,
    }
    let kill = Kill {
        target: planned.target,
        name: name.to_owned(),
        killed_at,
        signal,
        downtime: planned.downtime,
        ready_after: restarting.elapsed(),
    };
    println!(
        "  {:>5.1} s: SIGKILL {} ({:?}), down {:.1} s, ready again {:.1} s after its restart",
        kill.killed_at.as_secs_f64(),
        kill.name,
        kill.target,
        kill.downtime.as_secs_f64(),
        kill.ready_after.as_secs_f64()
    );
    Ok(kill)
}

/// The seed `DOORSYNC_CHAOS_SEED` names, or a new one.
fn chaos_seed() -> Result<u64, HarnessError> {
    match std::env::var(SEED_VARIABLE) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|error| HarnessError::Setup(format!("{SEED_VARIABLE}={text:?} is not a seed: {error}"))),
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.subsec_nanos());
            Ok(u64::from(nanos) ^ (u64::from(std::process::id()) << 32))
        }
    }
}

/// Independent generators for the kills and the workload, so that one's draws do not shift the
/// other's.
fn generator(seed: u64, stream: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_and_nats_killed_at_random_under_kisi_faults_and_kisi_ends_exactly_as_nexudus_implies()
-> Result<(), HarnessError> {
    let seed = chaos_seed()?;
    println!("chaos seed {seed} (replay with {SEED_VARIABLE}={seed})");
    let started = Instant::now();
    let settings = |role: &str| match role {
        "writer" => vec![("DOORSYNC_WRITER__ACK_WAIT", WRITER_ACK_WAIT.to_owned())],
        "ingest" => vec![("DOORSYNC_NEXUDUS__POLL_EVERY", NEXUDUS_POLL_EVERY.to_owned())],
        _ => Vec::new(),
    };
    let mut site = Site::start_seeded(Deployment::Replicated, NoAccessPolicy::Suspend, seed, settings).await?;
    // Kept until the test has passed, for a look at what the processes wrote.
    let site_dir: PathBuf = site.keep_files(true).to_owned();
    println!("the site's files (kept if the test fails): {}", site_dir.display());
    let reader = LogReader::connect(&site).await?;
    let partitions = site.partitions();
    let site_started_in = started.elapsed();

    // Before the chaos, with every process running and no faults: the first members reach Kisi.
    let mut workload = Workload::new(&site, generator(seed, 1), generator(seed, 3));
    workload.first_members()?;
    let first = expected_kisi_state(&workload.members, &BTreeSet::new(), SystemClock.now());
    let baseline_started = Instant::now();
    let deadline = baseline_started + BASELINE_WAIT;
    while site.kisi_state() != first {
        assert!(
            Instant::now() < deadline,
            "Kisi did not hold the first members within {BASELINE_WAIT:?} (files kept in {}): {}",
            site_dir.display(),
            difference(&site.kisi_state(), &first)
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
    let baseline_in = baseline_started.elapsed();
    let calls_before_chaos = site.kisi.calls();

    // The chaos: the workload runs beside the kills, Kisi answers with faults.
    println!("chaos for {CHAOS_PHASE:?}:");
    site.kisi.set_random_faults(Some(KISI_FAULTS));
    let chaos_started = Instant::now();
    let workload_task = tokio::spawn(workload.run(CHAOS_PHASE));
    let mut kill_rng = generator(seed, 2);
    let mut kills = Vec::new();
    for planned in plan_kills(&mut kill_rng) {
        // The extra kills only while the workload runs.
        if !planned.required && chaos_started.elapsed() + planned.gap >= CHAOS_PHASE {
            continue;
        }
        tokio::time::sleep(planned.gap).await;
        kills.push(kill_and_restart(&mut site, planned, &mut kill_rng, chaos_started).await?);
    }
    let workload = workload_task.await.map_err(|error| HarnessError::Setup(format!("the workload: {error}")))??;
    let chaos_lasted = chaos_started.elapsed();
    let fault_calls = site.kisi.calls();
    site.kisi.clear_faults();
    // A process that exited by itself crashed: the kills are the only way out here.
    site.check_running()?;

    // Quiet: doorsync has nothing left to do and Kisi holds what Nexudus implies.
    let quiet_started = Instant::now();
    let deadline = quiet_started + QUIET_WAIT;
    let mut quiet_after = None;
    let expected = loop {
        let users_made = reader.users_made().await?;
        let expected = expected_kisi_state(&workload.members, &users_made, SystemClock.now());
        let seen = statuses(&site).await;
        let kisi = site.kisi_state();
        if kisi == expected && quiet(&seen, partitions) {
            match quiet_after {
                Some(since) if Instant::now() >= since + STILL_QUIET_AFTER => break expected,
                Some(_) => {}
                None => quiet_after = Some(Instant::now()),
            }
        } else {
            quiet_after = None;
        }
        if Instant::now() >= deadline {
            let wrong: Vec<u64> = workload
                .members
                .iter()
                .filter(|member| {
                    let email = member.email();
                    let held = kisi.iter().filter(|user| user.email == email);
                    let wanted = expected.iter().filter(|user| user.email == email);
                    !held.eq(wanted)
                })
                .map(|member| member.id)
                .collect();
            panic!(
                "doorsync was not quiet with Kisi as Nexudus implies within {QUIET_WAIT:?} after the chaos (seed \
                 {seed}, files kept in {}):\n{}\n{}\nwhat the log holds about the members Kisi holds wrongly:\n{}",
                site_dir.display(),
                describe(&seen),
                difference(&kisi, &expected),
                reader.history(&wrong).await
            );
        }
        tokio::time::sleep(POLL_EVERY).await;
    };
    let quiet_in = quiet_started.elapsed();
    site.check_running()?;

    // No user and no assignment twice (the simulator refuses a second role in a group, but a
    // second user would carry one of its own).
    let mut emails = BTreeMap::<String, u32>::new();
    for user in site.kisi.users() {
        *emails.entry(user.email.to_lowercase()).or_default() += 1;
    }
    let twice: Vec<&String> = emails.iter().filter(|(_, count)| **count > 1).map(|(email, _)| email).collect();
    assert!(twice.is_empty(), "Kisi users created twice: {twice:?}");
    let mut roles = BTreeMap::<(u64, u64), u32>::new();
    for assignment in site.kisi.assignments() {
        *roles.entry((assignment.user.0, assignment.group.0)).or_default() += 1;
    }
    assert!(roles.values().all(|count| *count == 1), "assignments held twice: {roles:?}");

    // Nothing dead-lettered: every fault was transient.
    let dead_letters = reader.read(&reader.dead_letters).await?;
    let reasons: Vec<String> = dead_letters
        .iter()
        .map(|letter| {
            let reason = letter.headers.iter().find(|(name, _)| name == doorsync_writer::REASON_HEADER);
            format!("{}: {:?}", letter.subject, reason.map(|(_, value)| value))
        })
        .collect();
    assert!(reasons.is_empty(), "commands were dead-lettered though every fault was transient: {reasons:#?}");

    // No event missing: every record the workload made is in the log as Nexudus holds it last.
    let logged = Logged::read(&reader).await?;
    let missing = logged.missing(&workload.members);
    assert!(missing.is_empty(), "records whose last state is not in the events stream: {missing:#?}");

    // Every target was killed, by SIGKILL, and Kisi's faults were answered.
    for target in EVERY_TARGET {
        assert!(kills.iter().any(|kill| kill.target == target), "{target:?} was never killed: {kills:#?}");
    }
    assert!(kills.iter().all(|kill| kill.signal == Some(9)), "a process had exited before its kill: {kills:#?}");
    let faults_answered = fault_calls.status(503).saturating_sub(calls_before_chaos.status(503))
        + fault_calls.status(429).saturating_sub(calls_before_chaos.status(429))
        + fault_calls.dropped.saturating_sub(calls_before_chaos.dropped)
        + fault_calls.hung.saturating_sub(calls_before_chaos.hung);
    assert!(faults_answered > 0, "Kisi answered no request with a fault: {fault_calls:?}");

    let calls = site.kisi.calls();
    let suspended = expected.iter().filter(|member| !member.access_enabled).count();
    let nexudus = site.nexudus.stats();
    println!(
        "seed {seed}: site started in {:.1} s, first {FIRST_MEMBERS} members in Kisi after {:.1} s; chaos {:.1} s with {} \
         kills ({}); quiet {:.1} s after the chaos; whole test {:.1} s",
        site_started_in.as_secs_f64(),
        baseline_in.as_secs_f64(),
        chaos_lasted.as_secs_f64(),
        kills.len(),
        kills.iter().map(|kill| kill.name.as_str()).collect::<Vec<_>>().join(", "),
        quiet_in.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    println!(
        "workload: {} members, {:?}, {} scripted 429 bursts; end state: {} Kisi users ({suspended} suspended), {} \
         assignments",
        workload.members.len(),
        workload.actions,
        workload.rate_limit_bursts,
        expected.len(),
        expected.iter().map(|member| member.memberships.len()).sum::<usize>()
    );
    println!(
        "Kisi calls: {} in all, {} during the chaos (503: {}, 429: {}, answers dropped: {}, hung: {}); by status {:?}; \
         by endpoint {:?}",
        calls.total(),
        fault_calls.total() - calls_before_chaos.total(),
        fault_calls.status(503),
        fault_calls.status(429),
        fault_calls.dropped,
        fault_calls.hung,
        calls.by_status,
        calls.by_endpoint
    );
    println!(
        "Nexudus webhooks: {} deliveries attempted, {} answered 2xx; {} API requests",
        nexudus.deliveries_attempted, nexudus.deliveries_succeeded, nexudus.requests
    );
    if std::env::var_os(KEEP_FILES_VARIABLE).is_some() {
        println!("files kept in {}", site_dir.display());
    } else {
        site.keep_files(false);
    }
    site.stop().await
}
