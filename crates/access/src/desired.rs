//! What a member should have in Kisi at a given instant, and when that next changes.

use std::collections::BTreeMap;

use doorsync_proto::{
    BookingId, ContractId, FloorPlanItemId, KisiGroupId, PassId, PassProductId, ResourceId, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::day::DaySpan;
use crate::mapping::Mapping;
use crate::policy::{AccessPolicy, NoAccessPolicy};
use crate::state::{MemberState, MemberStatus, PassTerm};

/// The Kisi user and group memberships a member should have.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Desired {
    /// `None`: doorsync has no business with a Kisi user for this member.
    pub user: Option<DesiredUser>,
    /// One window per group, since Kisi keeps one role assignment per (user, group): the merged
    /// stretch of access that is running, or else the next one to come.
    pub grants: BTreeMap<KisiGroupId, Window>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredUser {
    pub email: String,
    pub name: String,
    pub access: UserAccess,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserAccess {
    Enabled,
    /// The user exists but opens no door (`access_enabled = false`).
    Suspended,
    /// The user does not exist.
    Deleted,
}

/// A stretch of time, from `from` (inclusive) to `until` (exclusive); a `None` bound is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    pub from: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

impl Window {
    pub fn contains(&self, instant: Timestamp) -> bool {
        self.from.is_none_or(|from| from <= instant) && self.until.is_none_or(|until| instant < until)
    }
}

/// The end of a stretch of access. Ordered so that an open end comes after every instant, which
/// `Option` (whose `None` sorts first) would get backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    At(Timestamp),
    Never,
}

impl End {
    fn after(self, instant: Timestamp) -> bool {
        match self {
            Self::At(end) => end > instant,
            Self::Never => true,
        }
    }

    fn instant(self) -> Option<Timestamp> {
        match self {
            Self::At(end) => Some(end),
            Self::Never => None,
        }
    }
}

/// A stretch of access to one group; a `None` start is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Span {
    group: KisiGroupId,
    start: Option<Timestamp>,
    end: End,
}

impl Span {
    /// Whether `later` (which starts no earlier) overlaps or touches this span, so that the two
    /// are one stretch of access.
    fn joins(&self, later: &Span) -> bool {
        match (later.start, self.end) {
            (_, End::Never) | (None, _) => true,
            (Some(start), End::At(end)) => start <= end,
        }
    }
}

/// What `state`'s member should have in Kisi at `now`.
///
/// The member is in a group while any booking, pass or contract connected to it covers them; the
/// group's window is the merged stretch that contains `now`, or else the next one (written ahead
/// so that Kisi opens the door on time by itself). A member who holds nothing gets no user unless
/// doorsync already made one, which the no-access policy then suspends, deletes or leaves alone.
pub fn desired(state: &MemberState, mapping: &Mapping, policy: &AccessPolicy, now: Timestamp) -> Desired {
    let grants: BTreeMap<KisiGroupId, Window> = schedule(state, mapping, policy, now)
        .into_iter()
        .map(|span| (span.group, Window { from: span.start, until: span.end.instant() }))
        .collect();
    let user = desired_user(state, policy, !grants.is_empty());
    Desired { user, grants }
}

/// The first instant after `now` at which [`desired`] gives a different answer than at `now`, or
/// `None` if it never changes again (unless an event, outcome, mapping or policy changes it).
///
/// Only the end of a group's current (or next) stretch changes the answer: at its start the
/// stretch is already in the grants, and when it ends the group's following stretch, or no
/// grant, takes its place.
pub fn next_change(state: &MemberState, mapping: &Mapping, policy: &AccessPolicy, now: Timestamp) -> Option<Timestamp> {
    schedule(state, mapping, policy, now).into_iter().filter_map(|span| span.end.instant()).min()
}

/// Per group, the merged stretch of access that contains `now` or else the next one; sorted by
/// group.
fn schedule(state: &MemberState, mapping: &Mapping, policy: &AccessPolicy, now: Timestamp) -> Vec<Span> {
    if !state.holds_access() {
        return Vec::new();
    }
    let mut spans = entitled_spans(state, mapping, policy);
    spans.sort_unstable();
    let mut chosen: Vec<Span> = Vec::new();
    let mut merged: Option<Span> = None;
    for span in spans {
        match merged {
            Some(ref mut current) if current.group == span.group && current.joins(&span) => {
                current.end = current.end.max(span.end);
            }
            _ => {
                if let Some(finished) = merged.replace(span) {
                    choose(&mut chosen, finished, now);
                }
            }
        }
    }
    if let Some(finished) = merged {
        choose(&mut chosen, finished, now);
    }
    chosen
}

/// Keeps `stretch` if it is the first of its group (they arrive in order) not over by `now`.
fn choose(chosen: &mut Vec<Span>, stretch: Span, now: Timestamp) {
    let group_done = chosen.last().is_some_and(|last| last.group == stretch.group);
    if !group_done && stretch.end.after(now) {
        chosen.push(stretch);
    }
}

/// Every stretch of access the member's entitlements give, one per (entitlement, mapped group),
/// unmerged and unsorted; empty stretches are left out.
fn entitled_spans(state: &MemberState, mapping: &Mapping, policy: &AccessPolicy) -> Vec<Span> {
    entitlements(state, mapping, policy)
        .into_iter()
        .filter_map(|entitlement| match entitlement.grant {
            Grant::Group { group, window } => {
                Some(Span { group, start: window.from, end: window.until.map_or(End::Never, End::At) })
            }
            _ => None,
        })
        .collect()
}

/// What one of the member's bookings, passes or contract spaces grants, and if nothing, why: the
/// raw material of both [`desired`] and `doorsync explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entitlement {
    pub source: Source,
    pub grant: Grant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Booking { booking: BookingId, resource: ResourceId },
    Pass { pass: PassId, product: PassProductId },
    ContractSpace { contract: ContractId, space: FloorPlanItemId },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// The group's doors, for this window (lead, lag and pass lag applied).
    Group {
        group: KisiGroupId,
        window: Window,
    },
    /// The resource, pass product or desk/office is not connected to a Kisi group.
    NotConnected,
    Tentative,
    UsedUp,
    /// The contract is not active.
    Inactive,
    /// The window is empty (e.g. a contract cancelled before it started).
    Empty,
    /// A day pass whose time zone doorsync cannot resolve.
    UnresolvedDay(DaySpan),
}

/// Every booking, pass and contract space of the member with what it grants, in the order of the
/// member's state (bookings, passes, contracts, each by id). Whether the member holds access at
/// all (known, active) is not considered here.
pub fn entitlements(state: &MemberState, mapping: &Mapping, policy: &AccessPolicy) -> Vec<Entitlement> {
    let mut found = Vec::new();
    let window = |group: KisiGroupId, from: Option<Timestamp>, until: Option<Timestamp>| match (from, until) {
        (Some(from), Some(until)) if from >= until => Grant::Empty,
        _ => Grant::Group { group, window: Window { from, until } },
    };
    for (&booking_id, booking) in state.bookings() {
        let source = Source::Booking { booking: booking_id, resource: booking.resource };
        let grant = match mapping.resources.get(&booking.resource) {
            None => Grant::NotConnected,
            Some(_) if booking.tentative => Grant::Tentative,
            Some(&group) => {
                let timing = policy.booking_timing(booking.resource);
                window(
                    group,
                    Some(shift(booking.starts_at, -timing.lead_ms)),
                    Some(shift(booking.ends_at, timing.lag_ms)),
                )
            }
        };
        found.push(Entitlement { source, grant });
    }
    for (&pass_id, pass) in state.passes() {
        let source = Source::Pass { pass: pass_id, product: pass.product };
        let grant = match mapping.pass_products.get(&pass.product) {
            None => Grant::NotConnected,
            Some(_) if pass.used_up => Grant::UsedUp,
            Some(&group) => match pass.term {
                PassTerm::Window { from, until } => {
                    window(group, from, until.map(|until| shift(until, policy.pass_lag_ms)))
                }
                PassTerm::Day { span: DaySpan::Resolved { start, end }, .. } => {
                    window(group, Some(start), Some(shift(end, policy.pass_lag_ms)))
                }
                PassTerm::Day { span, .. } => Grant::UnresolvedDay(span),
            },
        };
        found.push(Entitlement { source, grant });
    }
    for (&contract_id, contract) in state.contracts() {
        for space in &contract.spaces {
            let source = Source::ContractSpace { contract: contract_id, space: space.id };
            let grant = match mapping.floor_plan_items.get(&space.id) {
                None => Grant::NotConnected,
                Some(_) if !contract.active => Grant::Inactive,
                Some(&group) => window(group, Some(contract.starts_at), contract.effective_end()),
            };
            found.push(Entitlement { source, grant });
        }
    }
    found
}

/// `instant` moved by `millis`, pinned at the ends of time rather than wrapping around.
fn shift(instant: Timestamp, millis: i64) -> Timestamp {
    Timestamp::from_unix_millis(instant.as_unix_millis().saturating_add(millis))
}

fn desired_user(state: &MemberState, policy: &AccessPolicy, has_grants: bool) -> Option<DesiredUser> {
    if has_grants && let MemberStatus::Known(profile) = state.status() {
        return Some(DesiredUser {
            email: profile.email.clone(),
            name: profile.name.clone(),
            access: UserAccess::Enabled,
        });
    }
    // Only a user doorsync created or linked (one it has emitted) is ever suspended or deleted;
    // for anyone else, holding nothing means doorsync keeps out of Kisi altogether.
    let emitted = state.emitted().user.as_ref()?;
    let access = match (policy.no_access, emitted.access) {
        // A deleted user has nothing left to suspend.
        (_, UserAccess::Deleted) => UserAccess::Deleted,
        (NoAccessPolicy::RemoveMembershipsOnly, access) => access,
        (NoAccessPolicy::Suspend, _) => UserAccess::Suspended,
        (NoAccessPolicy::Delete, _) => UserAccess::Deleted,
    };
    Some(DesiredUser { access, ..emitted.clone() })
}
