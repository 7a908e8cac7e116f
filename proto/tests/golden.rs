//! Golden vectors: the exact bytes of one fixed sample of every message type, checked in under
//! `proto/golden/`. A failure here means the wire format changed; see `golden/README.md`.
//!
//! `DOORSYNC_UPDATE_GOLDEN=1 cargo test -p doorsync-proto --test golden` rewrites the files.

use std::collections::BTreeSet;
use std::error::Error;
use std::fmt::Debug;
use std::fs;
use std::path::PathBuf;

use doorsync_proto::{
    BookingCancelled, BookingChanged, BookingId, CivilDate, Command, ContractChanged, ContractId, ContractRemoved,
    DecodeError, DeleteUser, EnsureUser, EntitlementId, EntitlementWithheld, Envelope, Event, Failed, FloorPlanItem,
    FloorPlanItemId, FloorPlanItemKind, GrantApplied, GrantGroup, KisiAssignmentId, KisiGroupId, KisiUserId,
    KisiUserState, MappingChanged, MappingSource, MemberChanged, MemberId, MemberRemoved, Outcome, PassChanged, PassId,
    PassProductId, PassRemoved, PassValidity, ResourceId, RestoreUser, RevokeGroup, Revoked, SCHEMA_VERSION,
    SuspendUser, Timestamp, UserAccessChanged, UserLinked, WireMessage, decode, encode,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

type TestResult<T = ()> = Result<T, Box<dyn Error>>;

const UPDATE_VARIABLE: &str = "DOORSYNC_UPDATE_GOLDEN";

/// 2024-05-01T09:00:00Z, when every sample "occurred".
const OCCURRED_AT: Timestamp = Timestamp::from_unix_millis(1_714_554_000_000);

const MEMBER: MemberId = MemberId(1_204_233_581);
const GROUP: KisiGroupId = KisiGroupId(48_213);

fn at(millis: i64) -> Timestamp {
    Timestamp::from_unix_millis(millis)
}

fn events() -> TestResult<Vec<Event>> {
    Ok(vec![
        Event::MemberChanged(MemberChanged {
            member: MEMBER,
            email: "ada@example.com".to_owned(),
            name: "Ada Lovelace".to_owned(),
            active: true,
        }),
        Event::MemberRemoved(MemberRemoved { member: MEMBER }),
        Event::BookingChanged(BookingChanged {
            member: MEMBER,
            booking: BookingId(1_415_926_535),
            resource: ResourceId(1_414_213),
            starts_at: at(1_714_561_200_000),
            ends_at: at(1_714_566_600_000),
            tentative: false,
        }),
        Event::BookingCancelled(BookingCancelled { member: MEMBER, booking: BookingId(1_415_926_535) }),
        Event::PassChanged(PassChanged {
            member: MEMBER,
            pass: PassId(2_718_281),
            product: PassProductId(1_732_050),
            validity: PassValidity::Day { date: CivilDate::new(2024, 5, 2)?, time_zone: "Europe/London".to_owned() },
            used_up: false,
        }),
        Event::PassRemoved(PassRemoved { member: MEMBER, pass: PassId(2_718_281) }),
        Event::ContractChanged(ContractChanged {
            member: MEMBER,
            contract: ContractId(1_618_033),
            starts_at: at(1_711_929_600_000),
            ends_at: None,
            cancelled_at: Some(at(1_719_791_999_000)),
            active: true,
            spaces: vec![
                FloorPlanItem { id: FloorPlanItemId(57_721), kind: FloorPlanItemKind::Desk },
                FloorPlanItem { id: FloorPlanItemId(66_743), kind: FloorPlanItemKind::Office },
            ],
        }),
        Event::ContractRemoved(ContractRemoved { member: MEMBER, contract: ContractId(1_618_033) }),
        Event::MappingChanged(MappingChanged {
            source: MappingSource::PassProduct(PassProductId(1_732_050)),
            group: Some(GROUP),
        }),
        Event::EntitlementWithheld(EntitlementWithheld {
            member: MEMBER,
            entitlement: EntitlementId::Pass(PassId(2_718_281)),
            reason: "UsedDate: is missing on a used pass, so its day is unknown".to_owned(),
        }),
    ])
}

/// Each command with the window edge that made it necessary: the grant of a stretch that
/// began (10:45Z) before the engine decided it, the revocation of one that ended (12:45Z); the
/// rest were made necessary by events, and pin the envelope without an edge.
fn commands() -> Vec<(Option<Timestamp>, Command)> {
    vec![
        (
            None,
            Command::EnsureUser(EnsureUser {
                member: MEMBER,
                email: "ada@example.com".to_owned(),
                name: "Ada Lovelace".to_owned(),
                basis: 1_001,
            }),
        ),
        (
            Some(at(1_714_560_300_000)),
            Command::GrantGroup(GrantGroup {
                member: MEMBER,
                group: GROUP,
                valid_from: Some(at(1_714_560_300_000)),
                valid_until: Some(at(1_714_567_500_000)),
                basis: 1_002,
            }),
        ),
        (Some(at(1_714_567_500_000)), Command::RevokeGroup(RevokeGroup { member: MEMBER, group: GROUP, basis: 1_003 })),
        (None, Command::SuspendUser(SuspendUser { member: MEMBER, basis: 1_004 })),
        (None, Command::RestoreUser(RestoreUser { member: MEMBER, basis: 1_005 })),
        (None, Command::DeleteUser(DeleteUser { member: MEMBER, basis: 1_006 })),
    ]
}

/// Samples that carry no window edge, as events and outcomes never do.
fn without_edges<M>(samples: Vec<M>) -> Vec<(Option<Timestamp>, M)> {
    samples.into_iter().map(|sample| (None, sample)).collect()
}

fn outcomes() -> TestResult<Vec<Outcome>> {
    Ok(vec![
        Outcome::UserLinked(UserLinked { member: MEMBER, kisi_user: KisiUserId(3_141_592), created_by_doorsync: true }),
        Outcome::GrantApplied(GrantApplied {
            member: MEMBER,
            group: GROUP,
            assignment: KisiAssignmentId(9_876_543),
            valid_from: Some(at(1_714_560_300_000)),
            valid_until: None,
        }),
        Outcome::Revoked(Revoked { member: MEMBER, group: GROUP }),
        Outcome::UserAccessChanged(UserAccessChanged { member: MEMBER, state: KisiUserState::Suspended }),
        Outcome::Failed(Failed {
            member: MEMBER,
            command: "5f0c2b8e9a1d4c7b8e3f6a2d1c0b9a87".parse()?,
            reason: "Kisi answered 422: email is invalid".to_owned(),
            permanent: true,
        }),
    ])
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden")
}

fn golden_file_name(family: &str, tag: &str) -> String {
    format!("{family}.{tag}.v{SCHEMA_VERSION}.msgpack")
}

fn updating() -> bool {
    std::env::var(UPDATE_VARIABLE).is_ok_and(|value| value == "1")
}

/// Checks (or, when updating, writes) the golden file of every sample (with its window edge);
/// returns the file names.
fn check_family<M>(samples: Vec<(Option<Timestamp>, M)>) -> TestResult<Vec<String>>
where
    M: WireMessage + Serialize + DeserializeOwned + PartialEq + Debug,
{
    let tags: Vec<&str> = samples.iter().map(|(_, sample)| sample.tag()).collect();
    assert_eq!(
        tags.iter().copied().collect::<BTreeSet<_>>(),
        M::TAGS.iter().copied().collect::<BTreeSet<_>>(),
        "every {} type needs exactly one golden sample",
        M::FAMILY
    );
    assert_eq!(tags.len(), M::TAGS.len(), "one sample per {} type", M::FAMILY);

    let mut file_names = Vec::new();
    for (window_edge, sample) in samples {
        let file_name = golden_file_name(M::FAMILY, sample.tag());
        let path = golden_dir().join(&file_name);
        let envelope = Envelope::with_window_edge(OCCURRED_AT, window_edge, sample)?;
        let bytes = encode(&envelope)?;
        if updating() {
            fs::write(&path, &bytes)?;
        } else {
            let golden =
                fs::read(&path).map_err(|error| format!("{}: {error} (see golden/README.md)", path.display()))?;
            assert!(
                golden == bytes,
                "the encoding of {file_name} changed, which changes the wire format (see golden/README.md)\n\
                 golden:  {}\nencoded: {}",
                hex(&golden),
                hex(&bytes),
            );
            assert_eq!(decode::<M>(&golden)?, envelope, "{file_name} decodes to its sample");
        }
        file_names.push(file_name);
    }
    Ok(file_names)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
fn events_match_their_golden_vectors() -> TestResult {
    check_family(without_edges(events()?)).map(drop)
}

#[test]
fn commands_match_their_golden_vectors() -> TestResult {
    check_family(commands()).map(drop)
}

#[test]
fn outcomes_match_their_golden_vectors() -> TestResult {
    check_family(without_edges(outcomes()?)).map(drop)
}

fn vector_names<M: WireMessage>() -> impl Iterator<Item = String> {
    M::TAGS.iter().map(|tag| golden_file_name(M::FAMILY, tag))
}

/// A vector left behind by a renamed or removed type would pin nothing; it must go.
#[test]
fn there_are_no_stray_vectors_of_this_version() -> TestResult {
    let expected: BTreeSet<String> =
        vector_names::<Event>().chain(vector_names::<Command>()).chain(vector_names::<Outcome>()).collect();
    let suffix = format!(".v{SCHEMA_VERSION}.msgpack");
    for entry in fs::read_dir(golden_dir())? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(&suffix) {
            assert!(expected.contains(&name), "{name} belongs to no message type");
        }
    }
    Ok(())
}

#[test]
fn a_vector_with_a_newer_version_is_refused() -> TestResult {
    if updating() {
        // The files are being rewritten by the other tests right now; the next plain run checks.
        return Ok(());
    }
    let mut bytes = fs::read(golden_dir().join(golden_file_name("event", "booking_changed")))?;
    // The envelope starts with a four-entry map whose first key is "v" and first value the version
    // as a one-byte integer: 0x84, 0xa1 'v', 0x01.
    let version_at = 3;
    assert_eq!(bytes.get(..=version_at), Some(&[0x84, 0xa1, b'v', 0x01][..]));
    bytes[version_at] = 0x02;
    match decode::<Event>(&bytes) {
        Err(DecodeError::UnsupportedVersion { found: 2, supported: 1 }) => Ok(()),
        other => Err(format!("expected UnsupportedVersion, got {other:?}").into()),
    }
}
