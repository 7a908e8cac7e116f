//! For tests of the operator's commands (this crate's and the binary's, through the feature
//! `testing`): a log in a temporary directory, messages appended the way doorsync's parts append
//! them, a Kisi simulator, and a configuration pointing at both.
#![allow(
    clippy::unwrap_used,
    missing_debug_implementations,
    reason = "test helpers: a failure here is the test's failure"
)]

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use doorsync_clock::SystemClock;
use doorsync_config::{Config, MappingEntry};
use doorsync_kisi::{ApiKey, KisiClient, KisiOptions};
use doorsync_kisi_sim::{KisiSimulator, SimHandle, SimOptions};
use doorsync_layout::Layout;
use doorsync_log::{EventLog, NewMessage, Sequence};
use doorsync_log_embedded::{EmbeddedLog, EmbeddedOptions};
use doorsync_proto::{
    BookingChanged, BookingId, Command, EnsureUser, Envelope, Event, KisiGroupId, KisiUserId, MappingChanged,
    MappingSource, MemberChanged, MemberId, Outcome, ResourceId, Subjects, Timestamp, UserLinked, WireMessage,
};
use serde::Serialize;

use crate::Context;

pub const MINUTE: i64 = 60_000;
/// 2026-11-30T09:00:00Z
pub const T0: i64 = 1_796_029_200_000;
pub const KEY: &str = "key-of-the-integration";
const PREFIX: &str = "test";
const PARTITIONS: u32 = 4;

pub fn at(minutes: i64) -> Timestamp {
    Timestamp::from_unix_millis(T0 + minutes * MINUTE)
}

pub fn layout() -> Layout {
    Layout::new(Subjects::new(PREFIX, PARTITIONS).unwrap())
}

/// An embedded log in its own temporary directory.
pub struct TempLog {
    pub log: Arc<dyn EventLog>,
    embedded: EmbeddedLog,
    pub dir: tempfile::TempDir,
}

impl TempLog {
    pub fn new(layout: &Layout) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let embedded = EmbeddedLog::open(EmbeddedOptions::new(log_path(&dir), layout.streams())).unwrap();
        Self { log: Arc::new(embedded.clone()), embedded, dir }
    }

    /// Closes the file so that a command can open it, keeping the directory.
    pub async fn close(self) -> tempfile::TempDir {
        let Self { log, embedded, dir } = self;
        drop(log);
        embedded.close().await;
        dir
    }
}

fn log_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("log.redb")
}

/// Appends `message` on `subject` in an envelope at `occurred_at`; returns its sequence.
pub async fn append<M: WireMessage + Serialize>(
    log: &dyn EventLog,
    subject: String,
    occurred_at: Timestamp,
    message: M,
) -> Sequence {
    let envelope = Envelope::new(occurred_at, message).unwrap();
    let payload = Bytes::from(doorsync_proto::encode(&envelope).unwrap());
    log.append(NewMessage::new(subject, envelope.id.to_string(), payload)).await.unwrap().sequence
}

pub async fn append_event(log: &dyn EventLog, layout: &Layout, occurred_at: Timestamp, event: Event) -> Sequence {
    append(log, layout.subjects.subject_for(&event), occurred_at, event).await
}

/// Appends a command as the engine does.
pub async fn append_command(log: &dyn EventLog, layout: &Layout, occurred_at: Timestamp, command: Command) -> Sequence {
    append(log, layout.subjects.command(command.member()), occurred_at, command).await
}

/// Appends an outcome as the writer reports it.
pub async fn append_outcome(log: &dyn EventLog, layout: &Layout, occurred_at: Timestamp, outcome: Outcome) -> Sequence {
    append(log, layout.subjects.outcome(outcome.member()), occurred_at, outcome).await
}

pub fn member(id: u64) -> Event {
    Event::MemberChanged(MemberChanged {
        member: MemberId(id),
        email: format!("m{id}@example.test"),
        name: format!("Member {id}"),
        active: true,
    })
}

/// The engine's command for the member's user, with the email and name [`member`] gives them.
pub fn ensure(member: u64) -> Command {
    Command::EnsureUser(EnsureUser {
        member: MemberId(member),
        email: format!("m{member}@example.test"),
        name: format!("Member {member}"),
        basis: 1,
    })
}

/// The writer's report that it created `user` for the member.
pub fn linked(member: u64, user: KisiUserId) -> Outcome {
    Outcome::UserLinked(UserLinked { member: MemberId(member), kisi_user: user, created_by_doorsync: true })
}

pub fn booking(member: u64, booking: u64, resource: u64, starts_at: Timestamp, ends_at: Timestamp) -> Event {
    Event::BookingChanged(BookingChanged {
        member: MemberId(member),
        booking: BookingId(booking),
        resource: ResourceId(resource),
        starts_at,
        ends_at,
        tentative: false,
    })
}

pub fn mapping(resource: u64, group: Option<KisiGroupId>) -> Event {
    Event::MappingChanged(MappingChanged { source: MappingSource::Resource(ResourceId(resource)), group })
}

/// A Kisi simulator on the system clock with the integration's API account.
pub struct Kisi {
    pub sim: KisiSimulator,
    pub handle: SimHandle,
    pub api_user: KisiUserId,
}

impl Kisi {
    pub async fn start(requests_per_second: u32) -> Self {
        let mut options = SimOptions::new(Arc::new(SystemClock));
        options.requests_per_second = requests_per_second;
        let sim = KisiSimulator::start(options).await.unwrap();
        let handle = sim.handle();
        let api_user = handle.add_api_account("integration@example.com", "doorsync", KEY).unwrap();
        Self { sim, handle, api_user }
    }

    pub fn client(&self) -> KisiClient {
        KisiClient::new(KisiOptions::new(self.sim.base_url(), ApiKey::new(KEY), "doorsync-tests")).unwrap()
    }
}

/// A configuration for the log in `dir` and, when given, the simulator, with `resource` mapped
/// to `group`.
pub fn context(dir: &tempfile::TempDir, kisi: Option<&Kisi>, mapped: &[(u64, KisiGroupId)]) -> Context {
    let mut config = Config::default();
    config.log.path = log_path(dir);
    config.log.subject_prefix = PREFIX.to_owned();
    config.log.partitions = PARTITIONS;
    if let Some(kisi) = kisi {
        let key_file = dir.path().join("kisi-api-key");
        std::fs::write(&key_file, KEY).unwrap();
        config.kisi.base_url = kisi.sim.base_url().to_string();
        config.kisi.api_key_file = Some(key_file);
        config.kisi.requests_per_second = 5;
    }
    config.mapping = mapped
        .iter()
        .map(|&(resource, group)| MappingEntry {
            resource: Some(resource),
            pass_product: None,
            floor_plan_item: None,
            kisi_group: Some(group.0),
            kisi_group_name: None,
        })
        .collect();
    Context { config, clock: Arc::new(SystemClock), instance: "ops-test".to_owned() }
}
