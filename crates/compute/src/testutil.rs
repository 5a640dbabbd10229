//! Helpers for the tests: a sample rootfs, tree snapshots, and tars built
//! by hand (including malicious ones the `tar` crate would refuse to write).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use filetime::FileTime;

/// A fixed mtime, so separately built trees are identical.
pub const MTIME: i64 = 1_700_000_000;

/// Whether the tests run as root (ownership can be set and is kept).
pub fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
}

fn set_mtime(path: &Path) {
    let t = FileTime::from_unix_time(MTIME, 0);
    filetime::set_symlink_file_times(path, t, t).unwrap();
}

/// Builds a small but varied rootfs at `root` (created): directories with
/// odd modes, a setuid binary, a file owned by 1000:1000 (when root), a
/// large file, relative and absolute symlinks, a hardlink, a fifo, a long
/// and a non-UTF-8 name, and a `template.toml`.
pub fn build_rootfs(root: &Path) {
    fs::create_dir_all(root).unwrap();
    for dir in ["bin", "etc", "usr/lib", "empty", "ro", "tmp", "long"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    fs::write(root.join("bin/busybox"), b"#!busybox\n").unwrap();
    fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::hard_link(root.join("bin/busybox"), root.join("bin/ls")).unwrap();
    fs::write(root.join("bin/su"), b"su").unwrap();
    fs::set_permissions(root.join("bin/su"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(root.join("etc/hostname"), b"coop\n").unwrap();
    fs::write(root.join("etc/secret"), b"s").unwrap();
    fs::set_permissions(root.join("etc/secret"), fs::Permissions::from_mode(0o600)).unwrap();
    if running_as_root() {
        std::os::unix::fs::chown(root.join("etc/secret"), Some(1000), Some(1000)).unwrap();
    }
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(root.join("usr/lib/libbig.so"), &big).unwrap();
    fs::write(root.join("ro/file"), b"read only dir").unwrap();
    symlink("busybox", root.join("bin/sh")).unwrap();
    symlink("/bin/busybox", root.join("bin/abs")).unwrap();
    symlink("usr/lib", root.join("lib")).unwrap();
    symlink("../../etc/hostname", root.join("usr/lib/up")).unwrap();
    let long_name = "n".repeat(150);
    fs::write(root.join("long").join(&long_name), b"long").unwrap();
    symlink(
        format!("/long/{long_name}/../{long_name}"),
        root.join("long/link"),
    )
    .unwrap();
    fs::write(
        root.join(std::ffi::OsStr::from_bytes(b"etc/caf\xe9")),
        b"latin1",
    )
    .unwrap();
    let status = Command::new("mkfifo")
        .arg(root.join("tmp/fifo"))
        .status()
        .unwrap();
    assert!(status.success());
    fs::write(
        root.join("template.toml"),
        "description = \"sample\"\nentrypoint = [\"/bin/sh\", \"-c\", \"echo hi\"]\ndefault_size = \"tiny\"\n",
    )
    .unwrap();

    for entry in walk(root) {
        set_mtime(&entry);
    }
    fs::set_permissions(root.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    // Directory times last: creating entries in them changed them.
    for dir in [
        "ro", "tmp", "bin", "etc", "usr/lib", "usr", "empty", "long", "",
    ] {
        set_mtime(&root.join(dir));
    }
}

/// Every path under `root` (not `root` itself), deepest last.
pub fn walk(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in fs::read_dir(&dir).unwrap() {
            let path = item.unwrap().path();
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}

/// What a test compares of one entry.
#[derive(Debug, PartialEq, Eq)]
pub struct Described {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    /// File contents' BLAKE3, or the symlink target.
    pub content: String,
    pub nlink: u64,
}

/// A snapshot of the tree at `root` (root included as ""), skipping `skip`
/// (relative paths) and special files.
pub fn snapshot(root: &Path, skip: &[&str]) -> BTreeMap<String, Described> {
    let mut out = BTreeMap::new();
    let mut paths = walk(root);
    paths.push(root.to_path_buf());
    for path in paths {
        let rel = path.strip_prefix(root).unwrap();
        let key = String::from_utf8_lossy(rel.as_os_str().as_bytes()).into_owned();
        if skip.contains(&key.as_str()) {
            continue;
        }
        let md = fs::symlink_metadata(&path).unwrap();
        let (kind, content) = if md.is_dir() {
            ("dir", String::new())
        } else if md.file_type().is_symlink() {
            let target = fs::read_link(&path).unwrap();
            (
                "symlink",
                String::from_utf8_lossy(target.as_os_str().as_bytes()).into_owned(),
            )
        } else if md.is_file() {
            (
                "file",
                blake3::hash(&fs::read(&path).unwrap()).to_hex().to_string(),
            )
        } else {
            continue;
        };
        let mode = if kind == "symlink" {
            0
        } else {
            md.mode() & 0o7777
        };
        let nlink = if kind == "file" { md.nlink() } else { 0 };
        out.insert(
            key,
            Described {
                kind,
                mode,
                uid: md.uid(),
                gid: md.gid(),
                mtime: md.mtime(),
                content,
                nlink,
            },
        );
    }
    out
}

/// Tars `dir` with GNU tar (`tar -C dir -cf out .`), as a user would,
/// with extra `args` (`--format=posix`).
pub fn gnu_tar(dir: &Path, out: &Path, args: &[&str]) {
    let status = Command::new("tar")
        .args(args)
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
}

/// Gzip-compresses bytes.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Zstd-compresses bytes.
pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

/// One entry of a hand-built tar; names are written raw, unchecked.
pub enum Raw<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Fifo(&'a str),
}

/// Builds a tar from raw entries, bypassing the `tar` crate's path checks.
pub fn raw_tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let (name, kind, link, data): (&str, tar::EntryType, &str, &[u8]) = match entry {
            Raw::Dir(n) => (n, tar::EntryType::Directory, "", b""),
            Raw::File(n, d) => (n, tar::EntryType::Regular, "", d),
            Raw::Symlink(n, t) => (n, tar::EntryType::Symlink, t, b""),
            Raw::Hardlink(n, t) => (n, tar::EntryType::Link, t, b""),
            Raw::Fifo(n) => (n, tar::EntryType::Fifo, "", b""),
        };
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_mtime(MTIME as u64);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Names in `dir` (for "nothing was left behind" checks).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(items) => items
            .map(|i| i.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}
