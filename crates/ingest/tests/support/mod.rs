//! A Nexudus simulator, a real log and an ingestor serving webhooks over loopback HTTP.
#![allow(dead_code, reason = "each test file uses its own part of this module")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use doorsync_clock::ManualClock;
use doorsync_ingest::{IngestHandle, IngestOptions, IngestRole, Secret, webhook_path};
use doorsync_layout::Layout;
use doorsync_log::{EventLog, ReplayRequest};
use doorsync_log_embedded::{EmbeddedLog, EmbeddedOptions};
use doorsync_nexudus::webhook::{SIGNATURE_HEADER, sign};
use doorsync_nexudus::{AuthMode, Credentials, Limits, NexudusClient, NexudusOptions, WebhookAction};
use doorsync_nexudus_sim::{MissingRecord, NexudusSimulator, SimEntity, SimOptions, WebhookFaults};
use doorsync_proto::{BookingCancelled, BookingChanged, BookingId, Event, MemberId, ResourceId, Subjects, Timestamp};
use futures::StreamExt;
use serde_json::{Value, json};
use url::Url;

/// 2025-07-01T08:00:00Z
pub(crate) const START: Timestamp = Timestamp::from_unix_millis(1_751_356_800_000);
pub(crate) const SECRET: &str = "hook-secret";
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(600);

/// Every action the ingestor acts on.
pub(crate) const ACTIONS: [WebhookAction; 9] = [
    WebhookAction::CoworkerCreate,
    WebhookAction::CoworkerUpdate,
    WebhookAction::CoworkerDelete,
    WebhookAction::BookingCreate,
    WebhookAction::BookingUpdate,
    WebhookAction::BookingDelete,
    WebhookAction::CoworkerContractCreate,
    WebhookAction::CoworkerContractUpdate,
    WebhookAction::CoworkerContractDelete,
];

pub(crate) struct Setup {
    pub(crate) faults: WebhookFaults,
    pub(crate) options: IngestOptions,
    /// Webhooks registered in the simulator (`AccessControlUpdate` is added to [`ACTIONS`]).
    pub(crate) hooks: Vec<WebhookAction>,
    /// The log to use instead of a fresh embedded one.
    pub(crate) log: Option<Arc<dyn EventLog>>,
    /// How the simulator answers a read by id of a missing record (500, as Nexudus does).
    pub(crate) missing_record: MissingRecord,
    /// The simulator's page-size cap (none: what is asked, at most 1,000).
    pub(crate) max_page_size: Option<u32>,
    /// Sets the simulator's other switches.
    pub(crate) sim: Box<dyn FnOnce(&mut SimOptions)>,
}

pub(crate) struct World {
    pub(crate) clock: ManualClock,
    pub(crate) sim: NexudusSimulator,
    pub(crate) client: NexudusClient,
    pub(crate) layout: Layout,
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) ingest: IngestHandle,
    pub(crate) options: IngestOptions,
    pub(crate) hooks: SocketAddr,
    _dir: tempfile::TempDir,
}

impl World {
    pub(crate) async fn start(configure: impl FnOnce(&mut Setup)) -> Self {
        let mut options = IngestOptions::new(Secret::new(SECRET));
        options.poll_every = POLL_INTERVAL;
        options.sweep_every = Duration::from_secs(24 * 3_600);
        let mut hooks = ACTIONS.to_vec();
        hooks.push(WebhookAction::AccessControlUpdate);
        let mut setup = Setup {
            faults: WebhookFaults::default(),
            options,
            hooks,
            log: None,
            missing_record: MissingRecord::default(),
            max_page_size: None,
            sim: Box::new(|_| {}),
        };
        configure(&mut setup);

        let clock = ManualClock::new(START);
        let mut sim_options = SimOptions::new(Arc::new(clock.clone()));
        sim_options.limits = None;
        sim_options.faults = setup.faults;
        sim_options.missing_record = setup.missing_record;
        sim_options.max_page_size = setup.max_page_size;
        (setup.sim)(&mut sim_options);
        sim_options.webhook_retry_delay = Duration::from_secs(1);
        let sim = NexudusSimulator::start(sim_options).await.unwrap();
        let client = client_of(&sim, &clock);
        let layout = Layout::new(Subjects::new("test", 4).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let log = match setup.log {
            Some(log) => log,
            None => {
                let options = EmbeddedOptions::new(dir.path().join("log.redb"), layout.streams());
                Arc::new(EmbeddedLog::open(options).unwrap())
            }
        };
        let ingest = start_ingest(&setup.options, &client, &log, &layout, &clock).await;
        let hooks = ingest.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        for action in setup.hooks {
            let url = Url::parse(&format!("http://{hooks}{}", webhook_path(action))).unwrap();
            sim.register_webhook(action, &url, Secret::new(SECRET)).unwrap();
        }
        Self { clock, sim, client, layout, log, ingest, options: setup.options, hooks, _dir: dir }
    }

    /// A world where Nexudus sends no webhooks: only polls, sweeps and the test's own requests.
    pub(crate) async fn without_webhooks() -> Self {
        Self::start(|setup| setup.hooks.clear()).await
    }

    /// Stops the ingestor and starts a new one over the same log and bucket (webhooks are no
    /// longer served).
    pub(crate) async fn restart_ingest(&mut self) {
        self.ingest.shutdown().await;
        self.ingest = start_ingest(&self.options, &self.client, &self.log, &self.layout, &self.clock).await;
    }

    /// Moves the clock on a second, so that the next change gets a later `UpdatedOn`.
    pub(crate) fn tick(&self) {
        self.clock.advance(Duration::from_secs(1));
    }

    /// A second later, makes `change` and waits until the log holds `events` events; returns
    /// what `change` returned.
    pub(crate) async fn step<T>(&self, events: usize, change: impl FnOnce(&NexudusSimulator) -> T) -> T {
        self.tick();
        let made = change(&self.sim);
        self.wait_for_events(events).await;
        made
    }

    /// Awaits `work` while moving the clock on 100 ms every 10 ms of real time, for work that
    /// waits on the clock (such as a client honouring `Retry-After`).
    pub(crate) async fn moving_clock<T>(&self, work: impl Future<Output = T>) -> T {
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                () = tokio::time::sleep(Duration::from_millis(10)) => self.clock.advance(Duration::from_millis(100)),
            }
        }
    }

    pub(crate) async fn stop(self) {
        self.ingest.shutdown().await;
        self.sim.shutdown().await;
    }

    pub(crate) fn now(&self) -> Timestamp {
        use doorsync_clock::Clock;
        self.clock.now()
    }

    /// Every event in the log, in order, with the time it occurred.
    pub(crate) async fn events(&self) -> Vec<(Timestamp, Event)> {
        let mut replay = self.log.replay(ReplayRequest::whole(&self.layout.events)).await.unwrap();
        let mut events = Vec::new();
        while let Some(message) = replay.next().await {
            let envelope = doorsync_proto::decode::<Event>(&message.unwrap().payload).unwrap();
            events.push((envelope.occurred_at, envelope.message));
        }
        events
    }

    /// Waits (real time) until the log holds at least `count` events, and returns them all.
    pub(crate) async fn wait_for_events(&self, count: usize) -> Vec<(Timestamp, Event)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let events = self.events().await;
            if events.len() >= count {
                return events;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {count} events: {events:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the simulator has sent every webhook it is going to (its delivery counts
    /// stop moving and every attempt is answered).
    pub(crate) async fn quiet(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut last = self.sim.stats();
        let mut still = 0;
        while still < 10 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.sim.stats();
            still = if now == last { still + 1 } else { 0 };
            last = now;
            assert!(tokio::time::Instant::now() < deadline, "webhook deliveries never settled");
        }
    }

    /// POSTs `body` to the receiver at `path` with `signature` (none: no header); returns the
    /// status it answered.
    pub(crate) async fn post(&self, path: &str, body: &[u8], signature: Option<&str>) -> u16 {
        let request = reqwest::Client::new().post(format!("http://{}{path}", self.hooks)).body(body.to_vec());
        let request = match signature {
            Some(signature) => request.header(SIGNATURE_HEADER, signature),
            None => request,
        };
        request.send().await.unwrap().status().as_u16()
    }

    /// A location in London and a meeting room in it: (business, resource).
    pub(crate) fn london_room(&self) -> (u64, u64) {
        let business = self.sim.create_location("Soho", "GMT Standard Time").unwrap();
        let resource = self.sim.create(SimEntity::Resource, json!({"BusinessId": business, "Name": "Room 1"})).unwrap();
        (business, resource)
    }

    /// The record's `UpdatedOn`, as the simulator wrote it.
    pub(crate) fn updated_on(&self, kind: SimEntity, id: u64) -> Timestamp {
        let record = self.sim.record(kind, id).unwrap();
        instant(record["UpdatedOn"].as_str().unwrap())
    }

    pub(crate) fn record(&self, kind: SimEntity, id: u64) -> Value {
        self.sim.record(kind, id).unwrap()
    }
}

/// Waits (real time) until `condition` holds.
pub(crate) async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates an active customer named `name` (email `<name>@example.com`).
/// The signature Nexudus sends for `body` with the ingestor's secret.
pub(crate) fn signed(body: &[u8]) -> String {
    sign(&Secret::new(SECRET), body)
}

pub(crate) fn coworker(sim: &NexudusSimulator, name: &str) -> u64 {
    let fields = json!({"FullName": name, "Email": format!("{}@example.com", name.to_lowercase()), "Active": true});
    sim.create(SimEntity::Coworker, fields).unwrap()
}

/// The event a booking of `resource` from `from` to `to` (UTC text) becomes.
pub(crate) fn booking(member: u64, booking: u64, resource: u64, from: &str, to: &str) -> Event {
    Event::BookingChanged(BookingChanged {
        member: MemberId(member),
        booking: BookingId(booking),
        resource: ResourceId(resource),
        starts_at: instant(from),
        ends_at: instant(to),
        tentative: false,
    })
}

pub(crate) fn cancelled(member: u64, booking: u64) -> Event {
    Event::BookingCancelled(BookingCancelled { member: MemberId(member), booking: BookingId(booking) })
}

pub(crate) fn instant(text: &str) -> Timestamp {
    doorsync_nexudus::NexudusDateTime::parse(text).unwrap().to_utc().unwrap()
}

pub(crate) fn client_of(sim: &NexudusSimulator, clock: &ManualClock) -> NexudusClient {
    let credentials = Credentials { username: "admin@example.com".into(), password: Secret::new("password") };
    let mut options = NexudusOptions::new(sim.base_url(), credentials);
    options.auth = AuthMode::Basic;
    options.limits = Limits { min_interval: Duration::ZERO, per_minute: 1_000_000, per_hour: 1_000_000 };
    NexudusClient::new(options, Arc::new(clock.clone())).unwrap()
}

/// Starts an ingestor and, when it is the active one, waits until the poll it runs at start has
/// ended, so that the test's own changes to Nexudus are not read half-way through it.
async fn start_ingest(
    options: &IngestOptions,
    client: &NexudusClient,
    log: &Arc<dyn EventLog>,
    layout: &Layout,
    clock: &ManualClock,
) -> IngestHandle {
    let ingest = doorsync_ingest::start(
        options.clone(),
        client.clone(),
        Arc::clone(log),
        layout.clone(),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    if ingest.status().role == IngestRole::Active {
        wait_until("the poll at start ended", || ingest.status().last_poll.is_some()).await;
    }
    ingest
}
