//! The commit point: one trait, two implementations (ARCHITECTURE §4).

use std::collections::BTreeSet;

use weir_core::sink::SyncFn;
use weir_core::Result;

use crate::manifest::Manifest;
use crate::state::Write;

/// An epoch that every task acknowledged, ready to commit.
pub(crate) struct Checkpoint {
    /// What it commits: epoch, time, source positions, sink lengths.
    pub(crate) manifest: Manifest,
    /// The workers' state writes, in no particular order.
    pub(crate) writes: Vec<Write>,
    /// Bytes (keys and values) of `writes`, as the workers counted them.
    pub(crate) state_bytes: u64,
    /// What makes the sinks' flushed output durable (fsyncs); run before
    /// the commit point.
    pub(crate) syncs: Vec<SyncFn>,
    /// The run's last epoch: no epoch follows it.
    pub(crate) last: bool,
    /// The source tasks of this run, whose positions it commits: the
    /// manifest keeps the others' last known positions too, which belong
    /// to whichever instance holds those tasks now.
    pub(crate) tasks: BTreeSet<String>,
}

/// Lets the next epoch start.
pub(crate) type Release = Box<dyn FnOnce() + Send>;

/// Where an epoch becomes durable, all of it or nothing: state, source
/// positions and sink output together.
pub(crate) trait Commit: Send + Sync {
    /// Whether the next epoch is processed while this one commits (local
    /// mode: the workers' caches keep what RocksDB lacks until the commit
    /// lands), rather than after it (transactional: nothing may be written
    /// between two transactions).
    fn overlaps(&self) -> bool;

    /// Whether the source positions reach the consumer group inside the
    /// commit. Otherwise each reader copies its committed position there,
    /// as advice for lag monitors (ARCHITECTURE §5).
    fn commits_group_offsets(&self) -> bool;

    /// Makes `checkpoint` durable. Blocking: call it off the async runtime.
    /// Calls `release` as soon as the next epoch may start, and returns the
    /// manifest as committed.
    ///
    /// # Errors
    /// Whatever stopped the commit. Recovery decides what became durable:
    /// the commit point is the truth, never this call's outcome.
    fn commit(&self, checkpoint: Checkpoint, release: Release) -> Result<Manifest>;

    /// The run stops with its epoch uncommitted: drops what the commit
    /// point holds of it where others would wait for it (an open Kafka
    /// transaction). Blocking; best effort, as recovery settles it anyway.
    fn abandon(&self) {}
}
