//! `doorsync`: keeps Kisi door access in step with what members hold in Nexudus.
//!
//! This crate is the wiring on top: it parses the arguments (`Command`) and dispatches, and
//! decides nothing about access, Kisi or dead letters; each rule lives in the crate that owns it.
//!
//! * `doorsync run` (every role on the embedded log), `ingest`, `engine` and `writer` (one role
//!   each, on JetStream) start a process through `doorsync_node::start`, with the status page's
//!   routes from `doorsync-status-page`, and stop it on SIGTERM or Ctrl-C (`commands.rs`).
//! * `doorsync demo` runs `doorsync_demo::run`.
//! * The operator's commands are thin and print: `explain` (the engine's `explain`, or a running
//!   process's API when the embedded log is held), `status` and `reconcile` (a running process's
//!   admin API, at `--admin` or `admin.listen`), `check-config` (`check.rs`; with `--online` the
//!   accounts are checked by `doorsync_node::online_check`), `mapping suggest` (`mapping.rs`,
//!   matched by `doorsync_node::suggest`), and in `ops/` `replay --dry-run` and `reconcile
//!   --dry-run` (`doorsync_node::operations::dry_run`: a rebuild from the log compared with Kisi by
//!   the writer's planner) and `dlq list | retry | drop` (through `doorsync_writer::dead_letters`).
//!   Beside a running `doorsync run`, which holds the embedded log's file, these ask its admin API
//!   (`ops/admin.rs`), which runs the same functions; the text is the same either way.
//! * Answers go to stdout and nothing else does: logs are on stderr (`doorsync-telemetry`).
//!
//! This is the only crate that uses `anyhow`: the libraries return typed errors, printed here with
//! their causes.
#![forbid(unsafe_code)]

mod check;
mod commands;
mod mapping;
mod ops;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use doorsync_node::{Context, RoleSet};
use ops::admin::Admin;

/// What `doorsync --help` opens with: what the tool does, the two ways to run it, where to start.
const LONG_ABOUT: &str = "\
doorsync keeps door access in Kisi in step with what members hold in Nexudus: a booking opens the
doors of its resource for its time, a pass or a contract opens the doors mapped to it, and access
ends when they do. Each [[mapping]] of the configuration links a Nexudus resource, pass product or
desk to a Kisi group.

Two ways to run it:
  doorsync run                        every role in one process, on an embedded log file: one site
  doorsync ingest | engine | writer   one role per process, sharing NATS JetStream (Kubernetes)

Where to start: doorsync demo shows it at work between simulated Nexudus and Kisi, with no account
and no setup. Then write a configuration (doorsync example-config > doorsync.toml starts one from an
annotated example), check it with doorsync check-config --online, and start doorsync run. Its status page
is served at admin.listen; doorsync status, explain, dlq and replay --dry-run answer from the
command line.";

#[derive(Debug, Parser)]
#[command(
    name = "doorsync",
    version,
    about = "Keeps door access in Kisi in step with the bookings, passes and contracts members hold in Nexudus.",
    long_about = LONG_ABOUT
)]
struct Cli {
    /// The configuration file: TOML, a section per part ([nexudus], [kisi], [admin], [log], ...)
    /// and a [[mapping]] per Nexudus resource, pass product or desk. `doorsync example-config`
    /// prints an annotated example with every key. A variable
    /// DOORSYNC_<SECTION>__<KEY> (such as DOORSYNC_ADMIN__LISTEN) sets or overrides a key; without
    /// a file, the defaults and those variables apply.
    #[arg(long, short, global = true, env = "DOORSYNC_CONFIG")]
    config: Option<PathBuf>,
    /// The admin address of the running doorsync that status, reconcile, dlq, explain and the
    /// dry runs ask, such as http://127.0.0.1:9090; admin.listen from the configuration when not
    /// given.
    #[arg(long, global = true, value_name = "URL", env = "DOORSYNC_ADMIN_URL")]
    admin: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs every role (ingest, engine, writer) in this process on the embedded log: the way to
    /// run doorsync for one site.
    Run,
    /// Runs the Nexudus ingestor alone (webhooks, poller, sweeper), on JetStream.
    Ingest,
    /// Runs the access engine alone, on JetStream; several engines split the partitions.
    Engine,
    /// Runs the Kisi writer (and its reconciler) alone, on JetStream; one per Kisi account is
    /// active, others wait on standby.
    Writer,
    /// Asks the active writer to reconcile Kisi with the desired state now, through its admin
    /// listener (--admin).
    Reconcile {
        /// Carry out the revocations the mass-revocation guard held back.
        #[arg(long, conflicts_with = "dry_run")]
        confirm: bool,
        /// Only show what a reconciliation would take over (from kisi.adopt_created_by), change
        /// and remove, from the log and what Kisi holds now; writes nothing and needs no running
        /// writer.
        #[arg(long)]
        dry_run: bool,
    },
    /// Everything in one process: simulated Nexudus and Kisi, generated locations in three time
    /// zones, members, bookings, passes and contracts, and doorsync between them; prints door
    /// access changing as it happens, and the status page's address. Needs no account, no NATS and
    /// no setup.
    Demo {
        /// Where the embedded log (and a config file for `doorsync explain`) go; a temporary
        /// directory, removed at the end, when not given.
        #[arg(long, env = "DOORSYNC_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// How many members to generate, from 10 to 5000.
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(10..=5_000))]
        members: u32,
        /// Stop after this many seconds; without it, the demo runs until Ctrl-C.
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Why a member can or cannot open which doors, since when and until when, and what was
    /// written to Kisi, rebuilt from the log.
    Explain {
        /// A Nexudus member (coworker) id, or their email.
        member: String,
        /// The instant to explain (RFC 3339); now when not given.
        #[arg(long)]
        at: Option<String>,
    },
    /// What a running doorsync process reports (--admin): its roles, whether the writer is
    /// paused or holding, pending writes, dead letters, parked Nexudus records, webhook health,
    /// the last poll and sweep, the engine's partitions.
    Status {
        /// Everything the process reports, as the JSON of its /api/status.
        #[arg(long)]
        json: bool,
    },
    /// What a rebuild from the log would change in Kisi, read from Kisi now; writes nothing.
    /// Repairs are made by the writer's reconciler (`doorsync reconcile`).
    Replay {
        /// Only show what would change (replay never writes).
        #[arg(long)]
        dry_run: bool,
    },
    /// The commands the Kisi writer dead-lettered: list them, hand them back to the writer, or
    /// drop them.
    Dlq {
        #[command(subcommand)]
        action: ops::DlqAction,
    },
    /// Checks the configuration (and the credentials it names) without starting anything.
    CheckConfig {
        /// Also log in to Nexudus and Kisi, check that every mapped Kisi group exists and is
        /// visible to the API key, and show the names of what the mapping links.
        #[arg(long)]
        online: bool,
    },
    /// Helps write the [[mapping]] entries of the configuration from what Nexudus and Kisi hold.
    Mapping {
        #[command(subcommand)]
        action: mapping::MappingAction,
    },
    /// Prints an annotated configuration with every key and its default, to start a
    /// doorsync.toml from: doorsync example-config > doorsync.toml
    ExampleConfig,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The demo tells its own story on stdout; its roles' routine logs would drown it.
    let default_log_filter = if matches!(cli.command, Command::Demo { .. }) { "warn" } else { "info" };
    let options = doorsync_telemetry::TelemetryOptions {
        service_name: format!("doorsync-{}", cli.command.name()),
        default_log_filter: default_log_filter.to_owned(),
        format: log_format(cli.config.as_deref()),
    };
    let telemetry = match doorsync_telemetry::Telemetry::install(&options) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("doorsync: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("doorsync: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(dispatch(cli));
    // Stopped before the spans are flushed: the last ones end when the runtime's tasks do.
    drop(runtime);
    if let Err(error) = telemetry.shutdown() {
        eprintln!("doorsync: {error}");
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("doorsync: {}", doorsync_node::with_causes(error.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

/// `log.format` from the configuration. A configuration that does not load gives text: the
/// command loads it again and prints why it does not, plainly, on stderr.
fn log_format(config_file: Option<&std::path::Path>) -> doorsync_telemetry::LogFormat {
    match doorsync_config::Config::load(config_file).map(|config| config.log.format) {
        Ok(doorsync_config::LogFormat::Json) => doorsync_telemetry::LogFormat::Json,
        Ok(doorsync_config::LogFormat::Text) | Err(_) => doorsync_telemetry::LogFormat::Text,
    }
}

impl Command {
    /// The subcommand's name, which names the process in the tracing backend.
    fn name(&self) -> &'static str {
        match self {
            Command::Run => "run",
            Command::Ingest => "ingest",
            Command::Engine => "engine",
            Command::Writer => "writer",
            Command::Reconcile { .. } => "reconcile",
            Command::Demo { .. } => "demo",
            Command::Explain { .. } => "explain",
            Command::Status { .. } => "status",
            Command::Replay { .. } => "replay",
            Command::Dlq { .. } => "dlq",
            Command::CheckConfig { .. } => "check-config",
            Command::Mapping { .. } => "mapping",
            Command::ExampleConfig => "example-config",
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config.as_deref();
    let admin = cli.admin.as_deref();
    match cli.command {
        Command::Run => commands::serve(config, RoleSet::ALL, "run").await,
        Command::Ingest => commands::serve(config, RoleSet::INGEST, "ingest").await,
        Command::Engine => commands::serve(config, RoleSet::ENGINE, "engine").await,
        Command::Writer => commands::serve(config, RoleSet::WRITER, "writer").await,
        Command::Reconcile { dry_run: true, .. } => {
            let context = Context::load(config)?;
            ops::reconcile_dry_run(&context, &Admin::new(&context.config, admin)?).await
        }
        Command::Reconcile { confirm, dry_run: false } => commands::reconcile(config, admin, confirm).await,
        Command::Demo { data_dir, members, seconds } => {
            doorsync_demo::run(doorsync_demo::DemoOptions {
                data_dir,
                members,
                seconds,
                status_page: doorsync_status_page::routes,
            })
            .await?;
            Ok(())
        }
        Command::Explain { member, at } => commands::explain(config, admin, &member, at.as_deref()).await,
        Command::Status { json } => commands::status(config, admin, json).await,
        Command::Replay { dry_run } => {
            let context = Context::load(config)?;
            ops::replay(&context, &Admin::new(&context.config, admin)?, dry_run).await
        }
        Command::Dlq { action } => {
            let context = Context::load(config)?;
            ops::dlq(&context, &Admin::new(&context.config, admin)?, action).await
        }
        Command::CheckConfig { online } => check::check_config(config, online).await,
        Command::Mapping { action } => mapping::run(&Context::load(config)?, action).await,
        Command::ExampleConfig => {
            print!("{}", doorsync_config::EXAMPLE);
            Ok(())
        }
    }
}
