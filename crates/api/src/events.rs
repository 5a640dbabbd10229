//! What happened in the cloud lately, for the console's overview and
//! scripts: `GET /v1/events?since=SECS`.
//!
//! Three sources, merged newest first: joins and revocations from the
//! control plane's peer records; every environment's events (replicas
//! placed, started, moved, restarted, unhealthy, fenced); and what this
//! peer saw of the others' liveness (unreachable, down, back), which
//! [`watch_peers`] notes in an [`EventLog`] kept in memory (the last hour,
//! at most [`KEPT`] events; a restarted peer starts afresh).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use coop_mesh::Mesh;
use coop_types::{PeerId, PeerState, unix_now};

use crate::AppState;
use crate::error::ApiError;

/// Events kept in memory at most.
pub const KEPT: usize = 1000;
/// How far back events are kept and shown by default.
pub const WINDOW_SECS: u64 = 3600;
/// How often peers' liveness is looked at.
const LOOK: Duration = Duration::from_secs(1);

/// One event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// Unix seconds.
    pub at: u64,
    /// `joined`, `revoked`, `unreachable`, `down`, `back`, or an
    /// environment event's kind (`placed`, `started`, `moved`, ...).
    pub kind: String,
    /// What it is about: a peer's name, or `environment/replica`.
    pub subject: String,
    /// What happened, in a sentence.
    pub message: String,
}

/// This peer's own observations, newest last.
#[derive(Debug, Default)]
pub struct EventLog(Mutex<VecDeque<EventView>>);

impl EventLog {
    /// Notes an event; the oldest go beyond [`KEPT`] or [`WINDOW_SECS`].
    pub fn note(&self, event: EventView) {
        let Ok(mut events) = self.0.lock() else {
            return;
        };
        let oldest = event.at.saturating_sub(WINDOW_SECS);
        while events
            .front()
            .is_some_and(|e| e.at < oldest || events.len() >= KEPT)
        {
            events.pop_front();
        }
        events.push_back(event);
    }

    fn since(&self, since: u64) -> Vec<EventView> {
        self.0
            .lock()
            .map(|events| events.iter().filter(|e| e.at >= since).cloned().collect())
            .unwrap_or_default()
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at: u64) -> EventView {
        EventView {
            at,
            kind: "down".into(),
            subject: "p1".into(),
            message: String::new(),
        }
    }

    #[test]
    fn the_log_keeps_the_last_hour_and_a_bounded_count() {
        let log = EventLog::default();
        log.note(event(100));
        log.note(event(100 + WINDOW_SECS + 1));
        assert_eq!(log.since(0).len(), 1, "the hour-old event went");
        for i in 0..(KEPT as u64 + 10) {
            log.note(event(10_000 + i));
        }
        assert_eq!(log.since(0).len(), KEPT);
        assert_eq!(log.since(10_000 + KEPT as u64 + 5).len(), 5);
    }
}
