//! Fuzzing the envelope decoder: whatever bytes arrive from the log, `decode` answers with an
//! envelope or with a [`DecodeError`] that says what was wrong, and never panics.
//!
//! Inputs start from the golden vectors (one valid envelope of every message type), so the fuzzer
//! spends its time close to what the decoder accepts: decoded into a MessagePack tree and mutated
//! there (a field's type changed, a field removed, added or duplicated, a huge number, deep
//! nesting, a tag from another family), then damaged byte by byte (bits flipped, bytes inserted
//! or deleted, truncated, spliced with another vector). Plain random bytes are fuzzed too.
//!
//! Each property runs a fixed number of cases, enough for CI to finish in seconds; set
//! `PROPTEST_CASES` for a longer run (`just fuzz` does), and `PROPTEST_RNG_SEED` to replay one.

use std::collections::BTreeSet;
use std::error::Error;
use std::fmt;
use std::path::PathBuf;

use doorsync_proto::{Command, DecodeError, Event, MessageId, Outcome, SCHEMA_VERSION, WireMessage, decode};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

type TestResult<T = ()> = Result<T, Box<dyn Error>>;

/// Cases per property when `PROPTEST_CASES` is not set: a few seconds in a debug build.
const DEFAULT_CASES: u32 = 2_000;

/// `PROPTEST_CASES` when set (proptest reads it only when a test names no case count of its own),
/// else `default_cases`. Failures are not persisted to files: a found input is kept as a named
/// regression test below instead.
fn fuzz_config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(default_cases);
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// One MessagePack value, for building and mutating envelopes below the level of the types.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Nil,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Bin(Vec<u8>),
    Array(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    fn encode(&self) -> Result<Vec<u8>, rmp_serde::encode::Error> {
        rmp_serde::to_vec(self)
    }

    fn count(&self) -> usize {
        1 + match self {
            Self::Array(items) => items.iter().map(Self::count).sum(),
            Self::Map(entries) => entries.iter().map(|(key, value)| key.count() + value.count()).sum(),
            _ => 0,
        }
    }

    /// Applies `change` to the node at pre-order position `target`; false when there is none.
    fn at_mut(&mut self, target: &mut usize, change: &mut dyn FnMut(&mut Node)) -> bool {
        if *target == 0 {
            change(self);
            return true;
        }
        *target -= 1;
        match self {
            Self::Array(items) => items.iter_mut().any(|item| item.at_mut(target, change)),
            Self::Map(entries) => {
                entries.iter_mut().any(|(key, value)| key.at_mut(target, change) || value.at_mut(target, change))
            }
            _ => false,
        }
    }

    fn field_mut(&mut self, name: &str) -> Option<&mut Node> {
        let Self::Map(entries) = self else { return None };
        entries.iter_mut().find(|(key, _)| *key == Node::Str(name.to_owned())).map(|(_, value)| value)
    }

    /// Every text used as a map key, and every value of a `type` field, anywhere in the tree.
    fn collect_names(&self, keys: &mut BTreeSet<String>, tags: &mut BTreeSet<String>) {
        match self {
            Self::Array(items) => items.iter().for_each(|item| item.collect_names(keys, tags)),
            Self::Map(entries) => {
                for (key, value) in entries {
                    if let Self::Str(key) = key {
                        keys.insert(key.clone());
                        if let (true, Self::Str(tag)) = (key == "type", value) {
                            tags.insert(tag.clone());
                        }
                    }
                    value.collect_names(keys, tags);
                }
            }
            _ => {}
        }
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Nil => serializer.serialize_unit(),
            Self::Bool(value) => serializer.serialize_bool(*value),
            Self::Int(value) => serializer.serialize_i64(*value),
            Self::UInt(value) => serializer.serialize_u64(*value),
            Self::Float(value) => serializer.serialize_f64(*value),
            Self::Str(value) => serializer.serialize_str(value),
            Self::Bin(value) => serializer.serialize_bytes(value),
            Self::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                items.iter().try_for_each(|item| seq.serialize_element(item))?;
                seq.end()
            }
            Self::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                entries.iter().try_for_each(|(key, value)| map.serialize_entry(key, value))?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any MessagePack value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Nil)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Nil)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Node, E> {
        Ok(Node::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Node, E> {
        Ok(Node::Int(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Node, E> {
        Ok(Node::UInt(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Node, E> {
        Ok(Node::Float(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Node, E> {
        Ok(Node::Str(value.to_owned()))
    }

    fn visit_bytes<E: de::Error>(self, value: &[u8]) -> Result<Node, E> {
        Ok(Node::Bin(value.to_vec()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Node::Map(entries))
    }
}

/// The golden vectors, as bytes and as trees, with the field names and type tags they use.
#[derive(Debug)]
struct Seeds {
    /// (file name, bytes, tree)
    vectors: Vec<(String, Vec<u8>, Node)>,
    field_names: Vec<String>,
    tags: Vec<String>,
}

impl Seeds {
    fn load() -> TestResult<Self> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden");
        let mut vectors = Vec::new();
        let (mut keys, mut tags) = (BTreeSet::new(), BTreeSet::new());
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|extension| extension != "msgpack") {
                continue;
            }
            let bytes = std::fs::read(&path)?;
            let tree: Node = rmp_serde::from_slice(&bytes)?;
            tree.collect_names(&mut keys, &mut tags);
            vectors.push((
                path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default(),
                bytes,
                tree,
            ));
        }
        vectors.sort_by(|a, b| a.0.cmp(&b.0));
        let expected = Event::TAGS.len() + Command::TAGS.len() + Outcome::TAGS.len();
        if vectors.len() != expected {
            return Err(format!("{} golden vectors in {}, expected {expected}", vectors.len(), dir.display()).into());
        }
        Ok(Self { vectors, field_names: keys.into_iter().collect(), tags: tags.into_iter().collect() })
    }

    fn trees(&self) -> Vec<Node> {
        self.vectors.iter().map(|(_, _, tree)| tree.clone()).collect()
    }

    fn bytes(&self) -> Vec<Vec<u8>> {
        self.vectors.iter().map(|(_, bytes, _)| bytes.clone()).collect()
    }
}

/// The numbers at the edges of every integer width MessagePack has, and a few around them.
fn edge_integer() -> impl Strategy<Value = Node> {
    prop_oneof![
        select(vec![0_u64, 1, 127, 128, 255, 256, 65_535, 65_536, u64::from(u32::MAX), 1 << 32, i64::MAX as u64])
            .prop_map(Node::UInt),
        Just(Node::UInt(u64::MAX)),
        select(vec![-1_i64, -32, -33, -128, -129, -32_768, -32_769, i64::from(i32::MIN), i64::MIN]).prop_map(Node::Int),
        any::<u64>().prop_map(Node::UInt),
        any::<i64>().prop_map(Node::Int),
    ]
}

fn leaf(texts: Vec<String>) -> impl Strategy<Value = Node> {
    prop_oneof![
        Just(Node::Nil),
        any::<bool>().prop_map(Node::Bool),
        edge_integer(),
        prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY)].prop_map(Node::Float),
        select(texts).prop_map(Node::Str),
        // Message ids, valid and not, and text that must never reach a NATS header.
        "[0-9a-f]{32}|[0-9A-F]{32}|[0-9a-f]{31}|\\PC{0,40}|[\r\n .*>]{1,4}".prop_map(Node::Str),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(Node::Bin),
    ]
}

fn any_node(texts: Vec<String>) -> impl Strategy<Value = Node> {
    let keys = texts.clone();
    leaf(texts).prop_recursive(4, 48, 6, move |inner| {
        let key = prop_oneof![3 => select(keys.clone()).prop_map(Node::Str), 1 => inner.clone()];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Node::Array),
            prop::collection::vec((key, inner), 0..6).prop_map(Node::Map),
        ]
    })
}

/// A change to one node of an envelope's tree.
#[derive(Debug, Clone)]
enum Mutation {
    /// The node becomes another value, most often of another type.
    Replace(Node),
    /// A map loses an entry, or an array an item.
    Remove(Index),
    /// A map gains an entry (a known field name, so often a duplicate), or an array an item.
    Insert(Node, Node),
    /// The node is wrapped in this many one-element arrays.
    Nest(usize),
}

/// Replacements, removals and insertions: changes that keep the tree about as deep as it was.
fn shallow_mutation(texts: Vec<String>) -> impl Strategy<Value = Mutation> {
    let names = texts.clone();
    prop_oneof![
        2 => any_node(texts.clone()).prop_map(Mutation::Replace),
        1 => any::<Index>().prop_map(Mutation::Remove),
        1 => (select(names).prop_map(Node::Str), any_node(texts)).prop_map(|(key, value)| Mutation::Insert(key, value)),
    ]
}

fn mutation(texts: Vec<String>) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        8 => shallow_mutation(texts),
        // Around the decoder's depth limit (32); far deeper nesting has a property of its own.
        1 => (1_usize..64).prop_map(Mutation::Nest),
    ]
}

fn apply(tree: &mut Node, at: Index, mutation: &Mutation) {
    let mut target = at.index(tree.count());
    tree.at_mut(&mut target, &mut |node| match mutation {
        Mutation::Replace(replacement) => *node = replacement.clone(),
        Mutation::Remove(which) => match node {
            Node::Array(items) if !items.is_empty() => {
                items.remove(which.index(items.len()));
            }
            Node::Map(entries) if !entries.is_empty() => {
                entries.remove(which.index(entries.len()));
            }
            _ => {}
        },
        Mutation::Insert(key, value) => match node {
            Node::Array(items) => items.push(value.clone()),
            Node::Map(entries) => entries.push((key.clone(), value.clone())),
            _ => {}
        },
        Mutation::Nest(depth) => {
            for _ in 0..*depth {
                *node = Node::Array(vec![std::mem::replace(node, Node::Nil)]);
            }
        }
    });
}

/// Damage to an encoding, byte by byte.
#[derive(Debug, Clone)]
enum Damage {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Truncate(Index),
    /// The first part of this encoding and the rest of another.
    Splice(Index, Vec<u8>, Index),
}

fn damage(others: Vec<Vec<u8>>) -> impl Strategy<Value = Damage> {
    // Markers with the largest lengths they can claim: a decoder must not trust them.
    let lying_markers = select(vec![
        vec![0xdc, 0xff, 0xff],
        vec![0xdd, 0xff, 0xff, 0xff, 0xff],
        vec![0xde, 0xff, 0xff],
        vec![0xdf, 0xff, 0xff, 0xff, 0xff],
        vec![0xc6, 0xff, 0xff, 0xff, 0xff],
        vec![0xdb, 0x7f, 0xff, 0xff, 0xff],
        vec![0xc9, 0xff, 0xff, 0xff, 0xff, 0x00],
        vec![0xc1],
    ]);
    prop_oneof![
        (any::<Index>(), 0_u8..8).prop_map(|(at, bit)| Damage::FlipBit(at, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Damage::SetByte(at, byte)),
        (any::<Index>(), prop_oneof![prop::collection::vec(any::<u8>(), 1..8), lying_markers])
            .prop_map(|(at, bytes)| Damage::Insert(at, bytes)),
        (any::<Index>(), 1_usize..16).prop_map(|(at, length)| Damage::Delete(at, length)),
        any::<Index>().prop_map(Damage::Truncate),
        (any::<Index>(), select(others), any::<Index>()).prop_map(|(at, other, from)| Damage::Splice(at, other, from)),
    ]
}

fn damaged(mut bytes: Vec<u8>, damage: &Damage) -> Vec<u8> {
    let len = bytes.len();
    if len == 0 {
        return bytes;
    }
    match damage {
        Damage::FlipBit(at, bit) => bytes[at.index(len)] ^= 1 << bit,
        Damage::SetByte(at, byte) => bytes[at.index(len)] = *byte,
        Damage::Insert(at, inserted) => {
            let at = at.index(len + 1);
            bytes.splice(at..at, inserted.iter().copied());
        }
        Damage::Delete(at, length) => {
            let at = at.index(len);
            bytes.drain(at..(at + length).min(len));
        }
        Damage::Truncate(at) => bytes.truncate(at.index(len)),
        Damage::Splice(at, other, from) => {
            bytes.truncate(at.index(len));
            if !other.is_empty() {
                bytes.extend_from_slice(&other[from.index(other.len())..]);
            }
        }
    }
    bytes
}

/// The message of `error` and of every error under it.
fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What every answer of `decode::<M>(bytes)` must be: an envelope this build can stand behind, or
/// an error that says what was wrong.
fn read_or_refused_with_a_reason<M>(bytes: &[u8]) -> Result<(), TestCaseError>
where
    M: WireMessage + Serialize + DeserializeOwned + PartialEq + fmt::Debug,
{
    match decode::<M>(bytes) {
        Ok(envelope) => {
            prop_assert!((1..=SCHEMA_VERSION).contains(&envelope.version), "read version {}", envelope.version);
            prop_assert!(M::TAGS.contains(&envelope.message.tag()));
            let id: Result<MessageId, _> = envelope.id.as_str().parse();
            prop_assert!(id.is_ok(), "an id that is not an id was read: {:?}", envelope.id);
            // Whatever was read encodes and reads back as itself: nothing half-read survives.
            let again = doorsync_proto::encode(&envelope).map_err(|error| TestCaseError::fail(error.to_string()))?;
            let reread = decode::<M>(&again).map_err(|error| TestCaseError::fail(chain(&error)))?;
            prop_assert_eq!(reread, envelope);
        }
        Err(error) => {
            let explained = chain(&error);
            match &error {
                DecodeError::Malformed(cause) => {
                    let detail = cause.to_string();
                    prop_assert!(!detail.trim().is_empty(), "a malformed message with no detail: {explained}");
                    prop_assert!(explained.contains(&detail));
                }
                DecodeError::UnsupportedVersion { found, supported } => {
                    prop_assert!(*found == 0 || found > supported, "{explained}");
                    prop_assert!(explained.contains(&found.to_string()), "{explained}");
                }
                DecodeError::UnknownType { family, tag } => {
                    prop_assert_eq!(*family, M::FAMILY);
                    prop_assert!(!M::TAGS.contains(&tag.as_str()), "a known tag refused as unknown: {explained}");
                    prop_assert!(explained.contains(&format!("{tag:?}")), "{explained}");
                }
            }
        }
    }
    Ok(())
}

fn read_by_every_family(bytes: &[u8]) -> Result<(), TestCaseError> {
    read_or_refused_with_a_reason::<Event>(bytes)?;
    read_or_refused_with_a_reason::<Command>(bytes)?;
    read_or_refused_with_a_reason::<Outcome>(bytes)
}

fn fuzz<S: Strategy>(strategy: S, cases: u32, check: impl Fn(S::Value) -> Result<(), TestCaseError>) -> TestResult {
    TestRunner::new(fuzz_config(cases)).run(&strategy, check).map_err(|error| error.to_string().into())
}

#[test]
fn the_tree_plumbing_reads_and_writes_the_golden_vectors_faithfully() -> TestResult {
    let seeds = Seeds::load()?;
    for (name, bytes, tree) in &seeds.vectors {
        let rewritten = tree.encode()?;
        let family = name.split('.').next().unwrap_or_default();
        let same = match family {
            "event" => decode::<Event>(&rewritten)? == decode::<Event>(bytes)?,
            "command" => decode::<Command>(&rewritten)? == decode::<Command>(bytes)?,
            "outcome" => decode::<Outcome>(&rewritten)? == decode::<Outcome>(bytes)?,
            other => return Err(format!("{name}: unknown family {other:?}").into()),
        };
        assert!(same, "{name} reads differently after a trip through the tree");
    }
    for tag in Event::TAGS.iter().chain(Command::TAGS).chain(Outcome::TAGS) {
        assert!(seeds.tags.iter().any(|known| known == tag), "no golden vector carries {tag:?}");
    }
    assert!(seeds.field_names.iter().any(|name| name == "msg"), "{:?}", seeds.field_names);
    Ok(())
}

#[test]
fn arbitrary_bytes_are_refused_with_a_reason() -> TestResult {
    fuzz(prop::collection::vec(any::<u8>(), 0..1_024), DEFAULT_CASES, |bytes| read_by_every_family(&bytes))
}

#[test]
fn golden_vectors_damaged_byte_by_byte_are_read_or_refused_with_a_reason() -> TestResult {
    let seeds = Seeds::load()?;
    let strategy = (select(seeds.bytes()), prop::collection::vec(damage(seeds.bytes()), 1..6))
        .prop_map(|(bytes, damages)| damages.iter().fold(bytes, damaged));
    fuzz(strategy, DEFAULT_CASES, |bytes| read_by_every_family(&bytes))
}

#[test]
fn golden_vectors_with_fields_retyped_removed_added_or_nested_are_read_or_refused_with_a_reason() -> TestResult {
    let seeds = Seeds::load()?;
    let texts: Vec<String> = seeds.field_names.iter().chain(&seeds.tags).cloned().collect();
    let strategy = (
        select(seeds.trees()),
        prop::collection::vec((any::<Index>(), mutation(texts)), 1..4),
        prop::option::weighted(0.3, damage(seeds.bytes())),
    );
    fuzz(strategy, DEFAULT_CASES, |(mut tree, mutations, byte_damage)| {
        for (at, mutation) in &mutations {
            apply(&mut tree, *at, mutation);
        }
        let bytes = tree.encode().map_err(|error| TestCaseError::fail(error.to_string()))?;
        let bytes = match &byte_damage {
            Some(byte_damage) => damaged(bytes, byte_damage),
            None => bytes,
        };
        read_by_every_family(&bytes)
    })
}

/// The header decides how a refusal is explained, whatever the rest holds: a version this build
/// does not read is always refused as such (never misread, never "malformed"), and a type of
/// another family or a newer build is named.
#[test]
fn a_newer_version_or_an_unknown_type_is_named_whatever_else_is_wrong() -> TestResult {
    let seeds = Seeds::load()?;
    let texts: Vec<String> = seeds.field_names.iter().chain(&seeds.tags).cloned().collect();
    let version = prop_oneof![Just(0_u64), Just(u64::from(SCHEMA_VERSION)), u64::from(SCHEMA_VERSION) + 1..=65_535];
    let tag = prop_oneof![select(seeds.tags.clone()), "[a-z_]{1,24}"];
    // Shallow: nesting past the depth limit is refused before the header is read (see
    // `nesting_of_any_depth_anywhere_is_refused_without_recursion`).
    let body_mutations = prop::collection::vec((any::<Index>(), shallow_mutation(texts)), 0..3);
    let strategy = (select(seeds.trees()), version, tag, body_mutations);
    fuzz(strategy, DEFAULT_CASES, |(mut tree, version, tag, mutations)| {
        // The body only: the header is what this property controls.
        if let Some(body) = tree.field_mut("msg").and_then(|msg| msg.field_mut("body")) {
            for (at, mutation) in &mutations {
                apply(body, *at, mutation);
            }
        }
        if let Some(field) = tree.field_mut("v") {
            *field = Node::UInt(version);
        }
        if let Some(field) = tree.field_mut("msg").and_then(|msg| msg.field_mut("type")) {
            *field = Node::Str(tag.clone());
        }
        let bytes = tree.encode().map_err(|error| TestCaseError::fail(error.to_string()))?;
        check_header_decides::<Event>(&bytes, version, &tag)?;
        check_header_decides::<Command>(&bytes, version, &tag)?;
        check_header_decides::<Outcome>(&bytes, version, &tag)?;
        read_by_every_family(&bytes)
    })
}

fn check_header_decides<M>(bytes: &[u8], version: u64, tag: &str) -> Result<(), TestCaseError>
where
    M: WireMessage + DeserializeOwned + fmt::Debug,
{
    let result = decode::<M>(bytes);
    if version == 0 || version > u64::from(SCHEMA_VERSION) {
        prop_assert!(
            matches!(result, Err(DecodeError::UnsupportedVersion { found, .. }) if u64::from(found) == version),
            "version {version} read as {result:?}"
        );
    } else if !M::TAGS.contains(&tag) {
        prop_assert!(
            matches!(&result, Err(DecodeError::UnknownType { tag: found, .. }) if found == tag),
            "{} type {tag:?} read as {result:?}",
            M::FAMILY
        );
    }
    Ok(())
}

/// Stands for the node the deep nesting goes in, until the bytes are written.
const NESTING_PLACEHOLDER: &str = "\u{1}deep nesting goes here\u{1}";

/// Envelopes with deep nesting anywhere in them: refused by the depth limit without recursing
/// into it (proptest's threads have a small stack, so a recursion would overflow it). The nesting
/// is spliced into the bytes: a tree that deep would recurse in this test's own code.
#[test]
fn nesting_of_any_depth_anywhere_is_refused_without_recursion() -> TestResult {
    let seeds = Seeds::load()?;
    let strategy = (select(seeds.trees()), any::<Index>(), prop_oneof![33_usize..64, 10_000_usize..200_000]);
    fuzz(strategy, 200, |(mut tree, at, depth)| {
        apply(&mut tree, at, &Mutation::Replace(Node::Str(NESTING_PLACEHOLDER.to_owned())));
        let bytes = tree.encode().map_err(|error| TestCaseError::fail(error.to_string()))?;
        let placeholder = Node::Str(NESTING_PLACEHOLDER.to_owned())
            .encode()
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        let at = bytes
            .windows(placeholder.len())
            .position(|window| window == placeholder)
            .ok_or_else(|| TestCaseError::fail("the placeholder is not in the encoding"))?;
        let mut nested = bytes[..at].to_vec();
        // `depth` one-element arrays (0x91) around a nil (0xc0).
        nested.extend(std::iter::repeat_n(0x91, depth));
        nested.push(0xc0);
        nested.extend_from_slice(&bytes[at + placeholder.len()..]);
        read_by_every_family(&nested)?;
        for family in
            [decode::<Event>(&nested).err(), decode::<Command>(&nested).err(), decode::<Outcome>(&nested).err()]
        {
            prop_assert!(family.is_some(), "{depth} levels of nesting were read");
        }
        Ok(())
    })
}
