//! `doorsync explain`: why a member can or cannot open which doors, since when and until when,
//! because of which booking, pass or contract, and what was written to Kisi, rebuilt from the
//! member's own history in the log with the same fold the engine runs.

use std::collections::BTreeMap;
use std::fmt;

use doorsync_access::{
    AccessPolicy, Desired, Entitlement, Grant, KisiRecord, Mapping, MemberState, MemberStatus, Source, UserAccess,
    Window, Withheld,
};
use doorsync_layout::Layout;
use doorsync_log::{EventLog, ReplayRequest, Sequence, StoredMessage};
use doorsync_proto::{Command, EntitlementId, Envelope, Event, MappingSource, MemberId, Outcome, Timestamp};
use futures::TryStreamExt;

use crate::EngineError;
use crate::skipped::{Read, read};

/// Everything `explain` says about one member at one instant.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub member: MemberId,
    pub at: Timestamp,
    pub status: MemberStatus,
    pub entitlements: Vec<Entitlement>,
    /// Bookings, passes and contracts whose latest version cannot be read, so grant nothing.
    pub withheld: BTreeMap<EntitlementId, Withheld>,
    pub desired: Desired,
    /// When the answer changes next, unless Nexudus tells us something new first.
    pub next_change: Option<Timestamp>,
    pub kisi: KisiRecord,
    /// The member's events, commands and outcomes, oldest first.
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub at: Timestamp,
    pub kind: HistoryKind,
    pub summary: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryKind {
    Event,
    Command,
    Outcome,
}

/// Rebuilds `member`'s state from the log (its events, the commands emitted for it and the
/// outcomes the writer reported, plus every mapping change) and explains it at `at`.
pub async fn explain(
    log: &dyn EventLog,
    layout: &Layout,
    configured_mapping: &Mapping,
    policy: &AccessPolicy,
    member: MemberId,
    at: Timestamp,
) -> Result<Explanation, EngineError> {
    let subjects = &layout.subjects;
    let mut event_mapping = Mapping::default();
    for (_, envelope) in messages::<Event>(log, &layout.events, subjects.mapping()).await? {
        if let Event::MappingChanged(change) = envelope.message {
            event_mapping.apply(&change);
        }
    }
    let mapping = event_mapping.overlaid_with(configured_mapping);

    let mut state = MemberState::new(member);
    let mut history = Vec::new();
    let mut note = |at: Timestamp, kind: HistoryKind, summary: String| history.push(HistoryEntry { at, kind, summary });
    for (sequence, envelope) in messages::<Event>(log, &layout.events, subjects.event(member)).await? {
        note(envelope.occurred_at, HistoryKind::Event, describe_event(&envelope.message));
        doorsync_access::fold(&mut state, sequence.0, &envelope);
    }
    for (_, envelope) in messages::<Command>(log, &layout.commands, subjects.command(member)).await? {
        note(envelope.occurred_at, HistoryKind::Command, describe_command(&envelope.message));
        doorsync_access::record_command(&mut state, &envelope.message);
    }
    for (_, envelope) in messages::<Outcome>(log, &layout.outcomes, subjects.outcome(member)).await? {
        note(envelope.occurred_at, HistoryKind::Outcome, describe_outcome(&envelope.message));
        doorsync_access::fold_outcome(&mut state, &envelope.message);
    }
    // Commands carry the time of the events they answer, so the stable sort keeps each event
    // before the commands and outcomes that followed from it.
    history.sort_by_key(|entry| (entry.at, entry.kind as u8));

    Ok(Explanation {
        member,
        at,
        status: state.status().clone(),
        entitlements: doorsync_access::entitlements(&state, &mapping, policy),
        withheld: state.withheld().clone(),
        desired: doorsync_access::desired(&state, &mapping, policy, at),
        next_change: doorsync_access::next_change(&state, &mapping, policy, at),
        kisi: state.kisi().clone(),
        history,
    })
}

/// The members whose last known email is `email` (compared without regard to case), found by
/// reading every member event in the log.
pub async fn members_with_email(
    log: &dyn EventLog,
    layout: &Layout,
    email: &str,
) -> Result<Vec<MemberId>, EngineError> {
    let mut latest: std::collections::BTreeMap<MemberId, bool> = std::collections::BTreeMap::new();
    let mut replay = log.replay(ReplayRequest::whole(&layout.events)).await?;
    while let Some(message) = replay.try_next().await? {
        if let Read::Message(envelope) = read::<Event>(message.sequence, &message.payload)?
            && let Event::MemberChanged(changed) = envelope.message
        {
            latest.insert(changed.member, changed.email.eq_ignore_ascii_case(email));
        }
    }
    Ok(latest.into_iter().filter_map(|(member, matches)| matches.then_some(member)).collect())
}

/// The messages on one subject, decoded, with their sequences; one member's history fits in memory.
async fn messages<M>(
    log: &dyn EventLog,
    stream: &str,
    subject: String,
) -> Result<Vec<(Sequence, Envelope<M>)>, EngineError>
where
    M: doorsync_proto::WireMessage + serde::de::DeserializeOwned,
{
    let stored: Vec<StoredMessage> =
        log.replay(ReplayRequest::whole(stream).filtered([subject])).await?.try_collect().await?;
    let mut read_messages = Vec::with_capacity(stored.len());
    // Messages that are not doorsync's tell nothing about the member; the engine lists them.
    for message in stored {
        if let Read::Message(envelope) = read::<M>(message.sequence, &message.payload)? {
            read_messages.push((message.sequence, *envelope));
        }
    }
    Ok(read_messages)
}

fn describe_event(event: &Event) -> String {
    match event {
        Event::MemberChanged(changed) => {
            let active = if changed.active { "active" } else { "inactive" };
            format!("member details: {} <{}>, {active}", changed.name, changed.email)
        }
        Event::MemberRemoved(_) => "member removed in Nexudus".to_owned(),
        Event::BookingChanged(booking) => format!(
            "booking {} of resource {}: {}{}",
            booking.booking,
            booking.resource,
            span(Some(booking.starts_at), Some(booking.ends_at)),
            if booking.tentative { " (tentative)" } else { "" }
        ),
        Event::BookingCancelled(cancelled) => format!("booking {} cancelled", cancelled.booking),
        Event::PassChanged(pass) => {
            let validity = match &pass.validity {
                doorsync_proto::PassValidity::Window { from, until } => span(*from, *until),
                doorsync_proto::PassValidity::Day { date, time_zone } => format!("day pass for {date} in {time_zone}"),
            };
            let used = if pass.used_up { ", used up" } else { "" };
            format!("pass {} of product {}: {validity}{used}", pass.pass, pass.product)
        }
        Event::PassRemoved(removed) => format!("pass {} removed", removed.pass),
        Event::ContractChanged(contract) => {
            let spaces: Vec<String> = contract.spaces.iter().map(|space| space.id.to_string()).collect();
            let active = if contract.active { "" } else { ", inactive" };
            let cancelled = contract.cancelled_at.map(|at| format!(", cancelled from {at}")).unwrap_or_default();
            format!(
                "contract {} for desks/offices [{}]: {}{cancelled}{active}",
                contract.contract,
                spaces.join(", "),
                span(Some(contract.starts_at), contract.ends_at)
            )
        }
        Event::ContractRemoved(removed) => format!("contract {} removed", removed.contract),
        Event::EntitlementWithheld(withheld) => {
            format!("{} withheld: its latest version cannot be read ({})", withheld.entitlement, withheld.reason)
        }
        Event::MappingChanged(change) => {
            let source = match change.source {
                MappingSource::Resource(id) => format!("resource {id}"),
                MappingSource::PassProduct(id) => format!("pass product {id}"),
                MappingSource::FloorPlanItem(id) => format!("desk/office {id}"),
            };
            match change.group {
                Some(group) => format!("{source} connected to Kisi group {group}"),
                None => format!("{source} disconnected"),
            }
        }
    }
}

fn describe_command(command: &Command) -> String {
    match command {
        Command::EnsureUser(ensure) => format!("ensure a Kisi user for <{}>", ensure.email),
        Command::GrantGroup(grant) => {
            format!("grant Kisi group {} for {}", grant.group, span(grant.valid_from, grant.valid_until))
        }
        Command::RevokeGroup(revoke) => format!("revoke Kisi group {}", revoke.group),
        Command::SuspendUser(_) => "suspend the Kisi user".to_owned(),
        Command::RestoreUser(_) => "restore the Kisi user".to_owned(),
        Command::DeleteUser(_) => "delete the Kisi user".to_owned(),
    }
}

fn describe_outcome(outcome: &Outcome) -> String {
    match outcome {
        Outcome::UserLinked(linked) => {
            let how = if linked.created_by_doorsync { "created" } else { "found by email" };
            format!("Kisi user {} {how}", linked.kisi_user)
        }
        Outcome::GrantApplied(applied) => format!(
            "Kisi holds group {} (assignment {}) for {}",
            applied.group,
            applied.assignment,
            span(applied.valid_from, applied.valid_until)
        ),
        Outcome::Revoked(revoked) => format!("Kisi group {} revoked", revoked.group),
        Outcome::UserAccessChanged(changed) => format!("Kisi user now {:?}", changed.state).to_lowercase(),
        Outcome::Failed(failed) => {
            let kind = if failed.permanent { "failed for good (dead-lettered)" } else { "failed, will retry" };
            format!("command {} {kind}: {}", failed.command, failed.reason)
        }
    }
}

fn span(from: Option<Timestamp>, until: Option<Timestamp>) -> String {
    match (from, until) {
        (Some(from), Some(until)) => format!("{from} to {until}"),
        (Some(from), None) => format!("from {from}, no end"),
        (None, Some(until)) => format!("until {until}"),
        (None, None) => "always".to_owned(),
    }
}

fn describe_window(window: &Window, at: Timestamp) -> String {
    let state = if window.contains(at) { "open now" } else { "opens later" };
    format!("{state}, {}", span(window.from, window.until))
}

fn describe_source(source: &Source) -> String {
    match source {
        Source::Booking { booking, resource } => format!("booking {booking} of resource {resource}"),
        Source::Pass { pass, product } => format!("pass {pass} of product {product}"),
        Source::ContractSpace { contract, space } => format!("contract {contract}, desk/office {space}"),
    }
}

fn why_nothing(grant: &Grant) -> &'static str {
    match grant {
        Grant::Group { .. } => "grants access",
        Grant::NotConnected => "not connected to a Kisi group (add a [[mapping]] entry)",
        Grant::Tentative => "tentative: grants nothing until confirmed",
        Grant::UsedUp => "used up",
        Grant::Inactive => "the contract is not active",
        Grant::Empty => "its window is empty (it ends before it starts)",
        Grant::UnresolvedDay(_) => "a day pass in a time zone doorsync cannot resolve",
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.status {
            MemberStatus::Known(profile) => {
                let active = if profile.active { "active" } else { "INACTIVE: holds no access" };
                writeln!(f, "Member {} ({} <{}>, {active})", self.member, profile.name, profile.email)?;
            }
            MemberStatus::Unknown => writeln!(
                f,
                "Member {}: Nexudus has not described this member yet, so they hold no access",
                self.member
            )?,
            MemberStatus::Removed => writeln!(f, "Member {}: removed in Nexudus, holds no access", self.member)?,
        }
        writeln!(f, "As of {}", self.at)?;

        writeln!(f, "\nDoors (Kisi groups)")?;
        if self.desired.grants.is_empty() {
            writeln!(f, "  none")?;
        }
        for (group, window) in &self.desired.grants {
            writeln!(f, "  group {group}: {}", describe_window(window, self.at))?;
            for entitlement in &self.entitlements {
                if let Grant::Group { group: granted, window } = &entitlement.grant
                    && granted == group
                    && window.until.is_none_or(|until| until > self.at)
                {
                    writeln!(
                        f,
                        "    because of {}: {}",
                        describe_source(&entitlement.source),
                        span(window.from, window.until)
                    )?;
                }
            }
        }
        match &self.desired.user {
            Some(user) => {
                let access = match user.access {
                    UserAccess::Enabled => "enabled",
                    UserAccess::Suspended => "suspended (holds nothing connected)",
                    UserAccess::Deleted => "deleted (holds nothing connected)",
                };
                writeln!(f, "  Kisi user should be {access}")?;
            }
            None => writeln!(f, "  no Kisi user is needed")?,
        }
        match self.next_change {
            Some(next) => writeln!(f, "  next change at {next}")?,
            None => writeln!(f, "  no change scheduled")?,
        }

        let idle: Vec<&Entitlement> =
            self.entitlements.iter().filter(|entitlement| !matches!(entitlement.grant, Grant::Group { .. })).collect();
        if !idle.is_empty() || !self.withheld.is_empty() {
            writeln!(f, "\nGranting nothing")?;
            for entitlement in idle {
                writeln!(f, "  {}: {}", describe_source(&entitlement.source), why_nothing(&entitlement.grant))?;
            }
            for (entitlement, withheld) in &self.withheld {
                writeln!(
                    f,
                    "  {entitlement}: withheld since {}, its latest version in Nexudus cannot be read: {}",
                    withheld.since, withheld.reason
                )?;
            }
        }

        writeln!(f, "\nIn Kisi (as the writer reported)")?;
        match self.kisi.user {
            Some(user) => {
                let origin = if self.kisi.created_by_doorsync { "created by doorsync" } else { "found by email" };
                let state = self.kisi.user_state.map(|state| format!(", {state:?}").to_lowercase()).unwrap_or_default();
                writeln!(f, "  user {user} ({origin}{state})")?;
            }
            None => writeln!(f, "  no user linked yet")?,
        }
        for (group, assignment) in &self.kisi.assignments {
            writeln!(
                f,
                "  group {group}: assignment {}, {}",
                assignment.id,
                span(assignment.window.from, assignment.window.until)
            )?;
        }
        if let Some(failure) = &self.kisi.last_failure {
            let kind = if failure.permanent { "dead-lettered" } else { "being retried" };
            writeln!(f, "  last failure ({kind}): {}", failure.reason)?;
        }

        writeln!(f, "\nHistory")?;
        for entry in &self.history {
            let kind = match entry.kind {
                HistoryKind::Event => "nexudus",
                HistoryKind::Command => "command",
                HistoryKind::Outcome => "kisi   ",
            };
            writeln!(f, "  {}  {kind}  {}", entry.at, entry.summary)?;
        }
        Ok(())
    }
}
