//! Key pairs and their files.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use coop_types::PeerId;

/// A key file could not be read or written, or holds something else.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path} is corrupt: expected 64 hex characters")]
    Corrupt { path: String },
}

fn generate_signing_key() -> SigningKey {
    let seed: [u8; 32] = rand::random();
    SigningKey::from_bytes(&seed)
}

fn read_key_file(path: &Path) -> Result<SigningKey, KeyError> {
    let text = fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let corrupt = || KeyError::Corrupt {
        path: path.display().to_string(),
    };
    let bytes = data_encoding::HEXLOWER_PERMISSIVE
        .decode(text.trim().as_bytes())
        .map_err(|_| corrupt())?;
    let seed: [u8; 32] = bytes.try_into().map_err(|_| corrupt())?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes `contents` to `path` with mode 0600, atomically: a crash leaves
/// either the old file or the new one, never half of one.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    let err = |source| KeyError::Write {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("tmp");
    {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = opts.open(&tmp).map_err(err)?;
        file.write_all(contents).map_err(err)?;
        file.sync_all().map_err(err)?;
    }
    fs::rename(&tmp, path).map_err(err)?;
    Ok(())
}

fn write_key_file(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    let hex = data_encoding::HEXLOWER.encode(&key.to_bytes());
    write_secret_file(path, format!("{hex}\n").as_bytes())
}

/// The key of one peer. Its public half is the peer's id on the mesh.
#[derive(Clone)]
pub struct PeerKey(SigningKey);

impl PeerKey {
    pub fn generate() -> Self {
        PeerKey(generate_signing_key())
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        read_key_file(path).map(PeerKey)
    }

    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        write_key_file(path, &self.0)
    }

    pub fn id(&self) -> PeerId {
        PeerId(self.0.verifying_key().to_bytes())
    }

    /// The secret bytes, for handing to the QUIC endpoint.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.sign(message).to_bytes().to_vec()
    }
}

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerKey({})", self.id().short())
    }
}

/// The public key of a cloud's root key; names the cloud.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(from = "PeerId", into = "PeerId")]
pub struct CloudId(pub [u8; 32]);

// Same encoding as a peer id: hex for humans, bytes on the wire.
impl From<PeerId> for CloudId {
    fn from(id: PeerId) -> Self {
        CloudId(id.0)
    }
}

impl From<CloudId> for PeerId {
    fn from(id: CloudId) -> Self {
        PeerId(id.0)
    }
}

impl CloudId {
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(10);
        s
    }
}

impl fmt::Display for CloudId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}

impl fmt::Debug for CloudId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloudId({})", self.short())
    }
}

impl FromStr for CloudId {
    type Err = coop_types::PeerIdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<PeerId>().map(|p| CloudId(p.0))
    }
}

/// The root key of a cloud. Only stewards keep it; it signs certificates.
#[derive(Clone)]
pub struct CloudKey(SigningKey);

impl CloudKey {
    pub fn generate() -> Self {
        CloudKey(generate_signing_key())
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        read_key_file(path).map(CloudKey)
    }

    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        write_key_file(path, &self.0)
    }

    pub fn from_secret_bytes(bytes: [u8; 32]) -> Self {
        CloudKey(SigningKey::from_bytes(&bytes))
    }

    pub fn secret_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn id(&self) -> CloudId {
        CloudId(self.0.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.sign(message).to_bytes().to_vec()
    }
}

impl fmt::Debug for CloudKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloudKey({})", self.id().short())
    }
}

/// Checks an ed25519 signature made by the key whose public half is `public`.
/// Uses strict verification so a signature has exactly one valid encoding.
pub(crate) fn verify(public: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(public) else {
        return false;
    };
    let Ok(sig_bytes) = <[u8; 64]>::try_from(signature) else {
        return false;
    };
    let sig = Signature::from_bytes(&sig_bytes);
    key.verify_strict(message, &sig).is_ok() && key.verify(message, &sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_with_private_mode() {
        let dir = std::env::temp_dir().join(format!("coop-keys-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("peer.key");
        let key = PeerKey::generate();
        key.save(&path).unwrap();
        let loaded = PeerKey::load(&path).unwrap();
        assert_eq!(loaded.id(), key.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::write(&path, "not hex").unwrap();
        assert!(matches!(
            PeerKey::load(&path),
            Err(KeyError::Corrupt { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn signatures_verify_only_for_their_message_and_key() {
        let key = PeerKey::generate();
        let sig = key.sign(b"hello");
        assert!(verify(key.id().as_bytes(), b"hello", &sig));
        assert!(!verify(key.id().as_bytes(), b"hellO", &sig));
        assert!(!verify(PeerKey::generate().id().as_bytes(), b"hello", &sig));
        assert!(!verify(key.id().as_bytes(), b"hello", &sig[..63]));
    }
}
