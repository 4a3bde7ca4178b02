//! The local state of shards that moved to another instance (ARCHITECTURE
//! §7): kept, so that a shard coming back is rolled forward from the
//! changelog's tail instead of restored in full, but dropped once it has
//! been away for `moved_state_keep_ms`. Past the changelog's
//! `delete.retention.ms` (a day by default) compaction may have removed the
//! tombstones written since, and rolling forward would bring deleted keys
//! back; a dropped shard is restored from the start of its changelog
//! partition when it comes back.

use std::collections::BTreeSet;
use std::time::Duration;

use weir_core::Result;

use crate::manifest::{Manifest, PartialState};
use crate::store::{now_ms, Store};

/// The shards of keyed state a run holds, out of how many there are.
pub(crate) struct HeldShards {
    /// The shards this run holds.
    pub(crate) held: BTreeSet<u16>,
    /// How many shards there are (key group g is in shard g mod count).
    pub(crate) count: u16,
}

impl HeldShards {
    /// The key groups of shard `shard`.
    fn groups(&self, shard: u16, key_groups: u16) -> impl Iterator<Item = u16> + '_ {
        (0..key_groups).filter(move |g| g % self.count.max(1) == shard)
    }
}

/// Before a run restores its shards: notes since when each local shard
/// that another instance holds has been away, and drops the state of every
/// local shard away for `keep` or longer, held now or not. A shard not
/// noted away was last held here at the manifest's last commit, so the
/// time this instance was down counts too. A held shard without a
/// changelog position (new here, or dropped) is cleared too, so that its
/// restore from the start of the changelog never lands on what a drop
/// interrupted by a crash left behind.
pub(crate) fn prepare(
    store: &Store,
    manifest: &mut Manifest,
    shards: &HeldShards,
    keep: Duration,
) -> Result<()> {
    let now = now_ms();
    let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    let mut next = manifest.clone();
    let mut expired = Vec::new();
    for s in manifest.changelog.keys() {
        let since = manifest.away.get(s).copied().unwrap_or(manifest.time_ms);
        if now.saturating_sub(since) >= keep_ms {
            expired.push((*s, since));
            next.away.remove(s);
            next.changelog.remove(s);
        } else if shards.held.contains(s) {
            next.away.remove(s);
        } else {
            next.away.insert(*s, since);
        }
    }
    // A shard dropped before (no position any more) is not away.
    next.away.retain(|s, _| next.changelog.contains_key(s));
    // The manifest first: from then on the shard is restored from the
    // start (and cleared first) wherever this stops.
    if next != *manifest {
        next.epoch = manifest.epoch + 1;
        next.time_ms = now;
        store.commit(Vec::new(), &next)?;
        *manifest = next;
    }
    for (s, since) in expired {
        for g in shards.groups(s, manifest.key_groups) {
            store.clear_group(g)?;
        }
        tracing::info!(
            shard = s,
            away_s = now.saturating_sub(since) / 1000,
            "dropped the local state of a shard that another instance has held for moved_state_keep_ms; it is restored from the changelog if it comes back"
        );
    }
    for s in &shards.held {
        if !manifest.changelog.contains_key(s) {
            for g in shards.groups(*s, manifest.key_groups) {
                store.clear_group(g)?;
            }
        }
    }
    Ok(())
}

/// Records in the manifest which shards this state holds, when that
/// changed (committed at once, before anything is restored): a replay or
/// an `offsets reset --keep-state` refuses a partial state (see
/// [`PartialState`]), and must never find a stale "whole" there.
pub(crate) fn note_held(
    store: &Store,
    manifest: &mut Manifest,
    partial: Option<PartialState>,
) -> Result<()> {
    if manifest.partial == partial {
        return Ok(());
    }
    if manifest.epoch == 0 {
        // Nothing committed yet: the first commit records it.
        manifest.partial = partial;
        return Ok(());
    }
    let mut next = manifest.clone();
    next.partial = partial;
    next.epoch = manifest.epoch + 1;
    // The time stays the last commit's: `prepare` counts a shard not noted
    // away as held until then.
    store.commit(Vec::new(), &next)?;
    *manifest = next;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::state::{group_of, keyed_key, KEYED_TAG};

    const KEY_GROUPS: u16 = 4;
    const HOUR_MS: i64 = 3_600_000;

    /// A state directory with one entry in each of the 4 key groups, and
    /// changelog positions for both shards (key groups 0 and 2 in shard 0,
    /// 1 and 3 in shard 1).
    fn setup(dir: &std::path::Path) -> (Store, Manifest) {
        let store = Store::open(dir).expect("store");
        let writes: Vec<_> = (0..KEY_GROUPS)
            .map(|g| {
                let key = keyed_key(KEYED_TAG, g, 0, "count", b"word").expect("key");
                (key, Some(b"1".to_vec()))
            })
            .collect();
        store.apply_changelog(writes).expect("state");
        let mut m = Manifest::empty("p", "f", "t", KEY_GROUPS);
        m.time_ms = now_ms();
        m.changelog.insert(0, 10);
        m.changelog.insert(1, 20);
        store.commit(Vec::new(), &m).expect("manifest");
        (store, m)
    }

    fn groups_with_state(store: &Store) -> BTreeSet<u16> {
        let mut groups = BTreeSet::new();
        store
            .for_each_state(|k, _| {
                groups.extend(group_of(k));
                Ok(())
            })
            .expect("scan");
        groups
    }

    fn holding(held: &[u16]) -> HeldShards {
        HeldShards {
            held: held.iter().copied().collect(),
            count: 2,
        }
    }

    #[test]
    fn a_shard_held_elsewhere_is_kept_until_away_too_long_then_dropped_and_restored_in_full() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (store, mut m) = setup(tmp.path());
        let keep = Duration::from_millis(HOUR_MS as u64);

        // Shard 1 moved away: its state and position stay, its absence is noted.
        prepare(&store, &mut m, &holding(&[0]), keep).expect("prepare");
        assert_eq!(groups_with_state(&store), BTreeSet::from([0, 1, 2, 3]));
        assert_eq!(m.changelog.get(&1), Some(&20));
        let since = *m.away.get(&1).expect("noted away");
        assert_eq!(store.manifest().expect("read"), Some(m.clone()));

        // Still away, not yet for long: nothing changes, the time stays.
        prepare(&store, &mut m, &holding(&[0]), keep).expect("prepare");
        assert_eq!(m.away.get(&1), Some(&since));
        assert_eq!(groups_with_state(&store), BTreeSet::from([0, 1, 2, 3]));

        // Away for longer than kept: dropped, the manifest first.
        m.away.insert(1, since - 2 * HOUR_MS);
        store.commit(Vec::new(), &m).expect("manifest");
        prepare(&store, &mut m, &holding(&[0]), keep).expect("prepare");
        assert_eq!(groups_with_state(&store), BTreeSet::from([0, 2]));
        assert_eq!(
            m.changelog.get(&1),
            None,
            "restored from the start if it comes back"
        );
        assert!(m.away.is_empty());
        assert_eq!(store.manifest().expect("read"), Some(m.clone()));
    }

    #[test]
    fn which_shards_a_state_holds_is_committed_when_it_changes_and_not_before_a_first_commit() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (store, mut m) = setup(tmp.path());
        m.epoch = 3;
        store.commit(Vec::new(), &m).expect("manifest");
        let epoch = m.epoch;
        let one = PartialState::of_run(&BTreeSet::from([1]), 2);
        let time = m.time_ms;
        note_held(&store, &mut m, one.clone()).expect("note");
        assert_eq!((m.partial.clone(), m.epoch), (one.clone(), epoch + 1));
        assert_eq!(m.time_ms, time, "the last commit's time stays");
        assert_eq!(store.manifest().expect("read"), Some(m.clone()));
        // Unchanged: nothing written.
        note_held(&store, &mut m, one).expect("note");
        assert_eq!(m.epoch, epoch + 1);
        // Whole again.
        note_held(&store, &mut m, None).expect("note");
        assert_eq!((m.partial.clone(), m.epoch), (None, epoch + 2));
        assert_eq!(store.manifest().expect("read"), Some(m.clone()));

        // A state that committed nothing yet: noted, for its first commit.
        let fresh = tmp.path().join("fresh");
        let store = Store::open(&fresh).expect("store");
        let mut m = Manifest::empty("p", "f", "t", KEY_GROUPS);
        let none = PartialState::of_run(&BTreeSet::new(), 2);
        note_held(&store, &mut m, none.clone()).expect("note");
        assert_eq!((m.partial, m.epoch), (none, 0));
        assert_eq!(store.manifest().expect("read"), None);
    }

    #[test]
    fn a_held_shard_without_a_position_is_cleared_before_its_restore_from_the_start() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (store, mut m) = setup(tmp.path());
        // What a drop that a crash cut short leaves: the manifest says
        // "restore from the start", the state is still there.
        m.changelog.remove(&1);
        store.commit(Vec::new(), &m).expect("manifest");
        prepare(&store, &mut m, &holding(&[0, 1]), Duration::from_secs(3600)).expect("prepare");
        assert_eq!(groups_with_state(&store), BTreeSet::from([0, 2]));
    }

    #[test]
    fn the_time_an_instance_was_down_counts_for_its_shards_held_or_not() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (store, mut m) = setup(tmp.path());
        // Last committed two hours ago: shard 0 is held again, shard 1 is
        // held elsewhere now; both were out of this instance's sight since.
        m.time_ms -= 2 * HOUR_MS;
        store.commit(Vec::new(), &m).expect("manifest");
        let keep = Duration::from_millis(HOUR_MS as u64);
        prepare(&store, &mut m, &holding(&[0]), keep).expect("prepare");
        assert!(groups_with_state(&store).is_empty());
        assert!(m.changelog.is_empty(), "both restored from the start");
        assert!(m.away.is_empty());
    }

    #[test]
    fn a_shard_back_before_its_time_keeps_its_state_to_roll_forward() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (store, mut m) = setup(tmp.path());
        m.away.insert(1, now_ms() - 1000);
        prepare(&store, &mut m, &holding(&[0, 1]), Duration::from_secs(3600)).expect("prepare");
        assert_eq!(groups_with_state(&store), BTreeSet::from([0, 1, 2, 3]));
        assert_eq!(m.changelog.get(&1), Some(&20));
        assert!(m.away.is_empty());
    }
}
