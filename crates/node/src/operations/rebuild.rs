//! Every member's state rebuilt from the log in one pass over each stream, folded with
//! `doorsync-access` as the engine folds it: events with [`fold`](doorsync_access::fold), the
//! commands the engine emitted with [`record_command`](doorsync_access::record_command), the
//! writer's outcomes with [`fold_outcome`](doorsync_access::fold_outcome), and mapping changes
//! into the mapping, under the configured one.

use std::collections::BTreeMap;

use doorsync_access::{Mapping, MemberState};
use doorsync_layout::Layout;
use doorsync_log::{EventLog, ReplayRequest, Sequence};
use doorsync_proto::{Command, Envelope, Event, MemberId, Outcome, WireMessage};
use futures::TryStreamExt;
use serde::de::DeserializeOwned;

use super::OperationError;

/// What the log says about every member, and how much of it there was.
#[derive(Debug, Clone, Default)]
pub struct Rebuilt {
    pub members: BTreeMap<MemberId, MemberState>,
    /// The connections that arrived as events (Nexudus's own access-control fields).
    pub event_mapping: Mapping,
    pub events: u64,
    pub commands: u64,
    pub outcomes: u64,
}

impl Rebuilt {
    /// The mapping members are evaluated with, as the engine makes it: the configured mapping
    /// wins over the one from events.
    pub fn mapping(&self, configured: &Mapping) -> Mapping {
        self.event_mapping.overlaid_with(configured)
    }

    fn member(&mut self, member: MemberId) -> &mut MemberState {
        self.members.entry(member).or_insert_with(|| MemberState::new(member))
    }

    fn fold_event(&mut self, sequence: Sequence, envelope: &Envelope<Event>) {
        self.events += 1;
        match (&envelope.message, envelope.message.member()) {
            (Event::MappingChanged(change), _) => self.event_mapping.apply(change),
            (_, Some(member)) => doorsync_access::fold(self.member(member), sequence.0, envelope),
            (_, None) => {}
        }
    }

    fn record_command(&mut self, command: &Command) {
        self.commands += 1;
        doorsync_access::record_command(self.member(command.member()), command);
    }

    fn fold_outcome(&mut self, outcome: &Outcome) {
        self.outcomes += 1;
        doorsync_access::fold_outcome(self.member(outcome.member()), outcome);
    }
}

/// Reads the events, commands and outcomes streams once each, in stream order.
pub async fn rebuild(log: &dyn EventLog, layout: &Layout) -> Result<Rebuilt, OperationError> {
    let mut rebuilt = Rebuilt::default();
    read::<Event>(log, &layout.events, |sequence, envelope| rebuilt.fold_event(sequence, &envelope)).await?;
    read::<Command>(log, &layout.commands, |_, envelope| rebuilt.record_command(&envelope.message)).await?;
    read::<Outcome>(log, &layout.outcomes, |_, envelope| rebuilt.fold_outcome(&envelope.message)).await?;
    Ok(rebuilt)
}

/// Hands every message of `stream` to `apply`, decoded. A message this build cannot read stops
/// the rebuild, as it stops the engine: a state rebuilt without it would be wrong.
async fn read<M>(
    log: &dyn EventLog,
    stream: &str,
    mut apply: impl FnMut(Sequence, Envelope<M>),
) -> Result<(), OperationError>
where
    M: WireMessage + DeserializeOwned,
{
    let unreadable = |source| OperationError::ReadStream { stream: stream.to_owned(), source: Box::new(source) };
    let mut replay = log.replay(ReplayRequest::whole(stream)).await.map_err(unreadable)?;
    while let Some(message) = replay.try_next().await.map_err(unreadable)? {
        let envelope = doorsync_proto::decode::<M>(&message.payload).map_err(|source| {
            OperationError::UnreadableMessage { stream: stream.to_owned(), sequence: message.sequence, source }
        })?;
        apply(message.sequence, envelope);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use doorsync_access::AccessPolicy;
    use doorsync_proto::{Command, EnsureUser, GrantApplied, GrantGroup, KisiAssignmentId, KisiGroupId, KisiUserId};
    use doorsync_proto::{Outcome, UserLinked};

    use super::*;
    use crate::testing::{TempLog, append_command, append_event, append_outcome, at, booking, layout, mapping, member};

    #[tokio::test]
    async fn every_member_is_rebuilt_in_one_pass_as_explain_rebuilds_one() {
        let layout = layout();
        let store = TempLog::new(&layout);
        let log = store.log.as_ref();
        append_event(log, &layout, at(0), mapping(1, Some(KisiGroupId(100)))).await;
        append_event(log, &layout, at(0), mapping(2, Some(KisiGroupId(200)))).await;
        append_event(log, &layout, at(0), mapping(2, None)).await;
        for id in [7, 8] {
            append_event(log, &layout, at(0), member(id)).await;
            append_event(log, &layout, at(1), booking(id, id, 1, at(60), at(120))).await;
        }
        append_event(log, &layout, at(2), booking(8, 9, 3, at(60), at(120))).await;
        let ensure = Command::EnsureUser(EnsureUser {
            member: MemberId(7),
            email: "m7@example.test".to_owned(),
            name: "Member 7".to_owned(),
            basis: 2,
        });
        append_command(log, &layout, at(1), ensure).await;
        let grant = Command::GrantGroup(GrantGroup {
            member: MemberId(7),
            group: KisiGroupId(100),
            valid_from: Some(at(45)),
            valid_until: Some(at(135)),
            basis: 2,
        });
        append_command(log, &layout, at(1), grant).await;
        let linked = UserLinked { member: MemberId(7), kisi_user: KisiUserId(70), created_by_doorsync: true };
        append_outcome(log, &layout, at(2), Outcome::UserLinked(linked)).await;
        let applied = GrantApplied {
            member: MemberId(7),
            group: KisiGroupId(100),
            assignment: KisiAssignmentId(71),
            valid_from: Some(at(45)),
            valid_until: Some(at(135)),
        };
        append_outcome(log, &layout, at(2), Outcome::GrantApplied(applied)).await;

        let rebuilt = rebuild(log, &layout).await.unwrap();

        assert_eq!((rebuilt.events, rebuilt.commands, rebuilt.outcomes), (8, 2, 2));
        assert_eq!(rebuilt.members.keys().copied().collect::<Vec<_>>(), [MemberId(7), MemberId(8)]);
        assert_eq!(rebuilt.event_mapping.resources.len(), 1, "resource 2 was disconnected again");
        let mut configured = Mapping::default();
        configured.resources.insert(doorsync_proto::ResourceId(3), KisiGroupId(300));
        configured.resources.insert(doorsync_proto::ResourceId(1), KisiGroupId(101));
        let mapping = rebuilt.mapping(&configured);
        assert_eq!(mapping.resources.get(&doorsync_proto::ResourceId(1)), Some(&KisiGroupId(101)), "config wins");
        assert_eq!(mapping.resources.len(), 2);

        let policy = AccessPolicy::default();
        for (&id, state) in &rebuilt.members {
            let explained = doorsync_engine::explain(log, &layout, &configured, &policy, id, at(50)).await.unwrap();
            assert_eq!(doorsync_access::desired(state, &mapping, &policy, at(50)), explained.desired, "member {id}");
            assert_eq!(state.kisi(), &explained.kisi, "member {id}");
            assert_eq!(state.status(), &explained.status, "member {id}");
        }
        let seven = &rebuilt.members[&MemberId(7)];
        assert_eq!(seven.emitted().grants.len(), 1, "the engine's commands are recorded as emitted");
        assert_eq!(seven.kisi().user, Some(KisiUserId(70)));
        assert_eq!(rebuilt.members[&MemberId(8)].bookings().len(), 2);
    }

    #[tokio::test]
    async fn a_message_this_build_cannot_read_stops_the_rebuild_with_where_it_is() {
        let layout = layout();
        let store = TempLog::new(&layout);
        let log = store.log.as_ref();
        append_event(log, &layout, at(0), member(1)).await;
        let garbage = doorsync_log::NewMessage::new(layout.subjects.command(MemberId(1)), "garbage", &b"\x01\x02"[..]);
        log.append(garbage).await.unwrap();
        let error = rebuild(log, &layout).await.unwrap_err();
        let text = crate::with_causes(&error);
        assert!(text.contains(&format!("stream {}, sequence 1", layout.commands)), "{text}");
    }
}
