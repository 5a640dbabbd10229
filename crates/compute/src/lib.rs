//! coop's compute room: templates, sizes and the container runtime of one peer.
//!
//! A template is a rootfs plus a [`TemplateManifest`], stored as one
//! canonical, content-addressed blob (a sorted, zstd-compressed tar whose
//! BLAKE3 is its [`ContentId`]) and described by a [`TemplateRecord`]
//! signed by the peer that imported it.
//!
//! - [`import_rootfs`] turns a directory or a tar / tar.gz / tar.zst into a blob;
//! - [`import_oci`] does the same for a `docker save` or OCI layout archive,
//!   flattening its layers;
//! - [`unpack_blob`] unpacks a verified blob into the local cache;
//! - [`Size`] and [`Overrides`] name what a container may use (as
//!   [`coop_types::Limits`]);
//! - [`runtime::Runtime`] runs containers from a cached rootfs with quotas,
//!   their own network and published ports, through [`shim`] (`coop shim`,
//!   libcontainer or runc); [`network`] holds the bridge, veth and nftables parts.
//!
//! Every archive is outside input: paths are checked entry by entry
//! ([`paths`]), so tar-slip tricks are refused with an error naming the
//! entry and leave nothing behind. Fetching blobs between peers, leases
//! and restart policies live elsewhere.

mod archive;
mod blob;
mod format;
mod manifest;
pub mod network;
mod oci;
pub mod paths;
pub mod runtime;
pub mod shim;
mod size;
mod spool;
mod template;
mod tree;
mod unpack;

#[cfg(test)]
mod testutil;

pub use archive::{ArchiveError, ImportedBlob, MANIFEST_NAME, import_rootfs};
pub use blob::{ContentId, ContentIdParseError, ZSTD_LEVEL, blob_path};
pub use format::{SourceFormat, detect};
pub use manifest::{
    MAX_MANIFEST_BYTES, ManifestError, TemplateManifest, host_arch, normalize_arch,
};
pub use oci::{OciError, import_oci};
pub use size::{Overrides, Size, SizeError, parse_bytes, parse_cpus, parse_disk, parse_memory};
pub use spool::TempPath;
pub use template::{
    DEFAULT_VERSION, SignedTemplate, TemplateError, TemplateRecord, validate_name, validate_version,
};
pub use tree::{MAX_ENTRIES, MAX_NAME_BYTES_TOTAL, TreeError};
pub use unpack::{UnpackError, Unpacked, rootfs_path, unpack_blob};
