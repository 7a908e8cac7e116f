//! Reads what Kisi holds for a plan, without writing anything: who the API key belongs to (its
//! assignments are doorsync's) and who the adopted creators are (theirs are taken over), the
//! managed groups' role assignments, the linked users, and the users that members without one
//! would be linked to by email.
//!
//! Kisi allows 5 requests in a second per API user, shared with the running writer, so requests
//! go through the writer's own limiter at the configured rate, and a 429, 5xx or timeout is
//! retried a few times after Kisi's `Retry-After` (or a doubling pause).

use std::time::Duration;

use doorsync_clock::SharedClock;
use doorsync_kisi::{KisiClient, KisiError};
use doorsync_writer::dry_run::{Creators, KisiView, SeenUser, ToRead};
use doorsync_writer::{ASSIGNMENTS_PAGE, RequestLimiter};

use super::OperationError;

/// Tries per request before giving up.
const ATTEMPTS: u32 = 5;
/// The pause after a first failure without `Retry-After`; it doubles with each further one.
const FIRST_PAUSE: Duration = Duration::from_secs(1);

/// What was read, with how many requests it took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Read {
    pub(crate) view: KisiView,
    pub(crate) requests: u64,
}

/// Reads everything `wanted` names, `requests_per_second` at most; `adopt_created_by` are the
/// emails of the users whose assignments doorsync takes over.
pub(crate) async fn read(
    client: &KisiClient,
    clock: &SharedClock,
    requests_per_second: u32,
    wanted: &ToRead,
    adopt_created_by: &[String],
) -> Result<Read, OperationError> {
    let mut paced = Limited::new(client, clock, requests_per_second);
    let me = paced
        .call(|client| async move { client.current_user().await })
        .await
        .map_err(OperationError::kisi("asking Kisi which user the API key belongs to"))?;
    let mut adopted = Vec::new();
    for email in adopt_created_by {
        let found = paced
            .call(|client| async move { client.find_user_by_email(email).await })
            .await
            .map_err(OperationError::kisi("looking up a user kisi.adopt_created_by names"))?;
        match found {
            Some(user) => adopted.push(user.id),
            None => tracing::warn!("kisi.adopt_created_by names an email no Kisi user has"),
        }
    }
    let creators = Creators::new(me.id, adopted);
    let mut view = KisiView::default();
    for &group in &wanted.groups {
        let assignments = paced
            .call(|client| async move { client.group_assignments(group).await })
            .await
            .map_err(OperationError::kisi(format!("listing the members of Kisi group {group}")))?;
        paced.count_extra_pages(assignments.len(), ASSIGNMENTS_PAGE);
        let seen = assignments.iter().filter_map(|assignment| creators.seen(assignment)).collect();
        view.assignments.insert(group, seen);
    }
    for &user in &wanted.users {
        let seen = match paced.call(|client| async move { client.user(user).await }).await {
            Ok(found) if found.access_enabled => SeenUser::Enabled,
            Ok(_) => SeenUser::Suspended,
            // Kisi answers 403 for an id that does not exist; the key works (it just said whose it is).
            Err(KisiError::NotFound { .. } | KisiError::Forbidden { .. }) => SeenUser::Gone,
            Err(error) => return Err(OperationError::kisi(format!("reading Kisi user {user}"))(error)),
        };
        view.users.insert(user, seen);
    }
    for email in &wanted.emails {
        let found = paced
            .call(|client| async move { client.find_user_by_email(email).await })
            .await
            .map_err(OperationError::kisi("looking up the Kisi user of a member who has none linked yet"))?;
        // The writer never links the API key's own user to a member.
        if let Some(user) = found.filter(|user| user.id != me.id) {
            view.found_by_email.insert(email.clone(), user.id);
        }
    }
    Ok(Read { view, requests: paced.requests })
}

/// Sends requests when the writer's limiter allows and retries the ones Kisi may answer later.
struct Limited<'a> {
    client: &'a KisiClient,
    clock: &'a SharedClock,
    limiter: RequestLimiter,
    requests: u64,
}

impl<'a> Limited<'a> {
    fn new(client: &'a KisiClient, clock: &'a SharedClock, requests_per_second: u32) -> Self {
        Self { client, clock, limiter: RequestLimiter::new(requests_per_second), requests: 0 }
    }

    async fn call<T, F>(&mut self, request: impl Fn(&'a KisiClient) -> F) -> Result<T, KisiError>
    where
        F: Future<Output = Result<T, KisiError>>,
    {
        let mut failures = 0;
        loop {
            self.clock.sleep_until(self.limiter.reserve(self.clock.now())).await;
            self.requests += 1;
            let answer = request(self.client).await;
            let now = self.clock.now();
            self.limiter.answered(now);
            match answer {
                Err(error) if error.is_retryable() && failures + 1 < ATTEMPTS => {
                    let pause = error.retry_after().map_or(FIRST_PAUSE * 2_u32.pow(failures), |at| at.delay_from(now));
                    tracing::warn!(%error, "a Kisi read failed; trying it again");
                    self.limiter.hold_until(now + pause);
                    failures += 1;
                }
                answer => return answer,
            }
        }
    }

    /// Counts the pages after the first that a list call of `items` results read, `page` each.
    fn count_extra_pages(&mut self, items: usize, page: usize) {
        let extra_pages = u32::try_from(items / page.max(1)).unwrap_or(u32::MAX);
        self.requests += u64::from(extra_pages);
        self.limiter.charge(extra_pages, self.clock.now());
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use doorsync_access::Window;
    use doorsync_clock::SystemClock;
    use doorsync_kisi_sim::{Fault, FaultRule};
    use doorsync_proto::{KisiGroupId, KisiUserId};
    use doorsync_writer::dry_run::SeenAssignment;

    use super::*;
    use crate::testing::{Kisi, at};

    #[tokio::test]
    async fn reads_the_groups_members_with_who_made_them_and_the_users_states() {
        let kisi = Kisi::start(50).await;
        let sim = &kisi.handle;
        let (lounge, studio, other) = (sim.add_group("Lounge"), sim.add_group("Studio"), sim.add_group("Other"));
        let ann = sim.add_user("ann@example.test", "Ann").unwrap();
        let bob = sim.add_user("bob@example.test", "Bob").unwrap();
        let gone = sim.add_user("gone@example.test", "Gone").unwrap();
        sim.remove_user(gone);
        sim.set_user_access_enabled(bob, false);
        let ours = sim.add_assignment_as(Some(kisi.api_user), ann, lounge, Some(at(0)), Some(at(60))).unwrap();
        let theirs = sim.add_assignment_as(None, bob, lounge, None, None).unwrap();
        sim.add_assignment_as(Some(kisi.api_user), ann, other, None, None).unwrap();
        let wanted = ToRead {
            groups: BTreeSet::from([lounge, studio]),
            users: BTreeSet::from([ann, bob, gone]),
            emails: BTreeSet::new(),
        };
        let clock: SharedClock = Arc::new(SystemClock);

        let read = read(&kisi.client(), &clock, 5, &wanted, &[]).await.unwrap();

        let lounge_members = &read.view.assignments[&lounge];
        assert_eq!(lounge_members.len(), 2);
        let find = |id| lounge_members.iter().find(|seen| seen.id == id).unwrap();
        assert_eq!(
            *find(ours),
            SeenAssignment {
                id: ours,
                user: ann,
                window: Window { from: Some(at(0)), until: Some(at(60)) },
                ours: true,
                adopted: false,
            }
        );
        assert!(!find(theirs).ours, "made by Kisi, not by the API key's user");
        assert_eq!(read.view.assignments[&studio], []);
        assert!(!read.view.assignments.contains_key(&other), "only the groups asked for are read");
        assert_eq!(read.view.users[&ann], SeenUser::Enabled);
        assert_eq!(read.view.users[&bob], SeenUser::Suspended);
        assert_eq!(read.view.users[&gone], SeenUser::Gone);
        assert_eq!(read.requests, 6, "one for the key's user, one per group, one per user");
        let writes = sim.calls().by_endpoint.keys().filter(|endpoint| !endpoint.starts_with("GET")).count();
        assert_eq!(writes, 0, "{:?}", sim.calls());
    }

    #[tokio::test]
    async fn a_throttled_read_is_tried_again_after_retry_after() {
        let kisi = Kisi::start(50).await;
        let group = kisi.handle.add_group("Lounge");
        let throttled = Fault::Status { status: 429, retry_after: Some("1".to_owned()) };
        kisi.handle.inject(FaultRule::new(throttled).times(1).method("GET").path("/role_assignments"));
        let wanted = ToRead { groups: BTreeSet::from([group]), users: BTreeSet::new(), emails: BTreeSet::new() };
        let clock: SharedClock = Arc::new(SystemClock);
        let read = read(&kisi.client(), &clock, 5, &wanted, &[]).await.unwrap();
        assert_eq!(read.view.assignments[&group], []);
        assert_eq!(read.requests, 3);
    }

    #[tokio::test]
    async fn a_refused_key_fails_with_what_was_being_read_and_a_hint() {
        let kisi = Kisi::start(50).await;
        kisi.handle.revoke_api_key(crate::testing::KEY);
        let wanted = ToRead {
            groups: BTreeSet::from([KisiGroupId(1)]),
            users: BTreeSet::from([KisiUserId(1)]),
            emails: BTreeSet::new(),
        };
        let clock: SharedClock = Arc::new(SystemClock);
        let error = read(&kisi.client(), &clock, 5, &wanted, &[]).await.unwrap_err();
        let text = crate::with_causes(&error);
        assert!(text.contains("which user the API key belongs to") && text.contains("KISI_API_KEY"), "{text}");
    }
}
