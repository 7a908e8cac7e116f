//! How the real APIs behave where nobody has confirmed it, and what Kisi holds that doorsync did
//! not make, drawn per seed (`/work/shared/reference/quirks.md` lists the behaviours): the
//! simulators default to the form hardest on doorsync, and each seed draws one of every
//! plausible form so that doorsync is right whichever the real APIs show.

use doorsync_kisi_sim::{PatchValidity, UnknownIds};
use doorsync_nexudus_sim::{MissingRecord, UpdatedOnFilter};
use rand::Rng;
use rand::rngs::StdRng;

use super::intervals::Millis;

const MINUTE_MS: Millis = 60_000;

/// When a mapped group starts answering 403 to doorsync's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hiding {
    /// Before doorsync starts: the key never could use it (a mistyped id, a group of another
    /// place).
    FromTheStart,
    /// Mid-run: an administrator takes the group away from the key.
    At(Millis),
}

/// What one seed drew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conditions {
    /// Nexudus's answer to a read by id of a record that is gone.
    pub missing_record: MissingRecord,
    /// Kisi's handling of a PATCH of an assignment's window.
    pub patch_validity: PatchValidity,
    /// Kisi's answer for ids that do not exist.
    pub unknown_ids: UnknownIds,
    /// Whether Kisi's 429s say when to come back.
    pub retry_after_on_429: bool,
    /// One mapped group (by its place among the managed groups) that Kisi refuses to the key.
    pub hidden_group: Option<(usize, Hiding)>,
    /// Members whose emails Kisi users someone else made (staff) already have.
    pub staff_emails: bool,
    /// Nexudus's built-in Kisi integration ran before doorsync: Kisi holds its users and
    /// window-less assignments, which doorsync is told to adopt.
    pub integration_start: bool,
    /// Whether Nexudus reads `from_<Entity>_UpdatedOn` filters as UTC or on the location's
    /// wall clock.
    pub updated_on_filter: UpdatedOnFilter,
    /// A page size Nexudus caps listings at, below what doorsync asks for.
    pub max_page_size: Option<u32>,
}

impl Conditions {
    /// Draws every switch; `start` and `last_hiding` bound when a group may be hidden mid-run.
    pub(crate) fn draw(rng: &mut StdRng, start: Millis, last_hiding: Millis) -> Self {
        let missing_record = if rng.random_bool(0.5) { MissingRecord::ServerError } else { MissingRecord::NotFound };
        let patch_validity = PatchValidity::ALL[rng.random_range(0..PatchValidity::ALL.len())];
        let unknown_ids = UnknownIds::ALL[rng.random_range(0..UnknownIds::ALL.len())];
        let retry_after_on_429 = rng.random_bool(0.5);
        let hidden_group = rng.random_bool(0.25).then(|| {
            let hiding = if rng.random_bool(0.5) {
                Hiding::FromTheStart
            } else {
                let at = rng.random_range(start..last_hiding);
                Hiding::At(at - at.rem_euclid(MINUTE_MS))
            };
            (rng.random_range(0..usize::MAX), hiding)
        });
        let staff_emails = rng.random_bool(0.4);
        let integration_start = rng.random_bool(0.35);
        let updated_on_filter = if rng.random_bool(0.5) { UpdatedOnFilter::Local } else { UpdatedOnFilter::Utc };
        let max_page_size = rng.random_bool(0.3).then(|| rng.random_range(2..=25));
        Self {
            missing_record,
            patch_validity,
            unknown_ids,
            retry_after_on_429,
            hidden_group,
            staff_emails,
            integration_start,
            updated_on_filter,
            max_page_size,
        }
    }
}
