//! The replicated records of environments: what an environment should be
//! (its blueprint, filled in, service by service) and what happened to it.
//!
//! The state crate does not know the compute service's types: a service's
//! spec is stored as the bytes the compute service encoded, with a digest
//! so an update can tell which services changed without decoding them.
//! Replicas are ordinary containers (`container/<name>` rows) that name
//! their environment, service, index and lease epoch ([`ReplicaOf`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How many events an environment keeps; older ones are dropped.
pub const MAX_ENV_EVENTS: usize = 200;

/// An environment: row `env/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentRecord {
    /// Unique in the cloud: 1-63 characters of a-z, 0-9 and `-`.
    pub name: String,
    /// The blueprint as the user gave it, before interpolation.
    pub source: String,
    /// The variables it was filled in with.
    pub vars: BTreeMap<String, String>,
    /// Its services by name.
    pub services: BTreeMap<String, ServiceEntry>,
    /// 1 when created; every update adds one.
    pub generation: u64,
    /// Whether the environment is being created, is whole, or is being
    /// taken down: only a whole one is healed.
    pub phase: EnvPhase,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds of the last update.
    pub updated_at: u64,
    /// What the environment was before its last update, for a rollback.
    pub previous: Option<EnvVersion>,
}

/// One version of an environment's blueprint, as an update replaced it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVersion {
    pub source: String,
    pub vars: BTreeMap<String, String>,
    pub services: BTreeMap<String, ServiceEntry>,
}

/// Where an environment is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnvPhase {
    /// Its replicas are being started for the first time.
    Creating,
    /// Created; the leader keeps every replica running.
    Ready,
    /// An update replaces replicas one at a time; the leader leaves the
    /// environment to it.
    Updating,
    /// Its replicas are being removed.
    Removing,
}

/// One service of an environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEntry {
    /// The service's spec as the compute service encoded it.
    pub spec: Vec<u8>,
    /// A digest of the spec without its replica count: equal digests mean
    /// an update leaves the service's replicas as they are.
    pub digest: [u8; 32],
    /// How many replicas should run.
    pub replicas: u32,
}

/// Which replica of which environment a container is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplicaOf {
    pub env: String,
    pub service: String,
    /// 0-based, stable across moves.
    pub index: u32,
    /// Bumped every time the replica is placed: a peer that finds it runs
    /// an older epoch than the control plane holds stops that copy.
    pub epoch: u64,
    /// The digest of the service definition it runs (a [`ServiceEntry`]'s
    /// `digest`): during an update, old and new replicas tell apart.
    pub digest: [u8; 32],
}

/// Something that happened to an environment: row `envevent/<env>/<seq>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvEvent {
    /// Unix seconds.
    pub at: u64,
    /// The service it concerns, if one.
    pub service: Option<String>,
    /// The replica (container name) it concerns, if one.
    pub replica: Option<String>,
    /// `placed`, `started`, `healthy`, `unhealthy`, `moved`, `refused`,
    /// `scaled`, `updated`, ...
    pub kind: String,
    /// What happened, in a sentence.
    pub message: String,
}

/// Whether `name` may name an environment: 1-63 characters of a-z, 0-9
/// and `-`, starting with a letter and not ending with `-` (so it can
/// also name a network and a DNS label).
pub fn valid_env_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_names_are_dns_labels() {
        for good in ["web", "shop-eu-1", "a"] {
            assert!(valid_env_name(good), "{good}");
        }
        for bad in ["", "Web", "1web", "web-", "we_b", "web/x", &"a".repeat(64)] {
            assert!(!valid_env_name(bad), "{bad}");
        }
    }
}
