//! ClickUp: `X-Signature: <hex>`, an HMAC-SHA256 of the body in lower-case hex. ClickUp sends no
//! delivery id and no timestamp. The dedup key is the event's identity in the signed body:
//! `webhook_id`, `event` and the ids of its `history_items`. Each history item is one change
//! ClickUp recorded, so its id is what stays the same however often the change is delivered; the
//! event name is part of it because one change can be told twice (a status change is both
//! `taskUpdated` and `taskStatusUpdated`), and the webhook because each subscription is its own
//! stream. Deliveries without history items (deletions) fall back to a digest of the body. No
//! handshake.

use serde_json::{Value, json};

use super::{BodyMac, MacHeader, MacText};
use crate::primitives::body_digest;

/// Verifies and signs deliveries.
pub(crate) const SIGNING: BodyMac = BodyMac {
    signature: MacHeader {
        name: "X-Signature",
        prefix: "",
        text: MacText::LowerHex,
    },
    id_header: None,
};

/// A digest of the webhook, the event and its history items' ids; `None` when the payload lists
/// no history item with an id.
pub(crate) fn event_identity(payload: &Value) -> Option<String> {
    let changes: Vec<&Value> = payload
        .get("history_items")?
        .as_array()?
        .iter()
        .map(|item| item.get("id").filter(|id| !id.is_null()))
        .collect::<Option<_>>()?;
    if changes.is_empty() {
        return None;
    }
    let identity = json!([payload.get("webhook_id"), payload.get("event"), changes]);
    Some(body_digest(identity.to_string().as_bytes()))
}
