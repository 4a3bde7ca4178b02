//! A further exchange: `key_by` after a processor. Each worker of one
//! layer routes what its stages emit, by the new key's group, to the
//! worker of the next layer that owns it. Watermarks and barriers follow
//! the records sent before them on every channel, so that a worker of the
//! next layer that has the barrier of every worker before it has exactly
//! the epoch's records, and no record later than a watermark it was sent.
//! A record whose new key group another instance holds goes there through
//! the repartition topic ([`Remote`]), as at the first exchange; the
//! worker that gets one that stays here holds it while its key group's
//! shard is behind (see [`Held`](super::Held)).

use tokio::sync::mpsc;
use weir_core::{Codec, Error, Key, Record, Result};

use super::{worker_gone, Msg, Remote, Router};
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
            router: Router::new(init.worker, next.txs.len(), next.batch, init.key_groups),
            txs: next.txs.clone(),
            sent: i64::MIN,
            remote: init.remote.map(|open| open(exchange)).transpose()?,
        })
    }

    /// Routes `record` to the next layer's worker that owns its key group.
    async fn route(&mut self, record: Record<K, V>) -> Result<()> {
        let group = self.router.group_of(&record.key)?;
        if let Some(remote) = &mut self.remote {
            if !remote.holds(group) {
                let key = self.router.key_bytes();
                return remote.send(group, key, &record);
            }
        }
        if let Some(w) = self.router.add(group, record)? {
            self.send(w).await?;
        }
        Ok(())
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
            for record in batch {
                self.route(record).await?;
            }
            Ok(())
        })
    }

    /// Sends what waits on (a quiet input must not hold it back), then
    /// the watermark, if it rose: after the records it follows, among
    /// them what timers it fired emitted.
    fn fire<'a>(&'a mut self, cx: &'a mut StageCx<'_>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
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
            self.send_pending().await?;
            self.broadcast(|| Msg::Barrier(epoch)).await
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}
