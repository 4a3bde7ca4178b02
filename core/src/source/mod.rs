//! The interface between the runtime and source connectors.

mod union;

pub use union::Union;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::commit::GroupOffsets;
use crate::group::{GroupMemberInfo, Member};
use crate::{Error, Record, Result};

/// Where `offsets reset` moves a pipeline's input positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The start of every task's input.
    Earliest,
    /// The end of every task's input: skip what is there now.
    Latest,
    /// This position in every task.
    Offset(u64),
    /// The first record at or after this time (ms since the Unix epoch).
    Timestamp(i64),
}

/// One task's positions as the source system sees them (`offsets show`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOffsets {
    /// The task (input partition).
    pub task: String,
    /// What the source system records as committed (a consumer group's
    /// offset), if it keeps such a thing.
    pub committed: Option<u64>,
    /// The end of the input now (a partition's high watermark, a file's length).
    pub end: Option<u64>,
}

/// An input record that could not be decoded, as a dead-letter sink gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The task (input partition) it came from.
    pub task: String,
    /// Its position in that input.
    pub position: u64,
    /// Why it could not be decoded.
    pub error: String,
    /// Its raw bytes, when the source has them.
    pub raw: Option<Vec<u8>>,
}

/// A record another instance handed to a shard this instance holds (see
/// [`Source::repartition`]): its key and value as the pipeline encodes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The encoded key.
    pub key: Vec<u8>,
    /// The encoded value.
    pub value: Vec<u8>,
    /// Where it goes on from the shard.
    pub route: Route,
    /// The record's own headers.
    pub headers: Vec<crate::Header>,
    /// Its position in the shard: the reader's position once it is read
    /// is one past it.
    pub offset: u64,
}

/// Where a forwarded record goes on from its shard: to the workers after
/// which exchange (0: the first `key_by`, fed by the source tasks; `n`:
/// the `n`-th `key_by` after a processor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Route {
    /// The exchange.
    pub exchange: u8,
}

/// Where a task resumes: the position checkpointed for it, and the
/// identity of the input that position is in (see [`SourceReader::identity`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resume {
    /// The position to read on from.
    pub position: u64,
    /// The identity recorded with it, if the source keeps one.
    pub identity: Option<String>,
}

/// How far a reader is behind the end of its input ([`SourceReader::lag`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lag {
    /// Records behind a partition's end: for Kafka, its last stable offset,
    /// so that transaction markers and open transactions are not lag.
    Records {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// Records between the reader's position and the end.
        behind: u64,
    },
    /// Bytes behind a file's end.
    Bytes {
        /// The file, as the task names it.
        file: String,
        /// Bytes between the reader's position and the file's length.
        behind: u64,
    },
}

/// What a [`SourceReader::read`] call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    /// Records were returned, or more are available right away.
    More,
    /// Nothing available now; try again later (an unbounded input).
    Idle,
    /// The input is finished; nothing more will come.
    End,
}

/// A source of records split into tasks (input partitions), each read by
/// its own [`SourceReader`] from a position the runtime checkpoints.
pub trait Source: Send + Sync + 'static {
    /// The value type of the records it produces.
    type Item: Send + 'static;

    /// A short description for logs and the pipeline fingerprint, e.g. `file-lines`.
    fn describe(&self) -> String;

    /// The task ids (one per input partition), stable across restarts.
    fn tasks(&self) -> Result<Vec<String>>;

    /// Opens task `task` where it resumes (its start when `None`).
    ///
    /// # Errors
    /// A source that records identities refuses to resume in an input that
    /// is no longer the one `from.identity` names (a replaced or rotated
    /// file), naming the input and the user's choices.
    fn open(&self, task: &str, from: Option<&Resume>) -> Result<Box<dyn SourceReader<Self::Item>>>;

    /// How many inputs (topics, directories) this source reads as one:
    /// each has a watermark of its own besides the source's (see
    /// `Context::input_watermark`). 1 by default.
    fn inputs(&self) -> usize {
        1
    }

    /// Which of the [`inputs`](Self::inputs) `task` reads (0 by default).
    fn input_of(&self, task: &str) -> usize {
        let _ = task;
        0
    }

    /// The local files or directories this source reads, if any (see
    /// [`Sink::location`](crate::sink::Sink::location)).
    fn locations(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// Where each of `tasks` resumes, given the positions `recorded` per
    /// task name, newest first (a name may come twice, for two inputs that
    /// had it in turn): by default each task at the first recorded under
    /// its name. A source whose inputs can be renamed between runs (a
    /// rotated file) matches them by identity instead, so that a renamed
    /// input resumes where it was and the new input under its old name
    /// starts afresh. A task left out starts at its beginning.
    fn resume_points(
        &self,
        tasks: &[String],
        recorded: &[(String, Resume)],
    ) -> Result<BTreeMap<String, Resume>> {
        Ok(tasks
            .iter()
            .filter_map(|t| {
                let (_, resume) = recorded.iter().find(|(was, _)| was == t)?;
                Some((t.clone(), resume.clone()))
            })
            .collect())
    }

    /// Who else reads this input as the same application right now (the
    /// active members of a consumer group), each described for a message;
    /// a member that is instance `own` itself (left behind by a process
    /// that died on this state directory) is not counted. A run, `offsets
    /// reset` and `replay` refuse to start while there is anyone: two
    /// readers of one partition would double its output. Empty (the
    /// default) for a source without such a thing.
    fn active_readers(&self, own: Option<&str>) -> Result<Vec<String>> {
        let _ = own;
        Ok(Vec::new())
    }

    /// The active members of the group that shares this source's tasks
    /// among instances, with the tasks each holds, for `offsets show`.
    /// Empty (the default) for a source without such a group.
    fn members(&self) -> Result<Vec<GroupMemberInfo>> {
        Ok(Vec::new())
    }

    /// Whether a run over this source ends once its input is read (files
    /// not followed, a Kafka run until idle): it then shows its progress.
    /// False by default.
    fn bounded(&self) -> bool {
        false
    }

    /// How long a bounded run waits for a record before it ends a task
    /// (`--until-idle-ms`); an instance that the group gives nothing to
    /// hold ends after as long. `None` (the default): the source runs on.
    fn until_idle(&self) -> Option<std::time::Duration> {
        None
    }

    /// Whether this source's tasks are shared among the application's
    /// instances through a group it [`join`](Self::join)s (a Kafka
    /// consumer group). False by default.
    fn has_group(&self) -> bool {
        false
    }

    /// Joins the group that shares this source's tasks among the
    /// application's instances, as instance `instance` (persistent: a
    /// restart takes its own place back at once), and waits for the
    /// group's first assignment. With `shared`, the instance shares the
    /// tasks (and the shards of the [`repartition`](Self::repartition)
    /// topic, if prepared) with other instances, handing them over on
    /// rebalances; without, it runs the application alone. `None` (the
    /// default) for a source without such a group.
    fn join(&self, instance: &str, shared: bool) -> Result<Option<Member>> {
        let _ = (instance, shared);
        Ok(None)
    }

    /// Prepares the topic that carries records between the application's
    /// instances to the holder of their key group's shard, with one
    /// partition per shard (`shards`): made when missing, refused with the
    /// fix when it has another count. From then on the group's members
    /// hold its shards as tasks (`<name>-<shard>`) beside the input's, and
    /// [`offsets`](Self::offsets) and [`group_offsets`](Self::group_offsets)
    /// take them. Returns its name; `None` (the default) for a source
    /// without a group, whose one instance holds every shard.
    fn repartition(&self, shards: u16) -> Result<Option<String>> {
        let _ = shards;
        Ok(None)
    }

    /// Opens shard `shard` of the [`repartition`](Self::repartition) topic
    /// where it resumes (its start when `None`), reading only committed
    /// records. With `drain`, the reader ends at the shard's end: this
    /// instance holds every shard, so nobody forwards records any more.
    fn open_shard(
        &self,
        shard: u16,
        from: Option<u64>,
        drain: bool,
    ) -> Result<Box<dyn SourceReader<Forwarded>>> {
        let _ = (from, drain);
        Err(Error::Config(format!(
            "the {} source has no repartition topic to read shard {shard} of",
            self.describe()
        )))
    }

    /// Every task's committed and end positions, for `offsets show`.
    fn offsets(&self) -> Result<Vec<TaskOffsets>> {
        Err(Error::Config(format!(
            "the {} source keeps no offsets to show",
            self.describe()
        )))
    }

    /// The position of every task for a reset to `to`.
    fn resolve(&self, to: ResetTo) -> Result<BTreeMap<String, u64>> {
        let _ = to;
        Err(Error::Config(format!(
            "the {} source cannot be reset",
            self.describe()
        )))
    }

    /// The consumer-group offsets for task positions `positions`, to be
    /// committed inside a transaction (Kafka mode); `None` (the default)
    /// for a source without consumer groups, whose positions the runtime
    /// then keeps in the changelog.
    fn group_offsets(&self, positions: &BTreeMap<String, u64>) -> Result<Option<GroupOffsets>> {
        let _ = positions;
        Ok(None)
    }

    /// The instances whose commits wrote the last settled positions of the
    /// tasks (and shards), as the positions record them, each with the key
    /// groups it ran with (when recorded): when positions stay unsettled (a
    /// transaction that commits them is pending), recovery fences those of
    /// them that left the group, and an instance that runs with other key
    /// groups is refused. Empty by default.
    fn last_committers(&self) -> Result<BTreeMap<String, Option<u16>>> {
        Ok(BTreeMap::new())
    }

    /// Where each of `shards` of the [`repartition`](Self::repartition)
    /// topic ends now (uncommitted records included), by shard; empty by
    /// default.
    fn shard_ends(&self, shards: &[u16]) -> Result<BTreeMap<u16, u64>> {
        let _ = shards;
        Ok(BTreeMap::new())
    }

    /// Drops the records of the [`repartition`](Self::repartition) topic
    /// below `positions` (per task; other tasks are ignored): their holder
    /// committed that it read them. Does nothing by default.
    fn purge(&self, positions: &BTreeMap<String, u64>) -> Result<()> {
        let _ = positions;
        Ok(())
    }

    /// Records `positions` where the source system keeps progress (a
    /// consumer group), after a reset; advisory, like every such copy.
    fn publish(&self, positions: &BTreeMap<String, u64>) -> Result<()> {
        let _ = positions;
        Ok(())
    }
}

/// Reads one task. Positions are opaque to the runtime but must resume
/// exactly after the last record returned, and grow while the task reads
/// one input (see [`identity`](Self::identity)).
pub trait SourceReader<T>: Send {
    /// Appends up to `max` records to `out`.
    ///
    /// # Errors
    /// [`Error::BadInput`](crate::Error::BadInput) for a record that cannot be
    /// decoded; the reader has then moved past it, so that the caller may skip
    /// it and read on. Records before it were returned by this or earlier calls.
    fn read(&mut self, out: &mut Vec<Record<(), T>>, max: usize) -> Result<ReadStatus>;

    /// The position just after the last record returned.
    fn position(&self) -> u64;

    /// Which input [`position`](Self::position) is in, for a source whose
    /// task can come to read another input under the same name (a file
    /// replaced or rotated): checkpointed with the position and handed back
    /// in [`Resume`]. `None` (the default) for a source without such a thing.
    fn identity(&self) -> Option<String> {
        None
    }

    /// Told once a checkpoint holding `position` has committed, e.g. to
    /// copy it to a Kafka consumer group for lag monitors (advisory: the
    /// checkpoint stays the truth). Does nothing by default.
    fn committed(&mut self, position: u64) -> Result<()> {
        let _ = position;
        Ok(())
    }

    /// How far this reader is behind the end of its input, as far as it
    /// knows without I/O of its own beyond a cheap call (asked once per
    /// epoch, for `weir_consumer_lag_records` and `weir_input_lag_bytes`).
    /// `None` when it cannot tell.
    fn lag(&self) -> Option<Lag> {
        None
    }
}
