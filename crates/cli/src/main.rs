//! `doorsync`: keeps Kisi door access in step with what members hold in Nexudus.
#![forbid(unsafe_code)]

mod demo;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "doorsync", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Demo { data_dir, members, partitions, seconds } => {
            demo::run(demo::DemoOptions { data_dir, members, partitions, seconds }).await
        }
    }
}
