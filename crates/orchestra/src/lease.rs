//! What a peer lends to containers, and the check every lease passes. A
//! peer is sovereign: it accepts a container only when the container's
//! size fits in what it offers minus what its other containers hold, and
//! says which resource is short when it refuses.
//!
//! A container that should run holds its CPUs and memory, unless it has
//! finished for good (exited, and its restart policy will not start it
//! again); every container holds its disk until it is removed, because its
//! writable layer stays.

use coop_state::{ContainerEntry, DesiredState};
use coop_types::{PeerId, Resources};

use crate::error::ComputeError;

/// Decides whether a lease may run on this peer. The default,
/// [`FitsInCapacity`], admits what fits in what the peer lends; the
/// scheduler's cloud-wide policy plugs in here.
pub trait LeasePolicy: Send + Sync + 'static {
    /// Admits `lease` on `me`, which lends `lent`, next to the other
    /// containers of `entries` placed there (of which `finished` exited for
    /// good), or refuses it saying why.
    fn admit(
        &self,
        lent: &Resources,
        entries: &[ContainerEntry],
        finished: &[String],
        me: PeerId,
        lease: &ContainerEntry,
    ) -> Result<(), ComputeError>;
}

/// Admits a lease when its size fits in the peer's free capacity.
#[derive(Clone, Copy, Debug, Default)]
pub struct FitsInCapacity;

impl LeasePolicy for FitsInCapacity {
    fn admit(
        &self,
        lent: &Resources,
        entries: &[ContainerEntry],
        finished: &[String],
        me: PeerId,
        lease: &ContainerEntry,
    ) -> Result<(), ComputeError> {
        let held = held(entries, me, &lease.name, finished);
        shortfall(lent, held, lease.limits.resources(), me, &lease.name)
            .map_err(ComputeError::Short)
    }
}

/// What containers on `me` hold now, leaving out `except` (a container
/// being started again is not counted twice) and the CPUs and memory of
/// those in `finished`.
pub fn held(
    entries: &[ContainerEntry],
    me: PeerId,
    except: &str,
    finished: &[String],
) -> Resources {
    let mut held = Resources::ZERO;
    for entry in entries.iter().filter(|e| e.peer == me && e.name != except) {
        let mut takes = entry.limits.resources();
        if entry.desired != DesiredState::Running || finished.contains(&entry.name) {
            takes.cpus_milli = 0;
            takes.memory_bytes = 0;
        }
        held = held.plus(takes);
    }
    held
}

/// Refuses `wanted` for container `name` when it does not fit in `lent`
/// minus `held`; the reason names each short resource with what is free
/// and what was asked.
pub fn shortfall(
    lent: &Resources,
    held: Resources,
    wanted: Resources,
    me: PeerId,
    name: &str,
) -> Result<(), String> {
    let free = lent.minus(held);
    let mut short = Vec::new();
    if wanted.cpus_milli > free.cpus_milli {
        short.push(format!(
            "{} CPUs asked, {} of {} free",
            cpus(wanted.cpus_milli),
            cpus(free.cpus_milli),
            cpus(lent.cpus_milli)
        ));
    }
    if wanted.memory_bytes > free.memory_bytes {
        short.push(format!(
            "{} memory asked, {} of {} free",
            bytes(wanted.memory_bytes),
            bytes(free.memory_bytes),
            bytes(lent.memory_bytes)
        ));
    }
    if wanted.disk_bytes > free.disk_bytes {
        short.push(format!(
            "{} disk asked, {} of {} free",
            bytes(wanted.disk_bytes),
            bytes(free.disk_bytes),
            bytes(lent.disk_bytes)
        ));
    }
    if short.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "peer {} lacks capacity for container `{name}`: {}; pick a smaller --size, another --peer, or raise what the peer offers (coop up --capacity-cpus/--capacity-memory/--capacity-disk)",
            me.short(),
            short.join("; ")
        ))
    }
}

fn cpus(milli: u64) -> String {
    if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        format!("{:.2}", milli as f64 / 1000.0)
    }
}

fn bytes(n: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if n >= GIB {
        format!("{:.1} GiB", n as f64 / GIB as f64)
    } else {
        format!("{} MiB", n / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coop_state::RestartPolicy;

    fn entry(
        name: &str,
        peer: u8,
        cpus_milli: u32,
        mib: u64,
        desired: DesiredState,
    ) -> ContainerEntry {
        ContainerEntry {
            name: name.into(),
            peer: PeerId([peer; 32]),
            template: "t".into(),
            version: "latest".into(),
            content_id: String::new(),
            size: "tiny".into(),
            limits: coop_types::Limits {
                cpus_milli,
                memory_bytes: mib << 20,
                disk_bytes: 1 << 30,
                pids: 100,
            },
            argv: Vec::new(),
            env: Vec::new(),
            workdir: None,
            user: None,
            ports: Vec::new(),
            restart: RestartPolicy::No,
            desired,
            created_at: 0,
            owner: None,
            networks: Vec::new(),
        }
    }

    /// The check the default policy makes, as `admit` would call it.
    fn admit(
        offer: &Resources,
        entries: &[ContainerEntry],
        finished: &[String],
        name: &str,
        wanted: &coop_types::Limits,
    ) -> Result<(), String> {
        let me = PeerId([1; 32]);
        shortfall(
            offer,
            held(entries, me, name, finished),
            wanted.resources(),
            me,
            name,
        )
    }

    #[test]
    fn leases_fit_in_what_is_left() {
        let offer = Resources {
            cpus_milli: 2000,
            memory_bytes: 1 << 30,
            disk_bytes: 3 << 30,
        };
        let entries = vec![
            entry("a", 1, 1000, 512, DesiredState::Running),
            // Stopped: holds disk only.
            entry("b", 1, 1000, 512, DesiredState::Stopped),
            // Another peer's: holds nothing here.
            entry("c", 2, 2000, 1024, DesiredState::Running),
        ];
        let fits = entry("d", 1, 1000, 512, DesiredState::Running).limits;
        admit(&offer, &entries, &[], "d", &fits).unwrap();
        let too_big = entry("d", 1, 1500, 600, DesiredState::Running).limits;
        let reason = admit(&offer, &entries, &[], "d", &too_big).unwrap_err();
        assert!(reason.contains("1.50 CPUs asked, 1 of 2 free"), "{reason}");
        assert!(
            reason.contains("600 MiB memory asked, 512 MiB of 1.0 GiB free"),
            "{reason}"
        );
        assert!(!reason.contains("disk asked"), "{reason}");
        // Restarting `b` does not count `b` against itself.
        admit(&offer, &entries, &[], "b", &entries[1].limits).unwrap();
        // A finished container holds disk only.
        let finished = vec!["a".to_string()];
        admit(&offer, &entries, &finished, "d", &too_big).unwrap();
        // Disk is held by stopped containers too: a third one does not fit.
        let mut disk = fits;
        disk.disk_bytes = 2 << 30;
        assert!(
            admit(&offer, &entries, &[], "d", &disk)
                .unwrap_err()
                .contains("disk asked")
        );
    }
}
