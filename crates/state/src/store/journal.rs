//! Which stripe and object rows the state machine changed, so that what
//! is derived from them elsewhere (the store's health counters) can be
//! kept up to date by looking at the changes only, never at every row.
//!
//! An apply runs on one thread inside one write transaction; while it
//! runs, every write or removal of a `stripe/` or `obj/` row is noted in a
//! thread-local list, which the state machine hands to the store's
//! [`Changes`] once the batch is applied. A snapshot install, or more
//! pending rows than [`MAX_PENDING`], turns into a reset: the reader
//! rebuilds from scratch.

use std::cell::RefCell;

use super::objects::{OBJECTS_ROW_PREFIX, STRIPES_PREFIX};

/// Pending rows kept before the journal gives up and asks for a rebuild;
/// a reader that drains every few seconds never gets near it.
pub(crate) const MAX_PENDING: usize = 100_000;

thread_local! {
    static TOUCHED: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Notes a row written or removed by the apply running on this thread.
pub(super) fn note(key: &str) {
    if key.starts_with(STRIPES_PREFIX) || key.starts_with(OBJECTS_ROW_PREFIX) {
        TOUCHED.with(|t| {
            if let Some(rows) = t.borrow_mut().as_mut() {
                rows.push(key.to_string());
            }
        });
    }
}

/// Runs `apply`, returning its result and the rows it noted.
pub(super) fn collect<T>(apply: impl FnOnce() -> T) -> (T, Vec<String>) {
    TOUCHED.with(|t| *t.borrow_mut() = Some(Vec::new()));
    let out = apply();
    let rows = TOUCHED.with(|t| t.borrow_mut().take()).unwrap_or_default();
    (out, rows)
}

/// Stripe and object rows changed since the reader last drained them.
#[derive(Debug, Default)]
pub struct Changes {
    /// Row keys, in the order they changed (repeats possible).
    pub rows: Vec<String>,
    /// Everything may have changed (a snapshot was installed, or too many
    /// rows piled up): rebuild instead of following `rows`.
    pub reset: bool,
}

impl Changes {
    pub(super) fn add(&mut self, rows: Vec<String>) {
        if self.reset {
            return;
        }
        if self.rows.len() + rows.len() > MAX_PENDING {
            self.reset_all();
            return;
        }
        self.rows.extend(rows);
    }

    pub(super) fn reset_all(&mut self) {
        self.rows = Vec::new();
        self.reset = true;
    }
}
