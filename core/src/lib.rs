//! weir's user API.
//!
//! A pipeline is built from [`Processor`]s: each receives [`Record`]s of one
//! key type, keeps the typed state it declares ([`ValueDescriptor`],
//! [`MapDescriptor`], [`ListDescriptor`]) through its [`Context`],
//! registers timers, and emits records downstream and to typed side
//! outputs ([`OutputTag`]). The runtime
//! (`weir-runtime`) owns execution, checkpoints and recovery, so a processor
//! contains no commit code at all.
//!
//! With the `testing` feature, [`testing::TestDriver`] runs a processor in
//! memory: pipe records, advance time, checkpoint, crash and restore; and
//! [`testing::Chain`] does the same for processors keyed again between them.
#![deny(clippy::unwrap_used)]

pub mod codec;
pub mod commit;
mod context;
pub mod error;
pub mod exec;
pub mod group;
pub mod join;
pub mod keygroup;
mod open;
mod output;
mod processor;
mod record;
pub mod serdes;
pub mod sink;
pub mod source;
pub mod state;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timer;
pub mod window;

pub use codec::{encode_key, Codec, Key};
/// A string that keeps up to 24 bytes inline. As a record key (a word, a
/// user id) it costs no allocation per record and no cross-thread free
/// after the exchange, and it encodes exactly as a `String` does: state,
/// key groups and changelogs are the same for either, so a pipeline can
/// switch between them without losing its state.
pub use compact_str::CompactString;
pub use context::Context;
/// One of two values: a record of a [`Union`](source::Union)'s or a two-topic
/// Kafka source's first input (`Left`) or second (`Right`).
pub use either::Either;
pub use error::{Error, Result};
pub use open::{OpenContext, Settings};
pub use output::{OutputSpec, OutputTag};
pub use processor::Processor;
pub use record::{Header, Record};
pub use serdes::Serde;
pub use state::{
    Declarations, ListDescriptor, ListState, MapDescriptor, MapState, StateBackend,
    ValueDescriptor, ValueState,
};
pub use timer::{TimeDomain, Timer};

/// What a pipeline author needs in scope.
pub mod prelude {
    pub use crate::{
        Codec, Context, Declarations, Error, Key, ListDescriptor, ListState, MapDescriptor,
        MapState, OpenContext, OutputTag, Processor, Record, Result, TimeDomain, Timer,
        ValueDescriptor, ValueState,
    };
}
