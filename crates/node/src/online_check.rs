//! `doorsync check-config --online`: what the configuration names, checked against the accounts
//! themselves. It logs in to Nexudus (by reading what the mapping can link), checks the Kisi API
//! key with `GET /user`, checks that every mapped Kisi group exists and is visible to the key,
//! and names both sides of each `[[mapping]]` entry. Every problem says what to fix.

use std::fmt;

use doorsync_clock::SharedClock;
use doorsync_config::{Config, MappingEntry};
use doorsync_kisi::Group;

use crate::inventory::{self, NexudusInventory, Source, SourceKind};
use crate::setup;

/// What the check found: a line per account and per mapping entry, and the problems.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnlineReport {
    /// What was checked and found, for the operator to read.
    pub lines: Vec<String>,
    /// What is wrong, each with what to fix; empty when the check passed.
    pub problems: Vec<String>,
}

impl OnlineReport {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    fn found(&mut self, line: String) {
        self.lines.push(line);
    }

    fn problem(&mut self, line: String, problem: String) {
        self.lines.push(line);
        self.problems.push(problem);
    }
}

impl fmt::Display for OnlineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// Checks the accounts the configuration names; see the module's documentation. It goes on past
/// a failure where it can (a refused Kisi key does not stop the Nexudus check), so that one run
/// shows every problem.
pub async fn check_online(config: &Config, clock: SharedClock) -> OnlineReport {
    let mut report = OnlineReport::default();
    let nexudus = check_nexudus(config, clock, &mut report).await;
    let groups = check_kisi(config, &mut report).await;
    for (index, entry) in config.mapping.iter().enumerate() {
        check_entry(index, entry, nexudus.as_ref(), groups.as_deref(), &mut report);
    }
    if config.mapping.is_empty() {
        report.found("mapping: no entries (`doorsync mapping suggest` proposes some)".to_owned());
    }
    report
}

/// Logs in and reads the resources, pass products and desks the mapping can link.
async fn check_nexudus(config: &Config, clock: SharedClock, report: &mut OnlineReport) -> Option<NexudusInventory> {
    let client = match inventory::nexudus_client(config, clock) {
        Ok(client) => client,
        Err(error) => {
            report.problem("Nexudus: not checked".to_owned(), format!("Nexudus: {error}"));
            return None;
        }
    };
    match inventory::read_nexudus(&client).await {
        Ok(nexudus) => {
            let counts: Vec<String> = SourceKind::ALL
                .iter()
                .map(|&kind| match nexudus.count(kind) {
                    1 => format!("1 {}", kind.label()),
                    count => format!("{count} {}", kind.plural()),
                })
                .collect();
            let unreadable = match nexudus.unreadable {
                0 => String::new(),
                count => format!("; {} unreadable (named in the log)", crate::counted(count, "record", "records")),
            };
            report.found(format!("Nexudus: logged in; it lists {}{unreadable}", counts.join(", ")));
            Some(nexudus)
        }
        Err(error) => {
            let fix = if error.is_credentials_problem() {
                "Nexudus refused the login: check nexudus.username (or NEXUDUS_USERNAME) and the password in \
                 nexudus.password_file (or NEXUDUS_PASSWORD), and that this user may use the API"
            } else {
                "Nexudus could not be read: check nexudus.base_url and the network path to it"
            };
            report.problem("Nexudus: login FAILED".to_owned(), format!("{fix} ({error})"));
            None
        }
    }
}

/// Checks the API key with `GET /user`, then lists the groups it can see.
async fn check_kisi(config: &Config, report: &mut OnlineReport) -> Option<Vec<Group>> {
    let client = match setup::kisi_client(config) {
        Ok(client) => client,
        Err(error) => {
            report.problem("Kisi: not checked".to_owned(), format!("Kisi: {error}"));
            return None;
        }
    };
    match client.current_user().await {
        Ok(user) => {
            let organization = user
                .organization_id
                .map_or_else(String::new, |organization| format!(" of organization {organization}"));
            report.found(format!("Kisi: the API key works; it belongs to Kisi user {}{organization}", user.id));
        }
        Err(error) => {
            let fix = if error.is_credentials_problem() {
                "Kisi refused the API key: check the key in kisi.api_key_file (or KISI_API_KEY); it must be an \
                 organization owner's or administrator's"
            } else {
                "Kisi could not be reached: check kisi.base_url and the network path to it"
            };
            report.problem("Kisi: API key FAILED".to_owned(), format!("{fix} ({error})"));
            return None;
        }
    }
    match inventory::read_kisi_groups(&client).await {
        Ok(groups) => {
            report.found(format!("Kisi: the API key sees {}", crate::counted(groups.len(), "group", "groups")));
            Some(groups)
        }
        Err(error) => {
            report.problem("Kisi: groups not listed".to_owned(), format!("Kisi: {error}"));
            None
        }
    }
}

/// Names both sides of one entry, and says what is wrong with either.
fn check_entry(
    index: usize,
    entry: &MappingEntry,
    nexudus: Option<&NexudusInventory>,
    groups: Option<&[Group]>,
    report: &mut OnlineReport,
) {
    let Some((kind, id)) = entry_source(entry) else { return };
    let mut problems = Vec::new();
    let source = match nexudus.map(|nexudus| nexudus.find(kind, id)) {
        Some(Some(source)) => source.to_string(),
        Some(None) => {
            problems.push(format!(
                "mapping[{index}]: Nexudus has no {} {id}: check the id in mapping[{index}].{}",
                kind.label(),
                kind.config_key()
            ));
            format!("{} {id} (NOT IN NEXUDUS)", kind.label())
        }
        None => Source { kind, id, name: None, archived: false }.to_string(),
    };
    let group = match (entry.kisi_group, entry.kisi_group_name.as_deref(), groups) {
        (Some(group), _, None) => format!("Kisi group {group} (not checked)"),
        (None, Some(name), None) => format!("the Kisi group named \"{name}\" (not checked)"),
        (Some(wanted), _, Some(groups)) => match groups.iter().find(|group| group.id.0 == wanted) {
            Some(group) => format!("Kisi group {} \"{}\"", group.id, group.name),
            None => {
                problems.push(format!(
                    "mapping[{index}]: Kisi group {wanted} does not exist or this API key cannot see it: check the id \
                     in mapping[{index}].kisi_group, and that the group is in the key's organization"
                ));
                format!("Kisi group {wanted} (MISSING or not visible to the API key)")
            }
        },
        (None, Some(name), Some(groups)) => match Group::named(groups, name).as_slice() {
            [group] => format!("Kisi group {} \"{}\"", group.id, group.name),
            [] => {
                problems.push(format!(
                    "mapping[{index}]: no Kisi group visible to the API key is named \"{name}\": check \
                         mapping[{index}].kisi_group_name (case and spaces count)"
                ));
                format!("the Kisi group named \"{name}\" (MISSING)")
            }
            several => {
                let ids: Vec<String> = several.iter().map(|group| group.id.to_string()).collect();
                problems.push(format!(
                    "mapping[{index}]: Kisi groups {} are all named \"{name}\": map one by its id \
                         (mapping[{index}].kisi_group) or rename them in Kisi",
                    ids.join(", ")
                ));
                format!("the Kisi group named \"{name}\" (AMBIGUOUS)")
            }
        },
        (None, None, _) => "no Kisi group".to_owned(),
    };
    let line = format!("mapping[{index}]: {source} -> {group}");
    if problems.is_empty() {
        report.found(line);
    } else {
        report.lines.push(line);
        report.problems.extend(problems);
    }
}

/// What the entry links, by the one key of `resource`, `pass_product` and `floor_plan_item` it
/// has (the configuration refuses any other entry).
fn entry_source(entry: &MappingEntry) -> Option<(SourceKind, u64)> {
    match (entry.resource, entry.pass_product, entry.floor_plan_item) {
        (Some(id), _, _) => Some((SourceKind::Resource, id)),
        (None, Some(id), _) => Some((SourceKind::PassProduct, id)),
        (None, None, Some(id)) => Some((SourceKind::FloorPlanItem, id)),
        (None, None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use doorsync_proto::KisiGroupId;

    use super::*;

    fn entry(resource: u64, kisi_group: Option<u64>, kisi_group_name: Option<&str>) -> MappingEntry {
        MappingEntry {
            resource: Some(resource),
            pass_product: None,
            floor_plan_item: None,
            kisi_group,
            kisi_group_name: kisi_group_name.map(str::to_owned),
        }
    }

    fn group(id: u64, name: &str) -> Group {
        Group { id: KisiGroupId(id), name: name.to_owned(), description: None, place_id: None }
    }

    #[test]
    fn each_entry_is_named_on_both_sides_and_each_problem_says_which_key_to_fix() {
        let nexudus = NexudusInventory {
            sources: vec![Source {
                kind: SourceKind::Resource,
                id: 1,
                name: Some("Room 1".to_owned()),
                archived: false,
            }],
            unreadable: 0,
        };
        let groups = [group(10, "Lounge"), group(11, "Twin"), group(12, "Twin")];
        let mut report = OnlineReport::default();

        check_entry(0, &entry(1, Some(10), None), Some(&nexudus), Some(&groups), &mut report);
        check_entry(1, &entry(2, None, Some("Lounge")), Some(&nexudus), Some(&groups), &mut report);
        check_entry(2, &entry(1, Some(99), None), Some(&nexudus), Some(&groups), &mut report);
        check_entry(3, &entry(1, None, Some("lounge")), Some(&nexudus), Some(&groups), &mut report);
        check_entry(4, &entry(1, None, Some("Twin")), Some(&nexudus), Some(&groups), &mut report);
        check_entry(5, &entry(1, Some(10), None), None, None, &mut report);

        assert_eq!(
            report.lines,
            [
                "mapping[0]: resource 1 \"Room 1\" -> Kisi group 10 \"Lounge\"",
                "mapping[1]: resource 2 (NOT IN NEXUDUS) -> Kisi group 10 \"Lounge\"",
                "mapping[2]: resource 1 \"Room 1\" -> Kisi group 99 (MISSING or not visible to the API key)",
                "mapping[3]: resource 1 \"Room 1\" -> the Kisi group named \"lounge\" (MISSING)",
                "mapping[4]: resource 1 \"Room 1\" -> the Kisi group named \"Twin\" (AMBIGUOUS)",
                "mapping[5]: resource 1 -> Kisi group 10 (not checked)",
            ]
        );
        assert_eq!(report.problems.len(), 4, "{:#?}", report.problems);
        assert!(report.problems[0].contains("check the id in mapping[1].resource"), "{}", report.problems[0]);
        assert!(report.problems[1].contains("check the id in mapping[2].kisi_group"), "{}", report.problems[1]);
        assert!(report.problems[2].contains("check mapping[3].kisi_group_name"), "{}", report.problems[2]);
        assert!(report.problems[3].contains("Kisi groups 11, 12 are all named \"Twin\""), "{}", report.problems[3]);
    }
}
