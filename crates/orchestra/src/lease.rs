//! What a peer lends to containers, and the check every lease passes. A
//! peer is sovereign: it accepts a container only when the container's
//! size fits in what it offers minus what its other containers hold, and
//! says which resource is short when it refuses.
//!
//! A container that should run holds its CPUs and memory, unless it has
//! finished for good (exited, and its restart policy will not start it
//! again); every container holds its disk until it is removed, because its
//! writable layer stays.

use coop_state::{ContainerEntry, ContainerLimits, DesiredState};
use coop_types::PeerId;

use crate::error::ComputeError;

/// Decides whether a lease may run on this peer. The default,
/// [`FitsInCapacity`], admits what fits in what the peer lends; the
/// scheduler's cloud-wide policy plugs in here.
pub trait LeasePolicy: Send + Sync + 'static {
    /// Admits `lease` next to the other containers of `entries` placed on
    /// `me` (of which `finished` exited for good), or refuses it saying why.
    fn admit(
        &self,
        capacity: &Capacity,
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
        capacity: &Capacity,
        entries: &[ContainerEntry],
        finished: &[String],
        me: PeerId,
        lease: &ContainerEntry,
    ) -> Result<(), ComputeError> {
        capacity
            .admit(entries, finished, me, &lease.name, &lease.limits)
            .map_err(ComputeError::Short)
    }
}

/// Resources a peer offers to containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub cpus_milli: u64,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
}

impl Capacity {
    /// What containers on `me` hold now, leaving out `except` (a container
    /// being started again is not counted twice) and the CPUs and memory
    /// of those in `finished`.
    pub fn held(
        entries: &[ContainerEntry],
        me: PeerId,
        except: &str,
        finished: &[String],
    ) -> Capacity {
        let mut held = Capacity {
            cpus_milli: 0,
            memory_bytes: 0,
            disk_bytes: 0,
        };
        for entry in entries.iter().filter(|e| e.peer == me && e.name != except) {
            held.disk_bytes += entry.limits.disk_bytes;
            if entry.desired == DesiredState::Running && !finished.contains(&entry.name) {
                held.cpus_milli += u64::from(entry.limits.cpus_milli);
                held.memory_bytes += entry.limits.memory_bytes;
            }
        }
        held
    }

    /// Refuses `wanted` (as running) when it does not fit next to the
    /// other containers of `entries` placed on `me`, of which `finished`
    /// have exited for good; the reason names the short resource with
    /// what is free and what was asked.
    pub fn admit(
        &self,
        entries: &[ContainerEntry],
        finished: &[String],
        me: PeerId,
        name: &str,
        wanted: &ContainerLimits,
    ) -> Result<(), String> {
        let held = Capacity::held(entries, me, name, finished);
        let mut short = Vec::new();
        let cpus_free = self.cpus_milli.saturating_sub(held.cpus_milli);
        if u64::from(wanted.cpus_milli) > cpus_free {
            short.push(format!(
                "{} CPUs asked, {} of {} free",
                cpus(u64::from(wanted.cpus_milli)),
                cpus(cpus_free),
                cpus(self.cpus_milli)
            ));
        }
        let memory_free = self.memory_bytes.saturating_sub(held.memory_bytes);
        if wanted.memory_bytes > memory_free {
            short.push(format!(
                "{} memory asked, {} of {} free",
                bytes(wanted.memory_bytes),
                bytes(memory_free),
                bytes(self.memory_bytes)
            ));
        }
        let disk_free = self.disk_bytes.saturating_sub(held.disk_bytes);
        if wanted.disk_bytes > disk_free {
            short.push(format!(
                "{} disk asked, {} of {} free",
                bytes(wanted.disk_bytes),
                bytes(disk_free),
                bytes(self.disk_bytes)
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
            limits: ContainerLimits {
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
        }
    }

    #[test]
    fn leases_fit_in_what_is_left() {
        let offer = Capacity {
            cpus_milli: 2000,
            memory_bytes: 1 << 30,
            disk_bytes: 3 << 30,
        };
        let me = PeerId([1; 32]);
        let entries = vec![
            entry("a", 1, 1000, 512, DesiredState::Running),
            // Stopped: holds disk only.
            entry("b", 1, 1000, 512, DesiredState::Stopped),
            // Another peer's: holds nothing here.
            entry("c", 2, 2000, 1024, DesiredState::Running),
        ];
        let fits = entry("d", 1, 1000, 512, DesiredState::Running).limits;
        offer.admit(&entries, &[], me, "d", &fits).unwrap();
        let too_big = entry("d", 1, 1500, 600, DesiredState::Running).limits;
        let reason = offer.admit(&entries, &[], me, "d", &too_big).unwrap_err();
        assert!(reason.contains("1.50 CPUs asked, 1 of 2 free"), "{reason}");
        assert!(
            reason.contains("600 MiB memory asked, 512 MiB of 1.0 GiB free"),
            "{reason}"
        );
        assert!(!reason.contains("disk asked"), "{reason}");
        // Restarting `b` does not count `b` against itself.
        offer
            .admit(&entries, &[], me, "b", &entries[1].limits)
            .unwrap();
        // A finished container holds disk only.
        let finished = vec!["a".to_string()];
        offer.admit(&entries, &finished, me, "d", &too_big).unwrap();
        // Disk is held by stopped containers too: a third one does not fit.
        let mut disk = fits;
        disk.disk_bytes = 2 << 30;
        assert!(
            offer
                .admit(&entries, &[], me, "d", &disk)
                .unwrap_err()
                .contains("disk asked")
        );
    }
}
