//! `/v1/containers`: run, list, show, start, stop, restart, remove, logs,
//! stats and exec of containers on this peer.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::IntoParams;

use coop_compute::runtime::{ContainerState, ExecHandle, ExecOptions, PortMapping};
use coop_compute::{Overrides, Size};
use coop_state::{
    Command, ContainerEntry, ContainerLimits, DesiredState, RestartPolicy, TemplateEntry,
};
use coop_types::{PeerId, unix_now};

use super::host::{ComputeHost, runtime_error, should_restart};
use super::lease::{Capacity, ComputeView};
use super::remote::{self, PeerCall, PeerReply};
use super::remote_exec;
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
    peer: PeerId,
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
        peer,
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

/// What an operator asks of an existing container.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub enum Action {
    /// Start a stopped or exited container.
    Start,
    /// Stop it (SIGTERM, then SIGKILL after the grace); it stays stopped.
    Stop,
    /// Stop it and start it again.
    Restart,
    /// Remove it; with `force`, a running one too.
    Remove { force: bool },
}

/// The recorded entry of `name`, or 404.
fn entry_named(state: &AppState, name: &str) -> Result<ContainerEntry, ApiError> {
    state.control.store().container(name)?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no container named `{name}`; list containers with `coop container ls --all`"
        ))
    })
}

/// The entry of a container this peer runs, or an error saying where it runs.
fn local_entry(
    state: &AppState,
    host: &ComputeHost,
    name: &str,
) -> Result<ContainerEntry, ApiError> {
    let entry = entry_named(state, name)?;
    if entry.peer != host.peer() {
        return Err(ApiError::BadRequest(format!(
            "container `{name}` runs on peer {}, not on this one",
            peer_label(state, entry.peer)
        )));
    }
    Ok(entry)
}

/// A peer's name and short id, for messages.
fn peer_label(state: &AppState, peer: PeerId) -> String {
    let name = state
        .control
        .store()
        .peers()
        .ok()
        .and_then(|peers| peers.into_iter().find(|r| r.id() == peer))
        .map(|r| r.cert.body.name);
    match name {
        Some(name) => format!("{name} ({})", peer.short()),
        None => peer.short(),
    }
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

/// Runs `entry` on this peer, as its lease: checks that it fits in what
/// the peer offers, records it, fetches its template on first use and
/// starts it. A failure at any step leaves nothing behind.
pub(crate) async fn lease_local(
    state: &AppState,
    host: &Arc<ComputeHost>,
    entry: ContainerEntry,
) -> Result<ContainerView, ApiError> {
    host.runtime()?;
    let check = entry.clone();
    blocking(host, move |host| {
        host.spec(&check, std::path::PathBuf::from("/")).map(|_| ())
    })
    .await?;
    let _guard = host.lock().await;
    admit(state, host, &entry).await?;
    state
        .control
        .write(Command::PutContainer(entry.clone()))
        .await?;
    if let Err(err) = launch(state, host, &entry).await {
        // Nothing half-created: the runtime's container and the record go.
        let name = entry.name.clone();
        let _ = blocking(host, move |host| {
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
    view_of(host, entry).await
}

/// Refuses `entry` when it does not fit next to this peer's other
/// containers. Reads the control plane after a barrier, so a lease just
/// granted through another peer's write is counted.
async fn admit(
    state: &AppState,
    host: &Arc<ComputeHost>,
    entry: &ContainerEntry,
) -> Result<(), ApiError> {
    state.control.read_barrier().await?;
    let entries = state.control.store().containers()?;
    let finished = finished(host, &entries).await?;
    host.capacity()
        .admit(&entries, &finished, host.peer(), &entry.name, &entry.limits)
        .map_err(ApiError::Conflict)
}

/// The containers of `entries` on this peer that exited for good: their
/// restart policy will not start them again.
async fn finished(
    host: &Arc<ComputeHost>,
    entries: &[ContainerEntry],
) -> Result<Vec<String>, ApiError> {
    let me = host.peer();
    let mine: Vec<ContainerEntry> = entries.iter().filter(|e| e.peer == me).cloned().collect();
    blocking(host, move |host| {
        Ok(mine
            .iter()
            .filter(|e| {
                host.observe(&e.name).is_some_and(|c| match c.state {
                    ContainerState::Exited(exit) => !should_restart(e.restart, exit.status, false),
                    _ => false,
                })
            })
            .map(|e| e.name.clone())
            .collect::<Vec<_>>())
    })
    .await
}

/// Whether containers run on this peer, what it lends them and what they hold.
#[utoipa::path(get, path = "/v1/compute", tag = "compute",
    responses((status = 200, body = ComputeView)), security(("bearer" = [])))]
pub(crate) async fn status(State(state): State<AppState>) -> Result<Json<ComputeView>, ApiError> {
    let host = state.compute()?;
    let entries = state.control.store().containers()?;
    let finished = finished(&host, &entries).await?;
    let me = host.peer();
    let held = Capacity::held(&entries, me, "", &finished);
    let offered = host.capacity();
    Ok(Json(ComputeView {
        peer: me.to_string(),
        available: host.unavailable_reason().is_none(),
        reason: host.unavailable_reason().map(str::to_string),
        capacity_cpus_milli: offered.cpus_milli,
        capacity_memory_bytes: offered.memory_bytes,
        capacity_disk_bytes: offered.disk_bytes,
        held_cpus_milli: held.cpus_milli,
        held_memory_bytes: held.memory_bytes,
        held_disk_bytes: held.disk_bytes,
        containers: entries.iter().filter(|e| e.peer == me).count(),
    }))
}

/// Fetches the template if this peer lacks it, then creates and starts
/// the container.
async fn launch(
    state: &AppState,
    host: &Arc<ComputeHost>,
    entry: &ContainerEntry,
) -> Result<(), ApiError> {
    host.ensure_template(state.control.store(), entry).await?;
    let launched = entry.clone();
    blocking(host, move |host| host.launch(&launched).map(|_| ())).await
}

/// Starts, stops, restarts or removes a container this peer runs.
pub(crate) async fn act_local(
    state: &AppState,
    host: &Arc<ComputeHost>,
    name: &str,
    action: Action,
) -> Result<ContainerView, ApiError> {
    host.runtime()?;
    let _guard = host.lock().await;
    let mut entry = local_entry(state, host, name)?;
    match action {
        Action::Start => {
            admit(state, host, &entry).await?;
            set_desired(state, name, DesiredState::Running).await?;
            entry.desired = DesiredState::Running;
            launch(state, host, &entry).await?;
        }
        Action::Stop => {
            set_desired(state, name, DesiredState::Stopped).await?;
            entry.desired = DesiredState::Stopped;
            let id = name.to_string();
            blocking(host, move |host| {
                host.runtime()?
                    .stop(&id, STOP_GRACE)
                    .map(|_| ())
                    .map_err(runtime_error)
            })
            .await?;
        }
        Action::Restart => {
            admit(state, host, &entry).await?;
            set_desired(state, name, DesiredState::Running).await?;
            entry.desired = DesiredState::Running;
            host.ensure_template(state.control.store(), &entry).await?;
            let launched = entry.clone();
            blocking(host, move |host| {
                match host.runtime()?.stop(&launched.name, STOP_GRACE) {
                    Ok(_) | Err(coop_compute::runtime::RuntimeError::NotFound(_)) => {}
                    Err(e) => return Err(runtime_error(e)),
                }
                host.launch(&launched).map(|_| ())
            })
            .await?;
        }
        Action::Remove { force } => {
            let view = view_of(host, entry).await?;
            if view.state == "running" && !force {
                return Err(ApiError::Conflict(format!(
                    "container `{name}` is running; stop it first or remove it with -f"
                )));
            }
            let id = name.to_string();
            blocking(host, move |host| {
                host.runtime()?.delete(&id, true).map_err(runtime_error)
            })
            .await?;
            state
                .control
                .write(Command::DeleteContainer {
                    name: name.to_string(),
                })
                .await?;
            return Ok(view);
        }
    }
    view_of(host, entry).await
}

/// Acts on `name` wherever it runs: here, or through its peer.
async fn act(
    state: &AppState,
    name: &str,
    action: Action,
) -> Result<Json<ContainerView>, ApiError> {
    let host = state.compute()?;
    let entry = entry_named(state, name)?;
    if entry.peer == host.peer() {
        return act_local(state, &host, name, action).await.map(Json);
    }
    let call = PeerCall::Act {
        name: name.to_string(),
        action,
    };
    remote::call(state, entry.peer, call, None)
        .await
        .and_then(remote::expect_view)
        .map(Json)
}

/// What this peer's runtime says about `names` (those it runs).
pub(crate) async fn observe_local(
    state: &AppState,
    host: &Arc<ComputeHost>,
    names: Vec<String>,
) -> Result<Vec<ContainerView>, ApiError> {
    let me = host.peer();
    let entries: Vec<ContainerEntry> = names
        .iter()
        .filter_map(|n| state.control.store().container(n).ok().flatten())
        .filter(|e| e.peer == me)
        .collect();
    blocking(host, move |host| {
        Ok(entries
            .iter()
            .map(|e| ContainerView::of(e, host.observe(&e.name).as_ref(), true))
            .collect())
    })
    .await
}

/// Views of `entries` with their actual state, asking each other peer
/// about its own (at most [`remote::OBSERVE_TIMEOUT`]; an unreachable
/// peer's containers stay `unknown`).
async fn views_of(
    state: &AppState,
    host: &Arc<ComputeHost>,
    entries: Vec<ContainerEntry>,
) -> Result<Vec<ContainerView>, ApiError> {
    let me = host.peer();
    let mut by_peer: BTreeMap<PeerId, Vec<String>> = BTreeMap::new();
    // Peers known to be down are not asked: their containers show as
    // unknown at once instead of after a timeout.
    let up = |peer: &PeerId| {
        !matches!(
            state.mesh.liveness().state(peer),
            coop_types::PeerState::Down | coop_types::PeerState::Revoked
        )
    };
    for entry in entries.iter().filter(|e| e.peer != me && up(&e.peer)) {
        by_peer
            .entry(entry.peer)
            .or_default()
            .push(entry.name.clone());
    }
    let asked = futures::future::join_all(by_peer.into_iter().map(|(peer, names)| async move {
        remote::call(state, peer, PeerCall::Observe { names }, None).await
    }))
    .await;
    let mut remote_views: BTreeMap<String, ContainerView> = BTreeMap::new();
    for reply in asked.into_iter().flatten() {
        if let PeerReply::Views(views) = reply {
            remote_views.extend(views.into_iter().map(|v| (v.name.clone(), v)));
        }
    }
    let mut views = Vec::with_capacity(entries.len());
    for entry in entries {
        let view = match remote_views.remove(&entry.name) {
            Some(view) => view,
            None => view_of(host, entry).await?,
        };
        views.push(view);
    }
    Ok(views)
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
    let host = state.compute()?;
    let target = match &request.peer {
        Some(needle) => crate::peers::resolve_peer(&state, needle)?,
        None => state
            .control
            .store()
            .peers()?
            .into_iter()
            .find(|r| r.id() == host.peer())
            .ok_or_else(|| ApiError::Unavailable("this peer is not a member yet".into()))?,
    };
    if target.revoked_at.is_some() {
        return Err(ApiError::BadRequest(format!(
            "peer {} was removed from the cloud",
            target.cert.body.name
        )));
    }
    let entry = entry_of(&state, target.id(), request)?;
    if state.control.store().container(&entry.name)?.is_some() {
        return Err(ApiError::Conflict(format!(
            "a container named `{}` already exists; pick another --name or remove it",
            entry.name
        )));
    }
    if entry.peer == host.peer() {
        return lease_local(&state, &host, entry).await.map(Json);
    }
    let peer = entry.peer;
    remote::call(&state, peer, PeerCall::Lease(Box::new(entry)), None)
        .await
        .and_then(remote::expect_view)
        .map(Json)
}

/// List containers (running ones, or all) of every peer.
#[utoipa::path(get, path = "/v1/containers", tag = "compute", params(ListQuery),
    responses((status = 200, body = Vec<ContainerView>)), security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<ContainerView>>, ApiError> {
    let host = state.compute()?;
    let entries = state.control.store().containers()?;
    let views = views_of(&state, &host, entries).await?;
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
    let entry = entry_named(&state, &name)?;
    let mut views = views_of(&state, &host, vec![entry]).await?;
    views
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::Internal(format!("no view of container `{name}`")))
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
    act(&state, &name, Action::Stop).await
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
/// until it exits. A container on another peer is read from there.
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
    let entry = entry_named(&state, &name)?;
    let follow = query.follow;
    let octets = [(header::CONTENT_TYPE, "application/octet-stream")];
    if entry.peer != host.peer() {
        return Ok((
            octets,
            Body::from_stream(remote_logs(state, entry.peer, name, follow)),
        )
            .into_response());
    }
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
    Ok((octets, Body::from_stream(body)).into_response())
}

/// How often a follow of another peer's container asks for more output.
const REMOTE_LOG_POLL: Duration = Duration::from_millis(500);

/// The log of a container on `peer`, read in chunks; with `follow`, asked
/// again until the container stops and its log is drained.
fn remote_logs(
    state: AppState,
    peer: PeerId,
    name: String,
    follow: bool,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::unfold(Some(0u64), move |offset| {
        let state = state.clone();
        let name = name.clone();
        async move {
            let mut offset = offset?;
            loop {
                let call = PeerCall::Logs {
                    name: name.clone(),
                    offset,
                };
                match remote::call(&state, peer, call, None).await {
                    Ok(PeerReply::Logs { bytes, running }) => {
                        if !bytes.is_empty() {
                            offset += bytes.len() as u64;
                            return Some((Ok(bytes), Some(offset)));
                        }
                        if !follow || !running {
                            return None;
                        }
                        tokio::time::sleep(REMOTE_LOG_POLL).await;
                    }
                    Ok(other) => {
                        let err = std::io::Error::other(remote::unexpected(&other).to_string());
                        return Some((Err(err), None));
                    }
                    Err(err) => return Some((Err(std::io::Error::other(err.to_string())), None)),
                }
            }
        }
    })
}

/// Up to [`remote::LOG_CHUNK`] bytes of the log of a container this peer
/// runs, from `offset`, and whether it still runs.
pub(crate) async fn log_chunk(
    state: &AppState,
    host: &Arc<ComputeHost>,
    name: &str,
    offset: u64,
) -> Result<(Vec<u8>, bool), ApiError> {
    local_entry(state, host, name)?;
    let name = name.to_string();
    blocking(host, move |host| {
        use std::io::Read;
        let runtime = host.runtime()?;
        let running = host.observe(&name).is_some_and(|c| {
            matches!(
                c.state,
                coop_compute::runtime::ContainerState::Running { .. }
            )
        });
        let mut stream = runtime.logs(&name, false).map_err(runtime_error)?;
        let cannot =
            |e: std::io::Error| ApiError::Internal(format!("cannot read the log of `{name}`: {e}"));
        std::io::copy(&mut (&mut stream).take(offset), &mut std::io::sink()).map_err(cannot)?;
        let mut bytes = Vec::new();
        stream
            .take(remote::LOG_CHUNK as u64)
            .read_to_end(&mut bytes)
            .map_err(cannot)?;
        Ok((bytes, running))
    })
    .await
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
    let entry = entry_named(&state, &name)?;
    if entry.peer == host.peer() {
        return stats_local(&state, &host, &name).await.map(Json);
    }
    match remote::call(&state, entry.peer, PeerCall::Stats { name }, None).await? {
        PeerReply::Stats(stats) => Ok(Json(stats)),
        other => Err(remote::unexpected(&other)),
    }
}

/// Stats of a container this peer runs.
pub(crate) async fn stats_local(
    state: &AppState,
    host: &Arc<ComputeHost>,
    name: &str,
) -> Result<StatsView, ApiError> {
    local_entry(state, host, name)?;
    let name = name.to_string();
    blocking(host, move |host| {
        let stats = host.runtime()?.stats(&name).map_err(runtime_error)?;
        Ok(StatsView::of(&name, &stats))
    })
    .await
}

/// Run a command in a running container over an HTTP upgrade to
/// `coop-exec` (frames: see the `stream` module). A container on another
/// peer is reached over `coop/exec/1`, which carries the same frames.
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
    let entry = entry_named(&state, &name)?;
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
    let call = remote_exec::ExecCall {
        name,
        argv,
        tty: query.tty,
        rows: query.rows,
        cols: query.cols,
    };
    let upgrade = hyper::upgrade::on(&mut request);
    if entry.peer == host.peer() {
        let handle = start_exec(&state, &host, call).await?;
        tokio::spawn(async move {
            match upgrade.await {
                Ok(upgraded) => serve_exec(hyper_util::rt::TokioIo::new(upgraded), handle).await,
                Err(err) => tracing::warn!(%err, "exec upgrade failed"),
            }
        });
    } else {
        let session = remote_exec::open(&state, entry.peer, &call).await?;
        tokio::spawn(async move {
            match upgrade.await {
                Ok(upgraded) => session.pipe(hyper_util::rt::TokioIo::new(upgraded)).await,
                Err(err) => tracing::warn!(%err, "exec upgrade failed"),
            }
        });
    }
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "coop-exec")
        .body(Body::empty())
        .map_err(|e| ApiError::Internal(format!("cannot build the upgrade response: {e}")))
}

/// Starts `call` in a container this peer runs.
pub(crate) async fn start_exec(
    state: &AppState,
    host: &Arc<ComputeHost>,
    call: remote_exec::ExecCall,
) -> Result<ExecHandle, ApiError> {
    local_entry(state, host, &call.name)?;
    let options = ExecOptions {
        argv: call.argv,
        tty: call.tty,
        ..ExecOptions::default()
    };
    let (name, rows, cols) = (call.name, call.rows, call.cols);
    blocking(host, move |host| {
        let handle = host
            .runtime()?
            .exec(&name, options)
            .map_err(runtime_error)?;
        if let (Some(rows), Some(cols)) = (rows, cols) {
            let _ = handle.resize(rows, cols);
        }
        Ok(handle)
    })
    .await
}
