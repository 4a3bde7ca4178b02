//! Joins as processors over one keyed stream that carries both sides
//! ([`JoinInput`]): both sides are keyed by the join key through the same
//! exchange, so that they meet in the same key group, and the join's state
//! is keyed state like any other, checkpointed and restored with it.
//!
//! - [`TableJoin`]: a stream joined with the latest value of a table (a
//!   changelog: a newer value replaces the older, a tombstone deletes),
//!   inner or left, in event time: each stream record is joined with the
//!   table as it was at the record's time, whatever order the two inputs
//!   are read in.
//! - [`WindowJoin`]: two streams joined within a window of event time
//!   ([`JoinWindows`]), inner or left: every pair of records of one key
//!   whose times are close enough, once.

mod stream;
mod table;

pub use stream::{JoinWindows, WindowJoin};
pub use table::TableJoin;

use serde::{Deserialize, Serialize};

/// One record of a join's input: from the stream, or an update of the
/// table (`None`: the key was deleted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinInput<S, T> {
    /// A record of the stream side.
    Stream(S),
    /// A new value of the table side for the record's key, or its deletion.
    Table(Option<T>),
}

/// Which stream records a join emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Only those whose key has a value in the table (a partner in the
    /// other stream).
    Inner,
    /// Every one, with `None` when the key has no value (no partner).
    Left,
}
