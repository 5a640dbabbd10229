//! What happened in the cloud lately, for the console's overview and
//! scripts: `GET /v1/events?since=SECS`.
//!
//! Four sources, merged newest first: joins and revocations from the
//! control plane's peer records; every environment's events (replicas
//! placed, started, moved, restarted, unhealthy, fenced); what this peer
//! saw of the others' liveness (unreachable, down, back), which
//! [`watch_peers`] notes in an [`EventLog`]; and what each peer did itself
//! (repairs, rebalancing, corrupt shards found, containers restarted by
//! their policy), kept in each peer's own log of actions and asked of the
//! peers that are up over `coop/events/1`. Liveness stays local: every
//! peer has its own view of the others, and the one asked answers with
//! its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use futures::future::BoxFuture;
use serde::Deserialize;
use utoipa::IntoParams;

use coop_mesh::{Mesh, Protocol, Service};
pub use coop_types::{EVENTS_KEPT as KEPT, EVENTS_WINDOW_SECS as WINDOW_SECS, EventLog, EventView};
use coop_types::{PeerId, PeerState, unix_now};

use crate::AppState;
use crate::error::ApiError;

/// How often peers' liveness is looked at.
const LOOK: Duration = Duration::from_secs(1);
/// How long another peer has to send its actions: a peer that is slow
/// to answer is left out rather than holding up the page.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Notes every change of another peer's liveness as this peer judges it,
/// until dropped.
pub async fn watch_peers(mesh: Mesh, control: coop_state::ControlPlane, log: Arc<EventLog>) {
    let mut seen: BTreeMap<PeerId, PeerState> = BTreeMap::new();
    let mut tick = tokio::time::interval(LOOK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(peers) = control.store().peers() else {
            continue;
        };
        for record in peers {
            let id = record.id();
            if id == mesh.id() || record.revoked_at.is_some() {
                continue;
            }
            let now = mesh.peer_state(&id);
            let Some(before) = seen.insert(id, now) else {
                continue;
            };
            if before == now {
                continue;
            }
            let name = record.cert.body.name.clone();
            let (kind, message) = match now {
                PeerState::Up => ("back", format!("{name} is reachable again")),
                PeerState::Unreachable => ("unreachable", format!("{name} stopped answering")),
                PeerState::Down => (
                    "down",
                    format!("{name} has been silent long enough to count as down"),
                ),
                PeerState::Revoked => continue,
            };
            log.note(EventView {
                at: unix_now(),
                kind: kind.into(),
                subject: name,
                message,
            });
        }
    }
}

/// Where the events start.
#[derive(Debug, Deserialize, IntoParams)]
pub struct EventsQuery {
    /// Unix seconds; the last hour when absent.
    pub since: Option<u64>,
}

/// What happened in the cloud since `since`, newest first.
#[utoipa::path(
    get,
    path = "/v1/events",
    params(EventsQuery),
    responses((status = 200, body = Vec<EventView>)),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Vec<EventView>>, ApiError> {
    let since = query
        .since
        .unwrap_or_else(|| unix_now().saturating_sub(WINDOW_SECS));
    let store = state.control.store();
    let mut events = state.events.since(since);
    events.extend(state.actions.since(since));
    events.extend(others_actions(&state, since).await);
    for record in store.peers()? {
        let name = record.cert.body.name.clone();
        if record.joined_at >= since {
            events.push(EventView {
                at: record.joined_at,
                kind: "joined".into(),
                subject: name.clone(),
                message: format!("{name} joined the cloud"),
            });
        }
        if let Some(at) = record.revoked_at.filter(|at| *at >= since) {
            events.push(EventView {
                at,
                kind: "revoked".into(),
                subject: name.clone(),
                message: format!("{name} was revoked"),
            });
        }
    }
    for env in store.environments()? {
        for event in store.env_events(&env.name)? {
            if event.at < since {
                continue;
            }
            let subject = match (&event.replica, &event.service) {
                (Some(replica), _) => format!("{}/{replica}", env.name),
                (None, Some(service)) => format!("{}/{service}", env.name),
                (None, None) => env.name.clone(),
            };
            events.push(EventView {
                at: event.at,
                kind: event.kind,
                subject,
                message: event.message,
            });
        }
    }
    // Newest first; ties keep a stable order.
    events.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.subject.cmp(&b.subject)));
    events.truncate(KEPT);
    Ok(Json(events))
}

/// The actions of every other peer that is up, since `since`; a peer that
/// does not answer in [`ASK_TIMEOUT`] is left out.
async fn others_actions(state: &AppState, since: u64) -> Vec<EventView> {
    let me = state.key.id();
    let Ok(peers) = state.control.store().peers() else {
        return Vec::new();
    };
    let asks = peers
        .iter()
        .map(|record| record.id())
        .filter(|id| *id != me && state.mesh.peer_state(id) == PeerState::Up)
        .map(|peer| {
            let mesh = state.mesh.clone();
            async move {
                match mesh.call::<EventsProtocol>(peer, &since).await {
                    Ok(events) => events,
                    Err(err) => {
                        tracing::debug!(peer = %peer.short(), %err, "cannot ask a peer for its events");
                        Vec::new()
                    }
                }
            }
        });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The ALPN of [`EventsProtocol`].
pub const EVENTS_ALPN: &[u8] = b"coop/events/1";

/// `coop/events/1`: what a peer did itself since a time (unix seconds),
/// asked of it by the peer whose API lists the cloud's events.
pub struct EventsProtocol;

impl Protocol for EventsProtocol {
    const ALPN: &'static [u8] = EVENTS_ALPN;
    type Request = u64;
    type Response = Vec<EventView>;
    fn timeout(_: &u64) -> Duration {
        ASK_TIMEOUT
    }
}

/// Answers `coop/events/1` from this peer's log of actions.
pub struct EventsService(pub Arc<EventLog>);

impl Service<EventsProtocol> for EventsService {
    fn answer(&self, _from: PeerId, since: u64) -> BoxFuture<'static, Vec<EventView>> {
        let events = self.0.since(since);
        Box::pin(async move { events })
    }
}
