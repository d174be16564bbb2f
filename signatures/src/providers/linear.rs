//! Linear: `Linear-Signature: <hex>`, an HMAC-SHA256 of the body in lower-case hex, compared as
//! text (as Linear's SDK does). The time is inside the signed body: `webhookTimestamp`, in unix
//! milliseconds, must be within the tolerance of now (the SDK allows 60 s). It is read only once
//! the MAC holds, so nothing unauthenticated is parsed.
//!
//! Stricter than the SDK, on purpose: the SDK checks the window only when the body has a truthy
//! `webhookTimestamp`, coerces a numeric string, and takes the last of two such keys. Here a body
//! that is not a JSON object, has no `webhookTimestamp`, has it as anything but a number, or has
//! it twice is refused as stale: none of them says when it was sent, so it may be a replay of
//! any age.
//!
//! Linear re-sends a failed delivery with a new `webhookTimestamp` (each delivery is signed
//! anew), and `Linear-Delivery` is not signed. The body's `webhookId` names the webhook, not the
//! event: every event a webhook sends carries the same one. So the dedup key is a digest of the
//! signed payload without its `webhookTimestamp`: the rest, `webhookId` and the event's
//! `createdAt` included, stays the same across Linear's retries and names the event. This
//! assumes the timestamp is the only field a retry changes; were Linear to add another, each
//! retry would become a dispatch of its own (a duplicate run, never a lost one). No handshake.

use std::borrow::Cow;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Number, Value};

use super::{BodyMac, MacHeader, MacText};
use crate::primitives::{body_digest, check_window_millis};
use crate::{Delivery, Headers, Rejection, Signed, UnixMillis, Verified};

/// Where the signed body says when it was sent.
const TIMESTAMP: &str = "webhookTimestamp";

const SIGNING: BodyMac = BodyMac {
    signature: MacHeader {
        name: "Linear-Signature",
        prefix: "",
        text: MacText::LowerHex,
    },
    id_header: Some("Linear-Delivery"),
};

/// The one field of the body verification needs (the rest is skipped, not kept).
#[derive(Deserialize)]
struct Stamp {
    #[serde(rename = "webhookTimestamp")]
    timestamp: Option<Number>,
}

/// Unix milliseconds from a JSON number (Linear's schema calls it a float).
fn millis(number: &Number) -> Option<i64> {
    // `as` saturates: a float beyond the range is far outside any window, not a panic.
    number
        .as_i64()
        .or_else(|| number.as_f64().map(|ms| ms as i64))
}

pub(crate) fn verify(delivery: Delivery<'_, impl Headers + ?Sized>) -> Result<Verified, Rejection> {
    let verified = SIGNING.verify(delivery.secrets, delivery.headers, delivery.body)?;
    // A derived struct would also read an array (`[1796115164108]`): only an object is a payload.
    let is_object = delivery.body.trim_ascii_start().starts_with(b"{");
    let sent_at = is_object
        .then(|| serde_json::from_slice::<Stamp>(delivery.body).ok())
        .flatten()
        .and_then(|stamp| stamp.timestamp)
        .as_ref()
        .and_then(millis)
        .ok_or(Rejection::Stale)?;
    check_window_millis(delivery.now.millis(), sent_at, delivery.tolerance_secs)?;
    Ok(Verified {
        timestamp: Some(sent_at.div_euclid(1000)),
        ..verified
    })
}

/// `body` stamped as sent at `now` (its `webhookTimestamp`; the object is written out again,
/// keys sorted, without whitespace), then signed. A body that is not a JSON object is signed as
/// it is, and will not verify.
pub(crate) fn sign<'a>(
    secret: &SecretString,
    body: &'a [u8],
    now: UnixMillis,
    delivery_id: &str,
) -> Signed<'a> {
    let body = match serde_json::from_slice::<Map<String, Value>>(body) {
        Ok(mut payload) => {
            payload.insert(TIMESTAMP.into(), now.millis().into());
            Cow::Owned(Value::Object(payload).to_string().into_bytes())
        }
        Err(_) => Cow::Borrowed(body),
    };
    let headers = SIGNING.sign(secret, &body, delivery_id);
    Signed { body, headers }
}

/// A digest of the payload without `webhookTimestamp`, the one field a retry changes; `None`
/// for a payload that is not an object.
pub(crate) fn event_identity(payload: &Value) -> Option<String> {
    let event: Vec<(&String, &Value)> = payload
        .as_object()?
        .iter()
        .filter(|(field, _)| *field != TIMESTAMP)
        .collect();
    let text = serde_json::to_vec(&event).expect("JSON values serialize");
    Some(body_digest(&text))
}
