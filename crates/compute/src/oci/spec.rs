//! The parts of the OCI image spec and of `docker save`'s `manifest.json`
//! that an import reads, and sha256 digests. Foreign formats: unknown
//! fields are ignored, not refused.

use std::collections::BTreeMap;
use std::io::{self, Read};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// OCI and Docker media types of an image index (a list of manifests).
pub const INDEX_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// One image in `docker save`'s `manifest.json`.
#[derive(Debug, Deserialize)]
pub struct DockerImage {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
}

/// A reference to a blob: its media type, digest and, for manifests in an
/// index, the platform it is for.
#[derive(Debug, Clone, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// What an image in an index runs on.
#[derive(Debug, Clone, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

/// `index.json` of an OCI layout, or a nested image index.
#[derive(Debug, Deserialize)]
pub struct ImageIndex {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// An image manifest: its config blob and its layers, lowest first.
#[derive(Debug, Deserialize)]
pub struct ImageManifest {
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// The image config: platform, how to run it, and the layers' diff ids.
#[derive(Debug, Default, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<RunConfig>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

/// The run settings of an image config (Docker's capitalised names).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// The layers' digests after decompression, lowest first.
#[derive(Debug, Default, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// A sha256 digest, as 64 lowercase hex characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sha256Digest(pub String);

impl Sha256Digest {
    /// Parses `sha256:<64 hex>`; `None` for any other algorithm or shape.
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix("sha256:")?;
        Self::from_hex(hex)
    }

    /// Accepts 64 hex characters (any case), kept lowercase.
    pub fn from_hex(hex: &str) -> Option<Self> {
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Sha256Digest(hex.to_ascii_lowercase()))
    }

    /// Where an OCI layout keeps the blob with this digest.
    pub fn blob_name(&self) -> String {
        format!("blobs/sha256/{}", self.0)
    }
}

impl std::fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

/// A reader that computes the sha256 of what is read through it.
pub struct ShaReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> ShaReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        ShaReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// Reads what is left (so the digest covers all of it) and returns it.
    pub fn finish(mut self) -> io::Result<Sha256Digest> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(digest_of(self.hasher))
    }
}

impl<R: Read> Read for ShaReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A writer that computes the sha256 of what is written through it.
pub struct ShaWriter<W> {
    pub inner: W,
    hasher: Sha256,
}

impl<W: io::Write> ShaWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        ShaWriter {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The digest of everything written.
    pub fn digest(self) -> Sha256Digest {
        digest_of(self.hasher)
    }
}

impl<W: io::Write> io::Write for ShaWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn digest_of(hasher: Sha256) -> Sha256Digest {
    Sha256Digest(data_encoding::HEXLOWER.encode(&hasher.finalize()))
}

/// The sha256 of some bytes.
pub fn sha256(bytes: &[u8]) -> Sha256Digest {
    let mut hasher = Sha256::new();
    hasher.update(bytes);
    digest_of(hasher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_and_hash() {
        let d = sha256(b"abc");
        assert_eq!(
            d.0,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Sha256Digest::parse(&d.to_string()), Some(d.clone()));
        assert_eq!(Sha256Digest::parse("sha512:abc"), None);
        assert_eq!(Sha256Digest::parse("sha256:xyz"), None);
        assert_eq!(d.blob_name(), format!("blobs/sha256/{}", d.0));
        let mut r = ShaReader::new(&b"abc"[..]);
        let mut first = [0u8; 1];
        r.read_exact(&mut first).unwrap();
        assert_eq!(r.finish().unwrap(), d);
    }

    #[test]
    fn configs_parse_with_unknown_fields() {
        let config: ImageConfig = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","created":"x",
                "config":{"Entrypoint":["/e"],"Cmd":["c"],"Env":["A=1"],"WorkingDir":"/w","Hostname":""},
                "rootfs":{"type":"layers","diff_ids":["sha256:00"]}}"#,
        )
        .unwrap();
        let run = config.config.unwrap();
        assert_eq!(run.entrypoint.unwrap(), ["/e"]);
        assert_eq!(run.working_dir.as_deref(), Some("/w"));
        assert_eq!(config.rootfs.unwrap().diff_ids.len(), 1);
    }
}
