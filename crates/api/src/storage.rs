//! `/v1/s3/keys`, `/v1/buckets` and `/v1/storage`: S3 access keys, buckets
//! with their grants, and the health of the cloud's storage.

use std::collections::{BTreeMap, HashSet};

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use coop_state::{BucketRecord, Command, Grant, S3KeyRecord};
use coop_store::{HealthCounts, Policy, layout_of};
use coop_types::{
    BlockHealth, BucketPatch, BucketRequest, BucketView, DiskView, GrantView, PeerId, PeerState,
    S3KeyCreated, S3KeyRequest, S3KeyView, StorageView, unix_now,
};

use crate::AppState;
use crate::error::ApiError;

/// The health counts of the store as the API shows them.
fn block_health(counts: HealthCounts) -> BlockHealth {
    BlockHealth {
        healthy: counts.healthy,
        degraded: counts.degraded,
        unavailable: counts.unavailable,
        lost: counts.lost,
    }
}

/// List S3 access keys (without secrets).
#[utoipa::path(get, path = "/v1/s3/keys", responses((status = 200, body = [S3KeyView])), security(("bearer" = [])))]
pub(crate) async fn list_keys(
    State(state): State<AppState>,
) -> Result<Json<Vec<S3KeyView>>, ApiError> {
    let keys = state.control.store().s3_keys()?;
    Ok(Json(
        keys.into_iter()
            .map(|k| S3KeyView {
                id: k.id,
                name: k.name,
                created_at: k.created_at,
                create_bucket: k.create_bucket,
            })
            .collect(),
    ))
}

/// Create an S3 access key; the secret is shown only in this answer.
#[utoipa::path(
    post,
    path = "/v1/s3/keys",
    request_body = S3KeyRequest,
    responses((status = 200, body = S3KeyCreated), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn create_key(
    State(state): State<AppState>,
    body: Result<Json<S3KeyRequest>, JsonRejection>,
) -> Result<Json<S3KeyCreated>, ApiError> {
    let Json(req) = body?;
    let record = S3KeyRecord::generate(&req.name, req.create_bucket, unix_now())
        .map_err(ApiError::BadRequest)?;
    let created = S3KeyCreated {
        id: record.id.clone(),
        secret: record.secret.clone(),
        name: req.name,
    };
    state.control.write(Command::CreateS3Key(record)).await?;
    Ok(Json(created))
}

/// Delete an S3 access key; its grants go with it.
#[utoipa::path(delete, path = "/v1/s3/keys/{id}", responses((status = 200), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn delete_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state
        .control
        .write(Command::DeleteS3Key { id: id.clone() })
        .await?;
    Ok(Json(serde_json::json!({ "deleted": id })))
}

fn parse_policy(text: &str) -> Result<Policy, ApiError> {
    text.parse::<Policy>()
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn bucket_view(state: &AppState, bucket: BucketRecord) -> Result<BucketView, ApiError> {
    let layout = match &bucket.policy {
        Some(p) => layout_of(parse_policy(p)?).to_string(),
        None => state
            .stripes
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), |s| s.layout_for(None).to_string()),
    };
    let (objects, bytes) = coop_store::bucket_usage(state.control.store(), &bucket.name)?;
    let usage = state.control.store().bucket_usage(&bucket.name)?;
    Ok(BucketView {
        quota: bucket.quota,
        usage,
        policy: bucket.policy.clone().unwrap_or_else(|| "default".into()),
        layout,
        zone_spread: bucket.zone_spread,
        objects,
        bytes,
        grants: bucket
            .grants
            .iter()
            .map(|(k, g)| {
                (
                    k.clone(),
                    GrantView {
                        read: g.read,
                        write: g.write,
                        owner: g.owner,
                    },
                )
            })
            .collect(),
        created_at: bucket.created_at,
        name: bucket.name,
    })
}

/// List buckets with their policies, sizes, quotas and grants.
#[utoipa::path(get, path = "/v1/buckets", responses((status = 200, body = [BucketView])), security(("bearer" = [])))]
pub(crate) async fn list_buckets(
    State(state): State<AppState>,
) -> Result<Json<Vec<BucketView>>, ApiError> {
    let buckets = state.control.store().buckets()?;
    let views = buckets
        .into_iter()
        .map(|b| bucket_view(&state, b))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(views))
}

/// Create a bucket.
#[utoipa::path(
    post,
    path = "/v1/buckets",
    request_body = BucketRequest,
    responses((status = 200, body = BucketView), (status = 400, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn create_bucket(
    State(state): State<AppState>,
    body: Result<Json<BucketRequest>, JsonRejection>,
) -> Result<Json<BucketView>, ApiError> {
    let Json(req) = body?;
    if !coop_state::valid_bucket_name(&req.name) {
        return Err(ApiError::BadRequest(format!(
            "invalid bucket name `{}`: use 3-63 characters of a-z, 0-9, `.` and `-`, starting and ending with a letter or digit, not shaped like an IP address",
            req.name
        )));
    }
    if let Some(policy) = &req.policy {
        parse_policy(policy)?;
    }
    let mut grants = BTreeMap::new();
    if let Some(owner) = &req.owner {
        if state.control.store().s3_key(owner)?.is_none() {
            return Err(ApiError::NotFound(format!(
                "no S3 key `{owner}`; create one with `coop s3 key create NAME`"
            )));
        }
        grants.insert(owner.clone(), Grant::ALL);
    }
    let record = BucketRecord {
        name: req.name.clone(),
        created_at: unix_now(),
        policy: req.policy.clone(),
        zone_spread: req.zone_spread,
        grants,
        quota: req.quota,
    };
    state
        .control
        .write(Command::CreateBucket(record.clone()))
        .await?;
    Ok(Json(bucket_view(&state, record)?))
}

/// The bucket `name`, after a read barrier so a change just made on
/// another peer shows.
async fn fresh_bucket(state: &AppState, name: &str) -> Result<BucketView, ApiError> {
    state.control.read_barrier().await?;
    let bucket = state.control.store().bucket(name)?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no bucket `{name}`; list buckets with `coop bucket ls`"
        ))
    })?;
    bucket_view(state, bucket)
}

/// One bucket with its policy, size, quota and grants.
#[utoipa::path(get, path = "/v1/buckets/{name}", responses((status = 200, body = BucketView), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn show_bucket(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<BucketView>, ApiError> {
    Ok(Json(fresh_bucket(&state, &name).await?))
}

/// Change a bucket's settings: its quota (`null` for none). A quota below
/// what the bucket holds refuses new writes only; nothing is deleted.
#[utoipa::path(
    patch,
    path = "/v1/buckets/{name}",
    request_body = BucketPatch,
    responses((status = 200, body = BucketView), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn update_bucket(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<BucketPatch>, JsonRejection>,
) -> Result<Json<BucketView>, ApiError> {
    let Json(patch) = body?;
    let Some(quota) = patch.quota else {
        return Err(ApiError::BadRequest(
            "nothing to change: give `quota` (bytes, or null for no quota)".into(),
        ));
    };
    state
        .control
        .write(Command::SetBucketQuota {
            bucket: name.clone(),
            quota,
        })
        .await?;
    Ok(Json(fresh_bucket(&state, &name).await?))
}

/// Delete an empty bucket.
#[utoipa::path(delete, path = "/v1/buckets/{name}", responses((status = 200), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn delete_bucket(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state
        .control
        .write(Command::DeleteBucket {
            name: name.clone(),
            now: unix_now(),
        })
        .await?;
    Ok(Json(serde_json::json!({ "deleted": name })))
}

/// Set what a key may do in a bucket (all false removes the grant).
#[utoipa::path(
    put,
    path = "/v1/buckets/{name}/grants/{key}",
    request_body = GrantView,
    responses((status = 200, body = BucketView), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn set_grant(
    State(state): State<AppState>,
    Path((name, key)): Path<(String, String)>,
    body: Result<Json<GrantView>, JsonRejection>,
) -> Result<Json<BucketView>, ApiError> {
    let Json(grant) = body?;
    let grant = (grant.read || grant.write || grant.owner).then_some(Grant {
        read: grant.read,
        write: grant.write,
        owner: grant.owner,
    });
    state
        .control
        .write(Command::SetGrant {
            bucket: name.clone(),
            key,
            grant,
        })
        .await?;
    Ok(Json(fresh_bucket(&state, &name).await?))
}

/// Disks, the default layout and the health of stored blocks.
#[utoipa::path(get, path = "/v1/storage", responses((status = 200, body = StorageView)), security(("bearer" = [])))]
pub(crate) async fn status(State(state): State<AppState>) -> Result<Json<StorageView>, ApiError> {
    let me = state.key.id();
    let store = state.control.store();
    let liveness = state.mesh.liveness();
    let peer_state = |peer: &PeerId| -> PeerState {
        if *peer == me {
            PeerState::Up
        } else {
            state.mesh.peer_state(peer)
        }
    };
    let mut disks = Vec::new();
    let mut seen = HashSet::new();
    for peer in store.peers()? {
        let id = peer.id();
        seen.insert(id);
        let reported = if id == me {
            state
                .disks
                .as_ref()
                .map(|d| d.statuses())
                .unwrap_or_default()
        } else {
            liveness
                .status(&id)
                .map(|(s, _)| s.disks)
                .unwrap_or_default()
        };
        for disk in reported.into_iter().filter(|d| !d.id.is_empty()) {
            disks.push(DiskView {
                peer: id.to_string(),
                peer_name: peer.cert.body.name.clone(),
                id: disk.id,
                path: disk.path,
                total_bytes: disk.total_bytes,
                used_bytes: disk.used_bytes,
                free_bytes: disk.free_bytes,
                state: peer_state(&id).to_string(),
            });
        }
    }
    let buckets = store.buckets()?.len();
    let health = state.health.report(store, peer_state)?;
    let (domains, default_layout) = match &state.stripes {
        Some(stripes) => (stripes.domains(), stripes.layout_for(None)),
        None => (0, layout_of(coop_store::default_policy(0))),
    };
    let warning = (default_layout.tolerates() < 2 || matches!(default_layout, coop_state::StripeLayout::Replicas { .. })).then(|| {
        format!(
            "only {domains} failure domain(s): new objects on the default policy get {default_layout}, which survives {} lost disk(s) or peer(s); add peers or disks for erasure coding with 2 parity shards",
            default_layout.tolerates()
        )
    });
    let mut counters: BTreeMap<String, u64> = state
        .store_metrics
        .as_ref()
        .map(|m| {
            m.snapshot()
                .into_iter()
                .map(|(name, _, value)| (name.trim_start_matches("coop_store_").to_owned(), value))
                .collect()
        })
        .unwrap_or_default();
    if let Some(stripes) = &state.stripes {
        counters.insert("cache_bytes".into(), stripes.cache_bytes());
    }
    let repair_pending = state.store_metrics.as_ref().map_or(0, |m| {
        m.repair_pending.load(std::sync::atomic::Ordering::Relaxed)
    });
    Ok(Json(StorageView {
        repair_pending,
        disks,
        domains,
        default_layout: default_layout.to_string(),
        warning,
        buckets,
        objects: health.object_count,
        bytes: health.object_bytes,
        blocks: block_health(health.blocks),
        object_health: block_health(health.objects),
        counters,
    }))
}
