//! `doorsync`: keeps Kisi door access in step with what members hold in Nexudus.
#![forbid(unsafe_code)]

mod commands;
mod context;
mod demo;
mod metrics;
mod page;
mod roles;
mod setup;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "doorsync", version, about, long_about = None)]
struct Cli {
    /// The configuration file (see crates/config/doorsync.example.toml); without one, the
    /// defaults and DOORSYNC_<SECTION>__<KEY> variables apply.
    #[arg(long, short, global = true, env = "DOORSYNC_CONFIG")]
    config: Option<PathBuf>,
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
    /// listener.
    Reconcile {
        /// The writer's admin address.
        #[arg(long, default_value = "http://127.0.0.1:9090", env = "DOORSYNC_WRITER_ADMIN_URL")]
        writer_url: String,
        /// Carry out the revocations the mass-revocation guard held back.
        #[arg(long)]
        confirm: bool,
    },
    /// Runs the access engine on generated members, bookings and passes and prints the
    /// commands for Kisi as they are emitted, including those that come due while it runs.
    /// Needs no account and no NATS.
    Demo {
        /// Where the embedded log file goes; a temporary directory when not given.
        #[arg(long, env = "DOORSYNC_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// How many members to generate.
        #[arg(long, default_value_t = 12)]
        members: u64,
        /// Partitions that members are spread over.
        #[arg(long, default_value_t = 4)]
        partitions: u32,
        /// How long to watch before stopping (Ctrl-C stops sooner).
        #[arg(long, default_value_t = 45)]
        seconds: u64,
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
    /// What a running doorsync process reports: partitions, backlog, dead letters, parked
    /// Nexudus records, webhook health.
    Status {
        /// The process's admin address.
        #[arg(long, default_value = "http://127.0.0.1:9090", env = "DOORSYNC_ADMIN_URL")]
        url: String,
    },
    /// Checks the configuration (and the credentials it names) without starting anything.
    CheckConfig,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("doorsync: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("doorsync: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Run => commands::serve(config, roles::RoleSet::ALL, "run").await,
        Command::Ingest => commands::serve(config, roles::RoleSet::INGEST, "ingest").await,
        Command::Engine => commands::serve(config, roles::RoleSet::ENGINE, "engine").await,
        Command::Writer => commands::serve(config, roles::RoleSet::WRITER, "writer").await,
        Command::Reconcile { writer_url, confirm } => commands::reconcile(config, &writer_url, confirm).await,
        Command::Demo { data_dir, members, partitions, seconds } => {
            demo::run(demo::DemoOptions { data_dir, members, partitions, seconds }).await
        }
        Command::Explain { member, at } => commands::explain(config, &member, at.as_deref()).await,
        Command::Status { url } => commands::status(config, &url).await,
        Command::CheckConfig => commands::check_config(config).await,
    }
}
