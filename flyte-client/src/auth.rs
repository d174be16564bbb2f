//! How the client proves who it is to Flyte: nothing (open-source Flyte behind a trusted
//! network), a static bearer token, or a Flyte 2 API key exchanged for short-lived OAuth2
//! tokens (client-credentials, endpoints discovered through `AuthMetadataService`).
//!
//! Secrets are `SecretString`s: they never appear in `Debug` output or logs.

use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::client::{GET_OAUTH2_METADATA, GET_PUBLIC_CLIENT_CONFIG, Transport};
use crate::error::{Code, FlyteError};
use crate::messages::{Empty, GetOAuth2MetadataResponse, GetPublicClientConfigResponse};

/// The credentials the client sends.
#[derive(Debug, Clone, Default)]
pub enum FlyteAuth {
    /// No credentials: open-source Flyte trusts its network or an auth proxy.
    #[default]
    None,
    /// A fixed `Authorization: Bearer` token.
    Bearer(SecretString),
    /// OAuth2 client credentials, as carried by a Flyte 2 API key.
    ClientCredentials {
        client_id: String,
        client_secret: SecretString,
    },
}

/// A decoded Flyte 2 API key: base64 of `host:client_id:client_secret:org`.
#[derive(Debug, Clone)]
pub struct ApiKey {
    host: String,
    client_id: String,
    client_secret: SecretString,
    org: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("FLYTE_API_KEY is not base64")]
    NotBase64,
    #[error("FLYTE_API_KEY does not decode to host:client_id:client_secret:org")]
    WrongShape,
}

impl ApiKey {
    /// Decodes the key the way Flyte's Rust controller does: exactly four `:`-separated parts,
    /// the first a bare host, an empty org meaning none.
    pub fn parse(encoded: &str) -> Result<ApiKey, ApiKeyError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| ApiKeyError::NotBase64)?;
        let text = String::from_utf8(bytes).map_err(|_| ApiKeyError::WrongShape)?;
        let parts: Vec<&str> = text.split(':').collect();
        let [host, client_id, client_secret, org] = parts[..] else {
            return Err(ApiKeyError::WrongShape);
        };
        if host.is_empty() || client_id.is_empty() || client_secret.is_empty() {
            return Err(ApiKeyError::WrongShape);
        }
        Ok(ApiKey {
            host: host.to_string(),
            client_id: client_id.to_string(),
            client_secret: SecretString::from(client_secret.to_string()),
            org: (!org.is_empty()).then(|| org.to_string()),
        })
    }

    /// `https://<host>`: API keys name hosted deployments, which speak TLS.
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.host)
    }

    pub fn org(&self) -> Option<&str> {
        self.org.as_deref()
    }

    pub fn into_auth(self) -> FlyteAuth {
        FlyteAuth::ClientCredentials {
            client_id: self.client_id,
            client_secret: self.client_secret,
        }
    }
}

/// Produces the auth header for each call, fetching and caching OAuth2 tokens as needed.
#[derive(Debug)]
pub(crate) struct Authenticator {
    auth: FlyteAuth,
    token: Mutex<Option<CachedToken>>,
}

#[derive(Debug)]
struct CachedToken {
    header_name: HeaderName,
    header_value: HeaderValue,
    refresh_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

const TOKEN_RPC: &str = "OAuth2 token endpoint";

impl Authenticator {
    pub(crate) fn new(auth: FlyteAuth) -> Self {
        Authenticator {
            auth,
            token: Mutex::new(None),
        }
    }

    /// The header to send, or `None` when the deployment wants no credentials.
    pub(crate) async fn header(
        &self,
        transport: &Transport,
    ) -> Result<Option<(HeaderName, HeaderValue)>, FlyteError> {
        match &self.auth {
            FlyteAuth::None => Ok(None),
            FlyteAuth::Bearer(token) => Ok(Some((
                reqwest::header::AUTHORIZATION,
                bearer(token.expose_secret(), "static token")?,
            ))),
            FlyteAuth::ClientCredentials {
                client_id,
                client_secret,
            } => {
                let mut cached = self.token.lock().await;
                if let Some(t) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
                    return Ok(Some((t.header_name.clone(), t.header_value.clone())));
                }
                let fresh = fetch_token(transport, client_id, client_secret).await?;
                let header = (fresh.header_name.clone(), fresh.header_value.clone());
                *cached = Some(fresh);
                Ok(Some(header))
            }
        }
    }

    /// Forgets the cached token after the server refused it; returns whether a fresh one
    /// could differ (so the caller knows a retry is worth it).
    pub(crate) async fn invalidate(&self) -> bool {
        match self.auth {
            FlyteAuth::ClientCredentials { .. } => {
                *self.token.lock().await = None;
                true
            }
            _ => false,
        }
    }
}

fn bearer(token: &str, what: &str) -> Result<HeaderValue, FlyteError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        FlyteError::new(
            TOKEN_RPC,
            Code::Unauthenticated,
            format!("the {what} is not a valid header value"),
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Refresh ahead of expiry: at 90% of the lifetime, and never later than a minute before.
fn refresh_deadline(expires_in: Duration) -> Instant {
    let early = expires_in.mul_f64(0.9);
    let margin = expires_in.saturating_sub(Duration::from_secs(60));
    Instant::now() + early.min(margin.max(expires_in / 2))
}

async fn fetch_token(
    transport: &Transport,
    client_id: &str,
    client_secret: &SecretString,
) -> Result<CachedToken, FlyteError> {
    let metadata: GetOAuth2MetadataResponse =
        transport.post(GET_OAUTH2_METADATA, &Empty {}, None).await?;
    let client_config: GetPublicClientConfigResponse = transport
        .post(GET_PUBLIC_CLIENT_CONFIG, &Empty {}, None)
        .await?;
    if metadata.token_endpoint.is_empty() {
        return Err(FlyteError::new(
            GET_OAUTH2_METADATA.name(),
            Code::Unauthenticated,
            "the server announced no token endpoint",
        ));
    }
    let header_name = match client_config.authorization_metadata_key.as_str() {
        "" => reqwest::header::AUTHORIZATION,
        key => HeaderName::from_bytes(key.as_bytes()).map_err(|_| {
            FlyteError::new(
                GET_OAUTH2_METADATA.name(),
                Code::Unauthenticated,
                format!("the announced authorization header {key:?} is not a header name"),
            )
        })?,
    };
    let mut form = vec![("grant_type", "client_credentials".to_string())];
    if !client_config.scopes.is_empty() {
        form.push(("scope", client_config.scopes.join(" ")));
    }
    if !client_config.audience.is_empty() {
        form.push(("audience", client_config.audience.clone()));
    }
    let response = transport
        .http
        .post(&metadata.token_endpoint)
        .basic_auth(client_id, Some(client_secret.expose_secret()))
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&form)
        .send()
        .await
        .map_err(|e| FlyteError::from_transport(TOKEN_RPC, &e))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| FlyteError::from_transport(TOKEN_RPC, &e))?;
    if !status.is_success() {
        // OAuth2 error bodies name the problem (`invalid_client`), never the secret.
        let snippet: String = String::from_utf8_lossy(&body).chars().take(200).collect();
        let code = if status.is_server_error() {
            Code::Unavailable
        } else {
            Code::Unauthenticated
        };
        return Err(FlyteError::new(
            TOKEN_RPC,
            code,
            format!("token request refused with HTTP {status}: {snippet}"),
        ));
    }
    let token: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
        FlyteError::new(
            TOKEN_RPC,
            Code::Unauthenticated,
            format!("unreadable token response: {e}"),
        )
    })?;
    // Without an expiry we still refresh now and then rather than trust a token forever.
    let lifetime = Duration::from_secs(token.expires_in.unwrap_or(300));
    Ok(CachedToken {
        header_value: bearer(&token.access_token, "access token")?,
        header_name,
        refresh_at: refresh_deadline(lifetime),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn api_keys_decode_to_endpoint_client_and_org() {
        let key = ApiKey::parse(&encode("example.com:my-client:s3cret:my-org")).unwrap();
        assert_eq!(key.endpoint(), "https://example.com");
        assert_eq!(key.org(), Some("my-org"));
        let key = ApiKey::parse(&encode("example.com:my-client:s3cret:")).unwrap();
        assert_eq!(key.org(), None);
    }

    #[test]
    fn malformed_api_keys_are_refused() {
        assert_eq!(ApiKey::parse("%%%").unwrap_err(), ApiKeyError::NotBase64);
        for bad in [
            "example.com:id:secret",
            "dns:///example.com:id:secret:org",
            ":id:secret:org",
        ] {
            assert_eq!(
                ApiKey::parse(&encode(bad)).unwrap_err(),
                ApiKeyError::WrongShape,
                "{bad}"
            );
        }
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let key = ApiKey::parse(&encode("example.com:my-client:hunter2:org")).unwrap();
        assert!(!format!("{key:?}").contains("hunter2"));
        let auth = key.into_auth();
        assert!(!format!("{auth:?}").contains("hunter2"));
        let auth = FlyteAuth::Bearer(SecretString::from("tok-hunter2"));
        assert!(!format!("{auth:?}").contains("hunter2"));
    }

    #[test]
    fn tokens_are_refreshed_before_they_expire() {
        let now = Instant::now();
        let hour = refresh_deadline(Duration::from_secs(3600));
        assert!(hour <= now + Duration::from_secs(3540) + Duration::from_millis(50));
        assert!(hour >= now + Duration::from_secs(1800));
        let short = refresh_deadline(Duration::from_secs(10));
        assert!(short >= now + Duration::from_secs(5) && short < now + Duration::from_secs(10));
    }
}
