//! Entry paths inside a rootfs and the rules that keep them inside it.
//!
//! Every path read from a source (a directory, a tar, an OCI layer, a
//! canonical blob) becomes an [`EntryPath`] before anything else happens,
//! and every link target is checked here. The rules:
//!
//! - An entry path is relative to the rootfs root. A leading `/` (absolute
//!   path) or any `..` component is refused, even `a/../b` that would stay
//!   inside: no honest archiver writes one, and refusing is simpler to trust
//!   than resolving. Empty and `.` components are dropped (`./a//b` is `a/b`).
//! - A symlink target is not resolved on the host, ever; it is interpreted
//!   inside the container, where `/` is the rootfs. So an absolute target
//!   (`/bin/busybox`) is fine. A relative target is walked lexically from
//!   the link's directory and refused if it climbs above the root
//!   (`etc/evil -> ../../x`); this is defence in depth for tools on the host
//!   that might follow links in an unpacked rootfs.
//! - A hardlink target is an entry path like any other (so `/etc/passwd`
//!   and `../x` are refused here); that it names an earlier regular file of
//!   the same rootfs is checked by the tree that holds the entries.
//! - An entry may only sit beneath directories of the same rootfs, never
//!   beneath a symlink (`evil -> /etc` then `evil/passwd`); that is checked
//!   by the tree too, since it needs the other entries.
//!
//! This module does no I/O.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Longest entry path accepted, in bytes (Linux `PATH_MAX` less the NUL).
pub const MAX_PATH_BYTES: usize = 4095;
/// Longest single name accepted, in bytes (Linux `NAME_MAX`).
const MAX_NAME_BYTES: usize = 255;

/// Why an entry path or link target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRule {
    #[error("it is an absolute path; entries must be relative to the rootfs root")]
    Absolute,
    #[error("it has a `..` component, which could reach outside the rootfs")]
    ParentComponent,
    #[error("it contains a NUL byte")]
    Nul,
    #[error("it is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    #[error("one of its names is longer than {MAX_NAME_BYTES} bytes")]
    NameTooLong,
    #[error("symlink target `{0}` climbs above the rootfs root")]
    SymlinkEscapes(String),
    #[error("its symlink target is empty")]
    EmptySymlinkTarget,
}

/// A checked path of an entry relative to the rootfs root: names joined by
/// `/`, none empty, `.` or `..`, no leading or trailing `/`. The root itself
/// is the empty path. Ordered by bytes, which puts a directory before
/// everything beneath it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EntryPath(Vec<u8>);

impl EntryPath {
    /// The rootfs root.
    pub fn root() -> Self {
        EntryPath(Vec::new())
    }

    /// Checks and normalizes a path as found in an archive or on disk.
    pub fn parse(raw: &[u8]) -> Result<Self, PathRule> {
        if raw.contains(&0) {
            return Err(PathRule::Nul);
        }
        if raw.first() == Some(&b'/') {
            return Err(PathRule::Absolute);
        }
        let mut out = Vec::with_capacity(raw.len());
        for name in raw.split(|&b| b == b'/') {
            match name {
                b"" | b"." => continue,
                b".." => return Err(PathRule::ParentComponent),
                _ if name.len() > MAX_NAME_BYTES => return Err(PathRule::NameTooLong),
                _ => {
                    if !out.is_empty() {
                        out.push(b'/');
                    }
                    out.extend_from_slice(name);
                }
            }
        }
        if out.len() > MAX_PATH_BYTES {
            return Err(PathRule::TooLong);
        }
        Ok(EntryPath(out))
    }

    /// Whether this is the rootfs root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The raw bytes (`a/b`; empty for the root).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The last name, or `None` for the root.
    pub fn file_name(&self) -> Option<&[u8]> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(slash) => &self.0[slash + 1..],
            None => &self.0,
        })
    }

    /// The directory holding this entry, or `None` for the root.
    pub fn parent(&self) -> Option<EntryPath> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(slash) => EntryPath(self.0[..slash].to_vec()),
            None => EntryPath::root(),
        })
    }

    /// Every directory above this entry, nearest first, ending with the root.
    pub fn ancestors(&self) -> Vec<EntryPath> {
        let mut out = Vec::new();
        let mut current = self.parent();
        while let Some(dir) = current {
            current = dir.parent();
            out.push(dir);
        }
        out
    }

    /// This path with one more name appended; the name is checked like a path.
    pub fn join(&self, name: &[u8]) -> Result<EntryPath, PathRule> {
        if name.contains(&b'/') || name == b"." || name.is_empty() {
            // Names come from read_dir and never hold these; refuse rather than guess.
            return Err(PathRule::Absolute);
        }
        let mut raw = self.0.clone();
        if !raw.is_empty() {
            raw.push(b'/');
        }
        raw.extend_from_slice(name);
        EntryPath::parse(&raw)
    }

    /// Whether `self` lies strictly beneath `dir`.
    pub fn is_beneath(&self, dir: &EntryPath) -> bool {
        if dir.is_root() {
            return !self.is_root();
        }
        self.0.len() > dir.0.len() && self.0.starts_with(&dir.0) && self.0[dir.0.len()] == b'/'
    }

    /// Number of names (0 for the root).
    pub fn depth(&self) -> usize {
        if self.is_root() {
            0
        } else {
            self.0.iter().filter(|&&b| b == b'/').count() + 1
        }
    }

    /// Where this entry lives under `root` on the local filesystem.
    pub fn under(&self, root: &Path) -> PathBuf {
        if self.is_root() {
            root.to_path_buf()
        } else {
            root.join(OsStr::from_bytes(&self.0))
        }
    }

    /// The path as written in a canonical tar: `./` for the root, `a/b/`
    /// for directories, `a/b` otherwise.
    pub fn tar_name(&self, is_dir: bool) -> Vec<u8> {
        if self.is_root() {
            return b"./".to_vec();
        }
        let mut out = self.0.clone();
        if is_dir {
            out.push(b'/');
        }
        out
    }
}

impl fmt::Display for EntryPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            f.write_str("/")
        } else {
            f.write_str(&String::from_utf8_lossy(&self.0))
        }
    }
}

impl fmt::Debug for EntryPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntryPath({self})")
    }
}

/// Checks the target of a symlink at `link`: see the module docs.
pub fn check_symlink_target(link: &EntryPath, target: &[u8]) -> Result<(), PathRule> {
    if target.is_empty() {
        return Err(PathRule::EmptySymlinkTarget);
    }
    if target.contains(&0) {
        return Err(PathRule::Nul);
    }
    if target.len() > MAX_PATH_BYTES {
        return Err(PathRule::TooLong);
    }
    if target.first() == Some(&b'/') {
        return Ok(());
    }
    // Depth of the directory holding the link; the target is resolved from there.
    let mut depth = link.depth().saturating_sub(1) as isize;
    for name in target.split(|&b| b == b'/') {
        match name {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return Err(PathRule::SymlinkEscapes(
                        String::from_utf8_lossy(target).into_owned(),
                    ));
                }
            }
            _ => depth += 1,
        }
    }
    Ok(())
}

/// A path for error messages: lossy UTF-8 of raw archive bytes.
pub(crate) fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> EntryPath {
        EntryPath::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn paths_normalize() {
        assert_eq!(p("./a//b/").as_bytes(), b"a/b");
        assert!(p("./").is_root());
        assert!(p(".").is_root());
        assert!(p("").is_root());
        assert_eq!(p("a/b/c").parent(), Some(p("a/b")));
        assert_eq!(p("a").parent(), Some(EntryPath::root()));
        assert_eq!(p("a/b").ancestors(), vec![p("a"), EntryPath::root()]);
        assert_eq!(p("a/b").file_name(), Some(&b"b"[..]));
        assert!(p("a/b").is_beneath(&p("a")));
        assert!(!p("ab").is_beneath(&p("a")));
        assert!(!p("a").is_beneath(&p("a")));
        assert!(p("a").is_beneath(&EntryPath::root()));
        assert_eq!(p("a/b").depth(), 2);
        assert_eq!(p("a").tar_name(true), b"a/");
        assert_eq!(EntryPath::root().tar_name(true), b"./");
        // A directory sorts before everything beneath it.
        let mut names = vec![p("a/b"), p("a-b"), p("a"), EntryPath::root()];
        names.sort();
        assert_eq!(names, vec![EntryPath::root(), p("a"), p("a-b"), p("a/b")]);
    }

    #[test]
    fn unsafe_paths_are_refused() {
        assert_eq!(EntryPath::parse(b"/etc/passwd"), Err(PathRule::Absolute));
        assert_eq!(EntryPath::parse(b"../x"), Err(PathRule::ParentComponent));
        assert_eq!(
            EntryPath::parse(b"a/../../x"),
            Err(PathRule::ParentComponent)
        );
        assert_eq!(EntryPath::parse(b"a/../b"), Err(PathRule::ParentComponent));
        assert_eq!(EntryPath::parse(b"a\0b"), Err(PathRule::Nul));
        assert_eq!(EntryPath::parse(&[b'x'; 256]), Err(PathRule::NameTooLong));
        let long = [&[b'x'; 200][..], b"/"].concat().repeat(21);
        assert_eq!(EntryPath::parse(&long), Err(PathRule::TooLong));
        assert!(EntryPath::root().join(b"..").is_err());
        assert!(EntryPath::root().join(b"a/b").is_err());
    }

    #[test]
    fn symlink_targets() {
        let ok = |link: &str, target: &str| check_symlink_target(&p(link), target.as_bytes());
        assert_eq!(ok("bin/sh", "/bin/busybox"), Ok(()));
        assert_eq!(ok("bin/sh", "busybox"), Ok(()));
        assert_eq!(ok("usr/lib/x", "../../lib/x"), Ok(()));
        assert_eq!(ok("a", "b/../c"), Ok(()));
        assert_eq!(ok("a", "."), Ok(()));
        assert!(matches!(
            ok("evil", "../../etc"),
            Err(PathRule::SymlinkEscapes(_))
        ));
        assert!(matches!(
            ok("a/b", "../../x"),
            Err(PathRule::SymlinkEscapes(_))
        ));
        assert!(matches!(
            ok("a", "b/../../x"),
            Err(PathRule::SymlinkEscapes(_))
        ));
        assert_eq!(ok("a", ""), Err(PathRule::EmptySymlinkTarget));
    }
}
