//! The per-deployment rules that turn what a member holds into door access.

use std::collections::BTreeMap;

use doorsync_proto::ResourceId;
use serde::{Deserialize, Serialize};

const MINUTE_MS: i64 = 60_000;

/// How a deployment turns entitlements into access windows, and what happens to a member who
/// holds nothing any more.
///
/// It is configuration, not state: it is passed to [`desired`](crate::desired) on every call, so a
/// changed policy applies at once to every member without refolding anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccessPolicy {
    /// How long before a booking starts its member may open the doors (default 15 minutes).
    pub booking_lead_ms: i64,
    /// How long after a booking ends its member may still open the doors (default 15 minutes).
    pub booking_lag_ms: i64,
    /// Lead and lag for particular resources, replacing the defaults above.
    pub resource_timing: BTreeMap<ResourceId, BookingTiming>,
    /// How long a pass keeps opening doors after it expires (default 0: exactly at expiry).
    pub pass_lag_ms: i64,
    /// What happens to the Kisi user of a member who holds nothing connected.
    pub no_access: NoAccessPolicy,
}

impl Default for AccessPolicy {
    fn default() -> Self {
        Self {
            booking_lead_ms: 15 * MINUTE_MS,
            booking_lag_ms: 15 * MINUTE_MS,
            resource_timing: BTreeMap::new(),
            pass_lag_ms: 0,
            no_access: NoAccessPolicy::default(),
        }
    }
}

impl AccessPolicy {
    /// The lead and lag that apply to bookings of `resource`.
    pub fn booking_timing(&self, resource: ResourceId) -> BookingTiming {
        self.resource_timing
            .get(&resource)
            .copied()
            .unwrap_or(BookingTiming { lead_ms: self.booking_lead_ms, lag_ms: self.booking_lag_ms })
    }
}

/// Lead and lag around the bookings of one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingTiming {
    pub lead_ms: i64,
    pub lag_ms: i64,
}

/// What happens to the Kisi user of a member who holds nothing connected any more. Whatever the
/// policy, only users doorsync created or linked are touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoAccessPolicy {
    /// The user stays but cannot open any door (`access_enabled = false`).
    #[default]
    Suspend,
    /// The user is deleted from Kisi.
    Delete,
    /// The user is left exactly as it is; only its group memberships are removed.
    RemoveMembershipsOnly,
}
