use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch. A clock before 1970 reads as 0 rather than
/// failing: callers compare timestamps, they never divide by them.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, read the same way as [`unix_now`].
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
