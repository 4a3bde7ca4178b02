//! Epochs and the checkpoint: the heart of the exactly-once contract
//! (ARCHITECTURE §4).
//!
//! An epoch ends with a barrier. The [`Coordinator`] asks every source to
//! end the epoch ([`Control`]); each source, at its next batch boundary,
//! sends a barrier through the exchange to every worker, reports its
//! position and pauses. A worker that has the barrier of every source has
//! processed exactly the epoch's records: it flushes its sinks and hands
//! its dirty state to the coordinator. The acknowledgements, gathered
//! ([`Acks`]), make a [`Checkpoint`], which the commit point makes durable
//! ([`Commit`]): one synced RocksDB batch in local mode ([`Local`]), a
//! Kafka transaction followed by an unsynced batch in Kafka mode
//! ([`Transactional`]). The next barrier is requested only once the
//! commit landed; every K-th checkpoint is also retained for replay
//! ([`Retention`]).

mod commit;
mod control;
mod coordinator;
mod epoch;
mod local;
mod retention;
mod summary;
mod transactional;

pub(crate) use commit::{Checkpoint, Commit, Release};
pub(crate) use control::Control;
pub(crate) use coordinator::Coordinator;
pub(crate) use epoch::Acks;
pub(crate) use local::Local;
pub(crate) use retention::Retention;
pub use summary::RunSummary;
pub(crate) use transactional::{group_offsets, RunInit, Transactional, POSITION_KEY, TIMELINE_KEY};
