//! `/v1/status`, `/v1/invites` and `/v1/config`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use coop_identity::{BootstrapPeer, InviteToken};
use coop_state::{Command, InviteRecord};
use coop_types::{PeerState, PeerView, unix_now};

use crate::AppState;
use crate::error::ApiError;
use crate::peers::peer_views;

/// Longest invite lifetime: a week. Invites are bearer secrets; one that
/// lives longer is better replaced by a fresh one.
const MAX_INVITE_TTL_SECS: u64 = 7 * 24 * 3600;
/// Default invite lifetime when none is given.
const DEFAULT_INVITE_TTL_SECS: u64 = 3600;

/// This peer, the cloud, its stewards and leader, and health.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusView {
    /// This peer as `coop peers` shows it.
    pub peer: PeerView,
    pub cloud: CloudView,
    /// `ok`, or `degraded` with reasons in `problems`.
    pub health: String,
    pub problems: Vec<String>,
    pub uptime_secs: u64,
    pub version: String,
}

/// The cloud as this peer's replica knows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CloudView {
    pub id: String,
    pub name: String,
    pub created_at: u64,
    pub peers: usize,
    pub peers_up: usize,
    pub stewards: Vec<String>,
    pub leader: Option<String>,
    pub term: u64,
    pub applied_index: Option<u64>,
}

/// Show this peer and the cloud.
#[utoipa::path(
    get,
    path = "/v1/status",
    responses((status = 200, body = StatusView), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn status(State(state): State<AppState>) -> Result<Json<StatusView>, ApiError> {
    let views = peer_views(&state)?;
    let own = state.key.id();
    let peer =
        views.iter().find(|v| v.id == own).cloned().ok_or_else(|| {
            ApiError::Unavailable("this peer is not in its own replica yet".into())
        })?;
    let info = state.control.store().cloud()?;
    let voters = state.control.voters();
    let leader = state.control.leader();
    let (term, applied_index) = state.control.term_and_applied();
    let mut problems = Vec::new();
    if leader.is_none() {
        problems.push(
            "no control-plane leader: writes are blocked until stewards reach a quorum".to_string(),
        );
    }
    let stewards_up = views
        .iter()
        .filter(|v| v.steward && v.state == PeerState::Up)
        .count();
    if stewards_up * 2 <= voters.len() {
        problems.push(format!(
            "only {stewards_up} of {} stewards are up",
            voters.len()
        ));
    }
    for v in views
        .iter()
        .filter(|v| matches!(v.state, PeerState::Unreachable | PeerState::Down))
    {
        problems.push(format!("peer {} ({}) is {}", v.name, v.id.short(), v.state));
    }
    let cloud = CloudView {
        id: state.cloud.to_string(),
        name: info.as_ref().map(|c| c.name.clone()).unwrap_or_default(),
        created_at: info.as_ref().map(|c| c.created_at).unwrap_or(0),
        peers: views
            .iter()
            .filter(|v| v.state != PeerState::Revoked)
            .count(),
        peers_up: views.iter().filter(|v| v.state == PeerState::Up).count(),
        stewards: voters.iter().map(|v| v.to_string()).collect(),
        leader: leader.map(|l| l.to_string()),
        term,
        applied_index,
    };
    Ok(Json(StatusView {
        peer,
        cloud,
        health: if problems.is_empty() {
            "ok"
        } else {
            "degraded"
        }
        .into(),
        problems,
        uptime_secs: state.started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION").into(),
    }))
}

/// Body of `POST /v1/invites`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    /// Lifetime in seconds (default 3600, at most 604800).
    pub ttl_secs: Option<u64>,
}

/// A fresh invite.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InviteCreated {
    /// The one line to give to `coop up --join`.
    pub token: String,
    /// Unix seconds.
    pub expires_at: u64,
}

/// Create a single-use invite for a new peer.
#[utoipa::path(
    post,
    path = "/v1/invites",
    request_body = InviteRequest,
    responses(
        (status = 200, body = InviteCreated),
        (status = 400, description = "Bad body or TTL", body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create_invite(
    State(state): State<AppState>,
    body: Result<Json<InviteRequest>, JsonRejection>,
) -> Result<Json<InviteCreated>, ApiError> {
    let Json(req) = body?;
    let ttl = req.ttl_secs.unwrap_or(DEFAULT_INVITE_TTL_SECS);
    if ttl == 0 || ttl > MAX_INVITE_TTL_SECS {
        return Err(ApiError::BadRequest(format!(
            "ttl_secs must be between 1 and {MAX_INVITE_TTL_SECS} (a week), got {ttl}"
        )));
    }
    let now = unix_now();
    let own = state.key.id();
    // This peer first, then the stewards: whoever is up when the new
    // machine starts can take the join.
    let mut bootstrap = vec![BootstrapPeer {
        id: own,
        addrs: state.mesh.local_addrs(),
    }];
    for rec in state.control.store().peers()? {
        let id = rec.id();
        if id != own && rec.revoked_at.is_none() && state.control.voters().contains(&id) {
            let addrs = state
                .mesh
                .liveness()
                .status(&id)
                .map(|(s, _)| s.addrs)
                .unwrap_or(rec.addrs);
            bootstrap.push(BootstrapPeer { id, addrs });
        }
    }
    let token = InviteToken::new(state.cloud, own, now + ttl, bootstrap);
    // Encoded before it is recorded: an invite nobody can be given must
    // not exist.
    let text = token
        .encode(&state.key)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    state
        .control
        .write(Command::CreateInvite(InviteRecord {
            id: token.invite_id,
            secret_hash: InviteToken::secret_hash(&token.secret),
            expires_at: token.expires_at,
            created_by: own,
            created_at: now,
            used_by: None,
        }))
        .await?;
    Ok(Json(InviteCreated {
        token: text,
        expires_at: token.expires_at,
    }))
}

/// A setting's value, as `PUT /v1/config/{key}` takes it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigValue {
    pub value: String,
}

/// Result of a revocation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevokeResult {
    pub id: String,
    pub name: String,
}

/// Read every cloud setting.
#[utoipa::path(
    get,
    path = "/v1/config",
    responses((status = 200, body = BTreeMap<String, String>)),
    security(("bearer" = []))
)]
pub(crate) async fn get_config(
    State(state): State<AppState>,
) -> Result<Json<BTreeMap<String, String>>, ApiError> {
    Ok(Json(state.control.store().config()?))
}

/// Set one cloud setting (replicated through the control plane).
#[utoipa::path(
    put,
    path = "/v1/config/{key}",
    params(("key" = String, Path, description = "1-128 characters of a-z 0-9 . _ -")),
    request_body = ConfigValue,
    responses(
        (status = 200, body = BTreeMap<String, String>),
        (status = 400, body = crate::error::ErrorBody),
        (status = 503, description = "No leader reachable", body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub(crate) async fn set_config(
    State(state): State<AppState>,
    Path(key): Path<String>,
    body: Result<Json<ConfigValue>, JsonRejection>,
) -> Result<Json<BTreeMap<String, String>>, ApiError> {
    let Json(value) = body?;
    check_brand(&key, &value.value)?;
    if key == "brand.logo" {
        logo_object(&state, &value.value)?;
    }
    state
        .control
        .write(Command::SetConfig {
            key: key.clone(),
            value: Some(value.value.clone()),
        })
        .await?;
    Ok(Json(BTreeMap::from([(key, value.value)])))
}

/// How the cloud presents itself: `brand.*` settings, open to anyone who
/// reaches the API (the console shows them before a login).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BrandView {
    /// `brand.name`, or `coop`.
    pub name: String,
    /// `brand.color` (`#rgb` or `#rrggbb`), if set.
    pub color: Option<String>,
    /// `brand.url` (where the console's name links), if set.
    pub url: Option<String>,
    /// Whether `brand.logo` names an image, served at `/v1/brand/logo`.
    pub logo: bool,
}

/// The cloud's brand, without a token.
#[utoipa::path(get, path = "/v1/brand", responses((status = 200, body = BrandView)))]
pub(crate) async fn brand(State(state): State<AppState>) -> Result<Json<BrandView>, ApiError> {
    let config = state.control.store().config()?;
    Ok(Json(BrandView {
        name: config
            .get("brand.name")
            .cloned()
            .unwrap_or_else(|| "coop".into()),
        color: config.get("brand.color").cloned(),
        url: config.get("brand.url").cloned(),
        logo: config.contains_key("brand.logo"),
    }))
}

/// The image types a logo may have. SVG is left out: opened on its own,
/// it could run script in the console's origin.
const LOGO_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];
/// The largest logo served.
const LOGO_MAX: u64 = 1 << 20;

/// `brand.logo`'s object: `BUCKET/KEY` of a PNG, JPEG, GIF or WebP image
/// of at most 1 MiB stored in the cloud.
fn logo_object(state: &AppState, value: &str) -> Result<(String, String), ApiError> {
    let bad = |why: String| ApiError::BadRequest(format!("brand.logo: {why}"));
    let (bucket, key) = value
        .split_once('/')
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
        .ok_or_else(|| bad("give BUCKET/KEY of an image stored in the cloud".into()))?;
    let object = state
        .control
        .store()
        .object(bucket, key)?
        .ok_or_else(|| bad(format!("no object `{key}` in bucket `{bucket}`")))?;
    let kind = object.content_type.as_deref().unwrap_or("");
    if !LOGO_TYPES.contains(&kind) {
        return Err(bad(format!(
            "the object is `{}`; a logo is one of {}",
            if kind.is_empty() { "of no type" } else { kind },
            LOGO_TYPES.join(", ")
        )));
    }
    if object.size > LOGO_MAX {
        return Err(bad(format!(
            "the image has {} bytes; a logo has at most {LOGO_MAX}",
            object.size
        )));
    }
    Ok((bucket.to_string(), key.to_string()))
}

/// The cloud's logo (`brand.logo`), without a token.
#[utoipa::path(get, path = "/v1/brand/logo",
    responses((status = 200, content_type = "image/png", body = Vec<u8>), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn brand_logo(
    State(state): State<AppState>,
) -> Result<axum::response::Response, ApiError> {
    let config = state.control.store().config()?;
    let value = config
        .get("brand.logo")
        .ok_or_else(|| ApiError::NotFound("this cloud has no logo (brand.logo)".into()))?;
    let (bucket, key) = logo_object(&state, value)
        .map_err(|e| ApiError::NotFound(format!("the logo is gone: {e}")))?;
    let (object, body) = crate::objects::read(&state, &bucket, &key)?;
    let kind = object.content_type.unwrap_or_default();
    Ok(axum::response::IntoResponse::into_response((
        [
            (axum::http::header::CONTENT_TYPE, kind),
            (axum::http::header::CONTENT_LENGTH, object.size.to_string()),
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'none'".to_string(),
            ),
            (
                axum::http::header::X_CONTENT_TYPE_OPTIONS,
                "nosniff".to_string(),
            ),
            (axum::http::header::CACHE_CONTROL, "no-cache".to_string()),
        ],
        body,
    )))
}

/// The settings that brand the console and the CLI for the whole cloud.
pub const BRAND_KEYS: [&str; 4] = ["brand.name", "brand.color", "brand.url", "brand.logo"];

/// Refuses a `brand.*` setting the console could not show as meant: an
/// unknown key, a name that is empty, long or has control characters, a
/// colour that is not `#rgb` or `#rrggbb`, a link that is not http(s).
fn check_brand(key: &str, value: &str) -> Result<(), ApiError> {
    if !key.starts_with("brand.") {
        return Ok(());
    }
    let bad = |why: &str| Err(ApiError::BadRequest(format!("{key}: {why}")));
    match key {
        "brand.name" => {
            let chars = value.chars().count();
            if chars == 0 || chars > 64 || value.chars().any(char::is_control) {
                return bad("a name of 1-64 characters, without control characters");
            }
        }
        "brand.color" => {
            let hex = value.strip_prefix('#').unwrap_or("");
            if !matches!(hex.len(), 3 | 6) || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return bad("a colour as #rgb or #rrggbb, e.g. #0a6e3c");
            }
        }
        // Checked against the store by `set_config`.
        "brand.logo" => {}
        "brand.url" => {
            let web = value.starts_with("https://") || value.starts_with("http://");
            if !web || value.len() > 300 || value.chars().any(|c| c.is_control() || c == ' ') {
                return bad("an http:// or https:// address of at most 300 characters");
            }
        }
        _ => {
            return bad(&format!(
                "not a brand setting; the brand settings are {}",
                BRAND_KEYS.join(", ")
            ));
        }
    }
    Ok(())
}

/// Remove one cloud setting.
#[utoipa::path(
    delete,
    path = "/v1/config/{key}",
    params(("key" = String, Path)),
    responses((status = 200, body = BTreeMap<String, String>)),
    security(("bearer" = []))
)]
pub(crate) async fn delete_config(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<BTreeMap<String, String>>, ApiError> {
    state
        .control
        .write(Command::SetConfig { key, value: None })
        .await?;
    Ok(Json(state.control.store().config()?))
}
