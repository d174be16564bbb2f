//! Generic HMAC, for senders that follow no standard: the configured `header` holds
//! `{prefix}{MAC}` (SHA-1, SHA-256 or SHA-512; hex or base64) over the `signed_content`
//! template, which places the raw `{body}` and `{timestamp}` and `{id}` from the configured
//! `timestamp_header` and `id_header`. The id is the dedup key only when the template has
//! `{id}`; else a digest of the body. No handshake.

use secrecy::{ExposeSecret, SecretString};

use super::{MacHeader, MacText};
use crate::primitives::{check_mac, header, hmac, timestamp};
use crate::{Delivery, GenericHmac, Headers, Rejection, Verified};

impl GenericHmac {
    fn signature(&self) -> MacHeader<'_> {
        MacHeader {
            name: &self.header,
            prefix: &self.prefix,
            text: MacText::Trimmed(self.encoding),
        }
    }

    /// Whether the signature covers the `id_header`.
    pub(crate) fn signs_id(&self) -> bool {
        self.signed_content.contains("{id}")
    }

    fn signed(&self, timestamp: Option<i64>, id: Option<&str>, body: &[u8]) -> Vec<u8> {
        // Split around {body} so the body is used as raw bytes, never re-encoded.
        let (before, after) = self
            .signed_content
            .split_once("{body}")
            .unwrap_or((self.signed_content.as_str(), ""));
        let fill = |text: &str| {
            text.replace(
                "{timestamp}",
                &timestamp.map(|t| t.to_string()).unwrap_or_default(),
            )
            .replace("{id}", id.unwrap_or_default())
        };
        [fill(before).as_bytes(), body, fill(after).as_bytes()].concat()
    }

    pub(crate) fn verify(
        &self,
        delivery: Delivery<'_, impl Headers + ?Sized>,
    ) -> Result<Verified, Rejection> {
        let given = self.signature().read(delivery.headers)?;
        let ts = match &self.timestamp_header {
            Some(name) => {
                let ts = timestamp(delivery.headers, name)?;
                delivery.check_window(ts)?;
                Some(ts)
            }
            None => None,
        };
        let id = self
            .id_header
            .as_deref()
            .and_then(|h| delivery.headers.get(h));
        check_mac(
            delivery.secrets,
            self.algorithm,
            &[&self.signed(ts, id, delivery.body)],
            &given,
        )?;
        Ok(Verified {
            delivery_id: id.map(str::to_string),
            id_is_signed: id.is_some() && self.signs_id(),
            timestamp: ts,
        })
    }

    pub(crate) fn sign(
        &self,
        secret: &SecretString,
        body: &[u8],
        now: i64,
        delivery_id: &str,
    ) -> Vec<(String, String)> {
        let ts = self.timestamp_header.as_ref().map(|_| now);
        let id = self.id_header.as_ref().map(|_| delivery_id);
        let key = secret.expose_secret().as_bytes();
        let mac = hmac(self.algorithm, key, &[&self.signed(ts, id, body)]);
        let mut headers = vec![self.signature().write(&mac)];
        if let Some(name) = &self.timestamp_header {
            headers.push(header(name, now));
        }
        if let Some(name) = &self.id_header {
            headers.push(header(name, delivery_id));
        }
        headers
    }
}
