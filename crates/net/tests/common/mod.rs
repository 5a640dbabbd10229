//! What the data-plane tests and the benchmark share: peers of one cloud
//! (a mesh and a forwarder each, in this process, over loopback QUIC), and
//! the members of a network as network namespaces, each holding one TUN
//! device of a peer with its address. Everything needs root.
//!
//! Addresses come from 198.19.0.0/16 (reserved for network tests) and
//! exist only inside the namespaces made here.

#![allow(dead_code)]

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use coop_identity::{Certificate, CertificateBody, CloudKey, PeerKey};
use coop_mesh::{LivenessConfig, Mesh, MeshConfig};
use coop_net::{Forwarder, NET_ALPN, Network, Tun, network_mtu};
use coop_types::{Ipv4Subnet, NetworkId, PeerId};

/// Fails the test with the reason this machine cannot run it, if any.
pub fn require_root() {
    if let Some(reason) = unavailable() {
        panic!("this test needs root, /dev/net/tun, `ip` and network namespaces: {reason}");
    }
}

fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing (modprobe tun)".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("`ip` is not installed (apt-get install iproute2)".into());
    }
    if Command::new("busybox").arg("true").output().is_err() {
        return Some("`busybox` is not installed (its ping is used)".into());
    }
    None
}

/// A name unique to this process and call, short enough for an interface.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

/// Runs a command; fails with its stderr.
pub fn run(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(prefix: &str) -> Result<Netns> {
        let name = unique(prefix);
        run(&["ip", "netns", "add", &name])?;
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Runs `work` on a thread inside the namespace: sockets it makes
    /// belong to the namespace, and may be used from any thread after.
    pub fn enter<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let path = format!("/run/netns/{}", self.name);
        let joined = std::thread::spawn(move || -> Result<T> {
            let file = File::open(&path).with_context(|| format!("opening {path}"))?;
            // SAFETY: setns on a namespace file we hold open, for this thread only.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns into {path}: {}", std::io::Error::last_os_error());
            }
            Ok(work())
        })
        .join();
        joined.map_err(|_| anyhow::anyhow!("the thread inside the namespace panicked"))?
    }

    /// Pings `addr` from inside; true when an answer came.
    pub fn ping(&self, addr: Ipv4Addr, size: usize) -> bool {
        self.exec(&[
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "-s",
            &size.to_string(),
            &addr.to_string(),
        ])
        .is_ok()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

/// A peer of the test cloud: its mesh and its forwarder.
pub struct Peer {
    pub mesh: Mesh,
    pub forwarder: Forwarder,
}

impl Peer {
    pub fn id(&self) -> PeerId {
        self.mesh.id()
    }

    pub async fn shutdown(&self) {
        self.forwarder.shutdown().await;
        self.mesh.shutdown().await;
    }
}

/// A mesh of the cloud at `listen` serving `coop/net/1`.
pub async fn mesh(cloud: &CloudKey, name: &str, listen: SocketAddr, relay: bool) -> Mesh {
    mesh_serving(cloud, name, listen, relay, vec![NET_ALPN]).await
}

/// A mesh of the cloud at `listen` serving `protocols`.
pub async fn mesh_serving(
    cloud: &CloudKey,
    name: &str,
    listen: SocketAddr,
    relay: bool,
    protocols: Vec<&'static [u8]>,
) -> Mesh {
    let key = PeerKey::generate();
    let cert = Certificate::issue(
        cloud,
        CertificateBody {
            cloud: cloud.id(),
            peer: key.id(),
            name: name.into(),
            zone: "default".into(),
            roles: vec![],
            issued_at: 0,
            expires_at: u64::MAX,
        },
    )
    .expect("certificate");
    Mesh::bind(MeshConfig {
        key,
        cloud: cloud.id(),
        certificate: Some(cert),
        listen,
        liveness: LivenessConfig::default(),
        relay,
        mdns: false,
        protocols,
    })
    .await
    .expect("mesh binds")
}

/// Two peers on loopback that know each other's addresses.
pub async fn two_peers() -> (Peer, Peer) {
    two_peers_serving(vec![NET_ALPN]).await
}

/// Two peers on loopback serving `protocols`.
pub async fn two_peers_serving(protocols: Vec<&'static [u8]>) -> (Peer, Peer) {
    let cloud = CloudKey::generate();
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let a = mesh_serving(&cloud, "a", listen, false, protocols.clone()).await;
    let b = mesh_serving(&cloud, "b", listen, false, protocols).await;
    a.add_peer_addrs(b.id(), &b.local_addrs());
    b.add_peer_addrs(a.id(), &a.local_addrs());
    let peer = |mesh: Mesh| Peer {
        forwarder: Forwarder::start(mesh.clone()),
        mesh,
    };
    (peer(a), peer(b))
}

/// One member of a network: a namespace holding a peer's TUN device for
/// the network, with the member's address.
pub struct Member {
    pub ns: Netns,
    pub addr: Ipv4Addr,
    /// The TUN device's name, inside `ns`.
    pub device: String,
}

/// Makes `peer` carry `network` through a fresh TUN device, moved into a
/// namespace of its own with `addr` on it.
pub fn attach(peer: &Peer, network: Network, addr: Ipv4Addr) -> Result<Member> {
    attach_with(peer, network, addr, true)
}

/// [`attach`], with a device that takes offloads or a plain one.
pub fn attach_with(peer: &Peer, network: Network, addr: Ipv4Addr, offload: bool) -> Result<Member> {
    let ns = Netns::create("cn")?;
    let tun = if offload {
        Tun::create(&unique("ct"))?
    } else {
        Tun::create_plain(&unique("ct"))?
    };
    assert!(
        !offload || tun.offloads(),
        "this kernel gives TUN no offloads"
    );
    let name = tun.name().to_string();
    run(&["ip", "link", "set", "dev", &name, "netns", &ns.name])?;
    let mtu = network_mtu().to_string();
    ns.exec(&["ip", "link", "set", "dev", &name, "mtu", &mtu, "up"])?;
    let cidr = format!("{addr}/{}", network.subnet.prefix);
    ns.exec(&["ip", "addr", "add", &cidr, "dev", &name])?;
    peer.forwarder.add_network(network, tun)?;
    Ok(Member {
        ns,
        addr,
        device: name,
    })
}

pub fn network(id: u32, subnet: &str) -> Network {
    Network {
        id: NetworkId(id),
        subnet: subnet.parse::<Ipv4Subnet>().expect("subnet"),
    }
}

/// Tells both peers who hosts which member.
pub fn route_both(a: &Peer, b: &Peer, network: NetworkId, members: &[(Ipv4Addr, PeerId)]) {
    for peer in [a, b] {
        peer.forwarder
            .replace_routes(network, members.iter().copied())
            .expect("routes");
    }
}

/// Waits until `check` holds, up to `within`.
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A tokio runtime whose threads live in a network namespace: the sockets
/// its tasks open (a mesh's, a relay's) and the TUN devices they create
/// belong to that namespace.
pub struct NsRuntime {
    rt: Option<tokio::runtime::Runtime>,
}

impl NsRuntime {
    pub fn start(ns: &Netns) -> Result<NsRuntime> {
        let rt = ns.enter(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
        })??;
        Ok(NsRuntime { rt: Some(rt) })
    }

    /// Runs `work` on the namespace's runtime and waits for it.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        let rt = self.rt.as_ref().expect("runtime");
        rt.spawn(work).await.expect("task in the namespace")
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Gives a TUN device already in `ns` the network's MTU, `addr`, and up.
pub fn configure_in(ns: &Netns, device: &str, addr: Ipv4Addr, subnet: Ipv4Subnet) -> Result<()> {
    let mtu = network_mtu().to_string();
    ns.exec(&["ip", "link", "set", "dev", device, "mtu", &mtu, "up"])?;
    let cidr = format!("{addr}/{}", subnet.prefix);
    ns.exec(&["ip", "addr", "add", &cidr, "dev", device])?;
    Ok(())
}
