//! One epoch's acknowledgements, gathered into the checkpoint they make.

use std::collections::BTreeMap;

use weir_core::{Error, Result};

use super::Checkpoint;
use crate::manifest::{Manifest, SourcePosition};
use crate::stage::FlushedSink;
use crate::state::Write;
use crate::store::now_ms;

/// The acknowledgements of epoch `epoch`'s barrier received so far.
pub(crate) struct Acks {
    epoch: u64,
    positions: BTreeMap<String, SourcePosition>,
    writes: Vec<Write>,
    state_bytes: u64,
    flushes: Vec<FlushedSink>,
    sources: usize,
    workers: usize,
}

impl Acks {
    pub(crate) fn new(epoch: u64) -> Self {
        Acks {
            epoch,
            positions: BTreeMap::new(),
            writes: Vec::new(),
            state_bytes: 0,
            flushes: Vec::new(),
            sources: 0,
            workers: 0,
        }
    }

    /// Source task `task` stopped at the barrier at `position`.
    pub(crate) fn source(
        &mut self,
        task: String,
        position: SourcePosition,
        flushes: Vec<FlushedSink>,
    ) {
        self.sources += 1;
        self.positions.insert(task, position);
        self.flushes.extend(flushes);
    }

    /// A worker had every source's barrier of `epoch`.
    pub(crate) fn worker(
        &mut self,
        epoch: u64,
        writes: Vec<Write>,
        bytes: u64,
        flushes: Vec<FlushedSink>,
    ) -> Result<()> {
        if epoch != self.epoch {
            return Err(Error::State(format!(
                "a worker acknowledged epoch {epoch} during epoch {}",
                self.epoch
            )));
        }
        self.workers += 1;
        self.writes.extend(writes);
        self.state_bytes += bytes;
        self.flushes.extend(flushes);
        Ok(())
    }

    /// Whether `sources` source tasks and `workers` workers acknowledged.
    pub(crate) fn complete(&self, sources: usize, workers: usize) -> bool {
        self.sources >= sources && self.workers >= workers
    }

    /// The checkpoint that follows `committed`.
    pub(crate) fn checkpoint(self, committed: &Manifest, last: bool) -> Checkpoint {
        let mut manifest = committed.clone();
        manifest.epoch = self.epoch;
        manifest.time_ms = now_ms();
        let tasks = self.positions.keys().cloned().collect();
        // Tasks no longer listed keep their entries: their input may come back.
        manifest.sources.extend(self.positions);
        let mut syncs = Vec::new();
        for f in self.flushes {
            if let Some(p) = f.flushed.position {
                manifest.sinks.insert(f.id, p);
            }
            syncs.extend(f.flushed.sync);
        }
        Checkpoint {
            manifest,
            writes: self.writes,
            state_bytes: self.state_bytes,
            syncs,
            last,
            tasks,
        }
    }
}

impl Checkpoint {
    /// Whether the checkpoint changes anything since `committed`: an epoch
    /// that does not is not committed.
    pub(crate) fn changes(&self, committed: &Manifest) -> bool {
        !self.writes.is_empty()
            || self.manifest.sources != committed.sources
            || self.manifest.sinks != committed.sinks
    }
}
