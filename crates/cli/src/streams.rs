//! The streams doorsync keeps in its log, derived from the subject layout.

use std::time::Duration;

use doorsync_log::StreamSpec;
use doorsync_proto::Subjects;

/// Long enough that a restart, a replay or the ingestor's overlapping re-reads within the hour
/// are answered as duplicates instead of stored again.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(3_600);

pub(crate) const EVENTS: &str = "EVT";
pub(crate) const COMMANDS: &str = "CMD";
pub(crate) const OUTCOMES: &str = "OUT";
pub(crate) const DEAD_LETTERS: &str = "DLQ";

/// Stream names are the subject prefix in capitals plus the family: `DOORSYNC_EVT`.
pub(crate) fn stream_name(subjects: &Subjects, family: &str) -> String {
    format!("{}_{family}", subjects.prefix().replace(['.', '-'], "_").to_uppercase())
}

pub(crate) fn doorsync_streams(subjects: &Subjects) -> Vec<StreamSpec> {
    [
        (EVENTS, subjects.events_wildcard()),
        (COMMANDS, subjects.commands_wildcard()),
        (OUTCOMES, subjects.outcomes_wildcard()),
        (DEAD_LETTERS, subjects.dead_letters_wildcard()),
    ]
    .into_iter()
    .map(|(family, wildcard)| {
        StreamSpec::new(stream_name(subjects, family), [wildcard]).with_duplicate_window(DUPLICATE_WINDOW)
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_its_own_stream() -> Result<(), doorsync_proto::SubjectError> {
        let subjects = Subjects::new("doorsync", 64)?;
        let streams = doorsync_streams(&subjects);
        let names: Vec<&str> = streams.iter().map(|spec| spec.name.as_str()).collect();
        assert_eq!(names, ["DOORSYNC_EVT", "DOORSYNC_CMD", "DOORSYNC_OUT", "DOORSYNC_DLQ"]);
        let member = doorsync_proto::MemberId(42);
        assert!(streams[0].captures(&subjects.event(member)));
        assert!(streams[0].captures(&subjects.mapping()));
        assert!(streams[1].captures(&subjects.command(member)));
        assert!(!streams[1].captures(&subjects.event(member)));
        assert!(streams.iter().all(|spec| spec.validate().is_ok()));
        Ok(())
    }
}
