//! One member's actor: a thin shell around the pure fold.
//!
//! It folds the member's events, outcomes and its own past commands into a [`MemberState`],
//! and on request evaluates the access the member should have now, appends the commands that
//! close the gap to what was last emitted, and tells the shard when it next needs waking.

use std::sync::Arc;

use bytes::Bytes;
use doorsync_access::MemberState;
use doorsync_log::{NewMessage, ReplayRequest, RetryPolicy, Sequence, StoredMessage, append_with_retry};
use doorsync_proto::{Command, Envelope, Event, MemberId, Outcome, Timestamp, WireMessage};
use doorsync_telemetry::TraceParent;
use futures::TryStreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::EngineError;
use crate::directory::{KisiUser, MemberListing};
use crate::feed::Reading;
use crate::shard::{MappingVersion, ShardMsg};
use crate::shared::Shared;
use crate::skipped::{Read, read};

/// Events for one member, each with its sequence in the log.
pub(crate) type MemberEvents = Vec<(Sequence, Box<Envelope<Event>>)>;

/// The trace an event was appended in, and whether the engine reads it as it happens (then the
/// commands it causes join that trace) or from history (then they only link to it); and whether
/// the ingestor marked it bulk work ([`doorsync_layout::BULK_HEADER`]).
#[derive(Debug, Clone)]
pub(crate) struct EventTrace {
    parent: Option<TraceParent>,
    reading: Reading,
    bulk: bool,
}

impl EventTrace {
    /// `None` for an event from history without a trace: it neither causes nor shapes commands in
    /// any way a header would say, and history is bulk work whatever its headers.
    pub(crate) fn from_headers(headers: &[(String, String)], reading: Reading) -> Option<Self> {
        let parent = TraceParent::from_headers(headers);
        if parent.is_none() && reading == Reading::History {
            return None;
        }
        Some(Self { parent, reading, bulk: doorsync_layout::is_bulk(headers) })
    }

    /// A change as it happens that the ingestor did not mark bulk: a webhook.
    fn is_live_change(&self) -> bool {
        self.reading == Reading::Live && !self.bulk
    }
}

pub(crate) enum MemberMsg {
    Event { sequence: Sequence, envelope: Box<Envelope<Event>>, trace: Option<EventTrace> },
    Events { events: MemberEvents, trace: Option<EventTrace> },
    Command { sequence: Sequence, command: Command },
    Outcome { sequence: Sequence, outcome: Outcome },
    Evaluate { mapping: Arc<MappingVersion> },
    Snapshot(RpcReplyPort<Result<(), EngineError>>),
    Inspect(RpcReplyPort<MemberState>),
}

/// What is kept of a member while its actor is passivated, and what a restarted actor resumes
/// from. The sequences say how far into each stream the state reaches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MemberSnapshot {
    pub(crate) state: MemberState,
    pub(crate) command_sequence: Sequence,
    pub(crate) outcome_sequence: Sequence,
    /// When the mapping the member was last evaluated with changed: an evaluation with a newer
    /// one is a mapping's re-evaluation, bulk work, even in an actor started for it. Snapshots
    /// of builds that lacked it read `None`.
    #[serde(default)]
    pub(crate) mapping_evaluated: Option<Timestamp>,
}

/// Where a new member actor's state comes from.
pub(crate) enum StartFrom {
    /// Its snapshot in the key-value store, if it has one.
    Snapshot,
    /// Nothing: the shard is rebuilding everything from the log and has never seen the member.
    Fresh,
    /// State the shard folded itself while catching up.
    State(Box<MemberSnapshot>),
}

impl MemberSnapshot {
    pub(crate) fn new(member: MemberId) -> Self {
        Self {
            state: MemberState::new(member),
            command_sequence: Sequence::BEFORE_FIRST,
            outcome_sequence: Sequence::BEFORE_FIRST,
            mapping_evaluated: None,
        }
    }

    /// Each of these ignores what the state already reaches past, and says whether it changed.
    pub(crate) fn fold_event(&mut self, sequence: Sequence, envelope: &Envelope<Event>) -> bool {
        let changes = sequence > Sequence(self.state.last_sequence());
        if changes {
            doorsync_access::fold(&mut self.state, sequence.0, envelope);
        }
        changes
    }

    pub(crate) fn record_command(&mut self, sequence: Sequence, command: &Command) -> bool {
        let changes = sequence > self.command_sequence;
        if changes {
            doorsync_access::record_command(&mut self.state, command);
            self.command_sequence = sequence;
        }
        changes
    }

    pub(crate) fn fold_outcome(&mut self, sequence: Sequence, outcome: &Outcome) -> bool {
        let changes = sequence > self.outcome_sequence;
        if changes {
            doorsync_access::fold_outcome(&mut self.state, outcome);
            self.outcome_sequence = sequence;
        }
        changes
    }
}

pub(crate) fn snapshot_key(member: MemberId) -> String {
    format!("member.{member}")
}

pub(crate) struct MemberActor;

pub(crate) struct MemberArgs {
    pub(crate) member: MemberId,
    pub(crate) shared: Arc<Shared>,
    pub(crate) shard: ActorRef<ShardMsg>,
    pub(crate) start_from: StartFrom,
    /// After a crash the snapshot may be older than what the shard already handed over (and
    /// lost with the mailbox): read the member's own subjects from the snapshot on.
    pub(crate) recover: bool,
    /// The trace of the last event the shard folded for it while catching up.
    pub(crate) shaped_by: Option<EventTrace>,
}

pub(crate) struct Member {
    snapshot: MemberSnapshot,
    shared: Arc<Shared>,
    shard: ActorRef<ShardMsg>,
    dirty: bool,
    /// The trace of the live event folded since the last evaluation: the commands that
    /// evaluation appends were caused by it.
    cause: Option<TraceParent>,
    /// The trace of the last event folded, which commands at a later window edge link to.
    shaped_by: Option<TraceParent>,
    /// Events changed the state since the last evaluation (from history, bulk or live).
    folded_since_evaluation: bool,
    /// One of them was a live change ([`EventTrace::is_live_change`]): the commands of the next
    /// evaluation go before bulk work.
    live_change_since_evaluation: bool,
}

impl Actor for MemberActor {
    type Msg = MemberMsg;
    type State = Member;
    type Arguments = MemberArgs;

    async fn pre_start(&self, _myself: ActorRef<MemberMsg>, args: MemberArgs) -> Result<Member, ActorProcessingErr> {
        let folded_by_shard = matches!(args.start_from, StartFrom::State(_));
        let (snapshot, dirty) = match args.start_from {
            StartFrom::Snapshot => match load_snapshot(&args.shared, args.member).await? {
                Some(stored) => (stored, false),
                None => (MemberSnapshot::new(args.member), false),
            },
            StartFrom::Fresh => (MemberSnapshot::new(args.member), false),
            StartFrom::State(folded) => (*folded, true),
        };
        let shaped_by = args.shaped_by.and_then(|trace| trace.parent);
        let mut member = Member {
            snapshot,
            shared: args.shared,
            shard: args.shard,
            dirty,
            cause: None,
            shaped_by,
            folded_since_evaluation: folded_by_shard,
            live_change_since_evaluation: false,
        };
        if args.recover {
            member.catch_up().await?;
        }
        Ok(member)
    }

    async fn handle(
        &self,
        _myself: ActorRef<MemberMsg>,
        message: MemberMsg,
        member: &mut Member,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            MemberMsg::Event { sequence, envelope, trace } => {
                member.fold_event(sequence, &envelope);
                if let Some(trace) = trace {
                    member.traced_by(trace);
                }
            }
            MemberMsg::Events { events, trace } => {
                for (sequence, envelope) in events {
                    member.fold_event(sequence, &envelope);
                }
                if let Some(trace) = trace {
                    member.traced_by(trace);
                }
            }
            MemberMsg::Command { sequence, command } => member.record_command(sequence, &command),
            MemberMsg::Outcome { sequence, outcome } => member.fold_outcome(sequence, &outcome),
            MemberMsg::Evaluate { mapping } => member.evaluate(&mapping).await?,
            MemberMsg::Snapshot(reply) => {
                // The caller may have given up waiting; the snapshot is written all the same.
                let _ = reply.send(member.save().await);
            }
            MemberMsg::Inspect(reply) => {
                let _ = reply.send(member.snapshot.state.clone());
            }
        }
        Ok(())
    }
}

/// The messages on one of the member's own subjects after sequence `after`, in order, each with
/// what it says. Only a restart after a crash reads them, and one member's messages fit in
/// memory. Messages that are not doorsync's are left out: the shard reported them when it read
/// them.
async fn own_messages<M: WireMessage + DeserializeOwned>(
    shared: &Shared,
    stream: &str,
    subject: String,
    after: Sequence,
) -> Result<Vec<(StoredMessage, Box<Envelope<M>>)>, EngineError> {
    let request = ReplayRequest::whole(stream).filtered([subject]).from_sequence(after.next());
    let stored: Vec<StoredMessage> = shared.log.replay(request).await?.try_collect().await?;
    let mut read_messages = Vec::with_capacity(stored.len());
    for message in stored {
        if let Read::Message(envelope) = read::<M>(message.sequence, &message.payload)? {
            read_messages.push((message, envelope));
        }
    }
    Ok(read_messages)
}

pub(crate) async fn load_snapshot(shared: &Shared, member: MemberId) -> Result<Option<MemberSnapshot>, EngineError> {
    let Some(entry) = shared.kv.get(&snapshot_key(member)).await? else {
        return Ok(None);
    };
    rmp_serde::from_slice(&entry.value).map(Some).map_err(|source| EngineError::SnapshotUnreadable { member, source })
}

impl Member {
    fn id(&self) -> MemberId {
        self.snapshot.state.member()
    }

    fn fold_event(&mut self, sequence: Sequence, envelope: &Envelope<Event>) {
        let folded = self.snapshot.fold_event(sequence, envelope);
        self.dirty |= folded;
        self.folded_since_evaluation |= folded;
    }

    fn traced_by(&mut self, trace: EventTrace) {
        self.live_change_since_evaluation |= trace.is_live_change();
        let Some(parent) = trace.parent else {
            return;
        };
        if trace.reading == Reading::Live {
            self.cause = Some(parent.clone());
        }
        self.shaped_by = Some(parent);
    }

    /// Whether the commands of an evaluation with `version` are bulk work: caused by bulk events
    /// only, by history (start-up, catch-up), or by a mapping's re-evaluation, rather than by a
    /// live change or a window edge (an evaluation with nothing new: a wake-up). Marks the
    /// evaluation as done.
    fn take_bulk(&mut self, version: &MappingVersion) -> bool {
        let mapping_changed = self.snapshot.mapping_evaluated.is_some_and(|evaluated| version.changed_at > evaluated);
        let bulk = !self.live_change_since_evaluation && (self.folded_since_evaluation || mapping_changed);
        self.folded_since_evaluation = false;
        self.live_change_since_evaluation = false;
        if self.snapshot.mapping_evaluated != Some(version.changed_at) {
            self.snapshot.mapping_evaluated = Some(version.changed_at);
            self.dirty = true;
        }
        bulk
    }

    fn record_command(&mut self, sequence: Sequence, command: &Command) {
        self.dirty |= self.snapshot.record_command(sequence, command);
    }

    fn fold_outcome(&mut self, sequence: Sequence, outcome: &Outcome) {
        let folded = self.snapshot.fold_outcome(sequence, outcome);
        self.dirty |= folded;
        // An outcome changes no access, so no evaluation follows it: the search's listing
        // hears of the Kisi user here.
        if folded && matches!(outcome, Outcome::UserLinked(_) | Outcome::UserAccessChanged(_)) {
            let user = KisiUser::of(self.snapshot.state.kisi());
            let _ = self.shard.cast(ShardMsg::KisiUserReported { member: self.id(), user });
        }
    }

    /// Reads the member's own subjects past the snapshot: events, the commands this engine
    /// already appended (so none is appended twice), and outcomes.
    async fn catch_up(&mut self) -> Result<(), EngineError> {
        let member = self.id();
        let shared = Arc::clone(&self.shared);
        let (layout, subjects) = (&shared.layout, &shared.layout.subjects);
        let after = Sequence(self.snapshot.state.last_sequence());
        for (message, envelope) in own_messages::<Event>(&shared, &layout.events, subjects.event(member), after).await?
        {
            self.fold_event(message.sequence, &envelope);
            if let Some(trace) = EventTrace::from_headers(&message.headers, Reading::History) {
                self.traced_by(trace);
            }
        }
        let after = self.snapshot.command_sequence;
        for (message, envelope) in
            own_messages::<Command>(&shared, &layout.commands, subjects.command(member), after).await?
        {
            self.record_command(message.sequence, &envelope.message);
        }
        let after = self.snapshot.outcome_sequence;
        for (message, envelope) in
            own_messages::<Outcome>(&shared, &layout.outcomes, subjects.outcome(member), after).await?
        {
            self.fold_outcome(message.sequence, &envelope.message);
        }
        Ok(())
    }

    async fn evaluate(&mut self, version: &MappingVersion) -> Result<(), EngineError> {
        let mapping = &version.mapping;
        let shared = Arc::clone(&self.shared);
        let now = shared.clock.now();
        let policy = &shared.policy;
        let desired = doorsync_access::desired(&self.snapshot.state, mapping, policy, now);
        let commands = doorsync_access::commands(&self.snapshot.state, &desired);
        let emitted = commands.len();
        let cause = self.cause.take();
        let bulk = self.take_bulk(version);
        if !commands.is_empty() {
            // A root of its own: the actor's lifetime is not what caused the commands.
            let span = tracing::info_span!(parent: None, "engine.emit", member = %self.id(), commands = emitted);
            match (cause, &self.shaped_by) {
                (Some(cause), _) => cause.adopt(&span),
                (None, Some(shaped_by)) => shaped_by.link(&span),
                (None, None) => {}
            }
            self.append_commands(commands, version, now, bulk).instrument(span).await?;
        }
        let next_change = doorsync_access::next_change(&self.snapshot.state, mapping, policy, now);
        let listing = Box::new(MemberListing::evaluated(&self.snapshot.state, desired.grants, next_change));
        self.shard
            .cast(ShardMsg::Evaluated { member: self.id(), next_change, commands: emitted, listing })
            .map_err(|_| EngineError::ShardGone)?;
        Ok(())
    }

    /// Appends the commands in order and records each once the log has it. Their ids derive
    /// from their content, the time of the last event that shaped them (the member's own or a
    /// mapping change) and the window edge each is due to, so a member that crashed after
    /// appending and before recording re-appends the same ids, which the log answers as
    /// duplicates (unless another edge passed meanwhile: the writer then settles both copies
    /// with one call). Bulk work is marked so, in a header, for the writer to do after live
    /// changes.
    async fn append_commands(
        &mut self,
        commands: Vec<Command>,
        version: &MappingVersion,
        now: Timestamp,
        bulk: bool,
    ) -> Result<(), EngineError> {
        let occurred_at = doorsync_access::command_time(&self.snapshot.state).max(version.changed_at);
        let subject = self.shared.layout.subjects.command(self.id());
        let mut messages = Vec::with_capacity(commands.len());
        for command in &commands {
            // Every command's edge is read from the state they were all computed from, before
            // any of them is recorded.
            let window_edge = doorsync_access::window_edge(&self.snapshot.state, command, now);
            let envelope = Envelope::with_window_edge(occurred_at, window_edge, command.clone())?;
            let payload = Bytes::from(doorsync_proto::encode(&envelope)?);
            let mut message = NewMessage::new(subject.clone(), envelope.id.to_string(), payload);
            message.headers = doorsync_telemetry::current_trace_headers();
            if bulk {
                message.headers.push(doorsync_layout::bulk_header());
            }
            messages.push(message);
        }
        let answers = self.shared.log.append_batch(messages.clone()).await;
        for ((command, message), answer) in commands.iter().zip(messages).zip(answers) {
            let appended = match answer {
                Ok(appended) => appended,
                Err(error) if error.is_transient() => {
                    append_with_retry(&*self.shared.log, message, RetryPolicy::default()).await?
                }
                Err(error) => return Err(error.into()),
            };
            self.record_command(appended.sequence, command);
        }
        Ok(())
    }

    async fn save(&mut self) -> Result<(), EngineError> {
        if !self.dirty {
            return Ok(());
        }
        let member = self.id();
        let encoded = rmp_serde::to_vec_named(&self.snapshot)
            .map_err(|source| EngineError::SnapshotUnencodable { member, source })?;
        self.shared.kv.put(&snapshot_key(member), Bytes::from(encoded)).await?;
        self.dirty = false;
        Ok(())
    }
}
