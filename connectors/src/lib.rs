//! weir's connectors: files in, files out, stdout for demos.
//!
//! - [`file::FileSource`]: one task per input file; position = byte offset of
//!   the next unread line; bounded (ends at end of input) or `follow` (tails).
//! - [`file::FileSink`]: one output file per sink and task, appended, fsynced
//!   at each commit and truncated to its committed length on recovery.
//! - [`kafka::KafkaSource`]: one task per topic-partition, `read_committed`,
//!   auto-commit off; checkpointed offsets are the truth, and each commit is
//!   copied to the consumer group so that lag monitors see real progress.
//! - [`stdout::StdoutSink`]: prints records; it cannot be rewound, so after a
//!   crash it may print records of the open epoch again.
#![deny(clippy::unwrap_used)]

pub mod file;
pub mod kafka;
pub mod stdout;
pub mod text;
