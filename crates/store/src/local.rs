//! The disks this peer contributes (`coop up --disk PATH[:CAPACITY]`).
//!
//! Each disk directory carries a small id file, so a disk keeps its identity
//! when flags are reordered or the directory is moved, and a directory that
//! belongs to another peer is refused instead of silently shared.

use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use coop_types::{DiskStatus, PeerId};

use crate::disk::{BlockId, DiskError, DiskStore};

/// Name of the id file inside a disk directory.
const ID_FILE: &str = "coop-disk.id";

/// A `--disk` argument: a directory and an optional capacity cap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    pub path: PathBuf,
    /// At most this many bytes of shards; `None` means the filesystem's
    /// free space is the limit.
    pub capacity: Option<u64>,
}

/// Why a `--disk` argument or directory is unusable.
#[derive(Debug, thiserror::Error)]
pub enum LocalDiskError {
    #[error("`{0}` is not a disk: use PATH or PATH:CAPACITY (e.g. /srv/disk1:500G)")]
    Syntax(String),
    #[error("`{0}` is not a capacity: use a number with an optional K, M, G or T suffix")]
    Capacity(String),
    #[error(
        "disk {path} belongs to peer {owner}, not to this one; give this peer its own directory"
    )]
    Foreign { path: PathBuf, owner: String },
    #[error("disk {0} is given twice")]
    Duplicate(PathBuf),
    #[error("cannot use disk {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Disk(#[from] DiskError),
}

/// Parses `512M`, `10G`, `2T`, `1GiB` or a plain byte count.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: f64 = number.parse().ok()?;
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit.trim_end_matches("IB").trim_end_matches('B');
    let scale: u64 = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return None,
    };
    let bytes = number * scale as f64;
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}

impl FromStr for DiskSpec {
    type Err = LocalDiskError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(LocalDiskError::Syntax(text.into()));
        }
        // A capacity is whatever follows the last `:` when it parses as one;
        // otherwise the whole text is the path.
        if let Some((path, cap)) = text.rsplit_once(':')
            && cap.starts_with(|c: char| c.is_ascii_digit())
        {
            if path.is_empty() {
                return Err(LocalDiskError::Syntax(text.into()));
            }
            let capacity = parse_size(cap).ok_or_else(|| LocalDiskError::Capacity(cap.into()))?;
            return Ok(DiskSpec {
                path: PathBuf::from(path),
                capacity: Some(capacity),
            });
        }
        Ok(DiskSpec {
            path: PathBuf::from(text),
            capacity: None,
        })
    }
}

/// One contributed disk.
#[derive(Debug)]
pub struct LocalDisk {
    /// Short random id, unique on this peer.
    pub id: String,
    pub spec: DiskSpec,
    pub store: DiskStore,
    used: AtomicU64,
}

impl LocalDisk {
    /// Bytes of shard files on this disk, as last counted.
    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Recounts the bytes of shard files (done at start and by scrub).
    pub fn recount(&self) {
        self.used.store(
            dir_bytes(&self.store.root().join("shards")),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn add_used(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Deletes a shard and takes its bytes off the count.
    pub(crate) fn remove(&self, block: &BlockId, index: usize) -> Result<(), DiskError> {
        let freed = self.store.delete(block, index)?;
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(freed))
            });
        Ok(())
    }

    /// What this disk reports in the peer's status.
    pub fn status(&self) -> DiskStatus {
        let (fs_total, fs_free) = coop_types::fs::usage(&self.spec.path)
            .map_or((0, 0), |sizes| (sizes.total, sizes.available));
        let used = self.used_bytes();
        let (total, free) = match self.spec.capacity {
            Some(cap) => (cap, cap.saturating_sub(used).min(fs_free)),
            None => (fs_total, fs_free),
        };
        DiskStatus {
            id: self.id.clone(),
            path: self.spec.path.display().to_string(),
            total_bytes: total,
            free_bytes: free,
            used_bytes: used,
        }
    }
}

/// The disks of this peer.
#[derive(Clone, Debug)]
pub struct LocalDisks {
    disks: Arc<Vec<LocalDisk>>,
}

impl LocalDisks {
    /// Opens (creating when missing) every disk directory for peer `me`.
    pub fn open(me: PeerId, specs: &[DiskSpec]) -> Result<Self, LocalDiskError> {
        let mut disks: Vec<LocalDisk> = Vec::with_capacity(specs.len());
        for spec in specs {
            if disks.iter().any(|d| d.spec.path == spec.path) {
                return Err(LocalDiskError::Duplicate(spec.path.clone()));
            }
            let id = claim(&spec.path, me)?;
            let disk = LocalDisk {
                id,
                spec: spec.clone(),
                store: DiskStore::open(&spec.path)?,
                used: AtomicU64::new(0),
            };
            disk.recount();
            disks.push(disk);
        }
        Ok(LocalDisks {
            disks: Arc::new(disks),
        })
    }

    pub fn get(&self, id: &str) -> Option<&LocalDisk> {
        self.disks.iter().find(|d| d.id == id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &LocalDisk> {
        self.disks.iter()
    }

    pub fn statuses(&self) -> Vec<DiskStatus> {
        self.disks.iter().map(LocalDisk::status).collect()
    }
}

/// Reads the disk's id file, or writes a new one naming `me` as the owner.
fn claim(path: &Path, me: PeerId) -> Result<String, LocalDiskError> {
    let io = |source| LocalDiskError::Io {
        path: path.to_path_buf(),
        source,
    };
    fs::create_dir_all(path).map_err(io)?;
    let file = path.join(ID_FILE);
    match fs::read_to_string(&file) {
        Ok(text) => {
            let mut words = text.split_whitespace();
            let (Some(id), Some(owner)) = (words.next(), words.next()) else {
                return Err(io(std::io::Error::other(format!(
                    "{} is damaged; remove it only if the directory holds no shards",
                    file.display()
                ))));
            };
            if owner != me.to_string() {
                return Err(LocalDiskError::Foreign {
                    path: path.to_path_buf(),
                    owner: owner.to_owned(),
                });
            }
            Ok(id.to_owned())
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let bytes: [u8; 4] = rand::random();
            let id = data_encoding::HEXLOWER.encode(&bytes);
            let tmp = path.join(format!("{ID_FILE}.tmp"));
            fs::write(&tmp, format!("{id} {me}\n")).map_err(io)?;
            fs::rename(&tmp, &file).map_err(io)?;
            Ok(id)
        }
        Err(err) => Err(io(err)),
    }
}

/// Sum of file sizes under `dir`, two levels deep (the shard layout).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            total += dir_bytes(&entry.path());
        } else {
            total += meta.len();
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_specs_and_sizes_parse() {
        assert_eq!(
            "/srv/d1".parse::<DiskSpec>().unwrap(),
            DiskSpec {
                path: "/srv/d1".into(),
                capacity: None
            }
        );
        assert_eq!(
            "/srv/d1:500G".parse::<DiskSpec>().unwrap().capacity,
            Some(500 << 30)
        );
        assert_eq!(parse_size("1.5K"), Some(1536));
        assert_eq!(parse_size("256MiB"), Some(256 << 20));
        assert_eq!(parse_size("12"), Some(12));
        assert!(parse_size("12Q").is_none());
        assert!(matches!(
            "/srv/d1:5X".parse::<DiskSpec>(),
            Err(LocalDiskError::Capacity(_))
        ));
        assert!(":5G".parse::<DiskSpec>().is_err());
    }

    #[test]
    fn a_disk_keeps_its_id_and_refuses_another_peer() {
        let dir = std::env::temp_dir().join(format!("coop-local-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let spec = DiskSpec {
            path: dir.clone(),
            capacity: None,
        };
        let me = PeerId([1; 32]);
        let first = LocalDisks::open(me, std::slice::from_ref(&spec)).unwrap();
        let id = first.iter().next().unwrap().id.clone();
        let again = LocalDisks::open(me, std::slice::from_ref(&spec)).unwrap();
        assert_eq!(again.iter().next().unwrap().id, id);
        let other = LocalDisks::open(PeerId([2; 32]), std::slice::from_ref(&spec));
        assert!(matches!(other, Err(LocalDiskError::Foreign { .. })));
        assert!(matches!(
            LocalDisks::open(me, &[spec.clone(), spec]),
            Err(LocalDiskError::Duplicate(_))
        ));
        let _ = fs::remove_dir_all(&dir);
    }
}
