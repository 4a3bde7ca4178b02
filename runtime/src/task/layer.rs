//! The workers of a keyed run, in layers. The first layer takes the source
//! tasks' records through the exchange; each `key_by` after a processor
//! adds a layer, fed by every worker of the one before it through a
//! further exchange ([`Rekey`](crate::exchange::Rekey)). A worker of any
//! layer acknowledges each barrier with its own state writes and outputs,
//! so that one checkpoint covers every layer.

use std::any::Any;
use std::sync::Arc;

use rocksdb::DB;
use tokio::sync::{mpsc, watch};
use weir_core::source::Forwarded;
use weir_core::{Codec, Key, Result};

use super::worker::{spawn_worker, Worker, WorkerHandle};
use super::Events;
use crate::config::OnBadInput;
use crate::exchange::{Decoding, Exchange, Held, Hold, InMemory, Msg, NextLayer};
use crate::stage::{Metrics, NamedSinks, SideSinks, Stage, StageFactory, StageInit};
use crate::state::CachedState;

/// Exchange batches that may wait in a worker's queue: few, as with large
/// records they are most of the memory, and a barrier waits behind them.
const WORKER_QUEUE: usize = 4;

/// What every worker of a run shares.
pub(crate) struct WorkerEnv {
    pub(crate) db: Arc<DB>,
    /// Each worker's state cache.
    pub(crate) cache_bytes: usize,
    pub(crate) events: Events,
    pub(crate) policy: OnBadInput,
    pub(crate) metrics: Arc<Metrics>,
    /// The released epoch.
    pub(crate) released: watch::Receiver<u64>,
    /// Whether the commit point lets the next epoch run while one commits
    /// (local mode; see `Commit::overlaps`).
    pub(crate) overlaps: bool,
    pub(crate) requested: watch::Receiver<u64>,
    /// The epoch the run recovered to.
    pub(crate) start_epoch: u64,
}

/// A worker's stages, named sinks, queue and held records, before it runs.
type Unstarted<K, V> = (
    Box<dyn Stage<K, V>>,
    SideSinks,
    mpsc::Receiver<Msg<K, V>>,
    Option<Box<dyn Hold<K, V>>>,
);

/// One layer's workers, their stages opened (and their sinks recovered),
/// not yet running.
pub(crate) struct Opened<K, V> {
    workers: Vec<Unstarted<K, V>>,
    /// How the source tasks, or the layer before, reach them.
    next: NextLayer<K, V>,
}

impl<K: Send + 'static, V: Send + 'static> Opened<K, V> {
    /// Opens `tail` and the named sinks for each worker `inits` describes,
    /// and its held records (`hold`, after a further exchange); batches of
    /// `batch` records will reach them.
    pub(crate) fn open(
        tail: &StageFactory<K, V>,
        inits: &[StageInit<'_>],
        named: &NamedSinks,
        batch: usize,
        hold: impl Fn(&StageInit<'_>) -> Option<Box<dyn Hold<K, V>>>,
    ) -> Result<Self> {
        let mut workers = Vec::with_capacity(inits.len());
        let mut txs = Vec::with_capacity(inits.len());
        for init in inits {
            let mut sides = SideSinks::default();
            for (name, open) in named {
                sides.0.push((name, open(init)?));
            }
            let (tx, rx) = mpsc::channel(WORKER_QUEUE);
            workers.push((tail(init)?, sides, rx, hold(init)));
            txs.push(tx);
        }
        Ok(Opened {
            workers,
            next: NextLayer { txs, batch },
        })
    }

    /// The channels to its workers.
    pub(crate) fn senders(&self) -> &[mpsc::Sender<Msg<K, V>>] {
        &self.next.txs
    }

    /// How the records of a shard of the repartition topic, read as
    /// source `source` of its workers by task `task`, reach them.
    pub(crate) fn inlet(&self, source: usize, key_groups: u16, task: &str) -> Decoding<K, V>
    where
        K: Key,
        V: Codec,
    {
        Decoding {
            task: task.to_owned(),
            to: InMemory::new(
                source,
                Arc::new(|kv| kv),
                self.next.txs.clone(),
                self.next.batch,
                key_groups,
            ),
        }
    }

    /// Runs its workers, each fed by `inputs.len()` sources (see
    /// [`Worker::inputs`]). With `feeds_next`, an exchange to another
    /// layer ends their stages.
    ///
    /// A worker waits for an epoch's release after acknowledging it where
    /// nothing may be written between two commits (Kafka mode), and where
    /// it feeds another layer: else a processing-time timer firing after
    /// its barrier could send a record of the next epoch to a worker that
    /// still waits for another's barrier, and is counted in this epoch
    /// there (in local mode the release comes once every worker of every
    /// layer has acknowledged, as the sources wait for it too).
    pub(crate) fn spawn(
        self,
        inputs: Vec<Option<usize>>,
        feeds_next: bool,
        env: &WorkerEnv,
    ) -> Vec<WorkerHandle> {
        let release = (!env.overlaps || feeds_next).then(|| env.released.clone());
        self.workers
            .into_iter()
            .map(|(stage, sides, rx, held)| {
                let worker = Worker {
                    stage,
                    sides,
                    rx,
                    held,
                    state: CachedState::new(env.db.clone(), env.cache_bytes),
                    sources: inputs.len(),
                    inputs: inputs.clone(),
                    events: env.events.clone(),
                    policy: env.policy,
                    metrics: env.metrics.clone(),
                    release: release.clone(),
                    requested: env.requested.clone(),
                    start_epoch: env.start_epoch,
                    // Dirty entries stay until committed: at most half the
                    // cache, so that clean entries still get the rest.
                    epoch_budget: env.cache_bytes / 2,
                };
                spawn_worker(worker, env.events.clone())
            })
            .collect()
    }
}

/// A layer after a `key_by` that follows a processor, its types erased.
pub(crate) trait Layer: Send + Sync {
    /// Opens its workers' stages (see [`Opened::open`]).
    fn open(
        &self,
        inits: &[StageInit<'_>],
        named: &NamedSinks,
        batch: usize,
    ) -> Result<Box<dyn OpenedLayer>>;
}

/// A layer's workers, opened, not yet running.
pub(crate) trait OpenedLayer: Send {
    /// How the layer before reaches them: a [`NextLayer`] of their types.
    fn next_layer(&self) -> &(dyn Any + Send + Sync);
    /// How a shard's records reach them (see [`Opened::inlet`]).
    fn inlet(&self, source: usize, key_groups: u16, task: &str) -> Box<dyn Exchange<Forwarded>>;
    /// Runs them, each fed by every one of the `sources` workers before
    /// (see [`Opened::spawn`]).
    fn spawn(
        self: Box<Self>,
        sources: usize,
        feeds_next: bool,
        env: &WorkerEnv,
    ) -> Vec<WorkerHandle>;
}

/// The layer whose workers run `tail` on records keyed by `K`.
pub(crate) struct TypedLayer<K, V> {
    pub(crate) tail: StageFactory<K, V>,
}

impl<K: Key, V: Codec + Send + 'static> Layer for TypedLayer<K, V> {
    fn open(
        &self,
        inits: &[StageInit<'_>],
        named: &NamedSinks,
        batch: usize,
    ) -> Result<Box<dyn OpenedLayer>> {
        let hold = |init: &StageInit<'_>| -> Option<Box<dyn Hold<K, V>>> {
            let waits = init.waits.cloned().unwrap_or_default();
            let held = Held::new(init.layer, &init.groups, init.key_groups, &waits);
            Some(Box::new(held))
        };
        Ok(Box::new(Opened::open(
            &self.tail, inits, named, batch, hold,
        )?))
    }
}

impl<K: Key, V: Codec + Send + 'static> OpenedLayer for Opened<K, V> {
    fn next_layer(&self) -> &(dyn Any + Send + Sync) {
        &self.next
    }

    fn inlet(&self, source: usize, key_groups: u16, task: &str) -> Box<dyn Exchange<Forwarded>> {
        Box::new(Opened::inlet(self, source, key_groups, task))
    }

    /// Records after an exchange between workers may be of any input: no
    /// input's own watermark is known there (see `Context::input_watermark`).
    fn spawn(
        self: Box<Self>,
        sources: usize,
        feeds_next: bool,
        env: &WorkerEnv,
    ) -> Vec<WorkerHandle> {
        (*self).spawn(vec![None; sources], feeds_next, env)
    }
}
