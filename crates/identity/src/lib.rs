//! Who may take part in a cloud, and the proofs of it.
//!
//! A peer owns an ed25519 key; its public half is the [`PeerId`] and the
//! iroh endpoint id. A cloud owns a root key ([`CloudKey`]); its public half
//! is the [`CloudId`]. The root key signs a [`Certificate`] for every peer
//! that joins. An [`InviteToken`] carries what a new machine needs to reach
//! the cloud and prove it was invited. This crate holds the formats and the
//! checks; it does not talk to the network or decide who gets an invite.

mod cert;
mod invite;
mod keys;
mod signed;

pub use cert::{CertError, Certificate, CertificateBody};
pub use invite::{BootstrapPeer, InviteError, InviteToken};
pub use keys::{CloudId, CloudKey, KeyError, PeerKey, write_secret_file};
pub use signed::{Signed, SignedError};

pub use coop_types::PeerId;
