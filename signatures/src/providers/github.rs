//! GitHub: `X-Hub-Signature-256: sha256=<hex>`, an HMAC-SHA256 of the body in lower-case hex.
//! `X-GitHub-Delivery` names the delivery but is not signed, so the dedup key is a digest of the
//! body (redeliveries resend the same bytes). Handshake: the `ping` (`X-GitHub-Event: ping`)
//! GitHub sends when a hook is created.

use serde_json::{Value, json};

use super::{BodyMac, MacHeader, MacText};
use crate::Headers;

/// Verifies and signs deliveries.
pub(crate) const SIGNING: BodyMac = BodyMac {
    signature: MacHeader {
        name: "X-Hub-Signature-256",
        prefix: "sha256=",
        text: MacText::LowerHex,
    },
    id_header: Some("X-GitHub-Delivery"),
};

/// A ping only checks that the hook is reachable: it is answered and starts nothing.
pub(crate) fn handshake(headers: &(impl Headers + ?Sized)) -> Option<Value> {
    (headers.get("X-GitHub-Event") == Some("ping")).then(|| json!({ "status": "pong" }))
}
