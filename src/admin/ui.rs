//! The dashboard: `GET /ui` serves one page whose script polls the admin
//! endpoints (`/status`, `/rollouts`, `/drains`) once a second and sends
//! commands to the same endpoints the CLI uses, with the admin token the
//! operator types (kept in the browser's session storage only).
//!
//! Every asset is embedded in the binary: the page works offline and
//! needs no build step. The Content-Security-Policy allows nothing but
//! these assets and requests to this listener, so a name or error
//! message shown on the page can never run as script (the script also
//! only ever sets text, never HTML).

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::AdminState;

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/style.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(super) fn router() -> Router<AdminState> {
    Router::new()
        .route("/ui", get(|| asset("text/html; charset=utf-8", INDEX)))
        .route(
            "/ui/app.js",
            get(|| asset("text/javascript; charset=utf-8", SCRIPT)),
        )
        .route(
            "/ui/style.css",
            get(|| asset("text/css; charset=utf-8", STYLE)),
        )
}

async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
