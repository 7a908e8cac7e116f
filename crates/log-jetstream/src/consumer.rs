use async_nats::jetstream::{self, AckKind, consumer::pull};
use async_trait::async_trait;
use doorsync_log::{ConsumerSpec, Delivery, DurableConsumer, LogError, Settle, Settlement, StartPosition};
use futures::StreamExt;

/// A durable pull consumer; JetStream keeps its position and pending acknowledgements.
pub(crate) struct JetStreamConsumer {
    stream_name: String,
    durable_name: String,
    messages: pull::Stream,
}

impl JetStreamConsumer {
    pub(crate) async fn open(stream: &jetstream::stream::Stream, spec: ConsumerSpec) -> Result<Self, LogError> {
        let deliver_policy = match spec.start {
            StartPosition::First => jetstream::consumer::DeliverPolicy::All,
            StartPosition::Sequence(start_sequence) => {
                jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: start_sequence.0 }
            }
            StartPosition::New => jetstream::consumer::DeliverPolicy::New,
        };
        let config = pull::Config {
            durable_name: Some(spec.durable_name.clone()),
            filter_subjects: spec.filters.clone(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: spec.ack_wait,
            max_deliver: spec.max_deliver.map_or(-1, |max| i64::try_from(max).unwrap_or(i64::MAX)),
            deliver_policy,
            ..Default::default()
        };
        let context = || format!("opening consumer {} on {}", spec.durable_name, spec.stream);
        let mut consumer = stream
            .get_or_create_consumer(&spec.durable_name, config.clone())
            .await
            .map_err(|error| LogError::unavailable(context(), error))?;
        // An existing consumer keeps the settings it was created with unless told otherwise: a
        // changed ack wait (say) would otherwise never reach the server. Where it starts is kept,
        // as the trait promises (and JetStream allows no change to it).
        let existing = consumer.cached_info().config.clone();
        if consumer_differs(&existing, &config) {
            tracing::info!(
                consumer = %spec.durable_name,
                stream = %spec.stream,
                ack_wait = ?config.ack_wait,
                "durable consumer opened with new settings; updating it"
            );
            let update = pull::Config { deliver_policy: existing.deliver_policy, ..config };
            consumer = stream
                .update_consumer(update)
                .await
                .map_err(|error| LogError::unavailable(format!("updating consumer {}", spec.durable_name), error))?;
        }
        let messages = consumer.messages().await.map_err(|error| LogError::unavailable(context(), error))?;
        Ok(Self { stream_name: spec.stream, durable_name: spec.durable_name, messages })
    }
}

/// Whether the consumer on the server differs from `wanted` in a setting doorsync chooses. The
/// server keeps a single filter in `filter_subject` however it was given.
fn consumer_differs(existing: &jetstream::consumer::Config, wanted: &pull::Config) -> bool {
    let filters = |single: &str, many: &[String]| -> Vec<String> {
        let mut filters: Vec<String> =
            if many.is_empty() && !single.is_empty() { vec![single.to_owned()] } else { many.to_vec() };
        filters.sort();
        filters
    };
    existing.ack_wait != wanted.ack_wait
        || existing.max_deliver != wanted.max_deliver
        || filters(&existing.filter_subject, &existing.filter_subjects)
            != filters(&wanted.filter_subject, &wanted.filter_subjects)
}

#[async_trait]
impl DurableConsumer for JetStreamConsumer {
    async fn next(&mut self) -> Result<Delivery, LogError> {
        loop {
            match self.messages.next().await {
                Some(Ok(message)) => {
                    let info =
                        message.info().map_err(|error| LogError::unavailable("reading delivery metadata", error))?;
                    let stored = crate::stored_message(&self.stream_name, info.stream_sequence, &message);
                    let delivery_count = u64::try_from(info.delivered).unwrap_or(1);
                    let (_, acker) = message.split();
                    return Ok(Delivery::new(stored, delivery_count, Box::new(JetStreamSettle { acker })));
                }
                // Missed heartbeats and the like while the server is away: the stream recovers by
                // itself once the connection is back, and nothing is lost meanwhile.
                Some(Err(error)) => {
                    tracing::warn!(consumer = %self.durable_name, %error, "consumer interrupted, waiting for the server");
                }
                None => {
                    return Err(LogError::Closed { context: format!("consumer {} ended", self.durable_name) });
                }
            }
        }
    }
}

struct JetStreamSettle {
    acker: jetstream::message::Acker,
}

#[async_trait]
impl Settle for JetStreamSettle {
    async fn settle(&self, settlement: Settlement) -> Result<(), LogError> {
        let kind = match settlement {
            Settlement::Ack => AckKind::Ack,
            Settlement::Nak(delay) => AckKind::Nak(Some(delay)),
            Settlement::Term => AckKind::Term,
        };
        // The double ack waits for the server to confirm, so "acked" means recorded.
        self.acker
            .double_ack_with(kind)
            .await
            .map_err(|error| LogError::unavailable(format!("settling a delivery ({settlement:?})"), error))
    }
}
