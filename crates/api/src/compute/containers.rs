//! `/v1/containers`: run, list, show, start, stop, restart, remove, logs,
//! stats and exec of containers on this peer.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use utoipa::IntoParams;

use coop_orchestra::{Action, ExecCall, LogStart, RunSpec};

use super::views::{ComputeView, ContainerView, ExecQuery, RunRequest, StatsView};
use crate::AppState;
use crate::error::ApiError;

/// Query of `GET /v1/containers`.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct ListQuery {
    /// Include containers that are not running.
    #[serde(default)]
    all: bool,
}

/// Query of `DELETE /v1/containers/{name}`.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct RemoveQuery {
    /// Kill a running container first.
    #[serde(default)]
    force: bool,
}

/// Query of `GET /v1/containers/{name}/logs`.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct LogsQuery {
    /// Keep streaming until the container exits.
    #[serde(default)]
    follow: bool,
    /// Only output written at or after this time (unix seconds), in whole
    /// runs: the log has no times on its lines, so the run that was going
    /// then is sent from its start, and earlier runs are skipped.
    #[serde(default)]
    since: Option<u64>,
    /// Start at this byte of the log (from the `coop-log-offset` header of
    /// an earlier answer plus the bytes read since), to resume a stream.
    #[serde(default)]
    offset: Option<u64>,
}

/// The header of a log answer that says at which byte of the log its
/// body starts.
pub const LOG_OFFSET_HEADER: &str = "coop-log-offset";

/// Whether containers run on this peer, what it lends them and what they hold.
#[utoipa::path(get, path = "/v1/compute", tag = "compute",
    responses((status = 200, body = ComputeView)), security(("bearer" = [])))]
pub(crate) async fn status(State(state): State<AppState>) -> Result<Json<ComputeView>, ApiError> {
    let report = state.compute()?.capacity_report().await?;
    Ok(Json(ComputeView::of(&report)))
}

/// Run a container from a template, on this peer or (with `peer`) on
/// another one that accepts the lease.
#[utoipa::path(post, path = "/v1/containers", tag = "compute", request_body = RunRequest,
    responses((status = 200, body = ContainerView), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn run(
    State(state): State<AppState>,
    body: Result<Json<RunRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ContainerView>, ApiError> {
    let Json(request) = body?;
    let orchestra = state.compute()?;
    let target = match &request.peer {
        Some(needle) => crate::peers::resolve_peer(&state, needle)?,
        None => state
            .control
            .store()
            .peers()?
            .into_iter()
            .find(|r| r.id() == orchestra.peer())
            .ok_or_else(|| ApiError::Unavailable("this peer is not a member yet".into()))?,
    };
    if target.revoked_at.is_some() {
        return Err(ApiError::BadRequest(format!(
            "peer {} was removed from the cloud",
            target.cert.body.name
        )));
    }
    let spec = RunSpec {
        template: request.template,
        name: request.name,
        size: request.size,
        cpus: request.cpus,
        memory: request.memory,
        disk: request.disk,
        pids: request.pids,
        ports: request.ports,
        env: request.env,
        restart: request.restart,
        argv: request.argv,
        networks: request.networks,
    };
    let entry = orchestra.entry_for(target.id(), spec)?;
    if state.control.store().container(&entry.name)?.is_some() {
        return Err(ApiError::Conflict(format!(
            "a container named `{}` already exists; pick another --name or remove it",
            entry.name
        )));
    }
    let status = orchestra.run(entry).await?;
    Ok(Json(ContainerView::of(&status)))
}

/// List containers (running ones, or all) of every peer.
#[utoipa::path(get, path = "/v1/containers", tag = "compute", params(ListQuery),
    responses((status = 200, body = Vec<ContainerView>)), security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<ContainerView>>, ApiError> {
    let entries = state.control.store().containers()?;
    let statuses = state.compute()?.statuses(entries).await?;
    Ok(Json(
        statuses
            .iter()
            .map(ContainerView::of)
            .filter(|v| query.all || v.state == "running" || v.state == "unknown")
            .collect(),
    ))
}

/// Show one container.
#[utoipa::path(get, path = "/v1/containers/{name}", tag = "compute",
    responses((status = 200, body = ContainerView), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ContainerView>, ApiError> {
    let orchestra = state.compute()?;
    let entry = orchestra.entry(&name)?;
    let statuses = orchestra.statuses(vec![entry]).await?;
    statuses
        .first()
        .map(|s| Json(ContainerView::of(s)))
        .ok_or_else(|| ApiError::Internal(format!("no view of container `{name}`")))
}

async fn act(
    state: &AppState,
    name: &str,
    action: Action,
) -> Result<Json<ContainerView>, ApiError> {
    let status = state.compute()?.act(name, action).await?;
    Ok(Json(ContainerView::of(&status)))
}

/// Start a stopped or exited container.
#[utoipa::path(post, path = "/v1/containers/{name}/start", tag = "compute",
    responses((status = 200, body = ContainerView), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ContainerView>, ApiError> {
    act(&state, &name, Action::Start).await
}

/// Query of `POST /v1/containers/{name}/stop` and `DELETE /v1/environments/{name}`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct StopQuery {
    /// Seconds between SIGTERM and SIGKILL (default 10).
    pub timeout: Option<u32>,
}

/// Stop a container (SIGTERM, SIGKILL after `timeout` s, 10 by default);
/// it stays stopped.
#[utoipa::path(post, path = "/v1/containers/{name}/stop", tag = "compute", params(StopQuery),
    responses((status = 200, body = ContainerView), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn stop(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<StopQuery>,
) -> Result<Json<ContainerView>, ApiError> {
    let action = Action::Stop {
        grace_secs: query.timeout,
    };
    act(&state, &name, action).await
}

/// Stop a container and start it again.
#[utoipa::path(post, path = "/v1/containers/{name}/restart", tag = "compute",
    responses((status = 200, body = ContainerView), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn restart(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ContainerView>, ApiError> {
    act(&state, &name, Action::Restart).await
}

/// Remove a container (with `force`, a running one too).
#[utoipa::path(delete, path = "/v1/containers/{name}", tag = "compute", params(RemoveQuery),
    responses((status = 200, body = ContainerView), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<RemoveQuery>,
) -> Result<Json<ContainerView>, ApiError> {
    act(&state, &name, Action::Remove { force: query.force }).await
}

/// The container's output (stdout and stderr), streamed; with `follow`,
/// until it exits. A container on another peer is read from there. The
/// `coop-log-offset` header says at which byte of the log the body starts.
#[utoipa::path(get, path = "/v1/containers/{name}/logs", tag = "compute", params(LogsQuery),
    responses((status = 200, body = Vec<u8>, content_type = "application/octet-stream",
            headers(("coop-log-offset" = u64, description = "the byte of the log the body starts at"))),
        (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn logs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let start = match (query.since, query.offset) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give `since` or `offset`, not both".into(),
            ));
        }
        (Some(since), None) => LogStart::Since(since),
        (None, offset) => LogStart::Offset(offset.unwrap_or(0)),
    };
    let (first, chunks) = state.compute()?.logs(&name, query.follow, start).await?;
    let chunks = chunks.map(|chunk| chunk.map_err(std::io::Error::other));
    let headers = [
        (
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/octet-stream"),
        ),
        (
            header::HeaderName::from_static(LOG_OFFSET_HEADER),
            header::HeaderValue::from(first),
        ),
    ];
    Ok((headers, Body::from_stream(chunks)).into_response())
}

/// CPU, memory, processes, network and disk use now.
#[utoipa::path(get, path = "/v1/containers/{name}/stats", tag = "compute",
    responses((status = 200, body = StatsView), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn stats(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<StatsView>, ApiError> {
    let stats = state.compute()?.stats(&name).await?;
    Ok(Json(StatsView::of(&name, &stats)))
}

/// Run a command in a running container over an HTTP upgrade to
/// `coop-exec` (frames: see `coop_orchestra::frames`). A container on
/// another peer is reached over `coop/exec/1`, which carries the same frames.
#[utoipa::path(post, path = "/v1/containers/{name}/exec", tag = "compute", params(ExecQuery),
    responses((status = 101, description = "switched to the coop-exec frame stream"),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn exec(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<ExecQuery>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let orchestra = state.compute()?;
    orchestra.entry(&name)?;
    let wants_upgrade = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("coop-exec"));
    if !wants_upgrade {
        return Err(ApiError::BadRequest(
            "exec needs `Connection: Upgrade` and `Upgrade: coop-exec`".into(),
        ));
    }
    let argv: Vec<String> = serde_json::from_str(&query.argv)
        .map_err(|e| ApiError::BadRequest(format!("argv must be a JSON array of strings: {e}")))?;
    let call = ExecCall {
        name,
        argv,
        tty: query.tty,
        rows: query.rows,
        cols: query.cols,
    };
    let upgrade = hyper::upgrade::on(&mut request);
    // Started before the upgrade is answered, so a refusal is a plain error.
    let session = orchestra.exec(call).await?;
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => session.serve(hyper_util::rt::TokioIo::new(upgraded)).await,
            Err(err) => tracing::warn!(%err, "exec upgrade failed"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "coop-exec")
        .body(Body::empty())
        .map_err(|e| ApiError::Internal(format!("cannot build the upgrade response: {e}")))
}
