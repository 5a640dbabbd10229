//! Object bytes in and out: a request body cut into blocks that are stored
//! as stripes while the rest still streams in, and blocks read back as a
//! response body, nearest shards first, a couple of blocks ahead.

use std::ops::Range;

use bytes::Bytes;
use futures::stream::StreamExt;
use md5::{Digest, Md5};
use s3s::dto::StreamingBlob;
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};

use coop_state::{BlockRef, NewStripe, ObjectRecord, StateStore, StripeLayout};
use coop_store::{BlockStreamError, BlockWriter, Stripes, WRITES_IN_FLIGHT, spans};

use crate::errors::{internal, stripe_read, stripe_write};

/// Blocks read ahead of the client per GET.
const READS_AHEAD: usize = 2;

/// What storing a body produced.
pub(crate) struct Stored {
    pub size: u64,
    pub md5: [u8; 16],
    pub blocks: Vec<BlockRef>,
    pub stripes: Vec<NewStripe>,
}

impl Stored {
    pub(crate) fn etag(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.md5)
    }
}

/// Stores `body` as blocks of `layout`. Returns once every block is durable.
/// A body longer than `limit` is refused with `EntityTooLarge`.
pub(crate) async fn store_body(
    stripes: &Stripes,
    layout: StripeLayout,
    zone_spread: bool,
    body: Option<StreamingBlob>,
    limit: u64,
) -> S3Result<Stored> {
    let mut md5 = Md5::new();
    let mut size: u64 = 0;
    let mut writer = BlockWriter::new(stripes, layout, zone_spread, WRITES_IN_FLIGHT);
    if let Some(mut body) = body {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| body_error(&*e))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(s3_error!(
                    EntityTooLarge,
                    "the body is larger than the {limit} bytes allowed in one request"
                ));
            }
            md5.update(&chunk);
            writer.push(&chunk).await.map_err(stripe_write)?;
        }
    }
    let written = writer.finish().await.map_err(stripe_write)?;
    Ok(Stored {
        size,
        md5: md5.finalize().into(),
        blocks: written.blocks,
        stripes: written.stripes,
    })
}

/// The S3 error for a request body that failed while streaming in. `s3s`
/// checks payload hashes and chunk signatures as the body is read; its
/// error types are private, so they are told apart by their messages.
fn body_error(err: &(dyn std::error::Error + 'static)) -> S3Error {
    let text = err.to_string();
    if text.contains("Sha256Mismatch") {
        let code =
            S3ErrorCode::from_bytes(b"XAmzContentSHA256Mismatch").unwrap_or(S3ErrorCode::BadDigest);
        let mut err = S3Error::with_message(
            code,
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        );
        err.set_status_code(http::StatusCode::BAD_REQUEST);
        err
    } else if text.contains("SignatureMismatch") {
        s3_error!(
            SignatureDoesNotMatch,
            "The signature of a chunk of the aws-chunked body does not match."
        )
    } else {
        s3_error!(
            IncompleteBody,
            "The request body ended early or was malformed: {text}"
        )
    }
}

/// A response body streaming `range` of `object`.
pub(crate) fn read_body(
    stripes: &Stripes,
    store: &StateStore,
    object: &ObjectRecord,
    range: Range<u64>,
) -> StreamingBlob {
    let blocks = stripes
        .read_stream(store, spans(&object.blocks, &range), READS_AHEAD, true)
        .map(|read| {
            read.map_err(|err| {
                ReadFailure(match err {
                    BlockStreamError::Read(err) => stripe_read(err),
                    other => internal(other),
                })
            })
        });
    StreamingBlob::wrap(blocks)
}

/// Reads `range` of `object` into memory (copies of parts).
pub(crate) async fn read_all(
    stripes: &Stripes,
    store: &StateStore,
    object: &ObjectRecord,
    range: Range<u64>,
) -> S3Result<Vec<Bytes>> {
    let mut body = read_body(stripes, store, object, range);
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.push(chunk.map_err(|e| internal(format!("reading the source: {e}")))?);
    }
    Ok(out)
}

/// A block that could not be read after the response started.
#[derive(Debug)]
struct ReadFailure(S3Error);

impl std::fmt::Display for ReadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}",
            self.0.message().unwrap_or("a block could not be read")
        )
    }
}

impl std::error::Error for ReadFailure {}
