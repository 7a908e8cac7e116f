//! The NATS subjects doorsync's messages are published on.
//!
//! Member subjects carry a partition so that engine replicas can split the members between them
//! by subscribing to one partition each, and every message about one member lands in the same
//! partition in every stream:
//!
//! ```text
//! <prefix>.evt.<partition>.<member>     events about a member
//! <prefix>.evt.mapping                  mapping changes (for everyone)
//! <prefix>.cmd.<partition>.<member>     commands for the Kisi writer
//! <prefix>.out.<partition>.<member>     the writer's outcomes
//! <prefix>.dlq.<partition>.<member>     dead-lettered commands
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Event, MemberId};

const EVENTS: &str = "evt";
const COMMANDS: &str = "cmd";
const OUTCOMES: &str = "out";
const DEAD_LETTERS: &str = "dlq";
const MAPPING: &str = "mapping";

/// One of a deployment's partitions: the subject token that splits the members between engine
/// replicas. Its own type so that a partition is never taken for a count or a stream position; it
/// is stored and shown as the plain number.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Partition(pub u32);

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Which stream's kind of message a subject carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    Event,
    Command,
    Outcome,
    DeadLetter,
}

/// What a subject of this deployment names: one member's messages of a kind, or the mapping
/// changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParsedSubject {
    Member { kind: SubjectKind, partition: Partition, member: MemberId },
    Mapping,
}

impl ParsedSubject {
    /// The member the subject is about; `None` for mapping changes.
    pub fn member(self) -> Option<MemberId> {
        match self {
            ParsedSubject::Member { member, .. } => Some(member),
            ParsedSubject::Mapping => None,
        }
    }
}

/// The subject layout of one deployment: its prefix and its fixed number of partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
    partitions: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error(
        "subject prefix {0:?} must be one or more non-empty tokens of letters, digits, '_' and '-', separated by '.'"
    )]
    InvalidPrefix(String),
    #[error("the number of partitions must be at least 1")]
    NoPartitions,
}

impl Subjects {
    /// `prefix` is the deployment's first subject tokens, such as `doorsync` or `site-a.doorsync`;
    /// `partitions` must never change for a deployment's lifetime, since it decides which
    /// partition (and so which subject) each member's messages are on.
    pub fn new(prefix: impl Into<String>, partitions: u32) -> Result<Self, SubjectError> {
        let prefix = prefix.into();
        let valid_token = |token: &str| {
            !token.is_empty() && token.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
        };
        if !prefix.split('.').all(valid_token) {
            return Err(SubjectError::InvalidPrefix(prefix));
        }
        if partitions == 0 {
            return Err(SubjectError::NoPartitions);
        }
        Ok(Self { prefix, partitions })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Every partition of the deployment, in order.
    pub fn all_partitions(&self) -> impl Iterator<Item = Partition> + use<> {
        (0..self.partitions).map(Partition)
    }

    /// The member's partition: FNV-1a (32-bit) of the member id's decimal digits, modulo the
    /// partition count. This is exactly what a NATS subject mapping `{{partition(n, k)}}` computes
    /// for a subject whose token `k` is the member id, so streams may also be partitioned by the
    /// server.
    pub fn partition_of(&self, member: MemberId) -> Partition {
        Partition(fnv1a_32(member.to_string().as_bytes()) % self.partitions)
    }

    /// Where events about `member` are published.
    pub fn event(&self, member: MemberId) -> String {
        self.member_subject(EVENTS, member)
    }

    /// Where commands concerning `member` are published.
    pub fn command(&self, member: MemberId) -> String {
        self.member_subject(COMMANDS, member)
    }

    /// Where outcomes concerning `member` are published.
    pub fn outcome(&self, member: MemberId) -> String {
        self.member_subject(OUTCOMES, member)
    }

    /// Where commands concerning `member` that could not be carried out are parked.
    pub fn dead_letter(&self, member: MemberId) -> String {
        self.member_subject(DEAD_LETTERS, member)
    }

    /// Where mapping changes are published. They concern every member, so they have no partition
    /// and every engine replica reads them; the subject is still inside [`Self::events_wildcard`].
    pub fn mapping(&self) -> String {
        format!("{}.{EVENTS}.{MAPPING}", self.prefix)
    }

    /// The subject an event belongs on.
    pub fn subject_for(&self, event: &Event) -> String {
        match event.member() {
            Some(member) => self.event(member),
            None => self.mapping(),
        }
    }

    /// Matches the member events of one partition (not mapping changes). `partition` is expected
    /// to be below [`Self::partitions`]; a larger one matches nothing that doorsync publishes.
    pub fn event_partition_filter(&self, partition: Partition) -> String {
        self.partition_filter(EVENTS, partition)
    }

    /// Matches the commands of one partition.
    pub fn command_partition_filter(&self, partition: Partition) -> String {
        self.partition_filter(COMMANDS, partition)
    }

    /// Matches the outcomes of one partition.
    pub fn outcome_partition_filter(&self, partition: Partition) -> String {
        self.partition_filter(OUTCOMES, partition)
    }

    /// Matches the dead letters of one partition.
    pub fn dead_letter_partition_filter(&self, partition: Partition) -> String {
        self.partition_filter(DEAD_LETTERS, partition)
    }

    /// Every event subject, mapping changes included: the event stream's subjects.
    pub fn events_wildcard(&self) -> String {
        self.wildcard(EVENTS)
    }

    pub fn commands_wildcard(&self) -> String {
        self.wildcard(COMMANDS)
    }

    pub fn outcomes_wildcard(&self) -> String {
        self.wildcard(OUTCOMES)
    }

    pub fn dead_letters_wildcard(&self) -> String {
        self.wildcard(DEAD_LETTERS)
    }

    /// What `subject` names, read back the way this layout writes it; `None` for a subject of
    /// another prefix or shape. The partition is the subject's token as written: whether it is
    /// the one the member hashes to is for the caller to judge.
    pub fn parse(&self, subject: &str) -> Option<ParsedSubject> {
        let rest = subject.strip_prefix(self.prefix.as_str())?.strip_prefix('.')?;
        let mut tokens = rest.split('.');
        if rest.strip_prefix(EVENTS).and_then(|tail| tail.strip_prefix('.')) == Some(MAPPING) {
            return Some(ParsedSubject::Mapping);
        }
        let kind = match tokens.next()? {
            EVENTS => SubjectKind::Event,
            COMMANDS => SubjectKind::Command,
            OUTCOMES => SubjectKind::Outcome,
            DEAD_LETTERS => SubjectKind::DeadLetter,
            _ => return None,
        };
        let partition = Partition(tokens.next()?.parse().ok()?);
        let member = MemberId(tokens.next()?.parse().ok()?);
        if tokens.next().is_some() {
            return None;
        }
        Some(ParsedSubject::Member { kind, partition, member })
    }

    fn member_subject(&self, kind: &str, member: MemberId) -> String {
        format!("{}.{kind}.{}.{member}", self.prefix, self.partition_of(member))
    }

    fn partition_filter(&self, kind: &str, partition: Partition) -> String {
        format!("{}.{kind}.{partition}.*", self.prefix)
    }

    fn wildcard(&self, kind: &str) -> String {
        format!("{}.{kind}.>", self.prefix)
    }
}

/// FNV-1a, 32-bit, as Go's `hash/fnv.New32a`, which NATS uses for subject partitioning.
fn fnv1a_32(bytes: &[u8]) -> u32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| (hash ^ u32::from(byte)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MappingChanged, MappingSource, MemberRemoved, ResourceId};

    fn subjects(partitions: u32) -> Result<Subjects, SubjectError> {
        Subjects::new("doorsync", partitions)
    }

    #[test]
    fn fnv1a_32_matches_the_published_test_vectors() {
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_32(b"foo"), 0xa9f3_7ed7);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
    }

    /// The expectations of nats-server's own `TestSubjectTransforms` for `{{partition(10)}}` of a
    /// one-token subject.
    #[test]
    fn partitions_agree_with_nats_subject_mapping() {
        for (token, partition) in [("foo", 3), ("baz", 0), ("qux", 9)] {
            assert_eq!(fnv1a_32(token.as_bytes()) % 10, partition, "{token}");
        }
    }

    /// Pinned: a member's partition decides where its history lives, so it must never change.
    #[test]
    fn member_partitions_are_pinned() -> Result<(), SubjectError> {
        let subjects = subjects(64)?;
        for (member, partition) in [(1, 28), (42, 3), (1_234_567, 39), (u64::MAX, 52)] {
            assert_eq!(subjects.partition_of(MemberId(member)), Partition(partition), "member {member}");
        }
        assert_eq!(Subjects::new("doorsync", 1)?.partition_of(MemberId(1_234_567)), Partition(0));
        Ok(())
    }

    #[test]
    fn member_subjects_carry_partition_and_member() -> Result<(), SubjectError> {
        let subjects = subjects(64)?;
        let member = MemberId(42);
        assert_eq!(subjects.event(member), "doorsync.evt.3.42");
        assert_eq!(subjects.command(member), "doorsync.cmd.3.42");
        assert_eq!(subjects.outcome(member), "doorsync.out.3.42");
        assert_eq!(subjects.dead_letter(member), "doorsync.dlq.3.42");
        Ok(())
    }

    #[test]
    fn subjects_parse_back_to_what_they_name() -> Result<(), SubjectError> {
        let subjects = Subjects::new("site-a.doorsync", 64)?;
        let member = MemberId(42);
        let kinds = [
            (subjects.event(member), SubjectKind::Event),
            (subjects.command(member), SubjectKind::Command),
            (subjects.outcome(member), SubjectKind::Outcome),
            (subjects.dead_letter(member), SubjectKind::DeadLetter),
        ];
        for (subject, kind) in kinds {
            let parsed = subjects.parse(&subject);
            assert_eq!(parsed, Some(ParsedSubject::Member { kind, partition: Partition(3), member }));
            assert_eq!(parsed.and_then(ParsedSubject::member), Some(member));
        }
        assert_eq!(subjects.parse("site-a.doorsync.evt.mapping"), Some(ParsedSubject::Mapping));
        assert_eq!(
            subjects.parse("site-a.doorsync.cmd.4.42"),
            Some(ParsedSubject::Member { kind: SubjectKind::Command, partition: Partition(4), member }),
            "read as written"
        );
        for foreign in [
            "doorsync.evt.3.42",
            "site-a.doorsync.evt.3.42.1",
            "site-a.doorsync.evt.3",
            "site-a.doorsync.xyz.3.42",
            "site-a.doorsync.evt.3.forty-two",
            "site-a.doorsyncx.evt.3.42",
        ] {
            assert_eq!(subjects.parse(foreign), None, "{foreign}");
        }
        Ok(())
    }

    #[test]
    fn filters_and_wildcards() -> Result<(), SubjectError> {
        let subjects = Subjects::new("site-a.door_sync", 8)?;
        assert_eq!(subjects.mapping(), "site-a.door_sync.evt.mapping");
        assert_eq!(subjects.event_partition_filter(Partition(5)), "site-a.door_sync.evt.5.*");
        assert_eq!(subjects.command_partition_filter(Partition(5)), "site-a.door_sync.cmd.5.*");
        assert_eq!(subjects.outcome_partition_filter(Partition(5)), "site-a.door_sync.out.5.*");
        assert_eq!(subjects.dead_letter_partition_filter(Partition(5)), "site-a.door_sync.dlq.5.*");
        assert_eq!(subjects.events_wildcard(), "site-a.door_sync.evt.>");
        assert_eq!(subjects.commands_wildcard(), "site-a.door_sync.cmd.>");
        assert_eq!(subjects.outcomes_wildcard(), "site-a.door_sync.out.>");
        assert_eq!(subjects.dead_letters_wildcard(), "site-a.door_sync.dlq.>");
        assert_eq!(subjects.prefix(), "site-a.door_sync");
        assert_eq!(subjects.partitions(), 8);
        Ok(())
    }

    #[test]
    fn partitions_count_from_zero_and_show_as_their_number() -> Result<(), SubjectError> {
        assert_eq!(subjects(3)?.all_partitions().collect::<Vec<_>>(), [Partition(0), Partition(1), Partition(2)]);
        assert_eq!(Partition(7).to_string(), "7");
        Ok(())
    }

    #[test]
    fn events_are_routed_by_member_and_mappings_globally() -> Result<(), SubjectError> {
        let subjects = subjects(64)?;
        let removed = Event::MemberRemoved(MemberRemoved { member: MemberId(42) });
        assert_eq!(subjects.subject_for(&removed), "doorsync.evt.3.42");
        let mapping =
            Event::MappingChanged(MappingChanged { source: MappingSource::Resource(ResourceId(42)), group: None });
        assert_eq!(subjects.subject_for(&mapping), "doorsync.evt.mapping");
        Ok(())
    }

    #[test]
    fn invalid_prefixes_are_refused() {
        for prefix in ["", ".doorsync", "doorsync.", "door..sync", "door sync", "door*", "door.>", "dör", "a\tb"] {
            assert_eq!(Subjects::new(prefix, 4), Err(SubjectError::InvalidPrefix(prefix.to_owned())), "{prefix:?}");
        }
        assert_eq!(Subjects::new("doorsync", 0), Err(SubjectError::NoPartitions));
    }
}
