//! Files: a line source ([`FileSource`]) and an appending, truncatable
//! line sink ([`FileSink`]) whose directory one run holds at a time.

mod identity;
mod lock;
mod sink;
mod source;

pub use sink::{FileSink, LineFormat, Lines, Tsv};
pub use source::FileSource;

/// Bytes buffered per file, read or written.
const BUFFER: usize = 1 << 20;
