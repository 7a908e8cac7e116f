//! `doorsync mapping suggest`: the "link a Kisi group to each resource and pass" step of setting
//! doorsync up, done by name. Each Nexudus resource, pass product and desk or office is matched
//! to the Kisi group of the same name: exactly (ignoring case) first, then by the name's words
//! alone (ignoring punctuation, spacing and case). Where two groups fit equally, nothing is
//! suggested: a wrong group opens the wrong doors, so the choice is left to the operator.
//!
//! [`MappingSuggestion::to_toml`] writes `[[mapping]]` entries the configuration loads as they
//! are, each under a comment naming both sides, then what found no match on either side.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use doorsync_kisi::Group;
use doorsync_proto::KisiGroupId;

use crate::inventory::{NexudusInventory, Source};

/// How a source's name met its group's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameMatch {
    /// The same name, ignoring case.
    Exact,
    /// The same words, ignoring punctuation, spacing and case ("Room-1 " and "room 1").
    Words,
}

/// A source and the one Kisi group its name fits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggested {
    pub source: Source,
    pub group: Group,
    pub matched: NameMatch,
}

/// Why a source got no suggestion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoMatch {
    /// It has no name in Nexudus.
    Unnamed,
    /// Archived in Nexudus: nothing new is booked or sold on it.
    Archived,
    /// No Kisi group has its name.
    NoGroup,
    /// Several Kisi groups fit equally well.
    Ambiguous(Vec<Group>),
}

/// What [`suggest`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingSuggestion {
    pub suggested: Vec<Suggested>,
    pub unmatched_sources: Vec<(Source, NoMatch)>,
    /// The Kisi groups no source was matched to.
    pub unmatched_groups: Vec<Group>,
}

/// Matches every source to the Kisi group of its name; see the module's documentation.
pub fn suggest(nexudus: &NexudusInventory, groups: &[Group]) -> MappingSuggestion {
    let mut suggestion = MappingSuggestion::default();
    let mut used: BTreeSet<KisiGroupId> = BTreeSet::new();
    let mut sources: Vec<&Source> = nexudus.sources.iter().collect();
    sources.sort_by_key(|source| (source.kind, source.id));
    for source in sources {
        match match_source(source, groups) {
            Ok((group, matched)) => {
                used.insert(group.id);
                suggestion.suggested.push(Suggested { source: source.clone(), group: group.clone(), matched });
            }
            Err(reason) => suggestion.unmatched_sources.push((source.clone(), reason)),
        }
    }
    let mut unmatched_groups: Vec<Group> = groups.iter().filter(|group| !used.contains(&group.id)).cloned().collect();
    unmatched_groups.sort_by_key(|group| group.id);
    suggestion.unmatched_groups = unmatched_groups;
    suggestion
}

fn match_source<'g>(source: &Source, groups: &'g [Group]) -> Result<(&'g Group, NameMatch), NoMatch> {
    if source.archived {
        return Err(NoMatch::Archived);
    }
    let Some(name) = source.name.as_deref().filter(|name| !words(name).is_empty()) else {
        return Err(NoMatch::Unnamed);
    };
    let exact = |group: &&Group| group.name.trim().to_lowercase() == name.trim().to_lowercase();
    let same_words = |group: &&Group| words(&group.name) == words(name);
    for (fits, matched) in [(&exact as &dyn Fn(&&Group) -> bool, NameMatch::Exact), (&same_words, NameMatch::Words)] {
        let candidates: Vec<&Group> = groups.iter().filter(fits).collect();
        match candidates.as_slice() {
            [] => {}
            [group] => return Ok((group, matched)),
            several => return Err(NoMatch::Ambiguous(several.iter().map(|group| (*group).clone()).collect())),
        }
    }
    Err(NoMatch::NoGroup)
}

/// A name's words: its letters and digits in lower case, every run of anything else one space.
fn words(name: &str) -> String {
    name.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

impl MappingSuggestion {
    /// The suggestion as TOML to paste into the configuration: one `[[mapping]]` entry per
    /// match under a comment naming both sides, then the unmatched items of both sides as
    /// comments.
    pub fn to_toml(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "# doorsync mapping suggest: {} matched by name; {} and {} without a match.",
            self.suggested.len(),
            crate::counted(self.unmatched_sources.len(), "Nexudus item", "Nexudus items"),
            crate::counted(self.unmatched_groups.len(), "Kisi group", "Kisi groups")
        );
        text.push_str("# Check each entry before pasting it into the configuration.\n");
        for suggested in &self.suggested {
            let how = match suggested.matched {
                NameMatch::Exact => "",
                NameMatch::Words => " (the same words, ignoring punctuation and case)",
            };
            let _ = writeln!(
                text,
                "\n# {} -> Kisi {}{how}\n[[mapping]]\n{} = {}\nkisi_group = {}",
                comment_text(&suggested.source.to_string()),
                group_text(&suggested.group),
                suggested.source.kind.config_key(),
                suggested.source.id,
                suggested.group.id
            );
        }
        if !self.unmatched_sources.is_empty() {
            text.push_str("\n# Nexudus items without a suggestion:\n");
            for (source, reason) in &self.unmatched_sources {
                let reason = match reason {
                    NoMatch::Unnamed => "it has no name".to_owned(),
                    NoMatch::Archived => "archived".to_owned(),
                    NoMatch::NoGroup => "no Kisi group has its name".to_owned(),
                    NoMatch::Ambiguous(groups) => format!(
                        "several Kisi groups fit, pick one: {}",
                        groups.iter().map(group_text).collect::<Vec<_>>().join(", ")
                    ),
                };
                let _ = writeln!(text, "#   {}: {}", comment_text(&source.to_string()), comment_text(&reason));
            }
        }
        if !self.unmatched_groups.is_empty() {
            text.push_str("\n# Kisi groups no Nexudus item was matched to:\n");
            for group in &self.unmatched_groups {
                let _ = writeln!(text, "#   {}", group_text(group));
            }
        }
        text
    }
}

/// `group 8101 "Lounge"`, safe inside a comment.
fn group_text(group: &Group) -> String {
    comment_text(&format!("group {} \"{}\"", group.id, group.name))
}

/// A name from an account cannot end the comment it is printed in and start a line of TOML.
fn comment_text(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use doorsync_config::MappingEntry;
    use proptest::prelude::*;

    use super::*;
    use crate::inventory::SourceKind;

    fn source(kind: SourceKind, id: u64, name: &str) -> Source {
        Source { kind, id, name: Some(name.to_owned()), archived: false }
    }

    fn group(id: u64, name: &str) -> Group {
        Group { id: KisiGroupId(id), name: name.to_owned(), description: None, place_id: None }
    }

    fn matched(suggestion: &MappingSuggestion) -> Vec<(u64, u64, NameMatch)> {
        suggestion.suggested.iter().map(|found| (found.source.id, found.group.id.0, found.matched)).collect()
    }

    #[test]
    fn an_exact_name_ignoring_case_comes_before_the_same_words() {
        let nexudus = NexudusInventory {
            sources: vec![source(SourceKind::Resource, 1, "Room 1"), source(SourceKind::PassProduct, 2, "Day Pass")],
            unreadable: 0,
        };
        let groups = [group(10, "room-1"), group(11, "ROOM 1"), group(12, "  day pass! ")];

        let suggestion = suggest(&nexudus, &groups);

        assert_eq!(matched(&suggestion), [(1, 11, NameMatch::Exact), (2, 12, NameMatch::Words)]);
        assert_eq!(suggestion.unmatched_groups, [group(10, "room-1")]);
        assert!(suggestion.unmatched_sources.is_empty());
    }

    #[test]
    fn two_groups_that_fit_equally_are_never_chosen_between() {
        let nexudus = NexudusInventory {
            sources: vec![source(SourceKind::Resource, 1, "Room 1"), source(SourceKind::Resource, 2, "Lounge")],
            unreadable: 0,
        };
        let groups = [group(10, "Room-1"), group(11, "room_1"), group(12, "lounge"), group(13, "LOUNGE")];

        let suggestion = suggest(&nexudus, &groups);

        assert!(suggestion.suggested.is_empty());
        assert_eq!(
            suggestion.unmatched_sources,
            [
                (
                    source(SourceKind::Resource, 1, "Room 1"),
                    NoMatch::Ambiguous(vec![group(10, "Room-1"), group(11, "room_1")])
                ),
                (
                    source(SourceKind::Resource, 2, "Lounge"),
                    NoMatch::Ambiguous(vec![group(12, "lounge"), group(13, "LOUNGE")])
                ),
            ]
        );
    }

    #[test]
    fn unnamed_archived_and_unknown_sources_are_listed_with_their_reason() {
        let unnamed = Source { kind: SourceKind::FloorPlanItem, id: 3, name: None, archived: false };
        let archived = Source { archived: true, ..source(SourceKind::Resource, 4, "Old room") };
        let nexudus = NexudusInventory {
            sources: vec![source(SourceKind::Resource, 5, "Roof"), unnamed.clone(), archived.clone()],
            unreadable: 0,
        };

        let suggestion = suggest(&nexudus, &[group(10, "Old room"), group(11, "Rooftop")]);

        assert!(suggestion.suggested.is_empty());
        assert_eq!(
            suggestion.unmatched_sources,
            [
                (archived, NoMatch::Archived),
                (source(SourceKind::Resource, 5, "Roof"), NoMatch::NoGroup),
                (unnamed, NoMatch::Unnamed)
            ]
        );
        assert_eq!(suggestion.unmatched_groups.len(), 2);
    }

    #[test]
    fn the_toml_loads_as_the_configurations_mapping_and_names_both_sides() {
        let nexudus = NexudusInventory {
            sources: vec![
                source(SourceKind::Resource, 14, "Room 1"),
                source(SourceKind::PassProduct, 77, "Coworking"),
                source(SourceKind::FloorPlanItem, 905, "Desk 5"),
                source(SourceKind::Resource, 15, "Phone booth\n[[mapping]]\nresource = 99"),
            ],
            unreadable: 0,
        };
        let groups = [group(8101, "Room 1"), group(8102, "coworking"), group(8103, "desk #5"), group(8104, "Staff")];

        let text = suggest(&nexudus, &groups).to_toml();

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("doorsync.toml");
        std::fs::write(&file, &text).unwrap();
        let config = doorsync_config::Config::load(Some(&file)).unwrap();
        let entries: Vec<_> = config
            .mapping
            .iter()
            .map(|entry| (entry.resource, entry.pass_product, entry.floor_plan_item, entry.kisi_group))
            .collect();
        assert_eq!(
            entries,
            [
                (Some(14), None, None, Some(8101)),
                (None, Some(77), None, Some(8102)),
                (None, None, Some(905), Some(8103))
            ],
            "{text}"
        );
        assert!(text.contains("# resource 14 \"Room 1\" -> Kisi group 8101 \"Room 1\"\n"), "{text}");
        assert!(
            text.contains("desk or office 905 \"Desk 5\" -> Kisi group 8103 \"desk #5\" (the same words"),
            "{text}"
        );
        assert!(text.contains("#   group 8104 \"Staff\"\n"), "{text}");
        assert!(text.contains("#   resource 15 \"Phone booth [[mapping]] resource = 99\": no Kisi group"), "{text}");
    }

    /// Names from a small alphabet, so that they often fit each other, with what could break a
    /// TOML comment or string: quotes, brackets, `=`, `#`, backslashes and line ends.
    fn name() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[ab1 #\"'\\[\\]=\n\\\\é-]{0,8}").unwrap()
    }

    fn inventory() -> impl Strategy<Value = (NexudusInventory, Vec<Group>)> {
        let kind =
            prop_oneof![Just(SourceKind::Resource), Just(SourceKind::PassProduct), Just(SourceKind::FloorPlanItem)];
        let sources = proptest::collection::btree_map((kind, 1..50_u64), (name(), any::<bool>()), 0..8);
        let groups = proptest::collection::btree_map(1..50_u64, name(), 0..8);
        (sources, groups).prop_map(|(sources, groups)| {
            let sources = sources
                .into_iter()
                .map(|((kind, id), (name, archived))| Source { kind, id, name: Some(name), archived })
                .collect();
            (
                NexudusInventory { sources, unreadable: 0 },
                groups.into_iter().map(|(id, name)| group(id, &name)).collect(),
            )
        })
    }

    proptest! {
        /// Whatever the names, the printed entries load as the configuration's mapping, one per
        /// suggestion, each linking its source to its group.
        #[test]
        fn the_toml_loads_whatever_the_names((nexudus, groups) in inventory()) {
            let suggestion = suggest(&nexudus, &groups);
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("doorsync.toml");
            std::fs::write(&file, suggestion.to_toml()).unwrap();
            let config = doorsync_config::Config::load(Some(&file)).unwrap();
            let suggested: Vec<MappingEntry> = suggestion
                .suggested
                .iter()
                .map(|found| {
                    let id = Some(found.source.id);
                    let kind = found.source.kind;
                    MappingEntry {
                        resource: id.filter(|_| kind == SourceKind::Resource),
                        pass_product: id.filter(|_| kind == SourceKind::PassProduct),
                        floor_plan_item: id.filter(|_| kind == SourceKind::FloorPlanItem),
                        kisi_group: Some(found.group.id.0),
                        kisi_group_name: None,
                    }
                })
                .collect();
            prop_assert_eq!(config.mapping, suggested);
        }

        /// A suggestion is never a choice between groups: its group is the only one that fits
        /// as well, and every source and every group is either matched or listed.
        #[test]
        fn a_suggestion_is_the_only_group_that_fits_as_well((nexudus, groups) in inventory()) {
            let suggestion = suggest(&nexudus, &groups);
            let exact = |source: &Source, group: &Group| {
                source.name.as_deref().is_some_and(|name| name.trim().to_lowercase() == group.name.trim().to_lowercase())
            };
            let same_words = |source: &Source, group: &Group| {
                source.name.as_deref().is_some_and(|name| words(name) == words(&group.name))
            };
            for found in &suggestion.suggested {
                prop_assert!(!found.source.archived && !words(found.source.name.as_deref().unwrap_or("")).is_empty());
                let fits: &dyn Fn(&Source, &Group) -> bool = match found.matched {
                    NameMatch::Exact => &exact,
                    NameMatch::Words => {
                        prop_assert!(!groups.iter().any(|group| exact(&found.source, group)));
                        &same_words
                    }
                };
                let fitting: Vec<KisiGroupId> =
                    groups.iter().filter(|group| fits(&found.source, group)).map(|group| group.id).collect();
                prop_assert_eq!(fitting, vec![found.group.id]);
            }
            for (_, reason) in &suggestion.unmatched_sources {
                if let NoMatch::Ambiguous(candidates) = reason {
                    prop_assert!(candidates.len() >= 2);
                }
            }
            prop_assert_eq!(suggestion.suggested.len() + suggestion.unmatched_sources.len(), nexudus.sources.len());
            let matched: BTreeSet<KisiGroupId> = suggestion.suggested.iter().map(|found| found.group.id).collect();
            prop_assert_eq!(matched.len() + suggestion.unmatched_groups.len(), groups.len());
        }
    }

    #[test]
    fn words_ignore_punctuation_spacing_and_case() {
        assert_eq!(words("  Meeting-Room #2 (Soho) "), "meeting room 2 soho");
        assert_eq!(words("Café"), "café");
        assert_eq!(words("--"), "");
    }
}
