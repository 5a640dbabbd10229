//! A container's writable disk: an ext4 image file of exactly the
//! container's disk size, loop-mounted, holding the overlay's upper and
//! work directories; the overlay's lower layer is the cached template
//! rootfs, read-only and shared, so a start copies nothing.
//!
//! The image is created sparse, so a container pays on the host only for
//! what it writes, and ext4 returns ENOSPC when the size is used up: the
//! quota is enforced by the filesystem itself, with no project quotas
//! needed from the host filesystem. A host without loop devices or
//! `mkfs.ext4` gets [`RuntimeError::DiskQuotaUnsupported`] instead of a
//! silently unlimited disk.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::runtime::error::{RuntimeError, io_err};
use crate::runtime::sys::{is_mounted, run, unmount};

/// The files and mount points of one container's storage.
#[derive(Clone, Debug)]
pub(crate) struct Storage {
    /// Sparse ext4 image file.
    pub image: PathBuf,
    /// Where the image is mounted.
    pub disk: PathBuf,
    /// The overlay mount: the container's root filesystem.
    pub rootfs: PathBuf,
}

impl Storage {
    pub(crate) fn in_dir(dir: &Path) -> Storage {
        Storage {
            image: dir.join("disk.img"),
            disk: dir.join("disk"),
            rootfs: dir.join("rootfs"),
        }
    }

    fn upper(&self) -> PathBuf {
        self.disk.join("upper")
    }

    fn work(&self) -> PathBuf {
        self.disk.join("work")
    }

    /// Creates the image (if missing) and mounts it and the overlay (where
    /// not mounted yet). Idempotent, so a restart after a reboot remounts.
    /// Creates and mounts what is missing. With `id_shift`, the writable
    /// layer's root belongs to the container's root (see [`super::userns`]).
    pub(crate) fn prepare(
        &self,
        lower: &Path,
        disk_bytes: u64,
        id_shift: u32,
    ) -> Result<(), RuntimeError> {
        if !self.image.exists() {
            check_support()?;
            let tmp = self.image.with_extension("img.new");
            let file = File::create(&tmp).map_err(io_err("create disk image", &tmp))?;
            file.set_len(disk_bytes)
                .map_err(io_err("size disk image", &tmp))?;
            drop(file);
            let tmp_text = tmp.to_string_lossy().into_owned();
            // -m 0: no blocks reserved for root, the whole size is the container's.
            run(
                "mkfs.ext4",
                &[
                    "-q",
                    "-F",
                    "-m",
                    "0",
                    "-L",
                    "coop",
                    "-E",
                    "nodiscard",
                    &tmp_text,
                ],
            )?;
            fs::rename(&tmp, &self.image).map_err(io_err("rename disk image", &self.image))?;
        }
        for dir in [&self.disk, &self.rootfs] {
            fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        }
        if !is_mounted(&self.disk) {
            // mount(8) sets up the loop device with autoclear, so unmounting frees it.
            run(
                "mount",
                &[
                    "-t",
                    "ext4",
                    "-o",
                    "loop,nosuid,nodev",
                    &self.image.to_string_lossy(),
                    &self.disk.to_string_lossy(),
                ],
            )
            .map_err(|e| {
                RuntimeError::DiskQuotaUnsupported(format!(
                    "loop-mounting {} failed: {e}",
                    self.image.display()
                ))
            })?;
        }
        for dir in [self.upper(), self.work()] {
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        if id_shift != 0 {
            // The merged root takes the upper root's owner and mode: the
            // lower root's, shifted like the rest of the template.
            let upper = self.upper();
            let lower_meta = fs::metadata(lower).map_err(io_err("read", lower))?;
            std::os::unix::fs::chown(&upper, Some(lower_meta.uid()), Some(lower_meta.gid()))
                .map_err(io_err("chown", &upper))?;
            fs::set_permissions(&upper, lower_meta.permissions())
                .map_err(io_err("chmod", &upper))?;
        }
        if !is_mounted(&self.rootfs) {
            let options = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                self.upper().display(),
                self.work().display()
            );
            run(
                "mount",
                &[
                    "-t",
                    "overlay",
                    "overlay",
                    "-o",
                    &options,
                    &self.rootfs.to_string_lossy(),
                ],
            )?;
        }
        Ok(())
    }

    /// Unmounts the overlay and the disk (freeing the loop device). Idempotent.
    pub(crate) fn unmount(&self) -> Result<(), RuntimeError> {
        unmount(&self.rootfs)?;
        unmount(&self.disk)
    }

    /// Bytes used on the container's disk, or 0 when it is not mounted.
    pub(crate) fn used_bytes(&self) -> u64 {
        if !is_mounted(&self.disk) {
            return 0;
        }
        coop_types::fs::usage(&self.disk).map_or(0, |sizes| sizes.used())
    }
}

/// Checks the host can build and loop-mount an ext4 image.
pub(crate) fn check_support() -> Result<(), RuntimeError> {
    if !Path::new("/dev/loop-control").exists() {
        return Err(RuntimeError::DiskQuotaUnsupported(
            "/dev/loop-control is missing (load the `loop` kernel module)".into(),
        ));
    }
    if !on_path("mkfs.ext4") {
        return Err(RuntimeError::DiskQuotaUnsupported(
            "mkfs.ext4 is not installed (install e2fsprogs)".into(),
        ));
    }
    Ok(())
}

/// Whether `program` is an executable file in a directory of `PATH`.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}
