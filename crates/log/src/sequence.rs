//! Positions in a stream.

use std::fmt;
use std::num::ParseIntError;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A message's position in its stream: the first message is 1, and 0 stands before the first (an
/// empty stream's last sequence, a subject expected to be empty). Its own type so that a position
/// is never taken for a count of messages or a partition; it is stored and shown as the plain
/// number.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sequence(pub u64);

impl Sequence {
    /// Before the first message: where nothing has been read yet.
    pub const BEFORE_FIRST: Sequence = Sequence(0);
    /// The first message of a stream.
    pub const FIRST: Sequence = Sequence(1);

    /// The position right after this one, where reading resumes once this one is handled.
    pub fn next(self) -> Sequence {
        Sequence(self.0.saturating_add(1))
    }

    /// The position `messages` before this one, or the one before the first if there are not
    /// that many.
    pub fn back(self, messages: u64) -> Sequence {
        Sequence(self.0.saturating_sub(messages))
    }

    /// How many positions this one is ahead of `earlier`: how far a reader at `earlier` is
    /// behind; 0 when it is not ahead.
    pub fn messages_after(self, earlier: Sequence) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Read back from its decimal number, as an operator names it and as the log's headers and
/// keys store it.
impl FromStr for Sequence {
    type Err = ParseIntError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse().map(Sequence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_one_further_and_stops_at_the_end() {
        assert_eq!(Sequence::BEFORE_FIRST.next(), Sequence::FIRST);
        assert_eq!(Sequence(41).next(), Sequence(42));
        assert_eq!(Sequence(u64::MAX).next(), Sequence(u64::MAX));
    }

    #[test]
    fn back_goes_that_many_positions_back_and_stops_before_the_first() {
        assert_eq!(Sequence(60).back(49), Sequence(11));
        assert_eq!(Sequence(3).back(49), Sequence::BEFORE_FIRST);
    }

    #[test]
    fn messages_after_counts_the_gap_and_never_goes_below_zero() {
        assert_eq!(Sequence(10).messages_after(Sequence(4)), 6);
        assert_eq!(Sequence(4).messages_after(Sequence(4)), 0);
        assert_eq!(Sequence(4).messages_after(Sequence(10)), 0);
    }

    #[test]
    fn is_stored_and_shown_as_the_plain_number() {
        assert_eq!(Sequence(1_234).to_string(), "1234");
        assert_eq!("1234".parse(), Ok(Sequence(1_234)));
        assert!("12a".parse::<Sequence>().is_err());
        assert_eq!(rmp_serde::to_vec_named(&Sequence(1_234)).ok(), rmp_serde::to_vec_named(&1_234_u64).ok());
    }
}
