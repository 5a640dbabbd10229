//! Which peers hold voting replicas of the control plane.
//!
//! A cloud of one or two peers has one steward, three or four peers have
//! three, five or more have five: enough to survive one (then two) lost
//! stewards without slowing every write with a large quorum. Stewards are
//! spread over zones so that losing a building does not lose the quorum.

use std::collections::{BTreeMap, BTreeSet};

use coop_types::PeerId;

/// A peer as the steward policy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StewardCandidate {
    pub id: PeerId,
    pub zone: String,
    /// A status arrived recently.
    pub up: bool,
    /// Silent for longer than the down grace period.
    pub down: bool,
}

/// Decides the voters of the control plane.
pub trait StewardPolicy: Send + Sync + 'static {
    /// The voter set wanted now, given every non-revoked peer and the
    /// current voters. Returning `current` means "no change".
    fn choose_stewards(
        &self,
        candidates: &[StewardCandidate],
        current: &BTreeSet<PeerId>,
    ) -> BTreeSet<PeerId>;
}

/// The default policy: 1, 3 or 5 stewards, spread over zones, replacing
/// only stewards that are `down` (a merely unreachable steward keeps its
/// seat, so a short outage does not cause churn).
#[derive(Clone, Copy, Debug, Default)]
pub struct ZoneSpread;

/// How many stewards a cloud with `peers` live peers should have.
pub fn steward_target(peers: usize) -> usize {
    match peers {
        0..=2 => 1,
        3..=4 => 3,
        _ => 5,
    }
}

impl StewardPolicy for ZoneSpread {
    fn choose_stewards(
        &self,
        candidates: &[StewardCandidate],
        current: &BTreeSet<PeerId>,
    ) -> BTreeSet<PeerId> {
        let by_id: BTreeMap<PeerId, &StewardCandidate> =
            candidates.iter().map(|c| (c.id, c)).collect();
        let live = candidates.iter().filter(|c| !c.down).count();
        let target = steward_target(live);
        let mut chosen: BTreeSet<PeerId> = current
            .iter()
            .filter(|id| by_id.get(id).is_some_and(|c| !c.down))
            .copied()
            .collect();
        if chosen.len() >= target {
            // Never shrink a healthy voter set here: shrinking is a human
            // decision (peer removal), not something liveness should do.
            return if chosen.is_empty() {
                current.clone()
            } else {
                chosen
            };
        }
        let mut added = Vec::new();
        while chosen.len() < target {
            let mut zone_load: BTreeMap<&str, usize> = BTreeMap::new();
            for id in &chosen {
                if let Some(c) = by_id.get(id) {
                    *zone_load.entry(c.zone.as_str()).or_default() += 1;
                }
            }
            let next = candidates
                .iter()
                .filter(|c| c.up && !chosen.contains(&c.id))
                .min_by_key(|c| (zone_load.get(c.zone.as_str()).copied().unwrap_or(0), c.id));
            match next {
                Some(c) => {
                    chosen.insert(c.id);
                    added.push(c.id);
                }
                None => break,
            }
        }
        // An even voter count tolerates no more failures than the odd count
        // below it and needs a larger quorum; stay odd.
        if chosen.len().is_multiple_of(2)
            && let Some(last) = added.pop()
        {
            chosen.remove(&last);
        }
        if chosen.is_empty() {
            current.clone()
        } else {
            chosen
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(n: u8, zone: &str, up: bool, down: bool) -> StewardCandidate {
        StewardCandidate {
            id: PeerId([n; 32]),
            zone: zone.into(),
            up,
            down,
        }
    }

    fn ids(ns: &[u8]) -> BTreeSet<PeerId> {
        ns.iter().map(|n| PeerId([*n; 32])).collect()
    }

    #[test]
    fn grows_one_three_five_and_stays_odd() {
        let p = ZoneSpread;
        let all: Vec<_> = (1..=6).map(|n| cand(n, "default", true, false)).collect();
        assert_eq!(p.choose_stewards(&all[..2], &ids(&[1])), ids(&[1]));
        assert_eq!(p.choose_stewards(&all[..3], &ids(&[1])), ids(&[1, 2, 3]));
        assert_eq!(
            p.choose_stewards(&all[..4], &ids(&[1, 2, 3])),
            ids(&[1, 2, 3])
        );
        assert_eq!(
            p.choose_stewards(&all[..5], &ids(&[1, 2, 3])),
            ids(&[1, 2, 3, 4, 5])
        );
        assert_eq!(
            p.choose_stewards(&all, &ids(&[1, 2, 3, 4, 5])),
            ids(&[1, 2, 3, 4, 5])
        );
        // Three peers but one of them not up yet: stay at one voter, not two.
        let mut three = all[..3].to_vec();
        three[2].up = false;
        assert_eq!(p.choose_stewards(&three, &ids(&[1])), ids(&[1]));
    }

    #[test]
    fn prefers_new_zones_and_replaces_down_stewards() {
        let p = ZoneSpread;
        let c = vec![
            cand(1, "home", true, false),
            cand(2, "home", true, false),
            cand(3, "office", true, false),
            cand(4, "village", true, false),
        ];
        assert_eq!(p.choose_stewards(&c, &ids(&[1])), ids(&[1, 3, 4]));
        let c = vec![
            cand(1, "a", true, false),
            cand(2, "b", false, true),
            cand(3, "c", true, false),
            cand(4, "b", true, false),
        ];
        assert_eq!(p.choose_stewards(&c, &ids(&[1, 2, 3])), ids(&[1, 3, 4]));
        // Unreachable (not down) stewards keep their seat.
        let c = vec![
            cand(1, "a", true, false),
            cand(2, "b", false, false),
            cand(3, "c", true, false),
        ];
        assert_eq!(p.choose_stewards(&c, &ids(&[1, 2, 3])), ids(&[1, 2, 3]));
    }
}
