//! A value signed by the peer that made it, for messages that travel over
//! several hops (gossip) where the transport cannot vouch for the origin.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use coop_types::PeerId;

use crate::keys::{PeerKey, verify};

/// Why a signed message was rejected.
#[derive(Debug, thiserror::Error)]
pub enum SignedError {
    #[error("signature by {0} does not verify")]
    BadSignature(PeerId),
    #[error("malformed signed payload: {0}")]
    Malformed(String),
}

/// Postcard bytes of a value, the id of the signer and its signature.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Signed {
    pub signer: PeerId,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

impl Signed {
    pub fn sign<T: Serialize>(key: &PeerKey, value: &T) -> Result<Self, SignedError> {
        let payload =
            postcard::to_stdvec(value).map_err(|e| SignedError::Malformed(e.to_string()))?;
        let signature = key.sign(&payload);
        Ok(Signed {
            signer: key.id(),
            payload,
            signature,
        })
    }

    /// Checks the signature and decodes the value.
    pub fn open<T: DeserializeOwned>(&self) -> Result<T, SignedError> {
        if !verify(self.signer.as_bytes(), &self.payload, &self.signature) {
            return Err(SignedError::BadSignature(self.signer));
        }
        postcard::from_bytes(&self.payload).map_err(|e| SignedError::Malformed(e.to_string()))
    }

    /// The envelope as bytes, to store or send.
    pub fn to_bytes(&self) -> Result<Vec<u8>, SignedError> {
        postcard::to_stdvec(self).map_err(|e| SignedError::Malformed(e.to_string()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SignedError> {
        postcard::from_bytes(bytes).map_err(|e| SignedError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tampered_payload_is_rejected() {
        let key = PeerKey::generate();
        let mut signed = Signed::sign(&key, &("status", 42u32)).unwrap();
        let value: (String, u32) = signed.open().unwrap();
        assert_eq!(value.1, 42);
        let last = signed.payload.len() - 1;
        signed.payload[last] ^= 1;
        assert!(matches!(
            signed.open::<(String, u32)>(),
            Err(SignedError::BadSignature(_))
        ));
    }
}
