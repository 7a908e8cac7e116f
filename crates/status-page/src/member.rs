//! `/members/{id}`: one member's access as a picture and in words: which booking, pass or
//! contract opens which door (Kisi group) when, what grants nothing and why, what Kisi holds, and
//! the member's history. Doors and sources by name, times in their location's zone; on a narrow
//! screen the list of doors reads where the picture is too small.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use doorsync_access::{
    AccessPolicy, Entitlement, Grant, Mapping, MemberState, MemberStatus, Source, UserAccess, Window,
};
use doorsync_engine::{Explanation, HistoryKind, KisiUser, MemberListing};
use doorsync_proto::{KisiGroupId, Timestamp};

use super::front_desk::{door_chips, kisi_user_pill, member_table};
use super::html::{Esc, facts, instant_from_now, pill, put, relative};
use super::names::Names;
use super::timeline::{Bar, BarKind, Lane, Row, Timeline};

const HOUR_MS: i64 = 3_600_000;
/// The picture shows from two hours ago to a day ahead.
const VIEW_BEFORE_MS: i64 = 2 * HOUR_MS;
const VIEW_AFTER_MS: i64 = 24 * HOUR_MS;
/// The newest history entries shown; `doorsync explain` prints them all.
const HISTORY_SHOWN: usize = 300;
/// A bound on the walk over a view's changes; a member has a handful of changes a day.
const MAX_CHANGES: usize = 10_000;

/// Kisi groups, each with a window of access.
pub(crate) type GroupWindows = Vec<(KisiGroupId, Window)>;

/// What the timeline shows around `now`: from its start to its end.
pub(crate) fn view(now: Timestamp) -> (Timestamp, Timestamp) {
    let at = |offset: i64| Timestamp::from_unix_millis(now.as_unix_millis() + offset);
    (at(-VIEW_BEFORE_MS), at(VIEW_AFTER_MS))
}

/// Every merged stretch of access, per group, that overlaps `start..end`: [`desired`] answers
/// with each group's current or next stretch, so asking again at each change finds them all.
///
/// [`desired`]: doorsync_access::desired
pub(crate) fn stretches(
    state: &MemberState,
    mapping: &Mapping,
    policy: &AccessPolicy,
    start: Timestamp,
    end: Timestamp,
) -> GroupWindows {
    let mut found: GroupWindows = Vec::new();
    let mut at = start;
    for _ in 0..MAX_CHANGES {
        for (group, window) in doorsync_access::desired(state, mapping, policy, at).grants {
            let in_view = window.from.is_none_or(|from| from < end);
            if in_view && !found.contains(&(group, window)) {
                found.push((group, window));
            }
        }
        match doorsync_access::next_change(state, mapping, policy, at) {
            Some(next) if next > at && next < end => at = next,
            _ => break,
        }
    }
    found.sort_by_key(|(group, window)| (*group, window.from));
    found
}

/// The page for an email no member or several members have: (404, a note) or (200, their list).
pub(crate) fn with_email(names: &Names, email: &str, members: &[MemberListing]) -> (StatusCode, String) {
    if members.is_empty() {
        let body = format!(
            "<h1>No member</h1><p>No member known to this engine has the email or id <b>{}</b>. \
             <a href=\"{}\">Search the front desk</a>.</p>",
            Esc(email),
            Esc(super::html::link("/", &[("q", email.to_owned())]))
        );
        return (StatusCode::NOT_FOUND, body);
    }
    let mut body = format!("<h1>{} members have the email {}</h1>", members.len(), Esc(email));
    member_table(&mut body, names, members);
    (StatusCode::OK, body)
}

/// What the page says of the member's Kisi user, from what the writer reported.
fn kisi_user(explanation: &Explanation) -> KisiUser {
    KisiUser::of(&explanation.kisi)
}

/// What the member page is drawn from.
pub(crate) struct MemberPage<'a> {
    pub(crate) explanation: &'a Explanation,
    /// The stretches in view from the engine's state of the member, or why there are none.
    pub(crate) stretches: Result<GroupWindows, String>,
    pub(crate) names: &'a Names,
}

impl MemberPage<'_> {
    /// The page's title: the member's name where Nexudus gave one.
    pub(crate) fn title(&self) -> String {
        match &self.explanation.status {
            MemberStatus::Known(profile) => format!("{} (member {})", profile.name, self.explanation.member),
            _ => format!("Member {}", self.explanation.member),
        }
    }

    pub(crate) fn render(&self) -> String {
        let explanation = self.explanation;
        let now = self.names.now;
        let mut out = String::new();
        self.heading(&mut out);
        let (open, coming): (GroupWindows, GroupWindows) = explanation
            .desired
            .grants
            .iter()
            .map(|(group, window)| (*group, *window))
            .partition(|(_, window)| window.contains(now));
        let user = match &explanation.desired.user {
            Some(user) => Esc(match user.access {
                UserAccess::Enabled => "enabled",
                UserAccess::Suspended => "suspended: holds nothing connected",
                UserAccess::Deleted => "deleted: holds nothing connected",
            })
            .to_string(),
            None => "not needed".to_owned(),
        };
        let next_change = explanation.next_change.map_or("none scheduled".to_owned(), |at| {
            Esc(instant_from_now(self.names.operator(), at, now)).to_string()
        });
        facts(
            &mut out,
            [
                ("Opens now", door_chips(self.names, &open, false)),
                ("Next", door_chips(self.names, &coming, true)),
                ("Next change", next_change),
                ("Kisi user should be", user),
            ],
        );
        self.doors(&mut out);
        self.picture(&mut out);
        self.entitlements(&mut out);
        self.kisi(&mut out);
        self.history(&mut out);
        out
    }

    fn heading(&self, out: &mut String) {
        let member = self.explanation.member;
        let kisi = kisi_user_pill(kisi_user(self.explanation));
        match &self.explanation.status {
            MemberStatus::Known(profile) => {
                let state =
                    if profile.active { pill("ok", "active") } else { pill("bad", "inactive: holds no access") };
                put!(
                    out,
                    "<h1>{} <span class=\"muted\">&lt;{}&gt;</span> {state} {kisi}</h1><p><small class=\"id\">Nexudus \
                     member (coworker) {member}</small></p>",
                    Esc(&profile.name),
                    Esc(&profile.email)
                );
            }
            MemberStatus::Unknown => put!(
                out,
                "<h1>Member {member} {}</h1><p>Nexudus has not described this member yet, so they hold no access.</p>",
                pill("idle", "unknown")
            ),
            MemberStatus::Removed => put!(
                out,
                "<h1>Member {member} {}</h1><p>Removed in Nexudus: holds no access.</p>",
                pill("bad", "removed")
            ),
        }
    }

    /// The stretches in view as a list, door by door, in each door's local time: what a narrow
    /// screen reads instead of the picture.
    fn doors(&self, out: &mut String) {
        out.push_str("<h2>Doors in the next 24 hours</h2>");
        let stretches = match &self.stretches {
            Ok(stretches) => stretches.clone(),
            Err(why) => {
                put!(out, "<p class=\"note\">Later stretches are not drawn: {}</p>", Esc(why));
                self.explanation.desired.grants.iter().map(|(group, window)| (*group, *window)).collect()
            }
        };
        if stretches.is_empty() {
            return out.push_str("<p class=\"muted\">No door opens for the member in this time.</p>");
        }
        out.push_str("<ul class=\"agenda\">");
        for (group, window) in &stretches {
            put!(
                out,
                "<li data-group=\"{group}\"><strong>{}</strong><br>{} {}</li>",
                self.names.group(*group),
                Esc(self.names.group_window(*group, window)),
                window_state(window, self.names.now)
            );
        }
        out.push_str("</ul>");
    }

    fn picture(&self, out: &mut String) {
        out.push_str("<h2>Timeline</h2><div class=\"timeline-box\">");
        out.push_str(&self.timeline().svg());
        out.push_str(
            "</div><p class=\"legend muted\"><span><i style=\"background:#2458c6\"></i>doors open (written to Kisi)</span>\
             <span><i style=\"background:#7d9de0\"></i>doors open later</span>\
             <span><i style=\"background:#3a9bd9\"></i>booking (with lead and lag)</span>\
             <span><i style=\"background:#2e9e6a\"></i>pass</span><span><i style=\"background:#8a5cc2\"></i>contract</span>\
             <span><i style=\"border:1.5px dashed #1d2430\"></i>what Kisi holds</span></p>",
        );
    }

    fn timeline(&self) -> Timeline {
        let explanation = self.explanation;
        let (start, end) = view(self.names.now);
        let stretches: GroupWindows = match &self.stretches {
            Ok(stretches) => stretches.clone(),
            Err(_) => explanation.desired.grants.iter().map(|(group, window)| (*group, *window)).collect(),
        };
        let mut groups: BTreeSet<KisiGroupId> = stretches.iter().map(|(group, _)| *group).collect();
        groups.extend(explanation.desired.grants.keys());
        groups.extend(explanation.kisi.assignments.keys());
        groups.extend(explanation.entitlements.iter().filter_map(|entitlement| match entitlement.grant {
            Grant::Group { group, .. } => Some(group),
            _ => None,
        }));
        let times = match groups.first() {
            Some(group) => self.names.group_times(*group),
            None => self.names.operator().clone(),
        };
        let lanes = groups.into_iter().map(|group| self.lane(group, &stretches)).collect();
        Timeline { start, end, now: self.names.now, times, lanes }
    }

    /// The lane of `group`: when its doors open, what opens them, and what Kisi holds.
    fn lane(&self, group: KisiGroupId, stretches: &GroupWindows) -> Lane {
        let explanation = self.explanation;
        let written = explanation.desired.grants.get(&group);
        let access = stretches
            .iter()
            .filter(|(of, _)| *of == group)
            .map(|(_, window)| Bar {
                window: *window,
                title: if written == Some(window) { "doors open".into() } else { "doors open later".into() },
                later: written != Some(window),
            })
            .collect();
        let mut rows =
            vec![Row { label: "doors open".into(), kind: BarKind::Access, bars: access, empty_note: "closed" }];
        for entitlement in &explanation.entitlements {
            if let Grant::Group { group: granted, window } = entitlement.grant
                && granted == group
            {
                let label = self.names.source_text_with_id(&entitlement.source);
                let bar = Bar { window, title: label.clone(), later: false };
                rows.push(Row { label, kind: source_kind(&entitlement.source), bars: vec![bar], empty_note: "" });
            }
        }
        let held = explanation.kisi.assignments.get(&group).map(|assignment| Bar {
            window: assignment.window,
            title: format!("Kisi assignment {}", assignment.id),
            later: false,
        });
        rows.push(Row {
            label: "Kisi holds".into(),
            kind: BarKind::Kisi,
            bars: held.into_iter().collect(),
            empty_note: "no assignment reported by the writer",
        });
        Lane { group, title: self.names.group_text(group), rows }
    }

    fn entitlements(&self, out: &mut String) {
        let (granting, idle): (Vec<&Entitlement>, Vec<&Entitlement>) = self
            .explanation
            .entitlements
            .iter()
            .partition(|entitlement| matches!(entitlement.grant, Grant::Group { .. }));
        out.push_str("<h2>What opens which door</h2>");
        if granting.is_empty() {
            out.push_str("<p class=\"muted\">Nothing the member holds opens a Kisi group.</p>");
        } else {
            out.push_str(
                "<table class=\"entitlements stack\"><tr><th>Source</th><th>Door (Kisi group)</th><th>Window (lead and \
                 lag applied)</th><th>State</th></tr>",
            );
            for entitlement in granting {
                if let Grant::Group { group, window } = entitlement.grant {
                    put!(
                        out,
                        "<tr><td data-label=\"Source\">{}</td><td data-label=\"Door\"><span class=\"group\">{}</span></td>\
                         <td data-label=\"Window\">{}</td><td data-label=\"State\">{}</td></tr>",
                        self.names.source(&entitlement.source),
                        self.names.group(group),
                        Esc(self.names.source_times(&entitlement.source).window(window.from, window.until)),
                        window_state(&window, self.names.now)
                    );
                }
            }
            out.push_str("</table>");
        }
        self.granting_nothing(out, &idle);
        if !matches!(&self.explanation.status, MemberStatus::Known(profile) if profile.active) {
            out.push_str(
                "<p class=\"note\">The member is not an active known member, so none of this opens a door.</p>",
            );
        }
    }

    fn granting_nothing(&self, out: &mut String, idle: &[&Entitlement]) {
        let withheld = &self.explanation.withheld;
        if idle.is_empty() && withheld.is_empty() {
            return;
        }
        out.push_str("<h3>Granting nothing</h3><table class=\"idle stack\"><tr><th>Source</th><th>Why</th></tr>");
        for entitlement in idle {
            put!(
                out,
                "<tr><td data-label=\"Source\">{}</td><td data-label=\"Why\">{}</td></tr>",
                self.names.source(&entitlement.source),
                Esc(why_nothing(&entitlement.grant))
            );
        }
        for (entitlement, withheld) in withheld {
            put!(
                out,
                "<tr class=\"withheld\"><td data-label=\"Source\">{}</td><td data-label=\"Why\">withheld since {}: its \
                 latest version in Nexudus cannot be read ({})</td></tr>",
                Esc(entitlement),
                Esc(instant_from_now(self.names.operator(), withheld.since, self.names.now)),
                Esc(&withheld.reason)
            );
        }
        out.push_str("</table>");
    }

    fn kisi(&self, out: &mut String) {
        let kisi = &self.explanation.kisi;
        out.push_str("<h2>In Kisi, as the writer reported</h2>");
        let user = match kisi.user {
            Some(user) => {
                let origin = if kisi.created_by_doorsync { "created by doorsync" } else { "found by email" };
                format!("{} <small class=\"id\">Kisi user {user}</small>", Esc(origin))
            }
            None => "none linked yet".to_owned(),
        };
        facts(out, [("User", user), ("User state", kisi_user_pill(kisi_user(self.explanation)))]);
        if !kisi.assignments.is_empty() {
            out.push_str(
                "<table class=\"assignments stack\"><tr><th>Door (Kisi group)</th><th>Valid</th><th>Assignment</th></tr>",
            );
            for (group, assignment) in &kisi.assignments {
                put!(
                    out,
                    "<tr><td data-label=\"Door\"><span class=\"group\" data-group=\"{group}\">{}</span></td>\
                     <td data-label=\"Valid\">{}</td><td data-label=\"Assignment\"><small class=\"id\">{}</small></td></tr>",
                    self.names.group(*group),
                    Esc(self.names.group_window(*group, &assignment.window)),
                    assignment.id
                );
            }
            out.push_str("</table>");
        }
        if let Some(failure) = &kisi.last_failure {
            let kind = if failure.permanent { "dead-lettered" } else { "being retried" };
            put!(
                out,
                "<p class=\"alert\">Last failure ({kind}), command <span class=\"mono\">{}</span>: {}</p>",
                Esc(&failure.command),
                Esc(&failure.reason)
            );
        }
    }

    fn history(&self, out: &mut String) {
        let history = &self.explanation.history;
        put!(out, "<h2>History <span class=\"muted\">({} entries, newest first)</span></h2>", history.len());
        if history.len() > HISTORY_SHOWN {
            put!(
                out,
                "<p class=\"muted\">The newest {HISTORY_SHOWN} are shown; <code>doorsync explain {}</code> prints them all.</p>",
                self.explanation.member
            );
        }
        out.push_str("<table class=\"history stack\"><tr><th>When</th><th>From</th><th>What</th></tr>");
        for entry in history.iter().rev().take(HISTORY_SHOWN) {
            let from = match entry.kind {
                HistoryKind::Event => "Nexudus",
                HistoryKind::Command => "doorsync",
                HistoryKind::Outcome => "Kisi",
            };
            put!(
                out,
                "<tr><td data-label=\"When\" title=\"{}\">{}</td><td data-label=\"From\">{from}</td>\
                 <td data-label=\"What\">{}</td></tr>",
                Esc(relative(entry.at, self.names.now)),
                Esc(self.names.operator().instant(entry.at)),
                Esc(&entry.summary)
            );
        }
        out.push_str("</table>");
    }
}

fn source_kind(source: &Source) -> BarKind {
    match source {
        Source::Booking { .. } => BarKind::Booking,
        Source::Pass { .. } => BarKind::Pass,
        Source::ContractSpace { .. } => BarKind::Contract,
    }
}

fn why_nothing(grant: &Grant) -> &'static str {
    match grant {
        Grant::Group { .. } => "grants access",
        Grant::NotConnected => "its resource, pass product or desk/office is connected to no Kisi group ([[mapping]])",
        Grant::Tentative => "a tentative booking grants nothing until it is confirmed",
        Grant::UsedUp => "the pass is used up",
        Grant::Inactive => "the contract is not active",
        Grant::Empty => "its window is empty: it ends before it starts",
        Grant::UnresolvedDay(_) => "a day pass in a time zone doorsync cannot resolve",
    }
}

fn window_state(window: &Window, now: Timestamp) -> String {
    if window.contains(now) {
        return match window.until {
            Some(until) => pill("ok", &format!("open, closes {}", relative(until, now))),
            None => pill("ok", "open"),
        };
    }
    match window.from {
        Some(from) if from > now => pill("idle", &format!("opens {}", relative(from, now))),
        _ => pill("idle", "over"),
    }
}

#[cfg(test)]
mod tests {
    use doorsync_access::fold;
    use doorsync_engine::HistoryEntry;
    use doorsync_proto::{
        BookingChanged, BookingId, EntitlementId, EntitlementWithheld, Envelope, Event, MemberChanged, MemberId,
        ResourceId,
    };

    use super::*;

    use crate::names::tests::{NOW, names};

    const MINUTE: i64 = 60_000;

    fn at(minutes: i64) -> Timestamp {
        Timestamp::from_unix_millis(NOW + minutes * MINUTE)
    }

    fn state_with(events: Vec<Event>) -> MemberState {
        let mut state = MemberState::new(MemberId(7));
        for (sequence, event) in events.into_iter().enumerate() {
            fold(&mut state, sequence as u64 + 1, &Envelope::new(at(-600), event).unwrap());
        }
        state
    }

    fn booking(id: u64, resource: u64, from: i64, to: i64, tentative: bool) -> Event {
        Event::BookingChanged(BookingChanged {
            member: MemberId(7),
            booking: BookingId(id),
            resource: ResourceId(resource),
            starts_at: at(from),
            ends_at: at(to),
            tentative,
        })
    }

    fn ada() -> Event {
        Event::MemberChanged(MemberChanged {
            member: MemberId(7),
            email: "ada@example.com".into(),
            name: "Ada <Lovelace>".into(),
            active: true,
        })
    }

    fn mapping() -> Mapping {
        let mut mapping = Mapping::default();
        mapping.resources.insert(ResourceId(1), KisiGroupId(100));
        mapping.resources.insert(ResourceId(2), KisiGroupId(200));
        mapping
    }

    /// Ada: in group 100 now and again tonight, in group 200 this afternoon, one booking two
    /// days out, one tentative and one of a resource connected to no group.
    fn ada_booked() -> MemberState {
        state_with(vec![
            ada(),
            booking(1, 1, -30, 30, false),
            booking(2, 2, 180, 240, false),
            booking(3, 1, 300, 360, true),
            booking(4, 9, 300, 360, false),
            booking(5, 1, 600, 660, false),
            booking(6, 1, 3_000, 3_060, false),
        ])
    }

    #[test]
    fn the_walk_finds_every_stretch_in_view_not_only_the_next_one() {
        let found = {
            let (start, end) = view(at(0));
            stretches(&ada_booked(), &mapping(), &AccessPolicy::default(), start, end)
        };
        let window = |from: i64, until: i64| Window { from: Some(at(from)), until: Some(at(until)) };
        assert_eq!(
            found,
            vec![
                (KisiGroupId(100), window(-45, 45)),
                (KisiGroupId(100), window(585, 675)),
                (KisiGroupId(200), window(165, 255)),
            ],
            "the booking two days out is outside the view"
        );
    }

    fn explanation(state: &MemberState) -> Explanation {
        let policy = AccessPolicy::default();
        let mapping = mapping();
        Explanation {
            member: MemberId(7),
            at: at(0),
            status: state.status().clone(),
            entitlements: doorsync_access::entitlements(state, &mapping, &policy),
            withheld: state.withheld().clone(),
            desired: doorsync_access::desired(state, &mapping, &policy, at(0)),
            next_change: doorsync_access::next_change(state, &mapping, &policy, at(0)),
            kisi: state.kisi().clone(),
            history: vec![HistoryEntry {
                at: at(-600),
                kind: HistoryKind::Event,
                summary: "member details: Ada <Lovelace> <ada@example.com>, active".into(),
            }],
        }
    }

    #[test]
    fn the_page_draws_each_group_with_its_sources_and_says_what_grants_nothing() {
        let state = ada_booked();
        let explanation = explanation(&state);
        let (start, end) = view(at(0));
        let found = stretches(&state, &mapping(), &AccessPolicy::default(), start, end);
        let names = names();
        let page = MemberPage { explanation: &explanation, stretches: Ok(found), names: &names };
        let html = page.render();
        assert!(
            html.contains("<h1>Ada &lt;Lovelace&gt; <span class=\"muted\">&lt;ada@example.com&gt;</span>"),
            "{html}"
        );
        assert!(html.contains("<span class=\"pill idle\">Kisi user: none</span></h1>"), "{html}");
        assert!(
            html.contains(
                "<li data-group=\"100\"><strong>Front door <small class=\"id\">Kisi group 100</small></strong><br>\
                 08:30–10:00 Europe/London"
            ),
            "the doors listed by name in their location's time: {html}"
        );
        assert!(
            html.contains("<li data-group=\"200\"><strong>Kisi group 200</strong><br>07:00–08:30 America/New_York")
        );
        assert!(html.contains("Room 1 · Soho <small class=\"id\">booking 1 · resource 1</small>"), "{html}");
        assert!(html.contains("Times in Europe/London"), "{html}");
        assert!(!html.contains("<Lovelace>"), "the name is escaped everywhere");
        assert!(html.contains("<svg class=\"timeline\""));
        assert!(html.contains("data-group=\"100\"") && html.contains("data-group=\"200\""));
        assert!(html.contains("data-label=\"booking 1 · Room 1 · Soho\""), "{html}");
        assert!(html.contains("class=\"bar access\""), "the stretches written now");
        assert!(html.contains("class=\"bar access later\""), "group 100 opens again after its current stretch");
        assert!(html.contains("a tentative booking grants nothing"), "{html}");
        assert!(html.contains(
            "resource 9 <small class=\"id\">booking 4</small></td><td data-label=\"Why\">its resource, pass product or \
             desk/office is connected to no Kisi group"
        ), "{html}");
        assert!(html.contains("no assignment reported by the writer"));
        assert!(html.contains("member details: Ada &lt;Lovelace&gt; &lt;ada@example.com&gt;, active"));
        assert!(html.contains(">08:15 Asia/Tokyo</td>"), "the history in the operator's zone: {html}");
        assert_eq!(page.title(), "Ada <Lovelace> (member 7)");
    }

    #[test]
    fn a_withheld_booking_is_said_to_grant_nothing_and_why() {
        let withheld = Event::EntitlementWithheld(EntitlementWithheld {
            member: MemberId(7),
            entitlement: EntitlementId::Booking(BookingId(1)),
            reason: "FromTime: <not a date>".into(),
        });
        let state = state_with(vec![ada(), booking(1, 1, -30, 30, false), withheld]);
        let explanation = explanation(&state);
        let names = names();
        let page = MemberPage { explanation: &explanation, stretches: Ok(Vec::new()), names: &names };
        let html = page.render();
        assert!(html.contains("Nothing the member holds opens a Kisi group."), "{html}");
        assert!(
            html.contains(
                "<tr class=\"withheld\"><td data-label=\"Source\">booking 1</td><td data-label=\"Why\">withheld since \
                 08:15 Asia/Tokyo (10 h ago): its latest version in Nexudus cannot be read (FromTime: &lt;not a \
                 date&gt;)</td></tr>"
            ),
            "{html}"
        );
    }

    #[test]
    fn an_unknown_member_is_said_to_hold_nothing() {
        let state = MemberState::new(MemberId(7));
        let explanation = explanation(&state);
        let names = names();
        let page = MemberPage {
            explanation: &explanation,
            stretches: Err("partition 3 is held by another engine".into()),
            names: &names,
        };
        let html = page.render();
        assert!(html.contains("Nexudus has not described this member yet"));
        assert!(html.contains("Later stretches are not drawn: partition 3 is held by another engine"));
        assert!(html.contains("no Kisi group in view"));
    }

    #[test]
    fn an_email_no_member_or_several_members_have_is_said_so() {
        let names = names();
        let (status, html) = with_email(&names, "nobody@example.com", &[]);
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(html.contains("<b>nobody@example.com</b>") && html.contains("href=\"/?q=nobody%40example.com\""));
        let listing = |member: u64| MemberListing {
            member: doorsync_proto::MemberId(member),
            status: ada_booked().status().clone(),
            kisi_user: KisiUser::Enabled,
            grants: Default::default(),
            next_change: None,
        };
        let (status, html) = with_email(&names, "ada@example.com", &[listing(7), listing(8)]);
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("<h1>2 members have the email ada@example.com</h1>"), "{html}");
        assert!(html.contains("<tr data-member=\"7\">") && html.contains("<tr data-member=\"8\">"), "{html}");
    }
}
