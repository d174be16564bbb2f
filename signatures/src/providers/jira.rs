//! Jira Cloud: `X-Hub-Signature: sha256=<hex>`, an HMAC-SHA256 of the body in lower-case hex.
//! `X-Atlassian-Webhook-Identifier` names the delivery (the same on Jira's retries) but is not
//! signed: taken alone it would let anyone who saw one identifier suppress a later delivery by
//! reusing it, or replay a captured body under a fresh one. So the dedup key is a digest of the
//! body (retries resend the same bytes, and the event's `timestamp` is in it), and the
//! identifier is shown as the delivery id. Jira lets a webhook go without a secret; a source
//! here cannot (every source needs one), so an unsigned Jira delivery is always refused. No
//! handshake.

use super::{BodyMac, MacHeader, MacText};

/// Verifies and signs deliveries.
pub(crate) const SIGNING: BodyMac = BodyMac {
    signature: MacHeader {
        name: "X-Hub-Signature",
        prefix: "sha256=",
        text: MacText::LowerHex,
    },
    id_header: Some("X-Atlassian-Webhook-Identifier"),
};
