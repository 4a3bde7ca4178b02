//! The in-memory exchange of one instance: records go by key group to the
//! channel of the worker that owns it.

use tokio::sync::mpsc;
use weir_core::exec::EncodedKeys;
use weir_core::keygroup::{key_group, owner};
use weir_core::{Codec, Key, Record, Result};

use super::{worker_gone, Exchange, Msg, Remote};
use crate::plan::Split;
use crate::stage::FlushedSink;

/// Bytes per key to reserve in a new batch's [`EncodedKeys`].
const KEY_BYTES_GUESS: usize = 16;

/// Routes one source task's records by key group to the workers' channels.
pub(crate) struct InMemory<K, T, V> {
    source: usize,
    split: Split<T, K, V>,
    txs: Vec<mpsc::Sender<Msg<K, V>>>,
    bufs: Vec<Vec<Record<K, V>>>,
    /// The encoded keys of `bufs`' records, handed on with them.
    keys: Vec<EncodedKeys>,
    batch: usize,
    key_groups: u16,
    key_buf: Vec<u8>,
    /// Records of key groups held by other instances go there.
    remote: Option<Remote>,
}

impl<K: Key, T: Send + 'static, V: Codec + Send + 'static> InMemory<K, T, V> {
    /// The exchange of source task number `source`, sending batches of up
    /// to `batch` records to the workers behind `txs`.
    pub(crate) fn new(
        source: usize,
        split: Split<T, K, V>,
        txs: Vec<mpsc::Sender<Msg<K, V>>>,
        batch: usize,
        key_groups: u16,
    ) -> Self {
        let workers = txs.len();
        InMemory {
            source,
            split,
            txs,
            bufs: (0..workers).map(|_| Vec::new()).collect(),
            keys: (0..workers).map(|_| EncodedKeys::default()).collect(),
            batch,
            key_groups,
            key_buf: Vec::new(),
            remote: None,
        }
    }

    /// Sends the records of key groups this run does not hold to `remote`.
    pub(crate) fn with_remote(mut self, remote: Option<Remote>) -> Self {
        self.remote = remote;
        self
    }

    fn send(&mut self, w: usize) -> Result<()> {
        let batch = std::mem::replace(&mut self.bufs[w], Vec::with_capacity(self.batch));
        let keys = std::mem::replace(
            &mut self.keys[w],
            EncodedKeys::with_capacity(self.batch, KEY_BYTES_GUESS),
        );
        self.txs[w]
            .blocking_send(Msg::Batch(batch, keys))
            .map_err(|_| worker_gone())
    }

    fn broadcast(&mut self, msg: impl Fn() -> Msg<K, V>) -> Result<()> {
        for tx in &self.txs {
            tx.blocking_send(msg()).map_err(|_| worker_gone())?;
        }
        Ok(())
    }
}

impl<K: Key, T: Send + 'static, V: Codec + Send + 'static> Exchange<T> for InMemory<K, T, V> {
    fn push(&mut self, record: Record<(), T>) -> Result<()> {
        let (key, value) = (self.split)(record.value);
        self.key_buf.clear();
        weir_core::encode_key(&key, &mut self.key_buf)?;
        let group = key_group(&self.key_buf, self.key_groups);
        if let Some(remote) = &mut self.remote {
            if !remote.holds(group) {
                return remote.send(group, &self.key_buf, &value, record.timestamp);
            }
        }
        let w = owner(group, self.txs.len(), self.key_groups);
        self.keys[w].push(&self.key_buf, group)?;
        self.bufs[w].push(Record {
            key,
            value,
            timestamp: record.timestamp,
            headers: record.headers,
        });
        if self.bufs[w].len() >= self.batch {
            self.send(w)?;
        }
        Ok(())
    }

    fn watermark(&mut self, watermark: i64) -> Result<()> {
        self.flush_pending()?;
        let source = self.source;
        self.broadcast(|| Msg::Watermark { source, watermark })
    }

    fn idle(&mut self) -> Result<()> {
        self.flush_pending()?;
        let source = self.source;
        self.broadcast(|| Msg::Idle { source })
    }

    fn at_end(&mut self, until: i64) -> Result<()> {
        self.flush_pending()?;
        let source = self.source;
        self.broadcast(|| Msg::AtEnd { source, until })
    }

    fn flush_pending(&mut self) -> Result<()> {
        for w in 0..self.bufs.len() {
            if !self.bufs[w].is_empty() {
                self.send(w)?;
            }
        }
        Ok(())
    }

    fn barrier(&mut self, epoch: u64) -> Result<Vec<FlushedSink>> {
        self.flush_pending()?;
        self.broadcast(|| Msg::Barrier(epoch))?;
        Ok(Vec::new())
    }

    fn finish(&mut self) -> Result<()> {
        self.flush_pending()?;
        let source = self.source;
        self.broadcast(|| Msg::Finished { source })
    }
}
