//! The dead letters: commands the writer gave up on, parked with their reason on the member's
//! dead-letter subject, and what operators do about them (list, retry, drop). This module is the
//! only one that writes the dead-letter subject and the `dlq.` keys of the writer's bucket.
