//! Simulated Nexudus and Kisi accounts with something to map, a configuration pointing at them,
//! and the `doorsync` binary run on it as an operator runs it.
#![allow(dead_code, reason = "each test file uses its own part of this module")]

use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;

use doorsync_clock::SystemClock;
use doorsync_kisi_sim::KisiSimulator;
use doorsync_nexudus_sim::{NexudusSimulator, SimEntity};
use doorsync_proto::KisiGroupId;
use serde_json::json;
use tokio::process::Command;

pub(crate) const KISI_KEY: &str = "accounts-test-key";
pub(crate) const NEXUDUS_USER: &str = "admin@example.com";
pub(crate) const NEXUDUS_PASSWORD: &str = "password";

/// What the accounts hold: a room, a pass product and a desk in Nexudus, and in Kisi a group
/// named like each (the desk's with other punctuation) and one named like nothing.
pub(crate) struct Accounts {
    pub(crate) kisi: KisiSimulator,
    pub(crate) nexudus: NexudusSimulator,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) room: u64,
    pub(crate) day_pass: u64,
    pub(crate) desk: u64,
    pub(crate) room_group: KisiGroupId,
    pub(crate) pass_group: KisiGroupId,
    pub(crate) desk_group: KisiGroupId,
    pub(crate) staff_group: KisiGroupId,
}

impl Accounts {
    pub(crate) async fn start() -> Self {
        let clock: doorsync_clock::SharedClock = Arc::new(SystemClock);
        let kisi = KisiSimulator::start(doorsync_kisi_sim::SimOptions::new(Arc::clone(&clock))).await.unwrap();
        let kisi_handle = kisi.handle();
        kisi_handle.add_api_account("integration@example.com", "doorsync", KISI_KEY).unwrap();
        let mut options = doorsync_nexudus_sim::SimOptions::new(clock);
        options.limits = None;
        let nexudus = NexudusSimulator::start(options).await.unwrap();
        let soho = nexudus.create_location("Soho", "GMT Standard Time").unwrap();
        let room = nexudus.create(SimEntity::Resource, json!({"BusinessId": soho, "Name": "Meeting Room 1"})).unwrap();
        let day_pass = nexudus.create(SimEntity::TimePass, json!({"BusinessId": soho, "Name": "Day Pass"})).unwrap();
        let desk = nexudus.create(SimEntity::FloorPlanDesk, json!({"Name": "Desk 5", "ItemType": 2})).unwrap();
        Self {
            room_group: kisi_handle.add_group("meeting room 1"),
            pass_group: kisi_handle.add_group("Day Pass"),
            desk_group: kisi_handle.add_group("Desk #5"),
            staff_group: kisi_handle.add_group("Staff only"),
            kisi,
            nexudus,
            dir: tempfile::tempdir().unwrap(),
            room,
            day_pass,
            desk,
        }
    }

    /// Writes a configuration for both accounts with `extra` (TOML: sections, `[[mapping]]`
    /// entries) after it; returns its path.
    pub(crate) fn config(&self, extra: &str) -> PathBuf {
        let path = self.dir.path().join("doorsync.toml");
        let text = format!(
            "[log]\npath = {log:?}\npartitions = 4\n\n[nexudus]\nbase_url = {nexudus:?}\n\n[kisi]\nbase_url = {kisi:?}\n\n{extra}",
            log = self.dir.path().join("doorsync.redb"),
            nexudus = self.nexudus.base_url().as_str().trim_end_matches('/'),
            kisi = self.kisi.base_url().as_str(),
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    pub(crate) async fn stop(self) {
        self.nexudus.shutdown().await;
        self.kisi.shutdown().await;
    }
}

/// The binary with the accounts' secrets in its environment (`secrets` overrides them) and
/// nothing of the test's own environment that doorsync reads.
pub(crate) fn doorsync(secrets: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_doorsync"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("DOORSYNC_")
            || name.starts_with("KISI_")
            || name.starts_with("NEXUDUS_")
            || name == "NO_COLOR"
        {
            command.env_remove(name);
        }
    }
    command
        .env("KISI_API_KEY", KISI_KEY)
        .env("NEXUDUS_USERNAME", NEXUDUS_USER)
        .env("NEXUDUS_PASSWORD", NEXUDUS_PASSWORD)
        .env("NEXUDUS_WEBHOOK_SECRET", "accounts-test-hook-secret")
        .env("RUST_LOG", "debug")
        .kill_on_drop(true);
    for (name, value) in secrets {
        command.env(name, value);
    }
    command
}

/// Runs `doorsync --config <config> <args>` to the end.
pub(crate) async fn run(config: &std::path::Path, args: &[&str], secrets: &[(&str, &str)]) -> Output {
    let mut command = doorsync(secrets);
    command.arg("--config").arg(config).args(args);
    command.output().await.unwrap()
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
