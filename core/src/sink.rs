//! The interface between the runtime and sink connectors.

use std::path::PathBuf;
use std::sync::Arc;

use crate::commit::CommitPoint;
use crate::Result;

/// A deferred durability step (e.g. an fsync), run by the checkpoint
/// coordinator before the commit point.
pub type SyncFn = Box<dyn FnOnce() -> Result<()> + Send>;

/// The outcome of [`SinkWriter::flush`].
pub struct Flushed {
    /// The committed-length position to record in the manifest, for sinks
    /// that can truncate on recovery.
    pub position: Option<u64>,
    /// What makes the flushed data durable; run before the commit point.
    pub sync: Option<SyncFn>,
}

/// A sink of items of type `T`, opened once per task.
pub trait Sink<T>: Send + Sync + 'static {
    /// A short description for logs and the pipeline fingerprint.
    fn describe(&self) -> String;

    /// The stable id of task `task`'s output (recorded in the manifest).
    fn id(&self, task: &str) -> String;

    /// Opens task `task`'s output. With `truncate_to = Some(n)` anything past
    /// the committed position `n` is discarded first (exactly-once recovery);
    /// `Some(0)` for output with nothing committed; `None` keeps what is there.
    fn open(&self, task: &str, truncate_to: Option<u64>) -> Result<Box<dyn SinkWriter<T>>>;

    /// Exactly-once recovery of an output that no task of this run opens
    /// (an earlier run had another parallelism, or read an input that is
    /// gone): discards anything past its committed position `committed`,
    /// as [`open`](Self::open) does with `truncate_to`. `id` is what
    /// [`id`](Self::id) returned for it. Only sinks whose
    /// [`Flushed::position`] is `Some` get such outputs; the default
    /// refuses, so that a sink that forgot it never keeps output twice.
    fn discard_uncommitted(&self, id: &str, committed: u64) -> Result<()> {
        Err(crate::Error::Config(format!(
            "the {} sink cannot discard the output `{id}` past its committed position {committed}, which no task of this run writes; run again with the parallelism and inputs of the last run",
            self.describe()
        )))
    }

    /// Checks, before a pipeline's first run creates anything, that the
    /// output can be written (a Kafka topic exists), naming what is missing
    /// and the fix. Does nothing by default.
    fn check(&self) -> Result<()> {
        Ok(())
    }

    /// The local file or directory this sink writes, if any: a pipeline
    /// refuses an output inside its input (or the reverse), and two sinks
    /// on one location.
    fn location(&self) -> Option<PathBuf> {
        None
    }

    /// The transaction this sink writes through, for a sink whose output
    /// commits in an external system (a Kafka transaction); `None` (the
    /// default) for a sink the local commit point covers (files).
    fn commit_point(&self) -> Option<Arc<dyn CommitPoint>> {
        None
    }
}

/// Writes one task's output.
pub trait SinkWriter<T>: Send {
    /// Buffers one item.
    fn write(&mut self, item: &T) -> Result<()>;
    /// Hands everything buffered to the OS and says how to make it durable.
    fn flush(&mut self) -> Result<Flushed>;
}
