//! A lab for the runtime tests: a busybox rootfs, a runtime with
//! test-only names (bridge `cooptN`, nft table `coop_testN`, cgroups under
//! `/coop_testN`) so parallel tests and a real agent never collide, and
//! checks that nothing is left on the host afterwards.
//!
//! These tests need root, cgroups, network namespaces, nftables, loop
//! devices and Debian's `busybox-static`; without them they fail with a
//! message saying what is missing (they never skip silently).

#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use coop_compute::Size;
use coop_compute::network::NetworkConfig;
use coop_compute::runtime::{Backend, ContainerSpec, Runtime, RuntimeConfig, ShimCommand};

/// Busybox from Debian's `busybox-static`.
const BUSYBOX: &str = "/bin/busybox";

/// One test's world: a rootfs, a state root and a runtime with its own names.
pub struct Lab {
    pub tag: u8,
    pub dir: tempfile::TempDir,
    pub rootfs: PathBuf,
    pub runtime: Option<Runtime>,
    pub config: RuntimeConfig,
}

/// Panics with a clear message when the host lacks what the tests need.
pub fn require_host() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the runtime tests need root (mounts, cgroups, network namespaces); run them as root"
    );
    for (tool, package) in [
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("mkfs.ext4", "e2fsprogs"),
    ] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success()),
            "the runtime tests need `{tool}`: apt-get install {package}"
        );
    }
    assert!(
        Path::new(BUSYBOX).exists(),
        "the runtime tests need a static busybox at {BUSYBOX}: apt-get install busybox-static"
    );
    assert!(
        Path::new("/dev/loop-control").exists(),
        "the runtime tests need loop devices (/dev/loop-control) for disk quotas"
    );
}

/// A minimal rootfs: static busybox with every applet linked in /bin,
/// /etc/passwd and /etc/group, and a page to serve in /www.
pub fn busybox_rootfs(root: &Path) {
    for dir in ["bin", "etc", "proc", "sys", "dev", "tmp", "www", "root"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = symlink("busybox", root.join("bin").join(applet));
        }
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/www:/bin/false\n",
    )
    .unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\nwww:x:33:\n").unwrap();
    fs::write(root.join("www/index.html"), "hello from coop\n").unwrap();
}

/// Moves the owner of everything under `root` into the container id range
/// that starts at `shift` (nothing to do at 0).
pub fn shift_owners(root: &Path, shift: u32) {
    use std::os::unix::fs::MetadataExt;
    if shift == 0 {
        return;
    }
    let meta = fs::symlink_metadata(root).unwrap();
    std::os::unix::fs::lchown(root, Some(shift + meta.uid()), Some(shift + meta.gid())).unwrap();
    if meta.is_dir() {
        for entry in fs::read_dir(root).unwrap() {
            shift_owners(&entry.unwrap().path(), shift);
        }
    }
}

impl Lab {
    /// A lab with names ending in `tag` (unique per test).
    pub fn new(tag: u8) -> Lab {
        Self::with_backend(tag, Backend::Libcontainer)
    }

    /// A lab whose runtime uses `backend`.
    pub fn with_backend(tag: u8, backend: Backend) -> Lab {
        require_host();
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("template/rootfs");
        busybox_rootfs(&rootfs);
        let config = RuntimeConfig {
            shim: ShimCommand {
                program: PathBuf::from(env!("CARGO_BIN_EXE_coop-shim-test")),
                args: Vec::new(),
            },
            backend,
            network: NetworkConfig {
                bridge: format!("coopt{tag}"),
                subnet: format!("10.213.{tag}.0/24").parse().unwrap(),
                nft_table: format!("coop_test{tag}"),
                veth_prefix: format!("ct{tag}v"),
                netns_prefix: format!("coopt{tag}-"),
                // Tests reach containers from the host only; leave the host's forwarding alone.
                enable_ip_forward: false,
            },
            cgroup_parent: format!("coop_test{tag}"),
            user_namespaces: true,
        };
        let runtime = Runtime::new(dir.path().join("state"), config.clone()).unwrap_or_else(|e| {
            panic!("the runtime tests need a usable host: {e}");
        });
        // As an unpacked template would be: owned by the containers' ids.
        shift_owners(&rootfs, runtime.id_shift());
        Lab {
            tag,
            dir,
            rootfs,
            runtime: Some(runtime),
            config,
        }
    }

    pub fn rt(&self) -> &Runtime {
        self.runtime.as_ref().unwrap()
    }

    /// A tiny spec for `argv`.
    pub fn spec(&self, id: &str, argv: &[&str]) -> ContainerSpec {
        let mut spec = ContainerSpec::new(id, &self.rootfs, argv);
        spec.resources = Size::Tiny.limits();
        spec.resources.disk_bytes = 64 << 20;
        spec
    }

    /// Drops the runtime and makes a new one over the same state root (an agent restart).
    pub fn restart_runtime(&mut self) {
        self.runtime = None;
        self.runtime =
            Some(Runtime::new(self.dir.path().join("state"), self.config.clone()).unwrap());
    }

    /// Names on the host this lab's containers may leave behind.
    pub fn leftovers(&self, id: &str) -> Vec<String> {
        let mut found = Vec::new();
        let state = self.dir.path().join("state").display().to_string();
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        for line in mountinfo.lines().filter(|l| l.contains(&state)) {
            found.push(format!("mount: {line}"));
        }
        let links = run("ip", &["-o", "link"]);
        let veth = &self.config.network.veth_prefix;
        for line in links.lines().filter(|l| l.contains(&format!(": {veth}"))) {
            found.push(format!("link: {line}"));
        }
        let netns =
            PathBuf::from("/run/netns").join(format!("{}{id}", self.config.network.netns_prefix));
        if netns.exists() {
            found.push(format!("netns: {}", netns.display()));
        }
        let table = Command::new("nft")
            .args(["list", "table", "ip", &self.config.network.nft_table])
            .output()
            .unwrap();
        let table = String::from_utf8_lossy(&table.stdout);
        if table.contains("elements") {
            found.push(format!("nft elements: {table}"));
        }
        for dir in cgroup_dirs(&format!("{}/{id}", self.config.cgroup_parent)) {
            found.push(format!("cgroup: {}", dir.display()));
        }
        found
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.as_ref() {
            for container in rt.list().unwrap_or_default() {
                let _ = rt.delete(&container.id, true);
            }
            let _ = rt.teardown_host();
        }
    }
}

/// Every existing cgroup directory named `relative` under any cgroup mount.
pub fn cgroup_dirs(relative: &str) -> Vec<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo
        .lines()
        .filter(|l| l.contains(" - cgroup"))
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| Path::new(m).join(relative))
        .filter(|p| p.exists())
        .collect()
}

/// Runs a host command and returns its stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `check` until it returns `Some` or the deadline passes.
pub fn eventually<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The whole log of container `id` so far.
pub fn log_of(rt: &Runtime, id: &str) -> String {
    let mut text = String::new();
    rt.logs(id, false)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    text
}
