//! weir's runtime: runs a [`Pipeline`] with exactly-once checkpoints.
//!
//! It owns the task executor (tokio workers fed by one thread per source
//! task), epochs and the checkpoint coordinator, the RocksDB state backend,
//! recovery, retained checkpoints and replay, configuration, logging, and
//! the command line every pipeline binary shares ([`cli`]).
//!
//! In local mode the commit point is one synced RocksDB `WriteBatch` holding
//! the epoch's state writes, the source positions, the sink positions and
//! the manifest (ARCHITECTURE §4.1).
#![deny(clippy::unwrap_used)]

mod checkpoint;
pub mod cli;
pub mod config;
mod exchange;
pub mod failpoints;
mod histogram;
mod instance;
pub mod manifest;
mod observe;
mod pipeline;
mod plan;
mod recovery;
mod stage;
mod state;
pub mod store;
mod task;

pub use checkpoint::RunSummary;
pub use config::{Config, Guarantee, OnBadInput, RuntimeConfig};
pub use histogram::Histogram;
pub use manifest::Manifest;
pub use pipeline::{
    KeyedStream, OutputStream, Pipeline, SessionWindowedStream, Stream, WindowedStream,
};

/// What a pipeline binary needs in scope: the core API plus the builder.
pub mod prelude {
    pub use crate::cli::App;
    pub use crate::{Config, KeyedStream, Pipeline, Stream};
    pub use weir_core::prelude::*;
}
