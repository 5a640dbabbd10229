//! `/v1/networks`: the cloud's private networks and who is on them.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use coop_state::{Command, NetworkRecord};
use coop_types::Ipv4Subnet;

use crate::AppState;
use crate::error::ApiError;

/// Body of `POST /v1/networks`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkRequest {
    /// 1-63 characters of a-z, 0-9 and `-`, starting with a letter.
    pub name: String,
    /// A CIDR such as `10.30.0.0/24`; the next free /24 of 10.210.0.0/16
    /// when omitted.
    #[serde(default)]
    pub subnet: Option<String>,
}

/// A container on a network.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NetworkMemberView {
    pub container: String,
    pub address: String,
    /// The peer that runs it (full id).
    pub peer: String,
    pub peer_name: Option<String>,
}

/// A private network.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NetworkView {
    pub name: String,
    /// Its number on the wire and in bridge names.
    pub id: u32,
    pub subnet: String,
    /// The gateway's address on every peer (`.1`).
    pub gateway: String,
    /// The environment that owns it, if one does.
    pub environment: Option<String>,
    pub created_at: u64,
    pub members: Vec<NetworkMemberView>,
}

fn view(state: &AppState, record: NetworkRecord) -> Result<NetworkView, ApiError> {
    let store = state.control.store();
    let names: std::collections::BTreeMap<String, String> = store
        .peers()?
        .into_iter()
        .map(|r| (r.id().to_string(), r.cert.body.name.clone()))
        .collect();
    let members = store
        .network_members(&record.name)?
        .into_iter()
        .map(|(entry, address)| {
            let peer = entry.peer.to_string();
            NetworkMemberView {
                container: entry.name,
                address: address.to_string(),
                peer_name: names.get(&peer).cloned(),
                peer,
            }
        })
        .collect();
    Ok(NetworkView {
        gateway: record.gateway().to_string(),
        name: record.name,
        id: record.id,
        subnet: record.subnet.to_string(),
        environment: record.env,
        created_at: record.created_at,
        members,
    })
}

/// What a new network's subnet must keep clear of on this peer: its
/// containers' bridge and its routes.
fn avoid(state: &AppState) -> Vec<Ipv4Subnet> {
    let mut avoid = coop_compute::network::host_routes();
    if let Some(compute) = &state.compute
        && let Ok(runtime) = compute.host().runtime()
    {
        avoid.push(runtime.config().network.subnet);
    }
    avoid
}

/// Create a private network: with `subnet`, that one; without, the next
/// free /24 of 10.210.0.0/16. It may overlap no other network, nor this
/// peer's container bridge or routes.
#[utoipa::path(post, path = "/v1/networks", tag = "networks", request_body = NetworkRequest,
    responses((status = 200, body = NetworkView), (status = 400, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    body: Result<Json<NetworkRequest>, JsonRejection>,
) -> Result<Json<NetworkView>, ApiError> {
    let Json(request) = body?;
    let subnet = match &request.subnet {
        Some(text) => Some(
            text.parse::<Ipv4Subnet>()
                .map_err(|e| ApiError::BadRequest(format!("--subnet: {e}")))?,
        ),
        None => None,
    };
    state
        .control
        .write(Command::CreateNetwork {
            name: request.name.clone(),
            subnet,
            avoid: avoid(&state),
            env: None,
            now: coop_types::unix_now(),
        })
        .await?;
    state.control.read_barrier().await?;
    let record = state
        .control
        .store()
        .network(&request.name)?
        .ok_or_else(|| ApiError::Internal("the new network is not readable".into()))?;
    Ok(Json(view(&state, record)?))
}

/// List the private networks with their members.
#[utoipa::path(get, path = "/v1/networks", tag = "networks",
    responses((status = 200, body = Vec<NetworkView>)), security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
) -> Result<Json<Vec<NetworkView>>, ApiError> {
    let records = state.control.store().networks()?;
    let views = records
        .into_iter()
        .map(|r| view(&state, r))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(views))
}

fn record(state: &AppState, name: &str) -> Result<NetworkRecord, ApiError> {
    state.control.store().network(name)?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no network named `{name}`; list networks with `coop network ls`"
        ))
    })
}

/// One network: its subnet and gateway, each member with its address and peer.
#[utoipa::path(get, path = "/v1/networks/{name}", tag = "networks",
    responses((status = 200, body = NetworkView), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<NetworkView>, ApiError> {
    let record = record(&state, &name)?;
    Ok(Json(view(&state, record)?))
}

/// Remove a network; refused while a container is on it.
#[utoipa::path(delete, path = "/v1/networks/{name}", tag = "networks",
    responses((status = 200), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let record = record(&state, &name)?;
    if let Some(env) = &record.env {
        return Err(ApiError::Conflict(format!(
            "network `{name}` belongs to environment `{env}`; it goes with `coop env down {env}`"
        )));
    }
    state
        .control
        .write(Command::DeleteNetwork { name: name.clone() })
        .await?;
    Ok(Json(
        serde_json::json!({ "network": name, "removed": true }),
    ))
}
