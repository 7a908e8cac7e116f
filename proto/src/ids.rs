//! Identifiers of things in Nexudus and Kisi.
//!
//! Both systems number their records with integers. Each kind of id gets its own type so that a
//! booking id can never be passed where a member id is expected; on the wire they are plain
//! integers.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! integer_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl From<u64> for $name {
            fn from(raw: u64) -> Self {
                Self(raw)
            }
        }
    };
}

integer_id!(
    /// A Nexudus member (a "coworker" in Nexudus's API).
    MemberId
);
integer_id!(
    /// A Nexudus booking of a resource.
    BookingId
);
integer_id!(
    /// A bookable Nexudus resource: a meeting room, phone booth, event space.
    ResourceId
);
integer_id!(
    /// One time pass (day pass, hour pass) held by a member.
    PassId
);
integer_id!(
    /// The Nexudus product a pass is an instance of; mappings are made per product.
    PassProductId
);
integer_id!(
    /// A Nexudus contract (membership plan), which may include desks or offices.
    ContractId
);
integer_id!(
    /// A desk or office on a Nexudus floor plan.
    FloorPlanItemId
);
integer_id!(
    /// A Kisi group: the set of doors that one mapping opens.
    KisiGroupId
);
integer_id!(
    /// A Kisi user.
    KisiUserId
);
integer_id!(
    /// A Kisi role assignment, the record that puts one user in one group.
    KisiAssignmentId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_the_plain_decimal_number() {
        assert_eq!(MemberId(1_234_567).to_string(), "1234567");
        assert_eq!(KisiAssignmentId(u64::MAX).to_string(), "18446744073709551615");
    }

    #[test]
    fn is_a_bare_integer_on_the_wire() -> Result<(), Box<dyn std::error::Error>> {
        let encoded = rmp_serde::to_vec_named(&BookingId(7))?;
        assert_eq!(encoded, rmp_serde::to_vec_named(&7_u64)?);
        assert_eq!(rmp_serde::from_slice::<BookingId>(&encoded)?, BookingId(7));
        Ok(())
    }
}
