//! `/v1/containers`: run, list, show, start, stop, restart, remove, logs,
//! stats and exec of containers on this peer.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::mpsc;
use utoipa::IntoParams;

use coop_compute::runtime::{ExecOptions, PortMapping};
use coop_compute::{Overrides, Size};
use coop_state::{
    Command, ContainerEntry, ContainerLimits, DesiredState, RestartPolicy, TemplateEntry,
};
use coop_types::unix_now;

use super::host::{ComputeHost, runtime_error};
use super::stream::{FRAME_STDOUT, pump_reader, serve_exec};
use super::views::{ContainerView, ExecQuery, RunRequest, StatsView};
use crate::AppState;
use crate::error::ApiError;

/// How long `stop` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

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
}

async fn blocking<T: Send + 'static>(
    host: &Arc<ComputeHost>,
    work: impl FnOnce(&ComputeHost) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let host = host.clone();
    tokio::task::spawn_blocking(move || work(&host))
        .await
        .map_err(|e| ApiError::Internal(format!("a runtime task failed: {e}")))?
}

fn bad(err: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(err.to_string())
}

/// Picks the template a run names: `NAME:VERSION`, or `NAME` meaning
/// `latest` if there is one, else the most recently imported version.
fn resolve_template(state: &AppState, wanted: &str) -> Result<TemplateEntry, ApiError> {
    let (name, version) = match wanted.split_once(':') {
        Some((name, version)) => (name, Some(version)),
        None => (wanted, None),
    };
    let versions: Vec<TemplateEntry> = state
        .control
        .store()
        .templates()?
        .into_iter()
        .filter(|t| t.name == name)
        .collect();
    let found = match version {
        Some(v) => versions.into_iter().find(|t| t.version == v),
        None => {
            let latest = versions
                .iter()
                .find(|t| t.version == coop_compute::DEFAULT_VERSION)
                .cloned();
            latest.or_else(|| versions.into_iter().max_by_key(|t| t.imported_at))
        }
    };
    found.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no template `{wanted}`; import one with `coop template import {name} PATH` or list them with `coop template ls`"
        ))
    })
}

/// Turns a run request into the entry to record, checking every field.
fn entry_of(
    state: &AppState,
    host: &ComputeHost,
    request: RunRequest,
) -> Result<ContainerEntry, ApiError> {
    let template = resolve_template(state, &request.template)?;
    let record = super::host::verify_template(&template).map_err(|e| {
        ApiError::Conflict(format!(
            "template {}:{} does not verify: {e}",
            template.name, template.version
        ))
    })?;
    let size = match &request.size {
        Some(text) => Size::from_str(text).map_err(bad)?,
        None => record.manifest.default_size,
    };
    let mut overrides = Overrides::parse(
        request.cpus.as_deref(),
        request.memory.as_deref(),
        request.disk.as_deref(),
    )
    .map_err(bad)?;
    if let Some(pids) = &request.pids {
        overrides = overrides.with_pids(pids).map_err(bad)?;
    }
    let resources = size.resources().with_overrides(&overrides);
    let ports = request
        .ports
        .iter()
        .map(|p| PortMapping::from_str(p).map(|m| m.to_string()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let mut env: Vec<(String, String)> = record.manifest.env.clone().into_iter().collect();
    for pair in &request.env {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            ApiError::BadRequest(format!("environment `{pair}` must be written K=V"))
        })?;
        env.retain(|(name, _)| name != k);
        env.push((k.to_string(), v.to_string()));
    }
    let restart = match &request.restart {
        None => RestartPolicy::No,
        Some(text) => RestartPolicy::parse(text).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "restart policy `{text}` is unknown: use no, on-failure or always"
            ))
        })?,
    };
    let name = match request.name {
        Some(name) => name,
        None => format!(
            "{}-{}",
            template.name,
            data_encoding::HEXLOWER.encode(&rand::random::<[u8; 3]>())
        ),
    };
    let argv = if request.argv.is_empty() {
        record.manifest.entrypoint.clone()
    } else {
        request.argv
    };
    Ok(ContainerEntry {
        name,
        peer: host.peer(),
        template: template.name,
        version: template.version,
        content_id: template.content_id,
        size: size.name().to_string(),
        limits: ContainerLimits {
            cpus_milli: resources.cpus_milli,
            memory_bytes: resources.memory_bytes,
            disk_bytes: resources.disk_bytes,
            pids: resources.pids,
        },
        argv,
        env,
        workdir: record.manifest.workdir.clone(),
        user: record.manifest.user.clone(),
        ports,
        restart,
        desired: DesiredState::Running,
        created_at: unix_now(),
    })
}

/// The entry of a container this peer runs, or 404.
fn local_entry(
    state: &AppState,
    host: &ComputeHost,
    name: &str,
) -> Result<ContainerEntry, ApiError> {
    let entry = state.control.store().container(name)?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no container named `{name}`; list containers with `coop container ls --all`"
        ))
    })?;
    if entry.peer != host.peer() {
        return Err(ApiError::BadRequest(format!(
            "container `{name}` runs on peer {}; talk to that peer's API (acting on other peers' containers is not built yet)",
            entry.peer
        )));
    }
    Ok(entry)
}

async fn view_of(
    host: &Arc<ComputeHost>,
    entry: ContainerEntry,
) -> Result<ContainerView, ApiError> {
    let local = entry.peer == host.peer();
    blocking(host, move |host| {
        let actual = if local {
            host.observe(&entry.name)
        } else {
            None
        };
        Ok(ContainerView::of(&entry, actual.as_ref(), local))
    })
    .await
}

/// Run a container from a template on this peer.
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
    let host = state.compute()?;
    host.runtime()?;
    let entry = entry_of(&state, &host, request)?;
    let check = entry.clone();
    blocking(&host, move |host| {
        let spec = host.spec(&check, std::path::PathBuf::from("/"))?;
        spec.validate().map_err(bad)
    })
    .await?;
    let _guard = host.lock().await;
    state
        .control
        .write(Command::PutContainer(entry.clone()))
        .await?;
    let launched = entry.clone();
    if let Err(err) = blocking(&host, move |host| host.launch(&launched).map(|_| ())).await {
        // Nothing half-created: the runtime's container and the record go.
        let name = entry.name.clone();
        let _ = blocking(&host, move |host| {
            host.runtime()?.delete(&name, true).map_err(runtime_error)
        })
        .await;
        let _ = state
            .control
            .write(Command::DeleteContainer {
                name: entry.name.clone(),
            })
            .await;
        return Err(err);
    }
    Ok(Json(view_of(&host, entry).await?))
}

/// List containers (running ones, or all).
#[utoipa::path(get, path = "/v1/containers", tag = "compute", params(ListQuery),
    responses((status = 200, body = Vec<ContainerView>)), security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<ContainerView>>, ApiError> {
    let host = state.compute()?;
    let entries = state.control.store().containers()?;
    let me = host.peer();
    let views = blocking(&host, move |host| {
        Ok(entries
            .iter()
            .map(|e| {
                let local = e.peer == me;
                let actual = if local { host.observe(&e.name) } else { None };
                ContainerView::of(e, actual.as_ref(), local)
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(
        views
            .into_iter()
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
    let host = state.compute()?;
    let entry = state.control.store().container(&name)?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no container named `{name}`; list containers with `coop container ls --all`"
        ))
    })?;
    Ok(Json(view_of(&host, entry).await?))
}

/// Start a stopped or exited container.
#[utoipa::path(post, path = "/v1/containers/{name}/start", tag = "compute",
    responses((status = 200, body = ContainerView), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ContainerView>, ApiError> {
    let host = state.compute()?;
    host.runtime()?;
    let _guard = host.lock().await;
    let entry = local_entry(&state, &host, &name)?;
    set_desired(&state, &name, DesiredState::Running).await?;
    let launched = entry.clone();
    blocking(&host, move |host| host.launch(&launched).map(|_| ())).await?;
    Ok(Json(view_of(&host, entry).await?))
}

async fn set_desired(state: &AppState, name: &str, desired: DesiredState) -> Result<(), ApiError> {
    state
        .control
        .write(Command::SetContainerDesired {
            name: name.to_string(),
            desired,
        })
        .await?;
    Ok(())
}

/// Stop a container (SIGTERM, SIGKILL after 10 s); it stays stopped.
#[utoipa::path(post, path = "/v1/containers/{name}/stop", tag = "compute",
    responses((status = 200, body = ContainerView), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn stop(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ContainerView>, ApiError> {
    let host = state.compute()?;
    host.runtime()?;
    let _guard = host.lock().await;
    let mut entry = local_entry(&state, &host, &name)?;
    set_desired(&state, &name, DesiredState::Stopped).await?;
    entry.desired = DesiredState::Stopped;
    let id = name.clone();
    blocking(&host, move |host| {
        host.runtime()?
            .stop(&id, STOP_GRACE)
            .map(|_| ())
            .map_err(runtime_error)
    })
    .await?;
    Ok(Json(view_of(&host, entry).await?))
}

/// Stop a container and start it again.
#[utoipa::path(post, path = "/v1/containers/{name}/restart", tag = "compute",
    responses((status = 200, body = ContainerView), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn restart(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ContainerView>, ApiError> {
    let host = state.compute()?;
    host.runtime()?;
    let _guard = host.lock().await;
    let mut entry = local_entry(&state, &host, &name)?;
    set_desired(&state, &name, DesiredState::Running).await?;
    entry.desired = DesiredState::Running;
    let launched = entry.clone();
    blocking(&host, move |host| {
        match host.runtime()?.stop(&launched.name, STOP_GRACE) {
            Ok(_) | Err(coop_compute::runtime::RuntimeError::NotFound(_)) => {}
            Err(e) => return Err(runtime_error(e)),
        }
        host.launch(&launched).map(|_| ())
    })
    .await?;
    Ok(Json(view_of(&host, entry).await?))
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
    let host = state.compute()?;
    host.runtime()?;
    let _guard = host.lock().await;
    let entry = local_entry(&state, &host, &name)?;
    let view = view_of(&host, entry).await?;
    if view.state == "running" && !query.force {
        return Err(ApiError::Conflict(format!(
            "container `{name}` is running; stop it first or remove it with -f"
        )));
    }
    let id = name.clone();
    blocking(&host, move |host| {
        host.runtime()?.delete(&id, true).map_err(runtime_error)
    })
    .await?;
    state
        .control
        .write(Command::DeleteContainer { name })
        .await?;
    Ok(Json(view))
}

/// The container's output (stdout and stderr), streamed; with `follow`,
/// until it exits.
#[utoipa::path(get, path = "/v1/containers/{name}/logs", tag = "compute", params(LogsQuery),
    responses((status = 200, body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn logs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let host = state.compute()?;
    local_entry(&state, &host, &name)?;
    let follow = query.follow;
    let stream = blocking(&host, move |host| {
        host.runtime()?.logs(&name, follow).map_err(runtime_error)
    })
    .await?;
    let (tx, rx) = mpsc::channel::<(u8, Vec<u8>)>(16);
    pump_reader(stream, FRAME_STDOUT, tx);
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|(_, bytes)| (Ok::<_, std::io::Error>(bytes), rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(body),
    )
        .into_response())
}

/// CPU, memory, processes, network and disk use now.
#[utoipa::path(get, path = "/v1/containers/{name}/stats", tag = "compute",
    responses((status = 200, body = StatsView), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn stats(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<StatsView>, ApiError> {
    let host = state.compute()?;
    local_entry(&state, &host, &name)?;
    let view = blocking(&host, move |host| {
        let stats = host.runtime()?.stats(&name).map_err(runtime_error)?;
        Ok(StatsView::of(&name, &stats))
    })
    .await?;
    Ok(Json(view))
}

/// Run a command in a running container over an HTTP upgrade to
/// `coop-exec` (frames: see the `stream` module).
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
    let host = state.compute()?;
    local_entry(&state, &host, &name)?;
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
    let options = ExecOptions {
        argv,
        tty: query.tty,
        ..ExecOptions::default()
    };
    let (rows, cols) = (query.rows, query.cols);
    let handle = blocking(&host, move |host| {
        let handle = host
            .runtime()?
            .exec(&name, options)
            .map_err(runtime_error)?;
        if let (Some(rows), Some(cols)) = (rows, cols) {
            let _ = handle.resize(rows, cols);
        }
        Ok(handle)
    })
    .await?;
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => serve_exec(hyper_util::rt::TokioIo::new(upgraded), handle).await,
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
