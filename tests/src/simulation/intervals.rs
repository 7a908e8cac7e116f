//! Sets of instants as sorted, disjoint half-open intervals of milliseconds, for comparing when
//! Kisi lets someone in with when they are entitled to be let in.

/// Milliseconds since the Unix epoch; `OPEN_START` and `OPEN_END` stand for unbounded ends.
pub(crate) type Millis = i64;
pub(crate) const OPEN_START: Millis = i64::MIN;
pub(crate) const OPEN_END: Millis = i64::MAX;

/// A union of `[start, end)` intervals, kept sorted and merged (touching intervals are one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct IntervalSet {
    intervals: Vec<(Millis, Millis)>,
}

impl IntervalSet {
    pub(crate) fn of(intervals: impl IntoIterator<Item = (Millis, Millis)>) -> Self {
        let mut sorted: Vec<(Millis, Millis)> = intervals.into_iter().filter(|(start, end)| start < end).collect();
        sorted.sort_unstable();
        let mut merged: Vec<(Millis, Millis)> = Vec::with_capacity(sorted.len());
        for (start, end) in sorted {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        Self { intervals: merged }
    }

    pub(crate) fn span(start: Millis, end: Millis) -> Self {
        Self::of([(start, end)])
    }

    pub(crate) fn intervals(&self) -> &[(Millis, Millis)] {
        &self.intervals
    }

    /// The earliest instant in the set.
    pub(crate) fn first(&self) -> Option<Millis> {
        self.intervals.first().map(|(start, _)| *start)
    }

    pub(crate) fn union(&self, other: &Self) -> Self {
        Self::of(self.intervals.iter().chain(&other.intervals).copied())
    }

    pub(crate) fn intersect(&self, other: &Self) -> Self {
        let mut found = Vec::new();
        for (start, end) in &self.intervals {
            for (other_start, other_end) in &other.intervals {
                let (from, until) = ((*start).max(*other_start), (*end).min(*other_end));
                if from < until {
                    found.push((from, until));
                }
            }
        }
        Self::of(found)
    }

    pub(crate) fn subtract(&self, other: &Self) -> Self {
        let mut remaining = Vec::new();
        for &(start, end) in &self.intervals {
            let mut from = start;
            for &(cut_start, cut_end) in &other.intervals {
                if cut_end <= from || cut_start >= end {
                    continue;
                }
                if cut_start > from {
                    remaining.push((from, cut_start));
                }
                from = from.max(cut_end);
                if from >= end {
                    break;
                }
            }
            if from < end {
                remaining.push((from, end));
            }
        }
        Self::of(remaining)
    }

    /// Each interval grown by `before` at its start and `after` at its end (open ends stay open).
    pub(crate) fn widened(&self, before: Millis, after: Millis) -> Self {
        Self::of(self.intervals.iter().map(|&(start, end)| {
            let start = if start == OPEN_START { start } else { start.saturating_sub(before) };
            let end = if end == OPEN_END { end } else { end.saturating_add(after) };
            (start, end)
        }))
    }

    /// The first `length` of every interval (all of an interval shorter than that).
    pub(crate) fn beginnings(&self, length: Millis) -> Self {
        Self::of(
            self.intervals
                .iter()
                .filter(|(start, _)| *start != OPEN_START)
                .map(|&(start, end)| (start, end.min(start.saturating_add(length)))),
        )
    }

    /// The interval that contains `at`, or else the first one after it: the stretch of access
    /// Kisi holds for a group at `at` (one window per user and group).
    pub(crate) fn current_or_next(&self, at: Millis) -> Option<(Millis, Millis)> {
        self.intervals.iter().copied().find(|(_, end)| *end > at)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Instants 0..SPAN are enough to meet every case of touching, nested and disjoint intervals.
    const SPAN: Millis = 40;

    fn intervals() -> impl Strategy<Value = Vec<(Millis, Millis)>> {
        prop::collection::vec((0..SPAN, 0..SPAN), 0..6)
    }

    /// The set as one flag per instant.
    fn model(set: &IntervalSet) -> Vec<bool> {
        (0..SPAN).map(|at| set.intervals().iter().any(|&(start, end)| start <= at && at < end)).collect()
    }

    fn flags(intervals: &[(Millis, Millis)]) -> Vec<bool> {
        (0..SPAN).map(|at| intervals.iter().any(|&(start, end)| start <= at && at < end)).collect()
    }

    proptest! {
        /// The oracle's verdicts rest on this arithmetic: every operation must agree, instant by
        /// instant, with the obvious one on flags, and sets must stay sorted, disjoint and merged.
        #[test]
        fn operations_agree_with_a_flag_per_instant(a in intervals(), b in intervals(), grow in 0..5_i64) {
            let (left, right) = (IntervalSet::of(a.clone()), IntervalSet::of(b.clone()));
            let (fa, fb) = (flags(&a), flags(&b));
            prop_assert_eq!(model(&left), fa.clone());
            let union: Vec<bool> = fa.iter().zip(&fb).map(|(x, y)| *x || *y).collect();
            let both: Vec<bool> = fa.iter().zip(&fb).map(|(x, y)| *x && *y).collect();
            let minus: Vec<bool> = fa.iter().zip(&fb).map(|(x, y)| *x && !*y).collect();
            prop_assert_eq!(model(&left.union(&right)), union);
            prop_assert_eq!(model(&left.intersect(&right)), both);
            prop_assert_eq!(model(&left.subtract(&right)), minus);
            let widened: Vec<bool> = (0..SPAN)
                .map(|at| left.intervals().iter().any(|&(start, end)| start - grow <= at && at < end + grow))
                .collect();
            prop_assert_eq!(model(&left.widened(grow, grow)), widened);
            for set in [left.union(&right), left.subtract(&right), left.intersect(&right)] {
                let pieces = set.intervals();
                prop_assert!(pieces.iter().all(|(start, end)| start < end));
                prop_assert!(pieces.windows(2).all(|pair| pair[0].1 < pair[1].0), "{:?}", pieces);
            }
        }
    }

    #[test]
    fn intervals_merge_when_they_touch_and_subtract_exactly() {
        let set = IntervalSet::of([(10, 20), (20, 30), (40, 50), (5, 5)]);
        assert_eq!(set.intervals(), [(10, 30), (40, 50)]);
        let cut = set.subtract(&IntervalSet::of([(15, 18), (29, 45)]));
        assert_eq!(cut.intervals(), [(10, 15), (18, 29), (45, 50)]);
        assert_eq!(set.intersect(&IntervalSet::span(25, 42)).intervals(), [(25, 30), (40, 42)]);
        assert_eq!(set.widened(2, 3).intervals(), [(8, 33), (38, 53)]);
        assert_eq!(set.beginnings(4).intervals(), [(10, 14), (40, 44)]);
        assert_eq!(set.current_or_next(35), Some((40, 50)));
        assert_eq!(set.current_or_next(50), None);
        let open = IntervalSet::span(OPEN_START, 7).widened(5, 5);
        assert_eq!(open.intervals(), [(OPEN_START, 12)]);
    }
}
