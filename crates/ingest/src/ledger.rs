//! What the ingestor last appended for each Nexudus record, and the rule that decides what a new
//! reading of a record appends.
//!
//! The state lives in the ingest bucket (`record.<Entity>.<id>`) and in memory. Readings of one
//! record are decided one at a time (a lock per record), because the webhook path, the poller and
//! the sweeper may read the same record at different moments and hand in their readings in any
//! order: [`decide`] orders them by `UpdatedOn`, never the order they arrive in.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use doorsync_proto::{
    BookingId, ContractId, EncodeError, EntitlementId, EntitlementWithheld, Envelope, Event, MemberId, PassId,
    Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::bucket::Bucket;
use crate::error::IngestError;
use crate::normalise::{Normalised, removal};
use crate::record::{Holder, RecordKey, RecordKind};

/// What the ingestor knows it appended for one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RecordState {
    /// `UpdatedOn` of the version the appended events reflect; for a removed record, the time
    /// its removal was dated.
    pub(crate) updated_on: Timestamp,
    /// Who holds what the last appended event grants; `None` when it grants nothing.
    pub(crate) holder: Option<Holder>,
    /// Digest of the last version's event without its time, to tell a record that was only
    /// touched from one that changed; `None` when that version gave no event.
    pub(crate) content: Option<String>,
    /// Deleted or cancelled, and its removal appended.
    pub(crate) removed: bool,
    /// The latest version cannot be read, and what the holder had from an earlier one was
    /// withheld from them: the next readable version is appended whatever it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) withheld: Option<Withholding>,
    /// When this ingestor recorded the removal, on its clock: the state is forgotten a
    /// [`IngestOptions::removed_horizon`](crate::IngestOptions::removed_horizon) later. `None`
    /// until committed, and for removals recorded by builds that did not keep it (those count
    /// from `updated_on`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) removed_at: Option<Timestamp>,
}

/// An `EntitlementWithheld` appended for a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Withholding {
    pub(crate) reason: String,
    /// When it was dated: the unreadable version's `UpdatedOn`, where it had a readable one.
    pub(crate) at: Timestamp,
}

/// One reading of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Observation {
    /// Nexudus has the record, and this is what it means.
    Present(Normalised),
    /// Nexudus no longer has it (a 404 by id, or a cancelled-booking snapshot). `at` is when
    /// it went, if Nexudus says (`CancelledOn`); `holder_hint` whom it concerned, for a record
    /// never seen before.
    Gone { at: Option<Timestamp>, holder_hint: Option<Holder> },
}

/// What a reading did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Events were appended.
    Appended,
    /// The reading was new, but grants nothing to anyone (nothing to append).
    Recorded,
    /// The same facts as already appended.
    Unchanged,
    /// Older than what was already appended: ignored.
    Stale,
    /// The record could not be normalised and was parked.
    Parked,
}

/// What to append for a reading, and the state to keep afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) appends: Vec<Envelope<Event>>,
    /// `None`: keep the state as it is.
    pub(crate) next: Option<RecordState>,
    pub(crate) verdict: Verdict,
}

impl Decision {
    fn nothing(verdict: Verdict) -> Self {
        Self { appends: Vec::new(), next: None, verdict }
    }
}

/// Decides what a reading of the record `key` appends, given what was appended before.
///
/// * A reading older than the state (`UpdatedOn` before it, or not after a removal) is stale.
/// * The same holder and the same event content is unchanged, whatever `UpdatedOn` says, so a
///   record that is only touched, or read again, appends nothing.
/// * A new holder first gets the removal for the old one (a booking moved to another customer
///   is cancelled for the first), dated like the new version.
/// * A removal is dated `CancelledOn` when Nexudus gives one, else the last known `UpdatedOn`.
pub(crate) fn decide(
    key: RecordKey,
    current: Option<&RecordState>,
    observation: Observation,
) -> Result<Decision, EncodeError> {
    match observation {
        Observation::Present(seen) => present(key, current, seen),
        Observation::Gone { at, holder_hint } => gone(key, current, at, holder_hint),
    }
}

fn present(key: RecordKey, current: Option<&RecordState>, seen: Normalised) -> Result<Decision, EncodeError> {
    let content = seen.event.as_ref().map(content_digest).transpose()?;
    let withheld_at = current.and_then(|state| state.withheld.as_ref()).map(|withholding| withholding.at);
    let previous_holder = match current {
        Some(state) if state.removed && seen.updated_on <= state.updated_on => {
            return Ok(Decision::nothing(Verdict::Stale));
        }
        Some(state) if state.removed => None,
        Some(state) if seen.updated_on < state.updated_on => return Ok(Decision::nothing(Verdict::Stale)),
        // Read before the version that could not be: it must not end the withholding.
        Some(_) if withheld_at.is_some_and(|at| seen.updated_on < at) => return Ok(Decision::nothing(Verdict::Stale)),
        Some(state) if state.withheld.is_none() && state.holder == seen.holder && state.content == content => {
            let next = (seen.updated_on > state.updated_on)
                .then(|| RecordState { updated_on: seen.updated_on, ..state.clone() });
            return Ok(Decision { appends: Vec::new(), next, verdict: Verdict::Unchanged });
        }
        Some(state) => state.holder,
        None => None,
    };
    // A version readable again that is no newer than the withholding is dated just after it:
    // dated as before, it could be the very message the log already holds (the same version
    // appended before the withholding), which the log's de-duplication would drop.
    let at = match withheld_at {
        Some(withheld_at) if seen.updated_on <= withheld_at => withheld_at + Duration::from_millis(1),
        _ => seen.updated_on,
    };
    let mut appends = Vec::new();
    if let Some(previous) = previous_holder.filter(|previous| Some(*previous) != seen.holder)
        && let Some(taken_back) = removal(key, previous)
    {
        appends.push(Envelope::new(at, taken_back)?);
    }
    if let Some(event) = seen.event {
        appends.push(Envelope::new(at, event)?);
    }
    let verdict = if appends.is_empty() { Verdict::Recorded } else { Verdict::Appended };
    let next = RecordState {
        updated_on: seen.updated_on,
        holder: seen.holder,
        content,
        removed: false,
        withheld: None,
        removed_at: None,
    };
    Ok(Decision { appends, next: Some(next), verdict })
}

fn gone(
    key: RecordKey,
    current: Option<&RecordState>,
    at: Option<Timestamp>,
    holder_hint: Option<Holder>,
) -> Result<Decision, EncodeError> {
    let (when, holder) = match (current, at) {
        (Some(state), _) if state.removed => return Ok(Decision::nothing(Verdict::Unchanged)),
        (Some(state), at) => (at.map_or(state.updated_on, |at| at.max(state.updated_on)), state.holder),
        (None, Some(at)) => (at, holder_hint),
        // Never seen and no time to date a removal with: nothing was granted, nothing to take back.
        (None, None) => return Ok(Decision::nothing(Verdict::Unchanged)),
    };
    let appends: Vec<Envelope<Event>> = holder
        .and_then(|holder| removal(key, holder))
        .map(|event| Envelope::new(when, event))
        .transpose()?
        .into_iter()
        .collect();
    let verdict = if appends.is_empty() { Verdict::Recorded } else { Verdict::Appended };
    let next = RecordState { updated_on: when, holder, content: None, removed: true, withheld: None, removed_at: None };
    Ok(Decision { appends, next: Some(next), verdict })
}

/// Decides what parking the record `key` appends: what the version before it granted its
/// member is withheld from them, once per reason, with the parked version's `UpdatedOn`
/// (`written`, where it could be read) or else the last appended version's.
///
/// Nothing is withheld for a record never appended, removed, granting nobody, or whose parked
/// version is older than the one appended (the reading is stale); nor for members and mapping
/// sources, whose earlier versions grant nothing by themselves.
pub(crate) fn withhold(
    key: RecordKey,
    current: Option<&RecordState>,
    reason: &str,
    written: Option<Timestamp>,
) -> Result<Decision, EncodeError> {
    let parked = Decision::nothing(Verdict::Parked);
    let Some(state) = current.filter(|state| !state.removed) else { return Ok(parked) };
    let Some(Holder::Member(member)) = state.holder else { return Ok(parked) };
    let entitlement = match key.kind {
        RecordKind::Booking => EntitlementId::Booking(BookingId(key.id)),
        RecordKind::CoworkerTimePass => EntitlementId::Pass(PassId(key.id)),
        RecordKind::CoworkerContract => EntitlementId::Contract(ContractId(key.id)),
        RecordKind::Coworker | RecordKind::Resource | RecordKind::TimePass | RecordKind::FloorPlanDesk => {
            return Ok(parked);
        }
    };
    let newest_known = state.withheld.as_ref().map_or(state.updated_on, |withholding| withholding.at);
    let stale = written.is_some_and(|written| written < newest_known);
    let already = state.withheld.as_ref().is_some_and(|withholding| withholding.reason == reason);
    if stale || already {
        return Ok(parked);
    }
    let at = written.unwrap_or(state.updated_on);
    let event = EntitlementWithheld { member, entitlement, reason: reason.to_owned() };
    let next = RecordState { withheld: Some(Withholding { reason: reason.to_owned(), at }), ..state.clone() };
    Ok(Decision {
        appends: vec![Envelope::new(at, Event::EntitlementWithheld(event))?],
        next: Some(next),
        verdict: Verdict::Parked,
    })
}

/// The id an event would have at a fixed time: a digest of its content alone.
fn content_digest(event: &Event) -> Result<String, EncodeError> {
    Ok(Envelope::new(Timestamp::from_unix_millis(0), event.clone())?.id.to_string())
}

/// The states of every record, kept in the ingest bucket and in memory, with one lock per record.
#[derive(Debug)]
pub(crate) struct Ledger {
    bucket: Bucket,
    states: Mutex<BTreeMap<RecordKey, RecordState>>,
    locks: Mutex<HashMap<RecordKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl Ledger {
    /// Reads every record's state from the bucket.
    pub(crate) async fn load(bucket: Bucket) -> Result<Self, IngestError> {
        let states = Self::read(&bucket).await?;
        Ok(Self { bucket, states: Mutex::new(states), locks: Mutex::new(HashMap::new()) })
    }

    /// Reads every record's state again: another ingestor appended while this one was on
    /// standby, and deciding against what this one remembers would append it all again.
    pub(crate) async fn reload(&self) -> Result<(), IngestError> {
        let states = Self::read(&self.bucket).await?;
        *self.states() = states;
        Ok(())
    }

    async fn read(bucket: &Bucket) -> Result<BTreeMap<RecordKey, RecordState>, IngestError> {
        let stored = bucket.all::<RecordState>(|key| RecordKey::from_kv_key(key).is_some()).await?;
        Ok(stored.into_iter().filter_map(|(key, state)| Some((RecordKey::from_kv_key(&key)?, state))).collect())
    }

    fn states(&self) -> MutexGuard<'_, BTreeMap<RecordKey, RecordState>> {
        self.states.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock that serialises decisions about `key`.
    pub(crate) fn lock(&self, key: RecordKey) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(self.locks.lock().unwrap_or_else(PoisonError::into_inner).entry(key).or_default())
    }

    pub(crate) fn current(&self, key: RecordKey) -> Option<RecordState> {
        self.states().get(&key).cloned()
    }

    /// Keeps `state` for `key`, in the bucket first; a removal is stamped with `now`.
    pub(crate) async fn commit(
        &self,
        key: RecordKey,
        mut state: RecordState,
        now: Timestamp,
    ) -> Result<(), IngestError> {
        if state.removed && state.removed_at.is_none() {
            state.removed_at = Some(now);
        }
        self.bucket.put(&key.kv_key(), &state).await?;
        self.states().insert(key, state);
        Ok(())
    }

    /// Forgets the states of records removed before `cutoff`, in the bucket first, and the
    /// locks no reading holds; returns how many states it forgot.
    ///
    /// A removed record's state only turns away readings of its versions from before the
    /// removal, and those are taken before it and handed in within one run: long before the
    /// horizon. What may still come later is the cancelled-booking snapshot every sweep lists,
    /// which [`Ledger::forgotten`] turns away once the state is gone.
    pub(crate) async fn forget_removed(&self, cutoff: Timestamp) -> Result<usize, IngestError> {
        let expired = |state: &RecordState| state.removed && state.removed_at.unwrap_or(state.updated_on) < cutoff;
        let candidates: Vec<RecordKey> =
            self.states().iter().filter(|(_, state)| expired(state)).map(|(key, _)| *key).collect();
        let mut forgotten = 0;
        for key in candidates {
            let lock = self.lock(key);
            let _no_reading_meanwhile = lock.lock().await;
            // A reading may have brought it back since the list was made.
            if self.states().get(&key).is_some_and(expired) {
                self.bucket.delete(&key.kv_key()).await?;
                self.states().remove(&key);
                forgotten += 1;
            }
        }
        // A lock is made again when a reading needs it; only the map's own handle means idle.
        self.locks.lock().unwrap_or_else(PoisonError::into_inner).retain(|_, lock| Arc::strong_count(lock) > 1);
        Ok(forgotten)
    }

    /// Whether a removal dated `at` of `key` is one whose state was forgotten (or that was
    /// never seen and is older than the horizon, so granted nothing): nothing to append.
    pub(crate) fn forgotten(&self, key: RecordKey, at: Timestamp, cutoff: Timestamp) -> bool {
        at < cutoff && !self.states().contains_key(&key)
    }

    /// Whether a reading of `key` written at `updated_on` can tell nothing new: the state is
    /// at least that recent.
    pub(crate) fn knows_version(&self, key: RecordKey, updated_on: Timestamp) -> bool {
        self.states().get(&key).is_some_and(|state| updated_on <= state.updated_on)
    }

    /// The ids of records of `kind` that are not removed and (if `holder` is given) are held by it.
    pub(crate) fn live(&self, kind: RecordKind, holder: Option<Holder>) -> Vec<u64> {
        self.states()
            .iter()
            .filter(|(key, state)| key.kind == kind && !state.removed)
            .filter(|(_, state)| holder.is_none_or(|holder| state.holder == Some(holder)))
            .map(|(key, _)| key.id)
            .collect()
    }

    /// The member from whom what `key` granted is withheld, if it is.
    pub(crate) fn withheld_from(&self, key: RecordKey) -> Option<MemberId> {
        match self.states().get(&key)? {
            RecordState { withheld: Some(_), holder: Some(Holder::Member(member)), .. } => Some(*member),
            _ => None,
        }
    }

    /// How many live records of `kind` grant nothing to anyone.
    pub(crate) fn held_by_nobody(&self, kinds: &[RecordKind]) -> u64 {
        let count = self
            .states()
            .iter()
            .filter(|(key, state)| kinds.contains(&key.kind) && !state.removed && state.holder.is_none())
            .count();
        u64::try_from(count).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use doorsync_proto::{BookingCancelled, BookingChanged, MappingChanged, MappingSource, ResourceId};

    use super::*;

    const BOOKING: RecordKey = RecordKey { kind: RecordKind::Booking, id: 7 };

    fn ts(seconds: i64) -> Timestamp {
        Timestamp::from_unix_millis(seconds * 1_000)
    }

    fn booking_for(member: u64, updated_on: i64, starts: i64) -> Normalised {
        let event = Event::BookingChanged(BookingChanged {
            member: MemberId(member),
            booking: BookingId(7),
            resource: ResourceId(3),
            starts_at: ts(starts),
            ends_at: ts(starts + 3_600),
            tentative: false,
        });
        Normalised { updated_on: ts(updated_on), holder: Some(Holder::Member(MemberId(member))), event: Some(event) }
    }

    fn memberless(updated_on: i64) -> Normalised {
        Normalised { updated_on: ts(updated_on), holder: None, event: None }
    }

    /// Decides `observation` and applies the decision to `state`, returning the events and verdict.
    fn step(state: &mut Option<RecordState>, observation: Observation) -> (Vec<(Timestamp, Event)>, Verdict) {
        let decision = decide(BOOKING, state.as_ref(), observation).unwrap();
        if let Some(next) = decision.next {
            *state = Some(next);
        }
        (
            decision.appends.into_iter().map(|envelope| (envelope.occurred_at, envelope.message)).collect(),
            decision.verdict,
        )
    }

    fn cancelled(member: u64) -> Event {
        Event::BookingCancelled(BookingCancelled { member: MemberId(member), booking: BookingId(7) })
    }

    #[test]
    fn a_new_record_is_appended_once_and_reading_it_again_appends_nothing() {
        let mut state = None;
        let (events, verdict) = step(&mut state, Observation::Present(booking_for(1, 100, 1_000)));
        assert_eq!(verdict, Verdict::Appended);
        assert_eq!(events, vec![(ts(100), booking_for(1, 100, 1_000).event.unwrap())]);
        assert_eq!(step(&mut state, Observation::Present(booking_for(1, 100, 1_000))), (vec![], Verdict::Unchanged));
    }

    #[test]
    fn a_touched_record_with_the_same_facts_appends_nothing_but_moves_on() {
        let mut state = None;
        step(&mut state, Observation::Present(booking_for(1, 100, 1_000)));
        assert_eq!(step(&mut state, Observation::Present(booking_for(1, 200, 1_000))), (vec![], Verdict::Unchanged));
        assert_eq!(state.as_ref().unwrap().updated_on, ts(200));
        assert_eq!(step(&mut state, Observation::Present(booking_for(1, 150, 5_000))).1, Verdict::Stale);
    }

    #[test]
    fn an_older_reading_never_replaces_a_newer_one() {
        let mut state = None;
        step(&mut state, Observation::Present(booking_for(1, 200, 2_000)));
        let (events, verdict) = step(&mut state, Observation::Present(booking_for(1, 100, 1_000)));
        assert_eq!((events, verdict), (vec![], Verdict::Stale));
        assert_eq!(state.unwrap().updated_on, ts(200));
    }

    #[test]
    fn a_change_within_the_same_updated_on_is_appended() {
        let mut state = None;
        step(&mut state, Observation::Present(booking_for(1, 100, 1_000)));
        let (events, verdict) = step(&mut state, Observation::Present(booking_for(1, 100, 2_000)));
        assert_eq!(verdict, Verdict::Appended);
        assert_eq!(events, vec![(ts(100), booking_for(1, 100, 2_000).event.unwrap())]);
    }

    #[test]
    fn a_booking_moved_to_another_customer_is_cancelled_for_the_first() {
        let mut state = None;
        step(&mut state, Observation::Present(booking_for(1, 100, 1_000)));
        let (events, _) = step(&mut state, Observation::Present(booking_for(2, 200, 1_000)));
        assert_eq!(events, vec![(ts(200), cancelled(1)), (ts(200), booking_for(2, 200, 1_000).event.unwrap())]);
        let (events, verdict) = step(&mut state, Observation::Present(memberless(300)));
        assert_eq!((events, verdict), (vec![(ts(300), cancelled(2))], Verdict::Appended));
        assert_eq!(step(&mut state, Observation::Present(memberless(300))).1, Verdict::Unchanged);
    }

    #[test]
    fn a_memberless_record_is_recorded_without_an_event() {
        let mut state = None;
        assert_eq!(step(&mut state, Observation::Present(memberless(100))), (vec![], Verdict::Recorded));
        assert_eq!(state.unwrap().holder, None);
    }

    #[test]
    fn a_removal_is_appended_once_dated_by_nexudus_or_the_last_known_update() {
        let mut state = None;
        step(&mut state, Observation::Present(booking_for(1, 100, 1_000)));
        let gone = Observation::Gone { at: None, holder_hint: None };
        assert_eq!(step(&mut state, gone.clone()), (vec![(ts(100), cancelled(1))], Verdict::Appended));
        assert_eq!(step(&mut state, gone), (vec![], Verdict::Unchanged));
        let cancelled_later = Observation::Gone { at: Some(ts(150)), holder_hint: Some(Holder::Member(MemberId(1))) };
        assert_eq!(step(&mut state, cancelled_later), (vec![], Verdict::Unchanged));

        let mut state = None;
        step(&mut state, Observation::Present(booking_for(1, 100, 1_000)));
        let snapshot = Observation::Gone { at: Some(ts(150)), holder_hint: Some(Holder::Member(MemberId(9))) };
        assert_eq!(step(&mut state, snapshot).0, vec![(ts(150), cancelled(1))], "the member appended, not the hint");
    }

    #[test]
    fn a_removed_record_ignores_readings_from_before_its_removal() {
        let mut state = None;
        step(&mut state, Observation::Present(booking_for(1, 100, 1_000)));
        step(&mut state, Observation::Gone { at: Some(ts(150)), holder_hint: None });
        assert_eq!(step(&mut state, Observation::Present(booking_for(1, 100, 1_000))).1, Verdict::Stale);
        assert_eq!(step(&mut state, Observation::Present(booking_for(1, 150, 1_000))).1, Verdict::Stale);
        let (events, _) = step(&mut state, Observation::Present(booking_for(1, 160, 1_000)));
        assert_eq!(events, vec![(ts(160), booking_for(1, 160, 1_000).event.unwrap())], "a later version is back");
    }

    #[test]
    fn a_cancellation_of_a_booking_never_seen_is_appended_for_its_customer() {
        let mut state = None;
        let snapshot = Observation::Gone { at: Some(ts(150)), holder_hint: Some(Holder::Member(MemberId(4))) };
        assert_eq!(step(&mut state, snapshot), (vec![(ts(150), cancelled(4))], Verdict::Appended));
        let mut state = None;
        assert_eq!(step(&mut state, Observation::Gone { at: None, holder_hint: None }), (vec![], Verdict::Unchanged));
        assert_eq!(state, None);
    }

    /// Decides parking the booking for `reason` (its version written at `written`) like [`step`].
    fn park(state: &mut Option<RecordState>, reason: &str, written: Option<i64>) -> (Vec<(Timestamp, Event)>, Verdict) {
        let decision = withhold(BOOKING, state.as_ref(), reason, written.map(ts)).unwrap();
        if let Some(next) = decision.next {
            *state = Some(next);
        }
        (
            decision.appends.into_iter().map(|envelope| (envelope.occurred_at, envelope.message)).collect(),
            decision.verdict,
        )
    }

    fn withheld(member: u64, reason: &str) -> Event {
        Event::EntitlementWithheld(EntitlementWithheld {
            member: MemberId(member),
            entitlement: EntitlementId::Booking(BookingId(7)),
            reason: reason.to_owned(),
        })
    }

    #[test]
    fn a_parked_record_that_granted_is_withheld_once_per_reason() {
        let mut state = None;
        step(&mut state, Observation::Present(booking_for(1, 100, 1_000)));
        assert_eq!(
            park(&mut state, "FromTime: bad", Some(200)),
            (vec![(ts(200), withheld(1, "FromTime: bad"))], Verdict::Parked)
        );
        assert_eq!(park(&mut state, "FromTime: bad", Some(200)), (vec![], Verdict::Parked), "once");
        assert_eq!(park(&mut state, "FromTime: bad", Some(250)), (vec![], Verdict::Parked), "once per reason");
        let (events, _) = park(&mut state, "ResourceId: unknown", None);
        assert_eq!(events, vec![(ts(100), withheld(1, "ResourceId: unknown"))], "a new reason, dated as appended");
    }

    #[test]
    fn nothing_is_withheld_where_nothing_was_granted_or_the_parked_version_is_older() {
        let mut state = None;
        assert_eq!(park(&mut state, "FromTime: bad", Some(100)), (vec![], Verdict::Parked), "never appended");
        assert_eq!(state, None);
        step(&mut state, Observation::Present(memberless(100)));
        assert_eq!(park(&mut state, "FromTime: bad", Some(200)).0, vec![], "granted nobody");
        step(&mut state, Observation::Present(booking_for(1, 300, 1_000)));
        assert_eq!(park(&mut state, "FromTime: bad", Some(250)).0, vec![], "older than what was appended");
        step(&mut state, Observation::Gone { at: None, holder_hint: None });
        assert_eq!(park(&mut state, "FromTime: bad", Some(400)).0, vec![], "removed");
    }

    #[test]
    fn a_withheld_record_readable_again_is_appended_even_with_the_same_facts() {
        let mut state = None;
        step(&mut state, Observation::Present(booking_for(1, 100, 1_000)));
        park(&mut state, "FromTime: bad", Some(200));
        assert_eq!(step(&mut state, Observation::Present(booking_for(1, 150, 1_000))).1, Verdict::Stale, "older");
        let (events, verdict) = step(&mut state, Observation::Present(booking_for(1, 300, 1_000)));
        assert_eq!((events, verdict), (vec![(ts(300), booking_for(1, 300, 1_000).event.unwrap())], Verdict::Appended));
        assert_eq!(state.as_ref().unwrap().withheld, None);
        assert_eq!(step(&mut state, Observation::Present(booking_for(1, 300, 1_000))).1, Verdict::Unchanged);

        // The very version appended before: a different id, just after the withholding.
        park(&mut state, "ResourceId: unknown", None);
        let (events, _) = step(&mut state, Observation::Present(booking_for(1, 300, 1_000)));
        let again = Timestamp::from_unix_millis(ts(300).as_unix_millis() + 1);
        assert_eq!(events, vec![(again, booking_for(1, 300, 1_000).event.unwrap())]);
        assert_eq!(state.unwrap().updated_on, ts(300));
    }

    #[test]
    fn a_withheld_record_that_is_gone_is_removed_as_usual() {
        let mut state = None;
        step(&mut state, Observation::Present(booking_for(1, 100, 1_000)));
        park(&mut state, "FromTime: bad", Some(200));
        let (events, _) = step(&mut state, Observation::Gone { at: Some(ts(250)), holder_hint: None });
        assert_eq!(events, vec![(ts(250), cancelled(1))]);
        let removed = state.unwrap();
        assert!(removed.removed && removed.withheld.is_none());
    }

    #[test]
    fn a_mapping_that_loses_its_group_is_disconnected() {
        let key = RecordKey::new(RecordKind::Resource, 3);
        let linked = Normalised {
            updated_on: ts(100),
            holder: Some(Holder::Mapping),
            event: Some(Event::MappingChanged(MappingChanged {
                source: MappingSource::Resource(ResourceId(3)),
                group: Some(doorsync_proto::KisiGroupId(5)),
            })),
        };
        let first = decide(key, None, Observation::Present(memberless(50))).unwrap();
        assert!(first.appends.is_empty(), "a resource never linked is not announced as unlinked");
        let linked = decide(key, first.next.as_ref(), Observation::Present(linked)).unwrap();
        let unlinked = decide(key, linked.next.as_ref(), Observation::Present(memberless(200))).unwrap();
        let events: Vec<Event> = unlinked.appends.into_iter().map(|envelope| envelope.message).collect();
        let expected = MappingChanged { source: MappingSource::Resource(ResourceId(3)), group: None };
        assert_eq!(events, vec![Event::MappingChanged(expected)]);
    }
}
