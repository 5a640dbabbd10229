//! OCI imports built in the test: docker save and OCI layout archives.

use std::fs;

use serde_json::json;

use super::*;
use crate::testutil::{Raw, gzip, listing, raw_tar, snapshot};
use crate::tree::TreeError;
use crate::unpack::unpack_blob;

/// Layer 1: a small system.
fn layer1() -> Vec<u8> {
    raw_tar(&[
        Raw::Dir("bin/"),
        Raw::File("bin/sh", b"sh"),
        Raw::Dir("etc/"),
        Raw::File("etc/gone", b"g"),
        Raw::File("etc/keep", b"k"),
        Raw::Dir("opq/"),
        Raw::File("opq/old", b"o"),
    ])
}

/// Layer 2: deletes `etc/gone`, makes `opq` opaque (keeping its own
/// `opq/new`, listed before the marker), adds `added`.
fn layer2() -> Vec<u8> {
    raw_tar(&[
        Raw::File("added", b"a"),
        Raw::File("etc/.wh.gone", b""),
        Raw::Dir("opq/"),
        Raw::File("opq/new", b"n"),
        Raw::File("opq/.wh..wh..opq", b""),
    ])
}

fn config_json(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": host_arch(),
        "os": "linux",
        "config": {
            "Entrypoint": ["/bin/sh"],
            "Cmd": ["-c", "echo hi"],
            "Env": ["PATH=/bin", "A=b=c", "NOVALUE"],
            "WorkingDir": "/srv",
            "User": "1000",
            "Labels": {"org.opencontainers.image.description": "test image"}
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap()
}

/// An outer tar built from (name, bytes) files and (name, target) symlinks.
fn outer_tar(files: &[(String, Vec<u8>)], links: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, name, &bytes[..]).unwrap();
    }
    for (name, target) in links {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder.append_link(&mut header, name, target).unwrap();
    }
    builder.into_inner().unwrap()
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256(bytes).0)
}

/// A legacy `docker save` archive; layer 2 is stored once and linked.
fn docker_save(l1: Vec<u8>, l2: Vec<u8>, diff_ids: &[String]) -> Vec<u8> {
    let config = config_json(diff_ids);
    let config_name = format!("{}.json", sha256(&config).0);
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name,
        "RepoTags": ["test:1"],
        "Layers": ["l1/layer.tar", "l2/layer.tar"]
    }]))
    .unwrap();
    outer_tar(
        &[
            ("l1/layer.tar".into(), l1),
            ("shared/layer.tar".into(), l2),
            (config_name, config),
            ("manifest.json".into(), manifest),
        ],
        &[("l2/layer.tar", "../shared/layer.tar")],
    )
}

/// An OCI image layout with layer 2 gzip-compressed. `store` may replace
/// the bytes stored for a layer (to corrupt it).
fn oci_layout(l1: Vec<u8>, l2: Vec<u8>, store: impl Fn(usize, Vec<u8>) -> Vec<u8>) -> Vec<u8> {
    let diff_ids = [digest(&l1), digest(&l2)];
    let l2_gz = gzip(&l2);
    let config = config_json(&diff_ids);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(&config), "size": config.len()},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar",
             "digest": digest(&l1), "size": l1.len()},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
             "digest": digest(&l2_gz), "size": l2_gz.len()}
        ]
    }))
    .unwrap();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(&manifest), "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "test:1"}
        }]
    }))
    .unwrap();
    let blob = |bytes: &[u8]| format!("blobs/sha256/{}", sha256(bytes).0);
    outer_tar(
        &[
            (
                "oci-layout".into(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            ("index.json".into(), index),
            (blob(&manifest), manifest.clone()),
            (blob(&config), config.clone()),
            (blob(&l1), store(0, l1.clone())),
            (blob(&l2_gz), store(1, l2_gz.clone())),
        ],
        &[],
    )
}

fn flattened_paths(blob: &ImportedBlob, work: &Path) -> Vec<String> {
    let cache = work.join("cache");
    let out = unpack_blob(&blob.path, &blob.content_id, &cache, 0).unwrap();
    let snap = snapshot(&out.rootfs, &[]);
    snap.keys().cloned().collect()
}

const EXPECTED: [&str; 8] = [
    "", "added", "bin", "bin/sh", "etc", "etc/keep", "opq", "opq/new",
];

#[test]
fn docker_save_layers_flatten_with_whiteouts() {
    let work = tempfile::tempdir().unwrap();
    let (l1, l2) = (layer1(), layer2());
    let diff_ids = [digest(&l1), digest(&l2)];
    let archive = work.path().join("image.tar");
    fs::write(&archive, docker_save(l1, l2, &diff_ids)).unwrap();
    let blobs = work.path().join("blobs");
    let blob = import_oci(&archive, &blobs).unwrap();
    assert_eq!(flattened_paths(&blob, work.path()), EXPECTED);

    let m = &blob.manifest;
    assert_eq!(m.entrypoint, ["/bin/sh", "-c", "echo hi"]);
    assert_eq!(m.env.get("A").map(String::as_str), Some("b=c"));
    assert_eq!(m.env.len(), 2);
    assert_eq!(m.workdir.as_deref(), Some("/srv"));
    assert_eq!(m.user.as_deref(), Some("1000"));
    assert_eq!(m.description, "test image");
    assert_eq!(m.arch, host_arch());
    assert_eq!(listing(&blobs), [format!("{}.tar.zst", blob.content_id)]);
}

#[test]
fn oci_layout_gives_the_same_template_as_docker_save() {
    let work = tempfile::tempdir().unwrap();
    let (l1, l2) = (layer1(), layer2());
    let diff_ids = [digest(&l1), digest(&l2)];
    let saved = work.path().join("saved.tar");
    fs::write(&saved, docker_save(l1.clone(), l2.clone(), &diff_ids)).unwrap();
    // The layout archive itself gzip-compressed, as `docker save | gzip` users do.
    let layout = work.path().join("layout.tar.gz");
    fs::write(&layout, gzip(&oci_layout(l1, l2, |_, b| b))).unwrap();
    let blobs = work.path().join("blobs");
    let from_layout = import_oci(&layout, &blobs).unwrap();
    let from_save = import_oci(&saved, &blobs).unwrap();
    assert_eq!(from_layout.content_id, from_save.content_id);
    assert_eq!(flattened_paths(&from_layout, work.path()), EXPECTED);
    assert_eq!(from_layout.manifest, from_save.manifest);
    assert_eq!(listing(&blobs).len(), 1);
}

#[test]
fn layers_that_do_not_match_their_digest_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let blobs = work.path().join("blobs");
    let tampered = raw_tar(&[Raw::File("bin/sh", b"evil")]);

    // OCI layout: the stored layer 1 is not what its descriptor says.
    let layout = work.path().join("layout.tar");
    let replacement = tampered.clone();
    fs::write(
        &layout,
        oci_layout(layer1(), layer2(), move |i, b| {
            if i == 0 { replacement.clone() } else { b }
        }),
    )
    .unwrap();
    let err = import_oci(&layout, &blobs).unwrap_err();
    assert!(
        matches!(err, OciError::DigestMismatch { what: "layer", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("export the image again"), "{err}");
    assert_eq!(listing(&blobs), Vec::<String>::new());

    // OCI layout: a gzip layer whose content is not what it says.
    let layout = work.path().join("layout2.tar");
    let evil_gz = gzip(&tampered);
    fs::write(
        &layout,
        oci_layout(
            layer1(),
            layer2(),
            move |i, b| if i == 1 { evil_gz.clone() } else { b },
        ),
    )
    .unwrap();
    assert!(matches!(
        import_oci(&layout, &blobs),
        Err(OciError::DigestMismatch { .. })
    ));
    assert_eq!(listing(&blobs), Vec::<String>::new());

    // docker save: the layer does not match the config's diff id.
    let saved = work.path().join("saved.tar");
    let diff_ids = [digest(&layer1()), digest(&layer2())];
    fs::write(&saved, docker_save(tampered, layer2(), &diff_ids)).unwrap();
    let err = import_oci(&saved, &blobs).unwrap_err();
    assert!(
        matches!(
            err,
            OciError::DigestMismatch {
                what: "uncompressed layer",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(listing(&blobs), Vec::<String>::new());
}

#[test]
fn bad_images_are_refused_clearly() {
    let work = tempfile::tempdir().unwrap();
    let blobs = work.path().join("blobs");

    // A layer trying tar-slip.
    let evil = raw_tar(&[Raw::Symlink("etc", "/etc"), Raw::File("etc/passwd", b"x")]);
    let saved = work.path().join("slip.tar");
    fs::write(&saved, docker_save(evil, layer2(), &[])).unwrap();
    let err = import_oci(&saved, &blobs).unwrap_err();
    assert!(
        matches!(
            err,
            OciError::Archive(ArchiveError::Entry(TreeError::BeneathNonDirectory { .. }))
        ),
        "{err}"
    );
    assert!(err.to_string().contains("etc/passwd"), "{err}");
    let evil = raw_tar(&[Raw::File("../../x", b"x")]);
    fs::write(&saved, docker_save(evil, layer2(), &[])).unwrap();
    assert!(
        import_oci(&saved, &blobs)
            .unwrap_err()
            .to_string()
            .contains("../../x")
    );
    assert_eq!(listing(&blobs), Vec::<String>::new());

    // A rootfs tar is not an image.
    let plain = work.path().join("rootfs.tar");
    fs::write(&plain, layer1()).unwrap();
    let err = import_oci(&plain, &blobs).unwrap_err();
    assert!(matches!(err, OciError::NotAnImage { .. }), "{err}");
    assert!(err.to_string().contains("docker save"), "{err}");

    // Several images in one docker save.
    let manifest = serde_json::to_vec(&json!([
        {"Config": "a.json", "RepoTags": ["a:1"], "Layers": []},
        {"Config": "b.json", "RepoTags": ["b:1"], "Layers": []}
    ]))
    .unwrap();
    let multi = work.path().join("multi.tar");
    fs::write(
        &multi,
        outer_tar(&[("manifest.json".into(), manifest)], &[]),
    )
    .unwrap();
    let err = import_oci(&multi, &blobs).unwrap_err();
    assert!(matches!(err, OciError::Ambiguous { .. }), "{err}");
    assert!(err.to_string().contains("a:1, b:1"), "{err}");

    // A layer the manifest names but the archive lacks.
    let manifest = serde_json::to_vec(&json!([
        {"Config": "c.json", "Layers": ["missing/layer.tar"]}
    ]))
    .unwrap();
    let incomplete = work.path().join("incomplete.tar");
    fs::write(
        &incomplete,
        outer_tar(
            &[
                ("manifest.json".into(), manifest),
                ("c.json".into(), config_json(&[])),
            ],
            &[],
        ),
    )
    .unwrap();
    let err = import_oci(&incomplete, &blobs).unwrap_err();
    assert!(matches!(err, OciError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("missing/layer.tar"), "{err}");

    // Broken JSON.
    let broken = work.path().join("broken.tar");
    fs::write(
        &broken,
        outer_tar(&[("manifest.json".into(), b"[{".to_vec())], &[]),
    )
    .unwrap();
    let err = import_oci(&broken, &blobs).unwrap_err();
    assert!(matches!(err, OciError::Json { .. }), "{err}");
    assert_eq!(listing(&blobs), Vec::<String>::new());
}
