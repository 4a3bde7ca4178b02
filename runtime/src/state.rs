//! The keyed-state backend of a worker: a write-back cache over RocksDB.
//!
//! Reads are served from the cache, then RocksDB; writes stay in the cache,
//! marked dirty, until the worker drains them into the epoch's commit batch.
//! So RocksDB is written once per key per epoch, not once per record, and
//! never holds a write of an epoch that has not committed (I2).

use std::collections::{BTreeMap, BTreeSet};

use hashbrown::hash_map::EntryRef;
use hashbrown::HashMap;
use std::sync::Arc;

use rocksdb::DB;
use weir_core::state::is_scanned;
use weir_core::{Error, Result, StateBackend};
use xxhash_rust::xxh3::xxh3_64_with_seed;

struct Entry {
    value: Option<Vec<u8>>,
    dirty: bool,
}

/// What an entry costs beyond its key and value bytes: the two vectors'
/// headers, the flag, the table's slot and control byte at its load factor,
/// and the allocator's rounding of two small allocations.
const ENTRY_OVERHEAD: usize = 128;

/// The memory an entry of `key` holding `value` is counted for.
fn cost(key: &[u8], value: Option<&[u8]>) -> usize {
    key.len() + value.map_or(0, <[u8]>::len) + ENTRY_OVERHEAD
}

/// A state write of the epoch: key and new value (`None` deletes).
pub(crate) type Write = (Vec<u8>, Option<Vec<u8>>);

/// Hashes a state key with one xxh3 call over its bytes, seeded per
/// process (so that crafted keys cannot be made to collide on purpose).
#[derive(Clone, Copy)]
struct KeyHash {
    seed: u64,
}

impl std::hash::BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.seed)
    }
}

struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxh3_64_with_seed(bytes, self.0);
    }
    // A `Vec<u8>`'s length prefix: the byte hash covers it well enough.
    fn write_usize(&mut self, n: usize) {
        self.0 ^= n as u64;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The cached entries: values in a hash map (point reads are one lookup),
/// map entries and timers in an ordered map (prefix scans are range reads).
/// Each key lives in exactly one, chosen by [`is_scanned`].
struct Tables {
    points: HashMap<Vec<u8>, Entry, KeyHash>,
    scanned: BTreeMap<Vec<u8>, Entry>,
    /// The memory the entries are counted for (see [`cost`]).
    bytes: usize,
}

impl Default for Tables {
    fn default() -> Self {
        use std::hash::BuildHasher;
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64);
        Tables {
            points: HashMap::with_hasher(KeyHash { seed }),
            scanned: BTreeMap::new(),
            bytes: 0,
        }
    }
}

impl Tables {
    fn get(&self, key: &[u8]) -> Option<&Entry> {
        if is_scanned(key) {
            self.scanned.get(key)
        } else {
            self.points.get(key)
        }
    }

    fn get_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        if is_scanned(key) {
            self.scanned.get_mut(key)
        } else {
            self.points.get_mut(key)
        }
    }

    fn contains_key(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Inserts an entry for a key that is not cached.
    fn insert(&mut self, key: Vec<u8>, entry: Entry) {
        self.bytes += cost(&key, entry.value.as_deref());
        if is_scanned(&key) {
            self.scanned.insert(key, entry);
        } else {
            self.points.insert(key, entry);
        }
    }

    fn remove(&mut self, key: &[u8]) {
        let removed = if is_scanned(key) {
            self.scanned.remove(key)
        } else {
            self.points.remove(key)
        };
        if let Some(e) = removed {
            self.bytes -= cost(key, e.value.as_deref());
        }
    }

    /// Replaces the value of a cached entry, marking it dirty; whether it
    /// was clean (so the caller records it as written this epoch), and by
    /// how many bytes the value grew.
    fn update(&mut self, key: &[u8], value: Option<&[u8]>) -> Option<(bool, usize)> {
        let e = if is_scanned(key) {
            self.scanned.get_mut(key)
        } else {
            self.points.get_mut(key)
        }?;
        let old = e.value.as_ref().map_or(0, Vec::len);
        match (&mut e.value, value) {
            // Reuses the buffer: no allocation per update of a hot key.
            (Some(v), Some(new)) => {
                v.clear();
                v.extend_from_slice(new);
            }
            (slot, new) => *slot = new.map(<[u8]>::to_vec),
        }
        let new = value.map_or(0, <[u8]>::len);
        self.bytes = self.bytes - old + new;
        let was_clean = !e.dirty;
        e.dirty = true;
        Some((was_clean, new.saturating_sub(old)))
    }

    fn retain_dirty(&mut self) {
        self.points.retain(|_, e| e.dirty);
        self.scanned.retain(|_, e| e.dirty);
        self.bytes = self
            .points
            .iter()
            .chain(self.scanned.iter())
            .map(|(k, e)| cost(k, e.value.as_deref()))
            .sum();
    }
}

pub(crate) struct CachedState {
    db: Arc<DB>,
    map: Tables,
    /// Keys written in the open epoch, each once.
    dirty: Vec<Vec<u8>>,
    /// What the entries of `dirty` were counted for when they became
    /// dirty (see [`cost`]): the size of the epoch's writes, roughly.
    dirty_bytes: usize,
    /// Keys deleted by the last drained epoch, cached as absent until trimmed.
    deleted: Vec<Vec<u8>>,
    /// Bytes the cache may hold (see [`cost`]) before clean entries go.
    capacity: usize,
    /// Prefixes whose every entry is in `map` (loaded by a scan, kept
    /// current by writes), so that a second scan needs no RocksDB iterator:
    /// an iterator per scan would wade through every tombstone of the prefix.
    complete: BTreeSet<Vec<u8>>,
}

impl CachedState {
    pub(crate) fn new(db: Arc<DB>, capacity: usize) -> Self {
        CachedState {
            db,
            map: Tables::default(),
            dirty: Vec::new(),
            dirty_bytes: 0,
            deleted: Vec::new(),
            capacity,
            complete: BTreeSet::new(),
        }
    }

    /// Takes the epoch's writes, in O(keys written). They stay cached,
    /// clean, so that reads never miss them before the commit lands: a
    /// deleted key stays as an "absent" marker (RocksDB still has the old
    /// value until then), dropped by the next [`trim`](Self::trim).
    pub(crate) fn take_writes(&mut self) -> Vec<Write> {
        let mut out = Vec::with_capacity(self.dirty.len());
        self.dirty_bytes = 0;
        for key in std::mem::take(&mut self.dirty) {
            let Some(e) = self.map.get_mut(&key) else {
                continue;
            };
            e.dirty = false;
            if e.value.is_none() {
                self.deleted.push(key.clone());
            }
            out.push((key, e.value.clone()));
        }
        out
    }

    /// Called once the previous epoch is committed: drops the absent
    /// markers it left (absent in RocksDB too now), and every clean entry
    /// when the cache holds more bytes than its capacity.
    pub(crate) fn trim(&mut self) {
        for key in std::mem::take(&mut self.deleted) {
            if self
                .map
                .get(&key)
                .is_some_and(|e| !e.dirty && e.value.is_none())
            {
                self.map.remove(&key);
            }
        }
        if self.map.bytes > self.capacity {
            self.map.retain_dirty();
            self.complete.clear();
        }
    }

    /// Roughly how many bytes the open epoch has written (each key
    /// counted once, at its first write).
    pub(crate) fn dirty_bytes(&self) -> usize {
        self.dirty_bytes
    }

    fn set(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        match self.map.update(&key, value.as_deref()) {
            Some((true, _)) => self.mark_dirty(key, value.as_deref()),
            // A value rewritten larger within the epoch counts its growth.
            Some((false, grown)) => self.dirty_bytes += grown,
            None => {
                self.mark_dirty(key.clone(), value.as_deref());
                self.map.insert(key, Entry { value, dirty: true });
            }
        }
    }

    /// Records a key's first write of the epoch. Counted with the key's
    /// second copy in `dirty`, which large keys make no small part.
    fn mark_dirty(&mut self, key: Vec<u8>, value: Option<&[u8]>) {
        self.dirty_bytes += cost(&key, value) + key.len();
        self.dirty.push(key);
    }
}

fn state_err(e: rocksdb::Error) -> Error {
    Error::State(format!(
        "RocksDB read failed: {e}; the epoch cannot commit, restart to recover"
    ))
}

impl StateBackend for CachedState {
    fn get(&mut self, key: &[u8]) -> Result<Option<&[u8]>> {
        if !is_scanned(key) {
            // One hash lookup, hit or miss.
            let db = &self.db;
            let entry = match self.map.points.entry_ref(key) {
                EntryRef::Occupied(o) => o.into_mut(),
                EntryRef::Vacant(v) => {
                    let value = db.get(key).map_err(state_err)?;
                    self.map.bytes += cost(key, value.as_deref());
                    v.insert(Entry {
                        value,
                        dirty: false,
                    })
                }
            };
            return Ok(entry.value.as_deref());
        }
        if !self.map.contains_key(key) {
            let v = self.db.get(key).map_err(state_err)?;
            self.map.insert(
                key.to_vec(),
                Entry {
                    value: v,
                    dirty: false,
                },
            );
        }
        Ok(self.map.get(key).and_then(|e| e.value.as_deref()))
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.set(key, Some(value));
    }

    fn put_slice(&mut self, key: &[u8], value: &[u8]) {
        match self.map.update(key, Some(value)) {
            Some((true, _)) => self.mark_dirty(key.to_vec(), Some(value)),
            Some((false, grown)) => self.dirty_bytes += grown,
            None => self.set(key.to_vec(), Some(value.to_vec())),
        }
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.set(key, None);
    }

    fn scan_prefix(&mut self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let known = self
            .complete
            .range(..=prefix.to_vec())
            .next_back()
            .is_some_and(|p| prefix.starts_with(p));
        if !known {
            for item in self.db.prefix_iterator(prefix) {
                let (k, v) = item.map_err(state_err)?;
                if !k.starts_with(prefix) {
                    break;
                }
                // The cache is authoritative for every key it holds.
                if !self.map.contains_key(&k) {
                    self.map.insert(
                        k.to_vec(),
                        Entry {
                            value: Some(v.to_vec()),
                            dirty: false,
                        },
                    );
                }
            }
            self.complete.insert(prefix.to_vec());
        }
        let mut out = Vec::new();
        if is_scanned(prefix) {
            for (k, e) in self.map.scanned.range(prefix.to_vec()..) {
                if !k.starts_with(prefix) {
                    break;
                }
                if let Some(v) = &e.value {
                    out.push((k.clone(), v.clone()));
                }
            }
        } else {
            // Values are not scanned by the API; a full pass, in order.
            let mut all: Vec<_> = self
                .map
                .points
                .iter()
                .filter(|(k, e)| k.starts_with(prefix) && e.value.is_some())
                .collect();
            all.sort_by(|a, b| a.0.cmp(b.0));
            out.extend(
                all.into_iter()
                    .filter_map(|(k, e)| Some((k.clone(), e.value.clone()?))),
            );
        }
        Ok(out)
    }
}
