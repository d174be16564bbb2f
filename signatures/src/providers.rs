//! One module per provider, and the shapes several of them share: a MAC alone in one header
//! (GitHub, Slack, Shopify, Linear, ClickUp, Jira, generic HMAC), and a MAC of the body beside an
//! unsigned delivery id (GitHub, Shopify, Linear, Jira; ClickUp sends no id).

pub(crate) mod clickup;
pub(crate) mod generic;
pub(crate) mod github;
pub(crate) mod gitlab;
pub(crate) mod jira;
pub(crate) mod linear;
pub(crate) mod shopify;
pub(crate) mod slack;
pub(crate) mod standard;
pub(crate) mod stripe;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::{ExposeSecret, SecretString};

use crate::primitives::{check_mac, decode_lower_hex, header, hex, hmac};
use crate::{Algorithm, Encoding, Headers, Rejection, Verified};

/// How a MAC alone in its header is written.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MacText {
    /// Lower-case hex, exactly as sent: GitHub's and Slack's libraries compare the text as it
    /// comes, so `SHA256=`, upper-case hex or stray spaces are malformed.
    LowerHex,
    /// After trimming, hex in either case or base64 (Shopify, generic HMAC).
    Trimmed(Encoding),
}

/// A header holding `{prefix}{MAC}` and nothing else.
#[derive(Debug)]
pub(crate) struct MacHeader<'a> {
    pub name: &'a str,
    pub prefix: &'a str,
    pub text: MacText,
}

impl MacHeader<'_> {
    /// The MAC a delivery carries.
    pub(crate) fn read(&self, headers: &(impl Headers + ?Sized)) -> Result<Vec<u8>, Rejection> {
        let value = headers.get(self.name).ok_or(Rejection::Missing)?;
        match self.text {
            MacText::LowerHex => value.strip_prefix(self.prefix).and_then(decode_lower_hex),
            MacText::Trimmed(encoding) => {
                value
                    .trim()
                    .strip_prefix(self.prefix)
                    .and_then(|encoded| match encoding {
                        Encoding::Hex => decode_lower_hex(&encoded.to_ascii_lowercase()),
                        Encoding::Base64 => BASE64.decode(encoded).ok(),
                    })
            }
        }
        .ok_or(Rejection::Malformed)
    }

    /// The header carrying `mac`.
    pub(crate) fn write(&self, mac: &[u8]) -> (String, String) {
        let encoded = match self.text {
            MacText::LowerHex | MacText::Trimmed(Encoding::Hex) => hex(mac),
            MacText::Trimmed(Encoding::Base64) => BASE64.encode(mac),
        };
        header(self.name, format!("{}{encoded}", self.prefix))
    }
}

/// An HMAC-SHA256 of the body alone in one header, the delivery's id (when the provider sends
/// one) in another that the signature does not cover: information, never the dedup key.
#[derive(Debug)]
pub(crate) struct BodyMac {
    pub signature: MacHeader<'static>,
    pub id_header: Option<&'static str>,
}

impl BodyMac {
    pub(crate) fn verify(
        &self,
        secrets: &[SecretString],
        headers: &(impl Headers + ?Sized),
        body: &[u8],
    ) -> Result<Verified, Rejection> {
        let given = self.signature.read(headers)?;
        check_mac(secrets, Algorithm::Sha256, &[body], &given)?;
        Ok(Verified {
            delivery_id: self
                .id_header
                .and_then(|name| headers.get(name))
                .map(str::to_string),
            ..Verified::default()
        })
    }

    /// The signature's header, and the id's when the provider sends one.
    pub(crate) fn sign(
        &self,
        secret: &SecretString,
        body: &[u8],
        delivery_id: &str,
    ) -> Vec<(String, String)> {
        let mac = hmac(
            Algorithm::Sha256,
            secret.expose_secret().as_bytes(),
            &[body],
        );
        let id = self.id_header.map(|name| header(name, delivery_id));
        std::iter::once(self.signature.write(&mac))
            .chain(id)
            .collect()
    }
}
