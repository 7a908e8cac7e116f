//! A measurement, not a test of speed: how long an ingestor takes to start over an ingest bucket
//! holding 100,000 record states, on the embedded log and on JetStream. It prints its figures;
//! run it with `cargo test -p doorsync-ingest --release --test start_with_many_records --
//! --ignored --nocapture`.
#![allow(clippy::unwrap_used, clippy::print_stdout, reason = "a measurement")]

mod support;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use doorsync_clock::ManualClock;
use doorsync_ingest::{IngestOptions, Secret};
use doorsync_layout::Layout;
use doorsync_log::{EventLog, KeyValue};
use doorsync_log_embedded::{EmbeddedLog, EmbeddedOptions};
use doorsync_nexudus_sim::{NexudusSimulator, SimOptions};
use doorsync_proto::Subjects;
use serde_json::json;
use tokio::task::JoinSet;

const RECORDS: u64 = 100_000;

/// Writes `RECORDS` booking states, as the ledger keeps them, many at a time.
async fn fill(kv: Arc<dyn KeyValue>) {
    let mut writes = JoinSet::new();
    for id in 1..=RECORDS {
        let kv = Arc::clone(&kv);
        writes.spawn(async move {
            let state = json!({"updated_on": 1_751_356_800_000_i64 + i64::try_from(id).unwrap(),
                "holder": {"member": id % 5_000}, "content": format!("{id:064x}"), "removed": id % 10 == 0});
            kv.put(&format!("record.Booking.{id}"), Bytes::from(state.to_string())).await.unwrap();
        });
        if writes.len() >= 1_000 {
            writes.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(write) = writes.join_next().await {
        write.unwrap();
    }
}

async fn measure(backend: &str, log: Arc<dyn EventLog>, layout: &Layout) {
    let clock = ManualClock::new(support::START);
    let mut sim_options = SimOptions::new(Arc::new(clock.clone()));
    sim_options.limits = None;
    let sim = NexudusSimulator::start(sim_options).await.unwrap();
    let client = support::client_of(&sim, &clock);
    let kv = log.key_value(&layout.ingest_bucket).await.unwrap();
    let filling = Instant::now();
    fill(kv).await;
    let filled = filling.elapsed();
    for attempt in 1..=3 {
        let starting = Instant::now();
        let ingest = doorsync_ingest::start(
            IngestOptions::new(Secret::new(support::SECRET)),
            client.clone(),
            Arc::clone(&log),
            layout.clone(),
            Arc::new(clock.clone()),
        )
        .await
        .unwrap();
        let started = starting.elapsed();
        println!(
            "{backend}: start over {RECORDS} record states, attempt {attempt}: {:.0} ms ({:.0} records/s; filling \
             took {:.1} s)",
            started.as_secs_f64() * 1_000.0,
            RECORDS as f64 / started.as_secs_f64(),
            filled.as_secs_f64()
        );
        ingest.shutdown().await;
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement that prints figures; run with --ignored --nocapture"]
async fn start_over_100_000_record_states() {
    let layout = Layout::new(Subjects::new("bench", 4).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let embedded = EmbeddedLog::open(EmbeddedOptions::new(dir.path().join("log.redb"), layout.streams())).unwrap();
    measure("embedded", Arc::new(embedded), &layout).await;

    let nats = doorsync_test_support::NatsServer::start().await.unwrap();
    let options = doorsync_log_jetstream::JetStreamOptions::new(nats.url(), layout.streams());
    let jetstream = doorsync_log_jetstream::JetStreamLog::connect(options).await.unwrap();
    measure("jetstream", Arc::new(jetstream), &layout).await;
}
