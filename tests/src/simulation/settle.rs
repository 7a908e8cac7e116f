//! Letting the system finish what it can do at the current instant before time moves on.
//!
//! Settled means: nobody sleeps on the virtual clock until an instant that has come, no Kisi
//! request is in flight (a hung one counts until the client has given up on it), the engine has
//! caught up with the log, the writer holds its lease, and nothing that moves when doorsync
//! works (the log's streams, every counter of the simulators and components) has moved over a
//! few consecutive looks with the runtime given to everyone else in between. What is left waits
//! for time to pass.

use std::time::{Duration, Instant};

use doorsync_engine::ShardStats;
use doorsync_ingest::IngestStatus;
use doorsync_kisi_sim::CallCounts;
use doorsync_log::Sequence;
use doorsync_nexudus_sim::SimStats;
use doorsync_writer::{WriterRole, WriterStatus};

use super::clock::SimClock;
use super::doorsync::{Doorsync, KISI_REQUEST_TIMEOUT};
use super::world::World;

/// Yields to every other task this many times between looks.
const YIELDS_BETWEEN_LOOKS: usize = 8;
/// While something works off the runtime (the log's writer thread and blocking reads, a hung
/// request's timeout), yielding does not wait for it: sleep this long between looks instead.
const PAUSE_WHILE_BUSY: Duration = Duration::from_millis(1);
/// The log counts as busy this long after its last operation finished: long enough for the
/// reads that an append sets off (followers and consumers scanning on the blocking pool).
const LOG_QUIET: Duration = Duration::from_millis(3);
/// Looks in a row after the first that must see nothing move.
const QUIET_LOOKS: u32 = 2;
/// A hung request's client gives up after its timeout; a little more for it to notice.
const HANG_GRACE: Duration = Duration::from_millis(200);
/// Real time after which the simulation moves on anyway (and counts it).
pub(crate) const SETTLE_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Activity {
    log_ends: Vec<Sequence>,
    log_operations: u64,
    kisi: CallCounts,
    nexudus: SimStats,
    writer: WriterStatus,
    ingest: IngestStatus,
    /// Asked only for the last look.
    engine: Option<Vec<ShardStats>>,
    lagging_reader: Option<String>,
}

impl Activity {
    /// Nothing moved between the two looks (the engine compared only when both asked it).
    fn same_as(&self, other: &Self) -> bool {
        let engine_same = match (&self.engine, &other.engine) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => true,
        };
        engine_same
            && self.log_ends == other.log_ends
            && self.log_operations == other.log_operations
            && self.kisi == other.kisi
            && self.nexudus == other.nexudus
            && self.writer == other.writer
            && self.ingest == other.ingest
    }
}

/// Tracks what spans looks: hung Kisi requests, and how often settling gave up.
#[derive(Debug, Default)]
pub(crate) struct Settler {
    hung_seen: u64,
    hang_over_at: Option<Instant>,
    pub(crate) gave_up: u64,
    pub(crate) last_reason: Option<String>,
}

impl Settler {
    /// Waits until the system has settled at the current instant; `false` if it had not after
    /// [`SETTLE_LIMIT`] (the reason is kept in `last_reason`).
    pub(crate) async fn settle(&mut self, clock: &SimClock, world: &World, doorsync: &Doorsync) -> bool {
        let deadline = Instant::now() + SETTLE_LIMIT;
        let mut previous: Option<Activity> = None;
        let mut quiet = 0;
        loop {
            for _ in 0..YIELDS_BETWEEN_LOOKS {
                tokio::task::yield_now().await;
            }
            // The engine is asked (a call to each shard) only once the rest is quiet.
            let activity = look(world, doorsync, quiet + 1 >= QUIET_LOOKS).await;
            let busy = self.busy(clock, doorsync, &activity);
            if busy.is_none() && previous.as_ref().is_some_and(|previous| previous.same_as(&activity)) {
                quiet += 1;
                if quiet >= QUIET_LOOKS {
                    if std::env::var_os("DOORSYNC_SIM_CHECK_SETTLE").is_some() {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        let later = look(world, doorsync, true).await;
                        if !later.same_as(&activity) {
                            eprintln!("SETTLED TOO EARLY:\n  then {activity:?}\n  later {later:?}");
                        }
                    }
                    return true;
                }
            } else {
                quiet = 0;
            }
            if Instant::now() >= deadline {
                self.gave_up += 1;
                self.last_reason = Some(busy.unwrap_or_else(|| "doorsync kept working".to_owned()));
                return false;
            }
            if busy.is_some() {
                tokio::time::sleep(PAUSE_WHILE_BUSY).await;
            }
            previous = Some(activity);
        }
    }

    fn busy(&mut self, clock: &SimClock, doorsync: &Doorsync, activity: &Activity) -> Option<String> {
        if clock.has_due_sleepers() {
            return Some("a sleeper on the virtual clock is due".to_owned());
        }
        if doorsync.log_gauge.in_flight() > 0 || doorsync.log_gauge.idle_for() < LOG_QUIET {
            return Some("the log is working".to_owned());
        }
        if let Some(reader) = &activity.lagging_reader {
            return Some(reader.clone());
        }
        let calls = &activity.kisi;
        if calls.hung > self.hung_seen {
            self.hung_seen = calls.hung;
            self.hang_over_at = Some(Instant::now() + KISI_REQUEST_TIMEOUT + HANG_GRACE);
        }
        if self.hang_over_at.is_some_and(|over| Instant::now() < over) {
            return Some("a Kisi request hangs until its client gives up".to_owned());
        }
        let answered: u64 = calls.by_status.values().sum();
        if calls.total() > answered + calls.dropped + calls.hung {
            return Some("a Kisi request is in flight".to_owned());
        }
        if let Some(shards) = &activity.engine
            && (shards.is_empty() || shards.iter().any(|shard| !shard.caught_up))
        {
            return Some("the engine is catching up with the log".to_owned());
        }
        if activity.writer.role != WriterRole::Active {
            return Some(format!("the writer is {:?}", activity.writer.role));
        }
        None
    }
}

async fn look(world: &World, doorsync: &Doorsync, with_engine: bool) -> Activity {
    let layout = &doorsync.layout;
    let mut log_ends = Vec::new();
    for stream in [&layout.events, &layout.commands, &layout.outcomes, &layout.dead_letters] {
        log_ends.push(doorsync.log.last_sequence(stream).await.unwrap_or(Sequence(u64::MAX)));
    }
    Activity {
        log_ends,
        log_operations: doorsync.log_gauge.finished(),
        kisi: world.kisi.handle().calls(),
        nexudus: world.nexudus.stats(),
        writer: doorsync.writer.status(),
        ingest: doorsync.ingest.status(),
        engine: if with_engine { Some(doorsync.engine.stats().await) } else { None },
        lagging_reader: doorsync.log_gauge.lagging_reader().await,
    }
}
