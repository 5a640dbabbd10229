//! The web console: a page, a script and a style sheet (and the vendored
//! terminal, xterm.js), embedded in the binary and served on the API port. The script is a client of the public
//! `/v1` API like the CLI (see `console/app.js`); the server only hands out
//! the files, with headers that keep the page to its own code: a
//! Content-Security-Policy allowing scripts, styles and connections from
//! this origin only (no inline scripts, no frames), no sniffing of types,
//! and no referrer.

use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The policy of every console response.
/// Styles may be inline: the terminal (xterm.js) writes its own `<style>`
/// elements. Scripts may not.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The console's files: name, content type, bytes.
const FILES: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../console/style.css"),
    ),
    // Vendored, pinned: see console/vendor/README.md.
    (
        "vendor/xterm.mjs",
        "text/javascript; charset=utf-8",
        include_str!("../console/vendor/xterm.mjs"),
    ),
    (
        "vendor/xterm.css",
        "text/css; charset=utf-8",
        include_str!("../console/vendor/xterm.css"),
    ),
    (
        "vendor/uplot.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/vendor/uplot.min.js"),
    ),
    (
        "vendor/uplot.min.css",
        "text/css; charset=utf-8",
        include_str!("../console/vendor/uplot.min.css"),
    ),
];

const INDEX: &str = include_str!("../console/index.html");

fn headers(content_type: &'static str) -> [(HeaderName, HeaderValue); 6] {
    [
        (CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        // Small files from the binary: always asked again, so a new
        // binary's console is never mixed with an old one's.
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ]
}

/// `/`: the console's page.
pub(crate) async fn page() -> Response {
    (headers("text/html; charset=utf-8"), INDEX).into_response()
}

/// `/console/{*file}`: its scripts and style sheets.
pub(crate) async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (headers(content_type), *body).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            headers("text/plain; charset=utf-8"),
            "no such console file",
        )
            .into_response(),
    }
}
