//! Outbound NAT: a container reaches a server outside the peer, and the
//! server sees the peer's address, not the container's.
//!
//! "Outside" is a network namespace made by the test, reached through a
//! veth from the host (198.51.100.0/30, a documentation range), so no
//! packet leaves the machine. The host must forward for this, so the test
//! turns `net.ipv4.ip_forward` on and restores it afterwards.

mod common;

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Lab, eventually};
use coop_compute::runtime::{ExecOptions, ExitStatus};

const OUTSIDE_NS: &str = "coopt11-outside";
const HOST_VETH: &str = "ct11out";

/// The outside namespace and its server; removed on drop.
struct Outside {
    server: Child,
    forward_before: String,
}

impl Outside {
    fn new(www: &std::path::Path) -> Outside {
        let sh = |script: &str| {
            let out = Command::new("sh").args(["-c", script]).output().unwrap();
            assert!(
                out.status.success(),
                "{script}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let _ = Command::new("ip")
            .args(["netns", "del", OUTSIDE_NS])
            .output();
        let _ = Command::new("ip").args(["link", "del", HOST_VETH]).output();
        sh(&format!(
            "ip netns add {OUTSIDE_NS} && \
             ip link add {HOST_VETH} type veth peer name eth0 netns {OUTSIDE_NS} && \
             ip addr add 198.51.100.2/30 dev {HOST_VETH} && ip link set {HOST_VETH} up && \
             ip -n {OUTSIDE_NS} addr add 198.51.100.1/30 dev eth0 && \
             ip -n {OUTSIDE_NS} link set eth0 up && ip -n {OUTSIDE_NS} link set lo up"
        ));
        let forward_before = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
        // -v logs each client's address on stderr.
        let server = Command::new("ip")
            .args([
                "netns",
                "exec",
                OUTSIDE_NS,
                "/bin/busybox",
                "httpd",
                "-f",
                "-v",
                "-p",
                "9000",
                "-h",
            ])
            .arg(www)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Outside {
            server,
            forward_before,
        }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = Command::new("ip").args(["link", "del", HOST_VETH]).output();
        let _ = Command::new("ip")
            .args(["netns", "del", OUTSIDE_NS])
            .output();
        let _ = fs::write("/proc/sys/net/ipv4/ip_forward", &self.forward_before);
    }
}

#[test]
fn containers_reach_outside_through_masquerade() {
    let mut lab = Lab::new(11);
    lab.config.network.enable_ip_forward = true;
    lab.restart_runtime();
    let www = lab.dir.path().join("outside-www");
    fs::create_dir_all(&www).unwrap();
    fs::write(www.join("index.html"), "outside\n").unwrap();
    let mut outside = Outside::new(&www);

    let rt = lab.rt();
    rt.run(lab.spec("client", &["sleep", "300"])).unwrap();
    // busybox nc, not wget: the static busybox's wget crashes in a rootfs
    // without glibc's NSS modules.
    let request = "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 198.51.100.1 9000";
    let page = eventually(Duration::from_secs(10), "a page from outside", || {
        let out = rt
            .exec("client", ExecOptions::command(&["sh", "-c", request]))
            .unwrap()
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status == ExitStatus::Code(0) && text.contains("outside")).then_some(text)
    });
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    rt.delete("client", true).unwrap();

    let _ = outside.server.kill();
    let mut log = String::new();
    use std::io::Read;
    outside
        .server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        log.contains("198.51.100.2"),
        "the server saw the peer's address: {log}"
    );
    assert!(
        !log.contains("10.213.11."),
        "the container's address never left the peer: {log}"
    );
}
