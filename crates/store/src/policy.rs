//! Redundancy policies: `ec:K+M` (Reed-Solomon, survives M lost failure
//! domains at (K+M)/K overhead) and `replicas:N` (N full copies).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The widest data-shard count the default policy uses: wider stripes cut
/// overhead further but make every read touch more peers.
const MAX_DEFAULT_K: usize = 8;
/// Parity of the default policy: survive two lost disks or peers.
const DEFAULT_M: usize = 2;
/// More copies than this is a typo, not a policy.
const MAX_REPLICAS: usize = 16;

/// How a bucket's data is kept redundant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Policy {
    Erasure { k: usize, m: usize },
    Replicas(usize),
}

/// A policy string that does not parse or makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("`{0}` is not a policy: use ec:K+M (e.g. ec:4+2) or replicas:N (e.g. replicas:3)")]
    Syntax(String),
    #[error("ec:{k}+{m} is invalid: K must be at least 1 and K+M at most 256")]
    Erasure { k: usize, m: usize },
    #[error("replicas:{0} is invalid: N must be between 1 and {MAX_REPLICAS}")]
    Replicas(usize),
}

impl Policy {
    /// Shards (or copies) one stripe needs, each on its own failure domain.
    pub fn width(&self) -> usize {
        match self {
            Policy::Erasure { k, m } => k + m,
            Policy::Replicas(n) => *n,
        }
    }

    /// How many failure domains may be lost without losing data.
    pub fn tolerates(&self) -> usize {
        match self {
            Policy::Erasure { m, .. } => *m,
            Policy::Replicas(n) => n.saturating_sub(1),
        }
    }

    /// Bytes stored per byte of payload.
    pub fn overhead(&self) -> f64 {
        match self {
            Policy::Erasure { k, m } => (k + m) as f64 / *k as f64,
            Policy::Replicas(n) => *n as f64,
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::Erasure { k, m } => write!(f, "ec:{k}+{m}"),
            Policy::Replicas(n) => write!(f, "replicas:{n}"),
        }
    }
}

impl FromStr for Policy {
    type Err = PolicyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || PolicyError::Syntax(text.to_string());
        let t = text.trim();
        if let Some(rest) = t.strip_prefix("ec:") {
            let (k, m) = rest.split_once('+').ok_or_else(syntax)?;
            let k: usize = k.parse().map_err(|_| syntax())?;
            let m: usize = m.parse().map_err(|_| syntax())?;
            if k == 0 || k + m > 256 {
                return Err(PolicyError::Erasure { k, m });
            }
            Ok(Policy::Erasure { k, m })
        } else if let Some(rest) = t.strip_prefix("replicas:") {
            let n: usize = rest.parse().map_err(|_| syntax())?;
            if n == 0 || n > MAX_REPLICAS {
                return Err(PolicyError::Replicas(n));
            }
            Ok(Policy::Replicas(n))
        } else {
            Err(syntax())
        }
    }
}

/// The default policy for a cloud with `domains` distinct failure domains
/// (disks, then peers, then zones): the widest `ec:K+2` that puts every
/// shard of a stripe on its own domain, K up to 8; with fewer than three
/// domains, a copy on each.
pub fn default_policy(domains: usize) -> Policy {
    if domains > DEFAULT_M {
        Policy::Erasure {
            k: (domains - DEFAULT_M).min(MAX_DEFAULT_K),
            m: DEFAULT_M,
        }
    } else {
        Policy::Replicas(domains.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_print_and_refuse_nonsense() {
        for text in ["ec:4+2", "ec:8+2", "ec:1+0", "replicas:3"] {
            assert_eq!(text.parse::<Policy>().unwrap().to_string(), text);
        }
        for bad in ["", "ec:4", "ec:a+2", "raid6", "replicas:x", "ec:4-2"] {
            assert!(
                matches!(bad.parse::<Policy>(), Err(PolicyError::Syntax(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            "ec:0+2".parse::<Policy>(),
            Err(PolicyError::Erasure { .. })
        ));
        assert!(matches!(
            "ec:250+10".parse::<Policy>(),
            Err(PolicyError::Erasure { .. })
        ));
        assert!(matches!(
            "replicas:0".parse::<Policy>(),
            Err(PolicyError::Replicas(0))
        ));
    }

    #[test]
    fn default_grows_with_the_cloud() {
        assert_eq!(default_policy(0), Policy::Replicas(1));
        assert_eq!(default_policy(1), Policy::Replicas(1));
        assert_eq!(default_policy(2), Policy::Replicas(2));
        assert_eq!(default_policy(3), Policy::Erasure { k: 1, m: 2 });
        assert_eq!(default_policy(6), Policy::Erasure { k: 4, m: 2 });
        assert_eq!(default_policy(10), Policy::Erasure { k: 8, m: 2 });
        assert_eq!(default_policy(40), Policy::Erasure { k: 8, m: 2 });
        let p = default_policy(6);
        assert_eq!((p.width(), p.tolerates()), (6, 2));
        assert!((p.overhead() - 1.5).abs() < 1e-9);
    }
}
