//! Fuzzing the configuration loader: whatever the file and the `DOORSYNC_<SECTION>__<KEY>`
//! variables hold, `Config::load` gives a configuration or a [`ConfigError`] whose problems each
//! name a key, where its value came from (the file, a variable that was set, or the defaults) and
//! what is wrong, and some problem names what was changed. It never panics.
//!
//! Files start from the shipped example (every key, valid) and are changed key by key (a value
//! replaced by one of another type, an edge value or nonsense; a key removed, renamed, repeated;
//! a section added) or damaged as text. The keys are read from the example, so keys added later
//! are fuzzed too. Secrets named by `*_file` keys are read from files of random content.
//!
//! Each property runs a fixed number of cases, enough for CI to finish in seconds; set
//! `PROPTEST_CASES` for a longer run (`just fuzz` does), and `PROPTEST_RNG_SEED` to replay one.
#![allow(clippy::result_large_err, reason = "figment's Jail fixes the closures' error type")]

use std::cell::RefCell;
use std::error::Error;
use std::path::Path;

use doorsync_config::{Config, ConfigError, EXAMPLE};
use figment::Jail;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};

type TestResult<T = ()> = Result<T, Box<dyn Error>>;

/// Cases per property when `PROPTEST_CASES` is not set: each loads a file in a figment jail
/// (its own directory and environment, one at a time), some 7 ms in a debug build, so a few
/// hundred keep CI to seconds.
const DEFAULT_CASES: u32 = 300;

/// `PROPTEST_CASES` when set (proptest reads it only when a test names no case count of its own),
/// else `default_cases`. Failures are not persisted to files: a found input is kept as a named
/// regression test below instead.
fn fuzz_config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(default_cases);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// One line of the example that matters: comments and blank lines are left out.
#[derive(Debug, Clone, PartialEq)]
enum Line {
    Table(String),
    ArrayTable(String),
    Entry { key: String, value: String },
}

impl Line {
    fn render(&self) -> String {
        match self {
            Self::Table(name) => format!("[{name}]"),
            Self::ArrayTable(name) => format!("[[{name}]]"),
            Self::Entry { key, value } => format!("{key} = {value}"),
        }
    }
}

/// The example's tables and entries, in order.
fn example_lines() -> Vec<Line> {
    EXAMPLE
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            if let Some(name) = line.strip_prefix("[[").and_then(|line| line.strip_suffix("]]")) {
                Some(Line::ArrayTable(name.trim().to_owned()))
            } else if let Some(name) = line.strip_prefix('[').and_then(|line| line.strip_suffix(']')) {
                Some(Line::Table(name.trim().to_owned()))
            } else {
                let (key, value) = line.split_once('=')?;
                Some(Line::Entry { key: key.trim().to_owned(), value: value.trim().to_owned() })
            }
        })
        .collect()
}

/// The table each line belongs to, `""` before the first.
fn sections_of(lines: &[Line]) -> Vec<String> {
    let mut section = String::new();
    lines
        .iter()
        .map(|line| {
            if let Line::Table(name) | Line::ArrayTable(name) = line {
                section.clone_from(name);
            }
            section.clone()
        })
        .collect()
}

/// Every `section.key` of the example.
fn example_keys() -> Vec<(String, String)> {
    let lines = example_lines();
    let sections = sections_of(&lines);
    let mut keys: Vec<(String, String)> = lines
        .iter()
        .zip(&sections)
        .filter_map(|(line, section)| match line {
            Line::Entry { key, .. } => Some((section.clone(), key.clone())),
            _ => None,
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// A TOML basic string holding `text`.
fn toml_string(text: &str) -> String {
    let mut quoted = String::from('"');
    for character in text.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            control if control.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(control))),
            other => quoted.push(other),
        }
    }
    quoted.push('"');
    quoted
}

/// Well-formed TOML values of every type, at the edges of what the keys take, and nonsense.
fn toml_value() -> impl Strategy<Value = String> {
    let texts = prop_oneof![
        // Durations, valid and not, up to and past what a `Duration` holds.
        select(vec![
            "0s",
            "1s",
            "59s",
            "1m",
            "15m",
            "1h 30m",
            "25h",
            "100ms",
            "1ns",
            "18446744073709551615s",
            "584942417355y",
            "600000000000y",
            "-5m",
            "5",
            "soon",
            "",
        ])
        .prop_map(str::to_owned),
        // Addresses and URLs.
        select(vec![
            "127.0.0.1:0",
            "0.0.0.0:65535",
            "[::1]:9090",
            "127.0.0.1:65536",
            "localhost:80",
            "https://api.kisi.io",
            "http://127.0.0.1:1",
            "ftp://api.kisi.io",
            "http://",
            "nats://127.0.0.1:4222",
            "::",
            "doorsync.*.>",
        ])
        .prop_map(str::to_owned),
        // Enum names, right and wrong.
        select(vec!["embedded", "jetstream", "bearer_token", "basic", "suspend", "delete", "Suspend", "nats"])
            .prop_map(str::to_owned),
        "\\PC{0,24}",
    ];
    prop_oneof![
        4 => texts.prop_map(|text| toml_string(&text)),
        2 => select(vec![
            "0", "1", "-1", "3", "5", "6", "1023", "1024", "65535", "4294967295", "4294967296",
            "9223372036854775807", "-9223372036854775808",
        ])
        .prop_map(str::to_owned),
        1 => any::<i64>().prop_map(|number| number.to_string()),
        1 => select(vec!["0.0", "0.2", "1.0", "1.5", "-0.5", "nan", "inf", "-inf", "1e308", "5e-324"])
            .prop_map(str::to_owned),
        1 => any::<bool>().prop_map(|flag| flag.to_string()),
        1 => select(vec!["[]", "[1, 2]", "[\"http://a:1\", 2]", "{}", "{ a = 1 }", "1979-05-27T07:32:00Z", "07:32:00"])
            .prop_map(str::to_owned),
        // Nested arrays, as deep as a hostile file would make them.
        1 => (1_usize..300).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth))),
    ]
}

/// A change to the example, key by key.
#[derive(Debug, Clone)]
enum Change {
    SetValue(Index, String),
    Remove(Index),
    Rename(Index, String),
    /// An entry added under the table at the index: a known key (repeated, if the table has it)
    /// or a new one.
    Add(Index, String, String),
    /// A table added at the end, known (so repeated) or new, with one entry.
    AddTable(String, String, String),
}

fn change(known_keys: Vec<String>, known_sections: Vec<String>) -> impl Strategy<Value = Change> {
    let key = prop_oneof![select(known_keys), "[a-z_]{1,16}"];
    let section = prop_oneof![select(known_sections), "[a-z_]{1,12}"];
    prop_oneof![
        6 => (any::<Index>(), toml_value()).prop_map(|(at, value)| Change::SetValue(at, value)),
        1 => any::<Index>().prop_map(Change::Remove),
        1 => (any::<Index>(), "[a-z_]{1,16}").prop_map(|(at, key)| Change::Rename(at, key)),
        1 => (any::<Index>(), key.clone(), toml_value()).prop_map(|(at, key, value)| Change::Add(at, key, value)),
        1 => (section, key, toml_value()).prop_map(|(section, key, value)| Change::AddTable(section, key, value)),
    ]
}

/// What an error must name: a table and a key in it (the key may be new to doorsync).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Named {
    section: String,
    key: String,
}

/// The example with `changes` applied, and the keys they touched.
fn changed_example(changes: &[Change]) -> (String, Vec<Named>) {
    let mut lines = example_lines();
    let mut named = Vec::new();
    for change in changes {
        let sections = sections_of(&lines);
        let entries: Vec<usize> =
            lines.iter().enumerate().filter(|(_, line)| matches!(line, Line::Entry { .. })).map(|(at, _)| at).collect();
        let tables: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, line)| matches!(line, Line::Table(_) | Line::ArrayTable(_)))
            .map(|(at, _)| at)
            .collect();
        let entry = |at: &Index| entries.get(at.index(entries.len().max(1))).copied();
        match change {
            Change::SetValue(at, new_value) => {
                if let Some(at) = entry(at)
                    && let Line::Entry { key, value } = &mut lines[at]
                {
                    value.clone_from(new_value);
                    named.push(Named { section: sections[at].clone(), key: key.clone() });
                }
            }
            Change::Remove(at) => {
                if let Some(at) = entry(at)
                    && let Line::Entry { key, .. } = lines.remove(at)
                {
                    named.push(Named { section: sections[at].clone(), key });
                }
            }
            Change::Rename(at, new_key) => {
                if let Some(at) = entry(at)
                    && let Line::Entry { key, .. } = &mut lines[at]
                {
                    named.push(Named { section: sections[at].clone(), key: key.clone() });
                    named.push(Named { section: sections[at].clone(), key: new_key.clone() });
                    key.clone_from(new_key);
                }
            }
            Change::Add(at, key, value) => {
                if let Some(&table) = tables.get(at.index(tables.len().max(1))) {
                    lines.insert(table + 1, Line::Entry { key: key.clone(), value: value.clone() });
                    named.push(Named { section: sections[table].clone(), key: key.clone() });
                }
            }
            Change::AddTable(section, key, value) => {
                lines.push(Line::Table(section.clone()));
                lines.push(Line::Entry { key: key.clone(), value: value.clone() });
                named.push(Named { section: section.clone(), key: key.clone() });
            }
        }
    }
    let text = lines.iter().map(Line::render).collect::<Vec<_>>().join("\n");
    (text, named)
}

/// Whether `problem` is about `named`: its key is in the same table (`mapping[2]` for a
/// mapping's key, `nexudus.requests_per_minute` for the request limits together), or its text
/// names the key (a misspelt key, a syntax error quoting the line, a check across tables).
fn is_about(problem: &doorsync_config::Problem, named: &Named) -> bool {
    let in_table = problem
        .key
        .strip_prefix(named.section.as_str())
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['));
    // A table given twice is named by its header.
    let table_named = !named.section.is_empty() && problem.problem.contains(&format!("`{}`", named.section));
    in_table || table_named || problem.problem.contains(&named.key) || problem.key.contains(&named.key)
}

/// Where a value can come from: the file, a variable that was set, or the defaults.
fn origin_is_real(origin: &str, file: &Path, variables: &[(String, String)]) -> bool {
    if origin == file.display().to_string() || origin == "the defaults" {
        return true;
    }
    let named = origin
        .strip_prefix("the environment variable ")
        .map(|one| vec![one])
        .or_else(|| origin.strip_prefix("the environment variables ").map(|several| several.split(", ").collect()));
    named.is_some_and(|named| named.iter().all(|variable| variables.iter().any(|(name, _)| name == variable)))
}

/// What every refusal must say, and that some problem is about something in `named`.
fn refusal_explains_itself(
    error: &ConfigError,
    file: &Path,
    variables: &[(String, String)],
    named: &[Named],
) -> Result<(), TestCaseError> {
    let shown = error.to_string();
    let ConfigError::Invalid { problems } = error else {
        return Err(TestCaseError::fail(format!("loading gave an error other than a list of problems: {shown}")));
    };
    prop_assert!(!problems.is_empty(), "{}", shown);
    for problem in problems {
        prop_assert!(!problem.key.trim().is_empty() && !problem.problem.trim().is_empty(), "{:?}", problem);
        prop_assert!(
            origin_is_real(&problem.origin, file, variables),
            "{:?} names an origin that is neither the file, a variable that was set, nor the defaults",
            problem
        );
        prop_assert!(shown.contains(&problem.key) && shown.contains(&problem.origin), "{}", shown);
    }
    prop_assert!(
        problems.iter().any(|problem| named.iter().any(|named| is_about(problem, named))),
        "no problem is about what was changed ({:?}): {:#?}",
        named,
        problems
    );
    Ok(())
}

/// Loads `text` as the config file with `variables` set, in a jail (its own directory and
/// environment), and checks the answer with `check`.
fn load_in_jail(
    text: &str,
    variables: &[(String, String)],
    check: impl FnOnce(&Path, Result<Config, ConfigError>) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let verdict = RefCell::new(Ok(()));
    let jailed = Jail::try_with(|jail| {
        jail.clear_env();
        for (name, value) in variables {
            jail.set_env(name, value);
        }
        let file = jail.directory().join("doorsync.toml");
        std::fs::write(&file, text).map_err(|error| error.to_string())?;
        *verdict.borrow_mut() = check(&file, Config::load(Some(&file)));
        Ok(())
    });
    jailed.map_err(|error| TestCaseError::fail(format!("the jail failed: {error}")))?;
    verdict.into_inner()
}

fn fuzz<S: Strategy>(strategy: S, cases: u32, check: impl Fn(S::Value) -> Result<(), TestCaseError>) -> TestResult {
    TestRunner::new(fuzz_config(cases)).run(&strategy, check).map_err(|error| error.to_string().into())
}

#[test]
fn the_example_read_as_lines_is_the_example() -> TestResult {
    let (text, named) = changed_example(&[]);
    assert!(named.is_empty());
    load_in_jail(&text, &[], |_, loaded| {
        prop_assert_eq!(loaded?, Config::example()?);
        Ok(())
    })
    .map_err(|error| error.to_string())?;
    let keys = example_keys();
    assert!(keys.contains(&("log".to_owned(), "partitions".to_owned())), "{keys:?}");
    assert!(keys.contains(&("mapping".to_owned(), "kisi_group".to_owned())), "{keys:?}");
    Ok(())
}

#[test]
fn a_file_changed_key_by_key_loads_or_names_what_is_wrong() -> TestResult {
    let keys = example_keys();
    let leaf_keys: Vec<String> = keys.iter().map(|(_, key)| key.clone()).collect();
    let mut sections: Vec<String> = keys.iter().map(|(section, _)| section.clone()).collect();
    sections.dedup();
    let strategy = prop::collection::vec(change(leaf_keys, sections), 1..4);
    fuzz(strategy, DEFAULT_CASES, |changes| {
        let (text, named) = changed_example(&changes);
        load_in_jail(&text, &[], |file, loaded| match loaded {
            Ok(_) => Ok(()),
            Err(error) => refusal_explains_itself(&error, file, &[], &named),
        })
    })
}

/// Damage to the file as text.
#[derive(Debug, Clone)]
enum TextDamage {
    Insert(Index, String),
    Delete(Index, usize),
    DuplicateLine(Index),
    Truncate(Index),
}

fn damaged_text(text: &str, damage: &TextDamage) -> String {
    let boundaries: Vec<usize> = text.char_indices().map(|(at, _)| at).chain([text.len()]).collect();
    let boundary = |at: &Index| boundaries[at.index(boundaries.len())];
    match damage {
        TextDamage::Insert(at, inserted) => {
            let at = boundary(at);
            format!("{}{inserted}{}", &text[..at], &text[at..])
        }
        TextDamage::Delete(at, length) => {
            let start = boundary(at);
            let end = boundaries.iter().copied().find(|&end| end >= start + length).unwrap_or(text.len());
            format!("{}{}", &text[..start], &text[end..])
        }
        TextDamage::DuplicateLine(at) => {
            let lines: Vec<&str> = text.lines().collect();
            let at = at.index(lines.len().max(1));
            let mut changed: Vec<&str> = lines.clone();
            if let Some(line) = lines.get(at) {
                changed.insert(at, line);
            }
            changed.join("\n")
        }
        TextDamage::Truncate(at) => text[..boundary(at)].to_owned(),
    }
}

#[test]
fn a_file_damaged_as_text_loads_or_is_refused_naming_the_file() -> TestResult {
    let damage = prop_oneof![
        3 => (any::<Index>(), prop_oneof!["\\PC{1,6}", "[\\[\\]=\"'{}, \n#.]{1,4}", Just("\u{0}".to_owned())])
            .prop_map(|(at, text)| TextDamage::Insert(at, text)),
        2 => (any::<Index>(), 1_usize..40).prop_map(|(at, length)| TextDamage::Delete(at, length)),
        1 => any::<Index>().prop_map(TextDamage::DuplicateLine),
        1 => any::<Index>().prop_map(TextDamage::Truncate),
    ];
    let base = prop_oneof![Just(EXAMPLE.to_owned()), Just(changed_example(&[]).0)];
    fuzz((base, prop::collection::vec(damage, 1..4)), DEFAULT_CASES, |(text, damages)| {
        let text = damages.iter().fold(text, |text, damage| damaged_text(&text, damage));
        load_in_jail(&text, &[], |file, loaded| match loaded {
            Ok(_) => Ok(()),
            Err(error) => {
                // Damage can land anywhere, so it is not known what the problem must name; only
                // that each problem names a key and a real origin.
                let anything = Named { section: String::new(), key: String::new() };
                refusal_explains_itself(&error, file, &[], &[anything])
            }
        })
    })
}

/// A `DOORSYNC_` variable: a known key (in any case, as shells and Kubernetes write them), a
/// key of a known table that does not exist, or a shape the loader must ignore or refuse.
fn variable(keys: Vec<(String, String)>) -> impl Strategy<Value = ((String, String), Named)> {
    let known = (select(keys), any::<bool>()).prop_map(|((section, key), upper)| {
        let name = format!("DOORSYNC_{section}__{key}");
        let name = if upper { name.to_uppercase() } else { name };
        (name, Named { section, key })
    });
    let odd = prop_oneof![
        "[a-z]{1,8}".prop_map(|section| (format!("DOORSYNC_{}__X", section.to_uppercase()), section)),
        Just(("DOORSYNC_LOG__PARTITIONS__EXTRA".to_owned(), "log".to_owned())),
        Just(("DOORSYNC___".to_owned(), String::new())),
        Just(("DOORSYNC_MAPPING__RESOURCE".to_owned(), "mapping".to_owned())),
        Just(("DOORSYNC_ACCESS__RESOURCE_TIMING".to_owned(), "access".to_owned())),
    ]
    .prop_map(|(name, section)| {
        let key = name.rsplit("__").next().unwrap_or_default().to_lowercase();
        (name, Named { section, key })
    });
    let value = prop_oneof![3 => toml_value(), 1 => "\\PC{0,24}"];
    (prop_oneof![4 => known, 1 => odd], value).prop_map(|((name, named), value)| ((name, value), named))
}

#[test]
fn variables_override_the_file_or_are_refused_naming_the_variable_or_its_key() -> TestResult {
    let strategy = prop::collection::vec(variable(example_keys()), 1..4);
    fuzz(strategy, DEFAULT_CASES, |set| {
        let (variables, named): (Vec<(String, String)>, Vec<Named>) = set.into_iter().unzip();
        load_in_jail(EXAMPLE, &variables, |file, loaded| match loaded {
            Ok(_) => Ok(()),
            Err(error) => refusal_explains_itself(&error, file, &variables, &named),
        })
    })
}

/// What a secret file can hold, and a path that may not exist.
#[derive(Debug, Clone)]
enum SecretFile {
    Holding(Vec<u8>),
    Missing,
    ADirectory,
}

#[test]
fn secrets_are_read_from_files_of_any_content_or_refused_naming_the_key_and_the_file() -> TestResult {
    let content = prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..40).prop_map(SecretFile::Holding),
        2 => prop_oneof![Just(b"\n".to_vec()), Just(b"\r\n\r\n".to_vec()), Just(b"s3cret\n".to_vec())]
            .prop_map(SecretFile::Holding),
        1 => Just(SecretFile::Missing),
        1 => Just(SecretFile::ADirectory),
    ];
    fuzz(prop::collection::vec(content, 4), DEFAULT_CASES / 2, |contents| {
        let keys = [
            ("nexudus", "password_file"),
            ("nexudus", "webhook_secret_file"),
            ("kisi", "api_key_file"),
            ("admin", "token_file"),
        ];
        let verdict = RefCell::new(Ok(()));
        Jail::try_with(|jail| {
            jail.clear_env();
            for ((section, key), content) in keys.iter().zip(&contents) {
                let path = jail.directory().join(key);
                match content {
                    SecretFile::Holding(bytes) => {
                        jail.create_binary(&path, bytes)?;
                    }
                    SecretFile::Missing => {}
                    SecretFile::ADirectory => {
                        jail.create_dir(&path)?;
                    }
                }
                jail.set_env(format!("DOORSYNC_{}__{}", section.to_uppercase(), key.to_uppercase()), path.display());
            }
            let config = Config::load(None).map_err(|error| error.to_string())?;
            let read = [
                ("nexudus.password_file", config.nexudus_password().map(drop)),
                ("nexudus.webhook_secret_file", config.nexudus_webhook_secret().map(drop)),
                ("kisi.api_key_file", config.kisi_api_key().map(drop)),
                ("admin.token_file", config.admin_token().map(drop)),
            ];
            *verdict.borrow_mut() =
                read.into_iter().zip(&contents).try_for_each(|((key, result), content)| match (result, content) {
                    (Ok(()), SecretFile::Holding(bytes)) => {
                        let text = std::str::from_utf8(bytes).map_err(|_| TestCaseError::fail("read as text"))?;
                        prop_assert!(!text.trim_end_matches(['\r', '\n']).is_empty(), "{key}: an empty secret");
                        Ok(())
                    }
                    (Ok(()), _) => Err(TestCaseError::fail(format!("{key}: read a secret from no file"))),
                    (Err(ref error @ ConfigError::UnreadableSecret { key: named, ref file, .. }), _)
                    | (Err(ref error @ ConfigError::EmptySecret { key: named, ref file }), _) => {
                        prop_assert_eq!(named, key);
                        prop_assert!(file.ends_with(key.split('.').nth(1).unwrap_or_default()), "{:?}", file);
                        let why = error.to_string();
                        prop_assert!(
                            why.contains(&file.display().to_string()) && !why.trim_end().ends_with(':'),
                            "{}",
                            why
                        );
                        Ok(())
                    }
                    (Err(other), _) => Err(TestCaseError::fail(format!("{key}: {other}"))),
                });
            Ok(())
        })
        .map_err(|error| TestCaseError::fail(error.to_string()))?;
        verdict.into_inner()
    })
}

/// Loads the example with `variables` set and returns the problems it was refused with.
fn problems_with(variables: &[(&str, &str)]) -> TestResult<Vec<doorsync_config::Problem>> {
    let variables: Vec<(String, String)> =
        variables.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
    let found = RefCell::new(Vec::new());
    load_in_jail(EXAMPLE, &variables, |_, loaded| {
        match loaded {
            Err(ConfigError::Invalid { problems }) => *found.borrow_mut() = problems,
            other => return Err(TestCaseError::fail(format!("expected problems, got {other:?}"))),
        }
        Ok(())
    })
    .map_err(|error| error.to_string())?;
    Ok(found.into_inner())
}

/// Found by `variables_override_the_file_or_are_refused_naming_the_variable_or_its_key`: figment
/// panicked on this value (a quoted string with a non-ASCII character before an escape), and
/// silently dropped part of values like the second.
#[test]
fn a_quoted_variable_with_an_escape_after_a_non_ascii_character_is_refused_not_misread() -> TestResult {
    for (name, value) in [("DOORSYNC_access__lag", "\"𖠀¡AჇ\u{bd7}\\\"\""), ("DOORSYNC_KISI__ACCOUNT", "\"éa\\n\"")]
    {
        let problems = problems_with(&[(name, value)])?;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].origin, format!("the environment variable {name}"), "{problems:?}");
        assert!(problems[0].problem.contains("leave out the quotes"), "{problems:?}");
    }
    Ok(())
}

/// Found by the same property: a value of the wrong shape was said to come from
/// `DOORSYNC_MAPPING` (or `DOORSYNC_ACCESS__RESOURCE_TIMING__0`), a variable nobody set, instead
/// of the one that was.
#[test]
fn a_variable_of_the_wrong_shape_is_named_as_it_was_set() -> TestResult {
    for (name, value) in [("DOORSYNC_MAPPING__RESOURCE", "\"0s\""), ("DOORSYNC_ACCESS__RESOURCE_TIMING", "[1, 2]")] {
        let problems = problems_with(&[(name, value)])?;
        let origin = format!("the environment variable {name}");
        assert!(problems.iter().any(|problem| problem.origin == origin), "{problems:?}");
    }
    Ok(())
}

/// Found by the same property: figment's parser recursed once per level of this value and
/// overflowed the stack, aborting the process.
#[test]
fn a_variable_nested_too_deeply_is_refused_not_a_stack_overflow() -> TestResult {
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let problems = problems_with(&[("DOORSYNC_ADMIN__PEERS", &deep)])?;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "admin.peers");
    assert!(problems[0].problem.contains("deeper than"), "{problems:?}");
    // Nesting that keys do take still loads.
    let peers = "[\"http://writer:9090\", \"http://[::1]:9090\"]";
    let mapping = "[{ resource = 1, kisi_group = 2 }]";
    let loaded = RefCell::new(None);
    let variables =
        [("DOORSYNC_ADMIN__PEERS".to_owned(), peers.to_owned()), ("DOORSYNC_MAPPING".to_owned(), mapping.to_owned())];
    load_in_jail(EXAMPLE, &variables, |_, config| {
        *loaded.borrow_mut() = Some(config.map(|config| config.admin.peers));
        Ok(())
    })
    .map_err(|error| error.to_string())?;
    let peers = loaded.into_inner().ok_or("not loaded")??;
    assert_eq!(peers, ["http://writer:9090", "http://[::1]:9090"]);
    Ok(())
}
