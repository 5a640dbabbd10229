//! `/v1/environments`: what a blueprint would become in the cloud.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use coop_orchestra::environments::read_blueprint;

use crate::AppState;
use crate::error::ApiError;

/// Body of `POST /v1/environments/plan`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvRequest {
    /// The environment's name (a-z, 0-9, `-`).
    pub name: String,
    /// The blueprint: a Compose file with coop's `x-coop` extensions.
    pub blueprint: String,
    /// Variable values, already resolved by the client.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// The `env_file`s the blueprint names, path to text.
    #[serde(default)]
    pub env_files: BTreeMap<String, String>,
}

/// One replica in a plan.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReplicaPlanView {
    pub service: String,
    pub index: u32,
    /// The container name.
    pub name: String,
    /// The chosen peer's id, when one fits.
    pub peer: Option<String>,
    pub peer_name: Option<String>,
    /// Where it runs now, if it exists.
    pub current: Option<String>,
    /// Why it fits nowhere, when it does not.
    pub reason: Option<String>,
    /// Each ruled-out peer (name) and why, when it fits nowhere.
    pub refusals: BTreeMap<String, String>,
}

/// `POST /v1/environments/plan`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EnvPlanView {
    pub name: String,
    pub replicas: Vec<ReplicaPlanView>,
    /// Things the blueprint reader noticed that did not stop it.
    pub warnings: Vec<String>,
}

/// Where each replica of a blueprint would run if it were deployed now,
/// or why it fits nowhere. Changes nothing.
#[utoipa::path(post, path = "/v1/environments/plan", tag = "environments",
    request_body = EnvRequest,
    responses((status = 200, body = EnvPlanView), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn plan(
    State(state): State<AppState>,
    body: Result<Json<EnvRequest>, JsonRejection>,
) -> Result<Json<EnvPlanView>, ApiError> {
    let Json(request) = body?;
    let blueprint = read_blueprint(&request.blueprint, &request.vars, &request.env_files)?;
    let planned = state
        .compute()?
        .plan_environment(&request.name, &blueprint)?;
    let replicas = plan_views(&state, planned)?;
    Ok(Json(EnvPlanView {
        name: request.name,
        replicas,
        warnings: blueprint.warnings,
    }))
}

/// The views of planned replicas, with their peers' names.
fn plan_views(
    state: &AppState,
    planned: Vec<coop_orchestra::environments::PlannedReplica>,
) -> Result<Vec<ReplicaPlanView>, ApiError> {
    let names: BTreeMap<String, String> = state
        .control
        .store()
        .peers()?
        .into_iter()
        .map(|r| (r.id().to_string(), r.cert.body.name.clone()))
        .collect();
    Ok(planned
        .into_iter()
        .map(|p| {
            let peer = p.peer.map(|id| id.to_string());
            ReplicaPlanView {
                peer_name: peer.as_ref().and_then(|id| names.get(id).cloned()),
                peer,
                current: p.current.map(|id| id.to_string()),
                reason: (!p.reason.is_empty()).then_some(p.reason),
                refusals: p.refusals.into_iter().map(|r| (r.name, r.reason)).collect(),
                service: p.service,
                index: p.index,
                name: p.name,
            }
        })
        .collect())
}

/// One service of an environment.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EnvServiceView {
    pub name: String,
    /// Replicas the blueprint asks for.
    pub desired: u32,
    /// Replicas running now.
    pub running: u32,
    /// Replicas whose health check passes (its service has one), or
    /// that run (it has none).
    pub healthy: u32,
}

/// One event of an environment.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EnvEventView {
    /// Unix seconds.
    pub at: u64,
    pub kind: String,
    pub service: Option<String>,
    pub replica: Option<String>,
    pub message: String,
}

/// An environment with its services, replicas and recent events.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EnvView {
    pub name: String,
    /// creating, ready, updating or removing.
    pub phase: String,
    /// Whether a previous version is kept for `rollback`.
    pub can_roll_back: bool,
    pub generation: u64,
    pub created_at: u64,
    pub updated_at: u64,
    pub services: Vec<EnvServiceView>,
    /// Each replica as its peer reports it.
    pub replicas: Vec<super::ContainerView>,
    /// Replicas without a container yet: where each would go now, or why
    /// it fits nowhere (each ruled-out peer and its reason).
    pub pending: Vec<ReplicaPlanView>,
    pub events: Vec<EnvEventView>,
}

fn env_view(
    state: &AppState,
    status: coop_orchestra::environments::EnvironmentStatus,
) -> Result<EnvView, ApiError> {
    let pending = plan_views(state, status.pending)?;
    let replicas: Vec<super::ContainerView> = status
        .replicas
        .iter()
        .map(|r| super::ContainerView::of(&r.status))
        .collect();
    let services = status
        .record
        .services
        .iter()
        .map(|(name, service)| EnvServiceView {
            name: name.clone(),
            desired: service.replicas,
            running: status
                .replicas
                .iter()
                .zip(&replicas)
                .filter(|(r, view)| r.service == *name && view.state == "running")
                .count() as u32,
            healthy: status
                .replicas
                .iter()
                .zip(&replicas)
                .filter(|(r, view)| {
                    r.service == *name
                        && view.state == "running"
                        && view.health.as_deref().is_none_or(|h| h == "healthy")
                })
                .count() as u32,
        })
        .collect();
    Ok(EnvView {
        pending,
        phase: match status.record.phase {
            coop_state::EnvPhase::Creating => "creating",
            coop_state::EnvPhase::Ready => "ready",
            coop_state::EnvPhase::Updating => "updating",
            coop_state::EnvPhase::Removing => "removing",
        }
        .to_string(),
        can_roll_back: status.record.previous.is_some(),
        name: status.record.name,
        generation: status.record.generation,
        created_at: status.record.created_at,
        updated_at: status.record.updated_at,
        services,
        replicas,
        events: status
            .events
            .into_iter()
            .map(|e| EnvEventView {
                at: e.at,
                kind: e.kind,
                service: e.service,
                replica: e.replica,
                message: e.message,
            })
            .collect(),
    })
}

/// Create an environment from a blueprint, or update the environment of
/// that name to it. Created: every replica must fit somewhere, then each
/// runs where the scheduler places it, dependencies first (waiting for the
/// state their dependants ask for); a replica that cannot start removes
/// what was created. Updated: only services whose definition changed are
/// replaced, one replica at a time, each ready before the next; the first
/// that is not stops the update and the error says which and why.
#[utoipa::path(post, path = "/v1/environments", tag = "environments",
    request_body = EnvRequest,
    responses((status = 200, body = EnvView), (status = 400, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    body: Result<Json<EnvRequest>, JsonRejection>,
) -> Result<Json<EnvView>, ApiError> {
    let Json(request) = body?;
    let blueprint = read_blueprint(&request.blueprint, &request.vars, &request.env_files)?;
    let compute = state.compute()?;
    let exists = state.control.store().environment(&request.name)?.is_some();
    let status = if exists {
        compute
            .update_environment(&request.name, &request.blueprint, &request.vars, &blueprint)
            .await?
    } else {
        compute
            .create_environment(&request.name, &request.blueprint, &request.vars, &blueprint)
            .await?
    };
    Ok(Json(env_view(&state, status)?))
}

/// Go back to the version before the environment's last update, replacing
/// changed services' replicas one at a time as an update does.
#[utoipa::path(post, path = "/v1/environments/{name}/rollback", tag = "environments",
    responses((status = 200, body = EnvView), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn rollback(
    State(state): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<EnvView>, ApiError> {
    let status = state.compute()?.rollback_environment(&name).await?;
    Ok(Json(env_view(&state, status)?))
}

/// List environments with their services' desired and running replicas.
#[utoipa::path(get, path = "/v1/environments", tag = "environments",
    responses((status = 200, body = Vec<EnvView>)), security(("bearer" = [])))]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<Vec<EnvView>>, ApiError> {
    let compute = state.compute()?;
    let mut views = Vec::new();
    for record in state.control.store().environments()? {
        views.push(env_view(
            &state,
            compute.environment_status(&record.name).await?,
        )?);
    }
    Ok(Json(views))
}

/// One environment: services, replicas as their peers report them, events.
#[utoipa::path(get, path = "/v1/environments/{name}", tag = "environments",
    responses((status = 200, body = EnvView), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn show(
    State(state): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<EnvView>, ApiError> {
    let status = state.compute()?.environment_status(&name).await?;
    Ok(Json(env_view(&state, status)?))
}

/// Take an environment down: every replica gets SIGTERM and `timeout`
/// seconds (10 by default) to exit, all at once, then is removed; then
/// the environment.
#[utoipa::path(delete, path = "/v1/environments/{name}", tag = "environments",
    params(super::containers::StopQuery),
    responses((status = 200), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn remove(
    State(state): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<super::containers::StopQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let grace = query.timeout.map_or(coop_orchestra::STOP_GRACE, |s| {
        std::time::Duration::from_secs(s.into())
    });
    let removed = state.compute()?.remove_environment(&name, grace).await?;
    Ok(Json(
        serde_json::json!({ "environment": name, "replicas_removed": removed }),
    ))
}

/// Body of `POST /v1/environments/{name}/scale`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleRequest {
    /// Service name to replica count.
    pub services: BTreeMap<String, u32>,
}

/// Set how many replicas services run: the highest indexes go first when
/// scaling down; new replicas are placed and started when scaling up.
#[utoipa::path(post, path = "/v1/environments/{name}/scale", tag = "environments",
    request_body = ScaleRequest,
    responses((status = 200, body = EnvView), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn scale(
    State(state): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    body: Result<Json<ScaleRequest>, JsonRejection>,
) -> Result<Json<EnvView>, ApiError> {
    let Json(request) = body?;
    if request.services.is_empty() {
        return Err(ApiError::BadRequest(
            "name at least one service and its count, e.g. web=3".into(),
        ));
    }
    let status = state
        .compute()?
        .scale_environment(&name, &request.services)
        .await?;
    Ok(Json(env_view(&state, status)?))
}

/// Query of `POST /v1/environments/{name}/restart`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct RestartQuery {
    /// Restart only this service's replicas.
    #[serde(default)]
    service: Option<String>,
}

/// Restart the replicas (all, or one service's) one at a time, each where
/// it runs; an event says `restarted` for each. Stops at the first replica
/// that cannot restart.
#[utoipa::path(post, path = "/v1/environments/{name}/restart", tag = "environments",
    params(RestartQuery),
    responses((status = 200, body = EnvView), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn restart(
    State(state): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<RestartQuery>,
) -> Result<Json<EnvView>, ApiError> {
    let status = state
        .compute()?
        .restart_environment(&name, query.service.as_deref())
        .await?;
    Ok(Json(env_view(&state, status)?))
}
