//! The one filesystem query coop needs in several rooms: how big a
//! filesystem is and how much of it is used. The store sizes its disks with
//! it, the container runtime measures a container's disk, the node reports
//! what a peer lends.

use std::path::Path;

/// Sizes of the filesystem holding a path, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsUsage {
    /// Size of the filesystem.
    pub total: u64,
    /// Bytes not allocated to any file (root's reserve included).
    pub free: u64,
    /// Bytes an unprivileged writer may still allocate.
    pub available: u64,
}

impl FsUsage {
    /// Bytes allocated to files and metadata.
    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.free)
    }
}

/// Sizes of the filesystem holding `path`, or `None` when `path` cannot be
/// queried (missing, not reachable, or a name with a NUL byte).
pub fn usage(path: &Path) -> Option<FsUsage> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain old data, so all-zero is a valid value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is NUL-terminated and stat a valid out-pointer for the
    // duration of the call.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let block = stat.f_frsize as u64;
    Some(FsUsage {
        total: (stat.f_blocks as u64).saturating_mul(block),
        free: (stat.f_bfree as u64).saturating_mul(block),
        available: (stat.f_bavail as u64).saturating_mul(block),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_directory_has_sizes_that_add_up() {
        let sizes = usage(Path::new("/")).expect("/ is a filesystem");
        assert!(sizes.total > 0);
        assert!(sizes.available <= sizes.free && sizes.free <= sizes.total);
        assert_eq!(sizes.used(), sizes.total - sizes.free);
    }

    #[test]
    fn a_missing_path_or_a_nul_byte_is_none() {
        assert_eq!(usage(Path::new("/no/such/coop/path")), None);
        assert_eq!(usage(Path::new("bad\0name")), None);
    }
}
