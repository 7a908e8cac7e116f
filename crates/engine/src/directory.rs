//! The members a shard knows, as a front desk looks them up: by name or email, and by what they
//! can open now or soon.
//!
//! Each shard keeps a [`MemberListing`] per member, taken from the member's state whenever its
//! actor evaluates it (so its grants are those written to Kisi, good until its `next_change`,
//! when it is evaluated again), and, for members a restart left passivated, read once from their
//! snapshots after the partition caught up. A search runs inside every owned shard over these
//! listings and hands back only a page of matches, so looking someone up among 50,000 members
//! moves a page of listings, not every member's state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use doorsync_access::{AccessPolicy, KisiRecord, Mapping, MemberState, MemberStatus, Window};
use doorsync_proto::{KisiGroupId, KisiUserState, MemberId, Timestamp};
use ractor::ActorRef;
use serde::{Deserialize, Serialize};

use crate::member::load_snapshot;
use crate::shard::{MappingVersion, ShardMsg};
use crate::shared::Shared;

/// What the Kisi side says of the member's user, as the writer's outcomes reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KisiUser {
    /// No Kisi user is linked to the member.
    None,
    /// A user is linked but its state was not reported since.
    Unreported,
    Enabled,
    Suspended,
    Deleted,
}

impl KisiUser {
    /// The user as the writer's outcomes left it. The writer reports a user's state when it
    /// changes it, and a user it creates only when not enabled: one it created and never
    /// reported on is enabled.
    pub fn of(kisi: &KisiRecord) -> Self {
        match (kisi.user, kisi.user_state) {
            (None, _) => Self::None,
            (Some(_), Some(KisiUserState::Enabled)) => Self::Enabled,
            (Some(_), Some(KisiUserState::Suspended)) => Self::Suspended,
            (Some(_), Some(KisiUserState::Deleted)) => Self::Deleted,
            (Some(_), None) if kisi.created_by_doorsync => Self::Enabled,
            (Some(_), None) => Self::Unreported,
        }
    }

    /// `enabled`, `suspended`, `deleted`, `not reported`, `none`.
    pub fn label(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Unreported => "not reported",
            Self::Enabled => "enabled",
            Self::Suspended => "suspended",
            Self::Deleted => "deleted",
        }
    }
}

/// One member as the front desk sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberListing {
    pub member: MemberId,
    pub status: MemberStatus,
    pub kisi_user: KisiUser,
    /// Each group's running stretch of access, or else its next one (the fold's `desired`).
    pub grants: BTreeMap<KisiGroupId, Window>,
    /// When what the member should hold next changes.
    pub next_change: Option<Timestamp>,
}

impl MemberListing {
    /// The member as their state says at `now`.
    pub fn of(state: &MemberState, mapping: &Mapping, policy: &AccessPolicy, now: Timestamp) -> Self {
        let grants = doorsync_access::desired(state, mapping, policy, now).grants;
        Self::evaluated(state, grants, doorsync_access::next_change(state, mapping, policy, now))
    }

    /// The member from an evaluation that found `grants` and `next_change`.
    pub(crate) fn evaluated(
        state: &MemberState,
        grants: BTreeMap<KisiGroupId, Window>,
        next_change: Option<Timestamp>,
    ) -> Self {
        let kisi_user = KisiUser::of(state.kisi());
        Self { member: state.member(), status: state.status().clone(), kisi_user, grants, next_change }
    }

    /// The name Nexudus gave, if any.
    pub fn name(&self) -> Option<&str> {
        match &self.status {
            MemberStatus::Known(profile) => Some(&profile.name),
            _ => None,
        }
    }

    /// The email Nexudus gave, if any.
    pub fn email(&self) -> Option<&str> {
        match &self.status {
            MemberStatus::Known(profile) => Some(&profile.email),
            _ => None,
        }
    }

    /// Whether the name or the email contains `lowercase_text` (already lower case), ignoring case.
    fn mentions(&self, lowercase_text: &str) -> bool {
        lowercase_text.is_empty()
            || [self.name(), self.email()]
                .into_iter()
                .flatten()
                .any(|field| field.to_lowercase().contains(lowercase_text))
    }

    /// The groups whose stretch is open at `at`.
    pub fn open_at(&self, at: Timestamp) -> impl Iterator<Item = (&KisiGroupId, &Window)> {
        self.grants.iter().filter(move |(_, window)| window.contains(at))
    }

    /// Whether a stretch of some group opens after `now` and within `soon`.
    pub fn opens_within(&self, now: Timestamp, soon: Duration) -> bool {
        let horizon = now + soon;
        self.grants.values().any(|window| window.from.is_some_and(|from| from > now && from <= horizon))
    }
}

/// Which members a search keeps, beyond its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListingFilter {
    /// Some group's stretch is open at the search's instant.
    AccessNow,
    /// Some group's stretch opens within the search's `soon`.
    OpensSoon,
    /// The member's Kisi user is suspended.
    SuspendedInKisi,
}

/// A search of the members, answered a page at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSearch {
    /// Matched, ignoring case, as a part of the name or the email; empty matches everyone.
    pub text: String,
    pub filter: Option<ListingFilter>,
    /// Only these members, when given (those with dead letters or parked records, say).
    pub among: Option<BTreeSet<MemberId>>,
    /// The instant `AccessNow` and `OpensSoon` are judged at.
    pub at: Timestamp,
    /// How far ahead `OpensSoon` looks.
    pub soon: Duration,
    /// Matches to pass over, in member id order, before the page.
    pub skip: usize,
    /// The most matches handed back.
    pub limit: usize,
}

impl MemberSearch {
    /// Everyone, the first `limit` of them.
    pub fn everyone(at: Timestamp, limit: usize) -> Self {
        Self {
            text: String::new(),
            filter: None,
            among: None,
            at,
            soon: Duration::from_secs(4 * 3_600),
            skip: 0,
            limit,
        }
    }

    fn keeps(&self, listing: &MemberListing, lowercase_text: &str) -> bool {
        let filtered = match self.filter {
            None => true,
            Some(ListingFilter::AccessNow) => listing.open_at(self.at).next().is_some(),
            Some(ListingFilter::OpensSoon) => listing.opens_within(self.at, self.soon),
            Some(ListingFilter::SuspendedInKisi) => listing.kisi_user == KisiUser::Suspended,
        };
        filtered
            && self.among.as_ref().is_none_or(|among| among.contains(&listing.member))
            && listing.mentions(lowercase_text)
    }
}

/// A page of matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberMatches {
    /// How many members match in all.
    pub total: usize,
    /// The page asked for, in member id order.
    pub listings: Vec<MemberListing>,
    /// Members known but not listed yet (their snapshot not read since a restart): no search sees
    /// them until it is.
    pub unlisted: usize,
}

impl MemberMatches {
    /// The matches of several shards as one, the page cut from their merged id order: each shard
    /// answers with its first `skip + limit` matches, so the page is among them.
    pub(crate) fn merge(parts: Vec<MemberMatches>, search: &MemberSearch) -> Self {
        let total = parts.iter().map(|part| part.total).sum();
        let unlisted = parts.iter().map(|part| part.unlisted).sum();
        let mut listings: Vec<MemberListing> = parts.into_iter().flat_map(|part| part.listings).collect();
        listings.sort_unstable_by_key(|listing| listing.member);
        let listings = listings.into_iter().skip(search.skip).take(search.limit).collect();
        Self { total, listings, unlisted }
    }
}

/// A shard's listings.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    listings: BTreeMap<MemberId, MemberListing>,
}

impl Directory {
    /// The member's listing from an evaluation: the newest word on them.
    pub(crate) fn record(&mut self, listing: MemberListing) {
        self.listings.insert(listing.member, listing);
    }

    /// A listing read from a snapshot: kept only if no evaluation listed the member since.
    pub(crate) fn fill(&mut self, listing: MemberListing) {
        self.listings.entry(listing.member).or_insert(listing);
    }

    /// What the writer last reported of the member's Kisi user, between two evaluations.
    pub(crate) fn set_kisi_user(&mut self, member: MemberId, user: KisiUser) {
        if let Some(listing) = self.listings.get_mut(&member) {
            listing.kisi_user = user;
        }
    }

    pub(crate) fn contains(&self, member: MemberId) -> bool {
        self.listings.contains_key(&member)
    }

    /// The first `skip + limit` matches of `search` among `known` members, with the count of all.
    pub(crate) fn search(&self, search: &MemberSearch, known: usize) -> MemberMatches {
        let text = search.text.trim().to_lowercase();
        let wanted = search.skip.saturating_add(search.limit);
        let mut total = 0;
        let mut listings = Vec::new();
        for listing in self.listings.values().filter(|listing| search.keeps(listing, &text)) {
            total += 1;
            if listings.len() < wanted {
                listings.push(listing.clone());
            }
        }
        MemberMatches { total, listings, unlisted: known.saturating_sub(self.listings.len()) }
    }
}

/// Members read from their snapshots at a time, between two messages to the shard.
const LISTED_AT_ONCE: usize = 500;

/// Lists `members` from their snapshots and hands the listings to the shard, a batch at a time:
/// after a restart from a checkpoint, the members no evaluation has listed yet. A snapshot that
/// cannot be read leaves its member unlisted (the shard's own start of that member reports it).
pub(crate) async fn list_from_snapshots(
    shared: Arc<Shared>,
    mapping: Arc<MappingVersion>,
    members: Vec<MemberId>,
    shard: ActorRef<ShardMsg>,
) {
    for batch in members.chunks(LISTED_AT_ONCE) {
        let now = shared.clock.now();
        let mut listings = Vec::with_capacity(batch.len());
        for member in batch {
            match load_snapshot(&shared, *member).await {
                Ok(Some(snapshot)) => {
                    listings.push(MemberListing::of(&snapshot.state, &mapping.mapping, &shared.policy, now));
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%member, %error, "member not listed for the status page's search"),
            }
        }
        if shard.cast(ShardMsg::Listed(listings)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use doorsync_access::Profile;

    use super::*;

    const HOUR: i64 = 3_600_000;

    fn at(hours: i64) -> Timestamp {
        Timestamp::from_unix_millis(1_796_116_500_000 + hours * HOUR)
    }

    fn listing(member: u64, name: &str, email: &str, kisi_user: KisiUser, window: Option<(i64, i64)>) -> MemberListing {
        let mut grants = BTreeMap::new();
        if let Some((from, until)) = window {
            grants.insert(KisiGroupId(100), Window { from: Some(at(from)), until: Some(at(until)) });
        }
        MemberListing {
            member: MemberId(member),
            status: MemberStatus::Known(Profile { email: email.into(), name: name.into(), active: true }),
            kisi_user,
            grants,
            next_change: None,
        }
    }

    fn directory() -> Directory {
        let mut directory = Directory::default();
        directory.record(listing(3, "Ada Lovelace", "ada@example.com", KisiUser::Enabled, Some((-1, 1))));
        directory.record(listing(1, "Bo Brown", "bo@EXAMPLE.com", KisiUser::Suspended, Some((2, 3))));
        directory.record(listing(2, "Cy Adams", "cy@example.org", KisiUser::None, None));
        directory
    }

    fn search(text: &str, filter: Option<ListingFilter>) -> MemberSearch {
        MemberSearch { text: text.into(), filter, ..MemberSearch::everyone(at(0), 10) }
    }

    fn members(matches: &MemberMatches) -> Vec<u64> {
        matches.listings.iter().map(|listing| listing.member.0).collect()
    }

    #[test]
    fn text_matches_a_part_of_the_name_or_email_ignoring_case() {
        let directory = directory();
        assert_eq!(members(&directory.search(&search("ADA", None), 3)), vec![2, 3], "Lovelace's Ada, Cy Adams");
        assert_eq!(members(&directory.search(&search("example.COM", None), 3)), vec![1, 3]);
        assert_eq!(members(&directory.search(&search("  bo@ ", None), 3)), vec![1], "surrounding blanks ignored");
        assert_eq!(directory.search(&search("nobody", None), 3).total, 0);
        assert_eq!(members(&directory.search(&search("", None), 3)), vec![1, 2, 3], "empty text: everyone");
    }

    #[test]
    fn filters_keep_access_now_opening_soon_and_suspended_users() {
        let directory = directory();
        let now = directory.search(&search("", Some(ListingFilter::AccessNow)), 3);
        assert_eq!(members(&now), vec![3]);
        assert_eq!(members(&directory.search(&search("", Some(ListingFilter::OpensSoon)), 3)), vec![1]);
        let not_soon = MemberSearch { soon: Duration::from_secs(3_600), ..search("", Some(ListingFilter::OpensSoon)) };
        assert!(directory.search(&not_soon, 3).listings.is_empty(), "two hours out is not within one");
        assert_eq!(members(&directory.search(&search("", Some(ListingFilter::SuspendedInKisi)), 3)), vec![1]);
        let among = MemberSearch { among: Some(BTreeSet::from([MemberId(2)])), ..search("", None) };
        assert_eq!(members(&directory.search(&among, 3)), vec![2]);
    }

    #[test]
    fn pages_are_cut_from_the_merged_member_order_and_unlisted_members_counted() {
        let directory = directory();
        let page = MemberSearch { skip: 1, limit: 1, ..search("", None) };
        let part = directory.search(&page, 5);
        assert_eq!((part.total, part.listings.len(), part.unlisted), (3, 2, 2), "skip + limit per shard");
        let mut other = Directory::default();
        other.record(listing(0, "Di", "di@example.com", KisiUser::None, None));
        let merged = MemberMatches::merge(vec![part, other.search(&page, 1)], &page);
        assert_eq!((merged.total, members(&merged), merged.unlisted), (4, vec![1], 2));
    }

    #[test]
    fn a_user_doorsync_created_is_enabled_until_the_writer_says_otherwise() {
        let mut kisi = KisiRecord::default();
        assert_eq!(KisiUser::of(&kisi), KisiUser::None);
        kisi.user = Some(doorsync_proto::KisiUserId(5));
        assert_eq!(KisiUser::of(&kisi), KisiUser::Unreported, "found by email: its state is not known");
        kisi.created_by_doorsync = true;
        assert_eq!(KisiUser::of(&kisi), KisiUser::Enabled);
        kisi.user_state = Some(KisiUserState::Suspended);
        assert_eq!(KisiUser::of(&kisi), KisiUser::Suspended);
        assert_eq!(KisiUser::Suspended.label(), "suspended");
    }

    #[test]
    fn an_evaluation_replaces_a_listing_and_a_snapshot_only_fills_a_gap() {
        let mut directory = directory();
        directory.fill(listing(3, "Old Name", "ada@example.com", KisiUser::None, None));
        assert_eq!(directory.search(&search("old", None), 3).total, 0);
        directory.record(listing(3, "New Name", "ada@example.com", KisiUser::None, None));
        assert_eq!(directory.search(&search("new name", None), 3).total, 1);
        directory.fill(listing(9, "Eve", "eve@example.com", KisiUser::None, None));
        assert!(directory.contains(MemberId(9)));
        directory.set_kisi_user(MemberId(9), KisiUser::Suspended);
        assert_eq!(directory.search(&search("eve", Some(ListingFilter::SuspendedInKisi)), 4).total, 1);
    }
}
