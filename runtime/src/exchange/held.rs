//! Records of a run's own that wait for a shard's backlog, at an exchange
//! after a processor (`key_by` after `process`).
//!
//! A word's counts reach its letter's list in the order they were made:
//! from one instance in memory, or through the repartition topic while
//! another instance holds the letter. When this run took the letter's
//! shard over, the shard may still hold counts forwarded to it before;
//! one of this run's own, sent in memory, would overtake them. So a worker
//! after such an exchange holds a record from a worker of this run whose
//! key group's shard is still behind (see [`Backlog`](super::Backlog)):
//! it keeps it in keyed state, in the key group's own entries, committed
//! with the epoch and moving with the group to whichever instance holds
//! it next, and applies it, in order, once the shard's reader tells it
//! (in band, after the records before) that it has read where the shard
//! ended at this run's start. No barrier waits for the backlog: epochs
//! commit while it is read.
//!
//! A record held by a run that stopped before its shard caught up goes
//! after the records its shard held when that run started, and before
//! the rest: each entry keeps that position, and the reader of a later
//! run tells the worker when it gets there (see [`release_points`]).
//!
//! Once a key group's shard has caught up (or at the start of a run that
//! does not wait for it), what the group held is due: the worker applies
//! it a batch at a time, within each epoch's budget of state writes, so
//! that a long backlog's records are not one huge epoch; meanwhile
//! whatever else reaches the group, from a worker or a shard, is held
//! behind them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use weir_core::exec::EncodedKeys;
use weir_core::keygroup::key_group;
use weir_core::state::{keyed_key, keyed_prefix, MAP_TAG};
use weir_core::{Codec, Error, Header, Key, Record, Result, StateBackend};

use super::Mark;

/// The node number of the held records' entries: no processor's.
const HELD_NODE: u16 = u16::MAX;
/// The name of the held records' entries.
const HELD_NAME: &str = "weir.held";

/// Where the records of a run's shards wait in a worker after a further
/// exchange: for each shard read this run, the source it reaches the
/// workers as, and where its backlog ends.
#[derive(Clone, Debug, Default)]
pub(crate) struct Waits {
    /// Shards of the repartition topic (key group `g`'s is `g % count`);
    /// 0 without one.
    pub(crate) count: u16,
    /// By shard number: its source, and its position once its backlog is
    /// read (where it ended at the start, or where it starts if later).
    pub(crate) shards: BTreeMap<u16, (usize, u64)>,
}

/// A worker's held records, as the worker sees them (its types erased).
pub(crate) trait Hold<K, V>: Send {
    /// Finds the records held before this run; those whose shard it does
    /// not wait for are due (see [`drain`](Self::drain)).
    fn open(&mut self, state: &mut dyn StateBackend) -> Result<()>;
    /// Whether a key group still waits for its shard, or has records due:
    /// records may be held ([`arrive`](Self::arrive)).
    fn waits(&self) -> bool;
    /// Whether records are due.
    fn draining(&self) -> bool;
    /// Up to `max` of the records due, in order, to process now; each
    /// key group's last once none is left.
    fn drain(&mut self, max: usize, state: &mut dyn StateBackend) -> Result<Vec<Record<K, V>>>;
    /// Whether records are held: the worker's watermark waits, lest it
    /// pass them.
    fn holds(&self) -> bool;
    /// Holds the records of a batch from source `source` whose key group
    /// waits (from a worker of this run) or has records due (from any);
    /// returns the rest, to process now.
    fn arrive(
        &mut self,
        source: usize,
        batch: Vec<Record<K, V>>,
        keys: EncodedKeys,
        state: &mut dyn StateBackend,
    ) -> Result<(Vec<Record<K, V>>, EncodedKeys)>;
    /// The shard read as `source` reached `mark`: returns the records
    /// held for its key groups up to there, in order, to process now;
    /// once it caught up, all of them are due instead (see
    /// [`drain`](Self::drain)).
    fn reached(
        &mut self,
        source: usize,
        mark: Mark,
        state: &mut dyn StateBackend,
    ) -> Result<Vec<Record<K, V>>>;
}

/// The held records of one worker of layer `layer` (see the module).
pub(crate) struct Held {
    layer: u8,
    key_groups: u16,
    /// Its key groups.
    groups: Vec<u16>,
    /// By key group: the source whose backlog it waits for, and where
    /// that backlog ends.
    waits_on: Vec<Option<(usize, u64)>>,
    waiting: usize,
    /// The sources that are shards' readers.
    shards: BTreeSet<usize>,
    /// By key group: records held.
    held: BTreeMap<u16, usize>,
    /// Key groups whose records are due, and those of the first of them
    /// read and not yet applied.
    due: BTreeSet<u16>,
    cursor: VecDeque<(Vec<u8>, Vec<u8>)>,
    cursor_of: Option<u16>,
    next_seq: u64,
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl Held {
    /// The held records of a worker of layer `layer` (1 for the first
    /// after a processor) owning `groups` of `key_groups`, in a run whose
    /// shards are `waits`.
    pub(crate) fn new(layer: u8, groups: &[u16], key_groups: u16, waits: &Waits) -> Self {
        let mut waits_on = vec![None; usize::from(key_groups)];
        let mut waiting = 0;
        for &g in groups {
            if waits.count == 0 {
                break;
            }
            if let Some(&(source, at)) = waits.shards.get(&(g % waits.count)) {
                waits_on[usize::from(g)] = Some((source, at));
                waiting += 1;
            }
        }
        Held {
            layer,
            key_groups,
            groups: groups.to_vec(),
            waits_on,
            waiting,
            shards: waits.shards.values().map(|(source, _)| *source).collect(),
            held: BTreeMap::new(),
            due: BTreeSet::new(),
            cursor: VecDeque::new(),
            cursor_of: None,
            next_seq: 0,
            key_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }

    /// Whether records are held (see [`Hold::holds`]).
    fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// The prefix of key group `group`'s held records at this layer.
    fn prefix(&self, group: u16) -> Result<Vec<u8>> {
        keyed_key(MAP_TAG, group, HELD_NODE, HELD_NAME, &[self.layer])
    }

    fn hold<K: Key, V: Codec>(
        &mut self,
        record: &Record<K, V>,
        key: &[u8],
        group: u16,
        at: u64,
        state: &mut dyn StateBackend,
    ) -> Result<()> {
        let mut entry = self.prefix(group)?;
        entry.extend_from_slice(&self.next_seq.to_be_bytes());
        self.next_seq += 1;
        self.value_buf.clear();
        encode(at, record, key, &mut self.value_buf)?;
        state.put(entry, self.value_buf.clone());
        *self.held.entry(group).or_default() += 1;
        Ok(())
    }

    /// Releases key group `group`'s records held up to `position` into
    /// `out`, in order.
    fn release<K: Key, V: Codec>(
        &mut self,
        group: u16,
        position: u64,
        state: &mut dyn StateBackend,
        out: &mut Vec<Record<K, V>>,
    ) -> Result<()> {
        if !self.held.contains_key(&group) {
            return Ok(());
        }
        let mut left = 0;
        for (k, v) in state.scan_prefix(&self.prefix(group)?)? {
            if left > 0 {
                left += 1;
                continue;
            }
            let (at, record) = decode(&v)?;
            if at > position {
                // In order: none after it either.
                left += 1;
                continue;
            }
            state.delete(k);
            out.push(record);
        }
        if left == 0 {
            self.held.remove(&group);
        } else {
            self.held.insert(group, left);
        }
        Ok(())
    }
}

impl<K: Key, V: Codec + Send> Hold<K, V> for Held {
    fn open(&mut self, state: &mut dyn StateBackend) -> Result<()> {
        for g in self.groups.clone() {
            let entries = state.scan_prefix(&self.prefix(g)?)?;
            let Some((last, _)) = entries.last() else {
                continue;
            };
            let seq = last
                .len()
                .checked_sub(8)
                .and_then(|at| last.get(at..))
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| corrupt("an entry's key is too short"))?;
            self.next_seq = self.next_seq.max(seq + 1);
            self.held.insert(g, entries.len());
            if self.waits_on[usize::from(g)].is_none() {
                self.due.insert(g);
            }
        }
        Ok(())
    }

    #[inline]
    fn waits(&self) -> bool {
        self.waiting > 0 || !self.due.is_empty()
    }

    #[inline]
    fn draining(&self) -> bool {
        !self.due.is_empty()
    }

    fn drain(&mut self, max: usize, state: &mut dyn StateBackend) -> Result<Vec<Record<K, V>>> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(&g) = self.due.first() else {
                break;
            };
            let left = self.held.get(&g).copied().unwrap_or(0);
            if left == 0 {
                self.due.remove(&g);
                self.held.remove(&g);
                self.cursor.clear();
                continue;
            }
            if self.cursor_of != Some(g) {
                // Another group became the first: read it afresh.
                self.cursor.clear();
                self.cursor_of = Some(g);
            }
            if self.cursor.is_empty() {
                // Read once per group, and again for what came behind.
                self.cursor.extend(state.scan_prefix(&self.prefix(g)?)?);
                if self.cursor.is_empty() {
                    return Err(corrupt("a key group's count is ahead of its entries"));
                }
            }
            let take = (max - out.len()).min(self.cursor.len()).min(left);
            for (k, v) in self.cursor.drain(..take) {
                out.push(decode(&v)?.1);
                state.delete(k);
            }
            self.held.insert(g, left - take);
        }
        Ok(out)
    }

    #[inline]
    fn holds(&self) -> bool {
        self.holding()
    }

    fn arrive(
        &mut self,
        source: usize,
        batch: Vec<Record<K, V>>,
        keys: EncodedKeys,
        state: &mut dyn StateBackend,
    ) -> Result<(Vec<Record<K, V>>, EncodedKeys)> {
        let from_shard = self.shards.contains(&source);
        if from_shard && self.due.is_empty() {
            return Ok((batch, keys));
        }
        let known = keys.len() == batch.len();
        let mut now = Vec::with_capacity(batch.len());
        let mut now_keys = EncodedKeys::default();
        for (i, record) in batch.into_iter().enumerate() {
            let (key, group) = match keys.get(i).filter(|_| known) {
                Some((key, group)) => (key, group),
                None => {
                    self.key_buf.clear();
                    weir_core::encode_key(&record.key, &mut self.key_buf)?;
                    let group = key_group(&self.key_buf, self.key_groups);
                    (&self.key_buf[..], group)
                }
            };
            let key = key.to_vec();
            match self.waits_on.get(usize::from(group)).copied().flatten() {
                Some((_, at)) if !from_shard => self.hold(&record, &key, group, at, state)?,
                // Behind what is due (all of it at or before here).
                _ if self.due.contains(&group) => self.hold(&record, &key, group, 0, state)?,
                _ => {
                    now_keys.push(&key, group)?;
                    now.push(record);
                }
            }
        }
        Ok((now, now_keys))
    }

    fn reached(
        &mut self,
        source: usize,
        mark: Mark,
        state: &mut dyn StateBackend,
    ) -> Result<Vec<Record<K, V>>> {
        let Mark {
            position,
            caught_up,
        } = mark;
        let mut out = Vec::new();
        for g in self.groups.clone() {
            let gi = usize::from(g);
            if self.waits_on[gi].is_none_or(|(s, _)| s != source) {
                continue;
            }
            if caught_up {
                self.waits_on[gi] = None;
                self.waiting -= 1;
                if self.held.contains_key(&g) {
                    self.due.insert(g);
                }
            } else {
                self.release(g, position, state, &mut out)?;
            }
        }
        Ok(out)
    }
}

/// The positions, after `from`, of shard records that key groups
/// `groups` held at any layer wait for (see the module): where their
/// shard's reader must stop and tell the workers.
pub(crate) fn release_points(
    db: &rocksdb::DB,
    groups: impl Iterator<Item = u16>,
    from: u64,
) -> Result<BTreeSet<u64>> {
    let mut points = BTreeSet::new();
    for g in groups {
        let prefix = keyed_prefix(MAP_TAG, g, HELD_NODE, HELD_NAME)?;
        for entry in db.prefix_iterator(&prefix) {
            let (k, v) = entry.map_err(|e| Error::State(format!("reading held records: {e}")))?;
            if !k.starts_with(&prefix) {
                break;
            }
            let at = position_of(&v)?;
            if at > from {
                points.insert(at);
            }
        }
    }
    Ok(points)
}

fn corrupt(what: &str) -> Error {
    Error::State(format!(
        "a record held for a shard's backlog is unreadable ({what}): the state directory is damaged; restore it from a checkpoint"
    ))
}

/// An entry's value: `at:u64 | ts_flag:u8 | ts:i64 | key_len:u32 | key |
/// headers:u32 | (name_len:u32 | name | value_len:u32 | value)* | value`.
fn encode<K, V: Codec>(at: u64, r: &Record<K, V>, key: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let len = |n: usize| {
        u32::try_from(n).map_err(|_| Error::State("a held record's field exceeds 4 GiB".into()))
    };
    out.extend_from_slice(&at.to_be_bytes());
    out.push(u8::from(r.timestamp.is_some()));
    out.extend_from_slice(&r.timestamp.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&len(key.len())?.to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&len(r.headers.len())?.to_be_bytes());
    for h in &r.headers {
        out.extend_from_slice(&len(h.name.len())?.to_be_bytes());
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(&len(h.value.len())?.to_be_bytes());
        out.extend_from_slice(&h.value);
    }
    r.value.encode_into(out)
}

/// Reads an entry's value front to back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(corrupt("it ends early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let b = self.take(N)?;
        <[u8; N]>::try_from(b).map_err(|_| corrupt("it ends early"))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = u32::from_be_bytes(self.array()?) as usize;
        self.take(n)
    }
}

fn position_of(v: &[u8]) -> Result<u64> {
    Ok(u64::from_be_bytes(Reader(v).array()?))
}

fn decode<K: Key, V: Codec>(v: &[u8]) -> Result<(u64, Record<K, V>)> {
    let mut r = Reader(v);
    let at = u64::from_be_bytes(r.array()?);
    let [has_ts] = r.array()?;
    let ts = i64::from_be_bytes(r.array()?);
    let key = K::decode(r.bytes()?)?;
    let headers = u32::from_be_bytes(r.array()?);
    let mut record_headers = Vec::new();
    for _ in 0..headers {
        let name = String::from_utf8(r.bytes()?.to_vec())
            .map_err(|_| corrupt("a header's name is not UTF-8"))?;
        let value = r.bytes()?.to_vec();
        record_headers.push(Header { name, value });
    }
    let value = V::decode(r.0)?;
    let mut record = Record::new(key, value);
    record.timestamp = (has_ts == 1).then_some(ts);
    record.headers = record_headers;
    Ok((at, record))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::state::CachedState;

    fn open() -> (tempfile::TempDir, Arc<rocksdb::DB>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Arc::new(rocksdb::DB::open_default(dir.path()).expect("open RocksDB"));
        (dir, db)
    }

    /// Key groups 0..4 in two shards (`g % 2`); shard 0 read as source
    /// 5, behind until 100; shard 1 not read this run.
    fn waits() -> Waits {
        Waits {
            count: 2,
            shards: [(0, (5, 100))].into_iter().collect(),
        }
    }

    fn batch(words: &[(&str, u64)]) -> (Vec<Record<String, u64>>, EncodedKeys) {
        let mut keys = EncodedKeys::default();
        let mut records = Vec::new();
        for (w, n) in words {
            let mut k = Vec::new();
            weir_core::encode_key(&w.to_string(), &mut k).expect("key");
            keys.push(&k, key_group(&k, 4)).expect("keys");
            let mut r = Record::new(w.to_string(), *n).with_timestamp(*n as i64);
            r.headers.push(Header {
                name: "h".into(),
                value: vec![*n as u8],
            });
            records.push(r);
        }
        (records, keys)
    }

    fn commit(state: &mut CachedState, db: &rocksdb::DB) {
        let mut wb = rocksdb::WriteBatch::default();
        for (k, v) in state.take_writes() {
            match v {
                Some(v) => wb.put(k, v),
                None => wb.delete(k),
            }
        }
        db.write(wb).expect("commit");
    }

    /// Words of both shards' key groups, several per group.
    fn words() -> Vec<(&'static str, u64)> {
        ["a", "b", "c", "d", "e", "f", "g", "h"]
            .iter()
            .enumerate()
            .map(|(i, w)| (*w, i as u64))
            .collect()
    }

    /// What `held` releases when source `source` reaches `position`.
    fn reach(
        held: &mut Held,
        source: usize,
        position: u64,
        caught_up: bool,
        state: &mut CachedState,
    ) -> Result<Vec<Record<String, u64>>> {
        let mark = Mark {
            position,
            caught_up,
        };
        held.reached(source, mark, state)
    }

    fn shard_of(word: &str) -> u16 {
        let mut k = Vec::new();
        weir_core::encode_key(&word.to_string(), &mut k).expect("key");
        key_group(&k, 4) % 2
    }

    fn group_of(word: &str) -> u16 {
        let mut k = Vec::new();
        weir_core::encode_key(&word.to_string(), &mut k).expect("key");
        key_group(&k, 4)
    }

    /// Each key group's records, in order: the order that matters.
    fn by_group(records: &[Record<String, u64>]) -> BTreeMap<u16, Vec<Record<String, u64>>> {
        let mut out: BTreeMap<u16, Vec<_>> = BTreeMap::new();
        for r in records {
            out.entry(group_of(&r.key)).or_default().push(r.clone());
        }
        out
    }

    /// What is due, drained two at a time.
    fn drain_all(held: &mut Held, state: &mut CachedState) -> Result<Vec<Record<String, u64>>> {
        let mut out = Vec::new();
        while Hold::<String, u64>::draining(held) {
            let due: Vec<Record<String, u64>> = held.drain(2, state)?;
            assert!(due.len() <= 2);
            out.extend(due);
        }
        Ok(out)
    }

    #[test]
    fn records_of_a_shard_behind_wait_in_state_and_come_back_in_order_when_it_catches_up(
    ) -> Result<()> {
        let (_dir, db) = open();
        let mut state = CachedState::new(db.clone(), 1 << 20);
        let mut held = Held::new(1, &[0, 1, 2, 3], 4, &waits());
        Hold::<String, u64>::open(&mut held, &mut state)?;
        assert!(held.waiting > 0 && !held.holding());
        let (records, keys) = batch(&words());
        let (now, now_keys) = held.arrive(0, records.clone(), keys, &mut state)?;
        let behind: Vec<_> = records
            .iter()
            .filter(|r| shard_of(&r.key) == 0)
            .cloned()
            .collect();
        assert!(!behind.is_empty() && behind.len() < records.len());
        assert_eq!(now.len() + behind.len(), records.len());
        assert_eq!(now_keys.len(), now.len());
        assert!(now.iter().all(|r| shard_of(&r.key) == 1));
        assert!(held.holding());
        // The shard's own records are its backlog: they go on.
        let (shard, keys) = batch(&words());
        let (now, _) = held.arrive(5, shard.clone(), keys, &mut state)?;
        assert_eq!(now, shard);
        // Committed, the run stops: a later one restores them.
        commit(&mut state, &db);
        // A mark of another source, or short of their position, releases nothing.
        let out = reach(&mut held, 6, 500, true, &mut state)?;
        assert!(out.is_empty() && !Hold::<String, u64>::draining(&held));
        let out = reach(&mut held, 5, 99, false, &mut state)?;
        assert!(out.is_empty());
        // Caught up, they are due, a batch at a time; what reaches their
        // key groups meanwhile, from the shard or a worker, waits behind.
        let out = reach(&mut held, 5, 100, true, &mut state)?;
        assert!(out.is_empty() && Hold::<String, u64>::draining(&held));
        let mut first: Vec<Record<String, u64>> = held.drain(2, &mut state)?;
        assert_eq!(first.len(), 2);
        let (late, keys) = batch(&[("a", 90), ("b", 91), ("c", 92), ("d", 93)]);
        let (now, _) = held.arrive(5, late.clone(), keys, &mut state)?;
        let due: BTreeSet<u16> = behind.iter().map(|r| group_of(&r.key)).collect();
        let late_behind: Vec<_> = late
            .iter()
            .filter(|r| due.contains(&group_of(&r.key)))
            .cloned()
            .collect();
        assert_eq!(now.len() + late_behind.len(), late.len());
        first.extend(drain_all(&mut held, &mut state)?);
        let mut expected = behind.clone();
        expected.extend(late_behind);
        assert_eq!(
            by_group(&first),
            by_group(&expected),
            "in order, with times and headers"
        );
        assert!(held.waiting == 0 && !held.holding());
        // Caught up, records go straight on.
        let (records, keys) = batch(&words());
        let (now, _) = held.arrive(0, records.clone(), keys, &mut state)?;
        assert_eq!(now, records);
        commit(&mut state, &db);
        assert!(release_points(&db, 0..4, 0)?.is_empty(), "none left");
        Ok(())
    }

    #[test]
    fn a_later_run_releases_them_at_their_position_or_at_once_without_a_reader() -> Result<()> {
        let (_dir, db) = open();
        let mut state = CachedState::new(db.clone(), 1 << 20);
        let mut held = Held::new(1, &[0, 1, 2, 3], 4, &waits());
        Hold::<String, u64>::open(&mut held, &mut state)?;
        let (records, keys) = batch(&words());
        held.arrive(0, records.clone(), keys, &mut state)?;
        commit(&mut state, &db);
        let behind: Vec<_> = records
            .iter()
            .filter(|r| shard_of(&r.key) == 0)
            .cloned()
            .collect();
        // The shard's reader starts before 100: it stops there.
        assert_eq!(release_points(&db, [0, 2].into_iter(), 40)?, [100].into());
        assert!(release_points(&db, [0, 2].into_iter(), 100)?.is_empty());
        // Another run whose backlog of that shard ends at 300 holds more.
        let later = Waits {
            count: 2,
            shards: [(0, (7, 300))].into_iter().collect(),
        };
        let mut state = CachedState::new(db.clone(), 1 << 20);
        let mut again = Held::new(1, &[0, 1, 2, 3], 4, &later);
        Hold::<String, u64>::open(&mut again, &mut state)?;
        assert!(again.holding() && !Hold::<String, u64>::draining(&again));
        let (more, keys) = batch(&[("a", 50), ("c", 51), ("e", 52), ("g", 53)]);
        again.arrive(0, more.clone(), keys, &mut state)?;
        let more: Vec<_> = more.into_iter().filter(|r| shard_of(&r.key) == 0).collect();
        let out = reach(&mut again, 7, 100, false, &mut state)?;
        assert_eq!(
            by_group(&out),
            by_group(&behind),
            "the first run's, at their position"
        );
        let out = reach(&mut again, 7, 300, true, &mut state)?;
        assert!(out.is_empty());
        let out = drain_all(&mut again, &mut state)?;
        assert_eq!(by_group(&out), by_group(&more));
        commit(&mut state, &db);
        // A run that does not read their shard has them due at once.
        let mut state = CachedState::new(db.clone(), 1 << 20);
        let mut first = Held::new(1, &[0, 1, 2, 3], 4, &waits());
        Hold::<String, u64>::open(&mut first, &mut state)?;
        let (records, keys) = batch(&words());
        first.arrive(0, records.clone(), keys, &mut state)?;
        commit(&mut state, &db);
        let mut state = CachedState::new(db.clone(), 1 << 20);
        let mut alone = Held::new(1, &[0, 1, 2, 3], 4, &Waits::default());
        Hold::<String, u64>::open(&mut alone, &mut state)?;
        let out = drain_all(&mut alone, &mut state)?;
        assert_eq!(by_group(&out), by_group(&behind));
        assert!(alone.waiting == 0 && !alone.holding());
        Ok(())
    }
}
