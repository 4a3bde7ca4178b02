//! Kafka transactional mode (ARCHITECTURE §4.2): the commit point is the
//! transaction of a [`CommitPoint`]; RocksDB is a cache of committed state,
//! never ahead of it.
//!
//! Per epoch: the workers' state writes become changelog records in the
//! open transaction, next to the sinks' output; the source positions go in
//! as consumer-group offsets (or, for a source without groups, as changelog
//! records); the transaction commits; then RocksDB applies the same writes
//! and the manifest in one unsynced batch. Recovery (fencing, the roll
//! forward from the changelog) is in `recovery::changelog`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use weir_core::commit::{CommitPoint, GroupOffsets, Transaction, TxnInit};
use weir_core::state::group_of;
use weir_core::{Error, Result};

use super::{Checkpoint, Commit, Release};
use crate::failpoints::{self, crash_point};
use crate::manifest::{Manifest, PartialState};
use crate::recovery::changelog;
use crate::recovery::moved::{self, HeldShards};
use crate::stage::SourceAdmin;
use crate::store::Store;

/// Changelog key of a source position, for sources without consumer groups.
pub(crate) const POSITION_KEY: &[u8] = b"meta/position/";
/// Changelog key that starts a new timeline (replay, `offsets reset`) in a
/// key group's partition: a restore drops the group's state there, and the
/// new timeline's whole state follows it.
pub(crate) const TIMELINE_KEY: &[u8] = b"meta/timeline/";

/// What a run tells its transactional commit point about itself.
pub(crate) struct RunInit {
    /// This instance's id (see `instance::identity`).
    pub(crate) instance: String,
    /// The epoch length.
    pub(crate) epoch: std::time::Duration,
    /// The shards whose state the run holds; every shard when `None`.
    pub(crate) shards: Option<HeldShards>,
    /// How long the local state of a shard held elsewhere is kept.
    pub(crate) moved_keep: std::time::Duration,
}

/// How often the records of the repartition topic that this instance read
/// and committed are purged (Kafka Streams' `repartition.purge.interval.ms`).
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// The open transactional commit point of a run.
pub(crate) struct Transactional {
    txn: Mutex<Box<dyn Transaction>>,
    source: Arc<dyn SourceAdmin>,
    store: Arc<Store>,
    /// When the repartition topic was last purged.
    purged: Mutex<std::time::Instant>,
}

/// A commit's outcome as the coordinator needs it: a fenced instance stops,
/// anything else aborted the epoch, which recovery redoes.
fn aborted(e: Error) -> Error {
    match e {
        e @ (Error::Fenced(_) | Error::Aborted(_) | Error::Config(_)) => e,
        e => Error::Aborted(e.to_string()),
    }
}

impl Transactional {
    fn lock(&self) -> MutexGuard<'_, Box<dyn Transaction>> {
        self.txn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens the commit point as the instance `init` names, fencing its
    /// older selves, and recovers
    /// (see `recovery::changelog`); on return `manifest` describes the
    /// committed state and positions, and the first epoch's transaction is
    /// open. Blocking.
    pub(crate) fn open(
        commit: &dyn CommitPoint,
        source: Arc<dyn SourceAdmin>,
        store: Arc<Store>,
        manifest: &mut Manifest,
        init: &RunInit,
    ) -> Result<Transactional> {
        let mut txn = commit.open(&TxnInit {
            key_groups: manifest.key_groups,
            instance: init.instance.clone(),
            epoch: init.epoch,
        })?;
        let fence = changelog::Fence {
            own: &init.instance,
            fence: &|id| commit.fence_instance(id),
        };
        // What this run's commits will hold: a replay or a reset refuses
        // to start a new timeline from a part of the application's state.
        let partial = init
            .shards
            .as_ref()
            .and_then(|s| PartialState::of_run(&s.held, s.count));
        moved::note_held(&store, manifest, partial)?;
        if manifest.reseed {
            fence.settle(
                &*source,
                "the new timeline after a replay or an offsets reset",
            )?;
            changelog::seed(&mut *txn, &*source, &store, manifest)?;
        } else {
            if let Some(held) = &init.shards {
                moved::prepare(&store, manifest, held, init.moved_keep)?;
            }
            changelog::roll_forward(
                &mut *txn,
                &*source,
                &store,
                manifest,
                init.shards.as_ref().map(|s| &s.held),
                &fence,
            )?;
        }
        txn.begin()?;
        Ok(Transactional {
            txn: Mutex::new(txn),
            source,
            store,
            purged: Mutex::new(std::time::Instant::now()),
        })
    }

    /// Commits the open transaction with `checkpoint`'s writes as changelog
    /// records and its positions as offsets; opens the next one unless it
    /// is the last.
    fn commit_transaction(&self, checkpoint: &Checkpoint) -> Result<()> {
        let mut t = self.lock();
        let started = std::time::Instant::now();
        let run = |t: &mut Box<dyn Transaction>| -> Result<()> {
            for (k, v) in &checkpoint.writes {
                t.changelog(group_of(k).unwrap_or(0), k, v.as_deref())?;
            }
            let sent = started.elapsed();
            // Only this run's tasks: another instance commits the others'.
            let plain = checkpoint
                .manifest
                .sources
                .iter()
                .filter(|(task, _)| checkpoint.tasks.contains(*task))
                .map(|(task, p)| (task.clone(), p.position))
                .collect();
            let offsets = group_offsets(&*self.source, &mut **t, &plain)?;
            crash_point(failpoints::BEFORE_TXN_COMMIT);
            t.commit(offsets.as_ref())?;
            tracing::debug!(
                changes = checkpoint.writes.len(),
                changelog_ms = sent.as_millis() as u64,
                commit_ms = started.elapsed().as_millis() as u64,
                "transaction committed"
            );
            crash_point(failpoints::AFTER_TXN_COMMIT);
            Ok(())
        };
        run(&mut t).map_err(aborted)?;
        if !checkpoint.last {
            t.begin().map_err(aborted)?;
        }
        Ok(())
    }
}

impl Transactional {
    /// Now and then, drops the records of the repartition topic below the
    /// committed positions of this run's `tasks` in `manifest`: read and
    /// committed, they are never read again. Advisory: a failure is logged.
    fn purge(&self, manifest: &Manifest, tasks: &BTreeSet<String>) {
        {
            let mut purged = self.purged.lock().unwrap_or_else(|p| p.into_inner());
            if purged.elapsed() < PURGE_EVERY {
                return;
            }
            *purged = std::time::Instant::now();
        }
        let positions: BTreeMap<String, u64> = manifest
            .sources
            .iter()
            .filter(|(task, _)| tasks.contains(*task))
            .map(|(task, p)| (task.clone(), p.position))
            .collect();
        // Off the commit path: a slow broker must not hold the next epoch.
        let source = self.source.clone();
        std::thread::spawn(move || {
            if let Err(e) = source.purge(&positions) {
                tracing::warn!(
                    "cannot purge the repartition topic (its records stay until the next try): {e}"
                );
            }
        });
    }
}

impl Commit for Transactional {
    fn overlaps(&self) -> bool {
        false
    }

    fn commits_group_offsets(&self) -> bool {
        true
    }

    fn abandon(&self) {
        if let Err(e) = self.lock().abort() {
            tracing::debug!("cannot abort the open transaction: {e}");
        }
    }

    fn commit(&self, mut checkpoint: Checkpoint, release: Release) -> Result<Manifest> {
        // In key order, RocksDB's memtable inserts are cheapest.
        checkpoint.writes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.commit_transaction(&checkpoint)?;
        // The next epoch starts once the next transaction is open.
        release();
        let Checkpoint {
            mut manifest,
            writes,
            tasks,
            ..
        } = checkpoint;
        manifest.changelog.extend(self.lock().changelog_positions());
        self.store.apply_committed(writes, &manifest)?;
        crash_point(failpoints::AFTER_STATE_BATCH);
        self.purge(&manifest, &tasks);
        Ok(manifest)
    }
}

/// The group offsets for `positions`; a source without consumer groups has
/// its positions written to the changelog instead.
pub(crate) fn group_offsets(
    source: &dyn SourceAdmin,
    t: &mut dyn Transaction,
    positions: &BTreeMap<String, u64>,
) -> Result<Option<GroupOffsets>> {
    let offsets = source.group_offsets(positions)?;
    if offsets.is_none() {
        for (task, pos) in positions {
            let mut key = POSITION_KEY.to_vec();
            key.extend_from_slice(task.as_bytes());
            t.changelog(0, &key, Some(&pos.to_be_bytes()))?;
        }
    }
    Ok(offsets)
}
