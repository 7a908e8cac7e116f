//! Where doorsync's messages live in the log: one stream per family of messages, named after
//! the subject prefix (`DOORSYNC_EVT`, `_CMD`, `_OUT`, `_DLQ`, each with a one-hour
//! de-duplication window), and the key-value buckets:
//!
//! * `_ENGINE`: the engine's checkpoints and member snapshots;
//! * `_LEASES`: the engine's partition leases and registrations, and the writer's account lease;
//! * `_INGEST`: the ingestor's record states, watermarks, parked records, retry set and lease;
//! * `_WRITER`: what the writer knows Kisi holds (per member, which member each Kisi user is
//!   linked to, whether the account applies a PATCH), its held repairs, and what was done about
//!   each dead letter;
//! * `_CATALOGUE`: the names of what ids stand for (locations with their time zones, resources,
//!   pass products, desks and offices, Kisi groups), written by the ingestor and the writer for
//!   the operator's surfaces to show names and local times.
#![forbid(unsafe_code)]

use std::time::Duration;

use doorsync_log::StreamSpec;
use doorsync_proto::Subjects;

/// Long enough that a restart, a replay or the ingestor's overlapping re-reads within the hour
/// are answered as duplicates instead of stored again.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(3_600);

/// The message header that marks an event or a command as bulk work rather than a live change:
/// events the ingestor appends from its poll or sweep (a first sync among them), and the commands
/// the engine emits for them, for a mapping's re-evaluation or at start. The writer carries out
/// live commands (webhooks, window edges) first. A header, like the trace context, so that a
/// message's id is the same whichever way its fact arrived.
pub const BULK_HEADER: &str = "doorsync-bulk";

/// Whether `headers` mark their message as bulk work ([`BULK_HEADER`]).
pub fn is_bulk(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(name, _)| name.eq_ignore_ascii_case(BULK_HEADER))
}

/// The header to add to a message that is bulk work.
pub fn bulk_header() -> (String, String) {
    (BULK_HEADER.to_owned(), "1".to_owned())
}

/// The streams and buckets of one deployment, derived from its subject layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub subjects: Subjects,
    pub events: String,
    pub commands: String,
    pub outcomes: String,
    pub dead_letters: String,
    /// Engine checkpoints and member snapshots.
    pub engine_bucket: String,
    /// Partition leases and engine registrations: kept apart from the snapshots because engines
    /// list this bucket's keys every few seconds.
    pub leases_bucket: String,
    /// The ingestor's watermarks, what it last appended per Nexudus record, and parked records.
    pub ingest_bucket: String,
    /// The writer's knowledge of Kisi (user and assignment ids per member and group) and its
    /// held repairs.
    pub writer_bucket: String,
    /// Names and time zones by id (`doorsync_catalogue`): reference data only, never a reason
    /// to grant or revoke anything.
    pub catalogue_bucket: String,
}

impl Layout {
    pub fn new(subjects: Subjects) -> Self {
        let base = subjects.prefix().replace(['.', '-'], "_").to_uppercase();
        Self {
            events: format!("{base}_EVT"),
            commands: format!("{base}_CMD"),
            outcomes: format!("{base}_OUT"),
            dead_letters: format!("{base}_DLQ"),
            engine_bucket: format!("{base}_ENGINE"),
            leases_bucket: format!("{base}_LEASES"),
            ingest_bucket: format!("{base}_INGEST"),
            writer_bucket: format!("{base}_WRITER"),
            catalogue_bucket: format!("{base}_CATALOGUE"),
            subjects,
        }
    }

    pub fn streams(&self) -> Vec<StreamSpec> {
        [
            (&self.events, self.subjects.events_wildcard()),
            (&self.commands, self.subjects.commands_wildcard()),
            (&self.outcomes, self.subjects.outcomes_wildcard()),
            (&self.dead_letters, self.subjects.dead_letters_wildcard()),
        ]
        .into_iter()
        .map(|(name, wildcard)| StreamSpec::new(name, [wildcard]).with_duplicate_window(DUPLICATE_WINDOW))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_message_with_the_bulk_header_is_bulk_whatever_its_case() {
        let traced = ("traceparent".to_owned(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned());
        assert!(!is_bulk(&[]));
        assert!(!is_bulk(std::slice::from_ref(&traced)));
        assert!(is_bulk(&[traced, bulk_header()]));
        assert!(is_bulk(&[("Doorsync-Bulk".to_owned(), "1".to_owned())]));
    }

    #[test]
    fn every_family_has_its_own_stream() -> Result<(), doorsync_proto::SubjectError> {
        let layout = Layout::new(Subjects::new("doorsync", 64)?);
        let streams = layout.streams();
        let names: Vec<&str> = streams.iter().map(|spec| spec.name.as_str()).collect();
        assert_eq!(names, ["DOORSYNC_EVT", "DOORSYNC_CMD", "DOORSYNC_OUT", "DOORSYNC_DLQ"]);
        let member = doorsync_proto::MemberId(42);
        assert!(streams[0].captures(&layout.subjects.event(member)));
        assert!(streams[0].captures(&layout.subjects.mapping()));
        assert!(streams[1].captures(&layout.subjects.command(member)));
        assert!(!streams[1].captures(&layout.subjects.event(member)));
        assert!(streams.iter().all(|spec| spec.validate().is_ok()));
        for bucket in [
            &layout.engine_bucket,
            &layout.leases_bucket,
            &layout.ingest_bucket,
            &layout.writer_bucket,
            &layout.catalogue_bucket,
        ] {
            assert!(doorsync_log::validate_name("bucket", bucket).is_ok(), "{bucket}");
        }
        Ok(())
    }

    #[test]
    fn prefixes_with_dots_and_dashes_give_valid_names() -> Result<(), doorsync_proto::SubjectError> {
        let layout = Layout::new(Subjects::new("site-a.doors", 4)?);
        assert_eq!(layout.events, "SITE_A_DOORS_EVT");
        assert!(layout.streams().iter().all(|spec| spec.validate().is_ok()));
        Ok(())
    }
}
