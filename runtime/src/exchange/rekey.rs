//! A further exchange: `key_by` after a processor. Each worker of one
//! layer routes what its stages emit, by the new key's group, to the
//! worker of the next layer that owns it. Watermarks and barriers follow
//! the records sent before them on every channel, so that a worker of the
//! next layer that has the barrier of every worker before it has exactly
//! the epoch's records, and no record later than a watermark it was sent.
//! A record whose new key group another instance holds goes there through
//! the repartition topic ([`Remote`]), as at the first exchange; one that
//! stays here waits until the run's [`Backlog`] is delivered.

use std::sync::Arc;

use tokio::sync::mpsc;
use weir_core::{Codec, Error, Key, Record, Result};

use super::{worker_gone, Backlog, Msg, Remote, Router};
use crate::stage::{BoxFuture, FlushedSink, Stage, StageCx, StageInit};

/// What the workers of a layer after an exchange are reached by (handed
/// to the layer before it in [`StageInit::next_layer`]).
pub(crate) struct NextLayer<K, V> {
    pub(crate) txs: Vec<mpsc::Sender<Msg<K, V>>>,
    /// Records per batch.
    pub(crate) batch: usize,
}

/// The last stage of a worker whose records go on to another layer.
pub(crate) struct Rekey<K, V> {
    /// This worker's number in its layer: the source the next layer's
    /// workers know it as.
    source: usize,
    txs: Vec<mpsc::Sender<Msg<K, V>>>,
    router: Router<K, V>,
    /// The watermark last sent on.
    sent: i64,
    /// Where records of other instances' key groups go, if any.
    remote: Option<Remote>,
    /// Until it is delivered, records of key groups held here wait in
    /// `waiting` (see [`Backlog`]); `None` after.
    backlog: Option<Arc<Backlog>>,
    waiting: Vec<Record<K, V>>,
}

impl<K: Key, V: Codec + Send + 'static> Rekey<K, V> {
    /// The exchange of the worker `init` describes to the next layer.
    pub(crate) fn open(init: &StageInit<'_>) -> Result<Self> {
        let next = init
            .next_layer
            .and_then(|n| n.downcast_ref::<NextLayer<K, V>>())
            .ok_or_else(|| {
                Error::State(format!(
                    "the exchange after {} found no layer of workers of its types behind it (a bug in the plan)",
                    init.task
                ))
            })?;
        let exchange = init.layer + 1;
        Ok(Rekey {
            source: init.worker,
            router: Router::new(next.txs.len(), next.batch, init.key_groups),
            txs: next.txs.clone(),
            sent: i64::MIN,
            remote: init.remote.map(|open| open(exchange)).transpose()?,
            backlog: init.backlog.clone().filter(|b| !b.is_read()),
            waiting: Vec::new(),
        })
    }

    /// Routes `record` to the next layer's worker that owns its key group.
    async fn route(&mut self, record: Record<K, V>) -> Result<()> {
        let group = self.router.group_of(&record.key)?;
        if let Some(remote) = &mut self.remote {
            if !remote.holds(group) {
                let key = self.router.key_bytes();
                return remote.send(group, key, &record.value, record.timestamp);
            }
        }
        if self.backlog.is_some() {
            self.waiting.push(record);
            return Ok(());
        }
        if let Some(w) = self.router.add(group, record)? {
            self.send(w).await?;
        }
        Ok(())
    }

    /// Once the backlog is delivered, routes what waited for it, in order;
    /// returns whether records still wait.
    async fn release(&mut self) -> Result<bool> {
        match &self.backlog {
            None => return Ok(false),
            Some(b) if !b.is_read() => return Ok(true),
            Some(_) => self.backlog = None,
        }
        for record in std::mem::take(&mut self.waiting) {
            self.route(record).await?;
        }
        Ok(false)
    }

    async fn send(&mut self, w: usize) -> Result<()> {
        let batch = self.router.take(w);
        self.txs[w].send(batch).await.map_err(|_| worker_gone())
    }

    async fn send_pending(&mut self) -> Result<()> {
        for w in self.router.pending() {
            self.send(w).await?;
        }
        Ok(())
    }

    async fn broadcast(&mut self, msg: impl Fn() -> Msg<K, V>) -> Result<()> {
        for tx in &self.txs {
            tx.send(msg()).await.map_err(|_| worker_gone())?;
        }
        Ok(())
    }
}

impl<K: Key, V: Codec + Send + 'static> Stage<K, V> for Rekey<K, V> {
    fn open<'a>(&'a mut self, _cx: &'a mut StageCx<'_>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn push<'a>(
        &'a mut self,
        batch: Vec<Record<K, V>>,
        _cx: &'a mut StageCx<'_>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.release().await?;
            for record in batch {
                self.route(record).await?;
            }
            Ok(())
        })
    }

    /// Sends what waits on (a quiet input must not hold it back), then
    /// the watermark, if it rose: after the records it follows, among
    /// them what timers it fired emitted. Not while records wait for the
    /// backlog: the watermark would pass them.
    fn fire<'a>(&'a mut self, cx: &'a mut StageCx<'_>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if self.release().await? {
                return Ok(());
            }
            self.send_pending().await?;
            let watermark = cx.watermark;
            if watermark > self.sent {
                self.sent = watermark;
                let source = self.source;
                self.broadcast(|| Msg::Watermark { source, watermark })
                    .await?;
            }
            Ok(())
        })
    }

    fn barrier<'a>(
        &'a mut self,
        epoch: u64,
        _out: &'a mut Vec<FlushedSink>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            // Every shard reader delivers its part of the backlog before
            // its barrier, so a worker with every barrier finds it read.
            if self.release().await? {
                return Err(Error::State(format!(
                    "epoch {epoch} ended before the shards' backlog reached the workers (a bug in the exchange); the run stops before committing it"
                )));
            }
            self.send_pending().await?;
            self.broadcast(|| Msg::Barrier(epoch)).await
        })
    }

    /// Nothing after the last barrier commits: what waits is dropped.
    fn close(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}
