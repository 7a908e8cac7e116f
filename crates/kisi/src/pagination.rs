//! Offset pagination by Kisi's `X-Collection-Range: <start>-<end>/<total>` header.
//!
//! `start-end` is the range *asked for* (offset 10, limit 10 over 15 items gives `10-19/15`), so
//! only `total` says whether more pages follow. An empty collection is `*/0`, which Kisi's own
//! JavaScript client handles although the OpenAPI pattern does not allow it.

/// Kisi refuses offsets above this; larger collections need narrower filters.
pub(crate) const OFFSET_CAP: u64 = 20_000;

/// Why paging cannot go on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PageError {
    MalformedRange(String),
    PastOffsetCap { total: u64 },
}

/// The `total` of an `X-Collection-Range` value.
pub(crate) fn collection_total(range: &str) -> Result<u64, PageError> {
    let malformed = || PageError::MalformedRange(range.to_owned());
    let (span, total) = range.trim().split_once('/').ok_or_else(malformed)?;
    let total: u64 = total.parse().map_err(|_| malformed())?;
    let span_ok = span == "*"
        || span.split_once('-').is_some_and(|(start, end)| {
            start.parse::<u64>().is_ok_and(|start| end.parse::<u64>().is_ok_and(|end| start <= end))
        });
    if span_ok { Ok(total) } else { Err(malformed()) }
}

/// The offset of the page after one that started at `offset` and held `items` items, or `None`
/// when that was the last page.
///
/// Without the header, a page shorter than `limit` is taken as the last, so a missing header
/// costs at most one extra, empty request.
pub(crate) fn next_offset(
    offset: u64,
    limit: u64,
    items: usize,
    range: Option<&str>,
) -> Result<Option<u64>, PageError> {
    if items == 0 {
        return Ok(None);
    }
    let next = offset.saturating_add(u64::try_from(items).unwrap_or(u64::MAX));
    let (more, total) = match range {
        Some(range) => {
            let total = collection_total(range)?;
            (next < total, total)
        }
        None => (u64::try_from(items).is_ok_and(|items| items >= limit), next),
    };
    if !more {
        return Ok(None);
    }
    if next > OFFSET_CAP {
        return Err(PageError::PastOffsetCap { total });
    }
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_read_from_both_forms() {
        assert_eq!(collection_total("0-9/200"), Ok(200));
        assert_eq!(collection_total("10-19/15"), Ok(15));
        assert_eq!(collection_total("*/0"), Ok(0));
        for bad in ["", "0-9", "9-0/3", "a-b/3", "0-9/x", "0-9/-1", "*/"] {
            assert!(matches!(collection_total(bad), Err(PageError::MalformedRange(_))), "{bad}");
        }
    }

    #[test]
    fn pages_follow_the_total_not_the_asked_range() {
        assert_eq!(next_offset(0, 10, 10, Some("0-9/15")), Ok(Some(10)));
        assert_eq!(next_offset(10, 10, 5, Some("10-19/15")), Ok(None));
        assert_eq!(next_offset(0, 10, 10, Some("0-9/10")), Ok(None));
        assert_eq!(next_offset(0, 10, 0, Some("*/0")), Ok(None));
        // A server that clamps the limit still pages on.
        assert_eq!(next_offset(0, 250, 100, Some("0-249/300")), Ok(Some(100)));
    }

    #[test]
    fn without_the_header_a_short_page_is_the_last() {
        assert_eq!(next_offset(0, 100, 100, None), Ok(Some(100)));
        assert_eq!(next_offset(100, 100, 99, None), Ok(None));
        assert_eq!(next_offset(200, 100, 0, None), Ok(None));
    }

    #[test]
    fn paging_stops_with_an_error_past_the_offset_cap() {
        assert_eq!(next_offset(19_900, 100, 100, Some("19900-19999/20000")), Ok(None));
        assert_eq!(
            next_offset(19_950, 100, 100, Some("19950-20049/30000")),
            Err(PageError::PastOffsetCap { total: 30_000 })
        );
    }
}
