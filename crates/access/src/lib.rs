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
//! * [`entitlements`] lists every booking, pass and contract space the member holds with what it
//!   grants, or why it grants nothing; [`desired`] is derived from it, and `doorsync explain`
//!   prints it.
//!
//! Bookings open doors from a lead before their start to a lag after their end, passes while
//! they are valid (and a lag after, if configured), contracts while they run ([`AccessPolicy`]);
//! the sources are merged into the one window per group that Kisi can hold (the current one, or
//! the next, written ahead), and [`NoAccessPolicy`] says what becomes of the Kisi user of a member
//! who holds nothing.
//! [`Mapping`] connects Nexudus's resources, pass products and desks to Kisi groups:
//! [`Mapping::overlaid_with`] lays the configured entries over Nexudus's own fields and
//! [`Mapping::groups`] lists the managed groups, for the engine, the setup and the tools alike.
//!
//! What was emitted is part of the state, rebuilt from the command stream, so a replay from
//! sequence 0 emits nothing that was already emitted; [`state_digest`] is the same on any machine
//! for the same log. A withheld entitlement (its latest version cannot be read) leaves the
//! bookings, passes or contracts and waits under [`MemberState::withheld`] with its reason until
//! a readable version or its removal. A removed member's bookings, passes and contracts stay in
//! the state: [`MemberStatus::Removed`] grants nothing, and a member seen again holds them again.
//!
//! Day passes are resolved in their IANA time zone with the tz database compiled into the binary
//! (never the host's), so every machine computes the same window, and [`iana_zone_for_windows`]
//! maps the Windows zone ids Nexudus reports to IANA ids (CLDR's table, embedded). The rules are
//! checked by proptest against a brute-force, minute-by-minute oracle.
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
