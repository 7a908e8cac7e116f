//! `doorsync explain`: why a member can or cannot open which doors, since when and until when,
//! because of which booking, pass or contract, and what was written to Kisi, rebuilt from the
//! member's own history in the log with the same fold the engine runs.

use std::collections::BTreeMap;
use std::fmt;

use doorsync_access::{
    AccessPolicy, Desired, Entitlement, Grant, KisiRecord, Mapping, MemberState, MemberStatus, Source, UserAccess,
    Window, Withheld,
};
use doorsync_catalogue::{Catalogue, LocalTimes};
use doorsync_layout::Layout;
use doorsync_log::{EventLog, ReplayRequest, Sequence, StoredMessage};
use doorsync_proto::{
    Command, EntitlementId, Envelope, Event, FloorPlanItemId, KisiGroupId, MappingSource, MemberId, Outcome,
    PassProductId, ResourceId, Timestamp,
};
use futures::TryStreamExt;
use jiff::tz::TimeZone;

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
/// outcomes the writer reported, plus every mapping change) and explains it at `at`, in ids and
/// UTC.
pub async fn explain(
    log: &dyn EventLog,
    layout: &Layout,
    configured_mapping: &Mapping,
    policy: &AccessPolicy,
    member: MemberId,
    at: Timestamp,
) -> Result<Explanation, EngineError> {
    rebuild(log, layout, configured_mapping, policy, member, at, Words::Ids).await
}

/// [`explain`], with the history's summaries in names from `catalogue` and local times: each
/// in its location's zone, or `operator_zone` where the catalogue knows none. Show it with
/// [`Explanation::display_with`].
#[allow(clippy::too_many_arguments, reason = "explain's arguments and the names to say them in")]
pub async fn explain_named(
    log: &dyn EventLog,
    layout: &Layout,
    configured_mapping: &Mapping,
    policy: &AccessPolicy,
    member: MemberId,
    at: Timestamp,
    catalogue: &Catalogue,
    operator_zone: &TimeZone,
) -> Result<Explanation, EngineError> {
    let words = Words::Names { catalogue, now: at, zone: operator_zone, groups: &BTreeMap::new() };
    rebuild(log, layout, configured_mapping, policy, member, at, words).await
}

/// A message of the member's history, kept until the summaries can be written.
enum Recorded {
    Event(Event),
    Command(Command),
    Outcome(Outcome),
}

async fn rebuild(
    log: &dyn EventLog,
    layout: &Layout,
    configured_mapping: &Mapping,
    policy: &AccessPolicy,
    member: MemberId,
    at: Timestamp,
    words: Words<'_>,
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
    let mut recorded = Vec::new();
    for (sequence, envelope) in messages::<Event>(log, &layout.events, subjects.event(member)).await? {
        doorsync_access::fold(&mut state, sequence.0, &envelope);
        recorded.push((envelope.occurred_at, HistoryKind::Event, Recorded::Event(envelope.message)));
    }
    for (_, envelope) in messages::<Command>(log, &layout.commands, subjects.command(member)).await? {
        doorsync_access::record_command(&mut state, &envelope.message);
        // A command a window edge made necessary happened at that edge, not when the events it
        // answers were written.
        let at = envelope.window_edge.map_or(envelope.occurred_at, |edge| edge.max(envelope.occurred_at));
        recorded.push((at, HistoryKind::Command, Recorded::Command(envelope.message)));
    }
    for (_, envelope) in messages::<Outcome>(log, &layout.outcomes, subjects.outcome(member)).await? {
        doorsync_access::fold_outcome(&mut state, &envelope.message);
        recorded.push((envelope.occurred_at, HistoryKind::Outcome, Recorded::Outcome(envelope.message)));
    }
    // Commands carry the time of the events they answer, so the stable sort keeps each event
    // before the commands and outcomes that followed from it.
    recorded.sort_by_key(|(at, kind, _)| (*at, *kind as u8));

    let entitlements = doorsync_access::entitlements(&state, &mapping, policy);
    let groups = granting_sources(&entitlements);
    let words = words.with_groups(&groups);
    let history = recorded
        .into_iter()
        .map(|(at, kind, message)| {
            let summary = match &message {
                Recorded::Event(event) => describe_event(event, words),
                Recorded::Command(command) => describe_command(command, words),
                Recorded::Outcome(outcome) => describe_outcome(outcome, words),
            };
            HistoryEntry { at, kind, summary }
        })
        .collect();

    Ok(Explanation {
        member,
        at,
        status: state.status().clone(),
        entitlements,
        withheld: state.withheld().clone(),
        desired: doorsync_access::desired(&state, &mapping, policy, at),
        next_change: doorsync_access::next_change(&state, &mapping, policy, at),
        kisi: state.kisi().clone(),
        history,
    })
}

/// For each group the member is granted, the first source granting it: its location's zone
/// is the group's.
fn granting_sources(entitlements: &[Entitlement]) -> BTreeMap<KisiGroupId, MappingSource> {
    let mut groups = BTreeMap::new();
    for entitlement in entitlements {
        if let Grant::Group { group, .. } = entitlement.grant {
            groups.entry(group).or_insert_with(|| mapping_source(&entitlement.source));
        }
    }
    groups
}

fn mapping_source(source: &Source) -> MappingSource {
    match source {
        Source::Booking { resource, .. } => MappingSource::Resource(*resource),
        Source::Pass { product, .. } => MappingSource::PassProduct(*product),
        Source::ContractSpace { space, .. } => MappingSource::FloorPlanItem(*space),
    }
}

/// How ids and instants are put into words: as ids and UTC (`resource 42`, RFC 3339), or by
/// name with the id as small print and in local times with the zone named.
#[derive(Debug, Clone, Copy)]
enum Words<'a> {
    Ids,
    Names {
        catalogue: &'a Catalogue,
        /// What "today" is.
        now: Timestamp,
        /// The operator's: for what belongs to no known location.
        zone: &'a TimeZone,
        /// The source whose location each group's times are shown in.
        groups: &'a BTreeMap<KisiGroupId, MappingSource>,
    },
}

impl<'a> Words<'a> {
    fn with_groups(self, groups: &'a BTreeMap<KisiGroupId, MappingSource>) -> Self {
        match self {
            Self::Ids => Self::Ids,
            Self::Names { catalogue, now, zone, .. } => Self::Names { catalogue, now, zone, groups },
        }
    }

    /// `resource 42` with ids; `Meeting Room 1 · London (resource 42)` with names.
    fn source(self, source: MappingSource) -> String {
        match self {
            Self::Ids => match source {
                MappingSource::Resource(id) => format!("resource {id}"),
                MappingSource::PassProduct(id) => format!("product {id}"),
                MappingSource::FloorPlanItem(id) => format!("desk/office {id}"),
            },
            Self::Names { catalogue, .. } => catalogue.source_label(source).with_id(),
        }
    }

    fn resource(self, id: ResourceId) -> String {
        self.source(MappingSource::Resource(id))
    }

    fn product(self, id: PassProductId) -> String {
        self.source(MappingSource::PassProduct(id))
    }

    fn space(self, id: FloorPlanItemId) -> String {
        self.source(MappingSource::FloorPlanItem(id))
    }

    /// `group 100` with ids; `Front door (Kisi group 100)` with names.
    fn group(self, id: KisiGroupId) -> String {
        match self {
            Self::Ids => format!("group {id}"),
            Self::Names { catalogue, .. } => catalogue.group_label(id).with_id(),
        }
    }

    /// `Kisi group 100` with ids; `Front door (Kisi group 100)` with names.
    fn kisi_group(self, id: KisiGroupId) -> String {
        match self {
            Self::Ids => format!("Kisi group {id}"),
            Self::Names { .. } => self.group(id),
        }
    }

    /// Times in the zone of `source`'s location; `None` with names: the operator's.
    fn times(self, source: Option<MappingSource>) -> Option<LocalTimes> {
        match self {
            Self::Ids => None,
            Self::Names { catalogue, now, zone, .. } => {
                let located = source.and_then(|source| catalogue.zone_of(source));
                Some(LocalTimes::new(located.unwrap_or_else(|| zone.clone()), now))
            }
        }
    }

    fn group_times(self, group: KisiGroupId) -> Option<LocalTimes> {
        match self {
            Self::Ids => None,
            Self::Names { groups, .. } => self.times(groups.get(&group).copied()),
        }
    }

    /// A window of `source`: `13:15–14:45 Europe/London` with names.
    fn span(self, source: Option<MappingSource>, from: Option<Timestamp>, until: Option<Timestamp>) -> String {
        match self.times(source) {
            Some(times) => times.window(from, until),
            None => span(from, until),
        }
    }

    fn group_span(self, group: KisiGroupId, from: Option<Timestamp>, until: Option<Timestamp>) -> String {
        match self.group_times(group) {
            Some(times) => times.window(from, until),
            None => span(from, until),
        }
    }

    /// An instant in the operator's zone, named.
    fn instant(self, at: Timestamp) -> String {
        self.instant_of(None, at)
    }

    /// An instant in the zone of `source`'s location (the operator's when `None`), named.
    fn instant_of(self, source: Option<MappingSource>, at: Timestamp) -> String {
        match self.times(source) {
            Some(times) => times.instant(at),
            None => at.to_string(),
        }
    }
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

fn describe_event(event: &Event, words: Words<'_>) -> String {
    match event {
        Event::MemberChanged(changed) => {
            let active = if changed.active { "active" } else { "inactive" };
            format!("member details: {} <{}>, {active}", changed.name, changed.email)
        }
        Event::MemberRemoved(_) => "member removed in Nexudus".to_owned(),
        Event::BookingChanged(booking) => format!(
            "booking {} of {}: {}{}",
            booking.booking,
            words.resource(booking.resource),
            words.span(Some(MappingSource::Resource(booking.resource)), Some(booking.starts_at), Some(booking.ends_at)),
            if booking.tentative { " (tentative)" } else { "" }
        ),
        Event::BookingCancelled(cancelled) => format!("booking {} cancelled", cancelled.booking),
        Event::PassChanged(pass) => {
            let product = Some(MappingSource::PassProduct(pass.product));
            let validity = match &pass.validity {
                doorsync_proto::PassValidity::Window { from, until } => words.span(product, *from, *until),
                doorsync_proto::PassValidity::Day { date, time_zone } => format!("day pass for {date} in {time_zone}"),
            };
            let used = if pass.used_up { ", used up" } else { "" };
            format!("pass {} of {}: {validity}{used}", pass.pass, words.product(pass.product))
        }
        Event::PassRemoved(removed) => format!("pass {} removed", removed.pass),
        Event::ContractChanged(contract) => {
            let located = contract.spaces.first().map(|space| MappingSource::FloorPlanItem(space.id));
            let active = if contract.active { "" } else { ", inactive" };
            let cancelled = contract
                .cancelled_at
                .map(|at| format!(", cancelled from {}", words.instant_of(located, at)))
                .unwrap_or_default();
            let spaces = match words {
                Words::Ids => {
                    let ids: Vec<String> = contract.spaces.iter().map(|space| space.id.to_string()).collect();
                    format!("desks/offices [{}]", ids.join(", "))
                }
                Words::Names { .. } => {
                    let names: Vec<String> = contract.spaces.iter().map(|space| words.space(space.id)).collect();
                    names.join(", ")
                }
            };
            format!(
                "contract {} for {spaces}: {}{cancelled}{active}",
                contract.contract,
                words.span(located, Some(contract.starts_at), contract.ends_at)
            )
        }
        Event::ContractRemoved(removed) => format!("contract {} removed", removed.contract),
        Event::EntitlementWithheld(withheld) => {
            format!("{} withheld: its latest version cannot be read ({})", withheld.entitlement, withheld.reason)
        }
        Event::MappingChanged(change) => {
            let source = match (words, change.source) {
                (Words::Ids, MappingSource::PassProduct(id)) => format!("pass product {id}"),
                (_, source) => words.source(source),
            };
            match change.group {
                Some(group) => format!("{source} connected to {}", words.kisi_group(group)),
                None => format!("{source} disconnected"),
            }
        }
    }
}

fn describe_command(command: &Command, words: Words<'_>) -> String {
    match command {
        Command::EnsureUser(ensure) => format!("ensure a Kisi user for <{}>", ensure.email),
        Command::GrantGroup(grant) => format!(
            "grant {} for {}",
            words.kisi_group(grant.group),
            words.group_span(grant.group, grant.valid_from, grant.valid_until)
        ),
        Command::RevokeGroup(revoke) => format!("revoke {}", words.kisi_group(revoke.group)),
        Command::SuspendUser(_) => "suspend the Kisi user".to_owned(),
        Command::RestoreUser(_) => "restore the Kisi user".to_owned(),
        Command::DeleteUser(_) => "delete the Kisi user".to_owned(),
    }
}

fn describe_outcome(outcome: &Outcome, words: Words<'_>) -> String {
    match outcome {
        Outcome::UserLinked(linked) => {
            let how = if linked.created_by_doorsync { "created" } else { "found by email" };
            format!("Kisi user {} {how}", linked.kisi_user)
        }
        Outcome::GrantApplied(applied) => format!(
            "Kisi holds {} (assignment {}) for {}",
            words.group(applied.group),
            applied.assignment,
            words.group_span(applied.group, applied.valid_from, applied.valid_until)
        ),
        Outcome::Revoked(revoked) => format!("{} revoked", words.kisi_group(revoked.group)),
        Outcome::UserAccessChanged(changed) => {
            format!("Kisi user now {}", format!("{:?}", changed.state).to_lowercase())
        }
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

fn describe_window(window: &Window, group: KisiGroupId, at: Timestamp, words: Words<'_>) -> String {
    let state = if window.contains(at) { "open now" } else { "opens later" };
    format!("{state}, {}", words.group_span(group, window.from, window.until))
}

fn describe_source(source: &Source, words: Words<'_>) -> String {
    match source {
        Source::Booking { booking, resource } => format!("booking {booking} of {}", words.resource(*resource)),
        Source::Pass { pass, product } => format!("pass {pass} of {}", words.product(*product)),
        Source::ContractSpace { contract, space } => format!("contract {contract}, {}", words.space(*space)),
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

impl Explanation {
    /// The explanation in names from `catalogue` and local times, each window in its location's
    /// zone and the rest in `operator_zone`, with the zone named; ids as small print. Build the
    /// explanation with [`explain_named`] for its history to be in names too.
    pub fn display_with<'a>(&'a self, catalogue: &'a Catalogue, operator_zone: &'a TimeZone) -> impl fmt::Display + 'a {
        Named { explanation: self, catalogue, operator_zone }
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, words: Words<'_>) -> fmt::Result {
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
        writeln!(f, "As of {}", words.instant(self.at))?;

        writeln!(f, "\nDoors (Kisi groups)")?;
        if self.desired.grants.is_empty() {
            writeln!(f, "  none")?;
        }
        for (group, window) in &self.desired.grants {
            writeln!(f, "  {}: {}", words.group(*group), describe_window(window, *group, self.at, words))?;
            for entitlement in &self.entitlements {
                if let Grant::Group { group: granted, window } = &entitlement.grant
                    && granted == group
                    && window.until.is_none_or(|until| until > self.at)
                {
                    let source = mapping_source(&entitlement.source);
                    writeln!(
                        f,
                        "    because of {}: {}",
                        describe_source(&entitlement.source, words),
                        words.span(Some(source), window.from, window.until)
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
            Some(next) => writeln!(f, "  next change at {}", words.instant(next))?,
            None => writeln!(f, "  no change scheduled")?,
        }

        let idle: Vec<&Entitlement> =
            self.entitlements.iter().filter(|entitlement| !matches!(entitlement.grant, Grant::Group { .. })).collect();
        if !idle.is_empty() || !self.withheld.is_empty() {
            writeln!(f, "\nGranting nothing")?;
            for entitlement in idle {
                writeln!(f, "  {}: {}", describe_source(&entitlement.source, words), why_nothing(&entitlement.grant))?;
            }
            for (entitlement, withheld) in &self.withheld {
                writeln!(
                    f,
                    "  {entitlement}: withheld since {}, its latest version in Nexudus cannot be read: {}",
                    words.instant(withheld.since),
                    withheld.reason
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
                "  {}: assignment {}, {}",
                words.group(*group),
                assignment.id,
                words.group_span(*group, assignment.window.from, assignment.window.until)
            )?;
        }
        if let Some(failure) = &self.kisi.last_failure {
            let kind = if failure.permanent { "dead-lettered" } else { "being retried" };
            writeln!(f, "  last failure ({kind}): {}", failure.reason)?;
        }

        match words.times(None) {
            Some(times) => writeln!(f, "\nHistory (times in {})", times.zone_name())?,
            None => writeln!(f, "\nHistory")?,
        }
        let times = words.times(None);
        for entry in &self.history {
            let kind = match entry.kind {
                HistoryKind::Event => "nexudus",
                HistoryKind::Command => "command",
                HistoryKind::Outcome => "kisi   ",
            };
            let at = times.as_ref().map_or_else(|| entry.at.to_string(), |times| times.time(entry.at));
            writeln!(f, "  {at}  {kind}  {}", entry.summary)?;
        }
        Ok(())
    }
}

/// An [`Explanation`] in ids and UTC: what is shown where there is no catalogue.
impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, Words::Ids)
    }
}

/// [`Explanation::display_with`].
struct Named<'a> {
    explanation: &'a Explanation,
    catalogue: &'a Catalogue,
    operator_zone: &'a TimeZone,
}

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let groups = granting_sources(&self.explanation.entitlements);
        let words = Words::Names {
            catalogue: self.catalogue,
            now: self.explanation.at,
            zone: self.operator_zone,
            groups: &groups,
        };
        self.explanation.write(f, words)
    }
}

#[cfg(test)]
mod tests {
    use doorsync_catalogue::{Location, Named};
    use doorsync_proto::{ContractChanged, ContractId, FloorPlanItem, FloorPlanItemKind};

    use super::*;

    fn at(text: &str) -> Timestamp {
        let instant: jiff::Timestamp = text.parse().unwrap_or_else(|error| panic!("{text}: {error}"));
        Timestamp::from_unix_millis(instant.as_millisecond())
    }

    #[test]
    fn a_contract_is_told_in_ids_and_utc_as_before_or_by_name_in_its_locations_time() {
        let contract = Event::ContractChanged(ContractChanged {
            member: MemberId(7),
            contract: ContractId(3),
            starts_at: at("2026-07-01T08:00:00Z"),
            ends_at: None,
            cancelled_at: Some(at("2026-07-31T22:00:00Z")),
            active: true,
            spaces: vec![FloorPlanItem { id: FloorPlanItemId(20), kind: FloorPlanItemKind::Desk }],
        });
        assert_eq!(
            describe_event(&contract, Words::Ids),
            "contract 3 for desks/offices [20]: from 2026-07-01T08:00:00.000Z, no end, cancelled from \
             2026-07-31T22:00:00.000Z"
        );

        let desk = MappingSource::FloorPlanItem(FloorPlanItemId(20));
        let catalogue = Catalogue::default()
            .with_location(1, Location { name: "Soho".into(), time_zone: Some("Europe/London".into()) })
            .with_source(desk, Named { name: Some("Desk 20".into()), location: Some(1) });
        let groups = BTreeMap::new();
        let words = Words::Names {
            catalogue: &catalogue,
            now: at("2026-07-01T08:00:00Z"),
            zone: &TimeZone::UTC,
            groups: &groups,
        };
        assert_eq!(
            describe_event(&contract, words),
            "contract 3 for Desk 20 · Soho (desk/office 20): from 09:00 Europe/London, no end, cancelled from \
             Fri 31 Jul 23:00 Europe/London"
        );
    }
}
