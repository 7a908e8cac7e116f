//! A client for the part of Kisi's REST API that doorsync needs: find or create users, suspend
//! them, list and resolve groups, and grant group membership (role `group_basic`) for a validity
//! window. It signs in with `KISI-LOGIN` and sends the integration headers Kisi asks partners
//! for ([`KisiOptions`]).
//!
//! The client is deliberately thin. Each method makes its requests once, with no rate limiting
//! and no retries, because the Kisi writer owns the request budget (5 per second per API user)
//! and the retry policy; [`KisiError`] gives it what it needs to decide: whether to retry
//! ([`KisiError::is_retryable`], [`KisiError::retry_after`]), pause on bad credentials
//! ([`KisiError::is_credentials_problem`]) or give up ([`KisiError::is_permanent`]), and whether
//! a failed write may have been carried out anyway ([`KisiError::outcome_unknown`]). Every error
//! is exactly one of retryable, a credentials problem or permanent.
//!
//! A window ([`Validity`]) is sent to Kisi in whole seconds, `from` rounded down and `until` up,
//! so access is never shorter than asked. Users are found by email with an exact, case-insensitive
//! match over every page of Kisi's free-text search ([`KisiClient::find_user_by_email`]), or read a
//! page at a time ([`KisiClient::users_page`], [`KisiClient::group_assignments_page`]) so that a
//! whole organisation is matched locally; past Kisi's offset cap of 20,000 a listing ends in
//! [`KisiError::TooManyResults`].
//!
//! Kisi is not always plain about what happened, and the client does not hide it:
//!
//! - 403 ([`KisiError::is_forbidden`]) means a key without the rights *or* an id the key cannot
//!   see or that does not exist; [`KisiClient::group`] lets a caller check at start-up that every
//!   group it means to use is visible to the key, so a later 403 points at the call's ids.
//! - A PATCH of an assignment's window ([`KisiClient::update_assignment_validity`]) may be
//!   answered 204 and ignored, or refused: read the assignment back.
//! - A 429 may come without `Retry-After`, and a `Retry-After` may be absurd:
//!   [`RetryAfter::clamped_delay_from`] bounds the wait.
//!
//! The API key is a [`ApiKey`], redacted in every `Debug` and `Display`; errors name the method
//! and path of the call but never its query, which may hold an email address.
//!
//! With the `openapi-validation` feature, the `openapi` module validates bodies against Kisi's
//! published OpenAPI description (vendored in `crates/kisi/openapi/`), for tests.
#![forbid(unsafe_code)]

mod client;
mod error;
mod model;
#[cfg(feature = "openapi-validation")]
pub mod openapi;
mod options;
mod pagination;

pub use client::{KisiClient, Page};
pub use error::{Endpoint, ErrorDetails, FieldError, KisiError, RetryAfter};
pub use model::{
    AppliesToType, AssigneeType, CurrentUser, GROUP_BASIC_ROLE, Group, NewUser, RoleAssignment, User, UserKind,
    Validity,
};
pub use options::{ApiKey, KisiOptions};
