//! TLS for a relay's QUIC address-discovery server, with no CA.
//!
//! Peers behind NAT learn their public address (and so can hole-punch to
//! each other) by asking a relay over QUIC what address it sees. That
//! server speaks TLS. A coop relay presents a certificate self-signed with
//! its own peer key, and a coop peer accepts exactly the certificates whose
//! key is an admitted member of its cloud; the TLS 1.3 handshake signature
//! proves the relay holds that key. No certificate authority, public or
//! private, is involved.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use coop_identity::PeerKey;
use coop_types::PeerId;

use crate::admission::Admission;

/// DER prefix of an ed25519 private key in PKCS#8 v1 (RFC 8410): the
/// 32-byte seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410): the 32-byte
/// public key follows.
const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The rustls server configuration of a relay's QUIC server: a certificate
/// for `host`, self-signed with the peer key.
pub(crate) fn relay_server_tls(
    key: &PeerKey,
    host: IpAddr,
) -> Result<rustls::ServerConfig, String> {
    let mut der = PKCS8_ED25519_PREFIX.to_vec();
    der.extend_from_slice(&key.secret_bytes());
    let pkcs8 = PrivatePkcs8KeyDer::from(der);
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
        .map_err(|e| format!("relay key: {e}"))?;
    let params = rcgen::CertificateParams::new(vec![host.to_string()])
        .map_err(|e| format!("relay certificate: {e}"))?;
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| format!("relay certificate: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], PrivateKeyDer::Pkcs8(pkcs8))
        .map_err(|e| e.to_string())
}

/// The peer whose ed25519 key a certificate carries, if it carries one.
fn certificate_key(cert: &CertificateDer<'_>) -> Option<PeerId> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    let spki = parsed.subject_public_key_info();
    let key = spki.as_ref().strip_prefix(&SPKI_ED25519_PREFIX[..])?;
    let bytes: [u8; 32] = key.try_into().ok()?;
    Some(PeerId(bytes))
}

/// Accepts a relay's certificate when its key is an admitted member.
#[derive(Debug)]
pub(crate) struct MemberRelayVerifier {
    pub admission: Arc<Admission>,
    pub provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for MemberRelayVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match certificate_key(end_entity) {
            Some(peer) if self.admission.is_admitted(&peer) => Ok(ServerCertVerified::assertion()),
            Some(_) => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::BadEncoding,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coop_identity::CloudId;

    #[test]
    fn relay_certificate_carries_the_peer_key() {
        let key = PeerKey::generate();
        let config = relay_server_tls(&key, "198.18.0.1".parse().unwrap());
        assert!(config.is_ok(), "{config:?}");
        // Build the certificate again the same way and read its key back.
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&key.secret_bytes());
        let pkcs8 = PrivatePkcs8KeyDer::from(der);
        let pair =
            rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["198.18.0.1".into()])
            .unwrap()
            .self_signed(&pair)
            .unwrap();
        assert_eq!(certificate_key(cert.der()), Some(key.id()));

        let admission = Arc::new(Admission::new(
            CloudId::default(),
            PeerKey::generate().id(),
            None,
        ));
        let verifier = MemberRelayVerifier {
            admission,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        };
        let name = ServerName::try_from("198.18.0.1").unwrap();
        // Not a member: refused.
        assert!(
            verifier
                .verify_server_cert(cert.der(), &[], &name, &[], UnixTime::now())
                .is_err()
        );
    }
}
