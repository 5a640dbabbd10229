//! Reading and removing a container's cgroups on cgroup v1, hybrid and v2 hosts.
//!
//! The runtime backends (libcontainer, runc) create the cgroups and write
//! the limits from the OCI spec; this module only finds them again: for
//! stats, to tell whether the kernel OOM-killed a process, and to make sure
//! nothing is left behind on delete. Like libcontainer and runc, a hybrid
//! host (v1 controllers plus an empty v2 hierarchy) is treated as v1.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::runtime::error::{RuntimeError, io_err};
use crate::runtime::sys::unescape_mountinfo;

/// Controllers a container's quotas need: CPU time, CPU accounting, memory, processes.
const V1_REQUIRED: [&str; 4] = ["cpu", "cpuacct", "memory", "pids"];
const V2_REQUIRED: [&str; 3] = ["cpu", "memory", "pids"];
/// How long delete waits for killed processes to leave a cgroup before
/// reporting it; exiting takes milliseconds unless a task is stuck in the kernel.
const EMPTY_WAIT: Duration = Duration::from_secs(5);

/// Where the cgroup hierarchies of this host are mounted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup v1 (legacy or hybrid): one mount per controller.
    V1 {
        /// Controller name → mount point (`memory` → `/sys/fs/cgroup/memory`).
        controllers: BTreeMap<String, PathBuf>,
        /// Every cgroup mount (v1, named and the hybrid v2 one), for cleanup.
        all: Vec<PathBuf>,
    },
    /// cgroup v2 only: one unified hierarchy.
    V2 {
        /// Its mount point (`/sys/fs/cgroup`).
        root: PathBuf,
    },
}

/// A container's usage as its cgroups count it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// CPU time used, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory in use without reclaimable page cache (the "working set").
    pub memory_bytes: u64,
    /// The memory limit the kernel enforces.
    pub memory_limit_bytes: u64,
    /// Processes and threads alive.
    pub pids: u64,
}

impl CgroupLayout {
    /// Finds the cgroup mounts of this host and checks the controllers quotas need are there.
    pub fn detect() -> Result<CgroupLayout, RuntimeError> {
        let info = fs::read_to_string("/proc/self/mountinfo").map_err(|e| {
            RuntimeError::NoCgroups(format!("cannot read /proc/self/mountinfo: {e}"))
        })?;
        Self::from_mountinfo(&info)
    }

    fn from_mountinfo(info: &str) -> Result<CgroupLayout, RuntimeError> {
        let mut controllers = BTreeMap::new();
        let mut all = Vec::new();
        let mut v2_root = None;
        for line in info.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(point) = left.split(' ').nth(4) else {
                continue;
            };
            let point = PathBuf::from(unescape_mountinfo(point));
            let mut right = right.split(' ');
            let (fstype, options) = (right.next(), right.nth(1).unwrap_or(""));
            match fstype {
                Some("cgroup") => {
                    for option in options.split(',') {
                        if V1_REQUIRED.contains(&option)
                            || ["cpuset", "devices", "freezer", "blkio", "hugetlb"]
                                .contains(&option)
                            || ["net_cls", "net_prio", "perf_event", "rdma", "misc"]
                                .contains(&option)
                        {
                            controllers
                                .entry(option.to_string())
                                .or_insert_with(|| point.clone());
                        }
                    }
                    all.push(point);
                }
                Some("cgroup2") => {
                    v2_root.get_or_insert_with(|| point.clone());
                    all.push(point);
                }
                _ => {}
            }
        }
        if !controllers.is_empty() {
            if let Some(missing) = V1_REQUIRED.iter().find(|c| !controllers.contains_key(**c)) {
                return Err(RuntimeError::MissingController(missing));
            }
            return Ok(CgroupLayout::V1 { controllers, all });
        }
        let Some(root) = v2_root else {
            return Err(RuntimeError::NoCgroups(
                "no cgroup or cgroup2 filesystem is mounted".into(),
            ));
        };
        let available = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        if let Some(missing) = V2_REQUIRED
            .iter()
            .find(|c| !available.split_whitespace().any(|a| a == **c))
        {
            return Err(RuntimeError::MissingController(missing));
        }
        Ok(CgroupLayout::V2 { root })
    }

    /// Whether v1 memory cgroups account swap (`memory.memsw.*`); on v2 swap is always accounted.
    pub fn accounts_swap(&self) -> bool {
        match self {
            CgroupLayout::V1 { controllers, .. } => controllers
                .get("memory")
                .is_some_and(|m| m.join("memory.memsw.limit_in_bytes").exists()),
            CgroupLayout::V2 { .. } => true,
        }
    }

    fn dir(&self, controller: &str, path: &str) -> Option<PathBuf> {
        let relative = path.trim_start_matches('/');
        match self {
            CgroupLayout::V1 { controllers, .. } => {
                controllers.get(controller).map(|m| m.join(relative))
            }
            CgroupLayout::V2 { root } => Some(root.join(relative)),
        }
    }

    /// Current usage of the cgroup at `path` (as in the OCI `cgroupsPath`).
    /// Counters of a cgroup that no longer exists read as zero.
    pub fn stats(&self, path: &str) -> CgroupStats {
        let read = |controller: &str, file: &str| {
            self.dir(controller, path)
                .and_then(|d| fs::read_to_string(d.join(file)).ok())
        };
        let number =
            |text: Option<String>| text.and_then(|t| t.trim().parse::<u64>().ok()).unwrap_or(0);
        match self {
            CgroupLayout::V1 { .. } => {
                let usage = number(read("memory", "memory.usage_in_bytes"));
                let inactive = stat_field(read("memory", "memory.stat"), "total_inactive_file");
                CgroupStats {
                    cpu_usage_ns: number(read("cpuacct", "cpuacct.usage")),
                    memory_bytes: usage.saturating_sub(inactive),
                    memory_limit_bytes: number(read("memory", "memory.limit_in_bytes")),
                    pids: number(read("pids", "pids.current")),
                }
            }
            CgroupLayout::V2 { .. } => {
                let usage = number(read("memory", "memory.current"));
                let inactive = stat_field(read("memory", "memory.stat"), "inactive_file");
                CgroupStats {
                    cpu_usage_ns: stat_field(read("cpu", "cpu.stat"), "usage_usec")
                        .saturating_mul(1000),
                    memory_bytes: usage.saturating_sub(inactive),
                    memory_limit_bytes: number(read("memory", "memory.max")),
                    pids: number(read("pids", "pids.current")),
                }
            }
        }
    }

    /// How many processes the kernel OOM-killed in the cgroup at `path`.
    pub fn oom_kills(&self, path: &str) -> u64 {
        let file = match self {
            CgroupLayout::V1 { .. } => "memory.oom_control",
            CgroupLayout::V2 { .. } => "memory.events",
        };
        let text = self
            .dir("memory", path)
            .and_then(|d| fs::read_to_string(d.join(file)).ok());
        stat_field(text, "oom_kill")
    }

    /// Every directory the cgroup at `path` has (or may have) in any hierarchy.
    pub fn dirs(&self, path: &str) -> Vec<PathBuf> {
        let relative = path.trim_start_matches('/');
        match self {
            CgroupLayout::V1 { all, .. } => all.iter().map(|m| m.join(relative)).collect(),
            CgroupLayout::V2 { root } => vec![root.join(relative)],
        }
    }

    /// Kills whatever is left in the cgroup at `path` and removes its
    /// directories in every hierarchy. Missing directories are fine.
    pub fn remove(&self, path: &str) -> Result<(), RuntimeError> {
        let deadline = Instant::now() + EMPTY_WAIT;
        for dir in self.dirs(path) {
            loop {
                match fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        kill_all(&dir);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(io_err("remove cgroup", &dir)(e)),
                }
            }
        }
        Ok(())
    }

    /// Removes the parent cgroup `path` (e.g. `/coop`) where it is empty; a
    /// parent still holding containers stays.
    pub fn remove_parent_if_empty(&self, path: &str) {
        for dir in self.dirs(path) {
            let _ = fs::remove_dir(dir);
        }
    }
}

fn kill_all(dir: &Path) {
    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        // SAFETY: kill(2) with a pid read from the cgroup; a stale pid only yields ESRCH.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// The value of `key` in a `key value` per line file (memory.stat, cpu.stat, memory.events).
fn stat_field(text: Option<String>, key: &str) -> u64 {
    text.and_then(|t| {
        t.lines().find_map(|line| {
            let (k, v) = line.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok()).flatten()
        })
    })
    .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 24 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
36 30 0:32 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_hosts_are_v1_with_every_mount_cleaned() {
        let layout = CgroupLayout::from_mountinfo(HYBRID).unwrap();
        let CgroupLayout::V1 { controllers, all } = &layout else {
            panic!("{layout:?}");
        };
        assert_eq!(controllers["memory"], Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(all.len(), 6);
        assert!(
            layout
                .dirs("/coop/a")
                .contains(&PathBuf::from("/sys/fs/cgroup/unified/coop/a"))
        );
    }

    #[test]
    fn missing_controllers_are_named() {
        let no_pids: String = HYBRID
            .lines()
            .filter(|l| !l.contains("pids"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(matches!(
            CgroupLayout::from_mountinfo(&no_pids),
            Err(RuntimeError::MissingController("pids"))
        ));
        assert!(matches!(
            CgroupLayout::from_mountinfo("1 0 0:1 / / rw - ext4 /dev/vda rw"),
            Err(RuntimeError::NoCgroups(_))
        ));
    }

    #[test]
    fn stat_fields_parse() {
        let text = Some("oom 1\noom_kill 3\n".to_string());
        assert_eq!(stat_field(text, "oom_kill"), 3);
        assert_eq!(stat_field(None, "oom_kill"), 0);
    }

    #[test]
    fn this_host_has_usable_cgroups() {
        let layout = CgroupLayout::detect().expect(
            "this test needs cgroups with cpu, cpuacct, memory and pids controllers (v1) or cpu, memory, pids (v2)",
        );
        assert!(!layout.dirs("/x").is_empty());
    }
}
