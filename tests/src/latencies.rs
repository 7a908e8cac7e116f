//! Latencies a benchmark measured, and their nearest-rank percentiles.

/// Measured latencies in milliseconds, sorted.
#[derive(Debug, Clone, Default)]
pub struct Latencies(Vec<i64>);

impl Latencies {
    pub fn new(mut values: Vec<i64>) -> Self {
        values.sort_unstable();
        Self(values)
    }

    /// Nearest rank: the smallest value at least `percent`% of the values are at or below; 0 when
    /// nothing was measured.
    pub fn percentile(&self, percent: usize) -> i64 {
        let rank = (percent * self.0.len()).div_ceil(100).max(1);
        self.0.get(rank - 1).copied().unwrap_or(0)
    }

    pub fn max(&self) -> i64 {
        self.0.last().copied().unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_and_nothing_measured_reads_zero() {
        let latencies = Latencies::new((1..=200).rev().collect());
        assert_eq!((latencies.percentile(50), latencies.percentile(99), latencies.max()), (100, 198, 200));
        assert_eq!(Latencies::new(vec![7]).percentile(99), 7);
        let nothing = Latencies::new(Vec::new());
        assert!(nothing.is_empty());
        assert_eq!((nothing.percentile(50), nothing.max(), nothing.len()), (0, 0, 0));
    }
}
