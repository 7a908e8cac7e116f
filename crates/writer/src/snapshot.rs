//! One picture of the Kisi account, read a page at a time: every user by email, and every
//! assignment of each managed group. Taken when the writer takes the account (before it works
//! the backlog, when a first sync's commands arrive) and again by every reconciliation, so a
//! member Kisi already holds is linked without a search of its own and its memberships in the
//! managed groups are known without a listing of its own, and a member Kisi does not hold is
//! created without a search.
//!
//! What it may answer, and when it says nothing (the member is then looked up in Kisi alone):
//! * An email is matched exactly, ignoring case; an email two users share is never guessed.
//! * A user's absence is trusted only for [`TRUSTED_FOR`] after the users' listing began: a
//!   member who appears later is looked up, unless a reconciliation took a newer snapshot
//!   meanwhile. Should someone create a user with the email after the listing, Kisi refuses the
//!   create as a duplicate and the member is looked up then.
//! * A listing cut short (past Kisi's offset cap of 20,000, or a page Kisi refused) answers
//!   nothing from that part: a users' listing past 20,000 users looks every member up one by
//!   one, as before the snapshot.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use doorsync_kisi::{RoleAssignment, User};
use doorsync_proto::{KisiGroupId, KisiUserId, Timestamp};

/// How long after the users' listing began a user missing from it is taken as absent.
pub(crate) const TRUSTED_FOR: Duration = Duration::from_secs(60 * 60);

/// The next page a snapshot being taken needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageRequest {
    Users { offset: u64 },
    Group { group: KisiGroupId, offset: u64 },
}

/// A snapshot being taken, a page at a time.
#[derive(Debug)]
pub(crate) struct Taking {
    started_at: Timestamp,
    next: Option<PageRequest>,
    /// The managed groups not listed yet, the next one first.
    groups_left: Vec<KisiGroupId>,
    /// `None` once the users' listing was cut short.
    users: Option<Vec<User>>,
    groups: BTreeMap<KisiGroupId, Vec<RoleAssignment>>,
    /// Groups Kisi refused to list to a key that works.
    refused: BTreeSet<KisiGroupId>,
    /// Failed reads of the next page in a row, and when it may be read again.
    attempts: u32,
    not_before: Timestamp,
}

impl Taking {
    /// Starts a snapshot of the users and of `groups`, at `now`.
    pub(crate) fn new(groups: &[KisiGroupId], now: Timestamp) -> Self {
        let mut groups_left: Vec<KisiGroupId> = groups.to_vec();
        groups_left.sort_unstable();
        groups_left.dedup();
        groups_left.reverse();
        Self {
            started_at: now,
            next: Some(PageRequest::Users { offset: 0 }),
            groups_left,
            users: Some(Vec::new()),
            groups: BTreeMap::new(),
            refused: BTreeSet::new(),
            attempts: 0,
            not_before: now,
        }
    }

    /// The page to read next, `None` once every listing is read.
    pub(crate) fn next_request(&self) -> Option<PageRequest> {
        self.next
    }

    /// When the next page may be read (after a failed read, later than now).
    pub(crate) fn due_at(&self) -> Option<Timestamp> {
        self.next.map(|_| self.not_before)
    }

    /// The next page failed to be read once more: how many times in a row.
    pub(crate) fn failed_again(&mut self) -> u32 {
        self.attempts += 1;
        self.attempts
    }

    /// Holds the next page back until `at`.
    pub(crate) fn not_before(&mut self, at: Timestamp) {
        self.not_before = at;
    }

    /// A page of users, and where the next one starts.
    pub(crate) fn users_read(&mut self, users: Vec<User>, next_offset: Option<u64>) {
        self.attempts = 0;
        if let Some(listed) = &mut self.users {
            listed.extend(users);
        }
        match next_offset {
            Some(offset) => self.next = Some(PageRequest::Users { offset }),
            None => self.next_group(),
        }
    }

    /// A page of `group`'s assignments, and where the next one starts.
    pub(crate) fn group_read(
        &mut self,
        group: KisiGroupId,
        assignments: Vec<RoleAssignment>,
        next_offset: Option<u64>,
    ) {
        self.attempts = 0;
        self.groups.entry(group).or_default().extend(assignments);
        match next_offset {
            Some(offset) => self.next = Some(PageRequest::Group { group, offset }),
            None => self.next_group(),
        }
    }

    /// The listing the last request belongs to cannot be read whole: what it answers is left out
    /// of the snapshot, and the next listing starts.
    pub(crate) fn cut_short(&mut self) {
        self.attempts = 0;
        match self.next {
            Some(PageRequest::Users { .. }) => self.users = None,
            Some(PageRequest::Group { group, .. }) => {
                self.groups.remove(&group);
            }
            None => return,
        }
        self.next_group();
    }

    /// Kisi refused the group being listed to a key that works: left out, and remembered as
    /// refused.
    pub(crate) fn refused(&mut self) {
        if let Some(PageRequest::Group { group, .. }) = self.next {
            self.refused.insert(group);
        }
        self.cut_short();
    }

    fn next_group(&mut self) {
        self.next = self.groups_left.pop().map(|group| {
            self.groups.insert(group, Vec::new());
            PageRequest::Group { group, offset: 0 }
        });
    }

    /// The snapshot, once [`next_request`](Self::next_request) is `None`.
    pub(crate) fn finish(self) -> Snapshot {
        let users = self.users.map(|users| {
            let mut by_email: HashMap<String, Vec<User>> = HashMap::new();
            let mut seen = HashSet::new();
            // A user a concurrent insert shifted onto the next page is listed twice.
            for user in users.into_iter().filter(|user| seen.insert(user.id)) {
                by_email.entry(email_key(&user.email)).or_default().push(user);
            }
            by_email
        });
        let mut assignments: HashMap<KisiUserId, BTreeMap<KisiGroupId, RoleAssignment>> = HashMap::new();
        for (&group, listed) in &self.groups {
            for assignment in listed {
                if let Some(user) = assignment.user() {
                    assignments.entry(user).or_default().insert(group, assignment.clone());
                }
            }
        }
        let groups = self.groups.into_keys().collect();
        Snapshot { taken_at: self.started_at, users, groups, assignments, refused: self.refused }
    }
}

/// What one snapshot answers about an email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup<'a> {
    /// Exactly one user has the email.
    Found(&'a User),
    /// No user had the email when the users were listed, recently enough to trust.
    Absent,
    /// The snapshot cannot say: look in Kisi.
    Unknown,
}

/// A picture of the Kisi account (see the module documentation).
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    taken_at: Timestamp,
    /// Every user by its email in lower case; `None` when the users' listing was cut short.
    users: Option<HashMap<String, Vec<User>>>,
    /// The groups listed whole.
    groups: BTreeSet<KisiGroupId>,
    /// Every listed assignment, by user and group.
    assignments: HashMap<KisiUserId, BTreeMap<KisiGroupId, RoleAssignment>>,
    /// Groups Kisi refused to list to a key that works.
    refused: BTreeSet<KisiGroupId>,
}

fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

impl Snapshot {
    /// Who has `email`, if the snapshot can say at `now`.
    pub(crate) fn user_with_email(&self, email: &str, now: Timestamp) -> Lookup<'_> {
        let Some(users) = &self.users else { return Lookup::Unknown };
        match users.get(&email_key(email)).map(Vec::as_slice) {
            Some([only]) => Lookup::Found(only),
            Some([_, _, ..]) => Lookup::Unknown,
            Some([]) | None if now < self.taken_at + TRUSTED_FOR => Lookup::Absent,
            Some([]) | None => Lookup::Unknown,
        }
    }

    /// Every user listed, when the users' listing was read whole.
    pub(crate) fn users_by_id(&self) -> Option<HashMap<KisiUserId, &User>> {
        Some(self.users.as_ref()?.values().flatten().map(|user| (user.id, user)).collect())
    }

    /// Whether Kisi refused to list `group` to a key that works.
    pub(crate) fn refused(&self, group: KisiGroupId) -> bool {
        self.refused.contains(&group)
    }

    /// The assignments of `group` (held by users), if it was listed whole.
    pub(crate) fn group_assignments(&self, group: KisiGroupId) -> Option<Vec<&RoleAssignment>> {
        self.groups.contains(&group).then(|| self.assignments.values().filter_map(|held| held.get(&group)).collect())
    }

    /// What `user` holds in each group listed whole: an assignment or nothing.
    pub(crate) fn memberships_of(&self, user: KisiUserId) -> Vec<(KisiGroupId, Option<&RoleAssignment>)> {
        let held = self.assignments.get(&user);
        self.groups.iter().map(|&group| (group, held.and_then(|held| held.get(&group)))).collect()
    }

    /// Forgets a user found gone (deleted by doorsync or by hand), so it is not linked again.
    pub(crate) fn forget_user(&mut self, id: KisiUserId) {
        if let Some(users) = &mut self.users {
            for listed in users.values_mut() {
                listed.retain(|user| user.id != id);
            }
        }
        self.assignments.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use doorsync_kisi::{AppliesToType, AssigneeType};
    use doorsync_proto::KisiAssignmentId;

    use super::*;

    fn user(id: u64, email: &str) -> User {
        User {
            id: KisiUserId(id),
            email: email.to_owned(),
            name: None,
            access_enabled: true,
            notes: None,
            metadata: None,
        }
    }

    fn assignment(id: u64, user: u64, group: u64) -> RoleAssignment {
        RoleAssignment {
            id: KisiAssignmentId(id),
            role_id: "group_basic".to_owned(),
            applies_to_type: AppliesToType::Group,
            applies_to_id: group,
            assignee_type: AssigneeType::User,
            assignee_id: user,
            created_by_type: None,
            created_by_id: None,
            notify: false,
            valid_from: None,
            valid_until: None,
        }
    }

    const START: Timestamp = Timestamp::from_unix_millis(1_000_000);

    fn taken(users: Vec<User>, groups: &[(u64, Vec<RoleAssignment>)]) -> Snapshot {
        let ids: Vec<KisiGroupId> = groups.iter().map(|(group, _)| KisiGroupId(*group)).collect();
        let mut taking = Taking::new(&ids, START);
        assert_eq!(taking.next_request(), Some(PageRequest::Users { offset: 0 }));
        taking.users_read(users, None);
        for (group, assignments) in groups {
            assert_eq!(taking.next_request(), Some(PageRequest::Group { group: KisiGroupId(*group), offset: 0 }));
            taking.group_read(KisiGroupId(*group), assignments.clone(), None);
        }
        assert_eq!(taking.next_request(), None);
        taking.finish()
    }

    #[test]
    fn emails_match_exactly_ignoring_case_and_two_users_with_one_email_are_never_guessed() {
        let snapshot =
            taken(vec![user(1, "Ann@Example.com"), user(2, "bob@example.com"), user(3, "BOB@example.com")], &[]);
        assert_eq!(snapshot.user_with_email(" ann@example.COM", START), Lookup::Found(&user(1, "Ann@Example.com")));
        assert_eq!(snapshot.user_with_email("bob@example.com", START), Lookup::Unknown);
        assert_eq!(snapshot.user_with_email("an@example.com", START), Lookup::Absent);
    }

    #[test]
    fn an_absence_is_trusted_only_for_a_while_after_the_listing_began() {
        let snapshot = taken(vec![user(1, "ann@x")], &[]);
        let later = START + TRUSTED_FOR;
        assert_eq!(snapshot.user_with_email("cy@x", later), Lookup::Unknown);
        assert!(matches!(snapshot.user_with_email("ann@x", later), Lookup::Found(_)));
    }

    #[test]
    fn a_listing_cut_short_answers_nothing_from_its_part() {
        let mut taking = Taking::new(&[KisiGroupId(7), KisiGroupId(8)], START);
        taking.users_read(vec![user(1, "ann@x")], Some(100));
        assert_eq!(taking.next_request(), Some(PageRequest::Users { offset: 100 }));
        taking.cut_short();
        assert_eq!(taking.next_request(), Some(PageRequest::Group { group: KisiGroupId(7), offset: 0 }));
        taking.group_read(KisiGroupId(7), vec![assignment(1, 1, 7)], Some(250));
        taking.cut_short();
        taking.group_read(KisiGroupId(8), vec![assignment(2, 1, 8)], None);
        let snapshot = taking.finish();
        assert_eq!(snapshot.user_with_email("ann@x", START), Lookup::Unknown);
        assert_eq!(snapshot.user_with_email("cy@x", START), Lookup::Unknown);
        assert_eq!(snapshot.group_assignments(KisiGroupId(8)).map(|listed| listed.len()), Some(1));
        assert!(snapshot.group_assignments(KisiGroupId(7)).is_none());
    }

    #[test]
    fn memberships_are_known_for_the_listed_groups_only_and_a_gone_user_is_forgotten() {
        let mut snapshot = taken(
            vec![user(1, "ann@x"), user(2, "bob@x")],
            &[(7, vec![assignment(10, 1, 7)]), (8, vec![assignment(11, 2, 8), assignment(12, 1, 8)])],
        );
        let ann: Vec<(KisiGroupId, Option<KisiAssignmentId>)> = snapshot
            .memberships_of(KisiUserId(1))
            .into_iter()
            .map(|(group, held)| (group, held.map(|held| held.id)))
            .collect();
        assert_eq!(
            ann,
            vec![(KisiGroupId(7), Some(KisiAssignmentId(10))), (KisiGroupId(8), Some(KisiAssignmentId(12)))]
        );
        snapshot.forget_user(KisiUserId(1));
        assert_eq!(snapshot.user_with_email("ann@x", START), Lookup::Absent);
        assert_eq!(snapshot.group_assignments(KisiGroupId(8)).map(|listed| listed.len()), Some(1));
    }
}
