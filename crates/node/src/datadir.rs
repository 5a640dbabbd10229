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

use serde::{Deserialize, Serialize};

use coop_identity::{Certificate, CloudId, write_secret_file};

use crate::error::NodeError;

type Result<T> = std::result::Result<T, NodeError>;

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
        fs::create_dir_all(&self.root).map_err(NodeError::data_dir(format!(
            "cannot create data dir {}",
            self.root.display()
        )))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700)).map_err(
                NodeError::data_dir(format!("cannot restrict {}", self.root.display())),
            )?;
        }
        Ok(())
    }

    pub fn membership(&self) -> Result<Option<Membership>> {
        let path = self.membership_file();
        if !path.exists() {
            return Ok(None);
        }
        let text = fs::read_to_string(&path).map_err(NodeError::data_dir(format!(
            "cannot read {}",
            path.display()
        )))?;
        let m = serde_json::from_str(&text)
            .map_err(|e| NodeError::DataDir(format!("{} is corrupt: {e}", path.display())))?;
        Ok(Some(m))
    }

    pub fn write_membership(&self, m: &Membership) -> Result<()> {
        write_json(&self.membership_file(), m)
    }

    pub fn write_api_info(&self, info: &ApiInfo) -> Result<()> {
        write_json(&self.api_info_file(), info)
    }

    pub fn api_info(&self) -> Result<ApiInfo> {
        let path = self.api_info_file();
        let text = fs::read_to_string(&path).map_err(|_| {
            NodeError::DataDir(format!(
                "no running peer found in {} (missing api.json); start one with `coop up` or pass --api",
                self.root.display()
            ))
        })?;
        serde_json::from_str(&text)
            .map_err(|e| NodeError::DataDir(format!("{} is corrupt: {e}", path.display())))
    }

    pub fn read_token(&self) -> Result<String> {
        let path = self.api_token();
        let text = fs::read_to_string(&path).map_err(|e| {
            NodeError::DataDir(format!(
                "cannot read the admin token {}: {e}; pass --token or run as the user that runs `coop up`",
                path.display()
            ))
        })?;
        Ok(text.trim().to_string())
    }
}

/// Writes `value` as pretty JSON to a 0600 file.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| NodeError::DataDir(format!("cannot encode {}: {e}", path.display())))?;
    write_secret_file(path, text.as_bytes())
        .map_err(|e| NodeError::DataDir(format!("cannot write {}: {e}", path.display())))
}
