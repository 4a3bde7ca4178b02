//! Keyed state: the backend interface the runtime implements, the typed
//! handles processors use, and the byte layout of state keys.
//!
//! Layout (big-endian numbers):
//! - value: `k | group:u16 | node:u16 | name_len:u8 | name | key_len:u32 | key`
//! - map entry: `m | group:u16 | node:u16 | name_len:u8 | name | key_len:u32 | key | map_key`
//! - timer: `t | group:u16 | node:u16 | domain:u8 | timestamp:u64 (sign-flipped) | key`
//!
//! Only map entries and timers are ever scanned by prefix ([`is_scanned`]),
//! so a backend may keep those alone in an ordered structure.

use std::marker::PhantomData;

use crate::{Codec, Error, Result};

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
/// First byte of map-state entries.
pub const MAP_TAG: u8 = b'm';

/// Whether keys like `key` are read by prefix scans (map entries, timers)
/// rather than by point reads only (values).
pub fn is_scanned(key: &[u8]) -> bool {
    matches!(key.first(), Some(&MAP_TAG) | Some(&TIMER_TAG))
}
/// First byte of timer entries.
pub const TIMER_TAG: u8 = b't';

/// Checks a state name: non-empty, at most 255 bytes.
fn name_bytes(name: &str) -> Result<&[u8]> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 255 {
        return Err(Error::Config(format!(
            "state name `{name}` must be 1 to 255 bytes long; rename the state"
        )));
    }
    Ok(b)
}

/// The prefix of every entry of state `name` of `node` in key group `group`.
/// `tag` is [`KEYED_TAG`] or [`MAP_TAG`].
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
/// For map state this is the prefix of its entries; `tag` is [`KEYED_TAG`]
/// or [`MAP_TAG`].
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
        [KEYED_TAG | MAP_TAG | TIMER_TAG, a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

/// One value per key, of type `T`.
pub struct ValueState<'a, T> {
    backend: &'a mut dyn StateBackend,
    /// The state key, then (while a `put` runs) the value's encoding: one
    /// reused buffer for both.
    buf: &'a mut Vec<u8>,
    key_len: usize,
    name: &'a str,
    _t: PhantomData<fn() -> T>,
}

impl<'a, T: Codec> ValueState<'a, T> {
    /// The state under the key held in `buf`.
    pub(crate) fn new(
        backend: &'a mut dyn StateBackend,
        buf: &'a mut Vec<u8>,
        name: &'a str,
    ) -> Self {
        ValueState {
            backend,
            key_len: buf.len(),
            buf,
            name,
            _t: PhantomData,
        }
    }

    /// The current value, if one was put.
    pub fn get(&mut self) -> Result<Option<T>> {
        match self.backend.get(&self.buf[..self.key_len])? {
            Some(bytes) => T::decode(bytes).map(Some).map_err(|e| named(e, self.name)),
            None => Ok(None),
        }
    }

    /// Replaces the value.
    pub fn put(&mut self, value: &T) -> Result<()> {
        self.buf.truncate(self.key_len);
        let encoded = value.encode_into(self.buf);
        let (key, bytes) = self.buf.split_at(self.key_len);
        encoded.map_err(|e| named(e, self.name))?;
        self.backend.put_slice(key, bytes);
        Ok(())
    }

    /// Removes the value.
    pub fn clear(&mut self) {
        self.backend.delete(self.buf[..self.key_len].to_vec());
    }
}

/// A map per key, from `K` to `V`.
pub struct MapState<'a, K, V> {
    backend: &'a mut dyn StateBackend,
    prefix: Vec<u8>,
    name: &'a str,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<'a, K: Codec, V: Codec> MapState<'a, K, V> {
    pub(crate) fn new(backend: &'a mut dyn StateBackend, prefix: Vec<u8>, name: &'a str) -> Self {
        MapState {
            backend,
            prefix,
            name,
            _t: PhantomData,
        }
    }

    fn entry_key(&self, k: &K) -> Result<Vec<u8>> {
        let mut key = self.prefix.clone();
        k.encode_into(&mut key).map_err(|e| named(e, self.name))?;
        Ok(key)
    }

    /// The value under `k`.
    pub fn get(&mut self, k: &K) -> Result<Option<V>> {
        let key = self.entry_key(k)?;
        match self.backend.get(&key)? {
            Some(bytes) => V::decode(bytes).map(Some).map_err(|e| named(e, self.name)),
            None => Ok(None),
        }
    }

    /// Stores `v` under `k`.
    pub fn put(&mut self, k: &K, v: &V) -> Result<()> {
        let key = self.entry_key(k)?;
        let bytes = v.encode().map_err(|e| named(e, self.name))?;
        self.backend.put(key, bytes);
        Ok(())
    }

    /// Removes `k`.
    pub fn remove(&mut self, k: &K) -> Result<()> {
        let key = self.entry_key(k)?;
        self.backend.delete(key);
        Ok(())
    }

    /// Every entry, ordered by the encoded map key.
    pub fn entries(&mut self) -> Result<Vec<(K, V)>> {
        let raw = self.backend.scan_prefix(&self.prefix)?;
        raw.into_iter()
            .map(|(k, v)| {
                let mk = K::decode(&k[self.prefix.len()..]).map_err(|e| named(e, self.name))?;
                let mv = V::decode(&v).map_err(|e| named(e, self.name))?;
                Ok((mk, mv))
            })
            .collect()
    }

    /// Removes every entry.
    pub fn clear(&mut self) -> Result<()> {
        for (k, _) in self.backend.scan_prefix(&self.prefix)? {
            self.backend.delete(k);
        }
        Ok(())
    }
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
