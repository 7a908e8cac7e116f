//! One partition's actor, the orchestration only: it hands each member's messages to its member
//! actor (spawned on the first message, passivated when idle), wakes members at their next
//! change, restarts crashed ones, and checkpoints. What it is fed comes from [`crate::feed`],
//! when to wake from the pure [`Schedule`], and what a checkpoint holds from
//! [`crate::checkpoint`].
//!
//! Startup reads the partition from its checkpoint on: first this engine's own commands (so
//! members know what they already emitted), then outcomes, then events. Nobody is evaluated
//! until the events are caught up, so no command is ever based on half a history.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use doorsync_access::{Mapping, MemberState};
use doorsync_log::Sequence;
use doorsync_proto::{Command, Envelope, Event, MemberId, Outcome, Partition, Timestamp};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, ActorRuntime, RpcReplyPort, SupervisionEvent};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::EngineError;
use crate::checkpoint::{Checkpoint, save_snapshot, save_snapshots};
use crate::directory::{Directory, KisiUser, MemberListing, MemberMatches, MemberSearch, list_from_snapshots};
use crate::feed::{HistoricEvent, History, Positions, Reading, feed};
use crate::member::{EventTrace, MemberActor, MemberArgs, MemberEvents, MemberMsg, MemberSnapshot, StartFrom};
use crate::schedule::{HousekeepingDue, Schedule};
use crate::shared::Shared;
use crate::skipped::{Read, SkippedMessage, SkippedMessages, read};

pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) enum ShardMsg {
    /// A member actor's start failed (its snapshot could not be read, say).
    MemberFailedToStart {
        member: MemberId,
        actor: ActorId,
        error: EngineError,
    },
    /// Several encoded events at once, from the engine's reading of history.
    Events(Vec<HistoricEvent>),
    /// Where the shard's checkpoint says each stream resumes.
    Positions(RpcReplyPort<Positions>),
    /// The engine delivered the partition's history up to these positions (inclusive).
    HistoryDone(Positions),
    Event {
        sequence: Sequence,
        envelope: Box<Envelope<Event>>,
        trace: Option<EventTrace>,
    },
    Command {
        sequence: Sequence,
        command: Command,
    },
    Outcome {
        sequence: Sequence,
        outcome: Outcome,
    },
    CaughtUp,
    Barrier(RpcReplyPort<()>),
    FeedFailed(EngineError),
    Evaluated {
        member: MemberId,
        next_change: Option<Timestamp>,
        commands: usize,
        /// The member as the evaluation found them, for the search.
        listing: Box<MemberListing>,
    },
    /// The schedule's next wake-up came: due members, and housekeeping if due.
    Wake,
    Checkpoint(RpcReplyPort<Result<(), EngineError>>),
    Inspect {
        member: MemberId,
        reply: RpcReplyPort<Option<MemberState>>,
    },
    Stats(RpcReplyPort<ShardStats>),
    /// Every member the partition knows, in no particular order.
    Members(RpcReplyPort<Vec<MemberId>>),
    /// The mapping the partition evaluates its members with.
    Mapping(RpcReplyPort<Mapping>),
    /// A page of the members matching a search, from the partition's directory.
    Find {
        search: Box<MemberSearch>,
        reply: RpcReplyPort<MemberMatches>,
    },
    /// Members listed from their snapshots, for the directory.
    Listed(Vec<MemberListing>),
    /// The writer reported on the member's Kisi user, for the directory.
    KisiUserReported {
        member: MemberId,
        user: KisiUser,
    },
    /// Kills a member's actor as a crash would (fault injection).
    Kill {
        member: MemberId,
        reply: RpcReplyPort<()>,
    },
    /// Checkpoint, passivate every member, and stop.
    Stop(RpcReplyPort<Result<(), EngineError>>),
    /// Stop at once and write nothing, as a crash would (fault injection).
    Crash(RpcReplyPort<()>),
    /// A message of the partition that is not doorsync's, skipped.
    Skipped(SkippedMessage),
}

/// What a shard reports about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStats {
    pub partition: Partition,
    pub caught_up: bool,
    /// When the partition finished rebuilding from the log and its members were evaluated.
    pub caught_up_at: Option<Timestamp>,
    pub live_members: usize,
    pub known_members: usize,
    pub scheduled_wakeups: usize,
    pub events_position: Sequence,
    pub commands_emitted: u64,
    pub member_restarts: u64,
    /// When this engine started the shard, having just taken the partition's lease. The
    /// defaults of these last fields read statuses of builds that lacked them.
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    /// How much of the events stream the partition still has to replay: the messages between
    /// its position and the stream's end when the shard started. One stream holds every
    /// partition's events, so this is an upper bound; 0 once caught up, and `None` when the
    /// stream's end could not be read.
    #[serde(default)]
    pub replay_behind_messages: Option<u64>,
    /// Seconds spent replaying: so far while not caught up, in all once caught up.
    #[serde(default)]
    pub replay_seconds: u64,
    /// Messages of the partition skipped because they are not doorsync's, in all.
    #[serde(default)]
    pub skipped_messages: u64,
    /// The latest of them.
    #[serde(default)]
    pub latest_skipped: Vec<SkippedMessage>,
}

pub(crate) struct ShardActor;

pub(crate) struct ShardArgs {
    pub(crate) partition: Partition,
    pub(crate) shared: Arc<Shared>,
    pub(crate) history: History,
}

struct Live {
    actor: ActorRef<MemberMsg>,
    last_active: Timestamp,
}

pub(crate) struct Shard {
    partition: Partition,
    shared: Arc<Shared>,
    live: HashMap<MemberId, Live>,
    actors: HashMap<ActorId, MemberId>,
    known: HashSet<MemberId>,
    schedule: Schedule,
    timer: watch::Sender<Option<Timestamp>>,
    event_mapping: Mapping,
    mapping: Arc<MappingVersion>,
    events_position: Sequence,
    mapping_position: Sequence,
    outcomes_position: Sequence,
    commands_position: Sequence,
    /// Without a checkpoint everything is rebuilt from the log, so members first seen in the
    /// replay have no snapshot worth loading.
    started_from_checkpoint: bool,
    caught_up: bool,
    caught_up_at: Option<Timestamp>,
    to_evaluate: BTreeSet<MemberId>,
    /// The configuration the checkpoint says every member was evaluated with: the one in force
    /// once the partition caught up and sent everyone to be evaluated with it.
    evaluated_with: Option<[u8; 32]>,
    /// The configuration changed since the checkpoint: catching up evaluates every member.
    evaluate_everyone: bool,
    skipped: SkippedMessages,
    /// Members whose actor was lost before it started: their next start reads the log.
    needs_recovery: HashSet<MemberId>,
    /// State folded by the shard itself during a rebuild, for members with no actor yet.
    folding: HashMap<MemberId, MemberSnapshot>,
    /// The trace of the last event folded for each member in `folding`, when it had one.
    folded_traces: HashMap<MemberId, EventTrace>,
    commands_emitted: u64,
    member_restarts: u64,
    started_at: Timestamp,
    /// The events stream's last sequence when the shard started: where its replay ends at least.
    replay_target: Option<Sequence>,
    last_checkpoint: Timestamp,
    tasks: Vec<JoinHandle<()>>,
    /// The members as the search sees them.
    directory: Directory,
}

impl Actor for ShardActor {
    type Msg = ShardMsg;
    type State = Shard;
    type Arguments = ShardArgs;

    async fn pre_start(&self, myself: ActorRef<ShardMsg>, args: ShardArgs) -> Result<Shard, ActorProcessingErr> {
        let ShardArgs { partition, shared, history } = args;
        let stored = Checkpoint::load(&shared, partition).await?;
        let started_from_checkpoint = stored.is_some();
        let checkpoint = stored.unwrap_or_else(Checkpoint::beginning);
        // An edited configuration changes what members should have without any of their
        // records changing: everyone is evaluated again once the partition has caught up. The
        // edit also counts as a change of the mapping in the commands' time, so that a grant
        // the edit brings back (a desk relinked, then linked back) gets an id of its own.
        let edited = started_from_checkpoint && checkpoint.evaluated_with != Some(shared.configuration);
        let mapping_changed_at =
            if edited { checkpoint.mapping_changed_at.max(shared.clock.now()) } else { checkpoint.mapping_changed_at };
        let (timer, timer_changes) = watch::channel(None);
        let now = shared.clock.now();
        // Read once, at start: replay progress is worth a gauge, not a request to the log per look.
        let replay_target = match shared.log.last_sequence(&shared.layout.events).await {
            Ok(last) => Some(last),
            Err(error) => {
                tracing::debug!(%partition, %error, "the end of the events stream is unknown; so is replay progress");
                None
            }
        };
        let mut shard = Shard {
            partition,
            mapping: Arc::new(MappingVersion {
                mapping: checkpoint.event_mapping.overlaid_with(&shared.configured_mapping),
                changed_at: mapping_changed_at,
            }),
            evaluated_with: checkpoint.evaluated_with,
            evaluate_everyone: edited,
            skipped: checkpoint.skipped,
            event_mapping: checkpoint.event_mapping,
            mapping_position: checkpoint.mapping_events,
            live: HashMap::new(),
            actors: HashMap::new(),
            known: HashSet::new(),
            schedule: Schedule::default(),
            timer,
            events_position: checkpoint.events,
            outcomes_position: checkpoint.outcomes,
            commands_position: checkpoint.commands,
            started_from_checkpoint,
            caught_up: false,
            caught_up_at: None,
            to_evaluate: BTreeSet::new(),
            needs_recovery: HashSet::new(),
            folding: HashMap::new(),
            folded_traces: HashMap::new(),
            commands_emitted: 0,
            member_restarts: 0,
            started_at: now,
            replay_target,
            last_checkpoint: now,
            tasks: Vec::new(),
            directory: Directory::default(),
            shared: Arc::clone(&shared),
        };
        for (member, wake) in checkpoint.members {
            shard.known.insert(member);
            if let Some(at) = wake {
                shard.reschedule(member, Some(at));
            }
        }
        shard.tasks.push(tokio::spawn(run_timer(Arc::clone(&shared), timer_changes, myself.clone())));
        if history == History::ReadOwn {
            shard.tasks.push(tokio::spawn(feed(shared, partition, shard.positions(), history, myself)));
        }
        Ok(shard)
    }

    async fn post_stop(&self, _myself: ActorRef<ShardMsg>, shard: &mut Shard) -> Result<(), ActorProcessingErr> {
        for task in shard.tasks.drain(..) {
            task.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ShardMsg>,
        message: ShardMsg,
        shard: &mut Shard,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ShardMsg::Event { sequence, envelope, trace } => shard.on_event(&myself, sequence, envelope, trace).await?,
            ShardMsg::Events(batch) => shard.on_events(&myself, batch).await?,
            ShardMsg::Command { sequence, command } => shard.on_command(&myself, sequence, command)?,
            ShardMsg::Outcome { sequence, outcome } => shard.on_outcome(&myself, sequence, outcome)?,
            ShardMsg::Positions(reply) => {
                let _ = reply.send(shard.positions());
            }
            ShardMsg::HistoryDone(reached) => shard.on_history_done(myself, reached).await?,
            ShardMsg::CaughtUp => shard.caught_up(&myself).await?,
            ShardMsg::MemberFailedToStart { member, actor, error } => {
                shard.on_member_failed_to_start(member, &actor, &error);
            }
            ShardMsg::Barrier(reply) => {
                let _ = reply.send(());
            }
            ShardMsg::FeedFailed(error) => {
                return Err(EngineError::Feed { partition: shard.partition, source: Box::new(error) }.into());
            }
            ShardMsg::Evaluated { member, next_change, commands, listing } => {
                shard.directory.record(*listing);
                shard.commands_emitted += commands as u64;
                shard.reschedule(member, next_change);
            }
            // Until the partition has caught up, a due member would be evaluated on half its
            // history; `caught_up` evaluates everyone due by then.
            ShardMsg::Wake if !shard.caught_up => {}
            ShardMsg::Wake => shard.on_wake(&myself).await?,
            ShardMsg::Checkpoint(reply) => {
                let _ = reply.send(shard.checkpoint().await);
            }
            ShardMsg::Inspect { member, reply } => {
                let _ = reply.send(shard.inspect(&myself, member).await?);
            }
            ShardMsg::Stats(reply) => {
                let _ = reply.send(shard.stats());
            }
            ShardMsg::Members(reply) => {
                let _ = reply.send(shard.known.iter().copied().collect());
            }
            ShardMsg::Mapping(reply) => {
                let _ = reply.send(shard.mapping.mapping.clone());
            }
            ShardMsg::Find { search, reply } => {
                let _ = reply.send(shard.directory.search(&search, shard.known.len()));
            }
            ShardMsg::Listed(listings) => listings.into_iter().for_each(|listing| shard.directory.fill(listing)),
            ShardMsg::KisiUserReported { member, user } => shard.directory.set_kisi_user(member, user),
            ShardMsg::Kill { member, reply } => {
                if let Some(live) = shard.live.get(&member) {
                    live.actor.kill();
                }
                let _ = reply.send(());
            }
            ShardMsg::Stop(reply) => {
                let result = shard.stop_gracefully().await;
                let _ = reply.send(result);
                myself.stop(None);
            }
            ShardMsg::Skipped(skipped) => shard.skip(skipped),
            ShardMsg::Crash(reply) => {
                shard.crash();
                let _ = reply.send(());
                myself.stop(None);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<ShardMsg>,
        event: SupervisionEvent,
        shard: &mut Shard,
    ) -> Result<(), ActorProcessingErr> {
        let cell = match event {
            SupervisionEvent::ActorTerminated(cell, _, _) | SupervisionEvent::ActorFailed(cell, _) => cell,
            _ => return Ok(()),
        };
        // Members the shard stopped itself are already out of `actors`: only crashes remain.
        let Some(member) = shard.actors.remove(&cell.get_id()) else {
            return Ok(());
        };
        shard.live.remove(&member);
        shard.member_restarts += 1;
        tracing::warn!(partition = %shard.partition, %member, "member actor stopped unexpectedly; restarting it from its snapshot and the log");
        shard.member(&myself, member, true)?;
        if shard.caught_up {
            shard.evaluate(&myself, member).await?;
        }
        Ok(())
    }
}

/// A member actor that cannot take a message has just crashed: the shard is about to restart
/// it, and the restarted actor reads everything it missed from the log.
fn tell(member: &ActorRef<MemberMsg>, message: MemberMsg) {
    if member.cast(message).is_err() {
        tracing::debug!(actor = %member.get_id(), "member actor gone; its restart will read the log");
    }
}

/// The mapping members are evaluated with, and when it last changed.
pub(crate) struct MappingVersion {
    pub(crate) mapping: Mapping,
    pub(crate) changed_at: Timestamp,
}

impl Shard {
    fn on_command(
        &mut self,
        myself: &ActorRef<ShardMsg>,
        sequence: Sequence,
        command: Command,
    ) -> Result<(), EngineError> {
        let member = command.member();
        self.commands_position = self.commands_position.max(sequence);
        if let Some(folding) = self.folding_here(member) {
            folding.record_command(sequence, &command);
        } else {
            tell(&self.member(myself, member, false)?, MemberMsg::Command { sequence, command });
        }
        Ok(())
    }

    fn on_outcome(
        &mut self,
        myself: &ActorRef<ShardMsg>,
        sequence: Sequence,
        outcome: Outcome,
    ) -> Result<(), EngineError> {
        let member = outcome.member();
        self.outcomes_position = self.outcomes_position.max(sequence);
        if let Some(folding) = self.folding_here(member) {
            folding.fold_outcome(sequence, &outcome);
        } else {
            tell(&self.member(myself, member, false)?, MemberMsg::Outcome { sequence, outcome });
        }
        Ok(())
    }

    /// The history is read: evaluate whoever it made due, then follow the log live from there.
    async fn on_history_done(&mut self, myself: ActorRef<ShardMsg>, reached: Positions) -> Result<(), EngineError> {
        self.commands_position = self.commands_position.max(reached.commands);
        self.outcomes_position = self.outcomes_position.max(reached.outcomes);
        self.mapping_position = self.mapping_position.max(reached.mapping_events);
        self.events_position = self.events_position.max(reached.events);
        self.caught_up(&myself).await?;
        let positions = self.positions();
        let live = feed(Arc::clone(&self.shared), self.partition, positions, History::Delivered, myself);
        self.tasks.push(tokio::spawn(live));
        Ok(())
    }

    fn on_member_failed_to_start(&mut self, member: MemberId, actor: &ActorId, error: &EngineError) {
        if self.actors.remove(actor).is_some() {
            self.live.remove(&member);
            // Whatever it was sent is lost with it: the next start reads the log, and a wakeup
            // makes sure there is a next start.
            self.needs_recovery.insert(member);
            self.schedule.retry_start(member, self.shared.clock.now());
            self.arm_timer();
            tracing::warn!(partition = %self.partition, %member, %error, "member actor failed to start; retrying");
        }
    }

    async fn on_wake(&mut self, myself: &ActorRef<ShardMsg>) -> Result<(), EngineError> {
        let now = self.shared.clock.now();
        for member in self.schedule.take_due(now) {
            self.evaluate(myself, member).await?;
        }
        if self.schedule.take_housekeeping(now) {
            self.housekeeping().await?;
        }
        self.arm_timer();
        Ok(())
    }

    /// Lists, from their snapshots, the members no evaluation listed or is about to list: those
    /// a restart from a checkpoint left passivated. A member sent to be evaluated is listed by
    /// its evaluation; looking up its snapshot as well would cost a read of the key-value store
    /// per member, which after a rebuild from the log finds nothing.
    fn list_unlisted(&mut self, myself: &ActorRef<ShardMsg>, evaluating: &BTreeSet<MemberId>) {
        let unlisted: Vec<MemberId> = self
            .known
            .iter()
            .copied()
            .filter(|member| !self.directory.contains(*member) && !evaluating.contains(member))
            .collect();
        if !unlisted.is_empty() {
            let (shared, mapping) = (Arc::clone(&self.shared), Arc::clone(&self.mapping));
            self.tasks.push(tokio::spawn(list_from_snapshots(shared, mapping, unlisted, myself.clone())));
        }
    }

    async fn inspect(
        &mut self,
        myself: &ActorRef<ShardMsg>,
        member: MemberId,
    ) -> Result<Option<MemberState>, EngineError> {
        if !self.known.contains(&member) {
            return Ok(None);
        }
        let actor = self.member(myself, member, false)?;
        Ok(ractor::call_t!(actor, MemberMsg::Inspect, CALL_TIMEOUT.as_millis() as u64).ok())
    }

    /// Stops everything at once, as a crash would: no checkpoint, no snapshot.
    fn crash(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        for (_, live) in self.live.drain() {
            live.actor.kill();
        }
        self.actors.clear();
    }

    fn positions(&self) -> Positions {
        Positions {
            commands: self.commands_position,
            outcomes: self.outcomes_position,
            mapping_events: self.mapping_position,
            events: self.events_position,
        }
    }

    async fn caught_up(&mut self, myself: &ActorRef<ShardMsg>) -> Result<(), EngineError> {
        self.caught_up = true;
        let now = self.shared.clock.now();
        let due = self.schedule.take_due(now);
        self.plan_housekeeping(now);
        self.arm_timer();
        let mut pending = std::mem::take(&mut self.to_evaluate);
        pending.extend(self.folding.keys().copied());
        pending.extend(due);
        if std::mem::take(&mut self.evaluate_everyone) {
            tracing::info!(
                partition = %self.partition,
                members = self.known.len(),
                "the configuration changed since the last checkpoint; evaluating every member"
            );
            pending.extend(self.known.iter().copied());
        }
        for member in &pending {
            self.evaluate(myself, *member).await?;
        }
        // Each member's evaluation is in its mailbox ahead of the snapshot a checkpoint asks
        // for, so a checkpoint that records this configuration follows the evaluations with it.
        self.evaluated_with = Some(self.shared.configuration);
        self.list_unlisted(myself, &pending);
        self.caught_up_at = Some(self.shared.clock.now());
        tracing::info!(partition = %self.partition, position = %self.events_position, "partition caught up");
        Ok(())
    }

    /// Hands each member its events in one message: during a replay most of the work is moving
    /// messages between actors, not folding them.
    async fn on_events(&mut self, myself: &ActorRef<ShardMsg>, batch: Vec<HistoricEvent>) -> Result<(), EngineError> {
        let mut by_member: HashMap<MemberId, (MemberEvents, Vec<(String, String)>)> = HashMap::new();
        for HistoricEvent { sequence, subject, payload, headers } in batch {
            let envelope = match read::<Event>(sequence, &payload)? {
                Read::Message(envelope) => envelope,
                Read::Garbage(reason) => {
                    let stream = self.shared.layout.events.clone();
                    self.skip(SkippedMessage {
                        stream,
                        subject,
                        sequence,
                        reason,
                        skipped_at: self.shared.clock.now(),
                    });
                    continue;
                }
            };
            match envelope.message.member() {
                Some(member) => {
                    self.events_position = self.events_position.max(sequence);
                    let (events, last_headers) = by_member.entry(member).or_default();
                    events.push((sequence, envelope));
                    *last_headers = headers;
                }
                // The fold does not read the mapping, so a mapping change may be applied before
                // member events that preceded it in the log without changing any state.
                None => self.on_event(myself, sequence, envelope, None).await?,
            }
        }
        for (member, (events, last_headers)) in by_member {
            // Only the member's last event is linked to: it is the one that shaped its state last.
            let trace = EventTrace::from_headers(&last_headers, Reading::History);
            if let Some(folding) = self.folding_here(member) {
                for (sequence, envelope) in &events {
                    folding.fold_event(*sequence, envelope);
                }
                if let Some(trace) = trace {
                    self.folded_traces.insert(member, trace);
                }
            } else {
                tell(&self.member(myself, member, false)?, MemberMsg::Events { events, trace });
            }
            self.evaluate_or_defer(myself, member).await?;
        }
        Ok(())
    }

    async fn on_event(
        &mut self,
        myself: &ActorRef<ShardMsg>,
        sequence: Sequence,
        envelope: Box<Envelope<Event>>,
        trace: Option<EventTrace>,
    ) -> Result<(), EngineError> {
        if let Event::MappingChanged(change) = &envelope.message {
            self.mapping_position = self.mapping_position.max(sequence);
            self.event_mapping.apply(change);
            self.mapping = Arc::new(MappingVersion {
                mapping: self.event_mapping.overlaid_with(&self.shared.configured_mapping),
                changed_at: self.mapping.changed_at.max(envelope.occurred_at),
            });
            let everyone: Vec<MemberId> = self.known.iter().copied().collect();
            for member in everyone {
                self.evaluate_or_defer(myself, member).await?;
            }
            return Ok(());
        }
        self.events_position = self.events_position.max(sequence);
        let Some(member) = envelope.message.member() else {
            return Ok(());
        };
        tell(&self.member(myself, member, false)?, MemberMsg::Event { sequence, envelope, trace });
        self.evaluate_or_defer(myself, member).await
    }

    fn skip(&mut self, skipped: SkippedMessage) {
        let (stream, subject, sequence, reason) =
            (skipped.stream.clone(), skipped.subject.clone(), skipped.sequence, skipped.reason.clone());
        if self.skipped.record(skipped) {
            tracing::error!(
                partition = %self.partition,
                %stream,
                %subject,
                %sequence,
                %reason,
                "skipped a message that is not doorsync's; look at how it got into the log"
            );
        }
    }

    async fn evaluate_or_defer(&mut self, myself: &ActorRef<ShardMsg>, member: MemberId) -> Result<(), EngineError> {
        if self.caught_up {
            self.evaluate(myself, member).await
        } else {
            self.to_evaluate.insert(member);
            Ok(())
        }
    }

    async fn evaluate(&mut self, myself: &ActorRef<ShardMsg>, member: MemberId) -> Result<(), EngineError> {
        let mapping = Arc::clone(&self.mapping);
        tell(&self.member(myself, member, false)?, MemberMsg::Evaluate { mapping });
        Ok(())
    }

    /// While rebuilding from the log (no checkpoint, not caught up), members with no actor are
    /// folded right here: a replay is mostly moving messages, and an actor per member costs a
    /// start and a hop per message. Their actors start with this state when evaluation begins.
    fn folding_here(&mut self, member: MemberId) -> Option<&mut MemberSnapshot> {
        let fresh = !self.started_from_checkpoint && !self.known.contains(&member);
        if self.caught_up || self.live.contains_key(&member) || !(fresh || self.folding.contains_key(&member)) {
            return None;
        }
        self.known.insert(member);
        Some(self.folding.entry(member).or_insert_with(|| MemberSnapshot::new(member)))
    }

    /// The member's actor, spawned (from its snapshot) if it is not running.
    fn member(
        &mut self,
        myself: &ActorRef<ShardMsg>,
        member: MemberId,
        recover: bool,
    ) -> Result<ActorRef<MemberMsg>, EngineError> {
        let now = self.shared.clock.now();
        if let Some(live) = self.live.get_mut(&member) {
            live.last_active = now;
            return Ok(live.actor.clone());
        }
        let start_from = match self.folding.remove(&member) {
            Some(folded) => StartFrom::State(Box::new(folded)),
            None if !self.started_from_checkpoint && !self.known.contains(&member) => StartFrom::Fresh,
            None => StartFrom::Snapshot,
        };
        let recover = recover || self.needs_recovery.remove(&member);
        // Only a start that reads the store or the log can fail; one from state in hand reads
        // nothing, and watching it would cost a task per member when a rebuild starts them all.
        let start_may_fail = recover || matches!(start_from, StartFrom::Snapshot);
        let args = MemberArgs {
            member,
            shared: Arc::clone(&self.shared),
            shard: myself.clone(),
            start_from,
            recover,
            shaped_by: self.folded_traces.remove(&member),
        };
        // Not awaited: waiting for each new actor to be scheduled and started made replays
        // crawl. Messages queue until it has started; if starting fails the shard hears of it.
        let (actor, started) = ActorRuntime::spawn_linked_instant(None, MemberActor, args, myself.get_cell())
            .map_err(|source| EngineError::Spawn { what: format!("the actor of member {member}"), source })?;
        if start_may_fail {
            let shard = myself.clone();
            let actor_id = actor.get_id();
            tokio::spawn(async move {
                let what = || format!("the actor of member {member}");
                let error = match started.await {
                    Ok(Ok(_)) => return,
                    Ok(Err(source)) => EngineError::Spawn { what: what(), source },
                    Err(source) => EngineError::TaskStopped { what: what(), source },
                };
                let _ = shard.cast(ShardMsg::MemberFailedToStart { member, actor: actor_id, error });
            });
        }
        self.actors.insert(actor.get_id(), member);
        self.live.insert(member, Live { actor: actor.clone(), last_active: now });
        self.known.insert(member);
        self.schedule.member_active(now, self.shared.passivate_after);
        self.arm_timer();
        Ok(actor)
    }

    fn reschedule(&mut self, member: MemberId, next_change: Option<Timestamp>) {
        self.schedule.schedule(member, next_change);
        self.arm_timer();
    }

    fn arm_timer(&self) {
        let earliest = self.schedule.next_wake();
        self.timer.send_if_modified(|current| {
            let changed = *current != earliest;
            *current = earliest;
            changed
        });
    }

    /// Passivates idle members and writes the checkpoint if it is due, then plans the next
    /// housekeeping.
    async fn housekeeping(&mut self) -> Result<(), EngineError> {
        let now = self.shared.clock.now();
        let passivate_after = self.shared.passivate_after;
        let idle: Vec<MemberId> = self
            .live
            .iter()
            .filter(|(_, live)| live.last_active + passivate_after < now)
            .map(|(member, _)| *member)
            .collect();
        for member in idle {
            self.passivate(member).await?;
        }
        if self.last_checkpoint + self.shared.checkpoint_every <= now {
            self.checkpoint().await?;
        }
        self.plan_housekeeping(now);
        Ok(())
    }

    fn plan_housekeeping(&mut self, now: Timestamp) {
        let shared = &self.shared;
        let due = HousekeepingDue {
            last_checkpoint: self.last_checkpoint,
            checkpoint_every: shared.checkpoint_every,
            least_recently_active: self.live.values().map(|live| live.last_active).min(),
            passivate_after: shared.passivate_after,
            at_least_every: shared.housekeeping_every,
        };
        self.schedule.plan_housekeeping(now, &due);
    }

    async fn passivate(&mut self, member: MemberId) -> Result<(), EngineError> {
        let Some(live) = self.live.remove(&member) else {
            return Ok(());
        };
        self.actors.remove(&live.actor.get_id());
        let saved = save_snapshot(member, &live.actor).await;
        live.actor.stop(None);
        saved
    }

    /// Saves every live member's snapshot, then the checkpoint that says how far they reach.
    async fn checkpoint(&mut self) -> Result<(), EngineError> {
        // Read before the snapshots: commands appended while they are written are replayed
        // (idempotently) after a restart rather than skipped.
        let commands = self.shared.log.last_sequence(&self.shared.layout.commands).await?;
        save_snapshots(self.live.iter().map(|(member, live)| (*member, live.actor.clone()))).await?;
        let checkpoint = Checkpoint {
            events: self.events_position,
            mapping_events: self.mapping_position,
            mapping_changed_at: self.mapping.changed_at,
            commands,
            outcomes: self.outcomes_position,
            event_mapping: self.event_mapping.clone(),
            members: self.known.iter().map(|member| (*member, self.schedule.saved(*member))).collect(),
            evaluated_with: self.evaluated_with,
            skipped: self.skipped.clone(),
        };
        checkpoint.save(&self.shared, self.partition).await?;
        self.commands_position = commands;
        self.last_checkpoint = self.shared.clock.now();
        Ok(())
    }

    async fn stop_gracefully(&mut self) -> Result<(), EngineError> {
        let result = if self.caught_up { self.checkpoint().await } else { Ok(()) };
        for (_, live) in self.live.drain() {
            live.actor.stop(None);
        }
        self.actors.clear();
        result
    }

    fn stats(&self) -> ShardStats {
        ShardStats {
            partition: self.partition,
            caught_up: self.caught_up,
            caught_up_at: self.caught_up_at,
            live_members: self.live.len(),
            known_members: self.known.len(),
            scheduled_wakeups: self.schedule.scheduled(),
            events_position: self.events_position,
            commands_emitted: self.commands_emitted,
            member_restarts: self.member_restarts,
            started_at: Some(self.started_at),
            replay_behind_messages: replay_behind(self.caught_up, self.replay_target, self.events_position),
            replay_seconds: seconds_between(
                self.started_at,
                self.caught_up_at.unwrap_or_else(|| self.shared.clock.now()),
            ),
            skipped_messages: self.skipped.total(),
            latest_skipped: self.skipped.latest(),
        }
    }
}

/// Messages of the events stream a partition at `position` has still to replay up to `target`.
fn replay_behind(caught_up: bool, target: Option<Sequence>, position: Sequence) -> Option<u64> {
    if caught_up { Some(0) } else { target.map(|target| target.messages_after(position)) }
}

/// Whole seconds from `from` to `to`, 0 if `to` is not later.
fn seconds_between(from: Timestamp, to: Timestamp) -> u64 {
    to.saturating_duration_since(from).as_secs()
}

async fn run_timer(shared: Arc<Shared>, mut earliest: watch::Receiver<Option<Timestamp>>, shard: ActorRef<ShardMsg>) {
    loop {
        let next = *earliest.borrow_and_update();
        match next {
            None => {
                if earliest.changed().await.is_err() {
                    return;
                }
            }
            Some(at) => {
                tokio::select! {
                    () = shared.clock.sleep_until(at) => {
                        if shard.cast(ShardMsg::Wake).is_err() {
                            return;
                        }
                        // The shard answers a wake by arming the timer again.
                        if earliest.changed().await.is_err() {
                            return;
                        }
                    }
                    changed = earliest.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_left_is_the_distance_to_the_streams_end_at_start_until_caught_up() {
        assert_eq!(replay_behind(false, Some(Sequence(10_000)), Sequence(2_500)), Some(7_500));
        assert_eq!(
            replay_behind(false, Some(Sequence(10_000)), Sequence(12_000)),
            Some(0),
            "past the end read at start"
        );
        assert_eq!(replay_behind(true, Some(Sequence(10_000)), Sequence(2_500)), Some(0), "caught up: nothing left");
        assert_eq!(replay_behind(false, None, Sequence(2_500)), None, "the end could not be read");
    }

    #[test]
    fn replay_time_is_counted_in_whole_seconds_and_never_below_zero() {
        let at = Timestamp::from_unix_millis;
        assert_eq!(seconds_between(at(1_000), at(91_999)), 90);
        assert_eq!(seconds_between(at(5_000), at(1_000)), 0);
    }
}
