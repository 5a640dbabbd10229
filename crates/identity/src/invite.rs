//! Invite tokens: one line a user copies from a peer of the cloud to a new
//! machine.
//!
//! The token names the cloud, a few peers to dial and their addresses, an
//! expiry, and a random secret. Only a hash of the secret is kept in the
//! control plane, so a token cannot be rebuilt from the cloud's state, and the
//! control plane marks the invite used when it is redeemed (single use). The
//! issuing peer signs the token so that a truncated or altered copy is caught
//! on the new machine, before anything is written there.

use serde::{Deserialize, Serialize};

use coop_types::PeerId;

use crate::keys::{CloudId, PeerKey, verify};

/// The text every token starts with; it also versions the format.
const PREFIX: &str = "coop1-";

/// A peer the new machine may dial to join.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapPeer {
    pub id: PeerId,
    /// `ip:port` socket addresses of its mesh endpoint.
    pub addrs: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct InviteBody {
    cloud: CloudId,
    invite_id: [u8; 16],
    secret: [u8; 32],
    expires_at: u64,
    issuer: PeerId,
    bootstrap: Vec<BootstrapPeer>,
}

/// A decoded invite token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InviteToken {
    pub cloud: CloudId,
    pub invite_id: [u8; 16],
    pub secret: [u8; 32],
    /// Unix seconds.
    pub expires_at: u64,
    pub issuer: PeerId,
    pub bootstrap: Vec<BootstrapPeer>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct WireToken {
    body: InviteBody,
    signature: Vec<u8>,
}

/// Why a token cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    #[error("this is not a coop invite token (it must start with `{PREFIX}`)")]
    NotAToken,
    #[error("the invite token is damaged or truncated; copy the whole line again")]
    Damaged,
    #[error("the invite token was altered: its signature does not verify")]
    Forged,
    #[error("the invite expired {0} seconds ago; ask for a new one with `coop invite`")]
    Expired(u64),
    #[error("cannot encode the invite: {0}")]
    Encode(String),
}

impl InviteToken {
    /// A fresh invite with a random id and secret.
    pub fn new(
        cloud: CloudId,
        issuer: PeerId,
        expires_at: u64,
        bootstrap: Vec<BootstrapPeer>,
    ) -> Self {
        InviteToken {
            cloud,
            invite_id: rand::random(),
            secret: rand::random(),
            expires_at,
            issuer,
            bootstrap,
        }
    }

    /// The hash the control plane stores instead of the secret.
    pub fn secret_hash(secret: &[u8; 32]) -> [u8; 32] {
        *blake3::hash(secret).as_bytes()
    }

    /// Encodes the token as one line, signed by the issuing peer's key.
    pub fn encode(&self, issuer_key: &PeerKey) -> Result<String, InviteError> {
        let body = InviteBody {
            cloud: self.cloud,
            invite_id: self.invite_id,
            secret: self.secret,
            expires_at: self.expires_at,
            issuer: issuer_key.id(),
            bootstrap: self.bootstrap.clone(),
        };
        let encode_err = |e: postcard::Error| InviteError::Encode(e.to_string());
        let body_bytes = postcard::to_stdvec(&body).map_err(encode_err)?;
        let wire = WireToken {
            signature: issuer_key.sign(&body_bytes),
            body,
        };
        let bytes = postcard::to_stdvec(&wire).map_err(encode_err)?;
        Ok(format!(
            "{PREFIX}{}",
            data_encoding::BASE64URL_NOPAD.encode(&bytes)
        ))
    }

    /// Decodes and checks a token at time `now` (unix seconds).
    pub fn decode(text: &str, now: u64) -> Result<Self, InviteError> {
        let text = text.trim();
        let rest = text.strip_prefix(PREFIX).ok_or(InviteError::NotAToken)?;
        let bytes = data_encoding::BASE64URL_NOPAD
            .decode(rest.as_bytes())
            .map_err(|_| InviteError::Damaged)?;
        let (wire, left): (WireToken, &[u8]) =
            postcard::take_from_bytes(&bytes).map_err(|_| InviteError::Damaged)?;
        if !left.is_empty() {
            return Err(InviteError::Damaged);
        }
        let body_bytes = postcard::to_stdvec(&wire.body).map_err(|_| InviteError::Damaged)?;
        if !verify(wire.body.issuer.as_bytes(), &body_bytes, &wire.signature) {
            return Err(InviteError::Forged);
        }
        if now > wire.body.expires_at {
            return Err(InviteError::Expired(now - wire.body.expires_at));
        }
        let b = wire.body;
        Ok(InviteToken {
            cloud: b.cloud,
            invite_id: b.invite_id,
            secret: b.secret,
            expires_at: b.expires_at,
            issuer: b.issuer,
            bootstrap: b.bootstrap,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::CloudKey;

    fn sample(issuer: &PeerKey) -> InviteToken {
        InviteToken::new(
            CloudKey::generate().id(),
            issuer.id(),
            1000,
            vec![BootstrapPeer {
                id: issuer.id(),
                addrs: vec!["127.0.0.1:7402".into()],
            }],
        )
    }

    #[test]
    fn token_round_trips() {
        let key = PeerKey::generate();
        let token = sample(&key);
        let text = token.encode(&key).unwrap();
        assert!(text.starts_with(PREFIX));
        assert_eq!(InviteToken::decode(&text, 999).unwrap(), token);
    }

    #[test]
    fn bad_tokens_are_refused_with_the_right_reason() {
        let key = PeerKey::generate();
        let text = sample(&key).encode(&key).unwrap();
        assert_eq!(
            InviteToken::decode(&text, 1001),
            Err(InviteError::Expired(1))
        );
        assert_eq!(InviteToken::decode("hello", 0), Err(InviteError::NotAToken));
        let truncated = &text[..text.len() - 5];
        assert_eq!(InviteToken::decode(truncated, 0), Err(InviteError::Damaged));
        // Flip one character in the middle: either undecodable or forged.
        let mut chars: Vec<char> = text.chars().collect();
        let mid = PREFIX.len() + 20;
        chars[mid] = if chars[mid] == 'A' { 'B' } else { 'A' };
        let altered: String = chars.into_iter().collect();
        assert!(matches!(
            InviteToken::decode(&altered, 0),
            Err(InviteError::Forged) | Err(InviteError::Damaged)
        ));
    }
}
