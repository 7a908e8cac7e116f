//! A simulator of the part of Kisi's REST API that doorsync uses, served over real HTTP on a
//! loopback port, for tests and the demo.
//!
//! It answers as Kisi documents (`crates/kisi/openapi/kisi-openapi-subset.yaml`, against which
//! its tests check its answers): `KISI-LOGIN` keys, 200 on creates and 204 on PATCH and
//! DELETE, `{"error", "code"}` and `{"errors": {...}}` bodies, `X-Collection-Range` pagination,
//! free-text `query` search, one role per (user, group), and `created_by_id` set to the key's
//! user. Kisi's limit of 5 requests per second per API user (all its keys together) answers 429,
//! on the time of the [`SimOptions::clock`], so a virtual clock drives it.
//!
//! It is never friendlier than the real Kisi. Where Kisi is documented to behave badly, it does
//! so always:
//!
//! - a role-assignment create naming a group that does not exist answers 403, not 404 (Kisi
//!   support's example of "403 also means a wrong id"), and so does every call naming a group
//!   the organization's keys may not use ([`SimHandle::hide_group`]), which `GET /groups` leaves
//!   out;
//! - `POST /users` with an email the organization already has answers 422 (`email has already
//!   been taken`), and `PATCH /users/{id}` ignores `email`;
//! - users and role assignments made by others (the owner, staff, other integrations) share the
//!   organization ([`SimHandle::seed_user`], [`SimHandle::add_assignment_as`],
//!   [`SimHandle::add_assignment_by_installation`] for a marketplace app, whose id may equal a
//!   user's).
//!
//! Where Kisi's documentation leaves a behaviour open, a switch in [`SimOptions`] (and a setter
//! on [`SimHandle`], to flip it while running) offers each plausible form, defaulting to the
//! least friendly:
//!
//! - [`SimOptions::patch_validity`]: a PATCH of an assignment's `valid_from`/`valid_until` is
//!   [`PatchValidity::Ignore`]d (204, nothing changes) by default, or applied, or rejected (422);
//! - [`SimOptions::unknown_ids`]: other ids that do not exist answer 403
//!   ([`UnknownIds::Forbidden`], the default) or 404;
//! - [`SimOptions::retry_after_on_429`]: the rate limit's 429s carry `Retry-After` (default) or
//!   not. Any `Retry-After`, however absurd (`99999999`), can be injected with
//!   [`Fault::Status`].
//!
//! Through the [`SimHandle`] a test seeds accounts and groups, acts as an operator in the
//! dashboard, asks whether a user can open a group's doors at an instant, counts calls, and
//! switches faults on and off: 5xx, latency, hanging requests, responses dropped after the
//! change was made, and random faults from a seed, which replay exactly.
#![forbid(unsafe_code)]

mod faults;
mod limiter;
mod server;
mod switches;
mod world;

pub use faults::{Fault, FaultRule, RandomFaults};
pub use server::{CallCounts, Exchange, KisiSimulator, SimError, SimHandle, SimOptions};
pub use switches::{PatchValidity, UnknownIds};
pub use world::{GroupAccess, KeyAccess, SeedUser, SimAssignment, SimGroup, SimUser};
