//! The objects of a bucket for the console and scripts with an API token:
//! list a "folder" (keys folded at `/`), upload, download and delete one
//! object. The same records and blocks S3 reads and writes: an object put
//! here is served by S3, and the other way round. S3 stays the interface
//! for applications (with its keys, grants and the rest of its API).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use coop_state::{BucketRecord, Command, ObjectRecord};
use coop_store::{BlockWriter, Stripes, WRITES_IN_FLIGHT, spans};
use coop_types::{unix_now, unix_now_ms};

use crate::AppState;
use crate::error::ApiError;

/// The most keys and folders one listing returns.
const PAGE: usize = 1000;
/// The largest object one upload takes (S3's limit for a single PUT).
const MAX_UPLOAD: u64 = 5 << 30;
/// S3's limit on a key's length in bytes.
const MAX_KEY: usize = 1024;
/// Blocks read ahead of a download.
const READS_AHEAD: usize = 2;

/// Where a listing starts.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Only keys under this prefix (a "folder" ends with `/`).
    pub prefix: Option<String>,
    /// Only keys and folders after this one (the `next` of a truncated page).
    pub after: Option<String>,
}

/// One object.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ObjectView {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub content_type: Option<String>,
    /// Unix milliseconds.
    pub modified_ms: u64,
}

/// One "folder" of a bucket: the keys right under a prefix, and the
/// prefixes one `/` deeper.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ObjectListView {
    pub bucket: String,
    pub prefix: String,
    /// Sub-folders, each ending with `/`.
    pub folders: Vec<String>,
    pub objects: Vec<ObjectView>,
    /// Where the next page starts, when this one is not the last.
    pub next: Option<String>,
}

fn view(key: String, object: &ObjectRecord) -> ObjectView {
    ObjectView {
        key,
        size: object.size,
        etag: object.etag.clone(),
        content_type: object.content_type.clone(),
        modified_ms: object.modified_ms,
    }
}

fn stripes(state: &AppState) -> Result<&Stripes, ApiError> {
    state
        .stripes
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("this peer serves no storage".into()))
}

fn bucket(state: &AppState, name: &str) -> Result<BucketRecord, ApiError> {
    state
        .control
        .store()
        .bucket(name)?
        .ok_or_else(|| ApiError::NotFound(format!("no bucket named `{name}`")))
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(ApiError::BadRequest(format!(
            "an object key has 1-{MAX_KEY} bytes; this one has {}",
            key.len()
        )));
    }
    Ok(())
}

/// List one folder of a bucket.
#[utoipa::path(
    get,
    path = "/v1/buckets/{name}/objects",
    params(("name" = String, Path), ListQuery),
    responses((status = 200, body = ObjectListView)),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<ObjectListView>, ApiError> {
    bucket(&state, &name)?;
    let prefix = query.prefix.unwrap_or_default();
    let page = state
        .control
        .store()
        .list_page(&name, &prefix, Some("/"), query.after, PAGE)?;
    Ok(Json(ObjectListView {
        bucket: name,
        prefix,
        next: page.truncated.then_some(page.last).flatten(),
        folders: page.prefixes,
        objects: page
            .objects
            .into_iter()
            .map(|(key, object)| view(key, &object))
            .collect(),
    }))
}

/// Upload an object (the request body), replacing one of the same key.
/// Refused with 403 `quota_exceeded` when the bucket's quota has no room.
#[utoipa::path(
    put,
    path = "/v1/buckets/{name}/objects/{key}",
    params(("name" = String, Path), ("key" = String, Path, description = "The object's key; may hold `/`.")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = ObjectView), (status = 403, description = "The bucket's quota has no room for the object", body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn put(
    State(state): State<AppState>,
    Path((name, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ObjectView>, ApiError> {
    check_key(&key)?;
    let bucket = bucket(&state, &name)?;
    let stripes = stripes(&state)?;
    // Refused now rather than after every byte is stored, when the length
    // is known; the control plane decides again at the commit.
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared {
        state
            .control
            .store()
            .object_fits(&bucket, &key, len)?
            .map_err(ApiError::from)?;
    }
    let layout = stripes
        .layout_for_bucket(&bucket)
        .map_err(|e| ApiError::Internal(format!("bucket {name}'s policy: {e}")))?;
    let mut writer = BlockWriter::new(stripes, layout, bucket.zone_spread, WRITES_IN_FLIGHT);
    let mut md5 = Md5::new();
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("the upload broke off: {e}")))?;
        size += chunk.len() as u64;
        if size > MAX_UPLOAD {
            return Err(ApiError::BadRequest(format!(
                "an upload here takes at most {MAX_UPLOAD} bytes; use S3's multipart upload for more"
            )));
        }
        md5.update(&chunk);
        writer
            .push(&chunk)
            .await
            .map_err(|e| ApiError::Unavailable(format!("cannot store the object: {e}")))?;
    }
    let written = writer
        .finish()
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot store the object: {e}")))?;
    let object = ObjectRecord {
        size,
        etag: data_encoding::HEXLOWER.encode(&md5.finalize()),
        content_type: headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && *v != "application/octet-stream")
            .map(String::from),
        metadata: Default::default(),
        modified_ms: unix_now_ms(),
        blocks: written.blocks,
        parts: Vec::new(),
    };
    let shown = view(key.clone(), &object);
    state
        .control
        .write(Command::PutObject {
            bucket: name,
            key,
            object,
            stripes: written.stripes,
            now: unix_now(),
        })
        .await?;
    Ok(Json(shown))
}

/// Download an object.
#[utoipa::path(
    get,
    path = "/v1/buckets/{name}/objects/{key}",
    params(("name" = String, Path), ("key" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>)),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path((name, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_key(&key)?;
    let (object, body) = read(&state, &name, &key)?;
    let file = key.rsplit('/').next().unwrap_or(&key);
    let disposition = format!("attachment; filename*=UTF-8''{}", percent_encode(file));
    let content_type = object
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    Ok((
        [
            (CONTENT_TYPE, content_type),
            (CONTENT_LENGTH, object.size.to_string()),
            (CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// An object's record and its bytes as a streaming body.
pub(crate) fn read(
    state: &AppState,
    name: &str,
    key: &str,
) -> Result<(ObjectRecord, Body), ApiError> {
    bucket(state, name)?;
    let stripes = stripes(state)?;
    let store = state.control.store();
    let object = store
        .object(name, key)?
        .ok_or_else(|| ApiError::NotFound(format!("no object `{key}` in bucket `{name}`")))?;
    let blocks = stripes.read_stream(
        store,
        spans(&object.blocks, &(0..object.size)),
        READS_AHEAD,
        true,
    );
    Ok((object, Body::from_stream(blocks)))
}

/// `text` with every byte but RFC 3986's unreserved ones as `%XX` (for
/// `filename*=UTF-8''...`).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Delete an object.
#[utoipa::path(
    delete,
    path = "/v1/buckets/{name}/objects/{key}",
    params(("name" = String, Path), ("key" = String, Path)),
    responses((status = 200, body = ObjectView)),
    security(("bearer" = []))
)]
pub(crate) async fn remove(
    State(state): State<AppState>,
    Path((name, key)): Path<(String, String)>,
) -> Result<Json<ObjectView>, ApiError> {
    check_key(&key)?;
    bucket(&state, &name)?;
    let object = state
        .control
        .store()
        .object(&name, &key)?
        .ok_or_else(|| ApiError::NotFound(format!("no object `{key}` in bucket `{name}`")))?;
    state
        .control
        .write(Command::DeleteObjects {
            bucket: name,
            keys: vec![key.clone()],
            now: unix_now(),
        })
        .await?;
    Ok(Json(view(key, &object)))
}
