//! Kafka-mode recovery (ARCHITECTURE §4.2): after the commit point fenced
//! every older instance (which aborts its open transaction), RocksDB is
//! rolled forward from the changelog (from the manifest's positions, or
//! from the start for a key group without local state), and the source
//! positions committed in Kafka are taken. Local state is never wiped
//! here (`moved` drops the state of shards away too long, before this).
//! After a replay or an `offsets reset`, a new timeline is seeded instead.

use std::collections::{BTreeMap, BTreeSet};

use weir_core::commit::Transaction;
use weir_core::state::group_of;
use weir_core::{Error, Result};

use crate::checkpoint::{group_offsets, POSITION_KEY, TIMELINE_KEY};
use crate::failpoints::{self, crash_point, pause_point};
use crate::manifest::{Manifest, SourcePosition};
use crate::observe::progress::{Progress, Work};
use crate::stage::SourceAdmin;
use crate::state::Write;
use crate::store::{now_ms, Store};

/// How many changelog records recovery applies per RocksDB batch.
const RESTORE_BATCH: usize = 10_000;

/// Applies the committed changelog of the shards in `shards` (every shard
/// when `None`) after the manifest's positions, then takes the source
/// positions committed in Kafka. The local state of other shards is left
/// as it is, with its positions: rolled forward from there if the shard
/// comes back.
pub(crate) fn roll_forward(
    txn: &mut dyn Transaction,
    source: &dyn SourceAdmin,
    store: &Store,
    manifest: &mut Manifest,
    shards: Option<&BTreeSet<u16>>,
    fence: &Fence<'_>,
) -> Result<()> {
    let started = std::time::Instant::now();
    let from = manifest.changelog.clone();
    let mut batch: Vec<Write> = Vec::new();
    let mut applied = 0u64;
    let mut positions = BTreeMap::new();
    // The positions committed in Kafka are the truth (§5), asked for first:
    // they answer only once no transaction that commits them is pending
    // (an instance that handed these tasks over, or died, mid-commit), and
    // then the changelog holds every state change committed with them.
    // An instance that left the group with its transaction open (killed
    // mid-epoch) holds them unsettled until the broker times it out; it
    // is aborted now instead.
    match source.last_committers() {
        Ok(committers) => {
            same_key_groups(&committers, fence.own, manifest.key_groups)?;
            if let Err(e) = fence.departed(source, &committers) {
                tracing::warn!("cannot fence the instances that left the group: {e}");
            }
        }
        Err(e) => tracing::warn!("cannot read who committed the group's positions: {e}"),
    }
    let fenced_ms = started.elapsed().as_millis() as u64;
    let committed = committed_offsets(source)?;
    let offsets_ms = started.elapsed().as_millis() as u64;
    let _restore = tracing::info_span!("restore", shards = ?shards).entered();
    let progress = Progress::new(Work::Restore);
    let reached = txn.restore(
        &from,
        shards,
        &mut |n| progress.sized(n),
        &mut |key, value| {
            if let Some(group) = key.strip_prefix(TIMELINE_KEY) {
                if let Ok(group) = <[u8; 2]>::try_from(group) {
                    store.apply_changelog(std::mem::take(&mut batch))?;
                    store.clear_group(u16::from_be_bytes(group))?;
                }
                return Ok(());
            }
            if let Some(task) = key.strip_prefix(POSITION_KEY) {
                if let (Ok(task), Some(Ok(pos))) =
                    (std::str::from_utf8(task), value.map(<[u8; 8]>::try_from))
                {
                    positions.insert(task.to_owned(), u64::from_be_bytes(pos));
                }
                return Ok(());
            }
            batch.push((key.to_vec(), value.map(<[u8]>::to_vec)));
            applied += 1;
            if batch.len() >= RESTORE_BATCH {
                store.apply_changelog(std::mem::take(&mut batch))?;
                progress.at(applied);
                pause_point(failpoints::RESTORE_BATCH);
            }
            Ok(())
        },
    )?;
    store.apply_changelog(std::mem::take(&mut batch))?;
    progress.finish(applied);
    tracing::debug!(
        fenced_ms,
        offsets_ms,
        restored_ms = started.elapsed().as_millis() as u64,
        "recovery's steps"
    );
    crash_point(failpoints::MID_RECOVERY);
    for t in committed {
        if let Some(c) = t.committed {
            positions.insert(t.task, c);
        }
    }
    let mut next = manifest.clone();
    next.changelog.extend(reached);
    for (task, pos) in positions {
        let recorded = manifest.sources.get(&task).filter(|p| p.position == pos);
        let finished = recorded.is_some_and(|p| p.finished);
        // The input the position is in is known only where it did not move.
        let identity = recorded.and_then(|p| p.identity.clone());
        next.sources.insert(
            task,
            SourcePosition {
                position: pos,
                finished,
                identity,
            },
        );
    }
    if next != *manifest {
        next.epoch = manifest.epoch + 1;
        next.time_ms = now_ms();
        store.commit(Vec::new(), &next)?;
        tracing::info!(
            records = applied,
            epoch = next.epoch,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "rolled the state forward from the changelog"
        );
        *manifest = next;
    }
    Ok(())
}

/// How long recovery waits for the group's committed offsets to settle.
const OFFSETS_SETTLE: std::time::Duration = std::time::Duration::from_secs(60);

/// How recovery fences an instance that left its transaction open.
pub(crate) struct Fence<'a> {
    /// This instance's id: never fenced from here.
    pub(crate) own: &'a str,
    /// Aborts the open transaction of the instance it names.
    pub(crate) fence: &'a (dyn Fn(&str) -> Result<()> + Sync),
}

impl Fence<'_> {
    /// Fences the instances that committed the last settled positions and
    /// are no longer members of the group: one of them left a transaction
    /// open (killed mid-epoch), which holds the positions unsettled until
    /// the broker times it out. A member is never fenced from here; one
    /// that comes back finds its commits fenced and joins again.
    fn departed(
        &self,
        source: &dyn SourceAdmin,
        committers: &BTreeMap<String, Option<u16>>,
    ) -> Result<()> {
        let members = source.members()?;
        for id in committers.keys() {
            if *id == self.own || members.iter().any(|m| m.instance() == Some(id)) {
                continue;
            }
            tracing::info!(instance = %id, "aborting the open transaction of an instance that left the group");
            (self.fence)(id)?;
        }
        Ok(())
    }
}

impl Fence<'_> {
    /// Before a new timeline (a replay, an offsets reset), which rewinds
    /// the application and asks every instance to have stopped: fences the
    /// instances its commits name that are not members, then
    /// refuses `what` while an open transaction still holds positions of
    /// the group. A process paused or killed between adding its positions
    /// to its transaction and committing it would otherwise commit them
    /// over the new ones.
    pub(crate) fn settle(&self, source: &dyn SourceAdmin, what: &str) -> Result<()> {
        let members = source.members()?;
        for id in source.last_committers()?.keys() {
            // A member runs (it started before this run): never fenced from
            // here, as in `departed`.
            if *id != self.own && !members.iter().any(|m| m.instance() == Some(id)) {
                tracing::info!(instance = %id, "aborting any open transaction of an instance that wrote the group's positions");
                (self.fence)(id)?;
            }
        }
        match source.offsets() {
            Ok(_) => Ok(()),
            Err(e @ Error::Config(_)) => Err(e),
            Err(e) => Err(Error::InUse(format!(
                "{what} refused: an open transaction holds positions of this application's group, and no commit names its writer ({e}). A process stopped (SIGSTOP, a paused machine) or killed while it committed holds it: stop that process for good, or wait until the broker aborts the transaction at its timeout (for weir's own instances, 10 s plus two checkpoint intervals); then try again"
            ))),
        }
    }
}

/// Refuses to run with `key_groups` key groups when another instance of
/// the application committed with another number: a key's group, and so
/// which instance holds its state, would differ between them, and both
/// would keep a count of one key. Before anything is committed.
fn same_key_groups(
    committers: &BTreeMap<String, Option<u16>>,
    own: &str,
    key_groups: u16,
) -> Result<()> {
    let other = committers
        .iter()
        .find(|(id, n)| id.as_str() != own && n.is_some_and(|n| n != key_groups));
    match other {
        Some((id, Some(n))) => Err(Error::Config(format!(
            "key_groups differs between the instances of this application: this one runs with {key_groups} (fixed when its state directory was created), instance {id} committed with {n}; a key would belong to another key group in each, and both would keep its state. Run every instance with the same key_groups: start this one with --set key_groups={n} on a new --state (its state is restored from the changelog)"
        ))),
        _ => Ok(()),
    }
}

/// The source's committed offsets. Right after an instance died in the
/// middle of a transaction, the broker may still be aborting it and
/// refuse to answer (the group's offsets are unstable): wait and ask again.
fn committed_offsets(source: &dyn SourceAdmin) -> Result<Vec<weir_core::source::TaskOffsets>> {
    let started = std::time::Instant::now();
    // The abort takes the broker milliseconds: ask again soon, then less often.
    let mut pause = std::time::Duration::from_millis(10);
    loop {
        match source.offsets() {
            Ok(o) => return Ok(o),
            // A missing topic or a refused setting will not settle.
            Err(e) if started.elapsed() < OFFSETS_SETTLE && !matches!(e, Error::Config(_)) => {
                tracing::warn!("cannot read the committed offsets yet ({e}); asking again");
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Starts a new timeline in the changelog (after replay or `offsets
/// reset`): one transaction with a timeline marker per key group, every
/// local state entry, and the manifest's positions. A restore from the
/// start drops what came before each marker, so that the abandoned
/// timeline never mixes in. Redone in full if interrupted.
pub(crate) fn seed(
    txn: &mut dyn Transaction,
    source: &dyn SourceAdmin,
    store: &Store,
    manifest: &mut Manifest,
) -> Result<()> {
    txn.begin()?;
    for group in 0..manifest.key_groups {
        let mut key = TIMELINE_KEY.to_vec();
        key.extend_from_slice(&group.to_be_bytes());
        txn.changelog(group, &key, Some(&manifest.generation.to_be_bytes()))?;
    }
    let mut n = 0u64;
    store.for_each_state(|k, v| {
        n += 1;
        txn.changelog(group_of(k).unwrap_or(0), k, Some(v))
    })?;
    let plain: BTreeMap<String, u64> = manifest
        .sources
        .iter()
        .map(|(task, p)| (task.clone(), p.position))
        .collect();
    let offsets = group_offsets(source, txn, &plain)?;
    txn.commit(offsets.as_ref())?;
    let mut next = manifest.clone();
    next.reseed = false;
    next.changelog.extend(txn.changelog_positions());
    store.commit(Vec::new(), &next)?;
    tracing::info!(
        entries = n,
        generation = next.generation,
        "started a new timeline in the changelog from the local state"
    );
    *manifest = next;
    Ok(())
}
