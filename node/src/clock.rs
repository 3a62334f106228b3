//! The node's clock. `protocol` never reads time; the node passes it in from here.

use std::time::{SystemTime, UNIX_EPOCH};

use tfx_protocol::Timestamp;

/// Wall-clock time in milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
}
