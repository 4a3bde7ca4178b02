//! The keyed-state backend of a worker: a write-back cache over RocksDB.
//!
//! Reads are served from the cache, then RocksDB; writes stay in the cache,
//! marked dirty, until the worker drains them into the epoch's commit batch.
//! So RocksDB is written once per key per epoch, not once per record, and
//! never holds a write of an epoch that has not committed (I2).

use std::collections::HashMap;
use std::sync::Arc;

use rocksdb::DB;
use weir_core::{Error, Result, StateBackend};

struct Entry {
    value: Option<Vec<u8>>,
    dirty: bool,
}

/// A state write of the epoch: key and new value (`None` deletes).
pub(crate) type Write = (Vec<u8>, Option<Vec<u8>>);

pub(crate) struct CachedState {
    db: Arc<DB>,
    map: HashMap<Vec<u8>, Entry>,
    dirty: usize,
    capacity: usize,
}

impl CachedState {
    pub(crate) fn new(db: Arc<DB>, capacity: usize) -> Self {
        CachedState {
            db,
            map: HashMap::new(),
            dirty: 0,
            capacity,
        }
    }

    /// Takes the epoch's writes; they stay cached, clean, so that reads
    /// never miss them before the commit lands.
    pub(crate) fn take_writes(&mut self) -> Vec<Write> {
        let mut out = Vec::with_capacity(self.dirty);
        if self.dirty > 0 {
            for (k, e) in &mut self.map {
                if e.dirty {
                    e.dirty = false;
                    out.push((k.clone(), e.value.clone()));
                }
            }
        }
        self.dirty = 0;
        out
    }

    /// Drops clean entries when over capacity; called once the previous
    /// epoch is committed.
    pub(crate) fn trim(&mut self) {
        if self.map.len() > self.capacity {
            self.map.retain(|_, e| e.dirty);
        }
    }

    fn set(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        match self.map.get_mut(&key) {
            Some(e) => {
                if !e.dirty {
                    e.dirty = true;
                    self.dirty += 1;
                }
                e.value = value;
            }
            None => {
                self.dirty += 1;
                self.map.insert(key, Entry { value, dirty: true });
            }
        }
    }
}

fn state_err(e: rocksdb::Error) -> Error {
    Error::State(format!(
        "RocksDB read failed: {e}; the epoch cannot commit, restart to recover"
    ))
}

impl StateBackend for CachedState {
    fn get(&mut self, key: &[u8]) -> Result<Option<&[u8]>> {
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

    fn delete(&mut self, key: Vec<u8>) {
        self.set(key, None);
    }

    fn scan_prefix(&mut self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut merged = std::collections::BTreeMap::new();
        for item in self.db.prefix_iterator(prefix) {
            let (k, v) = item.map_err(state_err)?;
            if !k.starts_with(prefix) {
                break;
            }
            merged.insert(k.to_vec(), Some(v.to_vec()));
        }
        // The cache is authoritative for every key it holds.
        for (k, e) in &self.map {
            if k.starts_with(prefix) {
                merged.insert(k.clone(), e.value.clone());
            }
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }
}
