//! Imports of directories and tars: round trips, determinism, tar-slip refusals.

use std::fs;
use std::path::Path;

use super::*;
use crate::size::Size;
use crate::testutil::{Raw, build_rootfs, gnu_tar, gzip, listing, raw_tar, snapshot, zstd};
use crate::unpack::unpack_blob;

/// What the blob of the sample rootfs leaves out.
const NOT_IN_BLOB: [&str; 2] = ["template.toml", "tmp/fifo"];

#[test]
fn directory_round_trips_through_blob_and_unpack() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    build_rootfs(&src);
    let blobs = work.path().join("blobs");
    let imported = import_rootfs(&src, &blobs).unwrap();

    assert_eq!(imported.skipped_special, 1);
    assert_eq!(imported.manifest.description, "sample");
    assert_eq!(imported.manifest.default_size, Size::Tiny);
    assert_eq!(imported.manifest.entrypoint, ["/bin/sh", "-c", "echo hi"]);
    assert_eq!(
        imported.path,
        blobs.join(format!("{}.tar.zst", imported.content_id))
    );
    assert_eq!(
        fs::metadata(&imported.path).unwrap().len(),
        imported.size_bytes
    );
    assert_eq!(
        listing(&blobs),
        [format!("{}.tar.zst", imported.content_id)]
    );

    let cache = work.path().join("cache");
    let unpacked = unpack_blob(&imported.path, &imported.content_id, &cache, 0).unwrap();
    assert!(unpacked.fresh);
    let expected = snapshot(&src, &NOT_IN_BLOB);
    let actual = snapshot(&unpacked.rootfs, &[]);
    if crate::testutil::running_as_root() {
        assert_eq!(
            actual["etc/secret"].uid, 1000,
            "ownership is kept when root"
        );
    }
    assert_eq!(actual["bin/su"].mode, 0o4755);
    assert_eq!(actual["bin/busybox"].nlink, 2);
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        actual.keys().collect::<Vec<_>>()
    );
    for (path, want) in &expected {
        assert_eq!(&actual[path], want, "{path}");
    }
    // The cache holds the rootfs only, no staging leftovers.
    assert_eq!(
        listing(&cache.join(imported.content_id.to_string())),
        ["rootfs"]
    );

    // Unpacking again is a no-op; importing the unpacked tree gives the same blob.
    let again = unpack_blob(&imported.path, &imported.content_id, &cache, 0).unwrap();
    assert!(!again.fresh);
    let other_blobs = work.path().join("blobs2");
    let reimported = import_rootfs(&unpacked.rootfs, &other_blobs).unwrap();
    assert_eq!(reimported.content_id, imported.content_id);
    assert_eq!(reimported.manifest, TemplateManifest::default());
}

#[test]
fn same_tree_gives_same_id() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    build_rootfs(&a);
    build_rootfs(&b);
    let blobs = work.path().join("blobs");
    let first = import_rootfs(&a, &blobs).unwrap();
    let second = import_rootfs(&a, &blobs).unwrap();
    let twin = import_rootfs(&b, &blobs).unwrap();
    assert_eq!(first.content_id, second.content_id);
    assert_eq!(first.content_id, twin.content_id);
    assert_eq!(listing(&blobs).len(), 1);

    // Any change to content or metadata changes the id.
    fs::write(b.join("etc/hostname"), b"other\n").unwrap();
    let changed = import_rootfs(&b, &blobs).unwrap();
    assert_ne!(changed.content_id, first.content_id);
}

#[test]
fn tar_gzip_and_zstd_inputs_match_the_directory() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    build_rootfs(&src);
    let blobs = work.path().join("blobs");
    let from_dir = import_rootfs(&src, &blobs).unwrap();

    let tar_path = work.path().join("rootfs.tar");
    gnu_tar(&src, &tar_path, &[]);
    let plain = fs::read(&tar_path).unwrap();
    // PAX headers (long names, times) as GNU tar writes them in POSIX mode.
    let pax_path = work.path().join("rootfs.pax");
    gnu_tar(&src, &pax_path, &["--format=posix"]);
    // Names that lie about the format: detection goes by content.
    let gz_path = work.path().join("rootfs.tar.zst");
    fs::write(&gz_path, gzip(&plain)).unwrap();
    let zst_path = work.path().join("rootfs.bin");
    fs::write(&zst_path, zstd(&plain)).unwrap();

    for source in [&tar_path, &pax_path, &gz_path, &zst_path] {
        let imported = import_rootfs(source, &blobs).unwrap();
        assert_eq!(
            imported.content_id,
            from_dir.content_id,
            "{}",
            source.display()
        );
        assert_eq!(imported.manifest, from_dir.manifest);
        assert_eq!(imported.skipped_special, 1);
    }
    // Decompressed scratch copies are gone.
    assert_eq!(
        listing(&blobs),
        [format!("{}.tar.zst", from_dir.content_id)]
    );
}

#[test]
fn tars_in_any_order_and_without_parent_entries_give_one_id() {
    let work = tempfile::tempdir().unwrap();
    let blobs = work.path().join("blobs");
    let sorted = raw_tar(&[
        Raw::Dir("./"),
        Raw::Dir("a/"),
        Raw::File("a/x", b"x"),
        Raw::Hardlink("a/y", "a/x"),
        Raw::Symlink("b", "a/x"),
    ]);
    // Reversed order, the data on the later name, no `./` or `a/` entry.
    let shuffled = raw_tar(&[
        Raw::Symlink("b", "a/x"),
        Raw::File("a/y", b"x"),
        Raw::Hardlink("a/x", "a/y"),
    ]);
    let (p1, p2) = (work.path().join("1.tar"), work.path().join("2.tar"));
    fs::write(&p1, sorted).unwrap();
    fs::write(&p2, shuffled).unwrap();
    let one = import_rootfs(&p1, &blobs).unwrap();
    let two = import_rootfs(&p2, &blobs).unwrap();
    // Implied directories get 0755 root:root mtime 0, listed ones their own
    // metadata, so these differ only through `./` and `a/`.
    assert_ne!(one.content_id, two.content_id);
    let three = work.path().join("3.tar");
    fs::write(
        &three,
        raw_tar(&[Raw::Hardlink("a/x", "a/y"), Raw::Dir("a/"), Raw::Dir("./")]),
    )
    .unwrap();
    // A hardlink before its target is refused.
    let err = import_rootfs(&three, &blobs).unwrap_err();
    assert!(
        matches!(
            err,
            ArchiveError::Entry(TreeError::HardlinkTargetMissing { .. })
        ),
        "{err}"
    );
    let four = work.path().join("4.tar");
    fs::write(
        &four,
        raw_tar(&[
            Raw::Symlink("b", "a/x"),
            Raw::Dir("a/"),
            Raw::File("a/y", b"x"),
            Raw::Hardlink("a/x", "a/y"),
            Raw::Dir("./"),
        ]),
    )
    .unwrap();
    let four = import_rootfs(&four, &blobs).unwrap();
    assert_eq!(four.content_id, one.content_id);
}

/// Imports `tar` (plain and gzip) and expects a refusal naming `entry`, with
/// nothing left in the blob directory.
fn assert_refused(tar: Vec<u8>, entry: &str) {
    let work = tempfile::tempdir().unwrap();
    let blobs = work.path().join("blobs");
    for (name, bytes) in [("evil.tar", tar.clone()), ("evil.tgz", gzip(&tar))] {
        let path = work.path().join(name);
        fs::write(&path, bytes).unwrap();
        let err = import_rootfs(&path, &blobs).unwrap_err();
        assert!(matches!(err, ArchiveError::Entry(_)), "{entry}: {err}");
        assert!(err.to_string().contains(entry), "{entry}: {err}");
        assert_eq!(listing(&blobs), Vec::<String>::new(), "{entry}: leftovers");
    }
}

#[test]
fn tar_slip_is_refused() {
    let ok = Raw::File("ok", b"fine");
    assert_refused(raw_tar(&[Raw::File("../x", b"x")]), "../x");
    assert_refused(raw_tar(&[Raw::File("/abs", b"x")]), "/abs");
    assert_refused(
        raw_tar(&[Raw::Dir("a/"), Raw::File("a/../../x", b"x")]),
        "a/../../x",
    );
    assert_refused(
        raw_tar(&[
            Raw::Symlink("evil", "../../etc"),
            Raw::File("evil/passwd", b"x"),
        ]),
        "evil",
    );
    assert_refused(
        raw_tar(&[Raw::Symlink("evil", "/etc"), Raw::File("evil/passwd", b"x")]),
        "evil/passwd",
    );
    assert_refused(
        raw_tar(&[ok, Raw::Hardlink("h", "/etc/passwd")]),
        "/etc/passwd",
    );
    assert_refused(raw_tar(&[Raw::Hardlink("h", "../x")]), "../x");
    assert_refused(raw_tar(&[Raw::Hardlink("h", "nowhere")]), "nowhere");
    assert_refused(raw_tar(&[Raw::Dir("d/"), Raw::Hardlink("h", "d")]), "d");
    assert_refused(
        raw_tar(&[Raw::Dir("a/"), Raw::Symlink("a/up", "../../x")]),
        "a/up",
    );
    assert_refused(
        raw_tar(&[Raw::File("f", b"x"), Raw::File("f/g", b"x")]),
        "f/g",
    );
}

#[test]
fn special_files_are_skipped_and_counted() {
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("dev.tar");
    fs::write(
        &path,
        raw_tar(&[
            Raw::Dir("dev/"),
            Raw::Fifo("dev/fifo"),
            Raw::Hardlink("dev/fifo2", "dev/fifo"),
            Raw::File("x", b""),
        ]),
    )
    .unwrap();
    let imported = import_rootfs(&path, &work.path().join("blobs")).unwrap();
    assert_eq!(imported.skipped_special, 2);
    // Root, dev, x.
    assert_eq!(imported.entries, 3);
}

#[test]
fn directory_symlinks_that_climb_out_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    std::os::unix::fs::symlink("../../../etc/passwd", src.join("etc/evil")).unwrap();
    let blobs = work.path().join("blobs");
    let err = import_rootfs(&src, &blobs).unwrap_err();
    assert!(err.to_string().contains("etc/evil"), "{err}");
    assert_eq!(listing(&blobs), Vec::<String>::new());
}

#[test]
fn bad_manifests_and_sources_are_reported() {
    let work = tempfile::tempdir().unwrap();
    let blobs = work.path().join("blobs");
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("template.toml"), "entrypoint = 3\n").unwrap();
    let err = import_rootfs(&src, &blobs).unwrap_err();
    assert!(matches!(err, ArchiveError::Manifest(_)), "{err}");
    assert!(err.to_string().contains("template.toml"), "{err}");
    assert_eq!(listing(&blobs), Vec::<String>::new());

    fs::remove_file(src.join("template.toml")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("template.toml")).unwrap();
    let err = import_rootfs(&src, &blobs).unwrap_err();
    assert!(
        matches!(err, ArchiveError::ManifestNotFile("symlink")),
        "{err}"
    );

    let tarred = work.path().join("m.tar");
    fs::write(
        &tarred,
        raw_tar(&[Raw::Symlink("template.toml", "/etc/passwd")]),
    )
    .unwrap();
    assert!(matches!(
        import_rootfs(&tarred, &blobs),
        Err(ArchiveError::ManifestNotFile("symlink"))
    ));

    let text = work.path().join("notes.txt");
    fs::write(&text, "hello").unwrap();
    let err = import_rootfs(&text, &blobs).unwrap_err();
    assert!(matches!(err, ArchiveError::UnknownFormat { .. }), "{err}");
    assert!(err.to_string().contains("notes.txt"), "{err}");

    // A truncated archive is reported as such, not as a partial template.
    let full = raw_tar(&[Raw::File("a", &[7u8; 4000])]);
    let cut = work.path().join("cut.tar");
    fs::write(&cut, &full[..2048]).unwrap();
    let err = import_rootfs(&cut, &blobs).unwrap_err();
    assert!(
        matches!(
            err,
            ArchiveError::SourceData { .. } | ArchiveError::Corrupt { .. }
        ),
        "{err}"
    );
    assert_eq!(listing(&blobs), Vec::<String>::new());

    let missing = import_rootfs(Path::new("/nonexistent/rootfs"), &blobs).unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/rootfs"),
        "{missing}"
    );
}

#[test]
fn blob_layout_is_canonical_and_standard() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("a/b")).unwrap();
    fs::write(src.join("a/z"), b"hi").unwrap();
    fs::hard_link(src.join("a/z"), src.join("a/b/f")).unwrap();
    std::os::unix::fs::symlink("/x", src.join("a/l")).unwrap();
    let blob = import_rootfs(&src, &work.path().join("blobs")).unwrap();

    let plain = zstd::decode_all(&fs::read(&blob.path).unwrap()[..]).unwrap();
    let mut archive = tar::Archive::new(&plain[..]);
    let mut seen = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        assert_eq!(header.username_bytes(), Some(&b""[..]));
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        if header.entry_type() == tar::EntryType::Symlink {
            assert_eq!(header.mode().unwrap(), 0o777);
        }
        seen.push((
            String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
            header.entry_type(),
            link,
        ));
    }
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    assert_eq!(
        seen,
        [
            ("./".to_string(), Directory, None),
            ("a/".into(), Directory, None),
            ("a/b/".into(), Directory, None),
            // The first path of the inode in sorted order holds the bytes.
            ("a/b/f".into(), Regular, None),
            ("a/l".into(), Symlink, Some("/x".into())),
            ("a/z".into(), Link, Some("a/b/f".into())),
        ]
    );

    // GNU tar reads it as a plain tar.
    let tar_path = work.path().join("plain.tar");
    fs::write(&tar_path, &plain).unwrap();
    let listed = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar_path)
        .output()
        .unwrap();
    assert!(listed.status.success());
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "./\na/\na/b/\na/b/f\na/l\na/z\n"
    );
}
