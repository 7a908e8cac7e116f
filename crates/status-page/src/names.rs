//! What the page calls things and which clock it reads: names and zones from
//! `doorsync-catalogue` (read once per page), the zone of each Kisi group found through the
//! mapping (a group opens for the resources, passes and desks of a location), and the operator's
//! zone for the page's own clock and the history. The catalogue writes the names and times; this
//! module only picks which to use and puts the ids in small print.

use std::collections::BTreeMap;

use doorsync_access::{Mapping, Source, Window};
use doorsync_catalogue::{Catalogue, Label, LocalTimes};
use doorsync_engine::MemberListing;
use doorsync_proto::{KisiGroupId, MappingSource, MemberId, Timestamp};

use super::html::Esc;

/// Names and clocks for one page, as of `now`.
pub(crate) struct Names {
    catalogue: Catalogue,
    /// A source mapped to each group: its location's zone is the group's.
    group_sources: BTreeMap<KisiGroupId, MappingSource>,
    operator: LocalTimes,
    /// The names of the members the page links to, where the engine knows them.
    members: BTreeMap<MemberId, String>,
    pub(crate) now: Timestamp,
}

impl Names {
    /// `operator_zone` is `admin.time_zone`; without it the first location's zone, else UTC.
    pub(crate) fn new(catalogue: Catalogue, mapping: &Mapping, operator_zone: Option<&str>, now: Timestamp) -> Self {
        let sources = mapping
            .resources
            .iter()
            .map(|(resource, group)| (*group, MappingSource::Resource(*resource)))
            .chain(mapping.pass_products.iter().map(|(product, group)| (*group, MappingSource::PassProduct(*product))))
            .chain(mapping.floor_plan_items.iter().map(|(item, group)| (*group, MappingSource::FloorPlanItem(*item))));
        let mut group_sources = BTreeMap::new();
        for (group, source) in sources {
            group_sources.entry(group).or_insert(source);
        }
        let operator = LocalTimes::new(catalogue.operator_zone(operator_zone), now);
        Self { catalogue, group_sources, operator, members: BTreeMap::new(), now }
    }

    /// These names, and the names of `members` for links to them.
    pub(crate) fn with_members(mut self, members: &[MemberListing]) -> Self {
        let named = members.iter().filter_map(|listing| Some((listing.member, listing.name()?.to_owned())));
        self.members.extend(named);
        self
    }

    /// A link to the member's page, their name as its label and their id in small print; the id
    /// alone when the name is not known.
    pub(crate) fn member_link(&self, member: MemberId) -> String {
        match self.members.get(&member) {
            Some(name) => {
                format!("<a href=\"/members/{member}\">{}</a> <small class=\"id\">member {member}</small>", Esc(name))
            }
            None => format!("<a href=\"/members/{member}\">member {member}</a>"),
        }
    }

    /// Times in the operator's zone: the page's clock, the history, the system's events.
    pub(crate) fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    pub(crate) fn operator(&self) -> &LocalTimes {
        &self.operator
    }

    /// The page's clock: "13:15 Europe/London".
    pub(crate) fn clock(&self) -> String {
        self.operator.instant(self.now)
    }

    /// Times in the zone of the location whose resources, passes or desks open `group`.
    pub(crate) fn group_times(&self, group: KisiGroupId) -> LocalTimes {
        match self.group_sources.get(&group) {
            Some(source) => self.catalogue.times_for(*source, self.now),
            None => LocalTimes::new(self.catalogue.operator_zone(None), self.now),
        }
    }

    /// Times in the zone of `source`'s location.
    pub(crate) fn source_times(&self, source: &Source) -> LocalTimes {
        self.catalogue.times_for(mapping_source(source), self.now)
    }

    /// A window of `group` in its location's zone: "13:15–14:45 Europe/London".
    pub(crate) fn group_window(&self, group: KisiGroupId, window: &Window) -> String {
        self.group_times(group).window(window.from, window.until)
    }

    /// The group's name as text ("Kisi group 12" when it has none).
    pub(crate) fn group_text(&self, group: KisiGroupId) -> String {
        self.catalogue.group_label(group).to_string()
    }

    /// The group's name as HTML, its id in small print.
    pub(crate) fn group(&self, group: KisiGroupId) -> String {
        labelled(&self.catalogue.group_label(group))
    }

    /// What a booking, pass or contract is of, as text: "Room 1 · Soho", or "resource 4".
    pub(crate) fn source_text(&self, source: &Source) -> String {
        self.catalogue.source_label(mapping_source(source)).to_string()
    }

    /// A booking, pass or contract as text with its own id first: "booking 31 · Room 1 · Soho",
    /// or "booking 31 · resource 4" when what it is of has no name.
    pub(crate) fn source_text_with_id(&self, source: &Source) -> String {
        format!("{} · {}", entitlement_id(source), self.source_text(source))
    }

    /// A booking, pass or contract as HTML: what it is of, then its ids in small print
    /// ("Room 1 · Soho <small>booking 31 · resource 4</small>").
    pub(crate) fn source(&self, source: &Source) -> String {
        let label = self.catalogue.source_label(mapping_source(source));
        let ids = match label.name() {
            Some(_) => format!("{} · {}", entitlement_id(source), label.id()),
            None => entitlement_id(source),
        };
        format!("{} <small class=\"id\">{}</small>", Esc(&label), Esc(ids))
    }
}

/// A label as HTML: the name, with the id in small print; the id alone when there is no name.
pub(crate) fn labelled(label: &Label) -> String {
    match label.name() {
        Some(_) => format!("{} <small class=\"id\">{}</small>", Esc(label), Esc(label.id())),
        None => Esc(label.id()).to_string(),
    }
}

/// The booking's, pass's or contract's own id: "booking 31".
fn entitlement_id(source: &Source) -> String {
    match source {
        Source::Booking { booking, .. } => format!("booking {booking}"),
        Source::Pass { pass, .. } => format!("pass {pass}"),
        Source::ContractSpace { contract, .. } => format!("contract {contract}"),
    }
}

fn mapping_source(source: &Source) -> MappingSource {
    match source {
        Source::Booking { resource, .. } => MappingSource::Resource(*resource),
        Source::Pass { product, .. } => MappingSource::PassProduct(*product),
        Source::ContractSpace { space, .. } => MappingSource::FloorPlanItem(*space),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use doorsync_catalogue::{KisiGroup, Location, Named};
    use doorsync_proto::{BookingId, ResourceId};

    use super::*;

    /// 2026-12-01T09:15:00Z
    pub(crate) const NOW: i64 = 1_796_116_500_000;

    /// Names for tests: resource 1 is "Room 1" of "Soho" (Europe/London) and opens group 100,
    /// "Front door"; resource 2 is of "Brooklyn" (America/New_York) and opens group 200, which has
    /// no name; the operator reads Asia/Tokyo.
    pub(crate) fn names() -> Names {
        let catalogue = Catalogue::default()
            .with_location(1, Location { name: "Soho".into(), time_zone: Some("Europe/London".into()) })
            .with_location(2, Location { name: "Brooklyn".into(), time_zone: Some("America/New_York".into()) })
            .with_source(
                MappingSource::Resource(ResourceId(1)),
                Named { name: Some("Room 1".into()), location: Some(1) },
            )
            .with_source(MappingSource::Resource(ResourceId(2)), Named { name: None, location: Some(2) })
            .with_group(KisiGroupId(100), KisiGroup { name: "Front door".into(), place_id: None });
        let mut mapping = Mapping::default();
        mapping.resources.insert(ResourceId(1), KisiGroupId(100));
        mapping.resources.insert(ResourceId(2), KisiGroupId(200));
        Names::new(catalogue, &mapping, Some("Asia/Tokyo"), Timestamp::from_unix_millis(NOW))
    }

    fn at(minutes: i64) -> Timestamp {
        Timestamp::from_unix_millis(NOW + minutes * 60_000)
    }

    #[test]
    fn groups_are_named_with_their_id_in_small_print_and_timed_in_their_locations_zone() {
        let names = names();
        assert_eq!(names.group(KisiGroupId(100)), "Front door <small class=\"id\">Kisi group 100</small>");
        assert_eq!(names.group(KisiGroupId(200)), "Kisi group 200", "no name: the id is the label");
        let window = Window { from: Some(at(0)), until: Some(at(90)) };
        assert_eq!(names.group_window(KisiGroupId(100), &window), "09:15–10:45 Europe/London");
        assert_eq!(names.group_window(KisiGroupId(200), &window), "04:15–05:45 America/New_York");
        assert_eq!(names.clock(), "18:15 Asia/Tokyo", "the page's clock is the operator's");
    }

    #[test]
    fn members_are_linked_by_name_with_their_id_in_small_print() {
        let listing = MemberListing {
            member: MemberId(7),
            status: doorsync_access::MemberStatus::Known(doorsync_access::Profile {
                email: "ada@example.com".into(),
                name: "Ada <A>".into(),
                active: true,
            }),
            kisi_user: doorsync_engine::KisiUser::None,
            grants: BTreeMap::new(),
            next_change: None,
        };
        let names = names().with_members(&[listing]);
        assert_eq!(
            names.member_link(MemberId(7)),
            "<a href=\"/members/7\">Ada &lt;A&gt;</a> <small class=\"id\">member 7</small>"
        );
        assert_eq!(names.member_link(MemberId(8)), "<a href=\"/members/8\">member 8</a>");
    }

    #[test]
    fn sources_say_what_they_are_of_and_keep_their_ids_as_small_print() {
        let names = names();
        let room = Source::Booking { booking: BookingId(31), resource: ResourceId(1) };
        assert_eq!(names.source(&room), "Room 1 · Soho <small class=\"id\">booking 31 · resource 1</small>");
        let unnamed = Source::Booking { booking: BookingId(32), resource: ResourceId(9) };
        assert_eq!(names.source(&unnamed), "resource 9 <small class=\"id\">booking 32</small>");
        assert_eq!(names.source_times(&room).zone_name(), "Europe/London");
    }
}
