//! Unpacking a template blob into the local cache, where containers'
//! overlay filesystems find it: `<cache>/<content id>/rootfs`.
//!
//! The blob is never trusted, even though it came from this crate's writer:
//! its BLAKE3 must equal the expected content id (checked before anything
//! is written, and again over the bytes actually unpacked), and every entry
//! is checked again (see [`crate::paths`]). Beyond that, the unpacker only
//! creates: each entry's parent must be a directory it created earlier in
//! this unpack, files are opened with `O_CREAT|O_EXCL|O_NOFOLLOW`, and
//! hardlinks may only name a regular file it created earlier. So no entry
//! can make it write through a symlink or outside the temporary directory.
//!
//! The tree is built in a temporary sibling (`<cache>/<id>/.rootfs-…`) and
//! renamed to `rootfs` when complete, so a reader sees all of it or
//! nothing; a second unpack of the same id is a no-op. Modes and mtimes are
//! always restored; ownership only when running as root (a non-root unpack
//! owns every file itself). Nothing is fsynced: a cache entry lost in a
//! crash is unpacked again from the blob.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Permissions};
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use filetime::FileTime;

use crate::blob::ContentId;
use crate::paths::{EntryPath, PathRule, check_symlink_target, lossy};
use crate::spool::temp_name;
use crate::tree::Meta;

/// A blob that could not be unpacked, and why.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: io::Error,
    },
    #[error(
        "blob {path} has content id {actual}, not the expected {expected}; it is corrupt or not this template, fetch it again"
    )]
    WrongContent {
        path: String,
        expected: ContentId,
        actual: ContentId,
    },
    #[error("blob {path} is not a valid template blob: {reason}; fetch it again")]
    Corrupt { path: String, reason: String },
    #[error("blob {path}: entry `{entry}` is refused: {rule}")]
    Unsafe {
        path: String,
        entry: String,
        rule: PathRule,
    },
}

/// The cached rootfs of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unpacked {
    /// `<cache>/<content id>/rootfs`.
    pub rootfs: PathBuf,
    /// False when the rootfs was already there (nothing was done).
    pub fresh: bool,
}

/// Where the rootfs of `id` is (or would be) in `cache`, unpacked with
/// owners shifted by `id_shift` (see [`crate::runtime::userns`]).
pub fn rootfs_path(cache: &Path, id: &ContentId, id_shift: u32) -> PathBuf {
    let name = if id_shift == 0 {
        id.to_string()
    } else {
        format!("{id}-ids{id_shift}")
    };
    cache.join(name).join("rootfs")
}

/// Unpacks the blob at `blob` (which must have content id `id`) into
/// `<cache>/<id>/rootfs`, unless it is already there. With `id_shift`,
/// every owner is shifted into the containers' id range.
pub fn unpack_blob(
    blob: &Path,
    id: &ContentId,
    cache: &Path,
    id_shift: u32,
) -> Result<Unpacked, UnpackError> {
    let rootfs = rootfs_path(cache, id, id_shift);
    if rootfs.is_dir() {
        return Ok(Unpacked {
            rootfs,
            fresh: false,
        });
    }
    let actual = ContentId::of_file(blob).map_err(io_err(blob, "read"))?;
    if actual != *id {
        return Err(UnpackError::WrongContent {
            path: blob.display().to_string(),
            expected: *id,
            actual,
        });
    }
    let holder = rootfs.parent().unwrap_or(cache).to_path_buf();
    fs::create_dir_all(&holder).map_err(io_err(&holder, "create"))?;
    let staging = TempDir::create(&holder)?;

    let mut hashing = HashingReader {
        inner: File::open(blob).map_err(io_err(blob, "read"))?,
        hasher: blake3::Hasher::new(),
    };
    let decoder = zstd::stream::read::Decoder::new(&mut hashing).map_err(|e| corrupt(blob, e))?;
    let mut unpacker = Unpacker::new(blob, staging.path(), id_shift)?;
    let mut archive = tar::Archive::new(decoder);
    for entry in archive.entries().map_err(|e| corrupt(blob, e))? {
        let entry = entry.map_err(|e| corrupt(blob, e))?;
        unpacker.entry(entry)?;
    }
    // Read to the end so the hash covers every byte of the blob.
    let mut decoder = archive.into_inner();
    io::copy(&mut decoder, &mut io::sink()).map_err(|e| corrupt(blob, e))?;
    drop(decoder);
    io::copy(&mut hashing, &mut io::sink()).map_err(io_err(blob, "read"))?;
    let unpacked = ContentId::from(hashing.hasher.finalize());
    if unpacked != *id {
        return Err(UnpackError::WrongContent {
            path: blob.display().to_string(),
            expected: *id,
            actual: unpacked,
        });
    }
    unpacker.finish()?;

    match fs::rename(staging.path(), &rootfs) {
        Ok(()) => {
            staging.keep();
            tracing::info!(id = %id, rootfs = %rootfs.display(), "template unpacked");
            Ok(Unpacked {
                rootfs,
                fresh: true,
            })
        }
        // Another unpack of the same blob finished first; ours is not needed.
        Err(_) if rootfs.is_dir() => Ok(Unpacked {
            rootfs,
            fresh: false,
        }),
        Err(e) => Err(io_err(&rootfs, "create")(e)),
    }
}

fn io_err(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> UnpackError {
    let path = path.display().to_string();
    move |source| UnpackError::Io {
        action,
        path,
        source,
    }
}

fn corrupt(blob: &Path, reason: impl ToString) -> UnpackError {
    UnpackError::Corrupt {
        path: blob.display().to_string(),
        reason: reason.to_string(),
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: blake3::Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// What the unpacker created at a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Made {
    Dir,
    File,
    Symlink,
}

/// Creates the entries of one blob under a staging directory.
struct Unpacker<'a> {
    blob: &'a Path,
    root: PathBuf,
    made: HashMap<EntryPath, Made>,
    /// Directories and their metadata, applied last (deepest first) so that
    /// read-only directories and mtimes survive the creation of their content.
    dirs: Vec<(EntryPath, Meta)>,
    last: Option<EntryPath>,
    as_root: bool,
    /// Added to every owner (see [`crate::runtime::userns`]).
    id_shift: u32,
}

impl<'a> Unpacker<'a> {
    fn new(blob: &'a Path, root: &Path, id_shift: u32) -> Result<Self, UnpackError> {
        // The staging directory is owned by whoever created it: us.
        let owner = fs::metadata(root).map_err(io_err(root, "read"))?.uid();
        Ok(Unpacker {
            blob,
            root: root.to_path_buf(),
            made: HashMap::new(),
            dirs: Vec::new(),
            last: None,
            as_root: owner == 0,
            id_shift,
        })
    }

    /// The host owner of an entry owned by `id` in the blob.
    fn owner(&self, id: u64) -> u32 {
        crate::runtime::userns::shifted(id32(id), self.id_shift)
    }

    fn unsafe_entry(&self, raw: &[u8], rule: PathRule) -> UnpackError {
        UnpackError::Unsafe {
            path: self.blob.display().to_string(),
            entry: lossy(raw),
            rule,
        }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = entry.path_bytes().into_owned();
        let path = EntryPath::parse(&raw).map_err(|rule| self.unsafe_entry(&raw, rule))?;
        let header = entry.header();
        let kind = header.entry_type();
        let bad = |e: io::Error| corrupt(self.blob, format!("entry `{}`: {e}", lossy(&raw)));
        let meta = Meta {
            mode: header.mode().map_err(bad)? & 0o7777,
            uid: header.uid().map_err(bad)?,
            gid: header.gid().map_err(bad)?,
            mtime: header.mtime().map_err(bad)?,
        };
        // Canonical blobs are sorted with the root first: anything else is
        // not one, and the order is what makes the parent checks below sound.
        match &self.last {
            None if !path.is_root() => {
                return Err(corrupt(
                    self.blob,
                    "the first entry is not the root directory",
                ));
            }
            Some(last) if *last >= path => {
                return Err(corrupt(
                    self.blob,
                    format!("entry `{path}` is out of order or repeated"),
                ));
            }
            _ => {}
        }
        self.last = Some(path.clone());
        if let Some(parent) = path.parent()
            && self.made.get(&parent) != Some(&Made::Dir)
        {
            return Err(corrupt(
                self.blob,
                format!("entry `{path}` is not beneath a directory of the blob"),
            ));
        }
        let dest = path.under(&self.root);
        let made = match kind {
            tar::EntryType::Directory => {
                if !path.is_root() {
                    fs::create_dir(&dest).map_err(io_err(&dest, "create"))?;
                }
                self.dirs.push((path.clone(), meta));
                Made::Dir
            }
            tar::EntryType::Regular if !path.is_root() => {
                self.write_file(&mut entry, &dest, &meta)?;
                Made::File
            }
            tar::EntryType::Symlink if !path.is_root() => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                check_symlink_target(&path, &target)
                    .map_err(|rule| self.unsafe_entry(&raw, rule))?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &dest)
                    .map_err(io_err(&dest, "create"))?;
                if self.as_root {
                    std::os::unix::fs::lchown(
                        &dest,
                        Some(self.owner(meta.uid)),
                        Some(self.owner(meta.gid)),
                    )
                    .map_err(io_err(&dest, "chown"))?;
                }
                let time = FileTime::from_unix_time(mtime_secs(meta.mtime), 0);
                filetime::set_symlink_file_times(&dest, time, time)
                    .map_err(io_err(&dest, "set the time of"))?;
                Made::Symlink
            }
            tar::EntryType::Link if !path.is_root() => {
                let raw_target = entry.link_name_bytes().unwrap_or_default().into_owned();
                let target = EntryPath::parse(&raw_target).map_err(|rule| {
                    let described = [&raw[..], b" (hardlink to `", &raw_target, b"`)"].concat();
                    self.unsafe_entry(&described, rule)
                })?;
                if self.made.get(&target) != Some(&Made::File) {
                    return Err(corrupt(
                        self.blob,
                        format!("hardlink `{path}` does not name an earlier regular file"),
                    ));
                }
                fs::hard_link(target.under(&self.root), &dest).map_err(io_err(&dest, "create"))?;
                Made::File
            }
            other => {
                return Err(corrupt(
                    self.blob,
                    format!("entry `{path}` has type {other:?}, which templates do not hold"),
                ));
            }
        };
        self.made.insert(path, made);
        Ok(())
    }

    fn write_file<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        dest: &Path,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dest)
            .map_err(io_err(dest, "create"))?;
        let expected = entry.size();
        let copied =
            io::copy(&mut BufReader::new(entry), &mut file).map_err(|e| corrupt(self.blob, e))?;
        if copied != expected {
            return Err(corrupt(
                self.blob,
                format!("`{}` is truncated", dest.display()),
            ));
        }
        if self.as_root {
            // Before chmod: chown clears setuid and setgid bits.
            std::os::unix::fs::fchown(
                &file,
                Some(self.owner(meta.uid)),
                Some(self.owner(meta.gid)),
            )
            .map_err(io_err(dest, "chown"))?;
        }
        file.set_permissions(Permissions::from_mode(meta.mode))
            .map_err(io_err(dest, "chmod"))?;
        let time = FileTime::from_unix_time(mtime_secs(meta.mtime), 0);
        filetime::set_file_handle_times(&file, Some(time), Some(time))
            .map_err(io_err(dest, "set the time of"))?;
        Ok(())
    }

    /// Applies directory ownership, modes and times, deepest first.
    fn finish(self) -> Result<(), UnpackError> {
        if self.last.is_none() {
            return Err(corrupt(self.blob, "it holds no entries"));
        }
        for (path, meta) in self.dirs.iter().rev() {
            let dest = path.under(&self.root);
            if self.as_root {
                std::os::unix::fs::chown(
                    &dest,
                    Some(self.owner(meta.uid)),
                    Some(self.owner(meta.gid)),
                )
                .map_err(io_err(&dest, "chown"))?;
            }
            fs::set_permissions(&dest, Permissions::from_mode(meta.mode))
                .map_err(io_err(&dest, "chmod"))?;
            let time = FileTime::from_unix_time(mtime_secs(meta.mtime), 0);
            filetime::set_file_times(&dest, time, time)
                .map_err(io_err(&dest, "set the time of"))?;
        }
        Ok(())
    }
}

/// uid/gid beyond 32 bits cannot exist on Linux; such a blob maps them to
/// `nobody` rather than failing.
fn id32(id: u64) -> u32 {
    u32::try_from(id).unwrap_or(65534)
}

fn mtime_secs(mtime: u64) -> i64 {
    i64::try_from(mtime).unwrap_or(i64::MAX)
}

/// A staging directory removed on drop unless kept.
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    fn create(holder: &Path) -> Result<Self, UnpackError> {
        let path = temp_name(holder, "rootfs");
        fs::create_dir(&path).map_err(io_err(&path, "create"))?;
        Ok(TempDir { path, keep: false })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if fs::remove_dir_all(&self.path).is_err() {
            // A non-root unpack may have made read-only directories; open
            // them up and try again.
            make_writable(&self.path);
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

fn make_writable(dir: &Path) {
    let _ = fs::set_permissions(dir, Permissions::from_mode(0o700));
    if let Ok(listing) = fs::read_dir(dir) {
        for item in listing.flatten() {
            if item.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable(&item.path());
            }
        }
    }
}

#[cfg(test)]
mod tests;
