//! `/v1/peers`: every peer as this peer sees it, the path to one and why,
//! a timed transfer to one, and revocation.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use coop_state::{Command, PeerRecord};
use coop_types::{Connection, PathReport, PeerId, PeerState, PeerView, SpeedReport, unix_now};

use crate::AppState;
use crate::cloud::RevokeResult;
use crate::error::ApiError;

/// Builds the view of every member, this peer first, then by name.
pub(crate) fn peer_views(state: &AppState) -> Result<Vec<PeerView>, ApiError> {
    let records = state.control.store().peers()?;
    let voters = state.control.voters();
    let leader = state.control.leader();
    let own = state.key.id();
    let mut views: Vec<PeerView> = records
        .iter()
        .map(|rec| view_of(state, rec, own, leader, &voters))
        .collect();
    views.sort_by(|a, b| {
        (a.id != own, a.name.as_str(), a.id).cmp(&(b.id != own, b.name.as_str(), b.id))
    });
    Ok(views)
}

fn view_of(
    state: &AppState,
    rec: &PeerRecord,
    own: PeerId,
    leader: Option<PeerId>,
    voters: &std::collections::BTreeSet<PeerId>,
) -> PeerView {
    let id = rec.id();
    let live = state.mesh.liveness();
    // The record may show a revocation admission has not applied yet.
    let peer_state = if rec.revoked_at.is_some() {
        PeerState::Revoked
    } else {
        state.mesh.peer_state(&id)
    };
    let (connection, rtt_ms) = if id == own {
        (Connection::Myself, Some(0.0))
    } else if peer_state != PeerState::Up {
        // A silent peer's last connection may linger until it times out;
        // it carries nothing, so do not report it.
        (Connection::None, None)
    } else {
        match state.mesh.path_to(&id) {
            Some(path) => (path.kind, path.rtt.map(|d| d.as_secs_f64() * 1000.0)),
            None => (Connection::None, None),
        }
    };
    let status = live.status(&id);
    let mut view = PeerView {
        id,
        name: rec.cert.body.name.clone(),
        zone: rec.cert.body.zone.clone(),
        state: peer_state,
        connection,
        rtt_ms,
        steward: voters.contains(&id),
        leader: leader == Some(id),
        cpus: 0,
        memory_bytes: 0,
        disk_free_bytes: 0,
        load: 0.0,
        arch: String::new(),
        addrs: rec.addrs.clone(),
        relay: rec.cert.body.roles.contains(&coop_types::Role::Relay),
        labels: Default::default(),
        last_seen_secs: None,
        lent: None,
        held: held_on(state, id),
    };
    if let Some((s, age)) = status {
        view.cpus = s.cpus;
        view.memory_bytes = s.memory_bytes;
        view.disk_free_bytes = s.disks.iter().map(|d| d.free_bytes).sum();
        view.load = f64::from(s.load_centi) / 100.0;
        view.arch = s.arch;
        view.labels = s.labels;
        view.relay = view.relay || s.relay;
        if !s.addrs.is_empty() {
            view.addrs = s.addrs;
        }
        view.last_seen_secs = Some(age.as_secs());
        view.lent = s.lent;
    }
    view
}

/// The limits of the containers placed on `peer`, which its leases hold.
fn held_on(state: &AppState, peer: PeerId) -> coop_types::Resources {
    let containers = state.control.store().containers().unwrap_or_default();
    containers
        .iter()
        .filter(|c| c.peer == peer)
        .fold(coop_types::Resources::ZERO, |sum, c| {
            coop_types::Resources {
                cpus_milli: sum.cpus_milli + u64::from(c.limits.cpus_milli),
                memory_bytes: sum.memory_bytes + c.limits.memory_bytes,
                disk_bytes: sum.disk_bytes + c.limits.disk_bytes,
            }
        })
}

/// List every peer of the cloud.
#[utoipa::path(
    get,
    path = "/v1/peers",
    responses(
        (status = 200, description = "Every peer, this one first", body = [PeerView]),
        (status = 401, description = "Missing or unknown token", body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<Vec<PeerView>>, ApiError> {
    peer_views(&state).map(Json)
}

/// Finds a peer by full id, unique id prefix (at least 4 characters) or name.
pub(crate) fn resolve_peer(state: &AppState, needle: &str) -> Result<PeerRecord, ApiError> {
    let records = state.control.store().peers()?;
    match coop_state::find_peer(&records, needle) {
        Ok(record) => Ok(record.clone()),
        Err(err @ coop_state::PeerLookup::NotFound(_)) => Err(ApiError::NotFound(err.to_string())),
        Err(err) => Err(ApiError::Conflict(err.to_string())),
    }
}

/// Revoke a peer: its certificate is void for good and every peer cuts it off.
#[utoipa::path(
    post,
    path = "/v1/peers/{peer}/revoke",
    params(("peer" = String, Path, description = "Peer id, unique id prefix, or name")),
    responses(
        (status = 200, description = "Revoked", body = RevokeResult),
        (status = 404, description = "No such peer", body = crate::error::ErrorBody),
        (status = 409, description = "Already revoked, or this peer itself", body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Path(peer): Path<String>,
) -> Result<Json<RevokeResult>, ApiError> {
    let rec = resolve_peer(&state, &peer)?;
    let id = rec.id();
    if id == state.key.id() {
        return Err(ApiError::Conflict(
            "a peer cannot revoke itself; run the command on another peer".into(),
        ));
    }
    state
        .control
        .write(Command::RevokePeer {
            peer: id,
            at: unix_now(),
        })
        .await?;
    Ok(Json(RevokeResult {
        id: id.to_string(),
        name: rec.cert.body.name,
    }))
}

/// The peer named in a path or speed request, refused if it is this one.
fn other_peer(state: &AppState, needle: &str) -> Result<PeerRecord, ApiError> {
    let record = resolve_peer(state, needle)?;
    if record.id() == state.key.id() {
        return Err(ApiError::BadRequest(
            "that is this peer itself; name another peer".into(),
        ));
    }
    Ok(record)
}

/// The path to a peer: its kind and paths, both sides' NATs as each sees
/// its own, and why the path is relayed when it is.
#[utoipa::path(
    get,
    path = "/v1/peers/{peer}/path",
    params(("peer" = String, Path, description = "Peer id, unique id prefix, or name")),
    responses(
        (status = 200, description = "The path and its verdict", body = PathReport),
        (status = 400, description = "The peer is this one", body = crate::error::ErrorBody),
        (status = 404, description = "No such peer", body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub(crate) async fn path(
    State(state): State<AppState>,
    Path(peer): Path<String>,
) -> Result<Json<PathReport>, ApiError> {
    let id = other_peer(&state, &peer)?.id();
    let names: std::collections::HashMap<PeerId, String> = (state.control.store().peers()?)
        .into_iter()
        .map(|r| (r.id(), r.cert.body.name.clone()))
        .collect();
    let report = state.mesh.path_report(id, |p| names.get(p).cloned()).await;
    Ok(Json(report))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct SpeedQuery {
    /// Bytes to send (default 64 MiB, at most 1 GiB).
    bytes: Option<u64>,
}

/// Sends bytes to a peer over the mesh and times them.
#[utoipa::path(
    post,
    path = "/v1/peers/{peer}/speed",
    params(("peer" = String, Path, description = "Peer id, unique id prefix, or name"), SpeedQuery),
    responses(
        (status = 200, description = "The transfer's figures", body = SpeedReport),
        (status = 400, description = "The peer is this one, or too many bytes", body = crate::error::ErrorBody),
        (status = 404, description = "No such peer", body = crate::error::ErrorBody),
        (status = 503, description = "The peer could not be reached", body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub(crate) async fn speed(
    State(state): State<AppState>,
    Path(peer): Path<String>,
    Query(query): Query<SpeedQuery>,
) -> Result<Json<SpeedReport>, ApiError> {
    let id = other_peer(&state, &peer)?.id();
    let bytes = query.bytes.unwrap_or(64 << 20);
    if bytes == 0 || bytes > coop_mesh::MAX_SPEED_BYTES {
        return Err(ApiError::BadRequest(format!(
            "bytes must be between 1 and {} (1 GiB), not {bytes}",
            coop_mesh::MAX_SPEED_BYTES
        )));
    }
    state
        .mesh
        .measure_speed(id, bytes)
        .await
        .map(Json)
        .map_err(|e| ApiError::Unavailable(format!("speed test to {}: {e}", id.short())))
}
