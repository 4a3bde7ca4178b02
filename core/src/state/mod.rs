//! Keyed state: the backend interface the runtime implements, the
//! descriptors a processor declares its state with, the typed handles it
//! reaches that state through, and the byte layout of state keys.
//!
//! Layout (big-endian numbers):
//! - value: `k | group:u16 | node:u16 | name_len:u8 | name | key_len:u32 | key`
//! - map entry: `m | group:u16 | node:u16 | name_len:u8 | name | key_len:u32 | key | map_key`
//! - timer: `t | group:u16 | node:u16 | domain:u8 | timestamp:u64 (sign-flipped) | key`
//!
//! A store declared with a time to live uses `K` and `M` instead of `k` and
//! `m`, and each of its values starts with its expiry (see [`ttl`]), so
//! that the storage can drop expired entries without knowing the pipeline.
//! A list is laid out as a map from a sequence number to its elements, with
//! its next sequence number in the value slot of its name.
//!
//! Only map entries and timers are ever scanned by prefix ([`is_scanned`]),
//! so a backend may keep those alone in an ordered structure.

mod descriptor;
mod list;
mod map;
pub mod ttl;
mod value;

#[doc(hidden)]
pub use descriptor::Place;
pub use descriptor::{
    Declarations, Declared, ListDescriptor, MapDescriptor, StateDescriptor, StateKind, StateSpec,
    ValueDescriptor,
};
pub use list::{Elements, ListState};
pub use map::{MapIter, MapState};
pub use value::ValueState;

use crate::{Error, Result, Serde};

/// Byte-level state storage as seen by one worker. Reads see the worker's
/// own uncommitted writes; the runtime decides when writes become durable.
pub trait StateBackend: Send {
    /// The value stored under `key`, if any.
    fn get(&mut self, key: &[u8]) -> Result<Option<&[u8]>>;
    /// Stores `value` under `key`.
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>);
    /// Stores a copy of `value` under `key`; a backend may reuse the
    /// buffers of an entry it already holds (no allocation per update).
    fn put_slice(&mut self, key: &[u8], value: &[u8]) {
        self.put(key.to_vec(), value.to_vec());
    }
    /// Stores `value` under `key`, which the caller knows to be absent
    /// from the committed state (a timer its in-memory queue did not hold):
    /// a backend may then drop a delete of `key` in the same epoch
    /// altogether, written nowhere. The default is [`put`](Self::put).
    fn put_new(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.put(key, value);
    }
    /// Removes `key`.
    fn delete(&mut self, key: Vec<u8>);
    /// Every live entry whose key starts with `prefix`, in key order.
    fn scan_prefix(&mut self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// A hint that `key` is likely read a few records from now: a backend
    /// may start loading its memory into the CPU cache, so that the `get`
    /// does not wait for it. Never changes what is stored or read; the
    /// default does nothing.
    fn prefetch(&mut self, key: &[u8]) {
        let _ = key;
    }
}

/// First byte of value-state entries.
pub const KEYED_TAG: u8 = b'k';
/// First byte of map-state (and list-state) entries.
pub const MAP_TAG: u8 = b'm';
/// First byte of the entries of value state with a time to live.
pub const KEYED_TTL_TAG: u8 = b'K';
/// First byte of the entries of map (and list) state with a time to live.
pub const MAP_TTL_TAG: u8 = b'M';
/// First byte of timer entries.
pub const TIMER_TAG: u8 = b't';
/// Every first byte of an entry that belongs to a key group: values, map
/// entries (with and without a time to live) and timers.
pub const GROUPED_TAGS: [u8; 5] = [KEYED_TAG, KEYED_TTL_TAG, MAP_TAG, MAP_TTL_TAG, TIMER_TAG];

/// Whether keys like `key` are read by prefix scans (map entries, timers)
/// rather than by point reads only (values).
pub fn is_scanned(key: &[u8]) -> bool {
    matches!(
        key.first(),
        Some(&MAP_TAG) | Some(&MAP_TTL_TAG) | Some(&TIMER_TAG)
    )
}

/// Whether entries like `key` start their values with an expiry (see [`ttl`]).
pub fn has_expiry(key: &[u8]) -> bool {
    matches!(key.first(), Some(&KEYED_TTL_TAG) | Some(&MAP_TTL_TAG))
}

/// Checks a state name: non-empty, at most 255 bytes.
pub(crate) fn name_bytes(name: &str) -> Result<&[u8]> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 255 {
        return Err(Error::Config(format!(
            "state name `{name}` must be 1 to 255 bytes long; rename the state"
        )));
    }
    Ok(b)
}

/// The prefix of every entry of state `name` of `node` in key group `group`.
/// `tag` is one of [`GROUPED_TAGS`] but [`TIMER_TAG`].
pub fn keyed_prefix(tag: u8, group: u16, node: u16, name: &str) -> Result<Vec<u8>> {
    let mut k = Vec::with_capacity(6 + name.len() + 16);
    keyed_prefix_into(&mut k, tag, group, node, name)?;
    Ok(k)
}

fn keyed_prefix_into(k: &mut Vec<u8>, tag: u8, group: u16, node: u16, name: &str) -> Result<()> {
    let n = name_bytes(name)?;
    let [g0, g1] = group.to_be_bytes();
    let [n0, n1] = node.to_be_bytes();
    // `name_bytes` bounds the length to 255.
    k.extend_from_slice(&[tag, g0, g1, n0, n1, n.len() as u8]);
    k.extend_from_slice(n);
    Ok(())
}

/// The state key of `name` for the encoded record key `key`.
/// For map state this is the prefix of its entries.
pub fn keyed_key(tag: u8, group: u16, node: u16, name: &str, key: &[u8]) -> Result<Vec<u8>> {
    let mut k = Vec::with_capacity(10 + name.len() + key.len());
    keyed_key_into(&mut k, tag, group, node, name, key)?;
    Ok(k)
}

/// [`keyed_key`] into `out`, which is cleared first (a reused buffer).
pub fn keyed_key_into(
    out: &mut Vec<u8>,
    tag: u8,
    group: u16,
    node: u16,
    name: &str,
    key: &[u8],
) -> Result<()> {
    let len = u32::try_from(key.len())
        .map_err(|_| Error::State(format!("key of {} bytes is too long", key.len())))?;
    out.clear();
    out.reserve(10 + name.len() + key.len());
    keyed_prefix_into(out, tag, group, node, name)?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(key);
    Ok(())
}

/// The key group encoded in a keyed-state or timer key, if it is one.
pub fn group_of(state_key: &[u8]) -> Option<u16> {
    match state_key {
        [tag, a, b, ..] if GROUPED_TAGS.contains(tag) => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

/// Deletes `key`'s entry of the store `spec` (a value, or every entry of
/// a map or list): a window that closed.
pub(crate) fn clear_entry(
    backend: &mut dyn StateBackend,
    spec: &StateSpec,
    group: u16,
    node: u16,
    key: &[u8],
) -> Result<()> {
    let expires = spec.ttl.is_some();
    match spec.kind {
        StateKind::Value => {
            let tag = if expires { KEYED_TTL_TAG } else { KEYED_TAG };
            backend.delete(keyed_key(tag, group, node, spec.name, key)?);
        }
        StateKind::Map | StateKind::List => {
            let tag = if expires { MAP_TTL_TAG } else { MAP_TAG };
            let prefix = keyed_key(tag, group, node, spec.name, key)?;
            for (k, _) in backend.scan_prefix(&prefix)? {
                backend.delete(k);
            }
            if spec.kind == StateKind::List {
                let counter = if expires { KEYED_TTL_TAG } else { KEYED_TAG };
                backend.delete(keyed_key(counter, group, node, spec.name, key)?);
            }
        }
    }
    Ok(())
}

/// What a state handle reads and writes through: the worker's backend,
/// the processing time (for expiry), and the store's name (for errors).
pub(crate) struct Access<'a> {
    pub(crate) backend: &'a mut dyn StateBackend,
    pub(crate) now: i64,
    pub(crate) name: &'static str,
    /// The store's time to live, in milliseconds, if it has one.
    pub(crate) ttl_ms: Option<i64>,
}

impl Access<'_> {
    /// The live value under `key`: an expired one reads as absent and is
    /// deleted.
    fn get(&mut self, key: &[u8]) -> Result<Option<&[u8]>> {
        if self.ttl_ms.is_none() {
            return self.backend.get(key);
        }
        let expired = match self.backend.get(key)? {
            None => return Ok(None),
            Some(v) => ttl::expired(v, self.now),
        };
        if expired {
            self.backend.delete(key.to_vec());
            return Ok(None);
        }
        Ok(self.backend.get(key)?.map(ttl::payload))
    }

    /// The expiry header a write starts its value with (empty without a
    /// time to live).
    fn header(&self) -> Option<[u8; 8]> {
        self.ttl_ms
            .map(|ttl| ttl::header(self.now.saturating_add(ttl)))
    }

    /// Decoding or encoding errors, named after the store.
    fn named(&self, e: Error) -> Error {
        named(e, self.name)
    }

    /// An error of the store's serde `serde` (`op`: encode or decode) on a
    /// `T` (see [`serde_error`]).
    fn serde_error<T, S: Serde<T>>(&self, op: &'static str, serde: &S, message: String) -> Error {
        serde_error::<T, S>(op, self.name, serde, message)
    }
}

/// An error of store `name`'s serde (`op`: encode or decode) on a `T`,
/// named after the store and the type, as a [`Codec`](crate::Codec)
/// error is, and after the serde where the descriptor names one.
fn serde_error<T, S: Serde<T>>(op: &'static str, name: &str, serde: &S, message: String) -> Error {
    let format = serde.name();
    let what = match format.as_str() {
        "bincode" => format!("state `{name}` ({})", std::any::type_name::<T>()),
        _ => format!(
            "state `{name}` ({} as {format})",
            std::any::type_name::<T>()
        ),
    };
    Error::Codec { op, what, message }
}

fn named(e: Error, name: &str) -> Error {
    match e {
        Error::Codec { op, what, message } => Error::Codec {
            op,
            what: format!("state `{name}` ({what})"),
            message,
        },
        other => other,
    }
}
