//! Byte streams over stripes: the one way data goes into the store as
//! blocks and comes back out, for S3 objects and template blobs alike.
//!
//! [`BlockWriter`] cuts whatever it is fed into [`BLOCK_SIZE`] blocks and
//! stores each as a stripe while the rest still streams in, a few at once;
//! nothing is visible until the caller records the blocks it returns.
//! [`Stripes::read_stream`] reads spans of recorded blocks back in order,
//! a few blocks ahead of the consumer.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::{self, FuturesOrdered, Stream, StreamExt};

use coop_state::{BlockRef, NewStripe, StateStore, StripeLayout};

use crate::stripes::{BLOCK_SIZE, StripeReadError, StripeWriteError, Stripes};

/// Blocks written at once unless the caller says otherwise: four 1 MiB
/// blocks keep every disk of a 4+2 cloud busy without holding much memory.
pub const WRITES_IN_FLIGHT: usize = 4;

/// What a [`BlockWriter`] stored: the blocks in order and their new
/// stripes, ready for the control-plane write that makes them visible.
#[derive(Debug, Default)]
pub struct WrittenBlocks {
    pub blocks: Vec<BlockRef>,
    pub stripes: Vec<NewStripe>,
}

/// Stores a stream of bytes as blocks of one layout.
pub struct BlockWriter {
    stripes: Stripes,
    layout: StripeLayout,
    zone_spread: bool,
    in_flight: usize,
    buffer: BytesMut,
    writing: FuturesOrdered<BoxFuture<'static, Result<NewStripe, StripeWriteError>>>,
    stored: Vec<NewStripe>,
}

impl BlockWriter {
    /// A writer storing blocks of `layout` (spread over zones first when
    /// `zone_spread`), `in_flight` at a time.
    pub fn new(
        stripes: &Stripes,
        layout: StripeLayout,
        zone_spread: bool,
        in_flight: usize,
    ) -> Self {
        BlockWriter {
            stripes: stripes.clone(),
            layout,
            zone_spread,
            in_flight: in_flight.max(1),
            buffer: BytesMut::with_capacity(BLOCK_SIZE),
            writing: FuturesOrdered::new(),
            stored: Vec::new(),
        }
    }

    /// Takes more bytes; waits when `in_flight` blocks are being stored.
    pub async fn push(&mut self, mut chunk: &[u8]) -> Result<(), StripeWriteError> {
        while !chunk.is_empty() {
            let take = (BLOCK_SIZE - self.buffer.len()).min(chunk.len());
            self.buffer.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.buffer.len() == BLOCK_SIZE {
                let block =
                    std::mem::replace(&mut self.buffer, BytesMut::with_capacity(BLOCK_SIZE));
                self.start(block.freeze());
                if self.writing.len() >= self.in_flight
                    && let Some(done) = self.writing.next().await
                {
                    self.stored.push(done?);
                }
            }
        }
        Ok(())
    }

    fn start(&mut self, block: Bytes) {
        let stripes = self.stripes.clone();
        let (layout, zone_spread) = (self.layout, self.zone_spread);
        self.writing.push_back(Box::pin(async move {
            stripes.write(block, layout, zone_spread).await
        }));
    }

    /// Stores what is left and returns every block, once all are durable.
    pub async fn finish(mut self) -> Result<WrittenBlocks, StripeWriteError> {
        if !self.buffer.is_empty() {
            let last = std::mem::take(&mut self.buffer);
            self.start(last.freeze());
        }
        while let Some(done) = self.writing.next().await {
            self.stored.push(done?);
        }
        Ok(WrittenBlocks {
            blocks: self
                .stored
                .iter()
                .map(|s| BlockRef {
                    id: s.id,
                    len: s.stripe.len,
                })
                .collect(),
            stripes: self.stored,
        })
    }
}

/// Why a block of a stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BlockStreamError {
    #[error("reading the control plane failed: {0}")]
    Record(String),
    #[error("a block has no stripe record; the data is damaged")]
    NoRecord,
    #[error(transparent)]
    Read(#[from] StripeReadError),
    #[error("a block read back with {got} bytes instead of {expected}")]
    Short { got: usize, expected: usize },
}

/// The blocks that hold `range` of data made of `blocks`, each with the
/// part of it inside the range, in block offsets.
pub fn spans(blocks: &[BlockRef], range: &Range<u64>) -> Vec<(BlockRef, Range<usize>)> {
    let mut spans = Vec::new();
    let mut offset = 0u64;
    for block in blocks {
        let len = u64::from(block.len);
        let (start, end) = (offset, offset + len);
        offset = end;
        if end <= range.start || start >= range.end {
            continue;
        }
        let from = range.start.max(start) - start;
        let to = range.end.min(end) - start;
        spans.push((*block, from as usize..to as usize));
    }
    spans
}

impl Stripes {
    /// Reads `spans` of blocks in order, `ahead` blocks ahead of the
    /// consumer. `cached` reads go through (and fill) the read cache; a
    /// one-off bulk read (a template blob) passes it by.
    pub fn read_stream(
        &self,
        store: &StateStore,
        spans: Vec<(BlockRef, Range<usize>)>,
        ahead: usize,
        cached: bool,
    ) -> impl Stream<Item = Result<Bytes, BlockStreamError>> + Send + 'static {
        let stripes = self.clone();
        let store = store.clone();
        stream::iter(spans)
            .map(move |(block, span)| {
                let stripes = stripes.clone();
                let store = store.clone();
                async move {
                    let stripe = store
                        .stripe(&block.id)
                        .map_err(|e| BlockStreamError::Record(e.to_string()))?
                        .ok_or(BlockStreamError::NoRecord)?;
                    let bytes = if cached {
                        stripes.read(&block.id, &stripe).await?
                    } else {
                        stripes.read_uncached(&block.id, &stripe).await?
                    };
                    if bytes.len() != block.len as usize || span.end > bytes.len() {
                        return Err(BlockStreamError::Short {
                            got: bytes.len(),
                            expected: block.len as usize,
                        });
                    }
                    Ok(bytes.slice(span))
                }
            })
            .buffered(ahead.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_map_onto_the_blocks_that_hold_them() {
        let blocks: Vec<BlockRef> = [10u32, 10, 5]
            .iter()
            .enumerate()
            .map(|(i, len)| BlockRef {
                id: [i as u8; 32],
                len: *len,
            })
            .collect();
        let spans = |r: Range<u64>| -> Vec<(u8, usize, usize)> {
            spans(&blocks, &r)
                .into_iter()
                .map(|(b, s)| (b.id[0], s.start, s.end))
                .collect()
        };
        assert_eq!(spans(0..25), vec![(0, 0, 10), (1, 0, 10), (2, 0, 5)]);
        assert_eq!(spans(5..15), vec![(0, 5, 10), (1, 0, 5)]);
        assert_eq!(spans(10..11), vec![(1, 0, 1)]);
        assert_eq!(spans(24..25), vec![(2, 4, 5)]);
        assert!(spans(25..25).is_empty());
    }
}
