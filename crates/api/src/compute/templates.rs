//! `/v1/templates`: import (the body is the archive, streamed to disk),
//! list, show and remove templates.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use futures::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use utoipa::IntoParams;

use super::views::TemplateView;
use crate::AppState;
use crate::error::ApiError;
use coop_compute::TempPath;

/// Query of `POST /v1/templates`.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct ImportQuery {
    /// Template name: 1-63 of a-z, 0-9 and `-`.
    name: String,
    /// Version [default: latest].
    #[serde(default)]
    version: Option<String>,
    /// `rootfs` (a tar, tar.gz or tar.zst of a rootfs; the default) or `oci`
    /// (a `docker save` or OCI layout archive).
    #[serde(default)]
    kind: Option<String>,
}

/// Query selecting one version.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct VersionQuery {
    /// A version; without it, every version (show) or `latest` (remove).
    #[serde(default)]
    version: Option<String>,
}

/// Import a template from the archive in the request body.
#[utoipa::path(post, path = "/v1/templates", tag = "compute", params(ImportQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "a tar / tar.gz / tar.zst of a rootfs, or an OCI archive with kind=oci"),
    responses((status = 200, body = TemplateView), (status = 400, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn import(
    State(state): State<AppState>,
    Query(query): Query<ImportQuery>,
    body: Body,
) -> Result<Json<TemplateView>, ApiError> {
    let host = state.compute()?.host().clone();
    let version = query
        .version
        .unwrap_or_else(|| coop_compute::DEFAULT_VERSION.to_string());
    coop_compute::validate_name(&query.name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    coop_compute::validate_version(&version).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let oci = match query.kind.as_deref() {
        None | Some("rootfs") => false,
        Some("oci") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "unknown template kind `{other}`: use rootfs or oci"
            )));
        }
    };
    if state
        .control
        .store()
        .template(&query.name, &version)?
        .is_some()
    {
        return Err(ApiError::Conflict(format!(
            "template {}:{version} already exists; remove it first or import under another version",
            query.name
        )));
    }
    let dir = host.uploads_dir().to_path_buf();
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| ApiError::Internal(format!("cannot create {}: {e}", dir.display())))?;
    let spool = TempPath::new(dir.join(format!(
        "{}-{}.upload",
        query.name,
        data_encoding::HEXLOWER.encode(&rand::random::<[u8; 8]>())
    )));
    let mut file = tokio::fs::File::create(spool.path()).await.map_err(|e| {
        ApiError::Internal(format!("cannot create {}: {e}", spool.path().display()))
    })?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("the upload broke off: {e}")))?;
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::Internal(format!("cannot spool the upload: {e}")))?;
    }
    file.flush()
        .await
        .map_err(|e| ApiError::Internal(format!("cannot spool the upload: {e}")))?;
    drop(file);
    let entry = state
        .compute()?
        .import_template(&query.name, &version, spool.path(), oci)
        .await?;
    drop(spool);
    Ok(Json(TemplateView::of(&entry)))
}

/// List every template version of the cloud.
#[utoipa::path(get, path = "/v1/templates", tag = "compute",
    responses((status = 200, body = Vec<TemplateView>)), security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
) -> Result<Json<Vec<TemplateView>>, ApiError> {
    let templates = state.control.store().templates()?;
    Ok(Json(templates.iter().map(TemplateView::of).collect()))
}

/// Show the versions of one template.
#[utoipa::path(get, path = "/v1/templates/{name}", tag = "compute", params(VersionQuery),
    responses((status = 200, body = Vec<TemplateView>), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<VersionQuery>,
) -> Result<Json<Vec<TemplateView>>, ApiError> {
    let found: Vec<TemplateView> = state
        .control
        .store()
        .templates()?
        .iter()
        .filter(|t| t.name == name && query.version.as_ref().is_none_or(|v| *v == t.version))
        .map(TemplateView::of)
        .collect();
    if found.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no template {name}{}; list templates with `coop template ls`",
            query.version.map(|v| format!(":{v}")).unwrap_or_default()
        )));
    }
    Ok(Json(found))
}

/// Remove a template version (refused while a container uses it).
#[utoipa::path(delete, path = "/v1/templates/{name}", tag = "compute", params(VersionQuery),
    responses((status = 200, body = TemplateView), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<VersionQuery>,
) -> Result<Json<TemplateView>, ApiError> {
    let entry = state
        .compute()?
        .remove_template(&name, query.version.as_deref())
        .await?;
    Ok(Json(TemplateView::of(&entry)))
}
