//! The Kisi records doorsync reads and writes. Only the fields doorsync uses are modelled;
//! unknown fields are ignored, so Kisi adding fields breaks nothing.

use doorsync_proto::{KisiAssignmentId, KisiGroupId, KisiUserId, Timestamp};
use serde::{Deserialize, Deserializer, Serialize};

/// The role that makes a user a member of a group: "grant users access to unlock a set of doors".
pub const GROUP_BASIC_ROLE: &str = "group_basic";

/// A Kisi user (`GET /users`, `GET /users/{id}`, `POST /users`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    pub id: KisiUserId,
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
    /// False when the user is suspended: no door opens for them, whatever their groups.
    pub access_enabled: bool,
    #[serde(default)]
    pub notes: Option<String>,
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The user that owns the API key (`GET /user`): its id is the `created_by_id` of every role
/// assignment this client creates.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CurrentUser {
    pub id: KisiUserId,
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub organization_id: Option<u64>,
}

/// A Kisi group: a set of doors.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Group {
    pub id: KisiGroupId,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub place_id: Option<u64>,
}

impl Group {
    /// The groups among `groups` that a configured `kisi_group_name` names: exactly that name,
    /// case and spaces counting. More than one means the name cannot say which doors.
    pub fn named<'a>(groups: &'a [Group], name: &str) -> Vec<&'a Group> {
        groups.iter().filter(|group| group.name == name).collect()
    }
}

/// What a role assignment applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AppliesToType {
    Organization,
    Place,
    Group,
    #[serde(other)]
    Other,
}

/// Who holds a role assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AssigneeType {
    User,
    Team,
    Guest,
    #[serde(other)]
    Other,
}

/// A role assignment ("access right" in Kisi's UI). With role `group_basic` on a group it makes
/// the assignee a member of the group, between `valid_from` and `valid_until` when set.
///
/// Kisi also still sends the deprecated duplicates `user_id`, `group_id` and `issued_by_id`;
/// they are not read, [`user`](Self::user) and [`group`](Self::group) derive the same from the
/// current `assignee_*` and `applies_to_*` fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RoleAssignment {
    pub id: KisiAssignmentId,
    pub role_id: String,
    pub applies_to_type: AppliesToType,
    pub applies_to_id: u64,
    pub assignee_type: AssigneeType,
    pub assignee_id: u64,
    /// `User` for assignments made through the API or UI by a user, `MarketplaceInstallation`
    /// for apps, absent for those Kisi made itself.
    #[serde(default)]
    pub created_by_type: Option<String>,
    #[serde(default)]
    pub created_by_id: Option<KisiUserId>,
    #[serde(default)]
    pub notify: bool,
    #[serde(default, deserialize_with = "optional_instant")]
    pub valid_from: Option<Timestamp>,
    #[serde(default, deserialize_with = "optional_instant")]
    pub valid_until: Option<Timestamp>,
}

impl RoleAssignment {
    /// The group, when the assignment is on one.
    pub fn group(&self) -> Option<KisiGroupId> {
        (self.applies_to_type == AppliesToType::Group).then_some(KisiGroupId(self.applies_to_id))
    }

    /// The user, when the assignee is one (not a team or guest).
    pub fn user(&self) -> Option<KisiUserId> {
        (self.assignee_type == AssigneeType::User).then_some(KisiUserId(self.assignee_id))
    }

    pub fn validity(&self) -> Validity {
        Validity { from: self.valid_from, until: self.valid_until }
    }

    /// Whether `user` (e.g. the API key's own, from `GET /user`) created this assignment.
    pub fn created_by(&self, user: KisiUserId) -> bool {
        self.created_by_type.as_deref() == Some("User") && self.created_by_id == Some(user)
    }
}

/// When a group role assignment is valid; an open bound is unlimited.
///
/// Kisi receives whole seconds (the form of every example in its documentation): `from` is
/// rounded down and `until` up, so access is never shorter than asked.
/// [`in_whole_seconds`](Self::in_whole_seconds) says what Kisi will hold, for comparing a desired
/// validity with an assignment's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Validity {
    pub from: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

impl Validity {
    pub const UNBOUNDED: Self = Self { from: None, until: None };

    pub fn new(from: Option<Timestamp>, until: Option<Timestamp>) -> Self {
        Self { from, until }
    }

    /// The validity as it is written to Kisi.
    pub fn in_whole_seconds(self) -> Self {
        let floor = |at: Timestamp| Timestamp::from_unix_millis(at.as_unix_millis().div_euclid(1_000) * 1_000);
        let ceil = |at: Timestamp| {
            Timestamp::from_unix_millis(
                at.as_unix_millis()
                    .div_euclid(1_000)
                    .saturating_add(i64::from(at.as_unix_millis().rem_euclid(1_000) != 0))
                    * 1_000,
            )
        };
        Self { from: self.from.map(floor), until: self.until.map(ceil) }
    }

    /// Whether the validity covers `at` (from inclusive, until exclusive).
    pub fn covers(self, at: Timestamp) -> bool {
        self.from.is_none_or(|from| from <= at) && self.until.is_none_or(|until| at < until)
    }

    pub(crate) fn to_wire(self) -> Result<(Option<String>, Option<String>), String> {
        let whole = self.in_whole_seconds();
        Ok((whole.from.map(instant_to_wire).transpose()?, whole.until.map(instant_to_wire).transpose()?))
    }
}

/// An instant in whole seconds as RFC 3339 UTC, e.g. `2025-01-31T23:59:59Z`.
fn instant_to_wire(at: Timestamp) -> Result<String, String> {
    let seconds = at.as_unix_millis().div_euclid(1_000);
    jiff::Timestamp::from_second(seconds)
        .map(|instant| instant.to_string())
        .map_err(|error| format!("instant {at} cannot be written as a Kisi date-time: {error}"))
}

/// Reads an RFC 3339 date-time with any offset and precision (Kisi sends milliseconds).
pub(crate) fn instant_from_wire(text: &str) -> Result<Timestamp, String> {
    let instant: jiff::Timestamp =
        text.parse().map_err(|error| format!("{text:?} is not an RFC 3339 date-time: {error}"))?;
    Ok(Timestamp::from_unix_millis(instant.as_millisecond()))
}

fn optional_instant<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Timestamp>, D::Error> {
    Option::<String>::deserialize(deserializer)?
        .map(|text| instant_from_wire(&text).map_err(serde::de::Error::custom))
        .transpose()
}

/// Whether a new user signs up themselves or is managed by the integration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UserKind {
    /// Never receives Kisi emails and needs no sign-up (`send_emails: false, confirm: true`);
    /// logins are created for them by an administrator.
    #[default]
    Managed,
    /// Receives Kisi's welcome email and registers.
    Regular,
}

/// A user to create with `POST /users`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewUser {
    pub email: String,
    pub name: Option<String>,
    pub kind: UserKind,
    pub access_enabled: bool,
    pub notes: Option<String>,
    /// Basic values only, at most 50 keys; e.g. a tag saying doorsync manages the user.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl NewUser {
    /// A managed user with door access enabled.
    pub fn managed(email: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            email: email.into(),
            name: Some(name.into()),
            kind: UserKind::Managed,
            access_enabled: true,
            notes: None,
            metadata: serde_json::Map::new(),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct CreateUserBody<'a> {
    pub(crate) user: CreateUserFields<'a>,
}

#[derive(Serialize)]
pub(crate) struct CreateUserFields<'a> {
    email: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    send_emails: bool,
    confirm: bool,
    access_enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    notes: Option<&'a str>,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    metadata: &'a serde_json::Map<String, serde_json::Value>,
}

impl<'a> CreateUserBody<'a> {
    pub(crate) fn new(user: &'a NewUser) -> Self {
        let managed = user.kind == UserKind::Managed;
        Self {
            user: CreateUserFields {
                email: &user.email,
                name: user.name.as_deref(),
                send_emails: !managed,
                confirm: managed,
                access_enabled: user.access_enabled,
                notes: user.notes.as_deref(),
                metadata: &user.metadata,
            },
        }
    }
}

#[derive(Serialize)]
pub(crate) struct UpdateUserAccessBody {
    pub(crate) user: AccessEnabled,
}

#[derive(Serialize)]
pub(crate) struct AccessEnabled {
    pub(crate) access_enabled: bool,
}

#[derive(Serialize)]
pub(crate) struct CreateAssignmentBody {
    pub(crate) role_assignment: NewGroupAssignment,
}

/// The current (not the deprecated `user_id`/`group_id`) shape of a group role assignment.
#[derive(Serialize)]
pub(crate) struct NewGroupAssignment {
    pub(crate) applies_to_type: &'static str,
    pub(crate) applies_to_id: KisiGroupId,
    pub(crate) assignee_type: &'static str,
    pub(crate) assignee_id: KisiUserId,
    pub(crate) role_id: &'static str,
    pub(crate) notify: bool,
    pub(crate) valid_from: Option<String>,
    pub(crate) valid_until: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct UpdateAssignmentBody {
    pub(crate) role_assignment: AssignmentValidity,
}

#[derive(Serialize)]
pub(crate) struct AssignmentValidity {
    pub(crate) valid_from: Option<String>,
    pub(crate) valid_until: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: i64) -> Option<Timestamp> {
        Some(Timestamp::from_unix_millis(millis))
    }

    #[test]
    fn validity_is_widened_to_whole_seconds() {
        let validity = Validity::new(at(1_700_000_000_999), at(1_700_000_100_001));
        assert_eq!(validity.in_whole_seconds(), Validity::new(at(1_700_000_000_000), at(1_700_000_101_000)));
        let whole = Validity::new(at(-1_500), at(2_000));
        assert_eq!(whole.in_whole_seconds(), Validity::new(at(-2_000), at(2_000)));
        assert_eq!(Validity::UNBOUNDED.in_whole_seconds(), Validity::UNBOUNDED);
    }

    #[test]
    fn validity_goes_on_the_wire_as_rfc3339_seconds() {
        let validity = Validity::new(at(1_735_689_600_000), at(1_738_367_999_000));
        let (from, until) = validity.to_wire().unwrap();
        assert_eq!(from.as_deref(), Some("2025-01-01T00:00:00Z"));
        assert_eq!(until.as_deref(), Some("2025-01-31T23:59:59Z"));
        let (_, until) = Validity::new(None, at(1_738_367_999_400)).to_wire().unwrap();
        assert_eq!(until.as_deref(), Some("2025-02-01T00:00:00Z"));
        assert!(Validity::new(at(i64::MAX), None).to_wire().is_err());
    }

    #[test]
    fn instants_are_read_in_any_offset_and_precision() {
        assert_eq!(instant_from_wire("2025-01-01T00:00:00.123Z"), Ok(Timestamp::from_unix_millis(1_735_689_600_123)));
        assert_eq!(instant_from_wire("2025-01-01T01:00:00+01:00"), Ok(Timestamp::from_unix_millis(1_735_689_600_000)));
        assert!(instant_from_wire("2025-01-01").is_err());
    }

    #[test]
    fn validity_covers_from_inclusive_until_exclusive() {
        let validity = Validity::new(at(10), at(20));
        assert!(!validity.covers(Timestamp::from_unix_millis(9)));
        assert!(validity.covers(Timestamp::from_unix_millis(10)));
        assert!(!validity.covers(Timestamp::from_unix_millis(20)));
        assert!(Validity::UNBOUNDED.covers(Timestamp::from_unix_millis(i64::MIN)));
    }

    #[test]
    fn role_assignments_ignore_unknown_and_deprecated_fields() {
        let json = r#"{"id":9,"resource_type":"RoleAssignment","role_id":"group_basic","applies_to_type":"Group",
            "applies_to_id":4,"assignee_type":"User","assignee_id":7,"created_by_type":"User","created_by_id":2,
            "user_id":7,"group_id":4,"type":"group","notify":false,"valid_from":null,
            "valid_until":"2025-01-31T23:59:59.000Z","something_new":[1]}"#;
        let assignment: RoleAssignment = serde_json::from_str(json).unwrap();
        assert_eq!(assignment.group(), Some(KisiGroupId(4)));
        assert_eq!(assignment.user(), Some(KisiUserId(7)));
        assert!(assignment.created_by(KisiUserId(2)) && !assignment.created_by(KisiUserId(7)));
        assert_eq!(assignment.validity(), Validity::new(None, at(1_738_367_999_000)));
    }
}
