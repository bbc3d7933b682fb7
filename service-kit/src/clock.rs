//! The one wall clock: seconds since the Unix epoch, as access tokens, expiries and audit
//! records count time. Library code takes `now` as an argument; the edges read it here.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the system clock is set before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
