//! `/v1/tokens`: API tokens of users. Only a hash of each token is kept in
//! the control plane; the token itself is shown once, when created.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use coop_state::{Command, TokenRecord};
use coop_types::unix_now;

use crate::error::ApiError;
use crate::{AppState, token_hash};

/// How many hex characters of a token's hash name it in listings.
const TOKEN_ID_CHARS: usize = 16;
/// A token id given to `DELETE` must be at least this long to be unambiguous.
const MIN_TOKEN_ID_CHARS: usize = 8;

/// A token as listed: never the token itself.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// The first 16 hex characters of the token's hash.
    pub id: String,
    pub user: String,
    /// The peer whose API created it.
    pub created_by: String,
    /// Unix seconds.
    pub created_at: u64,
}

/// Body of `POST /v1/tokens`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// 1-64 characters of a-z 0-9 . _ -
    pub user: String,
}

/// A new token: the only time it is shown.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    pub token: String,
    pub id: String,
    pub user: String,
}

fn view(rec: &TokenRecord) -> TokenView {
    let hex = data_encoding::HEXLOWER.encode(&rec.hash);
    TokenView {
        id: hex[..TOKEN_ID_CHARS].to_string(),
        user: rec.user.clone(),
        created_by: rec.created_by.to_string(),
        created_at: rec.created_at,
    }
}

fn check_user(user: &str) -> Result<(), ApiError> {
    let ok = !user.is_empty()
        && user.len() <= 64
        && user
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "invalid user name `{user}`: use 1-64 characters of a-z, 0-9, `.`, `_` and `-`"
        )))
    }
}

/// List API tokens (without the secrets).
#[utoipa::path(
    get,
    path = "/v1/tokens",
    responses((status = 200, body = [TokenView])),
    security(("bearer" = []))
)]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<Vec<TokenView>>, ApiError> {
    let mut views: Vec<TokenView> = state.control.store().tokens()?.iter().map(view).collect();
    views.sort_by(|a, b| (a.user.as_str(), a.created_at).cmp(&(b.user.as_str(), b.created_at)));
    Ok(Json(views))
}

/// Create an API token for a user.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    request_body = TokenRequest,
    responses(
        (status = 200, body = TokenCreated),
        (status = 400, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    body: Result<Json<TokenRequest>, JsonRejection>,
) -> Result<Json<TokenCreated>, ApiError> {
    let Json(req) = body?;
    check_user(&req.user)?;
    let secret: [u8; 32] = rand::random();
    let token = data_encoding::HEXLOWER.encode(&secret);
    let record = TokenRecord {
        hash: token_hash(&token),
        user: req.user.clone(),
        created_by: state.key.id(),
        created_at: unix_now(),
    };
    let id = view(&record).id;
    state.control.write(Command::CreateToken(record)).await?;
    Ok(Json(TokenCreated {
        token,
        id,
        user: req.user,
    }))
}

/// Revoke an API token by its id (at least 8 hex characters of it).
#[utoipa::path(
    delete,
    path = "/v1/tokens/{id}",
    params(("id" = String, Path, description = "Token id from the listing, or a unique prefix of 8+ characters")),
    responses(
        (status = 200, body = TokenView),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "Prefix matches several tokens", body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    let prefix = id.to_ascii_lowercase();
    if prefix.len() < MIN_TOKEN_ID_CHARS {
        return Err(ApiError::BadRequest(format!(
            "give at least {MIN_TOKEN_ID_CHARS} characters of the token id"
        )));
    }
    let matches: Vec<TokenRecord> = state
        .control
        .store()
        .tokens()?
        .into_iter()
        .filter(|t| data_encoding::HEXLOWER.encode(&t.hash).starts_with(&prefix))
        .collect();
    let rec = match matches.as_slice() {
        [one] => one.clone(),
        [] => return Err(ApiError::NotFound(format!("no API token with id `{id}`"))),
        _ => {
            return Err(ApiError::Conflict(format!(
                "{} tokens have ids starting with `{id}`; give more characters",
                matches.len()
            )));
        }
    };
    state
        .control
        .write(Command::RevokeToken { hash: rec.hash })
        .await?;
    Ok(Json(view(&rec)))
}
