//! Local mode (ARCHITECTURE §4.1): the commit point is one synced RocksDB
//! `WriteBatch` holding the epoch's state writes, the source positions, the
//! sink lengths and the manifest. Sinks fsync first.

use std::sync::Arc;

use weir_core::Result;

use super::{Checkpoint, Commit, Release};
use crate::failpoints::{self, crash_point};
use crate::manifest::Manifest;
use crate::store::Store;

/// The commit point of a pipeline whose outputs are not transactional.
pub(crate) struct Local {
    store: Arc<Store>,
}

impl Local {
    pub(crate) fn new(store: Arc<Store>) -> Self {
        Local { store }
    }
}

impl Commit for Local {
    fn overlaps(&self) -> bool {
        true
    }

    fn commits_group_offsets(&self) -> bool {
        false
    }

    fn commit(&self, checkpoint: Checkpoint, release: Release) -> Result<Manifest> {
        // Every worker holds the epoch's writes and every sink its bytes:
        // the next epoch may start while this one commits. Reads stay right
        // meanwhile, because the workers' caches keep what RocksDB lacks
        // until the commit lands (see `state.rs`).
        release();
        let Checkpoint {
            manifest,
            mut writes,
            syncs,
            ..
        } = checkpoint;
        // In key order, RocksDB's memtable inserts are cheapest.
        writes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for sync in syncs {
            sync()?;
        }
        crash_point(failpoints::AFTER_SINK_FLUSH);
        self.store.commit(writes, &manifest)?;
        crash_point(failpoints::AFTER_STATE_BATCH);
        Ok(manifest)
    }
}
