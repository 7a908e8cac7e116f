//! The demo, at this stage of doorsync: the event log that every other part builds on.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use doorsync_log::{EventLog, NewMessage, ReplayRequest};
use doorsync_log_embedded::{EmbeddedLog, EmbeddedOptions};
use doorsync_proto::{
    BookingChanged, BookingId, Envelope, Event, KisiGroupId, MappingChanged, MappingSource, MemberChanged, MemberId,
    PassChanged, PassId, PassProductId, PassValidity, ResourceId, Subjects, Timestamp, WireMessage,
};
use futures::StreamExt;

use doorsync_layout::Layout;

const MINUTE_MS: i64 = 60_000;

pub(crate) async fn run(data_dir: Option<PathBuf>, members: u64, partitions: u32) -> anyhow::Result<()> {
    let temporary;
    let data_dir = match data_dir {
        Some(dir) => dir,
        None => {
            temporary =
                tempfile::Builder::new().prefix("doorsync-demo-").tempdir().context("creating a data directory")?;
            temporary.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let layout = Layout::new(Subjects::new("doorsync", partitions).context("--partitions must be at least 1")?);
    let subjects = &layout.subjects;
    let path = data_dir.join("doorsync.redb");
    let log = EmbeddedLog::open(EmbeddedOptions::new(&path, layout.streams()))?;
    println!("doorsync demo: the event log ({})", path.display());
    println!();

    let now = SystemTime::now().duration_since(UNIX_EPOCH).context("the system clock is before 1970")?;
    let now_ms = i64::try_from(now.as_millis()).context("the system clock is out of range")?;
    let events = generate(members, now_ms);
    let messages =
        events.iter().map(|event| encode(&subjects, event, now_ms)).collect::<anyhow::Result<Vec<NewMessage>>>()?;

    println!("  seq  partition  subject                      event");
    let answers = log.append_batch(messages.clone()).await;
    for (event, answer) in events.iter().zip(answers) {
        let appended = answer.context("appending to the embedded log")?;
        let subject = subjects.subject_for(event);
        let partition = event.member().map_or("all".to_owned(), |member| subjects.partition_of(member).to_string());
        println!("{:>5}  {:>9}  {:<28} {}", appended.sequence, partition, subject, describe(event));
    }

    let again = log.append_batch(messages).await;
    let duplicates = again.iter().filter(|answer| answer.as_ref().is_ok_and(|appended| appended.duplicate)).count();
    println!();
    println!(
        "Appending the same {} events again: {duplicates} recognised as duplicates by their ids, none stored twice.",
        again.len()
    );

    println!();
    println!("Replaying each partition, as an engine that owns it would:");
    let stream = &layout.events;
    for partition in 0..partitions {
        let request = ReplayRequest::whole(stream).filtered([subjects.event_partition_filter(partition)]);
        let mut replay = log.replay(request).await?;
        let mut members_seen = Vec::new();
        let mut count = 0;
        while let Some(message) = replay.next().await {
            let envelope = doorsync_proto::decode::<Event>(&message?.payload)?;
            if let Some(member) = envelope.message.member().filter(|member| !members_seen.contains(member)) {
                members_seen.push(member);
            }
            count += 1;
        }
        let members_text: Vec<String> = members_seen.iter().map(ToString::to_string).collect();
        println!("  partition {partition}: {count:>3} events for members {}", members_text.join(", "));
    }
    println!();
    println!("The access engine, the Kisi writer and the Nexudus ingestor will read and write this same log.");
    log.close().await;
    Ok(())
}

fn generate(members: u64, now_ms: i64) -> Vec<Event> {
    let mut events: Vec<Event> = (0..3)
        .map(|resource| {
            Event::MappingChanged(MappingChanged {
                source: MappingSource::Resource(ResourceId(resource)),
                group: Some(KisiGroupId(100 + resource)),
            })
        })
        .collect();
    for n in 1..=members {
        let member = MemberId(1_000 + n);
        events.push(Event::MemberChanged(MemberChanged {
            member,
            email: format!("member{n}@demo.invalid"),
            name: format!("Demo Member {n}"),
            active: true,
        }));
        let starts = now_ms + (15 + 5 * n as i64) * MINUTE_MS;
        events.push(Event::BookingChanged(BookingChanged {
            member,
            booking: BookingId(50_000 + n),
            resource: ResourceId(n % 3),
            starts_at: Timestamp::from_unix_millis(starts),
            ends_at: Timestamp::from_unix_millis(starts + 60 * MINUTE_MS),
            tentative: false,
        }));
        if n % 3 == 0 {
            events.push(Event::PassChanged(PassChanged {
                member,
                pass: PassId(70_000 + n),
                product: PassProductId(9),
                validity: PassValidity::Window {
                    from: Some(Timestamp::from_unix_millis(now_ms)),
                    until: Some(Timestamp::from_unix_millis(now_ms + 8 * 60 * MINUTE_MS)),
                },
                used_up: false,
            }));
        }
    }
    events
}

fn encode(subjects: &Subjects, event: &Event, occurred_at_ms: i64) -> anyhow::Result<NewMessage> {
    let envelope = Envelope::new(Timestamp::from_unix_millis(occurred_at_ms), event.clone())?;
    let payload = Bytes::from(doorsync_proto::encode(&envelope)?);
    Ok(NewMessage::new(subjects.subject_for(event), envelope.id.to_string(), payload))
}

fn describe(event: &Event) -> String {
    let in_minutes = |at: Timestamp, from: Timestamp| {
        Duration::from_millis(u64::try_from(at.as_unix_millis() - from.as_unix_millis()).unwrap_or(0)).as_secs() / 60
    };
    match event {
        Event::BookingChanged(booking) => format!(
            "{} resource {} {}..{} ({} min)",
            event.tag(),
            booking.resource,
            booking.starts_at,
            booking.ends_at,
            in_minutes(booking.ends_at, booking.starts_at)
        ),
        Event::MappingChanged(mapping) => {
            let source = match mapping.source {
                MappingSource::Resource(id) => format!("resource {id}"),
                MappingSource::PassProduct(id) => format!("pass product {id}"),
                MappingSource::FloorPlanItem(id) => format!("desk/office {id}"),
            };
            let group = mapping.group.map_or("no group".to_owned(), |group| format!("Kisi group {group}"));
            format!("{} {source} -> {group}", event.tag())
        }
        _ => event.tag().to_owned(),
    }
}
