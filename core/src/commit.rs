//! The commit point outside RocksDB (ARCHITECTURE §4.2): a transaction in
//! an external system (a Kafka transaction) that holds an epoch's output,
//! its state changes as changelog records, and its source positions.
//!
//! A sink that writes through such a transaction declares it with
//! [`Sink::commit_point`](crate::sink::Sink::commit_point); the runtime then
//! commits every exactly-once epoch through it and applies the epoch's
//! state to RocksDB only after it committed.

use std::collections::{BTreeMap, BTreeSet};

use crate::group::Member;
use crate::source::Route;
use crate::Result;

/// Applies one changelog record during a restore: `(key, value)`, where
/// `None` deletes the key.
pub type ApplyFn<'a> = dyn FnMut(&[u8], Option<&[u8]>) -> Result<()> + 'a;

/// Consumer-group offsets committed inside a transaction (Kafka's
/// `send_offsets_to_transaction`).
#[derive(Clone)]
pub struct GroupOffsets {
    /// The consumer group (the application id).
    pub group: String,
    /// `(topic, partition, next offset to read)`.
    pub offsets: Vec<(String, i32, u64)>,
    /// This instance's membership of the group, whose current generation
    /// the commit carries (KIP-447): a member that lost its partitions in
    /// a rebalance can commit nothing. `None` for a source without one.
    pub member: Option<Member>,
}

impl std::fmt::Debug for GroupOffsets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupOffsets")
            .field("group", &self.group)
            .field("offsets", &self.offsets)
            .field("member", &self.member.as_ref().map(|m| m.assigned()))
            .finish()
    }
}

/// What the runtime tells a commit point when a run starts.
#[derive(Debug, Clone)]
pub struct TxnInit {
    /// The pipeline's number of key groups.
    pub key_groups: u16,
    /// This instance's persistent id (kept in its state directory): its
    /// transactions are this instance's, and a restart on the same state
    /// directory fences its own zombie.
    pub instance: String,
    /// How long an epoch lasts (`checkpoint.interval_ms`): a transaction
    /// stays open about that long.
    pub epoch: std::time::Duration,
}

/// A transactional commit point shared by the sinks that write through it.
pub trait CommitPoint: Send + Sync + 'static {
    /// Identifies the commit point (its transactional id): every sink of a
    /// pipeline must write through the same one.
    fn id(&self) -> String;

    /// Starts a run: fences every older instance with the same identity
    /// (aborting its open transaction) and prepares the changelog. No
    /// transaction is open yet.
    fn open(&self, init: &TxnInit) -> Result<Box<dyn Transaction>>;

    /// Refuses epochs of `epoch` (`checkpoint.interval_ms`) that its
    /// transactions cannot stay open for; asked before a run touches
    /// anything. Admits every length by default.
    fn admits(&self, epoch: std::time::Duration) -> Result<()> {
        let _ = epoch;
        Ok(())
    }

    /// How many shards the keyed state of a pipeline with `key_groups` key
    /// groups is split into among the application's instances: key group
    /// `g` is in shard `g % shards`, which one instance holds at a time.
    /// Made ready here (a changelog with one partition per shard). `None`
    /// (the default) for a commit point whose state one instance holds.
    fn shards(&self, key_groups: u16) -> Result<Option<u16>> {
        let _ = key_groups;
        Ok(None)
    }

    /// Aborts the open transaction of instance `instance` of the
    /// application, one that is no longer a member of its group (killed,
    /// or cut off): whoever took its tasks need not wait for the broker to
    /// time the transaction out before the positions it committed settle.
    /// Does nothing by default.
    fn fence_instance(&self, instance: &str) -> Result<()> {
        let _ = instance;
        Ok(())
    }

    /// A writer of records into `topic` (the repartition topic), shard by
    /// shard, inside the open transaction: how an instance hands a record
    /// to the instance that holds its key group. Once per source task and
    /// run, after [`open`](Self::open).
    fn forwarder(&self, topic: &str) -> Result<Box<dyn Forward>> {
        Err(crate::Error::Config(format!(
            "{} cannot carry records to other instances (through `{topic}`)",
            self.id()
        )))
    }
}

/// Sends records to the instance that holds their key group (see
/// [`CommitPoint::forwarder`]).
pub trait Forward: Send {
    /// Sends one record (its encoded key and value, its time and headers)
    /// to `shard`, inside the open transaction, to go on by `route` from
    /// there.
    fn send(
        &mut self,
        shard: u16,
        route: Route,
        key: &[u8],
        value: &[u8],
        timestamp: Option<i64>,
        headers: &[crate::Header],
    ) -> Result<()>;
}

/// One run's handle on the commit point; one transaction at a time.
pub trait Transaction: Send {
    /// Opens the next epoch's transaction; sinks write into it from now on.
    fn begin(&mut self) -> Result<()>;

    /// Adds a state change of key group `group` to the open transaction:
    /// `value = None` deletes `key`.
    fn changelog(&mut self, group: u16, key: &[u8], value: Option<&[u8]>) -> Result<()>;

    /// Commits the open transaction with `offsets` inside it.
    ///
    /// # Errors
    /// [`Error::Fenced`](crate::Error::Fenced) when a newer instance took
    /// over (stop, never retry); any other error leaves the transaction
    /// aborted or unknown, and the runtime recovers before going on.
    fn commit(&mut self, offsets: Option<&GroupOffsets>) -> Result<()>;

    /// Aborts the open transaction, if one is open, when a run stops
    /// without committing it: its records are then never read
    /// `read_committed`, and the readers of its topics are not held back
    /// until the broker's transaction timeout aborts it.
    fn abort(&mut self) -> Result<()>;

    /// Per shard, the changelog position before which every committed
    /// record is known to be applied once the last commit's state is.
    /// Conservative: restoring from an earlier position is always correct.
    fn changelog_positions(&self) -> BTreeMap<u16, u64>;

    /// Reads the committed changelog of every shard in `shards` (every
    /// shard when `None`) from `from` (from the start for a shard it
    /// lacks) to its end, in order, calling `apply(key, value)` for each
    /// record; returns the positions reached. Before the first record it
    /// calls `sized(n)` with how many records it has to read at most (its
    /// progress: offsets, which compaction and transaction markers leave
    /// gaps in).
    fn restore(
        &mut self,
        from: &BTreeMap<u16, u64>,
        shards: Option<&BTreeSet<u16>>,
        sized: &mut dyn FnMut(u64),
        apply: &mut ApplyFn<'_>,
    ) -> Result<BTreeMap<u16, u64>>;
}
