//! The heart of doorsync: what door access each member should have, and the commands that make
//! Kisi match.
//!
//! Everything here is a pure function of its inputs (no I/O, no clock, no randomness, no hash
//! map iteration order), so replaying a member's log gives the same state bit for bit on any
//! machine, and the actors around it are thin shells:
//!
//! * [`fold`] folds a member's [`Event`](doorsync_proto::Event)s (what they hold in Nexudus) into
//!   their [`MemberState`]; [`fold_outcome`] records what the Kisi writer reported.
//! * [`desired`] says what the member should have in Kisi at an instant, given the deployment's
//!   [`Mapping`] and [`AccessPolicy`]; [`next_change`] says when that answer next changes, so the
//!   actor can sleep until then.
//! * [`commands`] turns the difference between what was last asked of Kisi and what is desired
//!   into [`Command`](doorsync_proto::Command)s; [`record_command`] notes them as asked;
//!   [`window_edge`] says which edge of an access window, if any, made a command necessary.
//!
//! Day passes are resolved in their IANA time zone with the tz database compiled into the binary
//! (never the host's), and [`iana_zone_for_windows`] maps the Windows zone ids Nexudus reports
//! to IANA ids.
#![forbid(unsafe_code)]

mod commands;
mod day;
mod desired;
mod mapping;
mod policy;
mod state;
mod windows_zones;

pub use commands::{commands, record_command, window_edge};
pub use day::{DaySpan, day_span};
pub use desired::{
    Desired, DesiredUser, Entitlement, Grant, Source, UserAccess, Window, desired, entitlements, next_change,
};
pub use mapping::Mapping;
pub use policy::{AccessPolicy, BookingTiming, NoAccessPolicy};
pub use state::{
    Assignment, Booking, CommandFailure, Contract, FORGET_ENDED_AFTER_MS, KisiRecord, MemberState, MemberStatus, Pass,
    PassTerm, Profile, Withheld, command_time, configuration_digest, fold, fold_outcome, state_digest,
};
pub use windows_zones::iana_zone_for_windows;
