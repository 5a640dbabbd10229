//! `coop/backup/1`: a backup of a path runs on the peer that holds the
//! path, and a restore into a path on the peer that holds the directory.
//! The peer asked (by a person or by the scheduler) forwards the work here
//! and waits for its outcome. Members only, like every coop protocol.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use coop_mesh::{Protocol, Service};
use coop_types::PeerId;

use crate::service::{Backups, RestoreSummary, RunSummary};

/// The ALPN of [`BackupProtocol`].
pub const BACKUP_ALPN: &[u8] = b"coop/backup/1";

/// A backup or restore of a large directory takes as long as it takes.
const WORK_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// `coop/backup/1`.
pub struct BackupProtocol;

/// Work for the peer that holds a path.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RemoteRequest {
    /// Run backup `name` (of a path on the callee) now.
    Run { name: String },
    /// Restore a snapshot of backup `name` into directory `dir` of the
    /// callee.
    RestoreToPath {
        name: String,
        snapshot: Option<String>,
        dir: String,
    },
}

/// The outcome of a [`RemoteRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RemoteReply {
    Ran(RunSummary),
    Restored(RestoreSummary),
    Failed { message: String },
}

impl Protocol for BackupProtocol {
    const ALPN: &'static [u8] = BACKUP_ALPN;
    type Request = RemoteRequest;
    type Response = RemoteReply;
    fn timeout(_: &RemoteRequest) -> Duration {
        WORK_TIMEOUT
    }
}

/// Serves `coop/backup/1` from this peer's backups.
pub struct BackupService(pub Backups);

impl Service<BackupProtocol> for BackupService {
    fn answer(&self, from: PeerId, request: RemoteRequest) -> BoxFuture<'static, RemoteReply> {
        let backups = self.0.clone();
        Box::pin(async move {
            tracing::info!(from = %from.short(), ?request, "backup work asked by a peer");
            let outcome = match request {
                RemoteRequest::Run { name } => backups
                    .run(&name, Arc::default())
                    .await
                    .map(RemoteReply::Ran),
                RemoteRequest::RestoreToPath {
                    name,
                    snapshot,
                    dir,
                } => backups
                    .restore_here(&name, snapshot, &dir, Arc::default())
                    .await
                    .map(RemoteReply::Restored),
            };
            outcome.unwrap_or_else(|err| RemoteReply::Failed {
                message: err.to_string(),
            })
        })
    }
}
