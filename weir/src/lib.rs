//! weir: exactly-once stream processing in an ordinary Rust binary.
//!
//! A pipeline is built from [`Processor`]s wired between sources and sinks
//! in a [`Pipeline`]; the runtime reads Kafka partitions or files, keeps
//! the state the processors declare in RocksDB, and commits state, source
//! positions and output as one atomic checkpoint, so that after any crash
//! it resumes exactly where it was: no duplicate, no loss.
//!
//! This crate gathers the three that do the work, so that a pipeline
//! depends on one crate and imports one line:
//!
//! ```ignore
//! use weir::prelude::*;
//! ```
//!
//! - the user API ([`Processor`], [`Context`], declared state, timers,
//!   [`OutputTag`]) from `weir-core`;
//! - the builder and the command line every pipeline binary shares
//!   ([`Pipeline`], [`App`]) from `weir-runtime`;
//! - the connectors ([`file`](mod@file), [`kafka`], [`stdout`]) from `weir-connectors`.

pub use weir_connectors::{file, kafka, stdout, text};
#[cfg(feature = "testing")]
pub use weir_core::testing;
pub use weir_core::{
    codec, encode_key, error, group, join, keygroup, serdes, sink, source, state, timer, window,
    Codec, CompactString, Context, Declarations, Either, Error, Header, Key, ListDescriptor,
    ListState, MapDescriptor, MapState, OpenContext, OutputTag, Processor, Record, Result,
    Settings, TimeDomain, Timer, ValueDescriptor, ValueState,
};
pub use weir_runtime::cli::{self, App};
pub use weir_runtime::{
    config, Config, Guarantee, KeyedStream, OnBadInput, OutputStream, Pipeline,
    SessionWindowedStream, Stream, WindowedStream,
};

/// What a pipeline binary needs in scope: the processor API, the
/// builder, the command line and the common connectors.
pub mod prelude {
    pub use weir_connectors::file::{FileSink, FileSource};
    pub use weir_connectors::kafka::{
        KafkaOutput, KafkaRecord, KafkaSettings, KafkaSource, StartAt,
    };
    pub use weir_core::join::{JoinInput, JoinKind, JoinWindows};
    pub use weir_core::prelude::*;
    pub use weir_core::serdes::{Bincode, Bytes, Json, NoKey, Serde, Utf8};
    pub use weir_core::source::Union;
    pub use weir_core::window::{
        Aggregate, Emit, Sessions, WindowFunction, WindowState, Windowed, Windows,
    };
    pub use weir_core::{CompactString, Either};
    pub use weir_runtime::cli::App;
    pub use weir_runtime::{Config, KeyedStream, Pipeline, Stream};
}
