//! The simulated organization: users, groups, role assignments and API keys, and the answers
//! Kisi gives to requests about them. Plain data and functions; the server adds HTTP, the rate
//! limit and faults around it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use doorsync_proto::{KisiAssignmentId, KisiGroupId, KisiUserId, Timestamp};
use serde_json::{Map, Value, json};

use crate::switches::{PatchValidity, UnknownIds};

/// Kisi refuses offsets above this.
const OFFSET_CAP: u64 = 20_000;
const ROLES_ON_GROUPS: [&str; 2] = ["group_basic", "group_manager"];
const WINDOW_FIELDS: [&str; 2] = ["valid_from", "valid_until"];

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAccess {
    /// An owner's or administrator's key: everything.
    Admin,
    /// An observer's key: reads only; writes answer 403.
    ReadOnly,
}

/// A user as the simulator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimUser {
    pub id: KisiUserId,
    pub email: String,
    pub name: String,
    pub access_enabled: bool,
    /// Whether Kisi emails the user (false for managed users).
    pub send_emails: bool,
    /// Whether the user was confirmed on creation (true for managed users).
    pub confirmed: bool,
    pub notes: Option<String>,
    pub metadata: Map<String, Value>,
    /// The user whose key created this one through the API (doorsync's own API user for the
    /// users doorsync made), or whoever [`SeedUser::created_by`] names; `None` for users who
    /// signed up or were seeded without one. Kisi does not show this on its API: it is for
    /// tests to tell doorsync's users from everyone else's.
    pub created_by: Option<KisiUserId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A user someone other than doorsync made: the owner, an administrator in the dashboard,
/// another integration's API user. For [`SimHandle::seed_user`](crate::SimHandle::seed_user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedUser {
    pub email: String,
    pub name: String,
    /// Who made the user; see [`SimUser::created_by`].
    pub created_by: Option<KisiUserId>,
    /// A managed user gets no Kisi emails and is confirmed at once; staff who signed up
    /// themselves are not managed.
    pub managed: bool,
    pub access_enabled: bool,
    pub notes: Option<String>,
    /// Often empty: other integrations and people in the dashboard rarely set any.
    pub metadata: Map<String, Value>,
}

impl SeedUser {
    /// A managed user with access, no creator, notes or metadata.
    pub fn new(email: &str, name: &str) -> Self {
        Self {
            email: email.to_owned(),
            name: name.to_owned(),
            created_by: None,
            managed: true,
            access_enabled: true,
            notes: None,
            metadata: Map::new(),
        }
    }

    pub fn created_by(mut self, creator: KisiUserId) -> Self {
        self.created_by = Some(creator);
        self
    }

    /// Someone who signed up and gets Kisi's emails (staff, the owner), not a managed user.
    pub fn regular(mut self) -> Self {
        self.managed = false;
        self
    }

    pub fn access_enabled(mut self, enabled: bool) -> Self {
        self.access_enabled = enabled;
        self
    }

    pub fn notes(mut self, notes: &str) -> Self {
        self.notes = Some(notes.to_owned());
        self
    }

    pub fn metadata(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.to_owned(), value.into());
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimGroup {
    pub id: KisiGroupId,
    pub name: String,
    pub description: Option<String>,
    pub created_at: Timestamp,
}

/// A role assignment of a user on a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimAssignment {
    pub id: KisiAssignmentId,
    pub user: KisiUserId,
    pub group: KisiGroupId,
    pub role_id: String,
    /// The API user (key owner) that created it; `None` for ones Kisi made itself or a
    /// marketplace app made.
    pub created_by: Option<KisiUserId>,
    /// The marketplace app installation that created it (`created_by_type`
    /// `MarketplaceInstallation`): its id is from another series than users', so it can equal
    /// any user's id.
    pub created_by_installation: Option<u64>,
    pub notify: bool,
    pub valid_from: Option<Timestamp>,
    pub valid_until: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Whether a user can open a group's doors at an instant, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupAccess {
    Granted,
    NoSuchUser,
    /// The user exists with `access_enabled = false`.
    UserSuspended,
    NotAMember,
    NotYetValid {
        from: Timestamp,
    },
    Expired {
        until: Timestamp,
    },
}

impl GroupAccess {
    pub fn is_granted(self) -> bool {
        self == Self::Granted
    }
}

/// Who is calling, from a valid API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caller {
    pub(crate) user: KisiUserId,
    pub(crate) access: KeyAccess,
}

/// An answer, before it becomes HTTP.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Option<Value>,
    pub(crate) collection_range: Option<String>,
    pub(crate) retry_after: Option<String>,
}

impl Reply {
    pub(crate) fn json(status: u16, body: Value) -> Self {
        Self { status, body: Some(body), collection_range: None, retry_after: None }
    }

    pub(crate) fn no_content() -> Self {
        Self { status: 204, body: None, collection_range: None, retry_after: None }
    }

    /// Kisi's `Error` shape.
    pub(crate) fn error(status: u16, code: &str, message: &str) -> Self {
        Self::json(status, json!({ "error": message, "code": code }))
    }

    pub(crate) fn not_found(what: &str) -> Self {
        Self::error(404, "000404", &format!("{what} not found"))
    }

    pub(crate) fn forbidden() -> Self {
        Self::error(403, "afc496", "Access denied.")
    }

    /// Kisi's `Errors` shape (422).
    fn invalid(errors: FieldErrors) -> Self {
        Self::json(422, json!({ "errors": errors.0 }))
    }
}

/// Validation messages per field, as Kisi's 422 bodies carry them.
#[derive(Debug, Default)]
struct FieldErrors(BTreeMap<String, Vec<String>>);

impl FieldErrors {
    fn add(&mut self, field: &str, message: &str) {
        self.0.entry(field.to_owned()).or_default().push(message.to_owned());
    }

    fn single(field: &str, message: &str) -> Reply {
        let mut errors = Self::default();
        errors.add(field, message);
        Reply::invalid(errors)
    }
}

/// Which Kisi operation a request is, from its method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Operation {
    FetchCurrentUser,
    FetchUsers,
    CreateUser,
    FetchUser(String),
    UpdateUser(String),
    DeleteUser(String),
    FetchGroups,
    FetchGroup(String),
    FetchRoleAssignments,
    CreateRoleAssignment,
    FetchRoleAssignment(String),
    UpdateRoleAssignment(String),
    DeleteRoleAssignment(String),
}

impl Operation {
    /// The operation and its path template (`/users/{id}`), or `None` for a path or method the
    /// simulator does not serve.
    pub(crate) fn recognise(method: &str, path: &str) -> Option<(Self, &'static str)> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let id = |index: usize| segments.get(index).map(|segment| (*segment).to_owned()).unwrap_or_default();
        Some(match (method, segments.as_slice()) {
            ("GET", ["user"]) => (Self::FetchCurrentUser, "/user"),
            ("GET", ["users"]) => (Self::FetchUsers, "/users"),
            ("POST", ["users"]) => (Self::CreateUser, "/users"),
            ("GET", ["users", _]) => (Self::FetchUser(id(1)), "/users/{id}"),
            ("PATCH", ["users", _]) => (Self::UpdateUser(id(1)), "/users/{id}"),
            ("DELETE", ["users", _]) => (Self::DeleteUser(id(1)), "/users/{id}"),
            ("GET", ["groups"]) => (Self::FetchGroups, "/groups"),
            ("GET", ["groups", _]) => (Self::FetchGroup(id(1)), "/groups/{id}"),
            ("GET", ["role_assignments"]) => (Self::FetchRoleAssignments, "/role_assignments"),
            ("POST", ["role_assignments"]) => (Self::CreateRoleAssignment, "/role_assignments"),
            ("GET", ["role_assignments", _]) => (Self::FetchRoleAssignment(id(1)), "/role_assignments/{id}"),
            ("PATCH", ["role_assignments", _]) => (Self::UpdateRoleAssignment(id(1)), "/role_assignments/{id}"),
            ("DELETE", ["role_assignments", _]) => (Self::DeleteRoleAssignment(id(1)), "/role_assignments/{id}"),
            _ => return None,
        })
    }

    pub(crate) fn is_write(&self) -> bool {
        !matches!(
            self,
            Self::FetchCurrentUser
                | Self::FetchUsers
                | Self::FetchUser(_)
                | Self::FetchGroups
                | Self::FetchGroup(_)
                | Self::FetchRoleAssignments
                | Self::FetchRoleAssignment(_)
        )
    }
}

/// One request as the world sees it.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub(crate) caller: Caller,
    pub(crate) query: &'a [(String, String)],
    pub(crate) body: &'a [u8],
    pub(crate) now: Timestamp,
}

#[derive(Debug)]
pub(crate) struct World {
    organization_id: u64,
    organization_name: String,
    next_id: u64,
    users: BTreeMap<KisiUserId, SimUser>,
    groups: BTreeMap<KisiGroupId, SimGroup>,
    assignments: BTreeMap<KisiAssignmentId, SimAssignment>,
    keys: HashMap<String, (KisiUserId, KeyAccess)>,
    /// Groups that exist but that no API key of the organization may use.
    hidden_groups: BTreeSet<KisiGroupId>,
    patch_validity: PatchValidity,
    unknown_ids: UnknownIds,
}

impl World {
    pub(crate) fn new(organization_name: String) -> Self {
        Self {
            organization_id: 1,
            organization_name,
            // Ids are unique across kinds, so a user id sent as a group id finds nothing.
            next_id: 1_000,
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            assignments: BTreeMap::new(),
            keys: HashMap::new(),
            hidden_groups: BTreeSet::new(),
            patch_validity: PatchValidity::default(),
            unknown_ids: UnknownIds::default(),
        }
    }

    pub(crate) fn set_patch_validity(&mut self, patch_validity: PatchValidity) {
        self.patch_validity = patch_validity;
    }

    pub(crate) fn set_unknown_ids(&mut self, unknown_ids: UnknownIds) {
        self.unknown_ids = unknown_ids;
    }

    /// Hides an existing group from every API key, or shows it again; false if there is no such
    /// group.
    pub(crate) fn set_group_hidden(&mut self, group: KisiGroupId, hidden: bool) -> bool {
        if !self.groups.contains_key(&group) {
            return false;
        }
        if hidden {
            self.hidden_groups.insert(group);
        } else {
            self.hidden_groups.remove(&group);
        }
        true
    }

    /// The answer for an id that names nothing, as [`UnknownIds`] says.
    fn unknown(&self, what: &str) -> Reply {
        match self.unknown_ids {
            UnknownIds::Forbidden => Reply::forbidden(),
            UnknownIds::NotFound => Reply::not_found(what),
        }
    }

    /// The group an API key asked for, or the answer when it may not have it: 403 for a hidden
    /// group, the [`UnknownIds`] answer for one that does not exist.
    fn visible_group(&self, group: KisiGroupId) -> Result<&SimGroup, Reply> {
        if self.hidden_groups.contains(&group) {
            return Err(Reply::forbidden());
        }
        self.groups.get(&group).ok_or_else(|| self.unknown("Group"))
    }

    /// A group filter of a list: `Ok(true)` for a group the key may see, `Ok(false)` for one
    /// that does not exist where [`UnknownIds::NotFound`] lets the list come back empty.
    fn list_group_filter(&self, group: KisiGroupId) -> Result<bool, Reply> {
        match self.visible_group(group) {
            Ok(_) => Ok(true),
            Err(_) if !self.hidden_groups.contains(&group) && self.unknown_ids == UnknownIds::NotFound => Ok(false),
            Err(reply) => Err(reply),
        }
    }

    /// The assignment an API key asked for by id, or the answer when it may not have it.
    fn visible_assignment(&self, id: &str) -> Result<&SimAssignment, Reply> {
        let assignment = self
            .assignments
            .get(&KisiAssignmentId(parse_id(id).unwrap_or_default()))
            .ok_or_else(|| self.unknown("Role assignment"))?;
        if self.hidden_groups.contains(&assignment.group) {
            return Err(Reply::forbidden());
        }
        Ok(assignment)
    }

    fn visible_user(&self, id: &str) -> Result<&SimUser, Reply> {
        self.users.get(&KisiUserId(parse_id(id).unwrap_or_default())).ok_or_else(|| self.unknown("User"))
    }

    fn allocate_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(crate) fn caller_for(&self, key: &str) -> Option<Caller> {
        let (user, access) = *self.keys.get(key)?;
        // A key dies with its user.
        self.users.contains_key(&user).then_some(Caller { user, access })
    }

    pub(crate) fn add_key(&mut self, user: KisiUserId, key: String, access: KeyAccess) -> bool {
        if !self.users.contains_key(&user) {
            return false;
        }
        self.keys.insert(key, (user, access));
        true
    }

    pub(crate) fn revoke_key(&mut self, key: &str) -> bool {
        self.keys.remove(key).is_some()
    }

    pub(crate) fn users(&self) -> Vec<SimUser> {
        self.users.values().cloned().collect()
    }

    pub(crate) fn groups(&self) -> Vec<SimGroup> {
        self.groups.values().cloned().collect()
    }

    pub(crate) fn assignments(&self) -> Vec<SimAssignment> {
        self.assignments.values().cloned().collect()
    }

    pub(crate) fn insert_user(&mut self, email: &str, name: &str, managed: bool, now: Timestamp) -> Option<KisiUserId> {
        let seed = SeedUser { managed, ..SeedUser::new(email, name) };
        self.insert_seeded_user(seed, now)
    }

    pub(crate) fn insert_seeded_user(&mut self, seed: SeedUser, now: Timestamp) -> Option<KisiUserId> {
        if self.user_by_email(&seed.email).is_some() {
            return None;
        }
        let id = KisiUserId(self.allocate_id());
        let user = SimUser {
            id,
            email: seed.email,
            name: seed.name,
            access_enabled: seed.access_enabled,
            send_emails: !seed.managed,
            confirmed: seed.managed,
            notes: seed.notes,
            metadata: seed.metadata,
            created_by: seed.created_by,
            created_at: now,
            updated_at: now,
        };
        self.users.insert(id, user);
        Some(id)
    }

    pub(crate) fn user_by_email(&self, email: &str) -> Option<&SimUser> {
        let email = email.to_lowercase();
        self.users.values().find(|user| user.email.to_lowercase() == email)
    }

    pub(crate) fn set_access_enabled(&mut self, user: KisiUserId, enabled: bool, now: Timestamp) -> bool {
        self.users
            .get_mut(&user)
            .map(|user| {
                user.access_enabled = enabled;
                user.updated_at = now;
            })
            .is_some()
    }

    /// Removes the user with their role assignments, as Kisi does.
    pub(crate) fn remove_user(&mut self, user: KisiUserId) -> bool {
        self.assignments.retain(|_, assignment| assignment.user != user);
        self.users.remove(&user).is_some()
    }

    pub(crate) fn insert_group(&mut self, name: &str, now: Timestamp) -> KisiGroupId {
        let id = KisiGroupId(self.allocate_id());
        self.groups.insert(id, SimGroup { id, name: name.to_owned(), description: None, created_at: now });
        id
    }

    /// A `group_basic` assignment, refused (with the field message Kisi would give) when the
    /// user or group does not exist or the user already has a role on the group.
    pub(crate) fn insert_assignment(
        &mut self,
        creator: Creator,
        user: KisiUserId,
        group: KisiGroupId,
        valid_from: Option<Timestamp>,
        valid_until: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<KisiAssignmentId, String> {
        self.check_new_assignment(user, group).map_err(|reply| reply_summary(&reply))?;
        Ok(self.commit_assignment(NewAssignment {
            creator,
            user,
            group,
            role_id: "group_basic".to_owned(),
            notify: false,
            valid_from,
            valid_until,
            now,
        }))
    }

    fn check_new_assignment(&self, user: KisiUserId, group: KisiGroupId) -> Result<(), Reply> {
        if !self.users.contains_key(&user) {
            return Err(Reply::not_found("User"));
        }
        if !self.groups.contains_key(&group) {
            return Err(Reply::not_found("Group"));
        }
        if self.assignments.values().any(|assignment| assignment.user == user && assignment.group == group) {
            return Err(FieldErrors::single("user_id", "has already been taken"));
        }
        Ok(())
    }

    fn commit_assignment(&mut self, new: NewAssignment) -> KisiAssignmentId {
        let id = KisiAssignmentId(self.allocate_id());
        let assignment = SimAssignment {
            id,
            user: new.user,
            group: new.group,
            role_id: new.role_id,
            created_by: match new.creator {
                Creator::User(user) => Some(user),
                Creator::Kisi | Creator::Installation(_) => None,
            },
            created_by_installation: match new.creator {
                Creator::Installation(installation) => Some(installation),
                Creator::Kisi | Creator::User(_) => None,
            },
            notify: new.notify,
            valid_from: new.valid_from,
            valid_until: new.valid_until,
            created_at: new.now,
            updated_at: new.now,
        };
        self.assignments.insert(id, assignment);
        id
    }

    pub(crate) fn remove_assignment(&mut self, id: KisiAssignmentId) -> bool {
        self.assignments.remove(&id).is_some()
    }

    pub(crate) fn group_access(&self, user: KisiUserId, group: KisiGroupId, at: Timestamp) -> GroupAccess {
        let Some(found) = self.users.get(&user) else {
            return GroupAccess::NoSuchUser;
        };
        if !found.access_enabled {
            return GroupAccess::UserSuspended;
        }
        let Some(assignment) =
            self.assignments.values().find(|assignment| assignment.user == user && assignment.group == group)
        else {
            return GroupAccess::NotAMember;
        };
        match (assignment.valid_from, assignment.valid_until) {
            (Some(from), _) if at < from => GroupAccess::NotYetValid { from },
            (_, Some(until)) if at >= until => GroupAccess::Expired { until },
            _ => GroupAccess::Granted,
        }
    }

    /// Answers one request of an authenticated caller.
    pub(crate) fn handle(&mut self, operation: &Operation, request: &Request<'_>) -> Reply {
        match operation {
            Operation::FetchCurrentUser => match self.users.get(&request.caller.user) {
                Some(user) => Reply::json(200, self.render_current_user(user)),
                None => Reply::error(401, "000401", "Unauthorized"),
            },
            Operation::FetchUsers => self.fetch_users(request),
            Operation::CreateUser => self.create_user(request),
            Operation::FetchUser(id) => match self.visible_user(id) {
                Ok(user) => Reply::json(200, self.render_user(user)),
                Err(reply) => reply,
            },
            Operation::UpdateUser(id) => self.update_user(id, request),
            Operation::DeleteUser(id) => match self.visible_user(id).map(|user| user.id) {
                Ok(user) => {
                    self.remove_user(user);
                    Reply::no_content()
                }
                Err(reply) => reply,
            },
            Operation::FetchGroups => self.fetch_groups(request),
            Operation::FetchGroup(id) => match self.visible_group(KisiGroupId(parse_id(id).unwrap_or_default())) {
                Ok(group) => Reply::json(200, self.render_group(group)),
                Err(reply) => reply,
            },
            Operation::FetchRoleAssignments => self.fetch_assignments(request),
            Operation::CreateRoleAssignment => self.create_assignment(request),
            Operation::FetchRoleAssignment(id) => match self.visible_assignment(id) {
                Ok(assignment) => Reply::json(200, self.render_assignment(assignment)),
                Err(reply) => reply,
            },
            Operation::UpdateRoleAssignment(id) => self.update_assignment(id, request),
            Operation::DeleteRoleAssignment(id) => match self.visible_assignment(id).map(|assignment| assignment.id) {
                Ok(assignment) => {
                    self.remove_assignment(assignment);
                    Reply::no_content()
                }
                Err(reply) => reply,
            },
        }
    }

    fn fetch_users(&self, request: &Request<'_>) -> Reply {
        let filters = match Filters::read(request.query, request.caller) {
            Ok(filters) => filters,
            Err(reply) => return reply,
        };
        let members_of = match filters.integer("group_id") {
            Ok(group) => group.map(KisiGroupId),
            Err(reply) => return reply,
        };
        if let Some(group) = members_of {
            match self.list_group_filter(group) {
                Ok(true) => {}
                Ok(false) => return page(Vec::new(), request.query, 50, 100),
                Err(reply) => return reply,
            }
        }
        let user_id = match filters.user_id() {
            Ok(user) => user,
            Err(reply) => return reply,
        };
        let users = self.users.values().filter(|user| {
            filters.ids.as_ref().is_none_or(|ids| ids.contains(&user.id.0))
                && filters.text("email").is_none_or(|email| user.email.to_lowercase() == email.to_lowercase())
                && filters.text("query").is_none_or(|query| {
                    contains_folded(&user.email, query)
                        || contains_folded(&user.name, query)
                        || user.notes.as_deref().is_some_and(|notes| contains_folded(notes, query))
                })
                && members_of.is_none_or(|group| {
                    self.assignments.values().any(|assignment| assignment.user == user.id && assignment.group == group)
                })
                && user_id.is_none_or(|id| id == user.id)
        });
        let users: Vec<Value> = users.map(|user| self.render_user(user)).collect();
        page(users, request.query, 50, 100)
    }

    fn create_user(&mut self, request: &Request<'_>) -> Reply {
        let fields = match wrapped_object(request.body, "user") {
            Ok(fields) => fields,
            Err(reply) => return reply,
        };
        let mut errors = FieldErrors::default();
        let email = match fields.get("email") {
            Some(Value::String(email)) if looks_like_email(email) => Some(email.clone()),
            _ => {
                errors.add("email", "can't be blank or invalid");
                None
            }
        };
        let name = optional_string(&fields, "name", &mut errors);
        let send_emails = optional_bool(&fields, "send_emails", &mut errors);
        let confirm = optional_bool(&fields, "confirm", &mut errors);
        let access_enabled = optional_bool(&fields, "access_enabled", &mut errors);
        let notes = optional_string(&fields, "notes", &mut errors);
        let metadata = optional_metadata(&fields, &mut errors);
        if let Some(email) = &email
            && self.user_by_email(email).is_some()
        {
            errors.add("email", "has already been taken");
        }
        let Some(email) = email.filter(|_| errors.0.is_empty()) else {
            return Reply::invalid(errors);
        };
        let id = KisiUserId(self.allocate_id());
        let user = SimUser {
            id,
            email,
            name: name.unwrap_or_default(),
            access_enabled: access_enabled.unwrap_or(true),
            send_emails: send_emails.unwrap_or(true),
            confirmed: confirm.unwrap_or(false),
            notes,
            metadata: metadata.unwrap_or_default(),
            created_by: Some(request.caller.user),
            created_at: request.now,
            updated_at: request.now,
        };
        let rendered = self.render_user(&user);
        self.users.insert(id, user);
        Reply::json(200, rendered)
    }

    /// Kisi's PATCH takes no `email`, so one sent is ignored like any other unknown field.
    fn update_user(&mut self, id: &str, request: &Request<'_>) -> Reply {
        let id = match self.visible_user(id) {
            Ok(user) => user.id,
            Err(reply) => return reply,
        };
        let fields = match wrapped_object(request.body, "user") {
            Ok(fields) => fields,
            Err(reply) => return reply,
        };
        let mut errors = FieldErrors::default();
        let name = optional_string(&fields, "name", &mut errors);
        let access_enabled = optional_bool(&fields, "access_enabled", &mut errors);
        let notes = fields.contains_key("notes").then(|| optional_string(&fields, "notes", &mut errors));
        let metadata = optional_metadata(&fields, &mut errors);
        if !errors.0.is_empty() {
            return Reply::invalid(errors);
        }
        let Some(user) = self.users.get_mut(&id) else {
            return Reply::not_found("User");
        };
        if let Some(name) = name {
            user.name = name;
        }
        if let Some(access_enabled) = access_enabled {
            user.access_enabled = access_enabled;
        }
        if let Some(notes) = notes {
            user.notes = notes;
        }
        if let Some(metadata) = metadata {
            user.metadata = metadata;
        }
        user.updated_at = request.now;
        Reply::no_content()
    }

    fn fetch_groups(&self, request: &Request<'_>) -> Reply {
        let filters = match Filters::read(request.query, request.caller) {
            Ok(filters) => filters,
            Err(reply) => return reply,
        };
        let groups = self.groups.values().filter(|group| {
            !self.hidden_groups.contains(&group.id)
                && filters.ids.as_ref().is_none_or(|ids| ids.contains(&group.id.0))
                && filters.text("query").is_none_or(|query| contains_folded(&group.name, query))
        });
        let groups: Vec<Value> = groups.map(|group| self.render_group(group)).collect();
        page(groups, request.query, 10, 250)
    }

    fn fetch_assignments(&self, request: &Request<'_>) -> Reply {
        let filters = match Filters::read(request.query, request.caller) {
            Ok(filters) => filters,
            Err(reply) => return reply,
        };
        let numbers = (filters.integer("assignee_id"), filters.integer("applies_to_id"), filters.integer("group_id"));
        let (assignee_id, applies_to_id, group_id) = match numbers {
            (Ok(assignee), Ok(applies_to), Ok(group)) => (assignee, applies_to, group),
            (Err(reply), _, _) | (_, Err(reply), _) | (_, _, Err(reply)) => return reply,
        };
        let user_id = match filters.user_id() {
            Ok(user) => user,
            Err(reply) => return reply,
        };
        let applies_to_group = filters.text("applies_to_type").is_none_or(|kind| kind == "Group");
        let named_groups = applies_to_id.filter(|_| applies_to_group).into_iter().chain(group_id);
        for group in named_groups {
            match self.list_group_filter(KisiGroupId(group)) {
                Ok(true) => {}
                Ok(false) => return page(Vec::new(), request.query, 10, 250),
                Err(reply) => return reply,
            }
        }
        // Only users hold roles here, and only on groups.
        let type_matches = |name: &str, only: &str| filters.text(name).is_none_or(|wanted| wanted == only);
        let assignments = self.assignments.values().filter(|assignment| {
            let user = self.users.get(&assignment.user);
            !self.hidden_groups.contains(&assignment.group)
                && type_matches("assignee_type", "User")
                && type_matches("applies_to_type", "Group")
                && type_matches("scope", "group")
                && filters.ids.as_ref().is_none_or(|ids| ids.contains(&assignment.id.0))
                && filters.text("role_id").is_none_or(|role| role == assignment.role_id)
                && assignee_id.is_none_or(|id| id == assignment.user.0)
                && user_id.is_none_or(|id| id == assignment.user)
                && applies_to_id.is_none_or(|id| id == assignment.group.0)
                && group_id.is_none_or(|id| id == assignment.group.0)
                && filters.text("query").is_none_or(|query| {
                    user.is_some_and(|user| contains_folded(&user.email, query) || contains_folded(&user.name, query))
                })
        });
        let assignments: Vec<Value> = assignments.map(|assignment| self.render_assignment(assignment)).collect();
        page(assignments, request.query, 10, 250)
    }

    fn create_assignment(&mut self, request: &Request<'_>) -> Reply {
        let fields = match wrapped_object(request.body, "role_assignment") {
            Ok(fields) => fields,
            Err(reply) => return reply,
        };
        let mut errors = FieldErrors::default();
        let role_id = match fields.get("role_id") {
            Some(Value::String(role)) if ROLES_ON_GROUPS.contains(&role.as_str()) => Some(role.clone()),
            Some(Value::String(_)) => {
                errors.add("role_id", "is not a role on a group");
                None
            }
            _ => {
                errors.add("role_id", "can't be blank");
                None
            }
        };
        let group = typed_reference(&fields, ("applies_to_type", "Group"), "applies_to_id", "group_id", &mut errors);
        let user = typed_reference(&fields, ("assignee_type", "User"), "assignee_id", "user_id", &mut errors);
        let notify = optional_bool(&fields, "notify", &mut errors);
        let valid_from = optional_instant(&fields, "valid_from", &mut errors).flatten();
        let valid_until = optional_instant(&fields, "valid_until", &mut errors).flatten();
        check_window(valid_from, valid_until, &mut errors);
        let (Some(role_id), Some(group), Some(user)) = (role_id, group, user) else {
            return Reply::invalid(errors);
        };
        if !errors.0.is_empty() {
            return Reply::invalid(errors);
        }
        let (user, group) = (KisiUserId(user), KisiGroupId(group));
        // Kisi support's own example of 403 for an id that does not exist is a mistyped group
        // in this very call, so that one is 403 whatever `UnknownIds` says.
        if self.hidden_groups.contains(&group) || !self.groups.contains_key(&group) {
            return Reply::forbidden();
        }
        if !self.users.contains_key(&user) {
            return self.unknown("User");
        }
        if let Err(reply) = self.check_new_assignment(user, group) {
            return reply;
        }
        let id = self.commit_assignment(NewAssignment {
            creator: Creator::User(request.caller.user),
            user,
            group,
            role_id,
            notify: notify.unwrap_or(false),
            valid_from,
            valid_until,
            now: request.now,
        });
        match self.assignments.get(&id) {
            Some(assignment) => Reply::json(200, self.render_assignment(assignment)),
            None => Reply::not_found("Role assignment"),
        }
    }

    /// What happens to `valid_from` and `valid_until` is the [`PatchValidity`] switch's.
    fn update_assignment(&mut self, id: &str, request: &Request<'_>) -> Reply {
        let current = match self.visible_assignment(id) {
            Ok(assignment) => assignment,
            Err(reply) => return reply,
        };
        let id = current.id;
        let fields = match wrapped_object(request.body, "role_assignment") {
            Ok(fields) => fields,
            Err(reply) => return reply,
        };
        let mut errors = FieldErrors::default();
        let (valid_from, valid_until) = match self.patch_validity {
            PatchValidity::Apply => (
                optional_instant(&fields, "valid_from", &mut errors).unwrap_or(current.valid_from),
                optional_instant(&fields, "valid_until", &mut errors).unwrap_or(current.valid_until),
            ),
            PatchValidity::Ignore => (current.valid_from, current.valid_until),
            PatchValidity::Reject => {
                for field in WINDOW_FIELDS.into_iter().filter(|field| fields.contains_key(*field)) {
                    errors.add(field, "can't be changed");
                }
                (current.valid_from, current.valid_until)
            }
        };
        let role_id = match fields.get("role_id") {
            None => current.role_id.clone(),
            Some(Value::String(role)) if ROLES_ON_GROUPS.contains(&role.as_str()) => role.clone(),
            Some(_) => {
                errors.add("role_id", "is not a role on a group");
                current.role_id.clone()
            }
        };
        // The spec types PATCH's `notify` as a string (a copy-paste slip); only a boolean means
        // anything, anything else is left alone.
        let notify = fields.get("notify").and_then(Value::as_bool).unwrap_or(current.notify);
        check_window(valid_from, valid_until, &mut errors);
        if !errors.0.is_empty() {
            return Reply::invalid(errors);
        }
        let Some(assignment) = self.assignments.get_mut(&id) else {
            return Reply::not_found("Role assignment");
        };
        let changed = (valid_from, valid_until, role_id.as_str(), notify)
            != (assignment.valid_from, assignment.valid_until, assignment.role_id.as_str(), assignment.notify);
        // A PATCH that changes nothing leaves `updated_at` alone, so an ignored window cannot be
        // spotted from it.
        if changed {
            assignment.valid_from = valid_from;
            assignment.valid_until = valid_until;
            assignment.role_id = role_id;
            assignment.notify = notify;
            assignment.updated_at = request.now;
        }
        Reply::no_content()
    }

    fn render_user(&self, user: &SimUser) -> Value {
        let groups_count = self.assignments.values().filter(|assignment| assignment.user == user.id).count();
        json!({
            "id": user.id.0,
            "resource_type": "User",
            "name": user.name,
            "email": user.email,
            "created_at": user.created_at.to_string(),
            "updated_at": user.updated_at.to_string(),
            "metadata": user.metadata,
            "image": null,
            "otp_required_for_login": false,
            "password_flow_enabled": false,
            "access_enabled": user.access_enabled,
            "last_accessed_at": null,
            "scim_access_enabled": true,
            "notes": user.notes,
            "organization_id": self.organization_id,
            "confirmed": user.confirmed,
            "groups_count": groups_count,
        })
    }

    fn render_current_user(&self, user: &SimUser) -> Value {
        json!({
            "id": user.id.0,
            "resource_type": "User",
            "name": user.name,
            "email": user.email,
            "image": null,
            "locale": "en",
            "notifications_unread_count": 0,
            "otp_required_for_login": false,
            "otp_enabled_at": null,
            "primary_login_exists": true,
            "created_at": user.created_at.to_string(),
            "updated_at": user.updated_at.to_string(),
            "announcements_last_seen_at": null,
            "last_read_at": null,
            "notes": user.notes,
            "organization_id": self.organization_id,
            "organization": self.render_organization(),
        })
    }

    fn render_organization(&self) -> Value {
        json!({
            "id": self.organization_id,
            "resource_type": "Organization",
            "name": self.organization_name,
            "domain": "kisi-simulator.test",
        })
    }

    fn render_group(&self, group: &SimGroup) -> Value {
        let users_count = self.assignments.values().filter(|assignment| assignment.group == group.id).count();
        json!({
            "id": group.id.0,
            "resource_type": "Group",
            "name": group.name,
            "description": group.description,
            "created_at": group.created_at.to_string(),
            "updated_at": group.created_at.to_string(),
            "geofence_restriction_enabled": false,
            "geofence_restriction_radius": 0,
            "primary_device_restriction_enabled": false,
            "managed_device_restriction_enabled": false,
            "reader_restriction_enabled": false,
            "time_restriction_enabled": false,
            "tap_to_access_restriction_enabled": false,
            "login_enabled": true,
            "users_count": users_count,
            "locks_count": 0,
            "elevator_stops_count": 0,
            "place_id": null,
            "time_restriction_time_zone": null,
            "members_count": users_count,
        })
    }

    /// The Group variant of Kisi's role assignment, deprecated duplicates included (the schema
    /// still requires them).
    fn render_assignment(&self, assignment: &SimAssignment) -> Value {
        let group_name = self.groups.get(&assignment.group).map(|group| group.name.clone()).unwrap_or_default();
        let (email, name) =
            self.users.get(&assignment.user).map(|user| (user.email.clone(), user.name.clone())).unwrap_or_default();
        let group = json!({ "id": assignment.group.0, "resource_type": "Group", "name": group_name });
        let user = json!({ "id": assignment.user.0, "resource_type": "User", "email": email, "name": name });
        let (created_by_type, created_by) = match (assignment.created_by, assignment.created_by_installation) {
            (Some(user), _) => (Some("User"), Some(user.0)),
            (None, Some(installation)) => (Some("MarketplaceInstallation"), Some(installation)),
            (None, None) => (None, None),
        };
        json!({
            "id": assignment.id.0,
            "resource_type": "RoleAssignment",
            "created_at": assignment.created_at.to_string(),
            "updated_at": assignment.updated_at.to_string(),
            "role_id": assignment.role_id,
            "notify": assignment.notify,
            "applies_to_type": "Group",
            "applies_to_id": assignment.group.0,
            "applies_to": group,
            "assignee_type": "User",
            "assignee_id": assignment.user.0,
            "assignee": user,
            "created_by_type": created_by_type,
            "created_by_id": created_by,
            "user_id": assignment.user.0,
            "user": user,
            "assignee_team_id": null,
            "guest_id": null,
            "issued_by_id": assignment.created_by.map(|user| user.0),
            "type": "group",
            "scope": "group",
            "group_id": assignment.group.0,
            "group": group,
            "valid_from": assignment.valid_from.map(|at| at.to_string()),
            "valid_until": assignment.valid_until.map(|at| at.to_string()),
        })
    }
}

/// Who made a role assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Creator {
    Kisi,
    User(KisiUserId),
    Installation(u64),
}

struct NewAssignment {
    creator: Creator,
    user: KisiUserId,
    group: KisiGroupId,
    role_id: String,
    notify: bool,
    valid_from: Option<Timestamp>,
    valid_until: Option<Timestamp>,
    now: Timestamp,
}

/// The query filters of a list request.
struct Filters<'a> {
    query: &'a [(String, String)],
    caller: Caller,
    ids: Option<Vec<u64>>,
}

impl<'a> Filters<'a> {
    fn read(query: &'a [(String, String)], caller: Caller) -> Result<Self, Reply> {
        let mut filters = Self { query, caller, ids: None };
        if let Some(ids) = filters.text("ids") {
            let parsed: Option<Vec<u64>> = ids.split(',').map(|id| id.trim().parse().ok()).collect();
            filters.ids = Some(parsed.ok_or_else(|| FieldErrors::single("ids", "is invalid"))?);
        }
        Ok(filters)
    }

    fn text(&self, name: &str) -> Option<&'a str> {
        self.query.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    fn integer(&self, name: &str) -> Result<Option<u64>, Reply> {
        self.text(name).map(|value| value.parse().map_err(|_| FieldErrors::single(name, "is not a number"))).transpose()
    }

    /// `user_id`: a number, or `me` for the caller.
    fn user_id(&self) -> Result<Option<KisiUserId>, Reply> {
        match self.text("user_id") {
            Some("me") => Ok(Some(self.caller.user)),
            _ => Ok(self.integer("user_id")?.map(KisiUserId)),
        }
    }
}

/// One page of `items` by the request's `limit` and `offset`, with `X-Collection-Range`:
/// `<offset>-<offset + limit - 1>/<total>` (the range asked for, as in Kisi's own example
/// `10-19/15`), or `*/0` for an empty collection.
fn page(items: Vec<Value>, query: &[(String, String)], default_limit: u64, max_limit: u64) -> Reply {
    let number = |name: &str, default: u64| -> Result<u64, Reply> {
        match query.iter().find(|(key, _)| key == name) {
            Some((_, value)) => value.parse().map_err(|_| FieldErrors::single(name, "is not a number")),
            None => Ok(default),
        }
    };
    let (limit, offset) = match (number("limit", default_limit), number("offset", 0)) {
        (Ok(limit), Ok(offset)) => (limit.clamp(1, max_limit), offset),
        (Err(reply), _) | (_, Err(reply)) => return reply,
    };
    if offset > OFFSET_CAP {
        return FieldErrors::single("offset", "must be less than or equal to 20000");
    }
    let total = items.len() as u64;
    let range = if total == 0 { "*/0".to_owned() } else { format!("{offset}-{}/{total}", offset + limit - 1) };
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let count = usize::try_from(limit).unwrap_or(usize::MAX);
    let page: Vec<Value> = items.into_iter().skip(start).take(count).collect();
    Reply { collection_range: Some(range), ..Reply::json(200, Value::Array(page)) }
}

fn parse_id(text: &str) -> Option<u64> {
    text.parse().ok()
}

fn contains_folded(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

fn looks_like_email(text: &str) -> bool {
    text.split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.') && !text.contains(char::is_whitespace))
}

/// The object under `key` of a JSON body such as `{"user": {...}}`.
fn wrapped_object(body: &[u8], key: &str) -> Result<Map<String, Value>, Reply> {
    let body: Value = serde_json::from_slice(body).map_err(|_| FieldErrors::single("body", "is not valid JSON"))?;
    match body.get(key) {
        Some(Value::Object(fields)) => Ok(fields.clone()),
        _ => Err(FieldErrors::single(key, "is missing")),
    }
}

fn optional_string(fields: &Map<String, Value>, name: &str, errors: &mut FieldErrors) -> Option<String> {
    match fields.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => {
            errors.add(name, "must be a string");
            None
        }
    }
}

fn optional_bool(fields: &Map<String, Value>, name: &str, errors: &mut FieldErrors) -> Option<bool> {
    match fields.get(name) {
        None => None,
        Some(Value::Bool(value)) => Some(*value),
        Some(_) => {
            errors.add(name, "must be true or false");
            None
        }
    }
}

/// Kisi's metadata rules: basic values only, at most 50 keys of up to 50 characters, values of
/// up to 500.
fn optional_metadata(fields: &Map<String, Value>, errors: &mut FieldErrors) -> Option<Map<String, Value>> {
    let metadata = match fields.get("metadata")? {
        Value::Object(metadata) => metadata,
        _ => {
            errors.add("metadata", "must be an object");
            return None;
        }
    };
    let basic = |value: &Value| match value {
        Value::String(text) => text.chars().count() <= 500,
        Value::Array(_) | Value::Object(_) => false,
        _ => true,
    };
    if metadata.len() > 50 || metadata.iter().any(|(key, value)| key.chars().count() > 50 || !basic(value)) {
        errors.add("metadata", "is invalid");
        return None;
    }
    Some(metadata.clone())
}

/// `Some(None)` for an explicit null (clear the bound), `None` when absent or invalid.
fn optional_instant(fields: &Map<String, Value>, name: &str, errors: &mut FieldErrors) -> Option<Option<Timestamp>> {
    match fields.get(name)? {
        Value::Null => Some(None),
        Value::String(text) => match text.parse::<jiff::Timestamp>() {
            Ok(instant) => Some(Some(Timestamp::from_unix_millis(instant.as_millisecond()))),
            Err(_) => {
                errors.add(name, "is not a date-time");
                None
            }
        },
        _ => {
            errors.add(name, "is not a date-time");
            None
        }
    }
}

fn check_window(from: Option<Timestamp>, until: Option<Timestamp>, errors: &mut FieldErrors) {
    if let (Some(from), Some(until)) = (from, until)
        && until <= from
    {
        errors.add("valid_until", "must be after valid_from");
    }
}

/// A reference in the current form (`applies_to_type` + `applies_to_id`) or the deprecated one
/// (`group_id`); the simulator serves only the given type.
fn typed_reference(
    fields: &Map<String, Value>,
    (type_field, only_type): (&str, &str),
    id_field: &str,
    legacy_field: &str,
    errors: &mut FieldErrors,
) -> Option<u64> {
    match fields.get(type_field) {
        None | Some(Value::Null) => {}
        Some(Value::String(kind)) if kind == only_type => {}
        Some(_) => {
            errors.add(type_field, &format!("must be {only_type} (the simulator serves no other)"));
            return None;
        }
    }
    let id = fields.get(id_field).or_else(|| fields.get(legacy_field)).and_then(Value::as_u64);
    if id.is_none() {
        errors.add(id_field, "can't be blank");
    }
    id
}

fn reply_summary(reply: &Reply) -> String {
    reply.body.as_ref().map_or_else(|| reply.status.to_string(), |body| format!("{} {body}", reply.status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_millis(seconds * 1_000)
    }

    #[test]
    fn access_needs_an_enabled_user_and_a_valid_assignment() {
        let mut world = World::new("Org".into());
        let user = world.insert_user("ann@example.com", "Ann", true, at(0)).unwrap();
        let group = world.insert_group("Room 1", at(0));
        assert_eq!(world.group_access(user, group, at(5)), GroupAccess::NotAMember);
        world.insert_assignment(Creator::Kisi, user, group, Some(at(10)), Some(at(20)), at(0)).unwrap();
        assert_eq!(world.group_access(user, group, at(9)), GroupAccess::NotYetValid { from: at(10) });
        assert!(world.group_access(user, group, at(10)).is_granted());
        assert_eq!(world.group_access(user, group, at(20)), GroupAccess::Expired { until: at(20) });
        world.set_access_enabled(user, false, at(1));
        assert_eq!(world.group_access(user, group, at(15)), GroupAccess::UserSuspended);
        assert_eq!(world.group_access(KisiUserId(1), group, at(15)), GroupAccess::NoSuchUser);
    }

    #[test]
    fn one_role_per_user_and_group() {
        let mut world = World::new("Org".into());
        let user = world.insert_user("ann@example.com", "Ann", true, at(0)).unwrap();
        let group = world.insert_group("Room 1", at(0));
        world.insert_assignment(Creator::Kisi, user, group, None, None, at(0)).unwrap();
        let second = world.insert_assignment(Creator::Kisi, user, group, None, None, at(0)).unwrap_err();
        assert!(second.contains("has already been taken"), "{second}");
    }

    #[test]
    fn pages_carry_the_asked_range_and_the_total() {
        let items: Vec<Value> = (0..15).map(Value::from).collect();
        let query = [("offset".to_owned(), "10".to_owned()), ("limit".to_owned(), "10".to_owned())];
        let reply = page(items, &query, 10, 250);
        assert_eq!(reply.collection_range.as_deref(), Some("10-19/15"));
        assert_eq!(reply.body, Some(Value::Array((10..15).map(Value::from).collect())));
        assert_eq!(page(Vec::new(), &[], 10, 250).collection_range.as_deref(), Some("*/0"));
        let over_cap = [("offset".to_owned(), "20001".to_owned())];
        assert_eq!(page(vec![Value::Null], &over_cap, 10, 250).status, 422);
    }
}
