//! Shards on one local disk directory.
//!
//! Each shard is one file, `<root>/shards/<first two hex of block>/<block>.<index>`,
//! holding a small header (magic, format version, shard index, payload
//! length, BLAKE3 checksum) followed by the payload. Writes go to a
//! temporary file that is synced and renamed into place, so a crash leaves
//! the old shard or the new one, never half of one. Reads verify the
//! checksum, so a flipped bit on disk is reported, not returned.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::erasure::Shard;

/// Identifies a file as a coop shard and versions its layout.
const MAGIC: &[u8; 4] = b"cps1";
/// magic (4) + index (2) + payload length (8) + checksum (32).
const HEADER_LEN: usize = 4 + 2 + 8 + 32;

/// The id of a block: BLAKE3 of its content, so equal blocks share shards.
pub type BlockId = [u8; 32];

/// What went wrong with a shard on disk.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("shard file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("shard index {0} does not fit the on-disk format")]
    IndexTooLarge(usize),
}

/// The shards kept in one directory (one disk).
#[derive(Clone, Debug)]
pub struct DiskStore {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DiskError + '_ {
    move |source| DiskError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl DiskStore {
    /// Opens (creating if needed) a shard directory under `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, DiskError> {
        let root = root.into();
        let shards = root.join("shards");
        fs::create_dir_all(&shards).map_err(io(&shards))?;
        Ok(DiskStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, block: &BlockId, index: usize) -> PathBuf {
        let hex = blake3::Hash::from_bytes(*block).to_hex();
        self.root
            .join("shards")
            .join(&hex.as_str()[..2])
            .join(format!("{}.{index}", hex.as_str()))
    }

    /// Writes a shard durably (synced before this returns).
    pub fn put(&self, block: &BlockId, shard: &Shard) -> Result<(), DiskError> {
        let index =
            u16::try_from(shard.index).map_err(|_| DiskError::IndexTooLarge(shard.index))?;
        let path = self.path(block, shard.index);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let tmp = path.with_extension(format!("{}.tmp", shard.index));
        {
            let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
            let mut header = Vec::with_capacity(HEADER_LEN);
            header.extend_from_slice(MAGIC);
            header.extend_from_slice(&index.to_le_bytes());
            header.extend_from_slice(&(shard.bytes.len() as u64).to_le_bytes());
            header.extend_from_slice(&shard.checksum);
            file.write_all(&header).map_err(io(&tmp))?;
            file.write_all(&shard.bytes).map_err(io(&tmp))?;
            file.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        // The rename is durable only once the directory entry is.
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))?;
        Ok(())
    }

    /// Reads and verifies a shard. `Ok(None)` when it is not on this disk.
    pub fn get(&self, block: &BlockId, index: usize) -> Result<Option<Shard>, DiskError> {
        let path = self.path(block, index);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(io(&path)(err)),
        };
        let corrupt = |reason: &str| DiskError::Corrupt {
            path: path.clone(),
            reason: reason.to_string(),
        };
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
            return Err(corrupt("not a coop shard (bad header)"));
        }
        let stored_index = u16::from_le_bytes([bytes[4], bytes[5]]) as usize;
        let mut len_bytes = [0u8; 8];
        len_bytes.copy_from_slice(&bytes[6..14]);
        let len = u64::from_le_bytes(len_bytes);
        let mut checksum = [0u8; 32];
        checksum.copy_from_slice(&bytes[14..HEADER_LEN]);
        if stored_index != index {
            return Err(corrupt(
                "shard index in the header does not match the file name",
            ));
        }
        if (bytes.len() - HEADER_LEN) as u64 != len {
            return Err(corrupt(
                "payload length does not match the header (truncated?)",
            ));
        }
        let shard = Shard {
            index,
            bytes: bytes[HEADER_LEN..].to_vec(),
            checksum,
        };
        if !shard.verify() {
            return Err(corrupt("checksum mismatch (bit rot?)"));
        }
        Ok(Some(shard))
    }

    /// Removes a shard; removing one that is not there is not an error.
    /// How long ago the shard file was last written, if it exists.
    pub fn age(&self, block: &BlockId, index: usize) -> Option<std::time::Duration> {
        let modified = fs::metadata(self.path(block, index))
            .ok()?
            .modified()
            .ok()?;
        Some(modified.elapsed().unwrap_or_default())
    }

    /// Whether a shard file is there with at least a header: a cheap check
    /// for repair (the scrub verifies contents).
    pub fn has(&self, block: &BlockId, index: usize) -> bool {
        fs::metadata(self.path(block, index)).is_ok_and(|m| m.len() >= HEADER_LEN as u64)
    }

    /// Deletes a shard if it is there; returns the payload bytes freed.
    pub fn delete(&self, block: &BlockId, index: usize) -> Result<u64, DiskError> {
        let path = self.path(block, index);
        let len = fs::metadata(&path).map_or(0, |m| m.len());
        match fs::remove_file(&path) {
            Err(err) if err.kind() != ErrorKind::NotFound => Err(io(&path)(err)),
            Err(_) => Ok(0),
            Ok(()) => Ok(len.saturating_sub(HEADER_LEN as u64)),
        }
    }

    /// Every `(block, index)` stored here, for scrub and repair scans.
    /// Stray files (temporaries of a crashed write, foreign names) are skipped.
    pub fn list(&self) -> Result<Vec<(BlockId, usize)>, DiskError> {
        let shards = self.root.join("shards");
        let mut out = Vec::new();
        for dir in fs::read_dir(&shards).map_err(io(&shards))? {
            let dir = dir.map_err(io(&shards))?.path();
            if !dir.is_dir() {
                continue;
            }
            for entry in fs::read_dir(&dir).map_err(io(&dir))? {
                let name = entry.map_err(io(&dir))?.file_name();
                let Some(name) = name.to_str() else { continue };
                let Some((hex, index)) = name.split_once('.') else {
                    continue;
                };
                let (Ok(hash), Ok(index)) = (blake3::Hash::from_hex(hex), index.parse::<usize>())
                else {
                    continue;
                };
                out.push((*hash.as_bytes(), index));
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Codec;

    fn temp(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("coop-disk-{label}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn shards_round_trip_and_damage_is_reported() {
        let root = temp("roundtrip");
        let disk = DiskStore::open(&root).unwrap();
        let block = b"hello coop".repeat(1000);
        let id: BlockId = *blake3::hash(&block).as_bytes();
        let codec = Codec::new(4, 2).unwrap();
        let shards = codec.encode(&block).unwrap();
        for s in &shards {
            disk.put(&id, s).unwrap();
        }
        assert_eq!(disk.list().unwrap().len(), 6);
        let back: Vec<Shard> = (0..6).map(|i| disk.get(&id, i).unwrap().unwrap()).collect();
        assert_eq!(back, shards);
        assert!(disk.get(&id, 9).unwrap().is_none());

        // Flip a payload byte: reported as corrupt, and decoding around it works.
        let path = disk.path(&id, 1);
        let mut raw = fs::read(&path).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 0x01;
        fs::write(&path, &raw).unwrap();
        assert!(matches!(disk.get(&id, 1), Err(DiskError::Corrupt { .. })));
        // Truncate another one.
        let path = disk.path(&id, 2);
        let raw = fs::read(&path).unwrap();
        fs::write(&path, &raw[..raw.len() / 2]).unwrap();
        assert!(matches!(disk.get(&id, 2), Err(DiskError::Corrupt { .. })));
        let good: Vec<Shard> = (0..6)
            .filter_map(|i| disk.get(&id, i).ok().flatten())
            .collect();
        assert_eq!(good.len(), 4);
        assert_eq!(codec.decode(&good, block.len()).unwrap(), block);

        disk.delete(&id, 1).unwrap();
        disk.delete(&id, 1).unwrap();
        assert!(disk.get(&id, 1).unwrap().is_none());
        // A stray temporary file is not listed as a shard.
        fs::write(disk.path(&id, 3).with_extension("3.tmp"), b"x").unwrap();
        assert_eq!(disk.list().unwrap().len(), 5);
        fs::remove_dir_all(&root).unwrap();
    }
}
