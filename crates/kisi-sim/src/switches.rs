//! Switches for behaviours Kisi's documentation leaves open. Each defaults to the form that is
//! hardest on a client, so a test that passes on the defaults does not lean on a kindness the
//! real Kisi may not show; a deterministic simulation draws them per seed.

/// What `PATCH /role_assignments/{id}` does with `valid_from` and `valid_until`.
///
/// Kisi's OpenAPI description lists neither for this PATCH (its Group variant has a mislabelled
/// `notify` typed as a date-time instead), so whether a validity window can be changed in place
/// is unconfirmed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum PatchValidity {
    /// The window changes as asked.
    Apply,
    /// The answer is the usual 204, but the window stays as it was: only reading the assignment
    /// back shows the change did not happen. The silent form, hence the default.
    #[default]
    Ignore,
    /// 422 with Kisi's `{"errors": {"valid_until": ["can't be changed"]}}` naming each window
    /// field sent; nothing changes.
    Reject,
}

impl PatchValidity {
    /// Every form, for a simulation that draws one per seed.
    pub const ALL: [Self; 3] = [Self::Apply, Self::Ignore, Self::Reject];
}

/// What Kisi answers for an id that does not exist, where its documentation allows both.
///
/// Kisi support documents 403 for ids that do not exist or that the key cannot see, with a
/// mistyped group id in a role-assignment create as the example; that case (and every group the
/// key may not see, [`SimHandle::hide_group`](crate::SimHandle::hide_group)) answers 403
/// whatever this switch says. Everywhere else the OpenAPI description lists both 403 and 404, so
/// this switch decides, for: `GET`/`PATCH`/`DELETE /users/{id}`, `GET /groups/{id}`,
/// `GET`/`PATCH`/`DELETE /role_assignments/{id}`, a role-assignment create naming a user that
/// does not exist, and the lists `GET /role_assignments` (`applies_to_id` of a group, or
/// `group_id`) and `GET /users` (`group_id`) filtered by a group that does not exist. Lists
/// filtered by a user that does not exist are empty either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum UnknownIds {
    /// 403 `Access denied.`: what support describes, and indistinguishable from a key that lacks
    /// rights, hence the default.
    #[default]
    Forbidden,
    /// 404 for ids in the path; a list filtered by a group that does not exist is empty, since a
    /// list has no 404.
    NotFound,
}

impl UnknownIds {
    /// Every form, for a simulation that draws one per seed.
    pub const ALL: [Self; 2] = [Self::Forbidden, Self::NotFound];
}
