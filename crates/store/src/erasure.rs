//! Reed-Solomon coding of one block into `k` data and `m` parity shards,
//! each with a BLAKE3 checksum that is verified before the shard is used.
//!
//! A corrupt shard is treated exactly like a missing one: the block decodes
//! as long as any `k` shards verify. A healthy block needs no decoding at
//! all: its data shards are the block, in order.

use reed_solomon_erasure::galois_8::ReedSolomon;

/// Reed-Solomon over GF(2^8) allows at most 256 shards in a stripe.
const MAX_SHARDS: usize = 256;

/// One shard of a coded block.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// Position in the stripe: `0..k` data, `k..k+m` parity.
    pub index: usize,
    pub bytes: Vec<u8>,
    /// BLAKE3 of `bytes`, computed when the shard was made.
    pub checksum: [u8; 32],
}

impl Shard {
    /// Whether the bytes still match the checksum.
    pub fn verify(&self) -> bool {
        *blake3::hash(&self.bytes).as_bytes() == self.checksum
    }
}

/// Why coding failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("invalid layout {k}+{m}: need k >= 1, m >= 0 and k + m <= {MAX_SHARDS}")]
    Layout { k: usize, m: usize },
    #[error("cannot decode: only {usable} of the {needed} shards needed verify")]
    TooFewShards { usable: usize, needed: usize },
    #[error("shard {index} is out of range for a {total}-shard stripe")]
    BadIndex { index: usize, total: usize },
    #[error("shards of one block differ in size")]
    UnevenShards,
    #[error("reed-solomon: {0}")]
    Internal(String),
}

/// A `k + m` Reed-Solomon codec.
pub struct Codec {
    k: usize,
    m: usize,
    rs: Option<ReedSolomon>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Codec({}+{})", self.k, self.m)
    }
}

impl Codec {
    /// A codec with `k` data and `m` parity shards. `m = 0` is plain
    /// striping (no redundancy).
    pub fn new(k: usize, m: usize) -> Result<Self, CodecError> {
        if k == 0 || k + m > MAX_SHARDS {
            return Err(CodecError::Layout { k, m });
        }
        let rs = if m == 0 {
            None
        } else {
            Some(ReedSolomon::new(k, m).map_err(|e| CodecError::Internal(format!("{e:?}")))?)
        };
        Ok(Codec { k, m, rs })
    }

    pub fn data_shards(&self) -> usize {
        self.k
    }

    pub fn parity_shards(&self) -> usize {
        self.m
    }

    /// Size of each shard for a block of `len` bytes.
    pub fn shard_len(&self, len: usize) -> usize {
        len.div_ceil(self.k).max(1)
    }

    /// Codes `block` into `k + m` shards. The last data shard is padded
    /// with zeros; [`Codec::decode`] needs the original length to cut it.
    pub fn encode(&self, block: &[u8]) -> Result<Vec<Shard>, CodecError> {
        let mut shards = Vec::new();
        self.encode_into(block, &mut shards)?;
        Ok(shards)
    }

    /// Like [`Codec::encode`], but reuses the buffers of `shards` from an
    /// earlier call. Fresh multi-hundred-KiB buffers come from the kernel
    /// page by page on every call, which costs more than the coding
    /// itself; a writer streaming blocks keeps one set and reuses it.
    pub fn encode_into(&self, block: &[u8], shards: &mut Vec<Shard>) -> Result<(), CodecError> {
        let shard_len = self.shard_len(block.len());
        let total = self.k + self.m;
        shards.truncate(total);
        while shards.len() < total {
            shards.push(Shard {
                index: shards.len(),
                bytes: Vec::new(),
                checksum: [0; 32],
            });
        }
        for (i, shard) in shards.iter_mut().enumerate() {
            shard.index = i;
            shard.bytes.clear();
            if i < self.k {
                let start = (i * shard_len).min(block.len());
                let end = ((i + 1) * shard_len).min(block.len());
                shard.bytes.extend_from_slice(&block[start..end]);
            }
            shard.bytes.resize(shard_len, 0);
        }
        if let Some(rs) = &self.rs {
            let mut views: Vec<&mut [u8]> =
                shards.iter_mut().map(|s| s.bytes.as_mut_slice()).collect();
            rs.encode(&mut views)
                .map_err(|e| CodecError::Internal(format!("{e:?}")))?;
        }
        for shard in shards.iter_mut() {
            shard.checksum = *blake3::hash(&shard.bytes).as_bytes();
        }
        Ok(())
    }

    /// Rebuilds the block of `len` bytes from whatever shards are at hand.
    /// Shards whose checksum fails are dropped first; any `k` good ones
    /// suffice. When all data shards are good, nothing is decoded.
    pub fn decode(&self, shards: &[Shard], len: usize) -> Result<Vec<u8>, CodecError> {
        let total = self.k + self.m;
        let mut slots: Vec<Option<Vec<u8>>> = vec![None; total];
        let mut shard_len = None;
        for shard in shards {
            if shard.index >= total {
                return Err(CodecError::BadIndex {
                    index: shard.index,
                    total,
                });
            }
            if !shard.verify() {
                continue;
            }
            match shard_len {
                None => shard_len = Some(shard.bytes.len()),
                Some(l) if l != shard.bytes.len() => return Err(CodecError::UnevenShards),
                Some(_) => {}
            }
            slots[shard.index] = Some(shard.bytes.clone());
        }
        let usable = slots.iter().filter(|s| s.is_some()).count();
        if usable < self.k {
            return Err(CodecError::TooFewShards {
                usable,
                needed: self.k,
            });
        }
        if slots[..self.k].iter().any(Option::is_none) {
            let rs = self.rs.as_ref().ok_or(CodecError::TooFewShards {
                usable,
                needed: self.k,
            })?;
            rs.reconstruct_data(&mut slots)
                .map_err(|e| CodecError::Internal(format!("{e:?}")))?;
        }
        let mut block = Vec::with_capacity(len);
        for slot in slots.into_iter().take(self.k) {
            let bytes = slot.ok_or(CodecError::TooFewShards {
                usable,
                needed: self.k,
            })?;
            block.extend_from_slice(&bytes);
        }
        block.truncate(len);
        Ok(block)
    }

    /// Recomputes the shards at `missing` indexes (lost or corrupt) from
    /// the good ones, for repair.
    pub fn rebuild(
        &self,
        shards: &[Shard],
        len: usize,
        missing: &[usize],
    ) -> Result<Vec<Shard>, CodecError> {
        let block = self.decode(shards, len)?;
        let all = self.encode(&block)?;
        Ok(all
            .into_iter()
            .filter(|s| missing.contains(&s.index))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn any_two_lost_shards_of_4_plus_2_still_decode() {
        let codec = Codec::new(4, 2).unwrap();
        for len in [0, 1, 3, 4, 1000, 1 << 20] {
            let block = sample(len);
            let shards = codec.encode(&block).unwrap();
            assert_eq!(shards.len(), 6);
            for a in 0..6 {
                for b in a + 1..6 {
                    let kept: Vec<Shard> = shards
                        .iter()
                        .filter(|s| s.index != a && s.index != b)
                        .cloned()
                        .collect();
                    assert_eq!(
                        codec.decode(&kept, len).unwrap(),
                        block,
                        "lost {a},{b} len {len}"
                    );
                }
            }
            let kept: Vec<Shard> = shards.iter().skip(3).cloned().collect();
            assert!(matches!(
                codec.decode(&kept, len),
                Err(CodecError::TooFewShards {
                    usable: 3,
                    needed: 4
                })
            ));
        }
    }

    #[test]
    fn corrupt_shards_are_detected_and_rebuilt() {
        let codec = Codec::new(4, 2).unwrap();
        let block = sample(10_000);
        let mut shards = codec.encode(&block).unwrap();
        shards[1].bytes[7] ^= 0x40;
        shards[4].bytes[0] ^= 1;
        assert!(!shards[1].verify());
        assert_eq!(codec.decode(&shards, block.len()).unwrap(), block);
        let rebuilt = codec.rebuild(&shards, block.len(), &[1, 4]).unwrap();
        let fresh = codec.encode(&block).unwrap();
        assert_eq!(rebuilt, vec![fresh[1].clone(), fresh[4].clone()]);
        // A third bad shard is one too many.
        shards[2].bytes[0] ^= 1;
        assert!(codec.decode(&shards, block.len()).is_err());
    }

    #[test]
    fn reused_buffers_give_the_same_shards() {
        let codec = Codec::new(4, 2).unwrap();
        let mut shards = Vec::new();
        for len in [1 << 20, 10, 1 << 16] {
            let block = sample(len);
            codec.encode_into(&block, &mut shards).unwrap();
            assert_eq!(shards, codec.encode(&block).unwrap());
            assert_eq!(codec.decode(&shards[2..], len).unwrap(), block);
        }
    }

    #[test]
    fn bad_layouts_and_inputs_are_refused() {
        assert!(Codec::new(0, 2).is_err());
        assert!(Codec::new(250, 7).is_err());
        let plain = Codec::new(3, 0).unwrap();
        let block = sample(100);
        let shards = plain.encode(&block).unwrap();
        assert_eq!(plain.decode(&shards, 100).unwrap(), block);
        assert!(plain.decode(&shards[1..], 100).is_err());
        let mut odd = shards.clone();
        odd[0].index = 9;
        assert!(matches!(
            plain.decode(&odd, 100),
            Err(CodecError::BadIndex { .. })
        ));
    }
}
