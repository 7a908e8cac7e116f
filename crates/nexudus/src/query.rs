//! What to list and how the answers come back, page by page.

use std::fmt;
use std::marker::PhantomData;

use doorsync_proto::Timestamp;

use crate::datetime::filter_value;
use crate::models::Entity;
use crate::record::MalformedRecord;

/// The largest page Nexudus is documented to serve.
pub const MAX_PAGE_SIZE: u32 = 1_000;

/// Filters for listing entity `E`, in Nexudus's naming: `{Entity}_{Field}=value` for equality,
/// `from_/to_{Entity}_{Field}` for ranges (inclusive). Nexudus silently ignores a filter it does
/// not know, so the entity name is filled in here rather than typed by hand.
pub struct ListQuery<E> {
    params: Vec<(String, String)>,
    page_size: u32,
    entity: PhantomData<fn() -> E>,
}

impl<E> Clone for ListQuery<E> {
    fn clone(&self) -> Self {
        Self { params: self.params.clone(), page_size: self.page_size, entity: PhantomData }
    }
}

impl<E: Entity> fmt::Debug for ListQuery<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListQuery")
            .field("entity", &E::NAME)
            .field("params", &self.params)
            .field("page_size", &self.page_size)
            .finish()
    }
}

impl<E: Entity> Default for ListQuery<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Entity> ListQuery<E> {
    /// Everything, 100 records a page.
    pub fn new() -> Self {
        Self { params: Vec::new(), page_size: 100, entity: PhantomData }
    }

    /// Records per page, at most [`MAX_PAGE_SIZE`].
    pub fn page_size(mut self, size: u32) -> Self {
        self.page_size = size.clamp(1, MAX_PAGE_SIZE);
        self
    }

    /// Only records changed at or after `watermark` (`from_{Entity}_UpdatedOn`). The filter has
    /// minute precision and the watermark is rounded down, so records from earlier in that
    /// minute come back too: callers deduplicate.
    pub fn updated_since(self, watermark: Timestamp) -> Self {
        self.from("UpdatedOn", watermark)
    }

    /// `{Entity}_{field}=value`, e.g. `field_equals("Coworker", 12)` for a customer's passes.
    pub fn field_equals(mut self, field: &str, value: impl fmt::Display) -> Self {
        self.params.push((format!("{}_{field}", E::NAME), value.to_string()));
        self
    }

    /// Only the records with these ids: Nexudus's batch read, `id=[1,2,3]` (reference §1.4 and
    /// §2), which answers a bare array rather than a page (both are read as a [`Page`]). A
    /// server that ignored the parameter would answer with other records: callers check the ids
    /// that come back.
    pub fn ids(mut self, ids: &[u64]) -> Self {
        let list: Vec<String> = ids.iter().map(u64::to_string).collect();
        self.params.push(("id".to_owned(), format!("[{}]", list.join(","))));
        self
    }

    /// `from_{Entity}_{field}`: the date-time field at or after `at` (UTC minutes).
    pub fn from(self, field: &str, at: Timestamp) -> Self {
        self.range("from", field, at)
    }

    /// `to_{Entity}_{field}`: the date-time field at or before `at` (UTC minutes).
    pub fn to(self, field: &str, at: Timestamp) -> Self {
        self.range("to", field, at)
    }

    fn range(mut self, bound: &str, field: &str, at: Timestamp) -> Self {
        // An instant outside years 0-9999 cannot be written; leaving the bound out reads more
        // records, never fewer.
        if let Some(value) = filter_value(at) {
            self.params.push((format!("{bound}_{}_{field}", E::NAME), value));
        }
        self
    }

    /// The query string for one page.
    pub(crate) fn params_for_page(&self, page: u32) -> Vec<(String, String)> {
        let mut params = self.params.clone();
        params.push(("page".to_owned(), page.to_string()));
        params.push(("size".to_owned(), self.page_size.to_string()));
        params
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<E> {
    /// The records that were read.
    pub records: Vec<E>,
    /// The records that were not, each with its reason.
    pub malformed: Vec<MalformedRecord>,
    /// The page number, from 1.
    pub page: u32,
    pub has_next_page: bool,
    pub total_items: Option<u64>,
    pub total_pages: Option<u64>,
}

/// Every page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing<E> {
    pub records: Vec<E>,
    pub malformed: Vec<MalformedRecord>,
    /// How many pages were fetched.
    pub pages: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Booking, CoworkerTimePass};

    #[test]
    fn filters_carry_the_entity_name() {
        let watermark = Timestamp::from_unix_millis(1_736_942_459_000);
        let query = ListQuery::<CoworkerTimePass>::new().updated_since(watermark).field_equals("Used", false);
        let params = query.params_for_page(2);
        let expected = [
            ("from_CoworkerTimePass_UpdatedOn", "2025-01-15T12:00"),
            ("CoworkerTimePass_Used", "false"),
            ("page", "2"),
            ("size", "100"),
        ];
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(params, expected);
    }

    #[test]
    fn ids_are_asked_for_as_a_bracketed_list() {
        let params = ListQuery::<Booking>::new().ids(&[7, 12]).params_for_page(1);
        assert_eq!(params[0], ("id".to_owned(), "[7,12]".to_owned()));
    }

    #[test]
    fn page_size_stays_within_what_nexudus_serves() {
        let query = ListQuery::<Booking>::new().page_size(50_000).to("FromTime", Timestamp::from_unix_millis(0));
        let params = query.params_for_page(1);
        assert!(params.contains(&("size".to_owned(), "1000".to_owned())));
        assert!(params.contains(&("to_Booking_FromTime".to_owned(), "1970-01-01T00:00".to_owned())));
    }
}
