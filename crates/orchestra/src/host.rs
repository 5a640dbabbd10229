//! [`ComputeHost`]: this peer's container runtime, template blobs and
//! unpacked rootfs cache, and the blocking steps the service and the
//! reconcile loop share.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use coop_compute::runtime::{
    Container, ContainerSpec, ExitStatus, NetworkAttach, PortMapping, Runtime, RuntimeConfig,
    RuntimeError,
};
use coop_compute::{
    ArchiveError, ContentId, SignedTemplate, TemplateRecord, blob_path, import_oci, import_rootfs,
    rootfs_path, unpack_blob,
};
use coop_identity::PeerKey;
use coop_state::{ContainerEntry, RestartPolicy, StateStore, TemplateEntry};
use coop_store::Stripes;
use coop_types::{PeerId, Resources};

use crate::blobs::{Fetched, fetch_blob};
use crate::error::{ComputeError, runtime_error};

/// The file in a replica's container state directory that holds the lease
/// epoch it was made for.
const LEASE_STAMP: &str = "lease.epoch";

/// The compute side of one peer: where templates are kept and the runtime
/// that runs containers. Blocking methods must run in `spawn_blocking`.
#[derive(Debug)]
pub struct ComputeHost {
    key: PeerKey,
    blobs: PathBuf,
    cache: PathBuf,
    uploads: PathBuf,
    runtime: Result<Runtime, String>,
    /// The cloud's store, where template blobs live.
    stripes: Stripes,
    /// Held per blob while it is fetched, so two starts never fetch the
    /// same blob twice, and a slow fetch holds up no other template.
    fetching: crate::service::KeyedLocks,
    /// What this peer lends to containers.
    capacity: Resources,
}

impl ComputeHost {
    /// Compute under `data_dir/templates` (blobs, unpacked rootfs, uploads
    /// in progress) and `data_dir/containers` (the runtime's state root).
    /// A runtime that cannot work here (not root, no cgroups) is kept as
    /// its reason: templates still work, container calls answer 503.
    pub fn new(
        data_dir: &Path,
        key: PeerKey,
        config: RuntimeConfig,
        stripes: Stripes,
        capacity: Resources,
    ) -> ComputeHost {
        let templates = data_dir.join("templates");
        let runtime = Runtime::new(data_dir.join("containers"), config).map_err(|e| e.to_string());
        ComputeHost {
            key,
            blobs: templates.join("blobs"),
            cache: templates.join("rootfs"),
            uploads: templates.join("uploads"),
            runtime,
            stripes,
            fetching: crate::service::KeyedLocks::default(),
            capacity,
        }
    }

    /// The runtime, or why containers cannot run on this peer.
    pub fn runtime(&self) -> Result<&Runtime, ComputeError> {
        self.runtime.as_ref().map_err(|reason| {
            ComputeError::Unavailable(format!("containers cannot run on this peer: {reason}"))
        })
    }

    /// Why the runtime could not start, if it could not.
    pub fn unavailable_reason(&self) -> Option<&str> {
        self.runtime.as_ref().err().map(String::as_str)
    }

    /// Where uploads are spooled before import.
    pub fn uploads_dir(&self) -> &Path {
        &self.uploads
    }

    /// This peer.
    pub fn peer(&self) -> PeerId {
        self.key.id()
    }

    /// Imports the rootfs (or OCI archive) at `source` into the blob store
    /// and signs its record. Blocking.
    pub fn import(
        &self,
        name: &str,
        version: &str,
        source: &Path,
        oci: bool,
        now: u64,
    ) -> Result<TemplateEntry, ComputeError> {
        coop_compute::validate_name(name).map_err(bad)?;
        coop_compute::validate_version(version).map_err(bad)?;
        let shown = source.display().to_string();
        let scrub = |message: String| message.replace(&shown, "the uploaded archive");
        let imported = if oci {
            import_oci(source, &self.blobs).map_err(|e| ComputeError::Invalid(scrub(e.to_string())))
        } else {
            import_rootfs(source, &self.blobs).map_err(|e| match e {
                ArchiveError::Io { .. } => ComputeError::Internal(scrub(e.to_string())),
                other => ComputeError::Invalid(scrub(other.to_string())),
            })
        }?;
        let record =
            TemplateRecord::new(name, Some(version), &imported, self.key.id(), now).map_err(bad)?;
        let signed = record
            .sign(&self.key)
            .map_err(|e| ComputeError::Internal(format!("cannot sign template {name}: {e}")))?;
        Ok(TemplateEntry {
            name: name.to_string(),
            version: version.to_string(),
            content_id: imported.content_id.to_string(),
            size_bytes: imported.size_bytes,
            imported_by: self.key.id(),
            imported_at: now,
            signed: signed.to_bytes().map_err(|e| {
                ComputeError::Internal(format!("cannot encode template {name}: {e}"))
            })?,
            blocks: Vec::new(),
        })
    }

    /// Host id of containers' root (0 without user namespaces).
    fn id_shift(&self) -> u32 {
        self.runtime.as_ref().map_or(0, Runtime::id_shift)
    }

    /// What this peer lends to containers.
    pub fn capacity(&self) -> Resources {
        self.capacity
    }

    /// The cloud's store.
    pub fn stripes(&self) -> &Stripes {
        &self.stripes
    }

    /// Where this peer keeps template blobs.
    pub fn blobs_dir(&self) -> &Path {
        &self.blobs
    }

    /// Makes sure the blob of `entry`'s template is on this peer, reading
    /// it from the cloud's store on first use. Returns what was fetched,
    /// if anything was.
    pub async fn ensure_template(
        &self,
        state: &StateStore,
        entry: &ContainerEntry,
    ) -> Result<Option<Fetched>, ComputeError> {
        let id = ContentId::from_str(&entry.content_id).map_err(bad)?;
        let blob = blob_path(&self.blobs, &id);
        if blob.exists() {
            return Ok(None);
        }
        let _one_at_a_time = self.fetching.lock(&entry.content_id).await;
        if blob.exists() {
            return Ok(None);
        }
        let template = state
            .template(&entry.template, &entry.version)?
            .ok_or_else(|| {
                ComputeError::NotFound(format!(
                    "container `{}` needs template {}:{}, which the cloud no longer has",
                    entry.name, entry.template, entry.version
                ))
            })?;
        if template.content_id != entry.content_id {
            return Err(ComputeError::Conflict(format!(
                "template {}:{} was replaced since container `{}` was created from it",
                entry.template, entry.version, entry.name
            )));
        }
        fetch_blob(&self.stripes, state, &template, &self.blobs)
            .await
            .map(Some)
    }

    /// Drops the blob and cached rootfs of `content_id` unless another
    /// template in `remaining` still names it. Blocking.
    pub fn forget_blob(&self, content_id: &str, remaining: &[TemplateEntry]) {
        if remaining.iter().any(|t| t.content_id == content_id) {
            return;
        }
        let Ok(id) = ContentId::from_str(content_id) else {
            return;
        };
        let _ = std::fs::remove_file(blob_path(&self.blobs, &id));
        for shift in [0, self.id_shift()] {
            if let Some(dir) = rootfs_path(&self.cache, &id, shift).parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    /// The unpacked rootfs of a container's template, unpacked on first
    /// use. Blocking.
    pub fn rootfs(&self, entry: &ContainerEntry) -> Result<PathBuf, ComputeError> {
        let id = ContentId::from_str(&entry.content_id).map_err(bad)?;
        let blob = blob_path(&self.blobs, &id);
        if !blob.exists() {
            return Err(ComputeError::Unavailable(format!(
                "template {}:{} (blob {}) is not on this peer yet; it is fetched from the cloud's store before a start",
                entry.template,
                entry.version,
                id.short()
            )));
        }
        let unpacked = unpack_blob(&blob, &id, &self.cache, self.id_shift()).map_err(|e| {
            ComputeError::Internal(format!(
                "cannot unpack template {}:{}: {e}",
                entry.template, entry.version
            ))
        })?;
        Ok(unpacked.rootfs)
    }

    /// The runtime spec of a container entry over `rootfs`.
    pub fn spec(
        &self,
        entry: &ContainerEntry,
        rootfs: PathBuf,
        networks: &[NetworkAttach],
    ) -> Result<ContainerSpec, ComputeError> {
        let ports = entry
            .ports
            .iter()
            .map(|p| PortMapping::from_str(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        let spec = ContainerSpec {
            id: entry.name.clone(),
            rootfs_lower: rootfs,
            resources: entry.limits,
            env: entry.env.clone(),
            argv: entry.argv.clone(),
            workdir: entry.workdir.clone(),
            user: entry.user.clone(),
            ports,
            hostname: None,
            networks: networks.to_vec(),
        };
        spec.validate().map_err(bad)?;
        Ok(spec)
    }

    /// Creates the container in the runtime if it is not there yet and
    /// starts it. Blocking.
    pub fn launch(
        &self,
        entry: &ContainerEntry,
        networks: &[NetworkAttach],
    ) -> Result<Container, ComputeError> {
        let runtime = self.runtime()?;
        let mut exists = match runtime.get(&entry.name) {
            Ok(_) => true,
            Err(RuntimeError::NotFound(_)) => false,
            Err(e) => return Err(runtime_error(e)),
        };
        if exists && self.stale_lease(entry) {
            // A copy from an older lease: the replica moved away and back
            // while this peer was gone. It goes before anything starts.
            runtime.delete(&entry.name, true).map_err(runtime_error)?;
            tracing::info!(container = %entry.name, "removed a copy from an older lease");
            exists = false;
        }
        if !exists {
            let rootfs = self.rootfs(entry)?;
            runtime
                .create(self.spec(entry, rootfs, networks)?)
                .map_err(runtime_error)?;
            if let Some(owner) = &entry.owner {
                let stamp = runtime.container_path(&entry.name).join(LEASE_STAMP);
                std::fs::write(&stamp, owner.epoch.to_string()).map_err(|e| {
                    ComputeError::Internal(format!("cannot write {}: {e}", stamp.display()))
                })?;
            }
        }
        runtime.start(&entry.name).map_err(runtime_error)
    }

    /// Whether this peer's container for replica `entry` was made for an
    /// older lease epoch than the entry's (no stamp counts as epoch 0).
    pub fn stale_lease(&self, entry: &ContainerEntry) -> bool {
        let (Some(owner), Ok(runtime)) = (&entry.owner, self.runtime()) else {
            return false;
        };
        let stamp = runtime.container_path(&entry.name).join(LEASE_STAMP);
        if !stamp.parent().is_some_and(Path::exists) {
            return false;
        }
        let epoch: u64 = std::fs::read_to_string(&stamp)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        epoch < owner.epoch
    }

    /// The container as the runtime sees it; `None` if the runtime has no
    /// such container (or cannot run here). Blocking.
    pub fn observe(&self, name: &str) -> Option<Container> {
        self.runtime.as_ref().ok()?.get(name).ok()
    }
}

/// Whether a container that exited should be started again.
pub fn should_restart(policy: RestartPolicy, status: ExitStatus, unwatched_restart: bool) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => status != ExitStatus::Code(0),
        // It died while the agent was away (shim gone, machine rebooted):
        // it should still be running, so it runs again.
        RestartPolicy::No => unwatched_restart && status == ExitStatus::Unknown,
    }
}

/// Verifies a template entry's signed record against its importer and content id.
pub fn verify_template(entry: &TemplateEntry) -> Result<TemplateRecord, String> {
    let id = ContentId::from_str(&entry.content_id).map_err(|e| e.to_string())?;
    SignedTemplate::from_bytes(&entry.signed)
        .and_then(|signed| signed.verify(&entry.imported_by, &id))
        .map_err(|e| e.to_string())
}

fn bad(err: impl std::fmt::Display) -> ComputeError {
    ComputeError::Invalid(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_decide_as_documented() {
        use ExitStatus::{Code, Signal, Unknown};
        assert!(should_restart(RestartPolicy::Always, Code(0), false));
        assert!(should_restart(RestartPolicy::OnFailure, Code(1), false));
        assert!(should_restart(RestartPolicy::OnFailure, Signal(9), false));
        assert!(should_restart(RestartPolicy::OnFailure, Unknown, false));
        assert!(!should_restart(RestartPolicy::OnFailure, Code(0), false));
        assert!(!should_restart(RestartPolicy::No, Code(1), false));
        assert!(!should_restart(RestartPolicy::No, Unknown, false));
        assert!(should_restart(RestartPolicy::No, Unknown, true));
    }
}
