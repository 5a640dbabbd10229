//! The agent's protocol handlers: joins and agent-to-agent requests.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tracing::{info, warn};

use coop_identity::{Certificate, CertificateBody, CloudKey, InviteToken};
use coop_mesh::Service;
use coop_state::{Command, PeerNode, PeerRecord, WriteError};
use coop_types::{PeerId, Role, unix_now};

use crate::node::Core;
use crate::protocol::{AgentReply, AgentRequest, AgentRpc, JoinProtocol, JoinReply, JoinRequest};

/// Peer certificates last ten years; revocation, not expiry, is how a
/// cloud cuts a peer off, and renewal is not built yet.
const CERT_LIFETIME_SECS: u64 = 10 * 365 * 24 * 3600;

impl Core {
    /// Decides a join, signing the certificate here if this peer holds the
    /// cloud key, or forwarding it to the leader otherwise.
    pub(crate) async fn handle_join(&self, peer: PeerId, req: JoinRequest) -> JoinReply {
        if req.cloud != self.cloud {
            return JoinReply::Refused(format!(
                "this invite is for cloud {}, but peer {} belongs to cloud {}",
                req.cloud.short(),
                self.key.id().short(),
                self.cloud.short()
            ));
        }
        match self.cloud_key() {
            Some(cloud_key) => self.admit(&cloud_key, peer, req).await,
            None => self.forward_join(peer, req).await,
        }
    }

    async fn admit(&self, cloud_key: &CloudKey, peer: PeerId, req: JoinRequest) -> JoinReply {
        let now = unix_now();
        let roles = if req.relay { vec![Role::Relay] } else { vec![] };
        let cert = match Certificate::issue(
            cloud_key,
            CertificateBody {
                cloud: self.cloud,
                peer,
                name: req.name.clone(),
                zone: req.zone.clone(),
                roles,
                issued_at: now,
                expires_at: now + CERT_LIFETIME_SECS,
            },
        ) {
            Ok(cert) => cert,
            Err(err) => return JoinReply::Unavailable(err.to_string()),
        };
        let record = PeerRecord {
            cert: cert.clone(),
            joined_at: now,
            addrs: req.addrs.clone(),
            revoked_at: None,
        };
        let command = Command::RedeemInvite {
            invite_id: req.invite_id,
            secret_hash: InviteToken::secret_hash(&req.secret),
            peer: record,
            now,
        };
        match self.control.write(command).await {
            Err(WriteError::Rejected(err)) => {
                warn!(peer = %peer, %err, "join refused");
                return JoinReply::Refused(err.to_string());
            }
            Err(err) => return JoinReply::Unavailable(err.to_string()),
            Ok(()) => {}
        }
        info!(peer = %peer, name = %req.name, zone = %req.zone, "peer joined the cloud");
        self.mesh.add_peer_addrs(peer, &req.addrs);
        let _ = self.mesh.admission().admit(peer, &cert);
        if self.control.is_leader() {
            let node = PeerNode {
                name: req.name,
                addrs: req.addrs,
            };
            if let Err(err) = self.control.raft().add_learner(peer, node, false).await {
                warn!(peer = %peer.short(), %err, "could not add the new peer as a learner yet");
            }
        }
        let peers = self
            .control
            .store()
            .peers()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.revoked_at.is_none())
            .map(|r| {
                let addrs = self
                    .mesh
                    .liveness()
                    .status(&r.id())
                    .map(|(s, _)| s.addrs)
                    .unwrap_or(r.addrs.clone());
                (r.id(), addrs)
            })
            .collect();
        JoinReply::Accepted {
            cert: Box::new(cert),
            cloud: self.control.store().cloud().ok().flatten(),
            peers,
        }
    }

    async fn forward_join(&self, peer: PeerId, req: JoinRequest) -> JoinReply {
        let Some(leader) = self.control.wait_for_leader(Duration::from_secs(5)).await else {
            return JoinReply::Unavailable("no control-plane leader right now".into());
        };
        if leader == self.key.id() {
            return JoinReply::Unavailable(
                "this peer leads the control plane but has no cloud key".into(),
            );
        }
        let forwarded = AgentRequest::Join { peer, request: req };
        match self.mesh.call::<AgentRpc>(leader, &forwarded).await {
            Ok(AgentReply::Join(reply)) => reply,
            Ok(other) => JoinReply::Unavailable(format!("unexpected reply {other:?}")),
            Err(err) => JoinReply::Unavailable(format!("cannot reach the leader: {err}")),
        }
    }

    async fn handle_rpc(&self, from: PeerId, req: AgentRequest) -> AgentReply {
        match req {
            AgentRequest::Join { peer, request } => {
                AgentReply::Join(self.handle_join(peer, request).await)
            }
            AgentRequest::StewardKey { secret } => {
                let key = CloudKey::from_secret_bytes(secret);
                if key.id() != self.cloud {
                    warn!(from = %from, "refused a cloud key that is not this cloud's");
                    return AgentReply::Error("that key is not this cloud's root key".into());
                }
                match self.store_cloud_key(key) {
                    Ok(()) => AgentReply::KeyStored,
                    Err(err) => AgentReply::Error(format!("cannot store the cloud key: {err}")),
                }
            }
            AgentRequest::Ping => AgentReply::Pong,
            AgentRequest::SealSecret { label, secret } => match self.seal_key() {
                Some(key) => AgentReply::Secret(key.seal(&label, &secret)),
                None => AgentReply::Error("this peer holds no cloud key".into()),
            },
            AgentRequest::OpenSecret { label, sealed } => match self.seal_key() {
                Some(key) => match key.open(&label, &sealed) {
                    Ok(secret) => {
                        info!(from = %from, label, "opened a backup secret for a member");
                        AgentReply::Secret(secret)
                    }
                    Err(err) => AgentReply::Error(err.to_string()),
                },
                None => AgentReply::Error("this peer holds no cloud key".into()),
            },
        }
    }

    /// The key that seals backup secrets, on a peer with the cloud key.
    pub(crate) fn seal_key(&self) -> Option<coop_backup::SealKey> {
        self.cloud_key()
            .map(|key| coop_backup::SealKey::from_cloud_secret(&key.secret_bytes()))
    }

    /// Seals (`open` false) or opens a backup secret: here with the cloud
    /// key, else through the leader, which holds it.
    pub(crate) async fn secret(
        &self,
        open: bool,
        label: String,
        bytes: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        if let Some(key) = self.seal_key() {
            return if open {
                key.open(&label, &bytes).map_err(|e| e.to_string())
            } else {
                Ok(key.seal(&label, &bytes))
            };
        }
        let Some(leader) = self.control.wait_for_leader(Duration::from_secs(5)).await else {
            return Err("no control-plane leader to open the backup's secrets; try again".into());
        };
        let request = if open {
            AgentRequest::OpenSecret {
                label,
                sealed: bytes,
            }
        } else {
            AgentRequest::SealSecret {
                label,
                secret: bytes,
            }
        };
        match self.mesh.call::<AgentRpc>(leader, &request).await {
            Ok(AgentReply::Secret(secret)) => Ok(secret),
            Ok(AgentReply::Error(err)) => Err(format!("the leader refused: {err}")),
            Ok(other) => Err(format!("unexpected reply {other:?}")),
            Err(err) => Err(format!("cannot reach the leader: {err}")),
        }
    }

    /// Hands the cloud key to `peer` before it becomes a steward.
    pub(crate) async fn send_cloud_key(&self, peer: PeerId) -> Result<(), String> {
        let key = self
            .cloud_key()
            .ok_or_else(|| "this peer has no cloud key to hand over".to_string())?;
        let request = AgentRequest::StewardKey {
            secret: key.secret_bytes(),
        };
        match self.mesh.call::<AgentRpc>(peer, &request).await {
            Ok(AgentReply::KeyStored) => Ok(()),
            Ok(other) => Err(format!("unexpected reply {other:?}")),
            Err(err) => Err(err.to_string()),
        }
    }
}

/// Backup secrets sealed with the cloud key (see [`Core::secret`]).
pub(crate) struct CloudSealer(pub Arc<Core>);

impl coop_backup::Sealer for CloudSealer {
    fn seal(&self, label: String, secret: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let core = self.0.clone();
        Box::pin(async move { core.secret(false, label, secret).await })
    }

    fn open(&self, label: String, sealed: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let core = self.0.clone();
        Box::pin(async move { core.secret(true, label, sealed).await })
    }
}

/// `coop/join/1`.
pub(crate) struct JoinService(pub Arc<Core>);

impl Service<JoinProtocol> for JoinService {
    fn answer(&self, from: PeerId, request: JoinRequest) -> BoxFuture<'static, JoinReply> {
        let core = self.0.clone();
        Box::pin(async move { core.handle_join(from, request).await })
    }
}

/// `coop/rpc/1`.
pub(crate) struct RpcService(pub Arc<Core>);

impl Service<AgentRpc> for RpcService {
    fn answer(&self, from: PeerId, request: AgentRequest) -> BoxFuture<'static, AgentReply> {
        let core = self.0.clone();
        Box::pin(async move { core.handle_rpc(from, request).await })
    }
}
