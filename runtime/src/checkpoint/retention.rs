//! Retained checkpoints (ARCHITECTURE §6): every K-th committed epoch is
//! also kept as a RocksDB checkpoint, for `replay --from`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::config::CheckpointConfig;
use crate::store::Store;

/// Cuts retained checkpoints in the background, one at a time.
pub(crate) struct Retention {
    store: Arc<Store>,
    every: u64,
    keep: usize,
    /// The epoch of the last checkpoint cut in this run. A cut in the
    /// background takes the state as it is when it runs, which may be an
    /// epoch or two past the one that asked for it.
    last_cut: Arc<AtomicU64>,
    /// The checkpoint being cut, if any.
    cutting: Option<tokio::task::JoinHandle<()>>,
}

impl Retention {
    pub(crate) fn new(store: Arc<Store>, config: &CheckpointConfig) -> Self {
        Retention {
            store,
            every: config.retain_every,
            keep: config.retain_count.max(1),
            last_cut: Arc::new(AtomicU64::new(0)),
            cutting: None,
        }
    }

    /// After epoch `epoch` committed, the previous commit being `previous`:
    /// cuts a checkpoint when the committed epoch crossed a multiple of K
    /// (epochs without changes are not committed, so some are skipped) and
    /// is at least K past the last cut.
    pub(crate) fn committed(&mut self, previous: u64, epoch: u64) {
        let k = self.every;
        let due = k > 0
            && epoch / k != previous / k
            && epoch >= self.last_cut.load(Ordering::Relaxed).saturating_add(k);
        if !due || self.cutting.as_ref().is_some_and(|h| !h.is_finished()) {
            // While one is being cut, the next is skipped.
            return;
        }
        // Cut in the background: cutting flushes RocksDB's memtable, which
        // must not hold up the next epoch. A failure here loses a replay
        // point, not committed data.
        let (store, keep, cut) = (self.store.clone(), self.keep, self.last_cut.clone());
        self.cutting = Some(tokio::task::spawn_blocking(move || {
            match store.retain(keep) {
                Ok(id) => {
                    cut.store(id, Ordering::Relaxed);
                    tracing::info!(epoch = id, "retained checkpoint {id}");
                }
                Err(e) => tracing::warn!("could not retain a checkpoint: {e}; the run goes on"),
            }
        }));
    }

    /// Waits for the checkpoint being cut: never left running, as a retry
    /// reopens the state directory and an exit should not leave a
    /// checkpoint half-made.
    pub(crate) async fn finish(&mut self) {
        if let Some(h) = self.cutting.take() {
            let _ = h.await;
        }
    }

    /// Whether a checkpoint is being cut.
    pub(crate) fn busy(&self) -> bool {
        self.cutting.is_some()
    }
}
