//! The demo, at this stage of doorsync: generated Nexudus facts go into the embedded log, the
//! access engine turns them into commands for Kisi, and the commands are printed as they are
//! emitted, including the ones that come due while the demo runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use doorsync_clock::{Clock, SystemClock};
use doorsync_engine::EngineOptions;
use doorsync_layout::Layout;
use doorsync_log::{EventLog, NewMessage, ReplayRequest};
use doorsync_log_embedded::{EmbeddedLog, EmbeddedOptions};
use doorsync_proto::{
    BookingChanged, BookingId, Command, Envelope, Event, KisiGroupId, MappingChanged, MappingSource, MemberChanged,
    MemberId, PassChanged, PassId, PassProductId, PassValidity, ResourceId, Subjects, Timestamp, WireMessage,
};
use futures::StreamExt;

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
/// The default lead and lag: access from 15 minutes before a booking to 15 minutes after.
const LEAD_LAG_MS: i64 = 15 * MINUTE_MS;

#[derive(Debug)]
pub(crate) struct DemoOptions {
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) members: u64,
    pub(crate) partitions: u32,
    pub(crate) seconds: u64,
}

pub(crate) async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let temporary;
    let data_dir = match options.data_dir {
        Some(dir) => dir,
        None => {
            temporary =
                tempfile::Builder::new().prefix("doorsync-demo-").tempdir().context("creating a data directory")?;
            temporary.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let subjects = Subjects::new("doorsync", options.partitions).context("--partitions must be at least 1")?;
    let layout = Layout::new(subjects);
    let path = data_dir.join("doorsync.redb");
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(EmbeddedOptions::new(&path, layout.streams()))?);

    let clock = SystemClock;
    let started = clock.now();
    let events = generate(options.members, started.as_unix_millis());
    let messages = events
        .iter()
        .map(|event| encode(&layout.subjects, event, started))
        .collect::<anyhow::Result<Vec<NewMessage>>>()?;
    for answer in log.append_batch(messages.clone()).await {
        answer.context("appending to the embedded log")?;
    }
    let duplicates =
        log.append_batch(messages).await.into_iter().filter(|answer| matches!(answer, Ok(a) if a.duplicate)).count();
    println!("doorsync demo: {} members, one site, embedded log at {}", options.members, path.display());
    println!(
        "  {} Nexudus facts appended (mappings, members, bookings, passes); sent twice, {duplicates} were recognised as duplicates",
        events.len()
    );
    println!("  bookings open the doors 15 min before they start and close them 15 min after they end");
    println!("  watching for {} s; the commands for Kisi appear as the engine emits them:", options.seconds);
    println!();

    let mut followed = log.follow(ReplayRequest::whole(&layout.commands)).await?;
    let engine =
        doorsync_engine::start(EngineOptions::new("demo", layout.clone()), Arc::clone(&log), Arc::new(clock)).await?;
    let deadline = tokio::time::sleep(Duration::from_secs(options.seconds));
    tokio::pin!(deadline);
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    loop {
        tokio::select! {
            () = &mut deadline => break,
            _ = tokio::signal::ctrl_c() => break,
            next = followed.next() => {
                let Some(message) = next else { break };
                let command = doorsync_proto::decode::<Command>(&message?.payload)?.message;
                *counts.entry(command.tag()).or_default() += 1;
                let elapsed = (clock.now().as_unix_millis() - started.as_unix_millis()) / SECOND_MS;
                println!("  +{:02}:{:02}  {}", elapsed / 60, elapsed % 60, describe(&command));
            }
        }
    }
    engine.shutdown().await;
    println!();
    let summary: Vec<String> = counts.iter().map(|(tag, count)| format!("{count} {tag}")).collect();
    println!("{} commands: {}", counts.values().sum::<usize>(), summary.join(", "));
    println!(
        "The Kisi writer (next) turns these into the fewest Kisi API calls; the Nexudus ingestor feeds the facts."
    );
    Ok(())
}

/// Members whose access changes while the demo runs: some bookings end (their access closes a
/// few seconds in), others start soon (their grant is written ahead, to open on time), passes
/// run out, and members with nothing left are suspended.
fn generate(members: u64, now: i64) -> Vec<Event> {
    let mut events: Vec<Event> = (0..3)
        .map(|resource| {
            Event::MappingChanged(MappingChanged {
                source: MappingSource::Resource(ResourceId(resource)),
                group: Some(KisiGroupId(100 + resource)),
            })
        })
        .chain([Event::MappingChanged(MappingChanged {
            source: MappingSource::PassProduct(PassProductId(9)),
            group: Some(KisiGroupId(900)),
        })])
        .collect();
    for n in 1..=members {
        let member = MemberId(1_000 + n);
        events.push(Event::MemberChanged(MemberChanged {
            member,
            email: format!("member{n}@demo.invalid"),
            name: format!("Demo Member {n}"),
            active: true,
        }));
        let offset = 3 * SECOND_MS * n as i64;
        let (starts, ends) = match n % 3 {
            // Ended a quarter of an hour ago give or take: access closes `offset` from now.
            0 => (now - 60 * MINUTE_MS, now - LEAD_LAG_MS + offset),
            // Starts in a quarter of an hour: access opens `offset` from now.
            1 => (now + LEAD_LAG_MS + offset, now + LEAD_LAG_MS + offset + 60 * MINUTE_MS),
            // Under way.
            _ => (now - 10 * MINUTE_MS, now + 50 * MINUTE_MS),
        };
        events.push(Event::BookingChanged(BookingChanged {
            member,
            booking: BookingId(50_000 + n),
            resource: ResourceId(n % 3),
            starts_at: Timestamp::from_unix_millis(starts),
            ends_at: Timestamp::from_unix_millis(ends),
            tentative: false,
        }));
        if n % 4 == 0 {
            events.push(Event::PassChanged(PassChanged {
                member,
                pass: PassId(70_000 + n),
                product: PassProductId(9),
                validity: PassValidity::Window {
                    from: Some(Timestamp::from_unix_millis(now - 60 * MINUTE_MS)),
                    until: Some(Timestamp::from_unix_millis(now + offset + 5 * SECOND_MS)),
                },
                used_up: false,
            }));
        }
    }
    events
}

fn encode(subjects: &Subjects, event: &Event, occurred_at: Timestamp) -> anyhow::Result<NewMessage> {
    let envelope = Envelope::new(occurred_at, event.clone())?;
    let payload = Bytes::from(doorsync_proto::encode(&envelope)?);
    Ok(NewMessage::new(subjects.subject_for(event), envelope.id.to_string(), payload))
}

fn window(from: Option<Timestamp>, until: Option<Timestamp>) -> String {
    let at = |instant: Option<Timestamp>| instant.map_or("open".to_owned(), |instant| instant.to_string());
    format!("{} .. {}", at(from), at(until))
}

fn describe(command: &Command) -> String {
    let member = command.member();
    match command {
        Command::EnsureUser(ensure) => format!("member {member}  ensure Kisi user <{}>", ensure.email),
        Command::GrantGroup(grant) => {
            format!("member {member}  grant group {}  {}", grant.group, window(grant.valid_from, grant.valid_until))
        }
        Command::RevokeGroup(revoke) => format!("member {member}  revoke group {}", revoke.group),
        Command::SuspendUser(_) => format!("member {member}  suspend Kisi user (holds nothing any more)"),
        Command::RestoreUser(_) => format!("member {member}  restore Kisi user"),
        Command::DeleteUser(_) => format!("member {member}  delete Kisi user"),
    }
}
