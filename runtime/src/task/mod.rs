//! The tasks of a run and what they tell the coordinator.
//!
//! A source task is a thread that reads one input partition, runs the
//! stateless operators before the exchange, and at each requested barrier
//! reports its position and pauses until the epoch is released
//! ([`source`]). A worker is a tokio task that runs the processors and
//! sinks of its key groups and, once it has every source's barrier, hands
//! its dirty state and flushed outputs to the coordinator ([`worker`]).
//! Workers come in layers, one per exchange ([`layer`]).

pub(crate) mod layer;
pub(crate) mod source;
pub(crate) mod worker;

use tokio::sync::mpsc;
use weir_core::Error;

use crate::stage::FlushedSink;
use crate::state::Write;

/// What tasks tell the coordinator.
pub(crate) enum Event {
    /// A source task reached the barrier of the requested epoch.
    SourceAck {
        task: String,
        position: u64,
        identity: Option<String>,
        finished: bool,
        flushes: Vec<FlushedSink>,
    },
    /// A worker has every source's barrier of `epoch`.
    WorkerAck {
        epoch: u64,
        writes: Vec<Write>,
        /// Bytes (keys and values) of `writes`.
        bytes: u64,
        flushes: Vec<FlushedSink>,
    },
    /// A source task reached the end of its bounded input.
    SourceFinished,
    /// A worker's writes in epoch `.0` reached its share of the cache: the
    /// epoch should end now rather than at its interval.
    EpochFull(u64),
    /// A task failed: nothing of the open epoch may commit.
    Failed(Error),
}

/// The tasks' side of the coordinator's channel.
pub(crate) type Events = mpsc::UnboundedSender<Event>;

pub(crate) fn coordinator_gone() -> Error {
    Error::State("the coordinator stopped".into())
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}
