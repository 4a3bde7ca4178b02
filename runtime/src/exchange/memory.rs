//! The in-memory exchange of one instance: records go by key group to the
//! channel of the worker that owns it.

use tokio::sync::mpsc;
use weir_core::{Codec, Key, Record, Result};

use super::{worker_gone, Exchange, Mark, Msg, Remote, Router};
use crate::plan::Split;
use crate::stage::FlushedSink;

/// Routes one source task's records by key group to the workers' channels.
pub(crate) struct InMemory<K, T, V> {
    source: usize,
    split: Split<T, K, V>,
    txs: Vec<mpsc::Sender<Msg<K, V>>>,
    router: Router<K, V>,
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
        InMemory {
            source,
            split,
            router: Router::new(source, txs.len(), batch, key_groups),
            txs,
            remote: None,
        }
    }

    /// Sends the records of key groups this run does not hold to `remote`.
    pub(crate) fn with_remote(mut self, remote: Option<Remote>) -> Self {
        self.remote = remote;
        self
    }

    fn send(&mut self, w: usize) -> Result<()> {
        self.txs[w]
            .blocking_send(self.router.take(w))
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
        let group = self.router.group_of(&key)?;
        let record = Record {
            key,
            value,
            timestamp: record.timestamp,
            headers: record.headers,
        };
        if let Some(remote) = &mut self.remote {
            if !remote.holds(group) {
                return remote.send(group, self.router.key_bytes(), &record);
            }
        }
        match self.router.add(group, record)? {
            Some(w) => self.send(w),
            None => Ok(()),
        }
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
        for w in self.router.pending() {
            self.send(w)?;
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

    fn reached(&mut self, mark: Mark) -> Result<()> {
        self.flush_pending()?;
        let source = self.source;
        self.broadcast(|| Msg::Reached { source, mark })
    }
}
