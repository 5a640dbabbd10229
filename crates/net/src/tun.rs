//! A TUN device: a network interface whose packets come to this process
//! and go out of it, one whole IP packet per read or write.
//!
//! The device is made with the `TUNSETIFF` ioctl on `/dev/net/tun`
//! (`IFF_TUN | IFF_NO_PI`: raw IP packets, no protocol header in front) and
//! lives as long as its file descriptor: dropping the [`Tun`] removes the
//! interface. [`Tun::create`] asks for offloads too (`IFF_VNET_HDR`, then
//! checksum and TCP segmentation offload): each packet then carries a
//! `virtio_net_hdr` in front, and TCP comes in 64 KiB super-packets (see
//! [`crate::offload`]). A kernel that refuses gets a plain device. The MTU, the link state, addresses and routes are set with
//! `ip`, as the compute room sets up the host's bridges. Reads are async
//! (the descriptor is non-blocking, behind tokio's [`AsyncFd`]); a write
//! never waits, since the kernel takes or drops a packet at once.
//!
//! Not here: what goes into the device and where it goes (the forwarder).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use coop_types::Ipv4Subnet;

use crate::sys::{CommandError, run};

/// The most parts [`Tun::send_parts`] writes as one packet: a header, the
/// merged headers and up to 64 payloads, with room to spare.
pub const MAX_PARTS: usize = 72;

/// The kernel's limit on interface names, less the terminating zero.
const MAX_NAME: usize = libc::IFNAMSIZ - 1;

/// Why a TUN device could not be made or set up.
#[derive(Debug, thiserror::Error)]
pub enum TunError {
    #[error(
        "`{0}` is not an interface name: use 1-{MAX_NAME} characters of a-z, A-Z, 0-9, `-`, `_`"
    )]
    BadName(String),
    #[error(
        "cannot open /dev/net/tun: {0} (is the tun module loaded, and are we root or CAP_NET_ADMIN?)"
    )]
    Open(io::Error),
    #[error(
        "cannot create TUN device `{name}`: {source} (is the name taken by another kind of device?)"
    )]
    Create { name: String, source: io::Error },
    #[error("cannot watch TUN device `{name}` for packets: {source} (inside a tokio runtime?)")]
    Register { name: String, source: io::Error },
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// An open TUN device.
#[derive(Debug)]
pub struct Tun {
    fd: AsyncFd<OwnedFd>,
    name: String,
    /// Packets carry a `virtio_net_hdr` and TCP may come segmented late.
    offload: bool,
}

impl Tun {
    /// Creates the TUN device `name`, or attaches to it if a persistent one
    /// exists. Must be called inside a tokio runtime. The device starts
    /// down, without addresses, in this thread's network namespace.
    pub fn create(name: &str) -> Result<Tun, TunError> {
        match Tun::open(name, true) {
            Ok(tun) => Ok(tun),
            // A kernel without offloads for TUN: a plain device.
            Err(TunError::Create { .. }) => Tun::open(name, false),
            Err(err) => Err(err),
        }
    }

    /// Like [`Tun::create`], without offloads: one plain IP packet per
    /// read and write.
    pub fn create_plain(name: &str) -> Result<Tun, TunError> {
        Tun::open(name, false)
    }

    fn open(name: &str, offload: bool) -> Result<Tun, TunError> {
        let valid = !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(TunError::BadName(name.to_string()));
        }
        // SAFETY: a plain open(2) of a constant path; the result is checked.
        let raw = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(TunError::Open(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a descriptor we just opened and own alone.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ifreq is plain old data; all zeroes is a valid value.
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
            *slot = byte as libc::c_char;
        }
        let mut flags = libc::IFF_TUN | libc::IFF_NO_PI;
        if offload {
            flags |= libc::IFF_VNET_HDR;
        }
        request.ifr_ifru.ifru_flags = flags as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one ifreq, which outlives the call.
        let done = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut request) };
        if done < 0 {
            return Err(TunError::Create {
                name: name.to_string(),
                source: io::Error::last_os_error(),
            });
        }
        if offload {
            let features = libc::TUN_F_CSUM | libc::TUN_F_TSO4;
            // SAFETY: TUNSETOFFLOAD takes its argument by value.
            let done = unsafe {
                libc::ioctl(
                    fd.as_raw_fd(),
                    libc::TUNSETOFFLOAD,
                    libc::c_ulong::from(features),
                )
            };
            if done < 0 {
                return Err(TunError::Create {
                    name: name.to_string(),
                    source: io::Error::last_os_error(),
                });
            }
        }
        if let Err(err) = tokio::runtime::Handle::try_current() {
            return Err(TunError::Register {
                name: name.to_string(),
                source: io::Error::other(err),
            });
        }
        // SAFETY: an OwnedFd stays open and returns the same descriptor
        // for as long as the AsyncFd owns it.
        let fd =
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|err| {
                TunError::Register {
                    name: name.to_string(),
                    source: err.into(),
                }
            })?;
        Ok(Tun {
            fd,
            name: name.to_string(),
            offload,
        })
    }

    /// Whether packets carry a `virtio_net_hdr` each way (see
    /// [`crate::offload`]).
    pub fn offloads(&self) -> bool {
        self.offload
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the MTU: the largest packet the kernel hands to the device.
    pub fn set_mtu(&self, mtu: u16) -> Result<(), TunError> {
        run(
            "ip",
            &["link", "set", "dev", &self.name, "mtu", &mtu.to_string()],
        )?;
        Ok(())
    }

    /// Brings the interface up.
    pub fn up(&self) -> Result<(), TunError> {
        run("ip", &["link", "set", "dev", &self.name, "up"])?;
        Ok(())
    }

    /// Gives the interface `addr` in `subnet`; the kernel then routes the
    /// whole subnet into the device.
    pub fn add_address(&self, addr: Ipv4Addr, subnet: Ipv4Subnet) -> Result<(), TunError> {
        let addr = format!("{addr}/{}", subnet.prefix);
        run("ip", &["addr", "add", &addr, "dev", &self.name])?;
        Ok(())
    }

    /// Routes `destination` into the device (for a host that reaches the
    /// network's remote members through it, e.g. `10.210.3.7/32`).
    pub fn add_route(&self, destination: Ipv4Subnet) -> Result<(), TunError> {
        let to = destination.to_string();
        run("ip", &["route", "replace", &to, "dev", &self.name])?;
        Ok(())
    }

    /// Removes a route [`Tun::add_route`] made.
    pub fn remove_route(&self, destination: Ipv4Subnet) -> Result<(), TunError> {
        let to = destination.to_string();
        run("ip", &["route", "del", &to, "dev", &self.name])?;
        Ok(())
    }

    /// Waits for the next packet the kernel routes into the device and
    /// reads it into `buf`; returns its length. A packet longer than `buf`
    /// is cut short, so `buf` should hold the MTU (with offloads: the
    /// header and [`crate::offload::MAX_PACKET`]).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut ready = self.fd.readable().await?;
            let read = ready.try_io(|fd| {
                // SAFETY: reads at most `buf.len()` bytes into `buf`.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match read {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Reads the next packet into `buf` if one is queued now, without
    /// waiting: [`io::ErrorKind::WouldBlock`] when none is. For draining a
    /// burst after [`Tun::recv`].
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: reads at most `buf.len()` bytes into `buf`.
        let n = unsafe {
            libc::read(
                self.fd.get_ref().as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Hands one IP packet to the kernel, as if it had arrived on the
    /// interface (with offloads, behind an empty header). Never waits: a
    /// packet the kernel cannot take is an error.
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        if self.offload {
            const PLAIN: [u8; crate::offload::VNET_HDR_LEN] = [0; crate::offload::VNET_HDR_LEN];
            self.send_parts(&[&PLAIN, packet])
        } else {
            self.send_parts(&[packet])
        }
    }

    /// Hands the kernel one packet made of `parts` (with offloads, the
    /// first is its `virtio_net_hdr`), in one write.
    pub fn send_parts(&self, parts: &[&[u8]]) -> io::Result<()> {
        let mut iovecs = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_PARTS];
        if parts.len() > MAX_PARTS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} parts in one packet; at most {MAX_PARTS}", parts.len()),
            ));
        }
        for (slot, part) in iovecs.iter_mut().zip(parts) {
            slot.iov_base = part.as_ptr() as *mut libc::c_void;
            slot.iov_len = part.len();
        }
        let want: usize = parts.iter().map(|p| p.len()).sum();
        // SAFETY: each iovec points into a slice that outlives the call,
        // and the kernel only reads from them.
        let n = unsafe {
            libc::writev(
                self.fd.get_ref().as_raw_fd(),
                iovecs.as_ptr(),
                parts.len() as libc::c_int,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != want {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("the kernel took {n} of {want} bytes"),
            ));
        }
        Ok(())
    }
}
