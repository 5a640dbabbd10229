//! Object bytes in and out: a request body cut into blocks that are stored
//! as stripes while the rest still streams in, and blocks read back as a
//! response body, nearest shards first, a couple of blocks ahead.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use futures::stream::{self, FuturesOrdered, StreamExt};
use md5::{Digest, Md5};
use s3s::dto::StreamingBlob;
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};

use coop_state::{BlockRef, NewStripe, ObjectRecord, StateStore, StripeLayout};
use coop_store::{BLOCK_SIZE, Stripes};

use crate::errors::{internal, stripe_read, stripe_write};

/// Blocks being stored at once per request. Four 1 MiB blocks keep every
/// disk of a 4+2 cloud busy without holding much memory.
const WRITES_IN_FLIGHT: usize = 4;

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
    let mut buffer = BytesMut::with_capacity(BLOCK_SIZE);
    let mut writing = FuturesOrdered::new();
    let mut stored = Vec::new();
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
            let mut chunk: &[u8] = &chunk;
            while !chunk.is_empty() {
                let take = (BLOCK_SIZE - buffer.len()).min(chunk.len());
                buffer.extend_from_slice(&chunk[..take]);
                chunk = &chunk[take..];
                if buffer.len() == BLOCK_SIZE {
                    let block = std::mem::replace(&mut buffer, BytesMut::with_capacity(BLOCK_SIZE));
                    writing.push_back(write_block(stripes, block.freeze(), layout, zone_spread));
                    if writing.len() >= WRITES_IN_FLIGHT
                        && let Some(done) = writing.next().await
                    {
                        stored.push(done?);
                    }
                }
            }
        }
    }
    if !buffer.is_empty() {
        writing.push_back(write_block(stripes, buffer.freeze(), layout, zone_spread));
    }
    while let Some(done) = writing.next().await {
        stored.push(done?);
    }
    let blocks = stored
        .iter()
        .map(|s| BlockRef {
            id: s.id,
            len: s.stripe.len,
        })
        .collect();
    Ok(Stored {
        size,
        md5: md5.finalize().into(),
        blocks,
        stripes: stored,
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

async fn write_block(
    stripes: &Stripes,
    block: Bytes,
    layout: StripeLayout,
    zone_spread: bool,
) -> S3Result<NewStripe> {
    stripes
        .write(block, layout, zone_spread)
        .await
        .map_err(stripe_write)
}

/// The blocks of `object` that hold `range`, each with the part of it that
/// falls inside: `(block, start in block, end in block)`.
fn pieces(object: &ObjectRecord, range: &Range<u64>) -> Vec<(BlockRef, usize, usize)> {
    let mut pieces = Vec::new();
    let mut offset = 0u64;
    for block in &object.blocks {
        let len = u64::from(block.len);
        let (start, end) = (offset, offset + len);
        offset = end;
        if end <= range.start || start >= range.end {
            continue;
        }
        let from = range.start.max(start) - start;
        let to = range.end.min(end) - start;
        pieces.push((*block, from as usize, to as usize));
    }
    pieces
}

/// A response body streaming `range` of `object`.
pub(crate) fn read_body(
    stripes: &Stripes,
    store: &StateStore,
    object: &ObjectRecord,
    range: Range<u64>,
) -> StreamingBlob {
    let stripes = stripes.clone();
    let store = store.clone();
    let blocks = stream::iter(pieces(object, &range)).map(move |(block, from, to)| {
        let stripes = stripes.clone();
        let store = store.clone();
        async move {
            let stripe = store
                .stripe(&block.id)
                .map_err(|e| ReadFailure(internal(e)))?
                .ok_or_else(|| {
                    ReadFailure(internal("a block of the object has no stripe record"))
                })?;
            let bytes = stripes
                .read(&block.id, &stripe)
                .await
                .map_err(|e| ReadFailure(stripe_read(e)))?;
            if to > bytes.len() || from > to {
                return Err(ReadFailure(internal("a block is shorter than its record")));
            }
            Ok::<Bytes, ReadFailure>(bytes.slice(from..to))
        }
    });
    StreamingBlob::wrap(blocks.buffered(READS_AHEAD))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn object(lens: &[u32]) -> ObjectRecord {
        ObjectRecord {
            size: lens.iter().map(|l| u64::from(*l)).sum(),
            etag: String::new(),
            content_type: None,
            metadata: Default::default(),
            modified_ms: 0,
            blocks: lens
                .iter()
                .enumerate()
                .map(|(i, len)| BlockRef {
                    id: [i as u8; 32],
                    len: *len,
                })
                .collect(),
            parts: Vec::new(),
        }
    }

    #[test]
    fn ranges_map_onto_the_blocks_that_hold_them() {
        let o = object(&[10, 10, 5]);
        let spans = |r: Range<u64>| -> Vec<(u8, usize, usize)> {
            pieces(&o, &r)
                .into_iter()
                .map(|(b, f, t)| (b.id[0], f, t))
                .collect()
        };
        assert_eq!(spans(0..25), vec![(0, 0, 10), (1, 0, 10), (2, 0, 5)]);
        assert_eq!(spans(5..15), vec![(0, 5, 10), (1, 0, 5)]);
        assert_eq!(spans(10..11), vec![(1, 0, 1)]);
        assert_eq!(spans(24..25), vec![(2, 4, 5)]);
        assert!(spans(25..25).is_empty());
    }
}
