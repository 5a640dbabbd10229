//! `coop/friend/1`: a friend cloud keeps this cloud's backups.
//!
//! The friend's side ([`FriendService`]) answers peers of the clouds it
//! keeps backups for, each call admitted by the caller's certificate: it
//! must be signed by a cloud whose invite was redeemed here, and then the
//! call reaches that cloud's bucket and nothing else. The ALPN is open at
//! the transport (like joining): a friend is not a member, so no other
//! protocol of this cloud admits it.
//!
//! The owner's side ([`FriendClient`]) stores a repository's files in
//! that bucket, trying the friend's peers in turn (dialed at the addresses
//! the link holds, through NATs the way the mesh does).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use coop_identity::{Certificate, CloudId};
use coop_mesh::{FRIEND_ALPN, Mesh, Protocol, Service};
use coop_state::{Command, CommandError, ControlPlane, FriendLink, FriendRecord, WriteError};
use coop_store::Stripes;
use coop_types::{PeerId, unix_now};

use crate::backend::RepoFiles;
use crate::bucket::{FinishError, ObjectWriter, read_object};
use crate::s3::{Listed, S3Error};

/// A repository file is at most a pack (rustic's grow to tens of MiB); the
/// mesh carries messages up to 64 MiB.
const CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Objects listed per page of the control plane.
const LIST_BATCH: usize = 1000;

/// `coop/friend/1`.
pub struct FriendProtocol;

/// One call: the caller's certificate and what it asks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FriendCall {
    pub cert: Certificate,
    pub op: FriendOp,
}

/// What a friend's peer may ask.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum FriendOp {
    /// Redeem the invite `name` with its secret: the caller's cloud
    /// becomes the friend of that name.
    Redeem {
        name: String,
        secret: [u8; 32],
    },
    Put {
        name: String,
        body: Vec<u8>,
    },
    /// The object `name`, whole or `(offset, length)`.
    Get {
        name: String,
        range: Option<(u64, u64)>,
    },
    Delete {
        name: String,
    },
    List {
        prefix: String,
    },
    /// The bucket's use and quota; also tells the caller it is admitted.
    Usage,
}

/// The friend's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum FriendReply {
    Redeemed {
        bucket: String,
        peers: Vec<(PeerId, Vec<String>)>,
    },
    Done,
    Bytes(Vec<u8>),
    Listed(Vec<(String, u64)>),
    Usage {
        objects: u64,
        bytes: u64,
        quota: Option<u64>,
    },
    /// Not allowed, or not possible; `code` is `denied`, `not_found`,
    /// `quota` or `unavailable`.
    Refused {
        code: String,
        message: String,
    },
}

impl Protocol for FriendProtocol {
    const ALPN: &'static [u8] = FRIEND_ALPN;
    type Request = FriendCall;
    type Response = FriendReply;
    fn timeout(_: &FriendCall) -> Duration {
        CALL_TIMEOUT
    }
}

fn refused(code: &str, message: impl Into<String>) -> FriendReply {
    FriendReply::Refused {
        code: code.to_owned(),
        message: message.into(),
    }
}

/// The friend's side: serves the clouds this one keeps backups for.
#[derive(Clone)]
pub struct FriendService {
    pub control: ControlPlane,
    pub stripes: Stripes,
    pub mesh: Mesh,
    /// When this peer last heard from each friend, by name.
    pub contacts: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
}

impl Service<FriendProtocol> for FriendService {
    fn answer(&self, from: PeerId, call: FriendCall) -> BoxFuture<'static, FriendReply> {
        let service = self.clone();
        Box::pin(async move { service.handle(from, call).await })
    }
}

impl FriendService {
    async fn handle(&self, from: PeerId, call: FriendCall) -> FriendReply {
        let cloud = call.cert.body.cloud;
        // The certificate must be the caller's, signed by its cloud's key.
        if let Err(err) = call.cert.verify(&cloud, &from, unix_now()) {
            return refused("denied", format!("the certificate does not hold: {err}"));
        }
        if let FriendOp::Redeem { name, secret } = call.op {
            return self.redeem(name, secret, cloud).await;
        }
        let friend = match self.friend_of(&cloud) {
            Ok(Some(friend)) => friend,
            Ok(None) => {
                tracing::warn!(peer = %from.short(), cloud = %cloud.short(), "refused a friend call from a cloud that is no friend");
                return refused("denied", "this cloud keeps no backups for yours");
            }
            Err(err) => return refused("unavailable", err),
        };
        if let Ok(mut contacts) = self.contacts.lock() {
            contacts.insert(friend.name.clone(), crate::unix_now_ms());
        }
        match self.serve(&friend, call.op).await {
            Ok(reply) => reply,
            Err(reply) => reply,
        }
    }

    fn friend_of(&self, cloud: &CloudId) -> Result<Option<FriendRecord>, String> {
        Ok(self
            .control
            .store()
            .friends()
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|f| f.cloud.as_ref() == Some(cloud)))
    }

    async fn redeem(&self, name: String, secret: [u8; 32], cloud: CloudId) -> FriendReply {
        let write = self
            .control
            .write(Command::RedeemFriend {
                name: name.clone(),
                secret_hash: *blake3::hash(&secret).as_bytes(),
                cloud,
                now: unix_now(),
            })
            .await;
        match write {
            Ok(()) => {}
            Err(WriteError::Rejected(err)) => return refused("denied", err.to_string()),
            Err(err) => return refused("unavailable", err.to_string()),
        }
        let Ok(Some(friend)) = self.control.store().friend(&name) else {
            return refused(
                "unavailable",
                "the friend record is not here yet; try again",
            );
        };
        FriendReply::Redeemed {
            bucket: friend.bucket,
            peers: peers_of(&self.control, &self.mesh),
        }
    }

    async fn serve(&self, friend: &FriendRecord, op: FriendOp) -> Result<FriendReply, FriendReply> {
        let store = self.control.store();
        let bucket = &friend.bucket;
        let unavailable = |e: &dyn std::fmt::Display| refused("unavailable", e.to_string());
        match op {
            FriendOp::Redeem { .. } => Err(refused("denied", "already a friend")),
            FriendOp::Put { name, body } => {
                let record = store
                    .bucket(bucket)
                    .map_err(|e| unavailable(&e))?
                    .ok_or_else(|| refused("not_found", format!("the bucket {bucket} is gone")))?;
                let mut writer =
                    ObjectWriter::new(&self.stripes, &record).map_err(|e| unavailable(&e))?;
                writer.push(&body).await.map_err(|e| unavailable(&e))?;
                match writer
                    .finish(&self.control, bucket, &name, None, BTreeMap::new())
                    .await
                {
                    Ok(_) => Ok(FriendReply::Done),
                    Err(FinishError::Refused(WriteError::Rejected(err))) => {
                        Err(refused(rejection_code(&err), err.to_string()))
                    }
                    Err(err) => Err(unavailable(&err)),
                }
            }
            FriendOp::Get { name, range } => {
                let object = store
                    .object(bucket, &name)
                    .map_err(|e| unavailable(&e))?
                    .ok_or_else(|| refused("not_found", format!("no file {name}")))?;
                let range = match range {
                    None => 0..object.size,
                    Some((offset, length)) => {
                        offset.min(object.size)..offset.saturating_add(length).min(object.size)
                    }
                };
                let bytes = read_object(&self.stripes, store, &object, range)
                    .await
                    .map_err(|e| unavailable(&e))?;
                Ok(FriendReply::Bytes(bytes))
            }
            FriendOp::Delete { name } => {
                self.control
                    .write(Command::DeleteObjects {
                        bucket: bucket.clone(),
                        keys: vec![name],
                        now: unix_now(),
                    })
                    .await
                    .map_err(|e| unavailable(&e))?;
                Ok(FriendReply::Done)
            }
            FriendOp::List { prefix } => {
                let mut listed = Vec::new();
                let mut after: Option<String> = None;
                loop {
                    let batch = store
                        .list_objects(bucket, &prefix, after.as_deref(), LIST_BATCH)
                        .map_err(|e| unavailable(&e))?;
                    let full = batch.len() == LIST_BATCH;
                    after = batch.last().map(|(k, _)| k.clone());
                    listed.extend(batch.into_iter().map(|(k, o)| (k, o.size)));
                    if !full {
                        break;
                    }
                }
                Ok(FriendReply::Listed(listed))
            }
            FriendOp::Usage => {
                let record = store
                    .bucket(bucket)
                    .map_err(|e| unavailable(&e))?
                    .ok_or_else(|| refused("not_found", format!("the bucket {bucket} is gone")))?;
                let bytes = store.bucket_usage(bucket).map_err(|e| unavailable(&e))?;
                Ok(FriendReply::Usage {
                    objects: 0,
                    bytes,
                    quota: record.quota,
                })
            }
        }
    }
}

/// The code a refused write answers with.
fn rejection_code(err: &CommandError) -> &'static str {
    match err {
        CommandError::BucketUnknown(_) => "not_found",
        CommandError::QuotaExceeded { .. } => "quota",
        _ => "denied",
    }
}

/// This cloud's peers and their addresses, for a friend to dial.
pub(crate) fn peers_of(control: &ControlPlane, mesh: &Mesh) -> Vec<(PeerId, Vec<String>)> {
    control
        .store()
        .peers()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.revoked_at.is_none())
        .map(|r| {
            let addrs = mesh
                .liveness()
                .status(&r.id())
                .map(|(s, _)| s.addrs)
                .unwrap_or(r.addrs.clone());
            (r.id(), addrs)
        })
        .collect()
}

/// The owner's side: a repository's files in a friend's bucket.
#[derive(Clone)]
pub struct FriendClient {
    mesh: Mesh,
    link: FriendLink,
}

impl std::fmt::Debug for FriendClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FriendClient")
            .field("friend", &self.link.name)
            .finish_non_exhaustive()
    }
}

impl FriendClient {
    pub fn new(mesh: Mesh, link: FriendLink) -> Self {
        FriendClient { mesh, link }
    }

    /// Sends `op` to the friend's peers in turn until one answers.
    pub async fn call(&self, op: FriendOp) -> Result<FriendReply, S3Error> {
        call_friend(&self.mesh, &self.link.peers, op, &self.url()).await
    }

    fn refused(&self, method: &'static str, name: &str, code: String, message: String) -> S3Error {
        if code == "not_found" {
            return S3Error::NotFound(name.to_owned());
        }
        let status = match code.as_str() {
            "denied" | "quota" => 403,
            _ => 503,
        };
        S3Error::Refused {
            method,
            key: name.to_owned(),
            status,
            code,
            message,
        }
    }

    fn unexpected(&self, method: &'static str, name: &str, reply: FriendReply) -> S3Error {
        match reply {
            FriendReply::Refused { code, message } => self.refused(method, name, code, message),
            other => S3Error::Refused {
                method,
                key: name.to_owned(),
                status: 502,
                code: "unexpected".into(),
                message: format!("unexpected answer {other:?}"),
            },
        }
    }
}

/// Calls the first of `peers` that answers.
pub(crate) async fn call_friend(
    mesh: &Mesh,
    peers: &[(PeerId, Vec<String>)],
    op: FriendOp,
    place: &str,
) -> Result<FriendReply, S3Error> {
    let cert = mesh
        .admission()
        .own_cert()
        .ok_or_else(|| S3Error::Unreachable {
            endpoint: place.to_owned(),
            reason: "this peer has no certificate yet".into(),
        })?;
    let call = FriendCall { cert, op };
    let mut last = String::from("the friend has no peers on record");
    for (peer, addrs) in peers {
        match mesh.call_open::<FriendProtocol>(*peer, addrs, &call).await {
            Ok(reply) => return Ok(reply),
            Err(err) => {
                tracing::debug!(peer = %peer.short(), %err, "a friend's peer did not answer");
                last = format!("peer {}: {err}", peer.short());
            }
        }
    }
    Err(S3Error::Unreachable {
        endpoint: place.to_owned(),
        reason: last,
    })
}

impl RepoFiles for FriendClient {
    fn url(&self) -> String {
        format!("friend:{}", self.link.name)
    }

    async fn put(&self, name: &str, body: Bytes) -> Result<(), S3Error> {
        let op = FriendOp::Put {
            name: name.to_owned(),
            body: body.to_vec(),
        };
        match self.call(op).await? {
            FriendReply::Done => Ok(()),
            other => Err(self.unexpected("PUT", name, other)),
        }
    }

    async fn get(&self, name: &str) -> Result<Bytes, S3Error> {
        let op = FriendOp::Get {
            name: name.to_owned(),
            range: None,
        };
        match self.call(op).await? {
            FriendReply::Bytes(bytes) => Ok(Bytes::from(bytes)),
            other => Err(self.unexpected("GET", name, other)),
        }
    }

    async fn get_range(&self, name: &str, offset: u64, length: u64) -> Result<Bytes, S3Error> {
        let op = FriendOp::Get {
            name: name.to_owned(),
            range: Some((offset, length)),
        };
        match self.call(op).await? {
            FriendReply::Bytes(bytes) => Ok(Bytes::from(bytes)),
            other => Err(self.unexpected("GET", name, other)),
        }
    }

    async fn delete(&self, name: &str) -> Result<(), S3Error> {
        let op = FriendOp::Delete {
            name: name.to_owned(),
        };
        match self.call(op).await? {
            FriendReply::Done => Ok(()),
            other => Err(self.unexpected("DELETE", name, other)),
        }
    }

    async fn list(&self, dir: &str) -> Result<Vec<Listed>, S3Error> {
        let op = FriendOp::List {
            prefix: dir.to_owned(),
        };
        match self.call(op).await? {
            FriendReply::Listed(listed) => Ok(listed
                .into_iter()
                .map(|(name, size)| Listed { name, size })
                .collect()),
            other => Err(self.unexpected("LIST", dir, other)),
        }
    }

    async fn check(&self) -> Result<(), S3Error> {
        match self.call(FriendOp::Usage).await? {
            FriendReply::Usage { .. } => Ok(()),
            other => Err(self.unexpected("CHECK", "", other)),
        }
    }
}

/// What a friend invite token carries: who to call and the secret to
/// show. `cooperf1-` and base32 of its postcard form.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FriendToken {
    /// The inviting cloud (the one that will keep the backups).
    pub cloud: CloudId,
    /// Its name for the invited cloud.
    pub name: String,
    pub secret: [u8; 32],
    /// Unix seconds.
    pub expires_at: u64,
    /// Its peers and their mesh addresses.
    pub peers: Vec<(PeerId, Vec<String>)>,
}

const TOKEN_PREFIX: &str = "cooperf1-";

impl FriendToken {
    pub fn encode(&self) -> String {
        let bytes = postcard::to_allocvec(self).unwrap_or_default();
        format!(
            "{TOKEN_PREFIX}{}",
            data_encoding::BASE32_NOPAD.encode(&bytes).to_lowercase()
        )
    }

    pub fn decode(text: &str) -> Result<Self, String> {
        let rest = text.trim().strip_prefix(TOKEN_PREFIX).ok_or_else(|| {
            format!("this is not a friend invite token (it must start with `{TOKEN_PREFIX}`)")
        })?;
        let bytes = data_encoding::BASE32_NOPAD
            .decode(rest.to_uppercase().as_bytes())
            .map_err(|_| "the friend invite token is damaged (not base32)".to_string())?;
        postcard::from_bytes(&bytes)
            .map_err(|_| "the friend invite token is damaged or from another coop version".into())
    }
}
