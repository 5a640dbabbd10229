//! Importing a rootfs: a directory, or a tar / tar.gz / tar.zst of one,
//! becomes a canonical template blob (see [`crate::blob`]).
//!
//! The source is read once into a [`Tree`] (paths and metadata, never file
//! bytes), every entry checked on the way (see [`crate::paths`]); then the
//! blob is written in path order, file bytes streamed from the source. A
//! compressed tar is first decompressed into a temporary file next to the
//! destination, so its entries can be read in any order. `template.toml` at
//! the root is taken out as the [`TemplateManifest`], not kept in the rootfs.
//!
//! Device nodes, fifos and sockets are left out (a container gets its own
//! `/dev`) and counted. Extended attributes (file capabilities, SELinux
//! labels) and ACLs are not carried over.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::blob::{ContentId, write_blob};
use crate::format::{SourceFormat, detect, open_tar};
use crate::manifest::{MAX_MANIFEST_BYTES, ManifestError, TemplateManifest};
use crate::paths::{EntryPath, lossy};
use crate::spool::{Slice, TempFile};
use crate::tree::{DataSource, FileData, Meta, Tree, TreeError};

/// Name of the metadata file at the root of an imported rootfs.
pub const MANIFEST_NAME: &str = "template.toml";

/// An import that failed, and why.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("{path} is not a rootfs directory or a tar, tar.gz or tar.zst archive: {hint}")]
    UnknownFormat { path: String, hint: String },
    #[error("{path} is not a readable tar archive: {reason}; check that the file is complete")]
    Corrupt { path: String, reason: String },
    #[error(transparent)]
    Entry(#[from] TreeError),
    #[error(
        "entry `{entry}` is a GNU sparse file, which coop does not import; re-create the archive without --sparse"
    )]
    Sparse { entry: String },
    #[error("cannot read the bytes of `{entry}` from {source_path}: {reason}")]
    SourceData {
        entry: String,
        source_path: String,
        reason: String,
    },
    #[error("template.toml at the rootfs root is a {0}; it must be a regular file")]
    ManifestNotFile(&'static str),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

impl ArchiveError {
    /// Maps an I/O error on `path` while trying to `action` it.
    pub(crate) fn io(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> Self {
        let path = path.display().to_string();
        move |source| ArchiveError::Io {
            action,
            path,
            source,
        }
    }

    /// An archive that could not be parsed.
    pub(crate) fn corrupt(path: &Path, reason: impl ToString) -> Self {
        ArchiveError::Corrupt {
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }
}

/// A rootfs turned into a canonical blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedBlob {
    /// BLAKE3 of the blob bytes.
    pub content_id: ContentId,
    /// Where the blob was written: `<blobs dir>/<content id>.tar.zst`.
    pub path: PathBuf,
    /// Length of the blob in bytes.
    pub size_bytes: u64,
    /// From `template.toml`, or the defaults when there was none.
    pub manifest: TemplateManifest,
    /// Entries in the rootfs, the root directory included.
    pub entries: u64,
    /// Device nodes, fifos, sockets and unknown entry types left out.
    pub skipped_special: u64,
}

/// Imports the rootfs at `source` (a directory, or a tar, tar.gz or tar.zst
/// told apart by content) into `blobs_dir` (created if missing). On error
/// nothing is left in `blobs_dir`.
pub fn import_rootfs(source: &Path, blobs_dir: &Path) -> Result<ImportedBlob, ArchiveError> {
    fs::create_dir_all(blobs_dir).map_err(ArchiveError::io(blobs_dir, "create"))?;
    let format = detect(source)?;
    let mut tree = Tree::new();
    let mut spools = Vec::new();
    let mut _scratch: Option<TempFile> = None;
    let manifest_bytes = match format {
        SourceFormat::Directory => read_directory(&mut tree, source)?,
        _ => {
            let (file, temp) = open_tar(source, format, blobs_dir)?;
            _scratch = temp;
            spools.push(file.try_clone().map_err(ArchiveError::io(source, "read"))?);
            let slice = Slice::whole(file).map_err(ArchiveError::io(source, "read"))?;
            read_tar(&mut tree, 0, slice, source, TarMode::Rootfs)?
        }
    };
    let manifest = match manifest_bytes {
        Some(bytes) => TemplateManifest::parse(&bytes)?,
        None => TemplateManifest::default(),
    };
    tree.fill_implied_dirs();
    let blob = write_blob(&tree, &spools, blobs_dir)?;
    tracing::info!(
        source = %source.display(),
        id = %blob.content_id,
        entries = blob.entries,
        skipped_special = tree.skipped_special,
        "rootfs imported"
    );
    Ok(ImportedBlob {
        content_id: blob.content_id,
        path: blob.path,
        size_bytes: blob.size_bytes,
        manifest,
        entries: blob.entries,
        skipped_special: tree.skipped_special,
    })
}

fn meta_of(md: &fs::Metadata) -> Meta {
    Meta {
        mode: md.mode() & 0o7777,
        uid: u64::from(md.uid()),
        gid: u64::from(md.gid()),
        mtime: u64::try_from(md.mtime()).unwrap_or(0),
    }
}

/// Walks a rootfs directory into `tree`, never following symlinks below
/// the root. Returns the bytes of `template.toml` at the root, if any.
fn read_directory(tree: &mut Tree, root: &Path) -> Result<Option<Vec<u8>>, ArchiveError> {
    // The root itself may be a symlink to the rootfs: the user named it.
    let root_md = fs::metadata(root).map_err(ArchiveError::io(root, "read"))?;
    tree.add_dir(EntryPath::root(), meta_of(&root_md))?;
    let mut manifest = None;
    // (dev, inode) of regular files with several links, to the first path seen.
    let mut inodes: HashMap<(u64, u64), EntryPath> = HashMap::new();
    let mut stack = vec![(root.to_path_buf(), EntryPath::root())];
    while let Some((dir, dir_entry)) = stack.pop() {
        let listing = fs::read_dir(&dir).map_err(ArchiveError::io(&dir, "list"))?;
        for item in listing {
            let item = item.map_err(ArchiveError::io(&dir, "list"))?;
            let on_disk = item.path();
            let name = item.file_name();
            let path = dir_entry
                .join(name.as_bytes())
                .map_err(|rule| TreeError::Unsafe {
                    entry: on_disk.display().to_string(),
                    rule,
                })?;
            let md = fs::symlink_metadata(&on_disk).map_err(ArchiveError::io(&on_disk, "read"))?;
            let kind = md.file_type();
            let meta = meta_of(&md);
            if dir_entry.is_root() && name.as_bytes() == MANIFEST_NAME.as_bytes() {
                if !kind.is_file() {
                    return Err(ArchiveError::ManifestNotFile(kind_name(&kind)));
                }
                manifest = Some(read_manifest(&on_disk)?);
                continue;
            }
            if kind.is_dir() {
                tree.add_dir(path.clone(), meta)?;
                stack.push((on_disk, path));
            } else if kind.is_file() {
                if md.nlink() > 1 {
                    let key = (md.dev(), md.ino());
                    if let Some(first) = inodes.get(&key) {
                        tree.add_hardlink(path, first.clone())?;
                        continue;
                    }
                    inodes.insert(key, path.clone());
                }
                let data = FileData {
                    meta,
                    size: md.len(),
                    source: DataSource::Path(on_disk),
                };
                tree.add_file(path, data)?;
            } else if kind.is_symlink() {
                let target = fs::read_link(&on_disk).map_err(ArchiveError::io(&on_disk, "read"))?;
                tree.add_symlink(path, meta, target.as_os_str().as_bytes().to_vec())?;
            } else {
                tree.skip_special(path);
            }
        }
    }
    Ok(manifest)
}

fn kind_name(kind: &fs::FileType) -> &'static str {
    if kind.is_dir() {
        "directory"
    } else if kind.is_symlink() {
        "symlink"
    } else if kind.is_fifo() || kind.is_socket() || kind.is_block_device() || kind.is_char_device()
    {
        "special file"
    } else {
        "regular file"
    }
}

fn read_manifest(path: &Path) -> Result<Vec<u8>, ArchiveError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| {
            f.take(MAX_MANIFEST_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(ArchiveError::io(path, "read"))?;
    Ok(bytes)
}

/// How entries of a tar are interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TarMode {
    /// A rootfs tar: `template.toml` at the root is the manifest.
    Rootfs,
    /// An OCI layer: `.wh.` names are whiteouts, `template.toml` is a file.
    OciLayer,
}

/// OCI whiteout prefix: `.wh.name` deletes `name` from lower layers.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// OCI opaque marker: hides everything lower layers put in its directory.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Reads the tar in `slice` (of spool file number `spool`) into `tree`.
/// `label` names the archive in errors. Returns the manifest bytes found
/// (only in [`TarMode::Rootfs`]).
pub(crate) fn read_tar(
    tree: &mut Tree,
    spool: usize,
    slice: Slice,
    label: &Path,
    mode: TarMode,
) -> Result<Option<Vec<u8>>, ArchiveError> {
    let base = slice.start();
    let mut archive = tar::Archive::new(BufReader::new(slice));
    let mut manifest = None;
    let entries = archive
        .entries_with_seek()
        .map_err(|e| ArchiveError::corrupt(label, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ArchiveError::corrupt(label, e))?;
        let raw = entry.path_bytes().into_owned();
        let entry_name = lossy(&raw);
        let bad_header = |e: io::Error| {
            ArchiveError::corrupt(label, format!("entry `{entry_name}` has a bad header: {e}"))
        };
        let header = entry.header();
        let mut kind = header.entry_type();
        let mut meta = Meta {
            mode: header.mode().map_err(bad_header)? & 0o7777,
            uid: header.uid().map_err(bad_header)?,
            gid: header.gid().map_err(bad_header)?,
            mtime: header.mtime().map_err(bad_header)?,
        };
        apply_pax(&mut entry, &mut meta).map_err(bad_header)?;
        // Old tars mark directories by a trailing slash on a regular entry.
        if kind == tar::EntryType::Regular && raw.last() == Some(&b'/') {
            kind = tar::EntryType::Directory;
        }
        let path = EntryPath::parse(&raw).map_err(|rule| TreeError::Unsafe {
            entry: entry_name.clone(),
            rule,
        })?;
        if mode == TarMode::OciLayer
            && let Some(name) = path.file_name()
            && name.starts_with(WHITEOUT_PREFIX)
        {
            let dir = path.parent().unwrap_or_default();
            if name == OPAQUE_MARKER {
                tree.make_opaque(&dir)?;
            } else {
                let hidden =
                    dir.join(&name[WHITEOUT_PREFIX.len()..])
                        .map_err(|rule| TreeError::Unsafe {
                            entry: entry_name.clone(),
                            rule,
                        })?;
                tree.whiteout(&hidden)?;
            }
            continue;
        }
        let is_manifest = mode == TarMode::Rootfs && path.as_bytes() == MANIFEST_NAME.as_bytes();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if is_manifest {
                    let mut bytes = Vec::new();
                    (&mut entry)
                        .take(MAX_MANIFEST_BYTES as u64 + 1)
                        .read_to_end(&mut bytes)
                        .map_err(|e| ArchiveError::corrupt(label, e))?;
                    manifest = Some(bytes);
                    continue;
                }
                let data = FileData {
                    meta,
                    size: entry.size(),
                    source: DataSource::Spool {
                        spool,
                        offset: base + entry.raw_file_position(),
                    },
                };
                tree.add_file(path, data)?;
            }
            _ if is_manifest => {
                return Err(ArchiveError::ManifestNotFile(match kind {
                    tar::EntryType::Directory => "directory",
                    tar::EntryType::Symlink => "symlink",
                    tar::EntryType::Link => "hardlink",
                    _ => "special file",
                }));
            }
            tar::EntryType::Directory => tree.add_dir(path, meta)?,
            tar::EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                tree.add_symlink(path, meta, target)?;
            }
            tar::EntryType::Link => {
                let raw_target = entry.link_name_bytes().unwrap_or_default().into_owned();
                let target = EntryPath::parse(&raw_target).map_err(|rule| TreeError::Unsafe {
                    entry: format!("{entry_name} (hardlink to `{}`)", lossy(&raw_target)),
                    rule,
                })?;
                tree.add_hardlink(path, target)?;
            }
            tar::EntryType::GNUSparse => {
                return Err(ArchiveError::Sparse { entry: entry_name });
            }
            // Extension headers the tar crate already applied to the next entry.
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {}
            _ => tree.skip_special(path),
        }
    }
    Ok(manifest)
}

/// PAX records override header fields that do not fit them (big uids,
/// mtimes past 2242).
fn apply_pax<R: Read>(entry: &mut tar::Entry<'_, R>, meta: &mut Meta) -> io::Result<()> {
    let Some(extensions) = entry.pax_extensions()? else {
        return Ok(());
    };
    for extension in extensions {
        let extension = extension?;
        let value = extension.value().unwrap_or_default();
        // mtime may carry a fraction (`1700000000.5`); whole seconds are kept.
        let whole = value.split('.').next().unwrap_or_default();
        match extension.key().unwrap_or_default() {
            "uid" => meta.uid = whole.parse().unwrap_or(meta.uid),
            "gid" => meta.gid = whole.parse().unwrap_or(meta.gid),
            "mtime" => meta.mtime = whole.parse().unwrap_or(meta.mtime),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
