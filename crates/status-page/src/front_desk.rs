//! `/`: the front desk's first screen. Who can open which door now, and whose doors open in the
//! next hours, by name, door (Kisi group) and local time; a search by name or email (`?q=`) and
//! filters (`?filter=`), a page at a time (`?page=`). The search runs in the engine
//! ([`doorsync_engine::EngineHandle::find`]), so it stays quick with 50,000 members.

use std::time::Duration;

use doorsync_access::{MemberStatus, Window};
use doorsync_engine::{KisiUser, ListingFilter, MemberListing, MemberMatches};
use doorsync_proto::KisiGroupId;

use super::html::{Esc, link, pill, put, relative};
use super::names::Names;

/// Members on a page of results.
pub(crate) const MEMBERS_PER_PAGE: usize = 50;
/// Members in each list of the first screen.
pub(crate) const FIRST_SCREEN_MEMBERS: usize = 25;
/// How far ahead "opens soon" looks.
pub(crate) const SOON: Duration = Duration::from_secs(4 * 3_600);

/// The front desk's filters (`?filter=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeskFilter {
    AccessNow,
    OpensSoon,
    SuspendedInKisi,
    DeadLetters,
    ParkedRecords,
}

impl DeskFilter {
    const ALL: [Self; 5] =
        [Self::AccessNow, Self::OpensSoon, Self::SuspendedInKisi, Self::DeadLetters, Self::ParkedRecords];

    /// The filter a query names; `None` for none or one this page does not know.
    pub(crate) fn parse(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|filter| filter.key() == key)
    }

    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::AccessNow => "access-now",
            Self::OpensSoon => "opens-soon",
            Self::SuspendedInKisi => "suspended-in-kisi",
            Self::DeadLetters => "dead-letters",
            Self::ParkedRecords => "parked-records",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::AccessNow => "Has access now",
            Self::OpensSoon => "Opens in the next 4 hours",
            Self::SuspendedInKisi => "Suspended in Kisi",
            Self::DeadLetters => "Has dead letters",
            Self::ParkedRecords => "Has parked records",
        }
    }

    /// What the engine filters on; dead letters and parked records are chosen by member instead.
    pub(crate) fn engine_filter(self) -> Option<ListingFilter> {
        match self {
            Self::AccessNow => Some(ListingFilter::AccessNow),
            Self::OpensSoon => Some(ListingFilter::OpensSoon),
            Self::SuspendedInKisi => Some(ListingFilter::SuspendedInKisi),
            Self::DeadLetters | Self::ParkedRecords => None,
        }
    }
}

/// What the operator asked the front desk.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeskQuery {
    pub(crate) text: String,
    pub(crate) filter: Option<DeskFilter>,
    /// From 1.
    pub(crate) page: usize,
}

impl DeskQuery {
    /// The query as a link's parameters, at `page`.
    pub(crate) fn parameters(&self, page: usize) -> Vec<(&'static str, String)> {
        let page = if page > 1 { page.to_string() } else { String::new() };
        vec![
            ("q", self.text.clone()),
            ("filter", self.filter.map(|filter| filter.key().to_owned()).unwrap_or_default()),
            ("page", page),
        ]
    }

    /// The first screen is what the front desk shows before anything is asked.
    pub(crate) fn is_first_screen(&self) -> bool {
        self.text.trim().is_empty() && self.filter.is_none()
    }
}

/// The members the front desk lists.
pub(crate) enum Listed {
    /// Nothing asked: who has access now, and whose access opens soon.
    FirstScreen { now: Result<MemberMatches, String>, soon: Result<MemberMatches, String> },
    /// A search or a filter: a page of matches.
    Results(Result<MemberMatches, String>),
}

/// Everything the front desk shows.
pub(crate) struct FrontDesk<'a> {
    pub(crate) names: &'a Names,
    pub(crate) query: &'a DeskQuery,
    pub(crate) listed: Listed,
    /// The banner (see `banner.rs`), HTML.
    pub(crate) banner: String,
    /// Notes on what could not be read, as text.
    pub(crate) notes: Vec<String>,
}

impl FrontDesk<'_> {
    pub(crate) fn render(&self) -> String {
        let mut out = String::from("<h1>Front desk</h1>");
        out.push_str(&self.banner);
        for note in &self.notes {
            put!(&mut out, "<p class=\"note\">{}</p>", Esc(note));
        }
        self.search_form(&mut out);
        self.filters(&mut out);
        match &self.listed {
            Listed::FirstScreen { now, soon } => {
                let more = |filter: DeskFilter| link("/", &[("filter", filter.key().to_owned())]);
                self.section(&mut out, "Can open doors now", now, &more(DeskFilter::AccessNow));
                self.section(&mut out, "Doors opening in the next 4 hours", soon, &more(DeskFilter::OpensSoon));
            }
            Listed::Results(found) => self.results(&mut out, found),
        }
        out
    }

    fn search_form(&self, out: &mut String) {
        put!(
            out,
            "<form class=\"search\" method=\"get\" action=\"/\" role=\"search\"><input type=\"search\" name=\"q\" \
             value=\"{}\" placeholder=\"Name or email\" aria-label=\"Name or email\"><select name=\"filter\" \
             aria-label=\"Filter\"><option value=\"\">Everyone</option>",
            Esc(&self.query.text)
        );
        for filter in DeskFilter::ALL {
            let selected = if self.query.filter == Some(filter) { " selected" } else { "" };
            put!(out, "<option value=\"{}\"{selected}>{}</option>", filter.key(), filter.label());
        }
        out.push_str("</select><button type=\"submit\">Search</button></form>");
    }

    fn filters(&self, out: &mut String) {
        out.push_str("<nav class=\"filters\" aria-label=\"Filters\">");
        let everyone = if self.query.filter.is_none() { " aria-current=\"true\"" } else { "" };
        let text = DeskQuery { filter: None, ..self.query.clone() };
        put!(out, "<a href=\"{}\"{everyone}>Everyone</a>", Esc(link("/", &text.parameters(1))));
        for filter in DeskFilter::ALL {
            let current = if self.query.filter == Some(filter) { " aria-current=\"true\"" } else { "" };
            let query = DeskQuery { filter: Some(filter), ..self.query.clone() };
            put!(out, "<a href=\"{}\"{current}>{}</a>", Esc(link("/", &query.parameters(1))), filter.label());
        }
        out.push_str("</nav>");
    }

    /// One list of the first screen, with a link to all of it when there are more.
    fn section(&self, out: &mut String, title: &str, found: &Result<MemberMatches, String>, more: &str) {
        put!(out, "<h2>{title}</h2>");
        let found = match found {
            Ok(found) => found,
            Err(error) => return put!(out, "<p class=\"alert\">The members cannot be searched: {}</p>", Esc(error)),
        };
        unlisted_note(out, found);
        if found.listings.is_empty() {
            return out.push_str("<p class=\"muted\">Nobody.</p>");
        }
        member_table(out, self.names, &found.listings);
        if found.total > found.listings.len() {
            put!(out, "<p><a href=\"{}\">All {} →</a></p>", Esc(more), found.total);
        }
    }

    fn results(&self, out: &mut String, found: &Result<MemberMatches, String>) {
        let found = match found {
            Ok(found) => found,
            Err(error) => return put!(out, "<p class=\"alert\">The members cannot be searched: {}</p>", Esc(error)),
        };
        unlisted_note(out, found);
        if found.total == 0 {
            return out.push_str("<p class=\"muted\">No member matches.</p>");
        }
        let pager = self.pager(found);
        out.push_str(&pager);
        member_table(out, self.names, &found.listings);
        out.push_str(&pager);
    }

    fn pager(&self, found: &MemberMatches) -> String {
        let pages = found.total.div_ceil(MEMBERS_PER_PAGE).max(1);
        let page = self.query.page.clamp(1, pages);
        let first = (page - 1) * MEMBERS_PER_PAGE + 1;
        let last = (first + found.listings.len()).saturating_sub(1);
        let mut pager = format!("<div class=\"pager\"><span>{first}–{last} of {} members</span>", found.total);
        if page > 1 {
            let previous = link("/", &self.query.parameters(page - 1));
            put!(&mut pager, "<a rel=\"prev\" href=\"{}\">← previous</a>", Esc(previous));
        }
        if page < pages {
            put!(
                &mut pager,
                "<a rel=\"next\" href=\"{}\">next →</a>",
                Esc(link("/", &self.query.parameters(page + 1)))
            );
        }
        pager.push_str("</div>");
        pager
    }
}

fn unlisted_note(out: &mut String, found: &MemberMatches) {
    if found.unlisted > 0 {
        put!(
            out,
            "<p class=\"note\">{} members are still being read after a restart; they are found once read.</p>",
            found.unlisted
        );
    }
}

/// A table of members: who, their Kisi user, what opens for them now and next. On a narrow
/// screen each row is a card.
pub(crate) fn member_table(out: &mut String, names: &Names, listings: &[MemberListing]) {
    out.push_str(
        "<table class=\"members stack\"><tr><th>Member</th><th>Kisi user</th><th>Opens now</th><th>Next</th></tr>",
    );
    for listing in listings {
        member_row(out, names, listing);
    }
    out.push_str("</table>");
}

fn member_row(out: &mut String, names: &Names, listing: &MemberListing) {
    let member = listing.member;
    let (name, email, standing) = match &listing.status {
        MemberStatus::Known(profile) if profile.active => (profile.name.as_str(), profile.email.as_str(), ""),
        MemberStatus::Known(profile) => (profile.name.as_str(), profile.email.as_str(), "inactive in Nexudus"),
        MemberStatus::Unknown => ("(not described by Nexudus yet)", "", ""),
        MemberStatus::Removed => ("(removed in Nexudus)", "", ""),
    };
    let standing = if standing.is_empty() { String::new() } else { format!(" {}", pill("bad", standing)) };
    put!(
        out,
        "<tr data-member=\"{member}\"><td data-label=\"Member\"><a href=\"/members/{member}\">{}</a>{standing}<br>\
         <small>{}{}member {member}</small></td><td>{}</td>",
        Esc(name),
        Esc(email),
        if email.is_empty() { "" } else { " · " },
        kisi_user_pill(listing.kisi_user)
    );
    let (open, coming): (Vec<_>, Vec<_>) = listing
        .grants
        .iter()
        .map(|(group, window)| (*group, *window))
        .partition(|(_, window)| window.contains(names.now));
    put!(
        out,
        "<td class=\"now\" data-label=\"Opens now\">{}</td><td class=\"next\" data-label=\"Next\">{}</td></tr>",
        door_chips(names, &open, false),
        door_chips(names, &coming, true)
    );
}

/// The doors of `grants` as chips, or "nothing".
pub(crate) fn door_chips(names: &Names, grants: &[(KisiGroupId, Window)], next: bool) -> String {
    if grants.is_empty() {
        return "<span class=\"muted\">nothing</span>".to_owned();
    }
    grants.iter().map(|(group, window)| group_chip(names, *group, window, next)).collect()
}

/// A door (Kisi group) with when it closes, or, for one to come, when it is open.
fn group_chip(names: &Names, group: KisiGroupId, window: &Window, next: bool) -> String {
    let times = names.group_times(group);
    let when = match (next, window.from, window.until) {
        (true, Some(from), _) => {
            format!("{} ({})", times.window(window.from, window.until), relative(from, names.now))
        }
        (false, _, Some(until)) => format!("until {} ({})", times.instant(until), relative(until, names.now)),
        _ => times.window(window.from, window.until),
    };
    let class = if next { "group next" } else { "group" };
    // The chip is small: the group's id goes into its tooltip, and into the lists of the member page.
    format!(
        "<span class=\"{class}\" data-group=\"{group}\" title=\"Kisi group {group}\">{} <small>{}</small></span>",
        Esc(names.group_text(group)),
        Esc(when)
    )
}

/// "Kisi user: suspended", coloured by what it means for the doors.
pub(crate) fn kisi_user_pill(user: KisiUser) -> String {
    let tone = match user {
        KisiUser::Enabled => "ok",
        KisiUser::Suspended | KisiUser::Deleted => "bad",
        KisiUser::None | KisiUser::Unreported => "idle",
    };
    pill(tone, &format!("Kisi user: {}", user.label()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use doorsync_access::Profile;
    use doorsync_proto::{MemberId, Timestamp};

    use super::*;
    use crate::names::tests::{NOW, names};

    fn at(minutes: i64) -> Timestamp {
        Timestamp::from_unix_millis(NOW + minutes * 60_000)
    }

    fn ada() -> MemberListing {
        let mut grants = BTreeMap::new();
        grants.insert(KisiGroupId(100), Window { from: Some(at(-45)), until: Some(at(45)) });
        grants.insert(KisiGroupId(200), Window { from: Some(at(165)), until: Some(at(255)) });
        MemberListing {
            member: MemberId(7),
            status: MemberStatus::Known(Profile {
                email: "ada@example.com".into(),
                name: "Ada <&> Co".into(),
                active: true,
            }),
            kisi_user: KisiUser::Suspended,
            grants,
            next_change: Some(at(45)),
        }
    }

    fn matches(listings: Vec<MemberListing>, total: usize) -> MemberMatches {
        MemberMatches { total, listings, unlisted: 0 }
    }

    #[test]
    fn the_first_screen_says_who_opens_which_door_now_and_next_by_name_and_local_time() {
        let names = names();
        let query = DeskQuery::default();
        let desk = FrontDesk {
            names: &names,
            query: &query,
            listed: Listed::FirstScreen { now: Ok(matches(vec![ada()], 30)), soon: Ok(matches(vec![], 0)) },
            banner: String::new(),
            notes: vec![],
        };
        let html = desk.render();
        assert!(html.contains("<h2>Can open doors now</h2>"), "{html}");
        assert!(html.contains("<a href=\"/members/7\">Ada &lt;&amp;&gt; Co</a>"), "{html}");
        assert!(html.contains("<small>ada@example.com · member 7</small>"), "the id is small print: {html}");
        assert!(html.contains("<span class=\"pill bad\">Kisi user: suspended</span>"), "{html}");
        assert!(
            html.contains(
                "<td class=\"now\" data-label=\"Opens now\"><span class=\"group\" data-group=\"100\" title=\"Kisi group \
             100\">Front door <small>until 10:00 Europe/London (in 45 min)</small></span></td>"
            ),
            "{html}"
        );
        assert!(html.contains(
            "<span class=\"group next\" data-group=\"200\" title=\"Kisi group 200\">Kisi group 200 <small>07:00–08:30 \
             America/New_York (in 2 h 45 min)</small></span>"
        ), "{html}");
        assert!(html.contains("<a href=\"/?filter=access-now\">All 30 →</a>"), "{html}");
        assert!(html.contains("<h2>Doors opening in the next 4 hours</h2><p class=\"muted\">Nobody.</p>"));
    }

    #[test]
    fn results_are_paged_and_keep_the_search_and_filter_in_their_links() {
        let names = names();
        let query = DeskQuery { text: "ada & co".into(), filter: Some(DeskFilter::SuspendedInKisi), page: 2 };
        let desk = FrontDesk {
            names: &names,
            query: &query,
            listed: Listed::Results(Ok(matches(vec![ada()], 120))),
            banner: "<div class=\"banner\">x</div>".into(),
            notes: vec!["the dead letters cannot be read: <gone>".into()],
        };
        let html = desk.render();
        assert!(html.contains("<div class=\"banner\">x</div>"));
        assert!(html.contains("the dead letters cannot be read: &lt;gone&gt;"));
        assert!(html.contains("value=\"ada &amp; co\""), "the search stays in its box: {html}");
        assert!(html.contains("<option value=\"suspended-in-kisi\" selected>"), "{html}");
        assert!(html.contains("51–51 of 120 members"), "{html}");
        assert!(html.contains("href=\"/?q=ada%20%26%20co&amp;filter=suspended-in-kisi\">← previous"), "{html}");
        assert!(html.contains("href=\"/?q=ada%20%26%20co&amp;filter=suspended-in-kisi&amp;page=3\">next →"), "{html}");
        assert!(
            html.contains("<a href=\"/?q=ada%20%26%20co&amp;filter=suspended-in-kisi\" aria-current=\"true\">"),
            "{html}"
        );
    }

    #[test]
    fn filters_parse_from_their_keys_and_nothing_found_says_so() {
        for filter in DeskFilter::ALL {
            assert_eq!(DeskFilter::parse(filter.key()), Some(filter));
        }
        assert_eq!(DeskFilter::parse("everything"), None);
        let names = names();
        let query = DeskQuery { text: "nobody".into(), ..DeskQuery::default() };
        let empty = Listed::Results(Ok(MemberMatches { total: 0, listings: vec![], unlisted: 4 }));
        let desk = FrontDesk { names: &names, query: &query, listed: empty, banner: String::new(), notes: vec![] };
        let html = desk.render();
        assert!(html.contains("No member matches.") && html.contains("4 members are still being read"), "{html}");
    }
}
