//! A Kisi simulator over loopback HTTP, a real log and helpers to feed commands and read what
//! the writer published.
#![allow(dead_code, reason = "each test file uses its own part of the support module")]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use doorsync_clock::{SharedClock, SystemClock};
use doorsync_kisi::{ApiKey, KisiClient, KisiOptions};
use doorsync_kisi_sim::{KisiSimulator, SimHandle, SimOptions};
use doorsync_layout::Layout;
use doorsync_log::{EventLog, NewMessage, ReplayRequest, StoredMessage};
use doorsync_log_embedded::{EmbeddedLog, EmbeddedOptions};
use doorsync_proto::{
    Command, DeleteUser, EnsureUser, Envelope, GrantGroup, KisiGroupId, KisiUserId, MemberId, MessageId, Outcome,
    RestoreUser, RevokeGroup, Subjects, SuspendUser, Timestamp,
};
use doorsync_writer::{WriterError, WriterHandle, WriterOptions, WriterRole};
use futures::TryStreamExt;

pub(crate) const KEY: &str = "doorsync-integration-key";

pub(crate) struct Harness {
    pub(crate) sim: KisiSimulator,
    pub(crate) kisi: SimHandle,
    pub(crate) api_user: KisiUserId,
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) layout: Layout,
    pub(crate) clock: SharedClock,
    next_at: AtomicI64,
    _dir: Option<tempfile::TempDir>,
}

impl Harness {
    /// The simulator at Kisi's 5 requests/s on the system clock, and an embedded log.
    pub(crate) async fn new() -> Self {
        Self::with(Arc::new(SystemClock), 5).await
    }

    pub(crate) async fn with(clock: SharedClock, requests_per_second: u32) -> Self {
        let layout = layout();
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(EmbeddedOptions::new(dir.path().join("log.redb"), layout.streams())).unwrap();
        Self::on_log(clock, requests_per_second, Arc::new(log), Some(dir)).await
    }

    pub(crate) async fn on_log(
        clock: SharedClock,
        requests_per_second: u32,
        log: Arc<dyn EventLog>,
        dir: Option<tempfile::TempDir>,
    ) -> Self {
        let mut options = SimOptions::new(Arc::clone(&clock));
        options.requests_per_second = requests_per_second;
        let sim = KisiSimulator::start(options).await.unwrap();
        let kisi = sim.handle();
        let api_user = kisi.add_api_account("integration@example.com", "doorsync", KEY).unwrap();
        Self { sim, kisi, api_user, log, layout: layout(), clock, next_at: AtomicI64::new(1_000), _dir: dir }
    }

    pub(crate) fn client(&self) -> KisiClient {
        let mut options = KisiOptions::new(self.sim.base_url(), ApiKey::new(KEY), "doorsync-tests");
        options.request_timeout = Duration::from_secs(5);
        KisiClient::new(options).unwrap()
    }

    /// Quick retries and probes, a short lease, no scheduled reconciliation.
    pub(crate) fn options(&self, writer_id: &str) -> WriterOptions {
        let mut options = WriterOptions::new(writer_id, "main");
        options.backoff_first = Duration::from_millis(50);
        options.backoff_max = Duration::from_millis(500);
        options.credentials_probe_every = Duration::from_millis(300);
        options.settings.lease_ttl = Duration::from_secs(3);
        options.reconcile_on_schedule = false;
        options.settings.ack_wait = Duration::from_secs(5);
        options.seed = 42;
        options
    }

    pub(crate) async fn start(&self, options: WriterOptions) -> WriterHandle {
        doorsync_writer::start(
            options,
            self.client(),
            Arc::clone(&self.log),
            self.layout.clone(),
            Arc::clone(&self.clock),
        )
        .await
        .unwrap()
    }

    /// Appends a command as the engine would; every call gets its own time, so its own id.
    pub(crate) async fn send(&self, command: Command) -> MessageId {
        let at = Timestamp::from_unix_millis(self.next_at.fetch_add(1, Ordering::SeqCst));
        let envelope = Envelope::new(at, command).unwrap();
        let subject = self.layout.subjects.command(envelope.message.member());
        let payload = Bytes::from(doorsync_proto::encode(&envelope).unwrap());
        self.log.append(NewMessage::new(subject, envelope.id.to_string(), payload)).await.unwrap();
        envelope.id
    }

    /// Appends a command marked as bulk work (a first sync's, say), as the engine would.
    pub(crate) async fn send_bulk(&self, command: Command) -> MessageId {
        let at = Timestamp::from_unix_millis(self.next_at.fetch_add(1, Ordering::SeqCst));
        let envelope = Envelope::new(at, command).unwrap();
        let subject = self.layout.subjects.command(envelope.message.member());
        let payload = Bytes::from(doorsync_proto::encode(&envelope).unwrap());
        let mut message = NewMessage::new(subject, envelope.id.to_string(), payload);
        message.headers.push(doorsync_layout::bulk_header());
        self.log.append(message).await.unwrap();
        envelope.id
    }

    pub(crate) async fn outcomes(&self) -> Vec<Outcome> {
        self.stored(&self.layout.outcomes)
            .await
            .iter()
            .map(|message| doorsync_proto::decode::<Outcome>(&message.payload).unwrap().message)
            .collect()
    }

    pub(crate) async fn dead_letters(&self) -> Vec<StoredMessage> {
        self.stored(&self.layout.dead_letters).await
    }

    async fn stored(&self, stream: &str) -> Vec<StoredMessage> {
        self.log.replay(ReplayRequest::whole(stream)).await.unwrap().try_collect().await.unwrap()
    }
}

pub(crate) fn layout() -> Layout {
    Layout::new(Subjects::new("test", 4).unwrap())
}

/// Polls until `condition` holds; fails the test after `limit`.
pub(crate) async fn eventually(what: &str, limit: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// Waits until the writer has settled (applied or superseded) `commands` commands and holds none.
pub(crate) async fn settled(writer: &WriterHandle, commands: u64) {
    let settled = async || {
        let status = writer.status();
        status.backlog_commands == 0 && status.commands_applied + status.commands_superseded == commands
    };
    if tokio::time::timeout(WAIT * 4, async {
        while !settled().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_err()
    {
        panic!("timed out waiting until the writer has settled {commands} commands: {:#?}", writer.status());
    }
}

/// The group member `member` holds in [`outage_backlog`] over `groups`.
pub(crate) fn home_group(member: u64, groups: &[KisiGroupId; 3]) -> KisiGroupId {
    groups[(member % 3) as usize]
}

/// Commands waiting for `members` members, as after an outage: every member joins its home
/// group; half change their window with a revoke in between; a quarter join a second group and
/// leave it again. The fewest Kisi calls that settle it, sent as bulk work: who am I, the users'
/// page, then per member a create and one assignment (2 + 2 per member).
pub(crate) fn outage_backlog(members: u64, groups: &[KisiGroupId; 3]) -> Vec<Command> {
    let other_group = |member: u64| groups[((member + 1) % 3) as usize];
    let mut backlog = Vec::new();
    for member in 1..=members {
        backlog.push(ensure(member, &email(member)));
        backlog.push(grant(member, home_group(member, groups), None, seconds(2_000_000_000)));
    }
    for member in 1..=members {
        if member % 2 == 0 {
            backlog.push(revoke(member, home_group(member, groups)));
            backlog.push(grant(member, home_group(member, groups), None, seconds(2_000_086_400)));
        }
        if member % 4 == 1 {
            backlog.push(grant(member, other_group(member), None, None));
            backlog.push(revoke(member, other_group(member)));
        }
    }
    backlog
}

pub(crate) fn ensure(member: u64, email: &str) -> Command {
    Command::EnsureUser(EnsureUser {
        member: MemberId(member),
        email: email.into(),
        name: format!("Member {member}"),
        basis: 1,
    })
}

pub(crate) fn grant(member: u64, group: KisiGroupId, from: Option<Timestamp>, until: Option<Timestamp>) -> Command {
    Command::GrantGroup(GrantGroup { member: MemberId(member), group, valid_from: from, valid_until: until, basis: 1 })
}

pub(crate) fn revoke(member: u64, group: KisiGroupId) -> Command {
    Command::RevokeGroup(RevokeGroup { member: MemberId(member), group, basis: 1 })
}

pub(crate) fn suspend(member: u64) -> Command {
    Command::SuspendUser(SuspendUser { member: MemberId(member), basis: 1 })
}

pub(crate) fn restore(member: u64) -> Command {
    Command::RestoreUser(RestoreUser { member: MemberId(member), basis: 1 })
}

pub(crate) fn delete(member: u64) -> Command {
    Command::DeleteUser(DeleteUser { member: MemberId(member), basis: 1 })
}

/// Whole seconds from now-ish, as Kisi holds them.
pub(crate) fn seconds(at: i64) -> Option<Timestamp> {
    Some(Timestamp::from_unix_millis(at * 1_000))
}

pub(crate) fn email(member: u64) -> String {
    format!("member{member}@example.com")
}

/// Two writers of one account on `harness`'s log: only the one holding the lease calls Kisi, and
/// the standby finishes the work when it stops.
pub(crate) async fn standby_takes_over(harness: &Harness) {
    let group = harness.kisi.add_group("Main entrance");
    let fast = |id: &str| {
        let mut options = harness.options(id);
        options.requests_per_second = 20;
        options
    };
    let active = harness.start(fast("writer-a")).await;
    eventually("a is active", WAIT, async || active.status().role == WriterRole::Active).await;
    let standby = harness.start(fast("writer-b")).await;
    eventually("b is on standby", WAIT, async || standby.status().role == WriterRole::Standby).await;
    for member in 1..=30 {
        harness.send(ensure(member, &email(member))).await;
        harness.send(grant(member, group, None, None)).await;
    }
    eventually("a has started", WAIT, async || harness.kisi.assignments().len() >= 5).await;
    assert_eq!(standby.status().calls.total(), 0, "the standby never calls Kisi");
    assert!(matches!(standby.reconcile_now().await, Err(WriterError::NotActive)));
    active.shutdown().await;
    let calls_by_a = active.status().calls.total();
    assert!(harness.kisi.assignments().len() < 30, "a stopped before it finished");

    eventually("b takes over", WAIT, async || standby.status().role == WriterRole::Active).await;
    eventually("b finishes", WAIT, async || harness.kisi.assignments().len() == 30).await;
    eventually("b has settled everything", WAIT, async || standby.status().backlog_commands == 0).await;
    assert_eq!(active.status().calls.total(), calls_by_a, "a made no call after it stopped");
    assert!(standby.status().calls.total() > 0);
    let users = harness.kisi.users();
    assert_eq!(users.len(), 31, "30 members and the API user, none twice");
    standby.shutdown().await;
}
