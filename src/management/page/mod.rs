//! The web page at `/`: an overview with a message-rate chart and lists of queues,
//! exchanges, connections and federation links, drawn in the browser from the API's
//! own JSON.
//!
//! Plain HTML, one hand-written script and one style sheet, built into the binary with
//! `include_str!`, so there is no JavaScript build step and nothing to install beside
//! the broker. The files are served without authentication (they hold no data); the
//! script asks for a user and password and sends them as HTTP basic auth on each API
//! call, so the page sees exactly what that user may see.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::Api;

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("page.js");
const STYLE: &str = include_str!("page.css");

pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/page.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/page.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}

/// A static file; `no-cache` so a browser picks up a new broker's page at once.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
