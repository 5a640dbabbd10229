//! Importing a template into the cloud: the blob made from an upload,
//! stored in the cloud's store (or shared with a version of the same
//! content), and the signed record written to the control plane.

use std::path::Path;
use std::str::FromStr;

use coop_state::{Command, TemplateEntry};
use coop_store::WrittenBlocks;
use coop_types::unix_now;

use crate::blobs::store_blob;
use crate::error::ComputeError;
use crate::service::Orchestra;

impl Orchestra {
    /// Imports the rootfs archive (or, with `oci`, the OCI archive) at
    /// `source` as template `name:version`: the blob is made and signed
    /// here, stored in the cloud's store unless another version has the
    /// same content, and recorded. Returns the recorded entry.
    pub async fn import_template(
        &self,
        name: &str,
        version: &str,
        source: &Path,
        oci: bool,
    ) -> Result<TemplateEntry, ComputeError> {
        let importer = self.host().clone();
        let (name, version, source) = (name.to_string(), version.to_string(), source.to_path_buf());
        let mut entry = tokio::task::spawn_blocking(move || {
            importer.import(&name, &version, &source, oci, unix_now())
        })
        .await
        .map_err(|e| ComputeError::Internal(format!("the import task failed: {e}")))??;
        let id = coop_compute::ContentId::from_str(&entry.content_id)
            .map_err(|e| ComputeError::Internal(e.to_string()))?;
        // Another version with the same content shares its blocks.
        let twin = self
            .control()
            .store()
            .templates()?
            .into_iter()
            .find(|t| t.content_id == entry.content_id && !t.blocks.is_empty());
        let stored = match twin {
            Some(twin) => WrittenBlocks {
                blocks: twin.blocks,
                stripes: Vec::new(),
            },
            None => {
                let host = self.host();
                store_blob(
                    host.stripes(),
                    &coop_compute::blob_path(host.blobs_dir(), &id),
                )
                .await?
            }
        };
        entry.blocks = stored.blocks;
        self.control()
            .write(Command::PutTemplate {
                entry: entry.clone(),
                stripes: stored.stripes,
            })
            .await?;
        Ok(entry)
    }

    /// Removes template `name` at `version` (or its only version), which
    /// the control plane refuses while a container uses it, and drops its
    /// blob here unless another version shares it. Returns the entry.
    pub async fn remove_template(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<TemplateEntry, ComputeError> {
        let versions: Vec<TemplateEntry> = self
            .control()
            .store()
            .templates()?
            .into_iter()
            .filter(|t| t.name == name)
            .collect();
        let version = match version {
            Some(v) => v.to_string(),
            None if versions.len() == 1 => versions[0].version.clone(),
            None if versions.is_empty() => {
                return Err(ComputeError::NotFound(format!(
                    "no template {name}; list templates with `coop template ls`"
                )));
            }
            None => {
                return Err(ComputeError::Invalid(format!(
                    "template {name} has {} versions; name one with --version",
                    versions.len()
                )));
            }
        };
        let Some(entry) = versions.into_iter().find(|t| t.version == version) else {
            return Err(ComputeError::NotFound(format!(
                "no template {name}:{version}; list templates with `coop template ls`"
            )));
        };
        self.control()
            .write(Command::DeleteTemplate {
                name: name.to_string(),
                version,
                now: unix_now(),
            })
            .await?;
        let remaining = self.control().store().templates()?;
        let content_id = entry.content_id.clone();
        self.blocking(move |host| {
            host.forget_blob(&content_id, &remaining);
            Ok(())
        })
        .await?;
        Ok(entry)
    }
}
