//! Template blobs in the cloud's store. The importing peer cuts the blob
//! into blocks and stores them like object data (erasure-coded over the
//! cloud's disks); a peer that runs the template first reads the blocks
//! back, checks the content id and the importer's signature, and keeps the
//! blob in its local cache. So a template outlives the peer that imported
//! it, and a first start reads from the nearest shards.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use futures::stream::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::info;

use coop_compute::{ContentId, TempPath, blob_path};
use coop_state::{StateStore, TemplateEntry};
use coop_store::{BLOCK_SIZE, BlockStreamError, BlockWriter, Stripes, WrittenBlocks, spans};

use crate::error::ComputeError;

/// Blocks written or read at once: enough to keep every peer's disk busy,
/// few enough to bound memory at a few MiB.
const BLOCKS_IN_FLIGHT: usize = 8;

/// Stores the blob at `path` in the cloud's store under the cloud's
/// default layout. Returns once every block is durable.
pub async fn store_blob(stripes: &Stripes, path: &Path) -> Result<WrittenBlocks, ComputeError> {
    let io = |e: std::io::Error| {
        ComputeError::Internal(format!(
            "cannot read the template blob {}: {e}",
            path.display()
        ))
    };
    let mut file = tokio::fs::File::open(path).await.map_err(io)?;
    let layout = stripes.layout_for(None);
    let mut writer = BlockWriter::new(stripes, layout, false, BLOCKS_IN_FLIGHT);
    let mut chunk = vec![0u8; BLOCK_SIZE];
    loop {
        let n = file.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            break;
        }
        writer.push(&chunk[..n]).await.map_err(unstorable)?;
    }
    writer.finish().await.map_err(unstorable)
}

fn unstorable(err: coop_store::StripeWriteError) -> ComputeError {
    ComputeError::Unavailable(format!(
        "cannot store the template in the cloud's storage: {err}"
    ))
}

/// What a fetch moved.
#[derive(Debug)]
pub struct Fetched {
    pub bytes: u64,
    pub elapsed: Duration,
}

/// Reads `template`'s blob from the store into `blobs`, checking it
/// against the content id and the importer's signature before it becomes
/// visible there. Nothing is left behind when a check fails.
pub(crate) async fn fetch_blob(
    stripes: &Stripes,
    state: &StateStore,
    template: &TemplateEntry,
    blobs: &Path,
) -> Result<Fetched, ComputeError> {
    let label = format!("{}:{}", template.name, template.version);
    let id = ContentId::from_str(&template.content_id).map_err(|e| {
        ComputeError::Internal(format!("template {label} has a bad content id: {e}"))
    })?;
    crate::host::verify_template(template)
        .map_err(|e| ComputeError::Conflict(format!("template {label} does not verify: {e}")))?;
    if template.blocks.is_empty() && template.size_bytes > 0 {
        return Err(ComputeError::Unavailable(format!(
            "template {label} was recorded without its blob in the cloud's store; import it again"
        )));
    }
    let started = Instant::now();
    let target = blob_path(blobs, &id);
    let parent = target
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| blobs.to_path_buf());
    tokio::fs::create_dir_all(&parent)
        .await
        .map_err(|e| ComputeError::Internal(format!("cannot create {}: {e}", parent.display())))?;
    let partial = TempPath::new(parent.join(format!(
        ".{}.fetch-{}",
        id.short(),
        data_encoding::HEXLOWER.encode(&rand::random::<[u8; 6]>())
    )));
    let io = |e: std::io::Error| {
        ComputeError::Internal(format!("cannot write the template blob of {label}: {e}"))
    };
    let mut file = tokio::fs::File::create(partial.path()).await.map_err(io)?;
    let mut hasher = blake3::Hasher::new();
    let mut bytes = 0u64;
    let everything = spans(&template.blocks, &(0..template.size_bytes));
    let mut reading = stripes.read_stream(state, everything, BLOCKS_IN_FLIGHT, false);
    while let Some(read) = reading.next().await {
        let data = read.map_err(|e| match e {
            BlockStreamError::Read(err) => {
                ComputeError::Unavailable(format!("cannot read template {label}: {err}"))
            }
            other => ComputeError::Internal(format!("template {label}: {other}")),
        })?;
        hasher.update(&data);
        file.write_all(&data).await.map_err(io)?;
        bytes += data.len() as u64;
    }
    file.sync_all().await.map_err(io)?;
    drop(file);
    let got = ContentId::from(hasher.finalize());
    if got != id || bytes != template.size_bytes {
        return Err(ComputeError::Internal(format!(
            "the blob of template {label} read back from the store does not match its content id ({} bytes, id {}); the store may hold damaged shards",
            bytes,
            got.short()
        )));
    }
    tokio::fs::rename(partial.path(), &target)
        .await
        .map_err(io)?;
    partial.keep();
    let fetched = Fetched {
        bytes,
        elapsed: started.elapsed(),
    };
    info!(
        template = %label,
        mib = bytes as f64 / (1 << 20) as f64,
        secs = fetched.elapsed.as_secs_f64(),
        "fetched template from the cloud's store"
    );
    Ok(fetched)
}
