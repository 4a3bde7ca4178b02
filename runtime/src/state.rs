//! The keyed-state backend of a worker: a write-back cache over RocksDB.
//!
//! Reads are served from the cache, then RocksDB; writes stay in the cache,
//! marked dirty, until the worker drains them into the epoch's commit batch.
//! So RocksDB is written once per key per epoch, not once per record, and
//! never holds a write of an epoch that has not committed (I2).

use std::collections::{BTreeMap, BTreeSet};

use hashbrown::hash_table::Entry as TableEntry;
use hashbrown::HashTable;
use std::sync::Arc;

use rocksdb::DB;
use weir_core::state::is_scanned;
use weir_core::{Error, Result, StateBackend};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// What a map entry or timer costs beyond its key and value bytes: the
/// two vectors' headers, the flag, the tree's node share, and the
/// allocator's rounding of two small allocations.
const SCANNED_OVERHEAD: usize = 128;

/// What a value entry costs in the hash table: its slot at the table's
/// load factor (7/8) and its control byte.
const SLOT_COST: usize = size_of::<Slot>() * 8 / 7 + 1;

/// What a value entry too long for its slot costs beyond the slot and its
/// bytes: the allocation's room to grow and the allocator's rounding.
const HEAP_OVERHEAD: usize = 24;

/// What a key's copy in the epoch's list of written keys costs beyond its
/// bytes: the vector's header and the allocator's rounding.
const DIRTY_KEY_OVERHEAD: usize = 32;

/// The memory an entry of `key` holding `value` is counted for.
fn cost(key: &[u8], value: Option<&[u8]>) -> usize {
    let bytes = key.len() + value.map_or(0, <[u8]>::len);
    if is_scanned(key) {
        bytes + SCANNED_OVERHEAD
    } else if bytes <= INLINE {
        SLOT_COST
    } else {
        SLOT_COST + bytes + HEAP_OVERHEAD
    }
}

/// A state write of the epoch: key and new value (`None` deletes).
pub(crate) type Write = (Vec<u8>, Option<Vec<u8>>);

/// Key and value bytes up to this many live in the table's slot itself.
const INLINE: usize = 46;

/// A slot's bytes: in the slot when they fit (a word count's key and
/// counter do), else on the heap.
enum Bytes {
    Inline { len: u8, data: [u8; INLINE] },
    Heap(Vec<u8>),
}

impl Bytes {
    fn new(head: &[u8], tail: &[u8]) -> Bytes {
        let n = head.len() + tail.len();
        if n <= INLINE {
            let mut data = [0; INLINE];
            data[..head.len()].copy_from_slice(head);
            data[head.len()..n].copy_from_slice(tail);
            // `n` is at most `INLINE`.
            Bytes::Inline { len: n as u8, data }
        } else {
            // Room for the value to grow a little (a counter's varint) in place.
            let mut v = Vec::with_capacity(n + 8);
            v.extend_from_slice(head);
            v.extend_from_slice(tail);
            Bytes::Heap(v)
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Inline { len, data } => &data[..*len as usize],
            Bytes::Heap(v) => v,
        }
    }

    /// Replaces the bytes from `at` on with `tail`, reusing the storage
    /// where it fits (no allocation per update of a hot key).
    fn set_tail(&mut self, at: usize, tail: &[u8]) {
        let n = at + tail.len();
        match self {
            Bytes::Inline { len, data } if n <= INLINE => {
                data[at..n].copy_from_slice(tail);
                *len = n as u8;
            }
            Bytes::Heap(v) => {
                v.truncate(at);
                v.extend_from_slice(tail);
            }
            Bytes::Inline { data, .. } => {
                let grown = Bytes::new(&data[..at], tail);
                *self = grown;
            }
        }
    }
}

/// A cached value entry: its key and value together, in the slot when they
/// are short, so that the lookup that compares the key has the value at
/// hand (one memory access for the probe, the key and the value).
struct Slot {
    /// The key, then the value, if there is one.
    bytes: Bytes,
    key_len: usize,
    /// Whether a value follows the key (`false`: cached as absent).
    present: bool,
    dirty: bool,
}

impl Slot {
    fn new(key: &[u8], value: Option<&[u8]>, dirty: bool) -> Slot {
        Slot {
            bytes: Bytes::new(key, value.unwrap_or_default()),
            key_len: key.len(),
            present: value.is_some(),
            dirty,
        }
    }

    fn key(&self) -> &[u8] {
        &self.bytes.as_slice()[..self.key_len]
    }

    fn value(&self) -> Option<&[u8]> {
        self.present.then(|| &self.bytes.as_slice()[self.key_len..])
    }

    fn set_value(&mut self, value: Option<&[u8]>) {
        self.bytes.set_tail(self.key_len, value.unwrap_or_default());
        self.present = value.is_some();
    }
}

/// The cached value entries: a hash table of [`Slot`]s keyed by one xxh3
/// call over the key, seeded per process (so that crafted keys cannot be
/// made to collide on purpose).
struct Points {
    table: HashTable<Slot>,
    seed: u64,
    /// The bucket of the last key read: a processor's `get` then `put` of
    /// the same key finds it there without a second hash and probe.
    /// Cleared by every change that can move entries (insert, remove).
    last: Option<usize>,
    /// Hash (low bits) -> address of the slot of the key last read with
    /// that hash, for [`prefetch`](Points::prefetch). A stale hint (the
    /// table grew, the entry went) costs a wasted prefetch, never a read.
    hints: Vec<usize>,
    /// The hints of the last [`PREFETCH_STAGES`] prefetches, oldest at
    /// `cursor`: their slots are prefetched once the hints have arrived.
    pending: [usize; PREFETCH_STAGES],
    cursor: usize,
}

/// How many prefetches a slot's prefetch follows its hint's: the hint must
/// be in the cache before its address can be read without a stall.
const PREFETCH_STAGES: usize = 8;

impl Points {
    fn new() -> Self {
        use std::hash::BuildHasher;
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64);
        Points {
            table: HashTable::new(),
            seed,
            last: None,
            hints: Vec::new(),
            pending: [usize::MAX; PREFETCH_STAGES],
            cursor: 0,
        }
    }

    /// Remembers in `hints` that the key of `hash` is in the slot at
    /// `addr` of a table of `buckets` buckets.
    fn hint(hints: &mut Vec<usize>, buckets: usize, hash: u64, addr: usize) {
        // Half a hint per bucket: 4 bytes per bucket of 64.
        let want = (buckets / 2).next_power_of_two();
        if hints.len() < want {
            *hints = vec![0; want];
        }
        let at = hash as usize & (hints.len() - 1);
        hints[at] = addr;
    }

    /// Starts loading the hint of `key` into the cache, and the slot of
    /// the key whose hint was loaded [`PREFETCH_STAGES`] calls ago.
    fn prefetch(&mut self, key: &[u8]) {
        if self.hints.is_empty() {
            return;
        }
        let at = self.hash(key) as usize & (self.hints.len() - 1);
        prefetch_line(std::ptr::from_ref(&self.hints[at]).cast());
        let due = std::mem::replace(&mut self.pending[self.cursor], at);
        self.cursor = (self.cursor + 1) % PREFETCH_STAGES;
        if let Some(&addr) = self.hints.get(due) {
            // Only an address: a slot the table has since moved or freed
            // gets a wasted prefetch (which never faults), never a read.
            prefetch_line(std::ptr::without_provenance(addr));
        }
    }

    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        xxh3_64_with_seed(key, self.seed)
    }

    /// How the table rehashes a slot when it grows: [`hash`](Self::hash)
    /// of its key.
    fn rehash(seed: u64) -> impl Fn(&Slot) -> u64 {
        move |s| xxh3_64_with_seed(s.key(), seed)
    }

    /// The slot of `key`, with the value `load` reads when it is not
    /// cached (then `true`). One hash lookup, hit or miss: its bucket is
    /// kept for a `put`, and a hint to its slot for a prefetch.
    #[inline]
    fn get_or_load(
        &mut self,
        key: &[u8],
        load: impl FnOnce() -> Result<Option<Vec<u8>>>,
    ) -> Result<(&Slot, bool)> {
        let hash = self.hash(key);
        let buckets = self.table.num_buckets();
        let found = self
            .table
            .entry(hash, |s| s.key() == key, Self::rehash(self.seed));
        let (entry, loaded) = match found {
            TableEntry::Occupied(o) => (o, false),
            TableEntry::Vacant(v) => {
                let value = load()?;
                (v.insert(Slot::new(key, value.as_deref(), false)), true)
            }
        };
        self.last = Some(entry.bucket_index());
        let slot = entry.into_mut();
        // Sized by the table before an insert grew it: the next read
        // resizes the hints.
        Self::hint(
            &mut self.hints,
            buckets,
            hash,
            std::ptr::from_ref(slot).addr(),
        );
        Ok((slot, loaded))
    }

    fn find(&self, key: &[u8]) -> Option<&Slot> {
        self.table.find(self.hash(key), |s| s.key() == key)
    }

    fn find_mut(&mut self, key: &[u8]) -> Option<&mut Slot> {
        if let Some(i) = self.last {
            // Safe whatever the index: a wrong bucket fails the key check.
            if self.table.get_bucket(i).is_some_and(|s| s.key() == key) {
                return self.table.get_bucket_mut(i);
            }
        }
        let hash = self.hash(key);
        self.table.find_mut(hash, |s| s.key() == key)
    }

    /// Inserts a slot for a key that is not in the table.
    fn insert(&mut self, key: &[u8], value: Option<&[u8]>, dirty: bool) {
        let slot = Slot::new(key, value, dirty);
        self.last = None;
        self.table
            .insert_unique(self.hash(key), slot, Self::rehash(self.seed));
    }

    fn remove(&mut self, key: &[u8]) -> Option<Slot> {
        let hash = self.hash(key);
        let found = self.table.find_entry(hash, |s| s.key() == key).ok()?;
        self.last = None;
        Some(found.remove().0)
    }

    fn retain_dirty(&mut self) {
        self.table.retain(|s| s.dirty);
        self.last = None;
    }
}

/// A cached map entry or timer: its value (`None`: absent) and whether the
/// open epoch wrote it.
struct Entry {
    value: Option<Vec<u8>>,
    dirty: bool,
}

/// A cached entry as [`Tables`] shows it.
struct View<'a> {
    value: Option<&'a [u8]>,
    dirty: bool,
}

/// The cached entries: values in a hash table (point reads are one lookup),
/// map entries and timers in an ordered map (prefix scans are range reads).
/// Each key lives in exactly one, chosen by [`is_scanned`].
struct Tables {
    points: Points,
    scanned: BTreeMap<Vec<u8>, Entry>,
    /// The memory the entries are counted for (see [`cost`]).
    bytes: usize,
}

impl Default for Tables {
    fn default() -> Self {
        Tables {
            points: Points::new(),
            scanned: BTreeMap::new(),
            bytes: 0,
        }
    }
}

impl Tables {
    fn get(&self, key: &[u8]) -> Option<View<'_>> {
        if is_scanned(key) {
            self.scanned.get(key).map(|e| View {
                value: e.value.as_deref(),
                dirty: e.dirty,
            })
        } else {
            self.points.find(key).map(|s| View {
                value: s.value(),
                dirty: s.dirty,
            })
        }
    }

    fn contains_key(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Marks a cached entry clean; its value, if it is cached.
    fn clean(&mut self, key: &[u8]) -> Option<Option<Vec<u8>>> {
        if is_scanned(key) {
            let e = self.scanned.get_mut(key)?;
            e.dirty = false;
            Some(e.value.clone())
        } else {
            let s = self.points.find_mut(key)?;
            s.dirty = false;
            Some(s.value().map(<[u8]>::to_vec))
        }
    }

    /// Inserts an entry for a key that is not cached.
    fn insert(&mut self, key: Vec<u8>, value: Option<Vec<u8>>, dirty: bool) {
        self.bytes += cost(&key, value.as_deref());
        if is_scanned(&key) {
            self.scanned.insert(key, Entry { value, dirty });
        } else {
            self.points.insert(&key, value.as_deref(), dirty);
        }
    }

    fn remove(&mut self, key: &[u8]) {
        let removed = if is_scanned(key) {
            self.scanned
                .remove(key)
                .map(|e| cost(key, e.value.as_deref()))
        } else {
            self.points.remove(key).map(|s| cost(key, s.value()))
        };
        if let Some(freed) = removed {
            self.bytes -= freed;
        }
    }

    /// Replaces the value of a cached entry, marking it dirty: what it was
    /// before (see [`Before`]), and by how many bytes its cost grew.
    fn update(&mut self, key: &[u8], value: Option<&[u8]>) -> Option<(Before, usize)> {
        let new = cost(key, value);
        let (old, was_clean, was_absent) = if is_scanned(key) {
            let e = self.scanned.get_mut(key)?;
            let old = cost(key, e.value.as_deref());
            let was_absent = e.value.is_none();
            match (&mut e.value, value) {
                // Reuses the buffer: no allocation per update of a hot key.
                (Some(v), Some(new)) => {
                    v.clear();
                    v.extend_from_slice(new);
                }
                (slot, new) => *slot = new.map(<[u8]>::to_vec),
            }
            (old, !std::mem::replace(&mut e.dirty, true), was_absent)
        } else {
            let s = self.points.find_mut(key)?;
            let old = cost(key, s.value());
            let was_absent = s.value().is_none();
            s.set_value(value);
            (old, !std::mem::replace(&mut s.dirty, true), was_absent)
        };
        self.bytes = self.bytes - old + new;
        let before = match (was_clean, was_absent) {
            (false, _) => Before::Dirty,
            (true, true) => Before::Absent,
            (true, false) => Before::Present,
        };
        Some((before, new.saturating_sub(old)))
    }

    fn retain_dirty(&mut self) {
        self.points.retain_dirty();
        self.scanned.retain(|_, e| e.dirty);
        let points = self.points.table.iter().map(|s| cost(s.key(), s.value()));
        let scanned = self
            .scanned
            .iter()
            .map(|(k, e)| cost(k, e.value.as_deref()));
        self.bytes = points.chain(scanned).sum();
    }
}

/// A cached entry as it was before a write: already written in the open
/// epoch, or clean (as committed) and then absent or present.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Before {
    Dirty,
    Absent,
    Present,
}

pub(crate) struct CachedState {
    db: Arc<DB>,
    map: Tables,
    /// Keys written in the open epoch, each once, each with whether it is
    /// known to be absent from the committed state: deleted again, such a
    /// key needs no write at all (a timer, a join's waiting record that
    /// came and went within the epoch).
    dirty: Vec<(Vec<u8>, bool)>,
    /// What the entries of `dirty` were counted for when they became
    /// dirty (see [`cost`]): the size of the epoch's writes, roughly.
    dirty_bytes: usize,
    /// Bytes (keys and values) of the writes last taken.
    taken_bytes: u64,
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
            taken_bytes: 0,
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
        let mut bytes = 0;
        for (key, born) in std::mem::take(&mut self.dirty) {
            let Some(value) = self.map.clean(&key) else {
                continue;
            };
            if value.is_none() {
                self.deleted.push(key.clone());
                if born {
                    // Absent before the epoch and after it.
                    continue;
                }
            }
            bytes += (key.len() + value.as_ref().map_or(0, Vec::len)) as u64;
            out.push((key, value));
        }
        self.taken_bytes = bytes;
        out
    }

    /// Bytes (keys and values) of the writes [`take_writes`](Self::take_writes)
    /// took last.
    pub(crate) fn taken_bytes(&self) -> u64 {
        self.taken_bytes
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

    /// Roughly how many bytes the cache holds (see [`cost`]).
    pub(crate) fn cached_bytes(&self) -> usize {
        self.map.bytes
    }

    /// Roughly how many bytes the open epoch has written (each key
    /// counted once, at its first write).
    pub(crate) fn dirty_bytes(&self) -> usize {
        self.dirty_bytes
    }

    /// Writes `value` under `key`; `new` when the caller knows the key is
    /// absent from the committed state.
    fn set(&mut self, key: Vec<u8>, value: Option<Vec<u8>>, new: bool) {
        match self.map.update(&key, value.as_deref()) {
            // A value rewritten larger within the epoch counts its growth.
            Some((Before::Dirty, grown)) => self.dirty_bytes += grown,
            Some((before, _)) => {
                let born = new || before == Before::Absent;
                self.mark_dirty(key, value.as_deref(), born)
            }
            None => {
                self.mark_dirty(key.clone(), value.as_deref(), new);
                self.map.insert(key, value, true);
            }
        }
    }

    /// Records a key's first write of the epoch, and whether the key is
    /// known absent from the committed state. Counted with the key's
    /// second copy in `dirty` (its bytes and its vector's header), which
    /// large keys make no small part.
    fn mark_dirty(&mut self, key: Vec<u8>, value: Option<&[u8]>, born: bool) {
        self.dirty_bytes += cost(&key, value) + key.len() + DIRTY_KEY_OVERHEAD;
        self.dirty.push((key, born));
    }
}

/// Asks the CPU to load the cache line at `ptr` (any address: a prefetch
/// never faults); nothing on other CPUs.
#[inline]
fn prefetch_line(ptr: *const i8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults and reads nothing into
    // the program. SSE, which it needs, is part of x86_64.
    unsafe {
        std::arch::x86_64::_mm_prefetch(ptr, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

fn state_err(e: rocksdb::Error) -> Error {
    Error::State(format!(
        "RocksDB read failed: {e}; the epoch cannot commit, restart to recover"
    ))
}

impl StateBackend for CachedState {
    fn get(&mut self, key: &[u8]) -> Result<Option<&[u8]>> {
        if !is_scanned(key) {
            let Tables { points, bytes, .. } = &mut self.map;
            let db = &self.db;
            let (slot, loaded) = points.get_or_load(key, || db.get(key).map_err(state_err))?;
            if loaded {
                *bytes += cost(key, slot.value());
            }
            return Ok(slot.value());
        }
        if !self.map.contains_key(key) {
            let v = self.db.get(key).map_err(state_err)?;
            self.map.insert(key.to_vec(), v, false);
        }
        Ok(self.map.get(key).and_then(|e| e.value))
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.set(key, Some(value), false);
    }

    fn put_new(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.set(key, Some(value), true);
    }

    fn put_slice(&mut self, key: &[u8], value: &[u8]) {
        match self.map.update(key, Some(value)) {
            Some((Before::Dirty, grown)) => self.dirty_bytes += grown,
            Some((before, _)) => {
                self.mark_dirty(key.to_vec(), Some(value), before == Before::Absent)
            }
            None => self.set(key.to_vec(), Some(value.to_vec()), false),
        }
    }

    fn prefetch(&mut self, key: &[u8]) {
        if !is_scanned(key) {
            self.map.points.prefetch(key);
        }
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.set(key, None, false);
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
                    self.map.insert(k.to_vec(), Some(v.to_vec()), false);
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
            out.extend(self.map.points.table.iter().filter_map(|s| {
                let k = s.key();
                let v = s.value().filter(|_| k.starts_with(prefix))?;
                Some((k.to_vec(), v.to_vec()))
            }));
            out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::state::{keyed_key, KEYED_TAG, MAP_TAG};

    fn open() -> (tempfile::TempDir, Arc<DB>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = DB::open_default(dir.path()).expect("open RocksDB");
        (dir, Arc::new(db))
    }

    fn key(word: &str) -> Vec<u8> {
        keyed_key(KEYED_TAG, 7, 0, "count", word.as_bytes()).expect("state key")
    }

    #[test]
    fn a_slot_fills_one_cache_line() {
        assert!(size_of::<Slot>() <= 64, "{} bytes", size_of::<Slot>());
    }

    #[test]
    fn values_grow_from_the_slot_to_the_heap_and_back_into_the_writes() -> Result<()> {
        let (_dir, db) = open();
        let mut s = CachedState::new(db.clone(), 1 << 20);
        let k = key("w");
        assert_eq!(s.get(&k)?, None);
        s.put_slice(&k, b"1");
        assert_eq!(s.get(&k)?, Some(&b"1"[..]));
        // Past what the slot holds inline, then short again.
        let long = vec![b'x'; 100];
        s.put_slice(&k, &long);
        assert_eq!(s.get(&k)?, Some(&long[..]));
        s.put_slice(&k, b"22");
        assert_eq!(s.get(&k)?, Some(&b"22"[..]));
        // A key too long for the slot.
        let big = key(&"y".repeat(80));
        s.put(big.clone(), b"3".to_vec());
        s.delete(k.clone());
        assert_eq!(s.get(&k)?, None);
        // `w` was absent when the epoch began, and is again: no write.
        assert_eq!(s.take_writes(), vec![(big.clone(), Some(b"3".to_vec()))]);
        // Taken writes stay readable, clean, and the next epoch starts empty.
        assert_eq!(s.get(&big)?, Some(&b"3"[..]));
        assert!(s.take_writes().is_empty());
        Ok(())
    }

    #[test]
    fn a_key_absent_before_the_epoch_and_after_it_is_written_nowhere() -> Result<()> {
        let (_dir, db) = open();
        let mut s = CachedState::new(db.clone(), 1 << 20);
        let (read, new, blind, old) = (key("read"), key("new"), key("blind"), key("old"));
        s.put(old.clone(), b"1".to_vec());
        assert_eq!(s.take_writes().len(), 1);
        // Read as absent, then written and deleted; known new (a timer);
        // deleted without being read; present before the epoch.
        assert_eq!(s.get(&read)?, None);
        s.put(read.clone(), b"2".to_vec());
        s.put_new(new.clone(), b"3".to_vec());
        s.put(blind.clone(), b"4".to_vec());
        for k in [&read, &new, &blind, &old] {
            s.delete(k.clone());
        }
        let mut writes = s.take_writes();
        writes.sort();
        let mut want = vec![(blind.clone(), None), (old.clone(), None)];
        want.sort();
        assert_eq!(writes, want, "only what may be in RocksDB is deleted there");
        for k in [&read, &new, &blind, &old] {
            assert_eq!(s.get(k)?, None);
        }
        // Written again in a later epoch, a key deleted unwritten is new again.
        s.trim();
        assert_eq!(s.get(&read)?, None);
        s.put(read.clone(), b"5".to_vec());
        assert_eq!(s.take_writes(), vec![(read, Some(b"5".to_vec()))]);
        Ok(())
    }

    #[test]
    fn a_read_leaves_a_hint_to_its_slot_and_stale_hints_are_harmless() -> Result<()> {
        let (_dir, db) = open();
        let mut s = CachedState::new(db, 1 << 10);
        s.prefetch(&key("nothing read yet"));
        for i in 0..1000 {
            s.put_slice(&key(&format!("k{i}")), b"1");
        }
        assert_eq!(s.get(&key("k7"))?, Some(&b"1"[..]));
        let points = &s.map.points;
        let hinted = points.hints[points.hash(&key("k7")) as usize & (points.hints.len() - 1)];
        let slot = points.find(&key("k7")).expect("k7 is cached");
        assert_eq!(hinted, std::ptr::from_ref(slot).addr());
        // The epoch ends and the clean entries go (the cache is over its
        // capacity): every hint is stale now, and prefetches change nothing.
        assert_eq!(s.take_writes().len(), 1000);
        s.trim();
        assert_eq!(s.map.points.table.len(), 0);
        for i in 0..1000 {
            s.prefetch(&key(&format!("k{i}")));
        }
        s.prefetch(&keyed_key(MAP_TAG, 7, 0, "m", b"x")?);
        assert_eq!(s.get(&key("k7"))?, None, "nothing was committed to RocksDB");
        Ok(())
    }

    #[test]
    fn a_put_after_a_get_of_another_key_writes_the_right_entry() -> Result<()> {
        let (_dir, db) = open();
        db.put(key("a"), b"5").expect("seed RocksDB");
        let mut s = CachedState::new(db, 1 << 20);
        // Many keys, so that the table grows between the get and the put.
        assert_eq!(s.get(&key("a"))?, Some(&b"5"[..]));
        for i in 0..1000 {
            s.put_slice(&key(&format!("k{i}")), b"1");
        }
        s.put_slice(&key("a"), b"6");
        assert_eq!(s.get(&key("k0"))?, Some(&b"1"[..]));
        s.put_slice(&key("k999"), b"2");
        assert_eq!(s.get(&key("a"))?, Some(&b"6"[..]));
        assert_eq!(s.get(&key("k999"))?, Some(&b"2"[..]));
        assert_eq!(s.take_writes().len(), 1001);
        Ok(())
    }

    #[test]
    fn trim_drops_clean_entries_over_capacity_and_reads_come_back_from_rocksdb() -> Result<()> {
        let (_dir, db) = open();
        let mut s = CachedState::new(db.clone(), 4096);
        for i in 0..100 {
            s.put_slice(&key(&format!("k{i}")), b"1");
        }
        let mut batch = rocksdb::WriteBatch::default();
        for (k, v) in s.take_writes() {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            }
        }
        db.write(batch).expect("write the epoch");
        s.trim();
        assert!(
            s.map.bytes <= 4096,
            "clean entries over capacity are dropped"
        );
        assert_eq!(s.get(&key("k42"))?, Some(&b"1"[..]));
        Ok(())
    }

    #[test]
    fn point_values_under_a_prefix_are_scanned_in_key_order() -> Result<()> {
        let (_dir, db) = open();
        let mut s = CachedState::new(db, 1 << 20);
        for w in ["c", "a", "b"] {
            s.put_slice(&key(w), w.as_bytes());
        }
        let map = keyed_key(MAP_TAG, 7, 0, "m", b"a").expect("map key");
        s.put(map, b"m".to_vec());
        let prefix = &key("a")[..6];
        let got: Vec<Vec<u8>> = s.scan_prefix(prefix)?.into_iter().map(|e| e.1).collect();
        assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        Ok(())
    }
}
