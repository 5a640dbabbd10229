//! `/v1/backups`: encrypted, incremental backups of buckets into restic
//! repositories on S3 targets.
//!
//! Long operations (run, restore, check) answer a stream of JSON lines: a
//! `{"progress": ...}` line every half second while they work, then one
//! `{"result": ...}` or `{"error": {"code", "message"}}` line. Errors
//! found before the work starts (an unknown backup, bad input) answer a
//! plain error status instead.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use coop_backup::{BackupError, BackupView, Backups, Keep, Meter, NewBackup, SnapshotView};

use crate::AppState;
use crate::error::ApiError;

/// The media type of progress streams.
pub const PROGRESS_STREAM: &str = "application/x-ndjson";
/// How often a stream reports progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Body of `POST /v1/backups`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// 1-63 characters of a-z, 0-9 and `-`, starting with a letter.
    pub name: String,
    /// What to back up: `bucket:NAME` or `path:PEER:/DIR` (a directory of
    /// a peer, named by name, id or id prefix).
    pub source: String,
    /// Where the repository goes: `friend:NAME` (a friend cloud linked with
    /// `coop friend add`), `s3://HOST[:PORT]/BUCKET[/PREFIX]` (plain HTTP)
    /// or `http(s)://HOST[:PORT]/BUCKET[/PREFIX]`.
    pub target: String,
    /// The target's S3 access key and secret (not for a friend).
    #[serde(default)]
    pub access_key: Option<String>,
    #[serde(default)]
    pub secret_key: Option<String>,
    /// Seconds between scheduled runs (at least 60); none: only when asked.
    #[serde(default)]
    pub every_secs: Option<u64>,
    /// Snapshots kept after each run; all zero (the default) keeps all.
    #[serde(default)]
    pub keep: Option<Keep>,
}

/// Body of `POST /v1/backups/{name}/restore`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// A snapshot id or its first digits; the latest when omitted.
    #[serde(default)]
    pub snapshot: Option<String>,
    /// Where to: `bucket:NAME` (created if missing; an existing bucket must
    /// be empty) or `path:PEER:/DIR` (created if missing).
    pub to: String,
}

/// Body of `POST /v1/backups/{name}/check`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// Also read and verify every pack (downloads the whole repository).
    #[serde(default)]
    pub read_data: bool,
}

/// What `check` found.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckView {
    /// No errors (warnings may remain).
    pub ok: bool,
    pub read_data: bool,
    /// Each problem, `Error: ...` or `Warn: ...`, in rustic's words.
    pub problems: Vec<String>,
}

/// The repository password of a backup.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    pub backup: String,
    /// Where the repository is, for `restic -r`.
    pub repository: String,
    pub password: String,
}

impl From<BackupError> for ApiError {
    fn from(err: BackupError) -> Self {
        let message = err.to_string();
        match err {
            BackupError::Invalid(_) => ApiError::BadRequest(message),
            BackupError::Unknown(_) | BackupError::NoBucket(_) | BackupError::NoFriend(_) => {
                ApiError::NotFound(message)
            }
            BackupError::Busy(_) | BackupError::Occupied(_) => ApiError::Conflict(message),
            BackupError::Target(_)
            | BackupError::NoRepository(_)
            | BackupError::Repository { .. }
            | BackupError::Unreadable { .. }
            | BackupError::Secrets(_)
            | BackupError::Remote(_)
            | BackupError::Store(_) => ApiError::Unavailable(message),
        }
    }
}

fn backups(state: &AppState) -> Result<Backups, ApiError> {
    state.backups.clone().ok_or_else(|| {
        ApiError::Unavailable("backups need storage, which is not enabled on this peer".into())
    })
}

/// List backups.
#[utoipa::path(
    get,
    path = "/v1/backups",
    tag = "backups",
    responses((status = 200, body = [BackupView])),
    security(("bearer" = []))
)]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<Vec<BackupView>>, ApiError> {
    Ok(Json(backups(&state)?.list().await?))
}

/// Create a backup: the repository is created at the target at once, with
/// a new password kept sealed in the control plane.
#[utoipa::path(
    post,
    path = "/v1/backups",
    tag = "backups",
    request_body = BackupRequest,
    responses((status = 200, body = BackupView)),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    body: Result<Json<BackupRequest>, JsonRejection>,
) -> Result<Json<BackupView>, ApiError> {
    let Json(req) = body?;
    let view = backups(&state)?
        .create(NewBackup {
            name: req.name,
            source: req.source,
            target: req.target,
            access_key: req.access_key,
            secret_key: req.secret_key,
            every_secs: req.every_secs,
            keep: req.keep.unwrap_or_default(),
        })
        .await?;
    Ok(Json(view))
}

/// Show a backup.
#[utoipa::path(
    get,
    path = "/v1/backups/{name}",
    tag = "backups",
    params(("name" = String, Path)),
    responses((status = 200, body = BackupView)),
    security(("bearer" = []))
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<BackupView>, ApiError> {
    Ok(Json(backups(&state)?.get(&name).await?))
}

/// Remove a backup. Its repository stays at the target.
#[utoipa::path(
    delete,
    path = "/v1/backups/{name}",
    tag = "backups",
    params(("name" = String, Path)),
    responses((status = 200), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    backups(&state)?.remove(&name).await?;
    Ok(Json(serde_json::json!({ "backup": name, "removed": true })))
}

/// The snapshots in a backup's repository, oldest first.
#[utoipa::path(
    get,
    path = "/v1/backups/{name}/snapshots",
    tag = "backups",
    params(("name" = String, Path)),
    responses((status = 200, body = [SnapshotView])),
    security(("bearer" = []))
)]
pub(crate) async fn snapshots(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<SnapshotView>>, ApiError> {
    Ok(Json(backups(&state)?.snapshots(&name).await?))
}

/// The repository password: with it, `restic` reads the repository.
#[utoipa::path(
    get,
    path = "/v1/backups/{name}/key",
    tag = "backups",
    params(("name" = String, Path)),
    responses((status = 200, body = KeyView)),
    security(("bearer" = []))
)]
pub(crate) async fn key(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    let backups = backups(&state)?;
    let view = backups.get(&name).await?;
    let password = backups.export_key(&name).await?;
    Ok(Json(KeyView {
        backup: name,
        repository: view.target,
        password,
    }))
}

/// Run a backup now on this peer: a stream of progress lines, then the
/// run's summary (a `RunSummary`).
#[utoipa::path(
    post,
    path = "/v1/backups/{name}/run",
    tag = "backups",
    params(("name" = String, Path)),
    responses((status = 200, content_type = "application/x-ndjson", body = String)),
    security(("bearer" = []))
)]
pub(crate) async fn run(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let backups = backups(&state)?;
    backups.get(&name).await?;
    if backups.progress(&name).is_some() {
        return Err(BackupError::Busy(name).into());
    }
    let meter = Arc::new(Meter::default());
    let work = {
        let meter = meter.clone();
        Box::pin(async move { backups.run(&name, meter).await.map(to_json) })
    };
    Ok(progress_stream(meter, work))
}

/// Restore a snapshot into a bucket: a stream of progress lines, then a
/// `RestoreSummary`.
#[utoipa::path(
    post,
    path = "/v1/backups/{name}/restore",
    tag = "backups",
    params(("name" = String, Path)),
    request_body = RestoreRequest,
    responses((status = 200, content_type = "application/x-ndjson", body = String)),
    security(("bearer" = []))
)]
pub(crate) async fn restore(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<RestoreRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body?;
    let to = req.to;
    let backups = backups(&state)?;
    backups.get(&name).await?;
    let meter = Arc::new(Meter::default());
    let work = {
        let meter = meter.clone();
        Box::pin(async move {
            backups
                .restore(&name, req.snapshot, &to, meter)
                .await
                .map(to_json)
        })
    };
    Ok(progress_stream(meter, work))
}

/// Check a backup's repository: a stream of progress lines, then a
/// `CheckView`.
#[utoipa::path(
    post,
    path = "/v1/backups/{name}/check",
    tag = "backups",
    params(("name" = String, Path)),
    request_body = CheckRequest,
    responses((status = 200, content_type = "application/x-ndjson", body = String)),
    security(("bearer" = []))
)]
pub(crate) async fn check(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<CheckRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body?;
    let backups = backups(&state)?;
    backups.get(&name).await?;
    let meter = Arc::new(Meter::default());
    let work = {
        let meter = meter.clone();
        Box::pin(async move {
            let problems = backups.check(&name, req.read_data, meter).await?;
            Ok(to_json(CheckView {
                // Warnings (packs no index names, left by a run cut off
                // half-way) do not make a repository unhealthy.
                ok: !problems.iter().any(|p| p.starts_with("Error")),
                read_data: req.read_data,
                problems,
            }))
        })
    };
    Ok(progress_stream(meter, work))
}

fn to_json(value: impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// One line of a progress stream.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressLine {
    Progress(coop_backup::MeterReading),
    Result(serde_json::Value),
    Error { code: String, message: String },
}

/// Runs `work` in its own task (it goes on if the client leaves) and
/// streams its progress, then its outcome, as JSON lines.
fn progress_stream(
    meter: Arc<Meter>,
    work: BoxFuture<'static, Result<serde_json::Value, BackupError>>,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(4);
    let mut task = tokio::spawn(work);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        let outcome = loop {
            tokio::select! {
                done = &mut task => break done,
                _ = tick.tick() => {
                    let line = ProgressLine::Progress(meter.reading());
                    // A client that left does not stop the work.
                    let _ = tx.send(line_of(&line)).await;
                }
            }
        };
        let last = match outcome {
            Ok(Ok(value)) => ProgressLine::Result(value),
            Ok(Err(err)) => ProgressLine::Error {
                code: err.code().to_owned(),
                message: err.to_string(),
            },
            Err(err) => ProgressLine::Error {
                code: "internal".into(),
                message: format!("the task failed: {err}"),
            },
        };
        let _ = tx.send(line_of(&last)).await;
    });
    let lines = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, std::convert::Infallible>(line), rx))
    });
    ([(CONTENT_TYPE, PROGRESS_STREAM)], Body::from_stream(lines)).into_response()
}

fn line_of(line: &ProgressLine) -> String {
    let mut text = serde_json::to_string(line).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    text
}

/// Body of `POST /v1/friends/invites`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FriendInviteRequest {
    /// This cloud's name for the friend: 1-63 characters of a-z, 0-9 and
    /// `-`, starting with a letter. Its bucket is `friend-NAME`.
    pub name: String,
    /// The most the friend may store here, in bytes; none: no limit.
    #[serde(default)]
    pub quota: Option<u64>,
    /// Seconds the invite stays valid (default a day).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// Body of `POST /v1/friends`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FriendAddRequest {
    /// This cloud's name for the friend.
    pub name: String,
    /// The token the friend's `coop friend invite` printed.
    pub token: String,
}

/// A friend invite lasts a day unless told otherwise.
const FRIEND_INVITE_TTL: u64 = 24 * 3600;

/// Invite another cloud to keep its backups here: a bucket of its own with
/// a quota, and a single-use token shown once.
#[utoipa::path(
    post,
    path = "/v1/friends/invites",
    tag = "friends",
    request_body = FriendInviteRequest,
    responses((status = 200, body = coop_backup::FriendInvite)),
    security(("bearer" = []))
)]
pub(crate) async fn invite_friend(
    State(state): State<AppState>,
    body: Result<Json<FriendInviteRequest>, JsonRejection>,
) -> Result<Json<coop_backup::FriendInvite>, ApiError> {
    let Json(req) = body?;
    let ttl = req.ttl_secs.unwrap_or(FRIEND_INVITE_TTL);
    Ok(Json(
        backups(&state)?
            .invite_friend(&req.name, req.quota, ttl)
            .await?,
    ))
}

/// Link a friend that keeps this cloud's backups, from its invite token.
#[utoipa::path(
    post,
    path = "/v1/friends",
    tag = "friends",
    request_body = FriendAddRequest,
    responses((status = 200, body = coop_backup::FriendView)),
    security(("bearer" = []))
)]
pub(crate) async fn add_friend(
    State(state): State<AppState>,
    body: Result<Json<FriendAddRequest>, JsonRejection>,
) -> Result<Json<coop_backup::FriendView>, ApiError> {
    let Json(req) = body?;
    Ok(Json(
        backups(&state)?.add_friend(&req.name, &req.token).await?,
    ))
}

/// Friend links both ways, with state and use.
#[utoipa::path(
    get,
    path = "/v1/friends",
    tag = "friends",
    responses((status = 200, body = [coop_backup::FriendView])),
    security(("bearer" = []))
)]
pub(crate) async fn friends(
    State(state): State<AppState>,
) -> Result<Json<Vec<coop_backup::FriendView>>, ApiError> {
    Ok(Json(backups(&state)?.friends().await?))
}

/// Cut a friend off (either way); buckets and repositories stay.
#[utoipa::path(
    delete,
    path = "/v1/friends/{name}",
    tag = "friends",
    params(("name" = String, Path)),
    responses((status = 200), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn remove_friend(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    backups(&state)?.remove_friend(&name).await?;
    Ok(Json(serde_json::json!({ "friend": name, "removed": true })))
}
