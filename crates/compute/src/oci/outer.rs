//! The files of an image archive (the outer tar), found by name without
//! ever writing them out under their names.
//!
//! `docker save` in its legacy layout stores a layer shared by two images
//! once and links the other name to it (`<id>/layer.tar ->
//! ../<other>/layer.tar`), so symlinks and hardlinks between members are
//! followed, lexically and only within the archive.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::archive::ArchiveError;
use crate::format::{SourceFormat, detect, open_tar};
use crate::oci::OciError;
use crate::paths::{EntryPath, lossy};
use crate::spool::{Slice, TempFile};
use crate::tree::TreeError;

/// Links followed from one name before giving up (a loop, or a chain no
/// exporter writes).
const MAX_LINK_HOPS: usize = 8;

/// A regular file inside the outer archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub offset: u64,
    pub size: u64,
}

#[derive(Clone, Debug)]
enum Item {
    File(Member),
    /// A symlink or hardlink, with its target as a normalized archive name.
    Link(Option<String>),
}

/// The index of the outer archive.
pub struct Outer {
    file: File,
    label: PathBuf,
    items: BTreeMap<String, Item>,
    _scratch: Option<TempFile>,
}

impl Outer {
    /// Indexes the archive at `path` (plain, gzip or zstd tar); a compressed
    /// one is decompressed into a temporary file in `scratch`.
    pub fn open(path: &Path, scratch: &Path) -> Result<Self, OciError> {
        let format = detect(path)?;
        if format == SourceFormat::Directory {
            return Err(OciError::NotAnImage {
                path: path.display().to_string(),
                hint: "it is a directory; pass the archive written by `docker save`".into(),
            });
        }
        let (file, scratch_file) = open_tar(path, format, scratch)?;
        let reader = file.try_clone().map_err(ArchiveError::io(path, "read"))?;
        let slice = Slice::whole(reader).map_err(ArchiveError::io(path, "read"))?;
        let mut archive = tar::Archive::new(BufReader::new(slice));
        let mut items = BTreeMap::new();
        let entries = archive
            .entries_with_seek()
            .map_err(|e| ArchiveError::corrupt(path, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ArchiveError::corrupt(path, e))?;
            let raw = entry.path_bytes().into_owned();
            let name = EntryPath::parse(&raw).map_err(|rule| {
                ArchiveError::Entry(TreeError::Unsafe {
                    entry: lossy(&raw),
                    rule,
                })
            })?;
            let name = name.to_string();
            let link = entry.link_name_bytes().map(|t| t.into_owned());
            let item = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => Item::File(Member {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                }),
                tar::EntryType::Symlink => {
                    Item::Link(link.and_then(|t| resolve_relative(&name, &t)))
                }
                tar::EntryType::Link => Item::Link(
                    link.and_then(|t| EntryPath::parse(&t).ok())
                        .map(|p| p.to_string()),
                ),
                _ => continue,
            };
            items.insert(name, item);
        }
        Ok(Outer {
            file,
            label: path.to_path_buf(),
            items,
            _scratch: scratch_file,
        })
    }

    /// The archive's path, for messages.
    pub fn label(&self) -> &Path {
        &self.label
    }

    /// Whether the archive holds a file (or a link to one) called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// The file called `name`, following links within the archive.
    pub fn find(&self, name: &str) -> Option<Member> {
        let mut name = EntryPath::parse(name.as_bytes()).ok()?.to_string();
        for _ in 0..MAX_LINK_HOPS {
            match self.items.get(&name)? {
                Item::File(member) => return Some(*member),
                Item::Link(Some(target)) => name = target.clone(),
                Item::Link(None) => return None,
            }
        }
        None
    }

    /// The file `name`, which must exist.
    pub fn member(&self, name: &str) -> Result<Member, OciError> {
        self.find(name).ok_or_else(|| OciError::Missing {
            path: self.label.display().to_string(),
            name: name.to_string(),
        })
    }

    /// A reader over a member's bytes.
    pub fn slice(&self, member: Member) -> Result<Slice, OciError> {
        let file = self
            .file
            .try_clone()
            .map_err(ArchiveError::io(&self.label, "read"))?;
        Ok(Slice::new(file, member.offset, member.size)
            .map_err(ArchiveError::io(&self.label, "read"))?)
    }

    /// A second handle on the archive file, to read layer bytes from later.
    pub fn spool(&self) -> Result<File, OciError> {
        Ok(self
            .file
            .try_clone()
            .map_err(ArchiveError::io(&self.label, "read"))?)
    }

    /// Reads a small member (JSON) whole, refusing more than `limit` bytes.
    pub fn read_small(&self, name: &str, limit: u64) -> Result<Vec<u8>, OciError> {
        let member = self.member(name)?;
        if member.size > limit {
            return Err(OciError::TooLarge {
                name: name.to_string(),
                size: member.size,
                limit,
            });
        }
        let mut bytes = Vec::new();
        self.slice(member)?
            .read_to_end(&mut bytes)
            .map_err(ArchiveError::io(&self.label, "read"))?;
        Ok(bytes)
    }
}

/// Resolves a symlink target relative to the link's directory, within the
/// archive; `None` if it is absolute or climbs out.
fn resolve_relative(link: &str, target: &[u8]) -> Option<String> {
    if target.first() == Some(&b'/') {
        return None;
    }
    let mut parts: Vec<&[u8]> = link.as_bytes().split(|&b| b == b'/').collect();
    parts.pop();
    for name in target.split(|&b| b == b'/') {
        match name {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            _ => parts.push(name),
        }
    }
    let joined = parts.join(&b'/');
    EntryPath::parse(&joined).ok().map(|p| p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links_resolve_within_the_archive() {
        assert_eq!(
            resolve_relative("a/layer.tar", b"../b/layer.tar").as_deref(),
            Some("b/layer.tar")
        );
        assert_eq!(resolve_relative("x", b"y").as_deref(), Some("y"));
        assert_eq!(resolve_relative("a/x", b"../../y"), None);
        assert_eq!(resolve_relative("a/x", b"/etc/passwd"), None);
    }
}
