//! The record of an imported template, signed by the peer that imported it.
//!
//! A [`TemplateRecord`] names a template (`name`, `version`), points at its
//! blob by content id and carries its manifest. The importing peer signs it
//! with its [`PeerKey`] in a [`Signed`] envelope ([`SignedTemplate`]); any
//! peer that later fetches the blob checks the signature, that the signer
//! is the importer named in the record, and that the blob's BLAKE3 is the
//! record's content id, before using it.

use serde::{Deserialize, Serialize};

use coop_identity::{PeerKey, Signed, SignedError};
use coop_types::PeerId;

use crate::archive::ImportedBlob;
use crate::blob::ContentId;
use crate::manifest::{ManifestError, TemplateManifest};

/// The version a template gets when none is given.
pub const DEFAULT_VERSION: &str = "latest";
/// Longest template name: one DNS label, so a name can become a host name.
const MAX_NAME_LEN: usize = 63;
/// Longest version, as for a Docker tag.
const MAX_VERSION_LEN: usize = 128;

/// A template: its name, version, blob and how to run it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRecord {
    /// 1-63 of `a-z`, `0-9`, `-`, not starting or ending with `-`.
    pub name: String,
    /// 1-128 of `A-Z`, `a-z`, `0-9`, `.`, `_`, `-`, starting with a letter,
    /// digit or `_`; [`DEFAULT_VERSION`] when not given.
    pub version: String,
    /// BLAKE3 of the blob.
    pub content_id: ContentId,
    /// Length of the blob in bytes.
    pub size_bytes: u64,
    pub manifest: TemplateManifest,
    /// The peer that imported the template and signed this record.
    pub imported_by: PeerId,
    /// Unix seconds.
    pub imported_at: u64,
}

/// A template record that is malformed or fails verification.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "`{0}` is not a template name: use 1-63 lowercase letters, digits and `-`, not starting or ending with `-`"
    )]
    BadName(String),
    #[error(
        "`{0}` is not a template version: use 1-128 letters, digits, `.`, `_` and `-`, starting with a letter, digit or `_`"
    )]
    BadVersion(String),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("template record is signed by {signer}, but names {named} as its importer")]
    SignerMismatch { signer: PeerId, named: PeerId },
    #[error("template record is signed by {signer}, not by the expected importer {expected}")]
    WrongImporter { expected: PeerId, signer: PeerId },
    #[error(
        "template {name}:{version} names blob {expected}, but the blob has content id {actual}; fetch the blob again"
    )]
    WrongBlob {
        name: String,
        version: String,
        expected: ContentId,
        actual: ContentId,
    },
    #[error("template record signature: {0}")]
    Signature(#[from] SignedError),
}

/// Checks a template name.
pub fn validate_name(name: &str) -> Result<(), TemplateError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    ok.then_some(())
        .ok_or_else(|| TemplateError::BadName(name.to_string()))
}

/// Checks a template version.
pub fn validate_version(version: &str) -> Result<(), TemplateError> {
    let ok = !version.is_empty()
        && version.len() <= MAX_VERSION_LEN
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && version
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then_some(())
        .ok_or_else(|| TemplateError::BadVersion(version.to_string()))
}

impl TemplateRecord {
    /// The record of a blob just imported by `importer`, at `now` (unix
    /// seconds). `version` defaults to [`DEFAULT_VERSION`].
    pub fn new(
        name: &str,
        version: Option<&str>,
        blob: &ImportedBlob,
        importer: PeerId,
        now: u64,
    ) -> Result<Self, TemplateError> {
        let record = TemplateRecord {
            name: name.to_string(),
            version: version.unwrap_or(DEFAULT_VERSION).to_string(),
            content_id: blob.content_id,
            size_bytes: blob.size_bytes,
            manifest: blob.manifest.clone(),
            imported_by: importer,
            imported_at: now,
        };
        record.validate()?;
        Ok(record)
    }

    /// Checks name, version and manifest.
    pub fn validate(&self) -> Result<(), TemplateError> {
        validate_name(&self.name)?;
        validate_version(&self.version)?;
        self.manifest.validate()?;
        Ok(())
    }

    /// Signs the record with the importer's key; the key must be the one of
    /// [`TemplateRecord::imported_by`].
    pub fn sign(&self, key: &PeerKey) -> Result<SignedTemplate, TemplateError> {
        if key.id() != self.imported_by {
            return Err(TemplateError::SignerMismatch {
                signer: key.id(),
                named: self.imported_by,
            });
        }
        self.validate()?;
        Ok(SignedTemplate(Signed::sign(key, self)?))
    }
}

/// A [`TemplateRecord`] signed by its importer, as stored and sent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignedTemplate(Signed);

impl SignedTemplate {
    /// The peer that signed it (not yet verified).
    pub fn signer(&self) -> PeerId {
        self.0.signer
    }

    /// Checks that `importer` signed the record, that the record names it as
    /// importer, that it is well-formed, and that `blob` (the content id of
    /// the fetched blob's bytes) is the one it names. Returns the record.
    pub fn verify(
        &self,
        importer: &PeerId,
        blob: &ContentId,
    ) -> Result<TemplateRecord, TemplateError> {
        if self.0.signer != *importer {
            return Err(TemplateError::WrongImporter {
                expected: *importer,
                signer: self.0.signer,
            });
        }
        let record: TemplateRecord = self.0.open()?;
        if record.imported_by != self.0.signer {
            return Err(TemplateError::SignerMismatch {
                signer: self.0.signer,
                named: record.imported_by,
            });
        }
        record.validate()?;
        if record.content_id != *blob {
            return Err(TemplateError::WrongBlob {
                name: record.name,
                version: record.version,
                expected: record.content_id,
                actual: *blob,
            });
        }
        Ok(record)
    }

    /// Compact bytes for storage and the wire.
    pub fn to_bytes(&self) -> Result<Vec<u8>, TemplateError> {
        Ok(self.0.to_bytes()?)
    }

    /// Parses [`SignedTemplate::to_bytes`] output (nothing is verified yet).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TemplateError> {
        Ok(SignedTemplate(Signed::from_bytes(bytes)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn blob() -> ImportedBlob {
        ImportedBlob {
            content_id: ContentId::of_bytes(b"blob"),
            path: PathBuf::from("x.tar.zst"),
            size_bytes: 4,
            manifest: TemplateManifest::default(),
            entries: 1,
            skipped_special: 0,
        }
    }

    #[test]
    fn names_and_versions() {
        for good in ["a", "web-1", "0x", &"a".repeat(63)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "Web", "a_b", "a.b", "ä", &"a".repeat(64)] {
            let err = validate_name(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
        }
        for good in ["latest", "1.2.3", "v2", "_x", "2024-01-01"] {
            assert!(validate_version(good).is_ok(), "{good}");
        }
        for bad in ["", ".1", "-x", "a/b", "a b", &"1".repeat(129)] {
            assert!(validate_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signed_record_verifies_and_tampering_is_caught() {
        let key = PeerKey::generate();
        let record = TemplateRecord::new("web", None, &blob(), key.id(), 100).unwrap();
        assert_eq!(record.version, "latest");
        let signed = record.sign(&key).unwrap();
        let back = SignedTemplate::from_bytes(&signed.to_bytes().unwrap()).unwrap();
        assert_eq!(back.verify(&key.id(), &blob().content_id).unwrap(), record);
        assert_eq!(back.signer(), key.id());

        // The wrong blob.
        let other = ContentId::of_bytes(b"other");
        assert!(matches!(
            back.verify(&key.id(), &other),
            Err(TemplateError::WrongBlob { .. })
        ));
        // The wrong importer expected.
        let stranger = PeerKey::generate();
        assert!(matches!(
            back.verify(&stranger.id(), &blob().content_id),
            Err(TemplateError::WrongImporter { .. })
        ));
        // A key that is not the importer's cannot sign the record.
        assert!(matches!(
            record.sign(&stranger),
            Err(TemplateError::SignerMismatch { .. })
        ));
        // A flipped byte breaks the signature.
        let mut raw = signed.to_bytes().unwrap();
        let middle = raw.len() / 2;
        raw[middle] ^= 1;
        if let Ok(tampered) = SignedTemplate::from_bytes(&raw) {
            assert!(tampered.verify(&key.id(), &blob().content_id).is_err());
        }
        // A record naming someone else as importer, signed by a stranger.
        let mut forged = record.clone();
        forged.imported_by = key.id();
        let envelope = Signed::sign(&stranger, &forged).unwrap();
        assert!(matches!(
            SignedTemplate(envelope).verify(&stranger.id(), &blob().content_id),
            Err(TemplateError::SignerMismatch { .. })
        ));
        // Bad names are refused at creation.
        assert!(matches!(
            TemplateRecord::new("Bad", None, &blob(), key.id(), 1),
            Err(TemplateError::BadName(_))
        ));
    }
}
