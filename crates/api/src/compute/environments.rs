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
    let names: BTreeMap<String, String> = state
        .control
        .store()
        .peers()?
        .into_iter()
        .map(|r| (r.id().to_string(), r.cert.body.name.clone()))
        .collect();
    let replicas = planned
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
        .collect();
    Ok(Json(EnvPlanView {
        name: request.name,
        replicas,
        warnings: blueprint.warnings,
    }))
}
