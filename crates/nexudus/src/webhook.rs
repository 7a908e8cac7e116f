//! Nexudus webhooks: the signature, the actions and the body (reference §3).
//!
//! Nexudus POSTs a JSON array holding the one affected entity and, when a shared secret is set,
//! signs it in [`SIGNATURE_HEADER`] with the uppercase hex HMAC-SHA256 of the raw body keyed with
//! the secret. The body's fields per action are not documented, so a receiver takes the entity's
//! `Id` and re-reads the record by id. The simulator signs with [`sign`]; the ingestor checks
//! with [`verify`], over the raw bytes as received (never a re-serialisation).

use std::fmt;

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::Secret;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "X-Nexudus-Hook-Signature";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &Secret, raw_body: &[u8]) -> HmacSha256 {
    // HMAC accepts a key of any length (a long key is hashed, a short one padded), so this
    // constructor has no failing case for HMAC-SHA256.
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC-SHA256 takes keys of any length"));
    mac.update(raw_body);
    mac
}

/// The signature Nexudus sends for `raw_body`: uppercase hex HMAC-SHA256 keyed with `secret`.
pub fn sign(secret: &Secret, raw_body: &[u8]) -> String {
    hex::encode_upper(mac(secret, raw_body).finalize().into_bytes())
}

/// Why a webhook's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("nexudus webhook: the {SIGNATURE_HEADER} header is not a hex HMAC-SHA256")]
    Malformed,
    #[error("nexudus webhook: the signature does not match the body: wrong secret, or the body was altered")]
    Mismatch,
}

/// Checks `header_value` (hex, either case) against `raw_body`, in constant time.
pub fn verify(secret: &Secret, raw_body: &[u8], header_value: &str) -> Result<(), SignatureError> {
    let claimed = hex::decode(header_value.trim()).map_err(|_| SignatureError::Malformed)?;
    mac(secret, raw_body).verify_slice(&claimed).map_err(|_| SignatureError::Mismatch)
}

/// The body Nexudus sends for `entity`: a JSON array holding it.
pub fn body_for(entity: &Value) -> Vec<u8> {
    Value::Array(vec![entity.clone()]).to_string().into_bytes()
}

/// One entity from a webhook body.
#[derive(Clone, PartialEq)]
pub struct WebhookEntity {
    /// The entity's `Id`; for `AccessControlUpdate` it is the customer's (coworker's) id.
    pub id: u64,
    /// Everything the body held about it, unchecked: re-read the record by id instead.
    pub fields: Map<String, Value>,
}

impl fmt::Debug for WebhookEntity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The fields may hold names and emails.
        f.debug_struct("WebhookEntity").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Why a (correctly signed) webhook body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("nexudus webhook: the body is not JSON")]
    NotJson,
    #[error("nexudus webhook: the body is not a JSON array of entities")]
    NotAnArray,
    #[error("nexudus webhook: entity {index} of the body is not an object with a numeric Id")]
    NoId { index: usize },
}

/// Reads a webhook body: an array of entities (one, in every documented case), each with an `Id`.
pub fn parse_body(raw_body: &[u8]) -> Result<Vec<WebhookEntity>, PayloadError> {
    let body: Value = serde_json::from_slice(raw_body).map_err(|_| PayloadError::NotJson)?;
    let Value::Array(items) = body else { return Err(PayloadError::NotAnArray) };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let Value::Object(fields) = item else { return Err(PayloadError::NoId { index }) };
            let id = fields.get("Id").and_then(Value::as_u64).ok_or(PayloadError::NoId { index })?;
            Ok(WebhookEntity { id, fields })
        })
        .collect()
}

macro_rules! webhook_actions {
    ($($(#[$doc:meta])* $name:ident = $code:literal,)*) => {
        /// What a webhook reacts to (Nexudus's `eWebhookAction`): the values that matter for
        /// door access; any other is kept as [`WebhookAction::Other`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum WebhookAction {
            $($(#[$doc])* $name,)*
            Other(u64),
        }

        impl WebhookAction {
            pub fn from_code(code: u64) -> Self {
                match code {
                    $($code => Self::$name,)*
                    other => Self::Other(other),
                }
            }

            /// The number Nexudus uses for the action.
            pub fn code(self) -> u64 {
                match self {
                    $(Self::$name => $code,)*
                    Self::Other(code) => code,
                }
            }

            /// Nexudus's name for the action, e.g. `AccessControlUpdate`.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $(Self::$name => Some(stringify!($name)),)*
                    Self::Other(_) => None,
                }
            }
        }
    };
}

webhook_actions! {
    CoworkerUpdate = 2,
    CoworkerCreate = 3,
    BookingCreate = 6,
    BookingUpdate = 7,
    BookingDelete = 8,
    CoworkerContractActivate = 10,
    CoworkerContractCancel = 11,
    CoworkerContractRenew = 12,
    CoworkerContractUpgradeDowngrade = 13,
    CoworkerContractActivateFirst = 14,
    CoworkerCheckout = 35,
    CoworkerCheckin = 36,
    CoworkerDelete = 50,
    TeamCreated = 57,
    TeamUpdated = 58,
    TeamDeleted = 59,
    CoworkerContractUpdate = 60,
    /// "A potential change in the access levels for the customer"; the body is the customer.
    AccessControlUpdate = 61,
    CoworkerContractCreate = 62,
    CoworkerProductCreate = 68,
    CoworkerProductUpdate = 69,
    CoworkerProductDelete = 70,
    FloorPlanDeskCreate = 71,
    FloorPlanDeskDelete = 72,
    FloorPlanDeskUpdate = 73,
    CoworkerContractDelete = 77,
    BusinessUpdate = 84,
}

impl fmt::Display for WebhookAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "action {}", self.code()),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_signed_body_verifies_in_either_case() {
        let secret = Secret::new("s3cret");
        let body = body_for(&json!({"Id": 42, "FullName": "Ada"}));
        let signature = sign(&secret, &body);
        assert_eq!(signature, signature.to_uppercase());
        assert_eq!(signature.len(), 64);
        assert_eq!(verify(&secret, &body, &signature), Ok(()));
        assert_eq!(verify(&secret, &body, &signature.to_lowercase()), Ok(()));
    }

    #[test]
    fn the_signature_matches_an_independent_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign(&Secret::new("Jefe"), b"what do ya want for nothing?"),
            "5BDCC146BF60754E6A042426089575C75A003F089D2739839DEC58B964EC3843"
        );
    }

    #[test]
    fn a_tampered_body_a_wrong_secret_or_garbage_is_refused() {
        let secret = Secret::new("s3cret");
        let body = body_for(&json!({"Id": 42}));
        let signature = sign(&secret, &body);
        assert_eq!(verify(&secret, &body_for(&json!({"Id": 43})), &signature), Err(SignatureError::Mismatch));
        assert_eq!(verify(&Secret::new("other"), &body, &signature), Err(SignatureError::Mismatch));
        assert_eq!(verify(&secret, &body, "not hex"), Err(SignatureError::Malformed));
        assert_eq!(verify(&secret, &body, ""), Err(SignatureError::Mismatch));
    }

    #[test]
    fn the_body_is_an_array_with_the_entity() {
        let body = body_for(&json!({"Id": 42, "Email": "a@example.com"}));
        let entities = parse_body(&body).unwrap();
        assert_eq!(entities.len(), 1);
        assert_eq!(entities[0].id, 42);
        assert!(!format!("{:?}", entities[0]).contains("example.com"));
        assert_eq!(parse_body(b"{\"Id\": 1}"), Err(PayloadError::NotAnArray));
        assert_eq!(parse_body(b"[{\"Name\": 1}]"), Err(PayloadError::NoId { index: 0 }));
        assert_eq!(parse_body(b"[1"), Err(PayloadError::NotJson));
    }

    #[test]
    fn actions_round_trip_their_codes() {
        assert_eq!(WebhookAction::from_code(61), WebhookAction::AccessControlUpdate);
        assert_eq!(WebhookAction::AccessControlUpdate.to_string(), "AccessControlUpdate");
        assert_eq!(WebhookAction::from_code(999), WebhookAction::Other(999));
        for code in 0..100 {
            assert_eq!(WebhookAction::from_code(code).code(), code);
        }
    }
}
