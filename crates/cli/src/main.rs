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
    /// Shows the event log at work with generated members: encoded Nexudus facts appended on
    /// their partitions, re-appended without being stored twice, and replayed per partition.
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
        Command::Demo { data_dir, members, partitions } => demo::run(data_dir, members, partitions).await,
    }
}
