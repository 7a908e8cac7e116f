//! What the envelope needs to know about a family of messages.

/// A family of messages that travel in an [`Envelope`](crate::Envelope): [`Event`](crate::Event),
/// [`Command`](crate::Command) or [`Outcome`](crate::Outcome).
pub trait WireMessage {
    /// The family's name ("event", "command", "outcome"), used in message ids and errors.
    const FAMILY: &'static str;

    /// Every type tag this build knows in the family, so that a decoder can tell "a message type
    /// from a newer build" from "garbage".
    const TAGS: &'static [&'static str];

    /// The type tag of this message, e.g. "booking_changed": the `type` field on the wire.
    fn tag(&self) -> &'static str;
}

/// Defines a message family enum with one struct per variant, and its [`WireMessage`] impl.
///
/// Each tag is written once and used both by serde and by [`WireMessage::tag`], so the two cannot
/// drift apart.
macro_rules! wire_message_family {
    (
        $(#[$meta:meta])*
        pub enum $family:ident as $family_name:literal {
            $( $(#[$variant_meta:meta])* $variant:ident = $tag:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        // Adjacently tagged rather than flattened into the envelope: serde's flatten goes through
        // a self-describing buffer that mishandles MessagePack's integer and binary types.
        #[serde(tag = "type", content = "body")]
        pub enum $family {
            $(
                $(#[$variant_meta])*
                #[serde(rename = $tag)]
                $variant($variant),
            )+
        }

        impl $crate::WireMessage for $family {
            const FAMILY: &'static str = $family_name;
            const TAGS: &'static [&'static str] = &[$($tag),+];

            fn tag(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $tag,)+
                }
            }
        }
    };
}

pub(crate) use wire_message_family;
