//! The files of a peer's data directory, and where it is by default.
//!
//! ```text
//! peer.key        this peer's ed25519 key (0600)
//! cloud.key       the cloud root key, on stewards only (0600)
//! membership.json the cloud this data dir belongs to and our certificate
//! state.redb      the control-plane replica
//! api.json        where this peer's API listens (for the CLI)
//! api.token       this peer's admin API token (0600)
//! coop.toml       optional settings
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use coop_identity::{Certificate, CloudId, write_secret_file};

/// The default data dir: `$COOP_DATA_DIR` is handled by clap; this is the
/// fallback: `/var/lib/coop` for root, else `~/.local/share/coop`.
pub fn default_data_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return PathBuf::from("/var/lib/coop");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/coop"),
        None => PathBuf::from(".coop"),
    }
}

/// What makes a data dir a member of a cloud.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Membership {
    pub cloud: CloudId,
    pub certificate: Certificate,
}

/// Where a running agent's API is, for clients on the same machine.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiInfo {
    pub url: String,
    pub peer: String,
    pub pid: u32,
}

/// Paths inside one data dir.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: PathBuf) -> Self {
        DataDir { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn peer_key(&self) -> PathBuf {
        self.root.join("peer.key")
    }

    pub fn cloud_key(&self) -> PathBuf {
        self.root.join("cloud.key")
    }

    pub fn state_db(&self) -> PathBuf {
        self.root.join("state.redb")
    }

    pub fn api_token(&self) -> PathBuf {
        self.root.join("api.token")
    }

    pub fn config_file(&self) -> PathBuf {
        self.root.join("coop.toml")
    }

    fn membership_file(&self) -> PathBuf {
        self.root.join("membership.json")
    }

    fn api_info_file(&self) -> PathBuf {
        self.root.join("api.json")
    }

    /// Creates the directory (mode 0700) if needed.
    pub fn create(&self) -> Result<()> {
        fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create data dir {}", self.root.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot restrict {}", self.root.display()))?;
        }
        Ok(())
    }

    pub fn membership(&self) -> Result<Option<Membership>> {
        let path = self.membership_file();
        if !path.exists() {
            return Ok(None);
        }
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let m = serde_json::from_str(&text)
            .with_context(|| format!("{} is corrupt", path.display()))?;
        Ok(Some(m))
    }

    pub fn write_membership(&self, m: &Membership) -> Result<()> {
        let text = serde_json::to_string_pretty(m)?;
        write_secret_file(&self.membership_file(), text.as_bytes())?;
        Ok(())
    }

    pub fn write_api_info(&self, info: &ApiInfo) -> Result<()> {
        let text = serde_json::to_string_pretty(info)?;
        write_secret_file(&self.api_info_file(), text.as_bytes())?;
        Ok(())
    }

    pub fn api_info(&self) -> Result<ApiInfo> {
        let path = self.api_info_file();
        let text = fs::read_to_string(&path).with_context(|| {
            format!(
                "no running peer found in {} (missing api.json); start one with `coop up` or pass --api",
                self.root.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is corrupt", path.display()))
    }

    pub fn read_token(&self) -> Result<String> {
        let path = self.api_token();
        let text = fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read the admin token {}; pass --token or run as the user that runs `coop up`",
                path.display()
            )
        })?;
        Ok(text.trim().to_string())
    }
}
