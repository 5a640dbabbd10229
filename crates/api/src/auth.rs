//! Bearer-token authentication for `/v1`.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;
use crate::{AppState, token_hash};

/// Lets a request through only with `Authorization: Bearer <token>` naming
/// a token the control plane knows.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "missing `Authorization: Bearer <token>` header; the admin token is in the data dir (api.token)".into(),
            )
        })?;
    let token = header
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into())
        })?;
    match state.control.store().token(&token_hash(token))? {
        Some(_) => Ok(next.run(request).await),
        None => Err(ApiError::Unauthorized("unknown API token".into())),
    }
}
