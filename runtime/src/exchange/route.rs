//! Routing by key group: the batches a task fills for each worker of the
//! layer after an exchange, with the keys' encodings and groups computed
//! once and handed on (see [`EncodedKeys`]).

use weir_core::exec::EncodedKeys;
use weir_core::keygroup::{key_group, owner};
use weir_core::{Key, Record, Result};

use super::Msg;

/// Bytes per key to reserve in a new batch's [`EncodedKeys`].
const KEY_BYTES_GUESS: usize = 16;

/// One batch per worker, filled by key group.
pub(crate) struct Router<K, V> {
    /// The source its batches come from (see [`Msg::Batch`]).
    source: usize,
    bufs: Vec<Vec<Record<K, V>>>,
    /// The encoded keys of `bufs`' records, handed on with them.
    keys: Vec<EncodedKeys>,
    batch: usize,
    key_groups: u16,
    key_buf: Vec<u8>,
}

impl<K: Key, V> Router<K, V> {
    /// Batches of up to `batch` records for `workers` workers, from
    /// their source number `source`.
    pub(crate) fn new(source: usize, workers: usize, batch: usize, key_groups: u16) -> Self {
        Router {
            source,
            bufs: (0..workers).map(|_| Vec::new()).collect(),
            keys: (0..workers).map(|_| EncodedKeys::default()).collect(),
            batch,
            key_groups,
            key_buf: Vec::new(),
        }
    }

    /// Encodes `key` and returns its key group; its bytes are
    /// [`key_bytes`](Self::key_bytes) until the next call.
    pub(crate) fn group_of(&mut self, key: &K) -> Result<u16> {
        self.key_buf.clear();
        weir_core::encode_key(key, &mut self.key_buf)?;
        Ok(key_group(&self.key_buf, self.key_groups))
    }

    /// The key last encoded by [`group_of`](Self::group_of).
    pub(crate) fn key_bytes(&self) -> &[u8] {
        &self.key_buf
    }

    /// Adds `record`, whose key [`group_of`](Self::group_of) just put in
    /// `group`, to its worker's batch; returns that worker when the batch
    /// is full and should go.
    pub(crate) fn add(&mut self, group: u16, record: Record<K, V>) -> Result<Option<usize>> {
        let w = owner(group, self.bufs.len(), self.key_groups);
        self.keys[w].push(&self.key_buf, group)?;
        self.bufs[w].push(record);
        Ok((self.bufs[w].len() >= self.batch).then_some(w))
    }

    /// Worker `w`'s batch, to send; a new one starts.
    pub(crate) fn take(&mut self, w: usize) -> Msg<K, V> {
        let batch = std::mem::replace(&mut self.bufs[w], Vec::with_capacity(self.batch));
        let keys = std::mem::replace(
            &mut self.keys[w],
            EncodedKeys::with_capacity(self.batch, KEY_BYTES_GUESS),
        );
        Msg::Batch {
            source: self.source,
            records: batch,
            keys,
        }
    }

    /// The workers whose batch holds records.
    pub(crate) fn pending(&self) -> Vec<usize> {
        (0..self.bufs.len())
            .filter(|&w| !self.bufs[w].is_empty())
            .collect()
    }
}
