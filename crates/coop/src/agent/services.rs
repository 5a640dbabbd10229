//! The agent's protocol handlers: joins and agent-to-agent requests.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tracing::{info, warn};

use coop_identity::{Certificate, CertificateBody, CloudKey, InviteToken};
use coop_mesh::{RPC_ALPN, RequestHandler};
use coop_state::{Command, PeerNode, PeerRecord, WriteError};
use coop_types::{PeerId, Role, unix_now};

use super::Core;
use super::protocol::{AgentReply, AgentRequest, JoinReply, JoinRequest};

/// Peer certificates last ten years; revocation, not expiry, is how a
/// cloud cuts a peer off, and renewal is not built yet.
const CERT_LIFETIME_SECS: u64 = 10 * 365 * 24 * 3600;

/// A forwarded join waits for the leader's write (up to 10 s) and a bit.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(12);

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
        let cert = Certificate::issue(
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
        );
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
        let body = match postcard::to_stdvec(&AgentRequest::Join { peer, request: req }) {
            Ok(b) => b,
            Err(err) => return JoinReply::Unavailable(err.to_string()),
        };
        match self
            .mesh
            .request(leader, RPC_ALPN, &body, FORWARD_TIMEOUT)
            .await
            .map(|bytes| postcard::from_bytes::<AgentReply>(&bytes))
        {
            Ok(Ok(AgentReply::Join(reply))) => reply,
            Ok(Ok(other)) => JoinReply::Unavailable(format!("unexpected reply {other:?}")),
            Ok(Err(err)) => JoinReply::Unavailable(format!("malformed reply: {err}")),
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
                    Err(err) => AgentReply::Error(format!("cannot store the cloud key: {err:#}")),
                }
            }
        }
    }

    /// Hands the cloud key to `peer` before it becomes a steward.
    pub(crate) async fn send_cloud_key(&self, peer: PeerId) -> Result<(), String> {
        let key = self
            .cloud_key()
            .ok_or_else(|| "this peer has no cloud key to hand over".to_string())?;
        let body = postcard::to_stdvec(&AgentRequest::StewardKey {
            secret: key.secret_bytes(),
        })
        .map_err(|e| e.to_string())?;
        let reply = self
            .mesh
            .request(peer, RPC_ALPN, &body, Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string())?;
        match postcard::from_bytes::<AgentReply>(&reply) {
            Ok(AgentReply::KeyStored) => Ok(()),
            Ok(other) => Err(format!("unexpected reply {other:?}")),
            Err(err) => Err(format!("malformed reply: {err}")),
        }
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).unwrap_or_default()
}

/// `coop/join/1`.
pub(crate) struct JoinService(pub Arc<Core>);

impl RequestHandler for JoinService {
    fn handle(&self, from: PeerId, request: Vec<u8>) -> BoxFuture<'static, Vec<u8>> {
        let core = self.0.clone();
        Box::pin(async move {
            let reply = match postcard::from_bytes::<JoinRequest>(&request) {
                Ok(req) => core.handle_join(from, req).await,
                Err(err) => JoinReply::Refused(format!("malformed join request: {err}")),
            };
            encode(&reply)
        })
    }
}

/// `coop/rpc/1`.
pub(crate) struct RpcService(pub Arc<Core>);

impl RequestHandler for RpcService {
    fn handle(&self, from: PeerId, request: Vec<u8>) -> BoxFuture<'static, Vec<u8>> {
        let core = self.0.clone();
        Box::pin(async move {
            let reply = match postcard::from_bytes::<AgentRequest>(&request) {
                Ok(req) => core.handle_rpc(from, req).await,
                Err(err) => AgentReply::Error(format!("malformed request: {err}")),
            };
            encode(&reply)
        })
    }
}
