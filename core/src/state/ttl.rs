//! Time to live: a store declared with one (see
//! [`ValueDescriptor::with_ttl`](super::ValueDescriptor::with_ttl)) starts
//! each value with the processing time (ms since the Unix epoch, signed,
//! big-endian) after which it is gone. An expired value reads as absent and
//! is deleted when read; a value never read again is dropped by the storage
//! itself (the runtime's RocksDB compaction filter), which needs nothing
//! but the entry to decide. Every write starts the time anew, as Flink's
//! `OnCreateAndWrite` does.

/// Bytes of the expiry header.
pub const HEADER: usize = 8;

/// The header of a value that expires at `at` (ms).
pub fn header(at: i64) -> [u8; HEADER] {
    at.to_be_bytes()
}

/// When `value` (with its header) expires; `None` for a value too short
/// to have one.
pub fn expiry(value: &[u8]) -> Option<i64> {
    let head: [u8; HEADER] = value.get(..HEADER)?.try_into().ok()?;
    Some(i64::from_be_bytes(head))
}

/// Whether `value` has expired at processing time `now`.
pub fn expired(value: &[u8], now: i64) -> bool {
    expiry(value).is_some_and(|at| at <= now)
}

/// `value` without its header.
pub fn payload(value: &[u8]) -> &[u8] {
    value.get(HEADER..).unwrap_or_default()
}
