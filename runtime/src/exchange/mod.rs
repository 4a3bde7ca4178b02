//! The exchange: where a source task sends its records.
//!
//! A keyed pipeline routes every record to the worker that owns its key
//! group ([`InMemory`], inside one instance), or, when another instance
//! holds the key group's shard, to that instance through the repartition
//! topic ([`Remote`], read there by a [`ShardReader`] and handed to the
//! workers after the record's exchange by its [`Shard`]); an unkeyed one
//! writes each task's records straight to its own sink output
//! ([`Direct`]). A `key_by` after a processor is a further exchange, from
//! the workers of one layer to those of the next ([`Rekey`]), through
//! the repartition topic too where instances share its key groups. Either
//! way a barrier goes the same path as the records before it, so that a
//! worker that has every source's barrier has exactly the epoch's
//! records; and a key's records keep their order through hand-overs (see
//! [`Backlog`] and [`Held`]).

mod direct;
mod held;
mod memory;
mod rekey;
mod remote;
mod route;

pub(crate) use direct::Direct;
pub(crate) use held::{release_points, Held, Hold, Waits};
pub(crate) use memory::InMemory;
pub(crate) use rekey::{NextLayer, Rekey};
pub(crate) use remote::{Backlog, Decoding, Mark, Remote, Shard, ShardReader};
use route::Router;

use weir_core::exec::EncodedKeys;
use weir_core::{Error, Record, Result};

use crate::stage::FlushedSink;

/// Where a source task sends its records, watermarks and barriers.
pub(crate) trait Exchange<T>: Send {
    fn push(&mut self, record: Record<(), T>) -> Result<()>;
    fn watermark(&mut self, watermark: i64) -> Result<()>;
    /// The source task had no records for a while: until its next
    /// watermark, it does not hold the workers' watermark back.
    fn idle(&mut self) -> Result<()> {
        Ok(())
    }
    /// The source task has read its input to the end, as far as it knows:
    /// until its next watermark, its input's own watermark (see
    /// `Context::input_watermark`) may rise to `until`.
    fn at_end(&mut self, until: i64) -> Result<()> {
        let _ = until;
        Ok(())
    }
    /// Sends buffered records on (an idle input should not hold them back).
    fn flush_pending(&mut self) -> Result<()>;
    /// Ends the epoch `epoch` on this path; returns the outputs it flushed
    /// itself (a direct sink's), for the checkpoint.
    fn barrier(&mut self, epoch: u64) -> Result<Vec<FlushedSink>>;
    /// The source task reached the end of its bounded input.
    fn finish(&mut self) -> Result<()>;
    /// A shard's reader got to `mark`: the workers after a further
    /// exchange hear of it after the records before (see [`Held`]).
    fn reached(&mut self, mark: Mark) -> Result<()> {
        let _ = mark;
        Ok(())
    }
}

/// What a worker receives from the exchange.
pub(crate) enum Msg<K, V> {
    /// Records and their keys' encodings and groups (see [`EncodedKeys`]),
    /// from source `source`.
    Batch {
        source: usize,
        records: Vec<Record<K, V>>,
        keys: EncodedKeys,
    },
    /// A source's watermark; it also tells that the source is active.
    Watermark {
        source: usize,
        watermark: i64,
    },
    /// A source is idle: it holds no watermark back until its next one.
    Idle {
        source: usize,
    },
    /// A source read its input to the end: until its next watermark, its
    /// input's own watermark may rise to `until` (an event time every
    /// record still to come is later than, if stamped when produced).
    AtEnd {
        source: usize,
        until: i64,
    },
    Finished {
        source: usize,
    },
    /// A shard's reader, source `source`, got to `mark` (see [`Held`]).
    Reached {
        source: usize,
        mark: Mark,
    },
    Barrier(u64),
}

fn worker_gone() -> Error {
    Error::State("a worker stopped; see its error above".into())
}
