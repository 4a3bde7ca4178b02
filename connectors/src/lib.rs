//! weir's connectors: files in, files out, stdout for demos.
//!
//! - [`file::FileSource`]: one task per input file; position = byte offset of
//!   the next unread line; bounded (ends at end of input) or `follow` (tails).
//! - [`file::FileSink`]: one output file per sink and task, appended, fsynced
//!   at each commit and truncated to its committed length on recovery.
//! - [`stdout::StdoutSink`]: prints records; it cannot be rewound, so after a
//!   crash it may print records of the open epoch again.
#![deny(clippy::unwrap_used)]

pub mod file;
pub mod stdout;
