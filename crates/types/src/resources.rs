//! Amounts of compute: [`Limits`], what one container may use, and
//! [`Resources`], the cpu, memory and disk triple that peers lend and
//! containers hold. One definition for the control plane's records, the
//! runtime's spec, leases and (later) the scheduler.

use serde::{Deserialize, Serialize};

/// The limits a container runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Limits {
    /// CPU time in thousandths of a core (`500` = half a core).
    pub cpus_milli: u32,
    /// Memory limit in bytes (resident memory plus page cache, as cgroups count it).
    pub memory_bytes: u64,
    /// Size of the container's writable disk in bytes.
    pub disk_bytes: u64,
    /// Most processes and threads the container may hold at once.
    pub pids: u32,
}

impl Limits {
    /// The cpu, memory and disk these limits take from a peer.
    pub fn resources(&self) -> Resources {
        Resources {
            cpus_milli: u64::from(self.cpus_milli),
            memory_bytes: self.memory_bytes,
            disk_bytes: self.disk_bytes,
        }
    }
}

/// Cpu (thousandths of a core), memory and disk (bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct Resources {
    pub cpus_milli: u64,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
}

impl Resources {
    /// Nothing at all.
    pub const ZERO: Resources = Resources {
        cpus_milli: 0,
        memory_bytes: 0,
        disk_bytes: 0,
    };

    /// Both amounts together, saturating.
    pub fn plus(self, other: Resources) -> Resources {
        Resources {
            cpus_milli: self.cpus_milli.saturating_add(other.cpus_milli),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
            disk_bytes: self.disk_bytes.saturating_add(other.disk_bytes),
        }
    }

    /// What is left of this after `used`, never below zero.
    pub fn minus(self, used: Resources) -> Resources {
        Resources {
            cpus_milli: self.cpus_milli.saturating_sub(used.cpus_milli),
            memory_bytes: self.memory_bytes.saturating_sub(used.memory_bytes),
            disk_bytes: self.disk_bytes.saturating_sub(used.disk_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_add_and_subtract_without_wrapping() {
        let lent = Resources {
            cpus_milli: 2000,
            memory_bytes: 100,
            disk_bytes: 10,
        };
        let held = Limits {
            cpus_milli: 500,
            memory_bytes: 150,
            disk_bytes: 4,
            pids: 9,
        }
        .resources();
        let free = lent.minus(held);
        assert_eq!(free.cpus_milli, 1500);
        assert_eq!(free.memory_bytes, 0);
        assert_eq!(free.disk_bytes, 6);
        assert_eq!(free.plus(held).disk_bytes, 10);
        assert_eq!(Resources::ZERO.minus(lent), Resources::ZERO);
    }
}
