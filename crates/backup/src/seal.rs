//! Sealing a backup's secrets for the control plane.
//!
//! Every peer replicates backup records, but only stewards hold the cloud
//! key. Secrets are encrypted (AES-256-GCM) with a key derived from the
//! cloud key, so a peer's disk holds them only in a form stewards can open;
//! the friend or S3 endpoint holding the repository never sees them.
//!
//! Sealed form: version byte `1`, 12-byte random nonce, ciphertext with
//! its 16-byte tag. The record's name is the associated data, so a sealed
//! secret copied into another backup's record does not open.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};

/// The blake3 key-derivation context of the sealing key.
const CONTEXT: &str = "coop 2026-12-07 backup secrets sealed for stewards";
const VERSION: u8 = 1;
const NONCE: usize = 12;

/// Why a sealed secret did not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the sealed secret is damaged or was sealed by another cloud's key")]
    Damaged,
    #[error("the sealed secret has format version {0}; this coop reads version 1")]
    Version(u8),
}

/// The key that seals and opens a cloud's backup secrets.
#[derive(Clone)]
pub struct SealKey(Aes256Gcm);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl SealKey {
    /// The sealing key of the cloud whose root key's secret is `cloud_secret`.
    pub fn from_cloud_secret(cloud_secret: &[u8; 32]) -> Self {
        let key = blake3::derive_key(CONTEXT, cloud_secret);
        SealKey(Aes256Gcm::new(&key.into()))
    }

    /// Seals `secret` for the backup `name`.
    pub fn seal(&self, name: &str, secret: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE] = rand::random();
        let sealed = self
            .0
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: secret,
                    aad: name.as_bytes(),
                },
            )
            .expect("AES-GCM encrypts any message shorter than 64 GiB");
        let mut out = Vec::with_capacity(1 + NONCE + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a secret sealed for the backup `name`.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let (&version, rest) = sealed.split_first().ok_or(SealError::Damaged)?;
        if version != VERSION {
            return Err(SealError::Version(version));
        }
        if rest.len() < NONCE {
            return Err(SealError::Damaged);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE);
        let nonce: [u8; NONCE] = nonce.try_into().map_err(|_| SealError::Damaged)?;
        self.0
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| SealError::Damaged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_name() {
        let key = SealKey::from_cloud_secret(&[7; 32]);
        let sealed = key.seal("photos", b"hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(key.open("photos", &sealed).unwrap(), b"hunter2");
        assert_eq!(key.open("other", &sealed), Err(SealError::Damaged));
        let stranger = SealKey::from_cloud_secret(&[8; 32]);
        assert_eq!(stranger.open("photos", &sealed), Err(SealError::Damaged));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(key.open("photos", &flipped), Err(SealError::Damaged));
        assert_eq!(key.open("photos", &[]), Err(SealError::Damaged));
        assert_eq!(key.open("photos", &[2, 0]), Err(SealError::Version(2)));
        assert_ne!(key.seal("photos", b"hunter2"), sealed, "nonces differ");
    }
}
