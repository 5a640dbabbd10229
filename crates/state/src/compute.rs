//! The replicated records of compute: templates (signed by the peer that
//! imported them) and containers (what should run where).
//!
//! These tables hold desired state only. What a container is doing right
//! now (running, exited, OOM-killed) lives in the runtime of the peer that
//! runs it; the control plane says which peer that is, what to run and
//! whether it should be running. The state crate knows nothing about the
//! runtime's types, so specs are stored in plain fields here and turned
//! into runtime specs by the peer that runs them.

use serde::{Deserialize, Serialize};

use coop_types::{Limits, PeerId};

use crate::environments::ReplicaOf;
use crate::objects::BlockRef;

/// A template version as the cloud knows it: row `template/<name>/<version>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateEntry {
    /// Template name (validated by the compute room before it is written).
    pub name: String,
    /// Version, `latest` by default.
    pub version: String,
    /// Hex BLAKE3 of the canonical blob.
    pub content_id: String,
    /// Length of the blob in bytes.
    pub size_bytes: u64,
    /// The peer that imported the template and signed the record.
    pub imported_by: PeerId,
    /// Unix seconds.
    pub imported_at: u64,
    /// The signed template record (`SignedTemplate::to_bytes`), so any peer
    /// can verify the blob it fetches against the importer's signature.
    pub signed: Vec<u8>,
    /// The blob in the cloud's store, in order: any peer reads these
    /// blocks, checks the content id and signature, and caches the blob.
    pub blocks: Vec<BlockRef>,
}

/// Whether a container should be running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DesiredState {
    /// Keep it running (subject to its restart policy once it exits).
    Running,
    /// Keep it stopped.
    Stopped,
}

/// What to do when a container's process exits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// Leave it exited.
    #[default]
    No,
    /// Start it again when it exited with a non-zero or unknown status.
    OnFailure,
    /// Start it again whenever it exits.
    Always,
}

impl RestartPolicy {
    /// `no`, `on-failure` or `always`, as users write it.
    pub fn name(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Always => "always",
        }
    }

    /// Parses [`RestartPolicy::name`].
    pub fn parse(text: &str) -> Option<RestartPolicy> {
        match text {
            "no" => Some(RestartPolicy::No),
            "on-failure" => Some(RestartPolicy::OnFailure),
            "always" => Some(RestartPolicy::Always),
            _ => None,
        }
    }
}

/// A container of the cloud: row `container/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerEntry {
    /// Unique in the cloud; also its id in the runtime of its peer.
    pub name: String,
    /// The peer that runs it.
    pub peer: PeerId,
    /// Template name.
    pub template: String,
    /// Template version.
    pub version: String,
    /// Hex content id of the template blob it was created from.
    pub content_id: String,
    /// The size it was asked for (`tiny` ... `huge`).
    pub size: String,
    /// The size's limits with explicit overrides applied.
    pub limits: Limits,
    /// Command and arguments (the template's entrypoint if none were given).
    pub argv: Vec<String>,
    /// Environment as `(name, value)` pairs.
    pub env: Vec<(String, String)>,
    /// Working directory inside the container.
    pub workdir: Option<String>,
    /// User inside the container.
    pub user: Option<String>,
    /// Published ports as `HOST:CONT/proto`.
    pub ports: Vec<String>,
    pub restart: RestartPolicy,
    pub desired: DesiredState,
    /// Unix seconds.
    pub created_at: u64,
    /// The environment replica this container is, if it is one.
    pub owner: Option<ReplicaOf>,
    /// The private networks it is on, with its address on each.
    pub networks: Vec<crate::networks::Attachment>,
}
