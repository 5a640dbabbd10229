//! The read cache of the serving peer: whole blocks, least recently used
//! out first, bounded by bytes (`coop up --cache-size`).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lru::LruCache;

use coop_state::BlockId;

/// Blocks read recently. A block's bytes never change once written (a new
/// version of an object gets new blocks), so entries need no invalidation.
#[derive(Clone)]
pub struct ReadCache {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    blocks: LruCache<BlockId, Bytes>,
    bytes: u64,
    budget: u64,
}

impl ReadCache {
    /// A cache holding at most `budget` bytes; 0 turns it off.
    pub fn new(budget: u64) -> Self {
        ReadCache {
            inner: Arc::new(Mutex::new(Inner {
                blocks: LruCache::unbounded(),
                bytes: 0,
                budget,
            })),
        }
    }

    pub fn get(&self, id: &BlockId) -> Option<Bytes> {
        let mut inner = self.inner.lock().ok()?;
        inner.blocks.get(id).cloned()
    }

    pub fn insert(&self, id: BlockId, block: Bytes) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let size = block.len() as u64;
        if size > inner.budget {
            return;
        }
        if let Some(old) = inner.blocks.put(id, block) {
            inner.bytes -= old.len() as u64;
        }
        inner.bytes += size;
        while inner.bytes > inner.budget {
            match inner.blocks.pop_lru() {
                Some((_, evicted)) => inner.bytes -= evicted.len() as u64,
                None => break,
            }
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.inner.lock().map(|i| i.bytes).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_beyond_budget() {
        let cache = ReadCache::new(10);
        cache.insert([1; 32], Bytes::from_static(b"aaaa"));
        cache.insert([2; 32], Bytes::from_static(b"bbbb"));
        assert!(cache.get(&[1; 32]).is_some());
        cache.insert([3; 32], Bytes::from_static(b"cccc"));
        // Block 2 was used least recently.
        assert!(cache.get(&[2; 32]).is_none());
        assert!(cache.get(&[1; 32]).is_some());
        assert_eq!(cache.bytes(), 8);
        cache.insert([4; 32], Bytes::from_static(b"far too large"));
        assert!(cache.get(&[4; 32]).is_none());
        let off = ReadCache::new(0);
        off.insert([1; 32], Bytes::from_static(b"a"));
        assert!(off.get(&[1; 32]).is_none());
    }
}
