//! The interface between the runtime and source connectors.

use crate::{Record, Result};

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

    /// Opens task `task` at `position` (its start when `None`).
    fn open(&self, task: &str, position: Option<u64>) -> Result<Box<dyn SourceReader<Self::Item>>>;
}

/// Reads one task. Positions are opaque to the runtime but must be
/// monotonic and must resume exactly after the last record returned.
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

    /// Told once a checkpoint holding `position` has committed, e.g. to
    /// copy it to a Kafka consumer group for lag monitors (advisory: the
    /// checkpoint stays the truth). Does nothing by default.
    fn committed(&mut self, position: u64) -> Result<()> {
        let _ = position;
        Ok(())
    }
}
