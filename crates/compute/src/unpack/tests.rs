//! Unpacking: blobs are verified and re-checked, never trusted.

use std::fs;

use super::*;
use crate::testutil::{Raw, listing, raw_tar, zstd};

/// Writes `tar` zstd-compressed as a blob file and returns its path and id.
fn blob_of(dir: &Path, tar: Vec<u8>) -> (PathBuf, ContentId) {
    let bytes = zstd(&tar);
    let id = ContentId::of_bytes(&bytes);
    let path = dir.join(format!("{id}.tar.zst"));
    fs::write(&path, bytes).unwrap();
    (path, id)
}

/// Unpacking `tar` fails with an error mentioning `needle`; the cache holds
/// neither a rootfs nor a staging directory.
fn assert_refused(tar: Vec<u8>, needle: &str) {
    let work = tempfile::tempdir().unwrap();
    let (blob, id) = blob_of(work.path(), tar);
    let cache = work.path().join("cache");
    let err = unpack_blob(&blob, &id, &cache, 0).unwrap_err();
    assert!(
        matches!(
            err,
            UnpackError::Unsafe { .. } | UnpackError::Corrupt { .. }
        ),
        "{needle}: {err}"
    );
    assert!(err.to_string().contains(needle), "{needle}: {err}");
    assert_eq!(listing(&cache.join(id.to_string())), Vec::<String>::new());
    assert!(!work.path().join("etc").exists());
}

#[test]
fn blobs_are_never_trusted() {
    assert_refused(raw_tar(&[Raw::Dir("./"), Raw::File("../x", b"x")]), "../x");
    assert_refused(
        raw_tar(&[Raw::Dir("./"), Raw::File("/etc/x", b"x")]),
        "/etc/x",
    );
    assert_refused(
        raw_tar(&[
            Raw::Dir("./"),
            Raw::Symlink("evil", "/etc"),
            Raw::File("evil/passwd", b"x"),
        ]),
        "evil/passwd",
    );
    assert_refused(
        raw_tar(&[Raw::Dir("./"), Raw::Symlink("evil", "../etc")]),
        "evil",
    );
    assert_refused(
        raw_tar(&[Raw::Dir("./"), Raw::Hardlink("h", "/etc/passwd")]),
        "/etc/passwd",
    );
    assert_refused(
        raw_tar(&[
            Raw::Dir("./"),
            Raw::Symlink("s", "/etc"),
            Raw::Hardlink("t", "s"),
        ]),
        "t",
    );
    assert_refused(raw_tar(&[Raw::File("a", b"x")]), "root");
    assert_refused(
        raw_tar(&[Raw::Dir("./"), Raw::File("b", b""), Raw::File("a", b"")]),
        "out of order",
    );
    assert_refused(
        raw_tar(&[Raw::Dir("./"), Raw::File("a", b""), Raw::File("a", b"")]),
        "repeated",
    );
    assert_refused(raw_tar(&[Raw::Dir("./"), Raw::File("a/b", b"")]), "a/b");
    assert_refused(raw_tar(&[Raw::Dir("./"), Raw::Fifo("p")]), "p");
}

#[test]
fn a_blob_with_the_wrong_id_is_not_unpacked() {
    let work = tempfile::tempdir().unwrap();
    let (blob, _) = blob_of(work.path(), raw_tar(&[Raw::Dir("./")]));
    let wrong = ContentId::of_bytes(b"something else");
    let cache = work.path().join("cache");
    let err = unpack_blob(&blob, &wrong, &cache, 0).unwrap_err();
    assert!(matches!(err, UnpackError::WrongContent { .. }), "{err}");
    assert!(!rootfs_path(&cache, &wrong, 0).exists());
    assert_eq!(listing(&cache), Vec::<String>::new());

    let garbage = work.path().join("garbage");
    fs::write(&garbage, b"not zstd").unwrap();
    let id = ContentId::of_bytes(b"not zstd");
    let err = unpack_blob(&garbage, &id, &cache, 0).unwrap_err();
    assert!(matches!(err, UnpackError::Corrupt { .. }), "{err}");
    assert_eq!(listing(&cache.join(id.to_string())), Vec::<String>::new());
}

#[test]
fn a_minimal_blob_unpacks_with_modes() {
    let work = tempfile::tempdir().unwrap();
    let (blob, id) = blob_of(
        work.path(),
        raw_tar(&[
            Raw::Dir("./"),
            Raw::Dir("d/"),
            Raw::File("d/f", b"hello"),
            Raw::Hardlink("d/g", "d/f"),
            Raw::Symlink("s", "/d/f"),
        ]),
    );
    let cache = work.path().join("cache");
    let out = unpack_blob(&blob, &id, &cache, 0).unwrap();
    assert_eq!(out.rootfs, rootfs_path(&cache, &id, 0));
    assert_eq!(fs::read(out.rootfs.join("d/g")).unwrap(), b"hello");
    assert_eq!(
        fs::metadata(out.rootfs.join("d/f"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o644
    );
    assert_eq!(fs::metadata(out.rootfs.join("d/f")).unwrap().nlink(), 2);
    assert_eq!(
        fs::read_link(out.rootfs.join("s")).unwrap(),
        Path::new("/d/f")
    );
}

#[test]
fn a_shifted_unpack_moves_every_owner_into_the_container_range() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: owners can only be set as root");
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let work = tempfile::tempdir().unwrap();
    let (blob, id) = blob_of(
        work.path(),
        raw_tar(&[
            Raw::Dir("./"),
            Raw::Dir("d/"),
            Raw::File("d/f", b"hello"),
            Raw::Symlink("s", "/d/f"),
        ]),
    );
    let cache = work.path().join("cache");
    let shift = crate::runtime::userns::ID_BASE;
    let out = unpack_blob(&blob, &id, &cache, shift).unwrap();
    assert_eq!(out.rootfs, rootfs_path(&cache, &id, shift));
    assert_ne!(out.rootfs, rootfs_path(&cache, &id, 0));
    for path in ["", "d", "d/f"] {
        let meta = fs::metadata(out.rootfs.join(path)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (shift, shift), "{path}");
    }
    let link = fs::symlink_metadata(out.rootfs.join("s")).unwrap();
    assert_eq!(link.uid(), shift);
}
