//! `/ui/`: the operator console's page, script and styles, compiled into the binary (no
//! build step, no CDN, nothing fetched at run time). The page is a client of the JSON API
//! (signed in through `/ui/session`), so it can do exactly what its key can.
//!
//! Every answer carries a strict Content-Security-Policy: scripts and styles only from these
//! files, requests only to this origin, no framing. Data the page shows (task inputs, errors,
//! key names) can never run as code even if a rendering mistake let markup through.

use actix_web::HttpResponse;
use actix_web::http::header;

const PAGE: &str = include_str!("../../ui/index.html");
const SCRIPT: &str = include_str!("../../ui/app.js");
const STYLES: &str = include_str!("../../ui/app.css");

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        // Assets change with the binary: always revalidate, never serve a stale script.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

pub async fn page() -> HttpResponse {
    asset("text/html; charset=utf-8", PAGE)
}

pub async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn styles() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLES)
}

/// `/ui` without its slash: the page lives at `/ui/`, where its hash routes begin.
pub async fn to_page() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/ui/"))
        .finish()
}
