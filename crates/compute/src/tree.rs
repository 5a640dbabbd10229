//! The index of a rootfs being imported: every entry's path and metadata,
//! and where the bytes of each regular file can be read from, but never the
//! bytes themselves.
//!
//! Sources (a directory walk, a tar, the layers of an OCI image one after
//! the other) add entries in any order; the tree keeps them sorted by path,
//! applies "a later entry replaces an earlier one" as tar extraction and
//! layer application do, and enforces the rules that need other entries:
//! nothing sits beneath a symlink or a file, and a hardlink names an earlier
//! entry. Hardlinks are kept as the inode they share ([`Node::File`] with
//! the same index), so the canonical writer can choose the holder of the
//! bytes by path order, whatever order the source had.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use crate::paths::{EntryPath, PathRule, check_symlink_target};

/// Most entries accepted in one rootfs. A full Debian with docs has about
/// 200k; the index of a million takes about 200 MB, which a peer can spare
/// for an import but not much more.
pub const MAX_ENTRIES: usize = 1_000_000;
/// Most bytes of entry names accepted in one rootfs, so a crafted archive
/// of long names cannot make the index take gigabytes; real rootfs need a
/// few tens of MB.
pub const MAX_NAME_BYTES_TOTAL: usize = 256 * 1024 * 1024;

/// Ownership, permission bits and modification time of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Unix seconds; times before 1970 are kept as 0.
    pub mtime: u64,
}

impl Meta {
    /// What a directory that the source implies but does not list gets.
    pub const IMPLIED_DIR: Meta = Meta {
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: 0,
    };
}

/// Where the bytes of a regular file are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSource {
    /// A file on the local filesystem (directory import).
    Path(PathBuf),
    /// `offset` bytes into the spool file number `spool` (a tar on disk).
    Spool { spool: usize, offset: u64 },
}

/// A regular file: its metadata, length and where its bytes are.
#[derive(Clone, Debug)]
pub struct FileData {
    pub meta: Meta,
    pub size: u64,
    pub source: DataSource,
}

/// One entry of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir(Meta),
    /// Index into [`Tree::files`]; several paths with the same index are hardlinks.
    File(usize),
    Symlink {
        meta: Meta,
        target: Vec<u8>,
    },
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::Dir(_) => "directory",
            Node::File(_) => "regular file",
            Node::Symlink { .. } => "symlink",
        }
    }
}

/// Why an entry cannot be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("entry `{entry}` is refused: {rule}")]
    Unsafe { entry: String, rule: PathRule },
    #[error(
        "entry `{entry}` is refused: it lies beneath `{ancestor}`, which is a {kind}, not a directory (writing through it could reach outside the rootfs)"
    )]
    BeneathNonDirectory {
        entry: String,
        ancestor: String,
        kind: &'static str,
    },
    #[error(
        "hardlink `{entry}` is refused: its target `{target}` is not an earlier entry of the rootfs"
    )]
    HardlinkTargetMissing { entry: String, target: String },
    #[error("hardlink `{entry}` is refused: its target `{target}` is a directory")]
    HardlinkToDirectory { entry: String, target: String },
    #[error("the rootfs root must be a directory, but the source lists it as a {0}")]
    RootNotDirectory(&'static str),
    #[error(
        "the source has more than {MAX_ENTRIES} entries or {MAX_NAME_BYTES_TOTAL} bytes of names; remove files from the image"
    )]
    TooManyEntries,
}

/// The sorted index of a rootfs; see the module docs.
#[derive(Debug, Default)]
pub struct Tree {
    nodes: BTreeMap<EntryPath, Node>,
    files: Vec<FileData>,
    /// Entries skipped as special files, so hardlinks to them are skipped too.
    skipped: HashSet<EntryPath>,
    /// Entries added by the current OCI layer, which its own whiteouts do
    /// not touch; `None` outside OCI imports, where there are no whiteouts.
    layer: Option<HashSet<EntryPath>>,
    /// Bytes of all names ever added (not lowered on removal: a bound, not a count).
    name_bytes: usize,
    /// Device nodes, fifos, sockets and unknown entry types left out.
    pub skipped_special: u64,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a new OCI layer: whiteouts from now on spare only its own entries.
    pub fn begin_layer(&mut self) {
        self.layer = Some(HashSet::new());
    }

    /// The entries, sorted by path.
    pub fn nodes(&self) -> &BTreeMap<EntryPath, Node> {
        &self.nodes
    }

    /// The regular files, indexed by [`Node::File`].
    pub fn files(&self) -> &[FileData] {
        &self.files
    }

    /// Adds (or replaces) a directory.
    pub fn add_dir(&mut self, path: EntryPath, meta: Meta) -> Result<(), TreeError> {
        self.insert(path, Node::Dir(meta))
    }

    /// Adds (or replaces) a regular file.
    pub fn add_file(&mut self, path: EntryPath, file: FileData) -> Result<(), TreeError> {
        self.check_place(&path)?;
        self.files.push(file);
        let index = self.files.len() - 1;
        self.insert(path, Node::File(index))
    }

    /// Adds (or replaces) a symlink after checking its target.
    pub fn add_symlink(
        &mut self,
        path: EntryPath,
        meta: Meta,
        target: Vec<u8>,
    ) -> Result<(), TreeError> {
        check_symlink_target(&path, &target).map_err(|rule| TreeError::Unsafe {
            entry: path.to_string(),
            rule,
        })?;
        self.insert(path, Node::Symlink { meta, target })
    }

    /// Adds a hardlink at `path` to the earlier entry `target`. A link to a
    /// symlink becomes a copy of the symlink (same inode semantics for a
    /// reader); a link to a skipped special file is skipped too.
    pub fn add_hardlink(&mut self, path: EntryPath, target: EntryPath) -> Result<(), TreeError> {
        let node = match self.nodes.get(&target) {
            Some(Node::File(index)) => Node::File(*index),
            Some(Node::Symlink { meta, target: to }) => {
                let (meta, to) = (*meta, to.clone());
                return self.add_symlink(path, meta, to);
            }
            Some(Node::Dir(_)) => {
                return Err(TreeError::HardlinkToDirectory {
                    entry: path.to_string(),
                    target: target.to_string(),
                });
            }
            None if self.skipped.contains(&target) => {
                self.skip_special(path);
                return Ok(());
            }
            None => {
                return Err(TreeError::HardlinkTargetMissing {
                    entry: path.to_string(),
                    target: target.to_string(),
                });
            }
        };
        self.insert(path, node)
    }

    /// Records a special file (device, fifo, socket) that is left out.
    pub fn skip_special(&mut self, path: EntryPath) {
        tracing::debug!(entry = %path, "special file left out of the template");
        self.skipped_special += 1;
        // Beyond the entry limit only the count is kept: a hardlink to such
        // an entry is then refused instead of skipped, which is harmless.
        if self.skipped.len() < MAX_ENTRIES {
            self.skipped.insert(path);
        }
    }

    /// OCI whiteout `.wh.<name>`: deletes `path` and everything beneath it
    /// that lower layers added.
    pub fn whiteout(&mut self, path: &EntryPath) -> Result<(), TreeError> {
        self.check_place(path)?;
        if !self.in_layer(path) {
            self.nodes.remove(path);
        }
        self.remove_beneath(path, true);
        Ok(())
    }

    /// OCI opaque marker `.wh..wh..opq` in `dir`: hides everything lower
    /// layers put beneath `dir`.
    pub fn make_opaque(&mut self, dir: &EntryPath) -> Result<(), TreeError> {
        self.check_place(dir)?;
        self.remove_beneath(dir, true);
        Ok(())
    }

    /// Adds the directories that entries imply but the source did not list,
    /// and the root if missing, so that every entry's parent is in the tree.
    pub fn fill_implied_dirs(&mut self) {
        let mut missing = HashSet::new();
        for path in self.nodes.keys() {
            for dir in path.ancestors() {
                if !self.nodes.contains_key(&dir) {
                    missing.insert(dir);
                }
            }
        }
        missing.insert(EntryPath::root());
        for dir in missing {
            self.nodes
                .entry(dir)
                .or_insert(Node::Dir(Meta::IMPLIED_DIR));
        }
    }

    /// Removes from the tree everything beneath `dir`, except, with
    /// `spare_layer`, what the current layer added.
    fn remove_beneath(&mut self, dir: &EntryPath, spare_layer: bool) {
        let doomed: Vec<EntryPath> = self
            .nodes
            .range(dir.clone()..)
            .map(|(path, _)| path)
            .skip_while(|path| *path == dir)
            .take_while(|path| path.is_beneath(dir))
            .filter(|path| !(spare_layer && self.in_layer(path)))
            .cloned()
            .collect();
        for path in doomed {
            self.nodes.remove(&path);
        }
    }

    fn in_layer(&self, path: &EntryPath) -> bool {
        self.layer
            .as_ref()
            .is_some_and(|layer| layer.contains(path))
    }

    /// Every ancestor of `path` that is in the tree must be a directory.
    fn check_place(&self, path: &EntryPath) -> Result<(), TreeError> {
        for dir in path.ancestors() {
            match self.nodes.get(&dir) {
                None | Some(Node::Dir(_)) => {}
                Some(other) => {
                    return Err(TreeError::BeneathNonDirectory {
                        entry: path.to_string(),
                        ancestor: dir.to_string(),
                        kind: other.kind(),
                    });
                }
            }
        }
        Ok(())
    }

    fn insert(&mut self, path: EntryPath, node: Node) -> Result<(), TreeError> {
        if path.is_root() && !matches!(node, Node::Dir(_)) {
            return Err(TreeError::RootNotDirectory(node.kind()));
        }
        self.check_place(&path)?;
        let replaces_dir = matches!(self.nodes.get(&path), Some(Node::Dir(_)));
        if replaces_dir && !matches!(node, Node::Dir(_)) {
            // A non-directory over a directory hides what was beneath it,
            // as in overlayfs and as `tar --overwrite` would leave it.
            self.remove_beneath(&path, false);
        }
        if !self.nodes.contains_key(&path) {
            self.name_bytes += path.as_bytes().len();
            if self.nodes.len() >= MAX_ENTRIES || self.name_bytes > MAX_NAME_BYTES_TOTAL {
                return Err(TreeError::TooManyEntries);
            }
        }
        self.skipped.remove(&path);
        if let Some(layer) = &mut self.layer {
            layer.insert(path.clone());
        }
        self.nodes.insert(path, node);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> EntryPath {
        EntryPath::parse(s.as_bytes()).unwrap()
    }

    fn meta() -> Meta {
        Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1,
        }
    }

    fn file(tree: &mut Tree, path: &str) {
        let data = FileData {
            meta: meta(),
            size: 0,
            source: DataSource::Spool {
                spool: 0,
                offset: 0,
            },
        };
        tree.add_file(p(path), data).unwrap();
    }

    fn paths(tree: &Tree) -> Vec<String> {
        tree.nodes().keys().map(|k| k.to_string()).collect()
    }

    #[test]
    fn nothing_beneath_a_symlink_or_file() {
        let mut tree = Tree::new();
        tree.add_symlink(p("evil"), meta(), b"/etc".to_vec())
            .unwrap();
        let err = tree
            .add_file(
                p("evil/passwd"),
                FileData {
                    meta: meta(),
                    size: 0,
                    source: DataSource::Path("x".into()),
                },
            )
            .unwrap_err();
        assert!(
            matches!(err, TreeError::BeneathNonDirectory { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("evil/passwd"), "{err}");
        file(&mut tree, "f");
        assert!(tree.add_dir(p("f/d"), meta()).is_err());
    }

    #[test]
    fn hardlinks_share_the_inode() {
        let mut tree = Tree::new();
        file(&mut tree, "z");
        tree.add_hardlink(p("a"), p("z")).unwrap();
        assert_eq!(tree.nodes()[&p("a")], tree.nodes()[&p("z")]);
        let err = tree.add_hardlink(p("b"), p("nope")).unwrap_err();
        assert!(matches!(err, TreeError::HardlinkTargetMissing { .. }));
        tree.add_dir(p("d"), meta()).unwrap();
        assert!(matches!(
            tree.add_hardlink(p("c"), p("d")),
            Err(TreeError::HardlinkToDirectory { .. })
        ));
        tree.skip_special(p("dev/null"));
        tree.add_hardlink(p("null2"), p("dev/null")).unwrap();
        assert_eq!(tree.skipped_special, 2);
    }

    #[test]
    fn later_entries_replace_and_whiteouts_spare_their_layer() {
        let mut tree = Tree::new();
        tree.add_dir(p("d"), meta()).unwrap();
        file(&mut tree, "d/a");
        file(&mut tree, "d/b");
        file(&mut tree, "gone");
        tree.add_dir(p("o"), meta()).unwrap();
        file(&mut tree, "o/old");

        tree.begin_layer();
        file(&mut tree, "o/new");
        tree.whiteout(&p("gone")).unwrap();
        tree.make_opaque(&p("o")).unwrap();
        assert_eq!(paths(&tree), ["d", "d/a", "d/b", "o", "o/new"]);

        // A file replacing a directory hides what was beneath it.
        tree.begin_layer();
        file(&mut tree, "d");
        assert_eq!(paths(&tree), ["d", "o", "o/new"]);

        tree.fill_implied_dirs();
        assert_eq!(paths(&tree), ["/", "d", "o", "o/new"]);
        assert!(matches!(
            tree.add_symlink(p("x"), meta(), b"../y".to_vec()),
            Err(TreeError::Unsafe { .. })
        ));
        let mut tree = Tree::new();
        file(&mut tree, "a/b/c");
        tree.fill_implied_dirs();
        assert_eq!(paths(&tree), ["/", "a", "a/b", "a/b/c"]);
        assert_eq!(tree.nodes()[&p("a")], Node::Dir(Meta::IMPLIED_DIR));
    }
}
