//! The web console: one self-contained page that asks for the API token
//! once, keeps it in the browser's session storage, and shows the peers.

use axum::response::Html;

pub(crate) async fn page() -> Html<&'static str> {
    Html(include_str!("console.html"))
}
