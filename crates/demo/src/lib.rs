//! `doorsync demo`: everything in one process. Simulated Nexudus and Kisi on loopback ports, with
//! generated locations in three time zones, members, bookings, passes and contracts (some of
//! which open or close doors within minutes); all of doorsync's roles on an embedded log,
//! configured like any deployment and fed by signed webhooks; and while it runs, a change in
//! Nexudus every few seconds. It prints what Kisi holds as it changes, and where the status page is.
//!
//! [`run`] starts the roles through [`doorsync_node::start`] with `RoleSet::ALL`, exactly as
//! `doorsync run` does, on a configuration the demo writes (so `doorsync explain` can read it);
//! the status page comes in as [`DemoOptions::status_page`], so this crate does not depend on it.
//! The generated world is the same on every run (a fixed seed); its times follow the clock.
#![forbid(unsafe_code)]

mod error;
mod narrate;
mod settings;
mod text;
mod workload;
mod world;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use doorsync_access::{AccessPolicy, Mapping};
use doorsync_clock::{SharedClock, SystemClock};
use doorsync_config::Config;
use doorsync_log::ReplayRequest;
use doorsync_nexudus::Secret;
use doorsync_node::{Context, Process, RoleSet, Running, setup};
use doorsync_proto::{Outcome, Timestamp};
use doorsync_writer::{ReconcileReport, WriterError};
use futures::StreamExt;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::task::JoinHandle;

pub use error::DemoError;
use narrate::{Narrator, Progress};
use text::{SECOND_MS, seconds};
use workload::{Generated, Workload};
use world::{KISI_REQUESTS_PER_SECOND, World};

/// The same names, places and shape of workload on every run; the times follow the clock.
const SEED: u64 = 2_024;

#[derive(Debug)]
pub struct DemoOptions {
    pub data_dir: Option<PathBuf>,
    pub members: u32,
    /// `None`: until Ctrl-C or SIGTERM.
    pub seconds: Option<u64>,
    /// The status page's routes, served on the admin listener with the roles' own.
    pub status_page: fn(&Running) -> Router,
}

pub async fn run(options: DemoOptions) -> Result<(), DemoError> {
    let mut signals = StopSignals::listen()?;
    let temporary;
    let data_dir = match &options.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(DemoError::io(format!("creating {}", dir.display())))?;
            let log = settings::log_path(dir);
            if log.exists() {
                return Err(DemoError::EarlierLog(log));
            }
            dir.clone()
        }
        None => {
            temporary = tempfile::Builder::new()
                .prefix("doorsync-demo-")
                .tempdir()
                .map_err(DemoError::io("creating a data directory"))?;
            temporary.path().to_path_buf()
        }
    };
    let clock: SharedClock = Arc::new(SystemClock);
    let mut rng = StdRng::seed_from_u64(SEED);
    let world = World::start(Arc::clone(&clock), options.members, &mut rng).await?;
    let shown = show(&world, &clock, &options, &data_dir, rng, &mut signals).await;
    world.shutdown().await;
    shown
}

/// Generates the workload, starts doorsync on it, and tells what happens until it is stopped.
async fn show(
    world: &World,
    clock: &SharedClock,
    options: &DemoOptions,
    data_dir: &std::path::Path,
    rng: StdRng,
    signals: &mut StopSignals,
) -> Result<(), DemoError> {
    let (mut workload, generated) = Workload::generate(world, rng, clock.now())?;
    let config = settings::config(world, data_dir)?;
    let (process, mapping) = start_doorsync(config.clone(), options.status_page).await?;
    let webhooks = register_webhooks(world, &process)?;
    let admin = process.admin.local_addr();
    let explain_config = settings::write_explain_config(&config, admin, data_dir)?;
    introduce(world, &generated, &config, &webhooks);
    let example = generated.example.or_else(|| world.directory.members.keys().next().copied());
    println!();
    println!("  status page:  http://{admin}/");
    if let Some(member) = example {
        println!("  explain why {} can open which doors:", world.directory.member(member));
        println!("                curl http://{admin}/api/explain/{member}");
        println!("                doorsync --config {} explain {member}", explain_config.display());
    }
    match options.seconds {
        Some(seconds) => println!("  stops after {seconds} s (or at Ctrl-C)"),
        None => println!("  Ctrl-C stops it"),
    }
    println!();

    let doorsync = (&process, mapping, config.access_policy());
    let watched = watch(world, clock, options, doorsync, &mut workload, signals).await;
    process.shutdown().await;
    if options.data_dir.is_some() {
        println!("  the log stays in {}", config.log.path.display());
    }
    watched
}

/// Starts every role as `doorsync run` does; returns the process and the mapping it runs with.
async fn start_doorsync(config: Config, status_page: fn(&Running) -> Router) -> Result<(Process, Mapping), DemoError> {
    let context = Context::with(config);
    let layout = setup::layout(&context.config)?;
    let opened = setup::open_log(&context.config, &layout, None, "demo").await?;
    let mapping = setup::mapping(&context.config).await?;
    let process = doorsync_node::start(&context, RoleSet::ALL, opened, layout, mapping.clone(), status_page).await?;
    Ok((process, mapping))
}

/// Registers doorsync's webhook receiver in Nexudus for every action it acts on; returns the
/// receiver's base URL.
fn register_webhooks(world: &World, process: &Process) -> Result<String, DemoError> {
    let address = process.running.webhook_address.ok_or(DemoError::Missing("the ingest role serves no webhooks"))?;
    let secret = Secret::new(&world.secrets.webhook_secret);
    for &action in doorsync_ingest::WEBHOOK_ACTIONS {
        let url = url::Url::parse(&format!("http://{address}{}", doorsync_ingest::webhook_path(action)))
            .map_err(DemoError::WebhookUrl)?;
        world.nexudus.register_webhook(action, &url, secret.clone()).map_err(|source| DemoError::Nexudus {
            what: "registering a webhook in Nexudus",
            source: Box::new(source),
        })?;
    }
    Ok(format!("http://{address}/webhooks/nexudus/<action>"))
}

fn introduce(world: &World, generated: &Generated, config: &Config, webhooks: &str) {
    let directory = &world.directory;
    let offices = directory.spaces.iter().filter(|space| space.name.contains("office")).count();
    let zones: Vec<String> = directory
        .locations
        .iter()
        .map(|location| format!("{} ({} = {})", location.city, location.windows_zone, location.iana_zone))
        .collect();
    println!("doorsync demo: Nexudus and Kisi simulated in this process, generated members; no account, no NATS");
    println!();
    println!("Nexudus (simulated) at {}", world.nexudus.base_url());
    println!("  {} locations: {}", zones.len(), zones.join(", "));
    println!(
        "  {} meeting rooms, {} pass products (a day pass and a time pass per location), {} desks, {offices} private offices",
        directory.rooms.len(),
        directory.products.len(),
        directory.spaces.len() - offices
    );
    println!(
        "  {} members; {} bookings ({} open their doors within 4 min, {} close them within 3 min), {} day passes, \
         {} time passes ({} run out within 5 min), {} contracts ({} start and {} end within 4 min)",
        directory.members.len(),
        generated.bookings,
        generated.opening_soon,
        generated.closing_soon,
        generated.day_passes,
        generated.time_passes,
        generated.passes_running_out,
        generated.contracts,
        generated.contracts_starting,
        generated.contracts_ending
    );
    println!("Kisi (simulated) at {}", world.kisi.base_url());
    println!(
        "  {} groups of doors and the integration's API key; it allows {KISI_REQUESTS_PER_SECOND} requests/s \
         (the real Kisi: 5 per API user), so the first sync takes seconds",
        directory.groups.len()
    );
    println!("doorsync: every role in this process, configured like `doorsync run`");
    println!("  embedded log {}", config.log.path.display());
    println!(
        "  Nexudus webhooks (signed) to {webhooks}; a poll every {} s backs them up",
        config.nexudus.poll_every.as_secs()
    );
    println!(
        "  rooms open {} min before a booking and close {} min after it; day passes last the day on their location's \
         clock; members left with nothing are suspended; the reconciler checks Kisi every {} min",
        config.access.lead.as_secs() / 60,
        config.access.lag.as_secs() / 60,
        config.reconcile.every.as_secs() / 60
    );
}

/// Reads Nexudus once, then tells what happens (making changes once the first sync is done)
/// until the time is up or a signal stops it.
async fn watch(
    world: &World,
    clock: &SharedClock,
    options: &DemoOptions,
    (process, mapping, policy): (&Process, Mapping, AccessPolicy),
    workload: &mut Workload,
    signals: &mut StopSignals,
) -> Result<(), DemoError> {
    let running = &process.running;
    let started = clock.now();
    let deadline = options.seconds.map(|seconds| started + Duration::from_secs(seconds));
    let stop = signals.stop_requested(clock, deadline);
    tokio::pin!(stop);
    let mut outcomes = running.log.follow(ReplayRequest::whole(&running.layout.outcomes)).await?;
    let mut narrator = Narrator::new(started, running.engine.clone(), mapping, policy);

    println!("first sync: doorsync reads Nexudus, then writes to Kisi");
    let ingest = running.ingest.as_ref().ok_or(DemoError::Missing("the ingest role is not running"))?;
    let first_read = ingest.poll_now();
    tokio::pin!(first_read);
    let mut nexudus_read = false;

    let kisi = world.kisi.handle();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut next_change: Option<Timestamp> = None;
    let mut reconciling: Option<(Timestamp, JoinHandle<Result<ReconcileReport, WriterError>>)> = None;
    let reason = loop {
        let change_due = wait_until(clock, next_change);
        let reconciled = async {
            match reconciling.as_mut() {
                Some((_, task)) => task.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            reason = &mut stop => break reason,
            read = &mut first_read, if !nexudus_read => {
                nexudus_read = true;
                let read = read.map_err(|error| DemoError::ReadNexudus(Box::new(error)))?;
                let now = clock.now();
                // The ingestor's own poll at start may have appended them first: the log's count
                // holds either way.
                let events = running.log.last_sequence(&running.layout.events).await?;
                let text = format!(
                    "read {} records in {}; the log holds {} events from them",
                    read.readings,
                    seconds(now.as_unix_millis() - started.as_unix_millis()),
                    events.0
                );
                narrator.say(now, "nexudus", &text);
            }
            next = outcomes.next() => {
                let Some(message) = next else { return Err(DemoError::OutcomesEnded) };
                let outcome = doorsync_proto::decode::<Outcome>(&message?.payload)
                    .map_err(|error| DemoError::Outcome(Box::new(error)))?
                    .message;
                narrator.outcome(&world.directory, outcome, clock.now()).await;
            }
            _ = tick.tick() => {
                let now = clock.now();
                narrator.tick(&world.directory, &kisi, now).await;
                if !narrator.live() {
                    let engine_caught_up = match &running.engine {
                        Some(engine) => engine.caught_up().await,
                        None => true,
                    };
                    let writer_backlog = running.writer.as_ref().map_or(0, |writer| writer.status().backlog_keys);
                    let progress = Progress { nexudus_read, writer_backlog, engine_caught_up };
                    if narrator.first_sync(progress, now) {
                        println!();
                        println!("live: a change every few seconds, reaching Kisi by webhook; doors opening and closing on time");
                        next_change = Some(now + Duration::from_secs(2));
                    }
                }
            }
            report = reconciled => {
                let now = clock.now();
                let began = reconciling.take().map_or(now, |(began, _)| began);
                let took = seconds(now.as_unix_millis() - began.as_unix_millis());
                let text = reconciliation_text(report, &took);
                narrator.say(now, "doorsync", &text);
            }
            () = change_due => {
                let now = clock.now();
                let change = workload.change(world, now, &|member, group| narrator.holds(member, group))?;
                narrator.announce(&change, now);
                if let (Some(_), Some(writer), None) = (change.removed_by_hand, &running.writer, &reconciling) {
                    let writer = writer.clone();
                    reconciling = Some((now, tokio::spawn(async move { writer.reconcile_now().await })));
                }
                next_change = Some(now + workload.pause());
            }
        }
    };
    if let Some((_, task)) = reconciling {
        task.abort();
    }
    let now = clock.now();
    let ran = (now.as_unix_millis() - started.as_unix_millis()) / SECOND_MS;
    narrator.finish(&kisi, &format!("stopping ({reason}) after {}m {:02}s", ran / 60, ran % 60));
    Ok(())
}

/// What the narrator says when a reconciliation the demo asked for ends.
fn reconciliation_text(
    report: Result<Result<ReconcileReport, WriterError>, tokio::task::JoinError>,
    took: &str,
) -> String {
    match report {
        Ok(Ok(report)) => format!(
            "the reconciler compared {} groups and {} users in Kisi with what doorsync wrote, in {took} \
             ({} Kisi requests): {} put back, {} windows set back, {} removed, {} users repaired",
            report.groups_listed,
            report.users_checked,
            report.calls,
            report.created,
            report.windows_fixed,
            report.revoked,
            report.users_repaired
        ),
        Ok(Err(error)) => format!("the reconciliation did not finish: {error}"),
        Err(error) => format!("the reconciliation did not finish: {error}"),
    }
}

/// Ctrl-C and SIGTERM, listened for from the start, so that either stops the demo cleanly
/// whenever it comes.
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    fn listen() -> Result<Self, DemoError> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).map_err(DemoError::io("listening for Ctrl-C"))?,
            terminate: signal(SignalKind::terminate()).map_err(DemoError::io("listening for SIGTERM"))?,
        })
    }

    /// Waits until the time is up (`deadline`), Ctrl-C or SIGTERM; says which.
    async fn stop_requested(&mut self, clock: &SharedClock, deadline: Option<Timestamp>) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "Ctrl-C",
            _ = self.terminate.recv() => "SIGTERM",
            () = wait_until(clock, deadline) => "--seconds",
        }
    }
}

/// Sleeps on the clock until `at`; forever when there is none.
fn wait_until(clock: &SharedClock, at: Option<Timestamp>) -> impl Future<Output = ()> + use<> {
    let sleep = at.map(|at| clock.sleep_until(at));
    async move {
        match sleep {
            Some(sleep) => sleep.await,
            None => std::future::pending().await,
        }
    }
}
