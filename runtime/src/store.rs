//! The RocksDB state directory: live state, the manifest, the local-mode
//! commit point, and retained checkpoints.
//!
//! Layout of a state directory:
//! - `db/`: the live RocksDB (keyed state, timers, `meta/manifest`).
//! - `checkpoints/<epoch>/db` + `manifest.json`: retained checkpoints.
//! - `db.replay/`: a replay being prepared (removed or promoted at open).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{Options, WriteBatch, WriteOptions, DB};
use weir_core::source::Resume;
use weir_core::{Error, Result};

use crate::failpoints;
use crate::manifest::Manifest;
use crate::observe::progress::{Progress, Work};

use weir_core::state::GROUPED_TAGS;

const MANIFEST_KEY: &[u8] = b"meta/manifest";
/// Marks a staged replay as complete (ready to replace the live state).
const PROMOTE: &str = "PROMOTE";
const READ_POSITION_PREFIX: &[u8] = b"meta/read/";

fn db_err(action: &str, dir: &Path, e: rocksdb::Error) -> Error {
    let msg = e.to_string();
    let missing_file = msg.contains("No such file or directory")
        && [".sst", "MANIFEST", "CURRENT", ".log"]
            .iter()
            .any(|f| msg.contains(f));
    if msg.contains("Corruption") || missing_file {
        let state = if dir.ends_with("db") {
            dir.parent().unwrap_or(dir)
        } else {
            dir
        };
        return Error::Corrupt(format!(
            "the state in {} cannot be read ({msg}); restarting will not repair it. Restore it: `replay --from ID --state {}` rebuilds the live state from a retained checkpoint (see `checkpoints list`; checkpoints share unchanged files with the live state, so an older one may be needed), or, in Kafka mode, a new, empty --state restores everything from the changelog",
            state.display(),
            state.display()
        ));
    }
    if msg.contains("lock") || msg.contains("Resource temporarily unavailable") {
        return Error::InUse(format!(
            "state directory {} is in use by another running instance ({msg}); stop it first, or pass another --state",
            dir.display()
        ));
    }
    Error::State(format!(
        "cannot {action} RocksDB in {}: {msg}",
        dir.display()
    ))
}

fn io(action: &'static str, path: &Path, e: std::io::Error) -> Error {
    Error::io(action, path.display(), e)
}

fn options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.set_compression_type(rocksdb::DBCompressionType::Lz4);
    o.set_max_background_jobs(2);
    // Bounds the WAL a restart after a crash replays (and the memory).
    o.set_write_buffer_size(32 << 20);
    o.set_compaction_filter("weir-expired", drop_expired);
    o
}

/// Drops the entries of stores with a time to live once they expired
/// (see `weir_core::state::ttl`): reads already treat them as absent, so
/// this only gives their space back. The entry alone tells (its key's tag
/// and its value's header), so compactions need nothing of the pipeline.
fn drop_expired(_level: u32, key: &[u8], value: &[u8]) -> rocksdb::compaction_filter::Decision {
    use rocksdb::compaction_filter::Decision;
    if weir_core::state::has_expiry(key) && weir_core::state::ttl::expired(value, now_ms()) {
        Decision::Remove
    } else {
        Decision::Keep
    }
}

/// Fsyncs a directory, so that renames and creations in it are durable.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("cannot fsync directory", dir, e))
}

/// An open state directory.
pub struct Store {
    dir: PathBuf,
    db: Arc<DB>,
}

impl Store {
    /// Opens (creating if needed) the state directory `dir` for a run,
    /// first finishing or discarding an interrupted replay.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create state directory", dir, e))?;
        let live = dir.join("db");
        let staged = dir.join("db.replay");
        if staged.join(PROMOTE).exists() {
            // The replay was complete: finish swapping it in. Each step can be
            // redone after a crash, and `db/` is gone only while the complete
            // replacement still waits under `db.replay/` (I3).
            if live.exists() {
                std::fs::remove_dir_all(&live).map_err(|e| io("cannot remove", &live, e))?;
            }
            failpoints::crash_point(failpoints::MID_REPLAY_SWAP);
            std::fs::rename(&staged, &live).map_err(|e| io("cannot rename", &staged, e))?;
            sync_dir(dir)?;
        } else if staged.exists() {
            // An unfinished replay: the live state was never touched.
            std::fs::remove_dir_all(&staged).map_err(|e| io("cannot remove", &staged, e))?;
        }
        let marker = live.join(PROMOTE);
        if marker.exists() {
            std::fs::remove_file(&marker).map_err(|e| io("cannot remove", &marker, e))?;
        }
        let db = DB::open(&options(), &live).map_err(|e| db_err("open", &live, e))?;
        Ok(Store {
            dir: dir.to_owned(),
            db: Arc::new(db),
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn db(&self) -> Arc<DB> {
        self.db.clone()
    }

    /// The last committed manifest, if any.
    pub fn manifest(&self) -> Result<Option<Manifest>> {
        read_manifest(&self.db, &self.dir)
    }

    /// A state entry and the epoch of the checkpoint that committed it.
    pub(crate) fn read_committed(&self, key: &[u8]) -> Result<(Option<Vec<u8>>, u64)> {
        read_committed(&self.db, &self.dir, key)
    }

    /// The local-mode commit point (ARCHITECTURE §4.1): the epoch's state
    /// writes and its manifest in one synced batch.
    pub fn commit(
        &self,
        writes: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
        manifest: &Manifest,
    ) -> Result<()> {
        self.write_with_manifest(batch_of(writes), manifest, "commit to", true)
    }

    /// Kafka mode (ARCHITECTURE §4.2): after the transaction committed, the
    /// epoch's state writes and its manifest in one batch, not synced (a
    /// lost batch is rolled forward from the changelog).
    pub fn apply_committed(
        &self,
        writes: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
        manifest: &Manifest,
    ) -> Result<()> {
        self.write_with_manifest(batch_of(writes), manifest, "commit to", false)
    }

    /// Kafka-mode recovery: writes changelog records ahead of the manifest,
    /// not synced. Safe, because applying the changelog again from the
    /// manifest's positions ends in the same state.
    pub fn apply_changelog(
        &self,
        writes: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<()> {
        self.db
            .write(batch_of(writes))
            .map_err(|e| db_err("write to", &self.dir, e))
    }

    /// Drops the keyed state and timers of key group `group` (a new
    /// timeline starts in the changelog), not synced.
    pub fn clear_group(&self, group: u16) -> Result<()> {
        let mut batch = WriteBatch::default();
        let [hi, lo] = group.to_be_bytes();
        let end = u32::from(group) + 1;
        for tag in GROUPED_TAGS {
            let to = if end > u32::from(u16::MAX) {
                vec![tag + 1]
            } else {
                let e = (end as u16).to_be_bytes();
                vec![tag, e[0], e[1]]
            };
            batch.delete_range(vec![tag, hi, lo], to);
        }
        self.db
            .write(batch)
            .map_err(|e| db_err("write to", &self.dir, e))
    }

    /// Visits every keyed-state and timer entry (the changelog's content).
    pub fn for_each_state(&self, mut f: impl FnMut(&[u8], &[u8]) -> Result<()>) -> Result<()> {
        for tag in GROUPED_TAGS {
            let mut ro = rocksdb::ReadOptions::default();
            ro.set_iterate_upper_bound(vec![tag + 1]);
            let from = [tag];
            let it = self.db.iterator_opt(
                rocksdb::IteratorMode::From(&from, rocksdb::Direction::Forward),
                ro,
            );
            for item in it {
                let (k, v) = item.map_err(|e| db_err("read", &self.dir, e))?;
                // `meta/` keys share the map entries' first byte.
                if !k.starts_with(b"meta/") {
                    f(&k, &v)?;
                }
            }
        }
        Ok(())
    }

    /// Adds `manifest` to `batch` and writes it; synced, it is the local
    /// commit point.
    fn write_with_manifest(
        &self,
        mut batch: WriteBatch,
        manifest: &Manifest,
        action: &str,
        sync: bool,
    ) -> Result<()> {
        let m = serde_json::to_vec(manifest)
            .map_err(|e| Error::State(format!("cannot encode manifest: {e}")))?;
        batch.put(MANIFEST_KEY, m);
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db
            .write_opt(batch, &wo)
            .map_err(|e| db_err(action, &self.dir, e))
    }

    /// `offsets reset`: commits `manifest` (its new source positions) in one
    /// synced batch, dropping at-most-once read positions and, with
    /// `wipe_state`, every keyed state entry and timer.
    pub fn reset(&self, manifest: &Manifest, wipe_state: bool) -> Result<()> {
        let mut batch = WriteBatch::default();
        if wipe_state {
            for tag in GROUPED_TAGS {
                batch.delete_range(&[tag][..], &[tag + 1][..]);
            }
        }
        let mut end = READ_POSITION_PREFIX.to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        batch.delete_range(READ_POSITION_PREFIX, end.as_slice());
        self.write_with_manifest(batch, manifest, "reset", true)
    }

    /// Records, synced, that task `task` has read up to `position` in the
    /// input `identity` names (at-most-once: positions are committed before
    /// processing).
    pub fn save_read_position(
        &self,
        task: &str,
        position: u64,
        identity: Option<&str>,
    ) -> Result<()> {
        let mut key = READ_POSITION_PREFIX.to_vec();
        key.extend_from_slice(task.as_bytes());
        let mut value = position.to_be_bytes().to_vec();
        value.extend_from_slice(identity.unwrap_or_default().as_bytes());
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db
            .put_opt(key, value, &wo)
            .map_err(|e| db_err("write to", &self.dir, e))
    }

    /// Every read position saved by
    /// [`save_read_position`](Self::save_read_position), by task.
    pub fn read_positions(&self) -> Result<BTreeMap<String, Resume>> {
        let mut out = BTreeMap::new();
        for item in self.db.prefix_iterator(READ_POSITION_PREFIX) {
            let (k, v) = item.map_err(|e| db_err("read", &self.dir, e))?;
            let Some(task) = k.strip_prefix(READ_POSITION_PREFIX) else {
                break;
            };
            let (Ok(task), Some((position, identity))) =
                (std::str::from_utf8(task), v.split_first_chunk::<8>())
            else {
                continue;
            };
            let identity = std::str::from_utf8(identity).ok().filter(|i| !i.is_empty());
            let read = Resume {
                position: u64::from_be_bytes(*position),
                identity: identity.map(str::to_owned),
            };
            out.insert(task.to_owned(), read);
        }
        Ok(out)
    }

    /// Retains the committed state as a checkpoint (hard-linked SST files
    /// plus the manifest), then keeps only the newest `keep` retained
    /// checkpoints; returns its epoch. May run while later epochs commit:
    /// each commit is one batch with its manifest, so the manifest read
    /// back from the checkpoint is the one its state belongs to.
    pub fn retain(&self, keep: usize) -> Result<u64> {
        let root = self.dir.join("checkpoints");
        std::fs::create_dir_all(&root).map_err(|e| io("cannot create", &root, e))?;
        let tmp = root.join(".tmp-retain");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| io("cannot remove", &tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| io("cannot create", &tmp, e))?;
        rocksdb::checkpoint::Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(tmp.join("db")))
            .map_err(|e| db_err("create a checkpoint of", &self.dir, e))?;
        let manifest = open_read_only(&tmp)?.manifest()?.ok_or_else(|| {
            Error::State("the new checkpoint holds no manifest; nothing was committed yet".into())
        })?;
        let name = checkpoint_name(manifest.epoch);
        let mpath = tmp.join("manifest.json");
        let text = serde_json::to_string_pretty(&manifest)
            .map_err(|e| Error::State(format!("cannot encode manifest: {e}")))?;
        write_synced(&mpath, text.as_bytes())?;
        sync_dir(&tmp)?;
        let dest = root.join(&name);
        if dest.exists() {
            std::fs::remove_dir_all(&dest).map_err(|e| io("cannot remove", &dest, e))?;
        }
        std::fs::rename(&tmp, &dest).map_err(|e| io("cannot rename", &tmp, e))?;
        sync_dir(&root)?;
        let all = list_checkpoints(&self.dir)?;
        if all.len() > keep {
            for old in &all[..all.len() - keep] {
                let p = root.join(checkpoint_name(old.epoch));
                std::fs::remove_dir_all(&p).map_err(|e| io("cannot remove", &p, e))?;
            }
        }
        Ok(manifest.epoch)
    }

    /// Replaces the live state with retained checkpoint `epoch` (ARCHITECTURE
    /// §6): state and source positions from the checkpoint, sink positions
    /// from the live manifest (output already written stays), a new
    /// generation and an epoch after the live one. A live state too damaged
    /// to read is replaced as a whole: the sink positions are then the
    /// checkpoint's (file output past them is cut back) and the epoch one
    /// past the newest retained checkpoint. Crash-safe: the new state is
    /// staged, marked complete, then swapped in by [`Store::open`].
    pub fn replay(dir: &Path, epoch: u64) -> Result<Manifest> {
        let chk = dir.join("checkpoints").join(checkpoint_name(epoch));
        if !chk.join("manifest.json").is_file() {
            let known: Vec<String> = list_checkpoints(dir)?
                .iter()
                .map(|m| m.epoch.to_string())
                .collect();
            return Err(Error::Config(format!(
                "no retained checkpoint {epoch} in {}; retained: [{}] (see `checkpoints list`)",
                dir.display(),
                known.join(", ")
            )));
        }
        // A damaged live state is replaced as a whole: the checkpoint
        // becomes the live state, output included (see below).
        let current = match Store::open(dir).and_then(|live| live.manifest()) {
            Ok(Some(m)) => Some(m),
            Ok(None) => {
                return Err(Error::State(format!(
                    "state directory {} has no committed manifest",
                    dir.display()
                )))
            }
            Err(Error::Corrupt(why)) => {
                tracing::warn!("the live state is damaged ({why}); checkpoint {epoch} replaces it, and file output past what it committed is discarded (the epochs after it run again; output already committed to Kafka stays, and those epochs' records appear again after it)");
                None
            }
            Err(e) => return Err(e),
        };
        let staged = dir.join("db.replay");
        if staged.exists() {
            std::fs::remove_dir_all(&staged).map_err(|e| io("cannot remove", &staged, e))?;
        }
        // Hard links of the retained checkpoint's files, which are never
        // opened for writing, so that replaying leaves it as it was.
        link_dir(&chk.join("db"), &staged)?;
        let db = DB::open(&options(), &staged).map_err(|e| match db_err("open", &staged, e) {
            Error::Corrupt(_) => Error::Corrupt(format!(
                "retained checkpoint {epoch} in {} cannot be read either: it shares its unchanged files with the live state, and one of them is damaged; replay an older checkpoint (`checkpoints list`), or, in Kafka mode, start a new, empty --state, which restores everything from the changelog",
                dir.display()
            )),
            other => other,
        })?;
        let restored = read_manifest(&db, &staged)?
            .ok_or_else(|| Error::State(format!("checkpoint {} has no manifest", chk.display())))?;
        // At-most-once read positions belong to the abandoned timeline.
        let mut batch = WriteBatch::default();
        for item in db.prefix_iterator(READ_POSITION_PREFIX) {
            let (k, _) = item.map_err(|e| db_err("read", &staged, e))?;
            if !k.starts_with(READ_POSITION_PREFIX) {
                break;
            }
            batch.delete(k);
        }
        let manifest = match current {
            Some(current) => Manifest {
                epoch: current.epoch + 1,
                time_ms: now_ms(),
                generation: current.generation.max(restored.generation) + 1,
                replayed_from: Some(epoch),
                // Output already written stays; the new timeline follows it.
                sinks: current.sinks.clone(),
                changelog: BTreeMap::new(),
                away: BTreeMap::new(),
                reseed: true,
                ..restored
            },
            // The live manifest is lost with its state: which output it
            // committed is unknown, so output is cut back to the
            // checkpoint's, and exactly-once holds from there.
            None => Manifest {
                epoch: list_checkpoints(dir)?
                    .last()
                    .map_or(restored.epoch, |m| m.epoch.max(restored.epoch))
                    + 1,
                time_ms: now_ms(),
                generation: restored.generation + 1,
                replayed_from: Some(epoch),
                changelog: BTreeMap::new(),
                away: BTreeMap::new(),
                reseed: true,
                ..restored
            },
        };
        let m = serde_json::to_vec(&manifest)
            .map_err(|e| Error::State(format!("cannot encode manifest: {e}")))?;
        batch.put(MANIFEST_KEY, m);
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        db.write_opt(batch, &wo)
            .map_err(|e| db_err("write", &staged, e))?;
        drop(db);
        failpoints::crash_point(failpoints::MID_REPLAY);
        write_synced(&staged.join(PROMOTE), b"")?;
        sync_dir(&staged)?;
        // Swap it in now; a crash from here on is finished by the next open.
        drop(Store::open(dir)?);
        Ok(manifest)
    }
}

fn batch_of(writes: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>) -> WriteBatch {
    let mut batch = WriteBatch::default();
    for (k, v) in writes {
        match v {
            Some(v) => batch.put(k, v),
            None => batch.delete(k),
        }
    }
    batch
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Hard-links (or copies, across file systems) every file of `src` into a
/// new directory `dst`, showing its progress in bytes.
fn link_dir(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst).map_err(|e| io("cannot create", dst, e))?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(src).map_err(|e| io("cannot list", src, e))? {
        let path = entry.map_err(|e| io("cannot list", src, e))?.path();
        let len = std::fs::metadata(&path)
            .map_err(|e| io("cannot read", &path, e))?
            .len();
        files.push((path, len));
    }
    let progress = Progress::new(Work::Replay);
    progress.sized(files.iter().map(|f| f.1).sum());
    let mut done = 0;
    for (path, len) in files {
        let to = dst.join(path.file_name().unwrap_or_default());
        if std::fs::hard_link(&path, &to).is_err() {
            std::fs::copy(&path, &to).map_err(|e| io("cannot copy", &path, e))?;
        }
        done += len;
        progress.at(done);
    }
    progress.finish(done);
    sync_dir(dst)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| io("cannot create", path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io("cannot write", path, e))
}

fn checkpoint_name(epoch: u64) -> String {
    format!("{epoch:012}")
}

/// A state entry and the epoch of the checkpoint that committed it, read
/// from one snapshot (a commit between the two reads cannot mix epochs).
fn read_committed(db: &DB, dir: &Path, key: &[u8]) -> Result<(Option<Vec<u8>>, u64)> {
    let snapshot = db.snapshot();
    let value = snapshot.get(key).map_err(|e| db_err("read", dir, e))?;
    let epoch = match snapshot
        .get(MANIFEST_KEY)
        .map_err(|e| db_err("read", dir, e))?
    {
        Some(bytes) => serde_json::from_slice::<Manifest>(&bytes)
            .map(|m| m.epoch)
            .map_err(|e| {
                Error::State(format!(
                    "the manifest in {} is unreadable ({e})",
                    dir.display()
                ))
            })?,
        None => 0,
    };
    Ok((value, epoch))
}

fn read_manifest(db: &DB, dir: &Path) -> Result<Option<Manifest>> {
    let Some(bytes) = db.get(MANIFEST_KEY).map_err(|e| db_err("read", dir, e))? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::State(format!(
            "the manifest in {} is unreadable ({e}); it was written by another weir version, or the directory is not a weir state directory",
            dir.display()
        ))
    })
}

/// The retained checkpoints of state directory `dir`, oldest first.
pub fn list_checkpoints(dir: &Path) -> Result<Vec<Manifest>> {
    let root = dir.join("checkpoints");
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&root).map_err(|e| io("cannot list", &root, e))? {
        let entry = entry.map_err(|e| io("cannot list", &root, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let mpath = entry.path().join("manifest.json");
        let Ok(text) = std::fs::read(&mpath) else {
            continue;
        };
        let m: Manifest = serde_json::from_slice(&text).map_err(|e| {
            Error::State(format!(
                "unreadable checkpoint manifest {}: {e}",
                mpath.display()
            ))
        })?;
        out.push(m);
    }
    out.sort_by_key(|m| m.epoch);
    Ok(out)
}

/// Refuses a path that is not a state directory a pipeline has run on, so
/// that a mistyped `--state` is not taken for an empty one.
pub fn check_state_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Err(Error::Config(format!(
            "{} does not exist; pass the --state of a pipeline that has run",
            dir.display()
        )));
    }
    if !dir.join("db").is_dir() {
        return Err(Error::Config(format!(
            "{} is not a weir state directory (no db/ inside); pass the --state of a pipeline that has run",
            dir.display()
        )));
    }
    Ok(())
}

/// Opens the live state read-only (safe while an instance runs).
pub fn open_read_only(dir: &Path) -> Result<ReadOnly> {
    check_state_dir(dir)?;
    let live = dir.join("db");
    if !live.join("CURRENT").is_file() {
        return Err(Error::Config(format!(
            "{} is not a weir state directory (no db/ inside); pass the --state of a pipeline that has run",
            dir.display()
        )));
    }
    let db = DB::open_for_read_only(&Options::default(), &live, false)
        .map_err(|e| db_err("open", &live, e))?;
    Ok(ReadOnly {
        dir: dir.to_owned(),
        db,
    })
}

/// A read-only view of a state directory, for the CLI.
pub struct ReadOnly {
    dir: PathBuf,
    db: DB,
}

impl ReadOnly {
    /// The last committed manifest.
    pub fn manifest(&self) -> Result<Option<Manifest>> {
        read_manifest(&self.db, &self.dir)
    }

    /// A state entry and the epoch of the checkpoint that committed it.
    pub(crate) fn read_committed(&self, key: &[u8]) -> Result<(Option<Vec<u8>>, u64)> {
        read_committed(&self.db, &self.dir, key)
    }

    /// Visits every keyed-state and timer entry, in key order, until `f` returns false.
    pub fn for_each_state(&self, mut f: impl FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        for item in self.db.iterator(rocksdb::IteratorMode::Start) {
            let (k, v) = item.map_err(|e| db_err("read", &self.dir, e))?;
            if k.starts_with(b"meta/") {
                continue;
            }
            if !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::state::{keyed_key, ttl, KEYED_TAG, KEYED_TTL_TAG};

    /// Compactions drop expired entries of stores with a time to live, and
    /// nothing else: not a live one, and not a value of a store without
    /// one whose bytes happen to read as a past expiry.
    #[test]
    fn compactions_drop_expired_entries_only() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
        let store = Store::open(dir.path())?;
        let with_value = |at: i64| [&ttl::header(at)[..], b"v"].concat();
        let expired = keyed_key(KEYED_TTL_TAG, 1, 0, "last", b"a")?;
        let live = keyed_key(KEYED_TTL_TAG, 1, 0, "last", b"b")?;
        let plain = keyed_key(KEYED_TAG, 1, 0, "count", b"a")?;
        let m = Manifest::empty("p", "f", "t", 4);
        store.commit(
            [
                (expired.clone(), Some(with_value(1_000))),
                (live.clone(), Some(with_value(now_ms() + 3_600_000))),
                (plain.clone(), Some(with_value(1_000))),
            ],
            &m,
        )?;
        store.db.compact_range::<&[u8], &[u8]>(None, None);
        assert_eq!(store.read_committed(&expired)?.0, None);
        assert!(store.read_committed(&live)?.0.is_some());
        assert!(store.read_committed(&plain)?.0.is_some());
        Ok(())
    }
}
