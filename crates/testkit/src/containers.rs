//! What container tests and benchmarks need on the host: a busybox
//! rootfs, `coop up` flags that keep one agent's host names (bridge, nft
//! table, veth and netns prefixes, cgroup parent) apart from another's,
//! and the cleanup of those names.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

/// Debian's `busybox-static`, which the test command installs.
pub const BUSYBOX: &str = "/bin/busybox";

/// Fails unless this process is root and busybox-static is installed.
pub fn require_container_host() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("containers need root (mounts, cgroups, network namespaces)");
    }
    if !Path::new(BUSYBOX).exists() {
        bail!("containers here are made from {BUSYBOX}: apt-get install busybox-static");
    }
    Ok(())
}

/// A minimal rootfs at `root`: static busybox with its applets, users, and
/// a page in /www.
pub fn busybox_rootfs(root: &Path) -> Result<()> {
    for dir in ["bin", "etc", "proc", "sys", "dev", "tmp", "www", "root"] {
        std::fs::create_dir_all(root.join(dir))?;
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox"))?;
    let list = Command::new(BUSYBOX).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = symlink("busybox", root.join("bin").join(applet));
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(root.join("etc/group"), "root:x:0:\n")?;
    std::fs::write(root.join("www/index.html"), "hello from coop\n")?;
    Ok(())
}

/// `coop up` flags that give agent `tag` host names of its own.
pub fn container_host_flags(tag: u8) -> Vec<String> {
    [
        ("--container-bridge", format!("coopk{tag}")),
        ("--container-subnet", format!("10.214.{tag}.0/24")),
        ("--container-nft-table", format!("coop_k{tag}")),
        ("--container-veth-prefix", format!("ck{tag}v")),
        ("--container-netns-prefix", format!("coopk{tag}-")),
        ("--container-cgroup", format!("coop_k{tag}")),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_string(), value])
    .collect()
}

/// Removes the bridge, nft table and cgroup parents of agent `tag` (after
/// it stopped and its containers are gone).
pub fn remove_container_host_names(tag: u8) {
    let _ = Command::new("ip")
        .args(["link", "del", &format!("coopk{tag}")])
        .output();
    // The bridges of private networks: `coopk<tag>n<id>`.
    let prefix = format!("coopk{tag}n");
    for link in std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = link.file_name().to_string_lossy().into_owned();
        if name
            .strip_prefix(&prefix)
            .is_some_and(|id| id.parse::<u32>().is_ok())
        {
            let _ = Command::new("ip").args(["link", "del", &name]).output();
        }
    }
    let _ = Command::new("nft")
        .args(["delete", "table", "ip", &format!("coop_k{tag}")])
        .output();
    for base in [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/cpu,cpuacct",
        "/sys/fs/cgroup/pids",
    ] {
        let _ = std::fs::remove_dir(Path::new(base).join(format!("coop_k{tag}")));
    }
}
