//! Peer certificates: the cloud root key vouching for a peer.

use serde::{Deserialize, Serialize};

use coop_types::{PeerId, Role};

use crate::keys::{CloudId, CloudKey, verify};

/// What a certificate says about a peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateBody {
    pub cloud: CloudId,
    pub peer: PeerId,
    pub name: String,
    pub zone: String,
    pub roles: Vec<Role>,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds; the certificate is void after it.
    pub expires_at: u64,
}

/// A [`CertificateBody`] signed by the cloud root key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub body: CertificateBody,
    pub signature: Vec<u8>,
}

/// Why a certificate is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("certificate is for cloud {found}, not this cloud {expected}")]
    WrongCloud { expected: CloudId, found: CloudId },
    #[error("certificate names peer {named}, but the connection is from {actual}")]
    WrongPeer { named: PeerId, actual: PeerId },
    #[error("certificate of {0} is not signed by the cloud key")]
    BadSignature(PeerId),
    #[error("certificate of {peer} expired at {expires_at}")]
    Expired { peer: PeerId, expires_at: u64 },
    #[error("certificate is malformed: {0}")]
    Malformed(String),
    #[error("peer {0} is revoked")]
    Revoked(PeerId),
}

impl Certificate {
    /// Signs `body` with the cloud root key. The body's cloud must be the
    /// key's cloud; it is overwritten so a caller cannot get this wrong.
    /// Fails only if the body cannot be encoded, so nothing unsigned or
    /// signed-empty is ever issued.
    pub fn issue(cloud_key: &CloudKey, mut body: CertificateBody) -> Result<Self, CertError> {
        body.cloud = cloud_key.id();
        let bytes = postcard::to_stdvec(&body).map_err(|e| CertError::Malformed(e.to_string()))?;
        let signature = cloud_key.sign(&bytes);
        Ok(Certificate { body, signature })
    }

    /// Checks that this certificate was issued by `cloud`, is unexpired at
    /// `now` (unix seconds), and names `peer`.
    pub fn verify(&self, cloud: &CloudId, peer: &PeerId, now: u64) -> Result<(), CertError> {
        if self.body.cloud != *cloud {
            return Err(CertError::WrongCloud {
                expected: *cloud,
                found: self.body.cloud,
            });
        }
        if self.body.peer != *peer {
            return Err(CertError::WrongPeer {
                named: self.body.peer,
                actual: *peer,
            });
        }
        let bytes =
            postcard::to_stdvec(&self.body).map_err(|e| CertError::Malformed(e.to_string()))?;
        if !verify(&cloud.0, &bytes, &self.signature) {
            return Err(CertError::BadSignature(self.body.peer));
        }
        if now > self.body.expires_at {
            return Err(CertError::Expired {
                peer: self.body.peer,
                expires_at: self.body.expires_at,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PeerKey;

    fn body(peer: PeerId) -> CertificateBody {
        CertificateBody {
            cloud: CloudId::default(),
            peer,
            name: "a".into(),
            zone: "default".into(),
            roles: vec![],
            issued_at: 100,
            expires_at: 200,
        }
    }

    #[test]
    fn certificate_checks_cloud_peer_signature_and_expiry() {
        let cloud = CloudKey::generate();
        let other = CloudKey::generate();
        let peer = PeerKey::generate().id();
        let cert = Certificate::issue(&cloud, body(peer)).unwrap();
        assert_eq!(cert.verify(&cloud.id(), &peer, 150), Ok(()));
        assert!(matches!(
            cert.verify(&other.id(), &peer, 150),
            Err(CertError::WrongCloud { .. })
        ));
        assert!(matches!(
            cert.verify(&cloud.id(), &PeerKey::generate().id(), 150),
            Err(CertError::WrongPeer { .. })
        ));
        assert!(matches!(
            cert.verify(&cloud.id(), &peer, 201),
            Err(CertError::Expired { .. })
        ));
        // A certificate signed by another cloud's key but claiming this cloud.
        let mut forged = Certificate::issue(&other, body(peer)).unwrap();
        forged.body.cloud = cloud.id();
        assert!(matches!(
            forged.verify(&cloud.id(), &peer, 150),
            Err(CertError::BadSignature(_))
        ));
    }
}
