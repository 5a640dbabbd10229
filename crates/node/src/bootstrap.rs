//! First start and restart: found a new cloud, join one by invite, or come
//! back as the member this data dir already is.

use tracing::{info, warn};

use coop_identity::{Certificate, CertificateBody, CloudId, CloudKey, InviteToken, PeerKey};
use coop_mesh::{LivenessConfig, Mesh, MeshConfig};
use coop_state::{CloudInfo, Command, ControlPlane, PeerNode, PeerRecord, StateStore};
use coop_types::{Role, unix_now};

use crate::datadir::{DataDir, Membership};
use crate::error::NodeError;
use crate::protocol::{JoinProtocol, JoinReply, JoinRequest};
use crate::settings::NodeSettings;

/// The founder's own certificate lasts as long as any other.
const FOUNDER_CERT_SECS: u64 = 10 * 365 * 24 * 3600;

/// What a started peer is made of.
pub(crate) struct Started {
    pub key: PeerKey,
    pub cloud: CloudId,
    pub cloud_key: Option<CloudKey>,
    pub mesh: Mesh,
    pub control: ControlPlane,
}

pub(crate) async fn start(
    settings: &NodeSettings,
    dir: &DataDir,
    liveness: LivenessConfig,
) -> Result<Started, NodeError> {
    let existed = dir.root().exists();
    dir.create()?;
    let membership = dir.membership()?;
    let result = match (membership, &settings.join) {
        (Some(m), Some(_)) => Err(NodeError::DataDir(format!(
            "data dir {} already belongs to cloud {}; to join another cloud use a new --data-dir, \
             or run `coop up` without --join to restart this peer",
            dir.root().display(),
            m.cloud
        ))),
        (Some(m), None) => restart(settings, dir, m, liveness).await,
        (None, Some(token)) => join(settings, dir, token, liveness).await,
        (None, None) => {
            if dir.peer_key().exists() || dir.state_db().exists() {
                return Err(NodeError::DataDir(format!(
                    "data dir {} holds a peer key or state but no membership.json; \
                     it is damaged or from another version; move it away and start again",
                    dir.root().display()
                )));
            }
            found(settings, dir, liveness).await
        }
    };
    if result.is_err() && !existed {
        // Leave no half-made data dir behind a failed first start.
        let _ = std::fs::remove_dir(dir.root());
    }
    result
}

async fn bind_mesh(
    settings: &NodeSettings,
    key: &PeerKey,
    cloud: CloudId,
    cert: Option<Certificate>,
    liveness: LivenessConfig,
) -> Result<Mesh, NodeError> {
    Mesh::bind(MeshConfig {
        key: key.clone(),
        cloud,
        certificate: cert,
        listen: settings.listen,
        liveness,
        relay: settings.relay,
        mdns: settings.mdns,
        protocols: crate::node::SERVED_PROTOCOLS.to_vec(),
    })
    .await
    .map_err(|e| NodeError::start("the peer mesh")(e.to_string()))
}

async fn start_control(dir: &DataDir, mesh: &Mesh) -> Result<ControlPlane, NodeError> {
    let store = StateStore::open(&dir.state_db())
        .map_err(|e| NodeError::start("the control-plane state")(e.to_string()))?;
    ControlPlane::start(mesh.clone(), store)
        .await
        .map_err(|e| NodeError::start("the control plane")(e.to_string()))
}

fn roles(settings: &NodeSettings) -> Vec<Role> {
    if settings.relay {
        vec![Role::Relay]
    } else {
        vec![]
    }
}

/// A new one-peer cloud with this peer as its founder and only steward.
async fn found(
    settings: &NodeSettings,
    dir: &DataDir,
    liveness: LivenessConfig,
) -> Result<Started, NodeError> {
    let key = PeerKey::generate();
    let cloud_key = CloudKey::generate();
    let now = unix_now();
    let cert = Certificate::issue(
        &cloud_key,
        CertificateBody {
            cloud: cloud_key.id(),
            peer: key.id(),
            name: settings.name.clone(),
            zone: settings.zone.clone(),
            roles: roles(settings),
            issued_at: now,
            expires_at: now + FOUNDER_CERT_SECS,
        },
    )
    .map_err(|e| {
        NodeError::start("the cloud")(format!("cannot issue the founder's certificate: {e}"))
    })?;
    let mesh = bind_mesh(settings, &key, cloud_key.id(), Some(cert.clone()), liveness).await?;
    key.save(&dir.peer_key())?;
    cloud_key.save(&dir.cloud_key())?;
    dir.write_membership(&Membership {
        cloud: cloud_key.id(),
        certificate: cert,
    })?;
    let control = start_control(dir, &mesh).await?;
    initialize_cloud(settings, &key, &cloud_key, &mesh, &control).await?;
    info!(cloud = %cloud_key.id(), "founded a new cloud");
    Ok(Started {
        key,
        cloud: cloud_key.id(),
        cloud_key: Some(cloud_key),
        mesh,
        control,
    })
}

/// Makes the founder the single voter and writes the cloud's first entry.
/// Also finishes a founding that crashed half-way.
async fn initialize_cloud(
    settings: &NodeSettings,
    key: &PeerKey,
    cloud_key: &CloudKey,
    mesh: &Mesh,
    control: &ControlPlane,
) -> Result<(), NodeError> {
    let addrs = mesh.local_addrs();
    if !control.store().has_raft_state()? {
        control
            .initialize(PeerNode {
                name: settings.name.clone(),
                addrs: addrs.clone(),
            })
            .await
            .map_err(|e| NodeError::start("the control plane")(e.to_string()))?;
    }
    if control.store().cloud()?.is_none() {
        let now = unix_now();
        let cert = mesh.admission().own_cert().ok_or_else(|| {
            NodeError::start("the cloud")("the founder has no certificate".into())
        })?;
        control
            .write(Command::InitCloud {
                cloud: CloudInfo {
                    id: cloud_key.id(),
                    name: format!("{}'s cloud", settings.name),
                    created_at: now,
                    founder: key.id(),
                },
                founder: PeerRecord {
                    cert,
                    joined_at: now,
                    addrs,
                    revoked_at: None,
                },
            })
            .await
            .map_err(|e| {
                NodeError::start("the cloud")(format!("cannot write the cloud's first entry: {e}"))
            })?;
    }
    Ok(())
}

/// Redeems an invite. Nothing is written to the data dir unless a peer of
/// the cloud accepted it.
async fn join(
    settings: &NodeSettings,
    dir: &DataDir,
    token_text: &str,
    liveness: LivenessConfig,
) -> Result<Started, NodeError> {
    let token = InviteToken::decode(token_text, unix_now())
        .map_err(|e| NodeError::Join(format!("cannot use this invite: {e}")))?;
    let key = PeerKey::generate();
    let mesh = bind_mesh(settings, &key, token.cloud, None, liveness).await?;
    let request = JoinRequest {
        cloud: token.cloud,
        invite_id: token.invite_id,
        secret: token.secret,
        name: settings.name.clone(),
        zone: settings.zone.clone(),
        addrs: mesh.local_addrs(),
        relay: settings.relay,
    };
    let mut failures = Vec::new();
    let mut accepted = None;
    for peer in &token.bootstrap {
        info!(peer = %peer.id.short(), addrs = ?peer.addrs, "asking to join");
        let reply = mesh
            .call_open::<JoinProtocol>(peer.id, &peer.addrs, &request)
            .await;
        match reply {
            Ok(JoinReply::Accepted { cert, cloud, peers }) => {
                accepted = Some((*cert, cloud, peers));
                break;
            }
            Ok(JoinReply::Refused(reason)) => {
                mesh.shutdown().await;
                return Err(NodeError::Join(format!(
                    "the cloud refused to join: {reason}"
                )));
            }
            Ok(JoinReply::Unavailable(reason)) => {
                failures.push(format!("{}: {reason}", peer.id.short()))
            }
            Err(err) => failures.push(format!("{}: {err:#}", peer.id.short())),
        }
    }
    let Some((cert, cloud, peers)) = accepted else {
        mesh.shutdown().await;
        return Err(NodeError::Join(format!(
            "could not reach any peer named in the invite ({}); check the network and that those peers are up",
            failures.join("; ")
        )));
    };
    if let Err(err) = cert.verify(&token.cloud, &key.id(), unix_now()) {
        mesh.shutdown().await;
        return Err(NodeError::Join(format!(
            "the cloud answered with an invalid certificate: {err}"
        )));
    }
    key.save(&dir.peer_key())?;
    dir.write_membership(&Membership {
        cloud: token.cloud,
        certificate: cert.clone(),
    })?;
    mesh.admission().set_own_cert(cert);
    for (id, addrs) in &peers {
        mesh.add_peer_addrs(*id, addrs);
    }
    let control = start_control(dir, &mesh).await?;
    info!(
        cloud = %token.cloud,
        name = cloud.map(|c| c.name).unwrap_or_default(),
        "joined the cloud"
    );
    Ok(Started {
        key,
        cloud: token.cloud,
        cloud_key: None,
        mesh,
        control,
    })
}

/// Comes back as the member this data dir is.
async fn restart(
    settings: &NodeSettings,
    dir: &DataDir,
    membership: Membership,
    liveness: LivenessConfig,
) -> Result<Started, NodeError> {
    let key = PeerKey::load(&dir.peer_key())?;
    if membership.certificate.body.peer != key.id() {
        return Err(NodeError::DataDir(format!(
            "membership.json in {} names peer {}, but peer.key is {}; the data dir is damaged",
            dir.root().display(),
            membership.certificate.body.peer,
            key.id()
        )));
    }
    let cloud_key = match CloudKey::load(&dir.cloud_key()) {
        Ok(k) if k.id() == membership.cloud => Some(k),
        Ok(_) => {
            warn!("cloud.key does not belong to this cloud; ignoring it");
            None
        }
        Err(_) => None,
    };
    let mesh = bind_mesh(
        settings,
        &key,
        membership.cloud,
        Some(membership.certificate.clone()),
        liveness,
    )
    .await?;
    let control = start_control(dir, &mesh).await?;
    for rec in control.store().peers()? {
        if rec.revoked_at.is_none() {
            mesh.add_peer_addrs(rec.id(), &rec.addrs);
            let _ = mesh.admission().admit(rec.id(), &rec.cert);
        }
    }
    // A founder that crashed before its first entry finishes founding.
    if let Some(ck) = &cloud_key
        && control.store().cloud()?.is_none()
        && !control.store().has_raft_state()?
    {
        initialize_cloud(settings, &key, ck, &mesh, &control).await?;
    }
    info!(cloud = %membership.cloud, "restarted as a member of the cloud");
    Ok(Started {
        key,
        cloud: membership.cloud,
        cloud_key,
        mesh,
        control,
    })
}
