//! Events: what happened in the cloud, in a sentence each, kept in memory
//! by the peer that saw or did it. The API merges them at `/v1/events`.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Events one log keeps at most.
pub const EVENTS_KEPT: usize = 1000;
/// How long events are kept (and shown by default), in seconds.
pub const EVENTS_WINDOW_SECS: u64 = 3600;

/// One event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// Unix seconds.
    pub at: u64,
    /// What kind of thing happened: `joined`, `revoked`, `unreachable`,
    /// `down`, `back`, `repaired`, `rebalanced`, `corrupt`, `restarted`, or
    /// an environment event's kind (`placed`, `started`, `moved`, ...).
    pub kind: String,
    /// What it is about: a peer's name, a container's, a disk's, or
    /// `environment/replica`.
    pub subject: String,
    /// What happened, in a sentence.
    pub message: String,
}

impl EventView {
    /// An event that happens now.
    pub fn now(kind: &str, subject: impl Into<String>, message: impl Into<String>) -> Self {
        EventView {
            at: crate::unix_now(),
            kind: kind.into(),
            subject: subject.into(),
            message: message.into(),
        }
    }
}

/// A peer's own events, oldest first: the last [`EVENTS_WINDOW_SECS`], at
/// most [`EVENTS_KEPT`]. A restarted peer starts afresh.
#[derive(Debug, Default)]
pub struct EventLog(Mutex<VecDeque<EventView>>);

impl EventLog {
    /// Notes an event; the oldest go beyond the count or the window.
    pub fn note(&self, event: EventView) {
        let Ok(mut events) = self.0.lock() else {
            return;
        };
        let oldest = event.at.saturating_sub(EVENTS_WINDOW_SECS);
        while events
            .front()
            .is_some_and(|e| e.at < oldest || events.len() >= EVENTS_KEPT)
        {
            events.pop_front();
        }
        events.push_back(event);
    }

    /// The events at or after `since` (unix seconds), oldest first.
    pub fn since(&self, since: u64) -> Vec<EventView> {
        self.0
            .lock()
            .map(|events| events.iter().filter(|e| e.at >= since).cloned().collect())
            .unwrap_or_default()
    }
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
        log.note(event(100 + EVENTS_WINDOW_SECS + 1));
        assert_eq!(log.since(0).len(), 1, "the hour-old event went");
        for i in 0..(EVENTS_KEPT as u64 + 10) {
            log.note(event(10_000 + i));
        }
        assert_eq!(log.since(0).len(), EVENTS_KEPT);
        assert_eq!(log.since(10_000 + EVENTS_KEPT as u64 + 5).len(), 5);
    }
}
