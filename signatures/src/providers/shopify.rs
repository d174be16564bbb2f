//! Shopify: `X-Shopify-Hmac-Sha256: <base64>`, an HMAC-SHA256 of the body. `X-Shopify-Webhook-Id`
//! names the delivery but is not signed, so the dedup key is a digest of the body. No handshake.

use super::{BodyMac, MacHeader, MacText};
use crate::Encoding;

/// Verifies and signs deliveries.
pub(crate) const SIGNING: BodyMac = BodyMac {
    signature: MacHeader {
        name: "X-Shopify-Hmac-Sha256",
        prefix: "",
        text: MacText::Trimmed(Encoding::Base64),
    },
    id_header: Some("X-Shopify-Webhook-Id"),
};
