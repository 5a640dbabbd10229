//! The canonical template blob and its content id.
//!
//! A blob is a zstd-compressed tar of the rootfs written so that the same
//! tree always gives the same bytes, whatever the source was (a directory,
//! a tar in any order, an OCI image):
//!
//! - entries sorted by path bytes (a directory before what it holds), the
//!   root first as `./`, directories as `name/`;
//! - GNU headers holding only type, path, link target, mode (`& 0o7777`),
//!   uid, gid, mtime (whole seconds) and size; no user or group names, no
//!   device numbers, no extended attributes;
//! - symlinks always mode `0777` (Linux ignores a symlink's mode);
//! - of the paths sharing one inode (hardlinks), the first in path order
//!   holds the bytes and the others are hardlinks to it;
//! - zstd level [`ZSTD_LEVEL`], single-threaded, with a frame checksum.
//!
//! The content id is the BLAKE3 of the blob's bytes. It depends on the
//! zstd library version too; that is fine, since peers fetch the blob
//! itself, never rebuild it.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::archive::ArchiveError;
use crate::paths::EntryPath;
use crate::spool::{Exact, HashingWriter, TempFile};
use crate::tree::{DataSource, Meta, Node, Tree};

/// zstd level of blobs: level 3 (zstd's default) compresses a rootfs to
/// within a few percent of level 9 at several times the speed on the 2-core
/// peers coop targets, and a blob is compressed once, fetched rarely.
pub const ZSTD_LEVEL: i32 = 3;
/// Buffer for copying file bytes into the blob.
const COPY_BUFFER: usize = 128 * 1024;

/// The id of a template blob: BLAKE3 of its bytes. Shown as 64 hex
/// characters; raw bytes on the wire.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentId(pub [u8; 32]);

impl ContentId {
    /// The id of the given blob bytes.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        ContentId(*blake3::hash(bytes).as_bytes())
    }

    /// The id of the blob stored at `path`, read in a streaming way.
    pub fn of_file(path: &Path) -> io::Result<Self> {
        let mut hasher = blake3::Hasher::new();
        let mut file = File::open(path)?;
        io::copy(&mut file, &mut hasher)?;
        Ok(ContentId(*hasher.finalize().as_bytes()))
    }

    /// The raw hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 12 hex characters, for tables and log lines.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(12);
        s
    }
}

impl From<blake3::Hash> for ContentId {
    fn from(hash: blake3::Hash) -> Self {
        ContentId(*hash.as_bytes())
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({})", self.short())
    }
}

/// A string that is not 64 hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a content id: expected 64 hex characters")]
pub struct ContentIdParseError(pub String);

impl FromStr for ContentId {
    type Err = ContentIdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ContentIdParseError(s.to_string());
        let bytes = data_encoding::HEXLOWER_PERMISSIVE
            .decode(s.as_bytes())
            .map_err(|_| bad())?;
        Ok(ContentId(bytes.try_into().map_err(|_| bad())?))
    }
}

// Hex in human-readable formats (JSON, TOML), raw bytes on the wire.
impl Serialize for ContentId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_string())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for ContentId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(deserializer).map(ContentId)
        }
    }
}

/// Where the blob with id `id` is kept in a blob directory.
pub fn blob_path(dir: &Path, id: &ContentId) -> PathBuf {
    dir.join(format!("{id}.tar.zst"))
}

/// A blob written to its directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenBlob {
    pub content_id: ContentId,
    pub path: PathBuf,
    pub size_bytes: u64,
    /// Entries in the blob, the root included.
    pub entries: u64,
}

/// A reader that remembers whether it failed, so an error from
/// `Builder::append_data` can be blamed on the source or the destination.
struct Blame<R> {
    inner: R,
    failed: bool,
}

impl<R: Read> Read for Blame<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|_| self.failed = true)
    }
}

fn header(kind: tar::EntryType, meta: &Meta, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(meta.mode & 0o7777);
    header.set_uid(meta.uid);
    header.set_gid(meta.gid);
    header.set_mtime(meta.mtime);
    header.set_size(size);
    header
}

fn as_path(bytes: &[u8]) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(bytes))
}

/// Writes the canonical blob of `tree` (whose implied directories must be
/// filled in) into `dir` as `<content id>.tar.zst`, reading file bytes from
/// their sources (`spools` for [`DataSource::Spool`]). The blob is written
/// to a temporary file in `dir` and renamed when complete.
pub fn write_blob(tree: &Tree, spools: &[File], dir: &Path) -> Result<WrittenBlob, ArchiveError> {
    let write_err = ArchiveError::io(dir, "write the blob in");
    let mut temp = TempFile::create(dir, "blob").map_err(write_err)?;
    let file = temp
        .file()
        .and_then(|f| f.try_clone())
        .map_err(ArchiveError::io(dir, "write the blob in"))?;
    let hashing = HashingWriter::new(BufWriter::new(file));
    let mut encoder = zstd::stream::write::Encoder::new(hashing, ZSTD_LEVEL)
        .map_err(ArchiveError::io(dir, "write the blob in"))?;
    encoder
        .include_checksum(true)
        .map_err(ArchiveError::io(dir, "write the blob in"))?;
    let mut builder = tar::Builder::new(encoder);

    // The holder of each inode's bytes is its first path in sorted order.
    let mut holders: Vec<Option<&EntryPath>> = vec![None; tree.files().len()];
    for (path, node) in tree.nodes() {
        if let Node::File(index) = node
            && let Some(slot) = holders.get_mut(*index)
            && slot.is_none()
        {
            *slot = Some(path);
        }
    }

    let mut entries = 0u64;
    for (path, node) in tree.nodes() {
        entries += 1;
        let name = path.tar_name(matches!(node, Node::Dir(_)));
        let appended = match node {
            Node::Dir(meta) => {
                let mut h = header(tar::EntryType::Directory, meta, 0);
                builder.append_data(&mut h, as_path(&name), io::empty())
            }
            Node::Symlink { meta, target } => {
                let meta = Meta {
                    mode: 0o777,
                    ..*meta
                };
                let mut h = header(tar::EntryType::Symlink, &meta, 0);
                builder.append_link(&mut h, as_path(&name), as_path(target))
            }
            Node::File(index) => {
                let data = &tree.files()[*index];
                match holders.get(*index).copied().flatten() {
                    Some(holder) if holder != path => {
                        let mut h = header(tar::EntryType::Link, &data.meta, 0);
                        let target = holder.tar_name(false);
                        builder.append_link(&mut h, as_path(&name), as_path(&target))
                    }
                    _ => {
                        let mut h = header(tar::EntryType::Regular, &data.meta, data.size);
                        let (reader, source) = open_data(&data.source, spools, data.size)?;
                        let mut reader = Blame {
                            inner: Exact::new(reader, data.size),
                            failed: false,
                        };
                        let result = builder.append_data(&mut h, as_path(&name), &mut reader);
                        if let Err(e) = &result
                            && reader.failed
                        {
                            return Err(ArchiveError::SourceData {
                                entry: path.to_string(),
                                source_path: source,
                                reason: e.to_string(),
                            });
                        }
                        result
                    }
                }
            }
        };
        appended.map_err(ArchiveError::io(dir, "write the blob in"))?;
    }

    let encoder = builder
        .into_inner()
        .map_err(ArchiveError::io(dir, "write the blob in"))?;
    let hashing = encoder
        .finish()
        .map_err(ArchiveError::io(dir, "write the blob in"))?;
    let (buffered, hash, size_bytes) = hashing.finish();
    buffered
        .into_inner()
        .map_err(|e| ArchiveError::io(dir, "write the blob in")(e.into_error()))?;
    let content_id = ContentId::from(hash);
    let path = blob_path(dir, &content_id);
    temp.persist(&path)
        .map_err(ArchiveError::io(&path, "write"))?;
    tracing::debug!(id = %content_id, entries, size_bytes, "template blob written");
    Ok(WrittenBlob {
        content_id,
        path,
        size_bytes,
        entries,
    })
}

/// A reader of a regular file's bytes and a name of where they come from.
fn open_data<'a>(
    source: &DataSource,
    spools: &'a [File],
    size: u64,
) -> Result<(Box<dyn Read + 'a>, String), ArchiveError> {
    match source {
        DataSource::Path(path) => {
            // Never follow a symlink swapped in since the directory walk.
            let file = File::options()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .map_err(ArchiveError::io(path, "read"))?;
            Ok((
                Box::new(BufReader::with_capacity(COPY_BUFFER, file)),
                path.display().to_string(),
            ))
        }
        DataSource::Spool { spool, offset } => {
            let mut file = spools.get(*spool).ok_or_else(|| ArchiveError::SourceData {
                entry: String::new(),
                source_path: format!("spool {spool}"),
                reason: "internal: unknown spool".into(),
            })?;
            file.seek(SeekFrom::Start(*offset))
                .map_err(ArchiveError::io(Path::new("(archive)"), "read"))?;
            Ok((
                Box::new(BufReader::with_capacity(COPY_BUFFER, file.take(size))),
                "the archive".to_string(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ids_print_and_parse() {
        let id = ContentId::of_bytes(b"blob");
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<ContentId>().unwrap(), id);
        assert!("xyz".parse::<ContentId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<ContentId>(&json).unwrap(), id);
        assert_eq!(id.short().len(), 12);
    }
}
