//! Runnable weir pipelines. The processors live here, so that they can be
//! unit-tested with `TestDriver`; each binary in `src/bin/` wires one into a
//! pipeline and starts with a header that says what it does, its guarantee
//! and how to run it.

pub mod changes;
pub mod clicks;
pub mod enrich_orders;
pub mod page_views;
pub mod sessions;
pub mod top_words;
pub mod wordcount;

/// Every example binary allocates through mimalloc: the record path
/// allocates many small, short-lived buffers (words, keys, batches), often
/// freed on another thread than the one that allocated them, which is
/// mimalloc's strength.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
