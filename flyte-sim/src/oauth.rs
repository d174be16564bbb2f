//! Credentials: the OAuth2 token endpoint that API keys are exchanged at, the
//! AuthMetadataService answers that lead clients to it, and the check every other RPC's
//! credentials go through.

use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use flyte_client::messages::{GetOAuth2MetadataResponse, GetPublicClientConfigResponse};
use serde::Deserialize;

use crate::config::SimAuth;
use crate::state::{Sim, lock};

/// The credentials in the `authorization` header, if they use `scheme` (`"Bearer "`).
fn presented<'a>(req: &'a HttpRequest, scheme: &str) -> Option<&'a str> {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix(scheme))
}

/// Whether the call carries the credentials the stand-in was configured to demand.
pub(crate) fn authorized(sim: &Sim, req: &HttpRequest) -> bool {
    match (&sim.config.auth, presented(req, "Bearer ")) {
        (SimAuth::None, _) => true,
        (_, None) => false,
        (SimAuth::Bearer(expected), Some(token)) => token == expected,
        (SimAuth::ClientCredentials { .. }, Some(token)) => lock(&sim.tokens)
            .get(token)
            .is_some_and(|expires| Instant::now() < *expires),
    }
}

#[derive(Deserialize)]
pub(crate) struct TokenForm {
    grant_type: String,
}

/// `POST /oauth2/token`: the client-credentials grant, with the client in HTTP Basic auth.
pub(crate) async fn issue_token(
    req: HttpRequest,
    form: web::Form<TokenForm>,
    sim: web::Data<Sim>,
) -> HttpResponse {
    let SimAuth::ClientCredentials {
        client_id,
        client_secret,
        token_ttl,
    } = &sim.config.auth
    else {
        return HttpResponse::NotFound().finish();
    };
    if form.grant_type != "client_credentials" {
        return HttpResponse::BadRequest()
            .json(serde_json::json!({"error": "unsupported_grant_type"}));
    }
    let client = presented(&req, "Basic ")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    if client.as_deref() != Some(&format!("{client_id}:{client_secret}")) {
        return HttpResponse::Unauthorized().json(serde_json::json!({"error": "invalid_client"}));
    }
    let token = format!("sim-{}", uuid::Uuid::new_v4().simple());
    lock(&sim.tokens).insert(token.clone(), Instant::now() + *token_ttl);
    lock(&sim.stats).tokens_issued += 1;
    HttpResponse::Ok().json(serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": token_ttl.as_secs(),
    }))
}

/// AuthMetadataService/GetOAuth2Metadata: the token endpoint, at whatever address the client
/// reached the stand-in by.
pub(crate) fn oauth2_metadata(req: &HttpRequest) -> HttpResponse {
    let info = req.connection_info();
    let base = format!("{}://{}", info.scheme(), info.host());
    HttpResponse::Ok().json(GetOAuth2MetadataResponse {
        token_endpoint: format!("{base}/oauth2/token"),
        issuer: base,
    })
}

/// AuthMetadataService/GetPublicClientConfig: where clients put the token, as Flyte says.
pub(crate) fn public_client_config() -> HttpResponse {
    HttpResponse::Ok().json(GetPublicClientConfigResponse {
        scopes: vec!["all".into()],
        authorization_metadata_key: "authorization".into(),
        audience: String::new(),
    })
}
