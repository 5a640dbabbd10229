//! Importing an OCI image archive: the output of `docker save`, or an OCI
//! image layout in a tar (`skopeo copy ... oci-archive:FILE`), plain or
//! compressed with gzip or zstd.
//!
//! The image is found through `index.json` (OCI layout, preferred when
//! present since it carries digests) or `manifest.json` (docker save). Every
//! blob whose digest the format gives is checked with sha256 before it is
//! used: manifests, configs and layers by their descriptor digest, and each
//! layer's uncompressed bytes by the config's `rootfs.diff_ids`. Layers
//! (plain, gzip or zstd tars, told by their first bytes) are applied lowest
//! first to one [`Tree`] honouring whiteouts (`.wh.<name>` deletes,
//! `.wh..wh..opq` hides what lower layers put in a directory), with the same
//! path rules as a rootfs import; then the canonical blob is written.
//!
//! The layers are applied to an index rather than extracted into a staging
//! directory: the result is the same, ownership is kept without running as
//! root, no file from the image is ever written under its own name before
//! the whole image has been checked, and no bytes are copied twice.
//!
//! The entrypoint, command, environment, working directory and user of the
//! image config become the template's manifest.

mod outer;
mod spec;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::Path;

use crate::archive::{ArchiveError, ImportedBlob, TarMode, read_tar};
use crate::blob::write_blob;
use crate::format::{Compression, copy_decompressed, decompressed, sniff};
use crate::manifest::{ManifestError, TemplateManifest, host_arch, normalize_arch};
use crate::spool::{Slice, TempFile};
use crate::tree::Tree;

use outer::Outer;
use spec::{
    DockerImage, INDEX_MEDIA_TYPES, ImageConfig, ImageIndex, ImageManifest, Sha256Digest,
    ShaReader, ShaWriter, sha256,
};

/// Largest JSON document (index, manifest, config) read from an image.
const MAX_JSON_BYTES: u64 = 4 * 1024 * 1024;
/// Depth of nested image indexes followed (an index of per-platform indexes is 2).
const MAX_INDEX_DEPTH: usize = 4;
/// Longest description taken from an image label.
const MAX_DESCRIPTION_CHARS: usize = 1024;

/// An image archive that cannot be imported, and why.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("{path} is not an image archive: {hint}")]
    NotAnImage { path: String, hint: String },
    #[error("{path} names `{name}`, but the archive does not hold it; the export is incomplete")]
    Missing { path: String, name: String },
    #[error("`{name}` in the image is not valid: {reason}")]
    Json { name: String, reason: String },
    #[error("`{name}` in the image is {size} bytes; at most {limit} are read")]
    TooLarge { name: String, size: u64, limit: u64 },
    #[error("`{value}` in the image is not a sha256 digest; only sha256 is supported")]
    BadDigest { value: String },
    #[error(
        "{what} `{name}` has digest {actual}, but the image says {expected}: the archive is corrupt or was altered; export the image again"
    )]
    DigestMismatch {
        what: &'static str,
        name: String,
        expected: String,
        actual: String,
    },
    #[error(
        "the image config lists {diff_ids} layer digests for {layers} layers; the archive is inconsistent"
    )]
    LayerCount { layers: usize, diff_ids: usize },
    #[error("{path} holds several images ({choices}); save a single image")]
    Ambiguous { path: String, choices: String },
    #[error("the image is for the `{0}` operating system; coop runs linux images")]
    WrongOs(String),
    #[error("the image's run settings do not make a valid template: {0}")]
    Manifest(#[from] ManifestError),
}

/// A layer to apply: where it is in the archive and what it must hash to.
struct LayerRef {
    name: String,
    blob_digest: Option<Sha256Digest>,
}

/// Imports the image in the archive at `archive` into `blobs_dir` (created
/// if missing). On error nothing is left in `blobs_dir`.
pub fn import_oci(archive: &Path, blobs_dir: &Path) -> Result<ImportedBlob, OciError> {
    fs::create_dir_all(blobs_dir).map_err(ArchiveError::io(blobs_dir, "create"))?;
    let outer = Outer::open(archive, blobs_dir)?;
    let (layers, config, description) = if outer.contains("index.json") {
        find_in_layout(&outer)?
    } else if outer.contains("manifest.json") {
        find_in_docker_save(&outer)?
    } else {
        return Err(OciError::NotAnImage {
            path: archive.display().to_string(),
            hint: "it has neither index.json (OCI layout) nor manifest.json (docker save) at its root; create it with `docker save IMAGE -o FILE`".into(),
        });
    };
    if !config.os.is_empty() && config.os != "linux" {
        return Err(OciError::WrongOs(config.os));
    }
    let diff_ids = parse_diff_ids(&config)?;
    if !diff_ids.is_empty() && diff_ids.len() != layers.len() {
        return Err(OciError::LayerCount {
            layers: layers.len(),
            diff_ids: diff_ids.len(),
        });
    }

    let mut tree = Tree::new();
    let mut spools = vec![outer.spool()?];
    let mut scratch = Vec::new();
    for (index, layer) in layers.iter().enumerate() {
        let (spool, slice) = verify_layer(
            &outer,
            layer,
            diff_ids.get(index),
            blobs_dir,
            &mut spools,
            &mut scratch,
        )?;
        tree.begin_layer();
        read_tar(
            &mut tree,
            spool,
            slice,
            Path::new(&layer.name),
            TarMode::OciLayer,
        )?;
    }
    tree.fill_implied_dirs();
    let manifest = manifest_from(&config, description)?;
    let blob = write_blob(&tree, &spools, blobs_dir)?;
    tracing::info!(
        archive = %archive.display(),
        id = %blob.content_id,
        layers = layers.len(),
        entries = blob.entries,
        "OCI image imported"
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

/// Checks a layer's digests and returns the spool and slice its tar is read
/// from: the archive itself for a plain layer, a decompressed temporary
/// file (added to `spools`, kept in `scratch`) otherwise.
fn verify_layer(
    outer: &Outer,
    layer: &LayerRef,
    diff_id: Option<&Sha256Digest>,
    scratch_dir: &Path,
    spools: &mut Vec<File>,
    scratch: &mut Vec<TempFile>,
) -> Result<(usize, Slice), OciError> {
    let member = outer.member(&layer.name)?;
    let mut head = Vec::with_capacity(512);
    outer
        .slice(member)?
        .take(512)
        .read_to_end(&mut head)
        .map_err(ArchiveError::io(outer.label(), "read"))?;
    let label = Path::new(&layer.name);
    let compression = if head.is_empty() {
        Compression::None
    } else {
        sniff(&head).map_err(|hint| ArchiveError::UnknownFormat {
            path: format!("layer {}", layer.name),
            hint,
        })?
    };
    let mut blob_hash = ShaReader::new(BufReader::new(outer.slice(member)?));
    let (spool, slice, uncompressed) = if compression == Compression::None {
        let digest = blob_hash
            .finish()
            .map_err(ArchiveError::io(outer.label(), "read"))?;
        (0, outer.slice(member)?, (digest.clone(), digest))
    } else {
        let mut temp = TempFile::create(scratch_dir, "layer")
            .map_err(ArchiveError::io(scratch_dir, "write in"))?;
        let file = temp
            .file()
            .and_then(|f| f.try_clone())
            .map_err(ArchiveError::io(scratch_dir, "write in"))?;
        let mut writer = ShaWriter::new(file);
        {
            let mut reader = decompressed(&mut blob_hash, compression)
                .map_err(|e| ArchiveError::corrupt(label, e))?;
            copy_decompressed(&mut reader, &mut writer, label)?;
        }
        let blob_digest = blob_hash
            .finish()
            .map_err(ArchiveError::io(outer.label(), "read"))?;
        let diff = writer.digest();
        let reopened = temp
            .file()
            .and_then(|f| f.try_clone())
            .map_err(ArchiveError::io(scratch_dir, "read"))?;
        spools.push(
            reopened
                .try_clone()
                .map_err(ArchiveError::io(scratch_dir, "read"))?,
        );
        scratch.push(temp);
        let slice = Slice::whole(reopened).map_err(ArchiveError::io(scratch_dir, "read"))?;
        (spools.len() - 1, slice, (blob_digest, diff))
    };
    let (blob_digest, diff) = uncompressed;
    check_digest(
        "layer",
        &layer.name,
        layer.blob_digest.as_ref(),
        &blob_digest,
    )?;
    check_digest("uncompressed layer", &layer.name, diff_id, &diff)?;
    Ok((spool, slice))
}

fn check_digest(
    what: &'static str,
    name: &str,
    expected: Option<&Sha256Digest>,
    actual: &Sha256Digest,
) -> Result<(), OciError> {
    match expected {
        Some(expected) if expected != actual => Err(OciError::DigestMismatch {
            what,
            name: name.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        }),
        _ => Ok(()),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(name: &str, bytes: &[u8]) -> Result<T, OciError> {
    serde_json::from_slice(bytes).map_err(|e| OciError::Json {
        name: name.to_string(),
        reason: e.to_string(),
    })
}

fn parse_digest(value: &str) -> Result<Sha256Digest, OciError> {
    Sha256Digest::parse(value).ok_or_else(|| OciError::BadDigest {
        value: value.to_string(),
    })
}

/// Reads the blob a descriptor names and checks its digest.
fn read_blob(outer: &Outer, digest: &Sha256Digest) -> Result<Vec<u8>, OciError> {
    let name = digest.blob_name();
    let bytes = outer.read_small(&name, MAX_JSON_BYTES)?;
    check_digest("blob", &name, Some(digest), &sha256(&bytes))?;
    Ok(bytes)
}

fn parse_diff_ids(config: &ImageConfig) -> Result<Vec<Sha256Digest>, OciError> {
    config
        .rootfs
        .as_ref()
        .map(|r| r.diff_ids.iter().map(|d| parse_digest(d)).collect())
        .unwrap_or_else(|| Ok(Vec::new()))
}

/// The layers, config and a description of the one image in an OCI layout.
fn find_in_layout(outer: &Outer) -> Result<(Vec<LayerRef>, ImageConfig, String), OciError> {
    let index: ImageIndex = parse_json(
        "index.json",
        &outer.read_small("index.json", MAX_JSON_BYTES)?,
    )?;
    let mut candidates = Vec::new();
    collect_manifests(outer, index, 0, &mut candidates)?;
    // Attestations and signatures ride along as manifests for `unknown/unknown`.
    candidates.retain(|(d, _)| d.platform.as_ref().is_none_or(|p| p.os != "unknown"));
    let host = host_arch();
    let chosen = match candidates.len() {
        0 => {
            return Err(OciError::NotAnImage {
                path: outer.label().display().to_string(),
                hint: "index.json lists no image manifest held in the archive".into(),
            });
        }
        1 => candidates.remove(0),
        _ => {
            let matching: Vec<usize> = candidates
                .iter()
                .enumerate()
                .filter(|(_, (d, _))| {
                    d.platform.as_ref().is_some_and(|p| {
                        normalize_arch(&p.architecture) == host
                            && (p.os.is_empty() || p.os == "linux")
                    })
                })
                .map(|(i, _)| i)
                .collect();
            if matching.len() != 1 {
                let choices = candidates
                    .iter()
                    .map(|(d, _)| describe(d))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(OciError::Ambiguous {
                    path: outer.label().display().to_string(),
                    choices,
                });
            }
            candidates.remove(matching[0])
        }
    };
    let (descriptor, manifest) = chosen;
    let config_digest = parse_digest(&manifest.config.digest)?;
    let config: ImageConfig = parse_json("image config", &read_blob(outer, &config_digest)?)?;
    let layers = manifest
        .layers
        .iter()
        .map(|d| {
            let digest = parse_digest(&d.digest)?;
            Ok(LayerRef {
                name: digest.blob_name(),
                blob_digest: Some(digest),
            })
        })
        .collect::<Result<Vec<_>, OciError>>()?;
    let description = descriptor
        .annotations
        .get("org.opencontainers.image.ref.name")
        .or_else(|| descriptor.annotations.get("io.containerd.image.name"))
        .cloned()
        .unwrap_or_default();
    Ok((layers, config, description))
}

fn describe(d: &spec::Descriptor) -> String {
    let platform = d
        .platform
        .as_ref()
        .map(|p| match &p.variant {
            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        })
        .unwrap_or_else(|| "no platform".into());
    match d.annotations.get("org.opencontainers.image.ref.name") {
        Some(name) => format!("{name} {platform}"),
        None => format!("{} {platform}", d.digest),
    }
}

/// Walks an index (and nested indexes) collecting the image manifests
/// whose blobs the archive holds, with their parsed content.
fn collect_manifests(
    outer: &Outer,
    index: ImageIndex,
    depth: usize,
    out: &mut Vec<(spec::Descriptor, ImageManifest)>,
) -> Result<(), OciError> {
    for descriptor in index.manifests {
        let digest = parse_digest(&descriptor.digest)?;
        if !outer.contains(&digest.blob_name()) {
            // A multi-platform index lists platforms that were not exported.
            continue;
        }
        let bytes = read_blob(outer, &digest)?;
        let value: serde_json::Value = parse_json(&digest.blob_name(), &bytes)?;
        let is_index = INDEX_MEDIA_TYPES.contains(&descriptor.media_type.as_str())
            || value.get("manifests").is_some();
        if is_index {
            if depth < MAX_INDEX_DEPTH {
                let nested: ImageIndex = parse_json(&digest.blob_name(), &bytes)?;
                collect_manifests(outer, nested, depth + 1, out)?;
            }
        } else {
            let manifest: ImageManifest = parse_json(&digest.blob_name(), &bytes)?;
            out.push((descriptor, manifest));
        }
    }
    Ok(())
}

/// The layers, config and a description of the one image of a `docker save`.
fn find_in_docker_save(outer: &Outer) -> Result<(Vec<LayerRef>, ImageConfig, String), OciError> {
    let images: Vec<DockerImage> = parse_json(
        "manifest.json",
        &outer.read_small("manifest.json", MAX_JSON_BYTES)?,
    )?;
    if images.len() != 1 {
        let choices = images
            .iter()
            .map(|i| {
                i.repo_tags
                    .as_ref()
                    .and_then(|t| t.first().cloned())
                    .unwrap_or_else(|| i.config.clone())
            })
            .collect::<Vec<_>>();
        return Err(OciError::Ambiguous {
            path: outer.label().display().to_string(),
            choices: if choices.is_empty() {
                "manifest.json lists none".into()
            } else {
                choices.join(", ")
            },
        });
    }
    let Some(image) = images.into_iter().next() else {
        return Err(OciError::NotAnImage {
            path: outer.label().display().to_string(),
            hint: "manifest.json lists no image".into(),
        });
    };
    let config_bytes = outer.read_small(&image.config, MAX_JSON_BYTES)?;
    if let Some(expected) = digest_in_name(&image.config) {
        check_digest(
            "config",
            &image.config,
            Some(&expected),
            &sha256(&config_bytes),
        )?;
    }
    let config: ImageConfig = parse_json(&image.config, &config_bytes)?;
    let layers = image
        .layers
        .iter()
        .map(|name| LayerRef {
            name: name.clone(),
            blob_digest: digest_in_name(name),
        })
        .collect();
    let description = image
        .repo_tags
        .and_then(|tags| tags.into_iter().next())
        .unwrap_or_default();
    Ok((layers, config, description))
}

/// The digest a docker-save name carries: `blobs/sha256/<hex>` (new
/// layout) or `<hex>.json` (legacy config). Legacy layer names
/// (`<id>/layer.tar`) carry none; the diff ids cover them.
fn digest_in_name(name: &str) -> Option<Sha256Digest> {
    if let Some(hex) = name.strip_prefix("blobs/sha256/") {
        return Sha256Digest::from_hex(hex);
    }
    name.strip_suffix(".json").and_then(Sha256Digest::from_hex)
}

/// The template manifest from an image config.
fn manifest_from(
    config: &ImageConfig,
    fallback_description: String,
) -> Result<TemplateManifest, OciError> {
    let run = config.config.as_ref();
    let mut entrypoint: Vec<String> = run.and_then(|r| r.entrypoint.clone()).unwrap_or_default();
    entrypoint.extend(run.and_then(|r| r.cmd.clone()).unwrap_or_default());
    let mut manifest = TemplateManifest::default();
    if !entrypoint.is_empty() {
        manifest.entrypoint = entrypoint;
    }
    if !config.architecture.is_empty() {
        manifest.arch = normalize_arch(&config.architecture);
    }
    let env: BTreeMap<String, String> = run
        .and_then(|r| r.env.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    manifest.env = env;
    manifest.workdir = run
        .and_then(|r| r.working_dir.as_deref())
        .filter(|w| !w.is_empty())
        .map(|w| {
            if w.starts_with('/') {
                w.to_string()
            } else {
                format!("/{w}")
            }
        });
    manifest.user = run
        .and_then(|r| r.user.clone())
        .filter(|u| !u.trim().is_empty());
    let label = run
        .and_then(|r| r.labels.as_ref())
        .and_then(|l| {
            l.get("org.opencontainers.image.description")
                .or_else(|| l.get("org.opencontainers.image.title"))
        })
        .cloned();
    let description: String = label
        .unwrap_or(fallback_description)
        .chars()
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .take(MAX_DESCRIPTION_CHARS)
        .collect();
    manifest.description = description;
    manifest.validate()?;
    Ok(manifest)
}

#[cfg(test)]
mod tests;
