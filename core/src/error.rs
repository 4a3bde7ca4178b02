//! Error types shared by every weir crate.

use std::fmt;

/// A weir error: names what failed, on what, and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value could not be encoded or decoded by its [`Codec`](crate::Codec).
    #[error("cannot {op} {what}: {message}")]
    Codec {
        /// `encode` or `decode`.
        op: &'static str,
        /// The type or state name involved.
        what: String,
        /// The codec's message.
        message: String,
    },
    /// An input record could not be read or deserialized.
    #[error("bad input in {task} at position {position}: {message}")]
    BadInput {
        /// The task (input partition) the record came from.
        task: String,
        /// The record's position in that input.
        position: u64,
        /// What is wrong with it.
        message: String,
        /// The record's raw bytes, for a dead-letter sink.
        raw: Option<Vec<u8>>,
    },
    /// A processor returned an error for a record or timer.
    #[error("processor `{processor}` failed: {message}")]
    Processor {
        /// The processor's type name.
        processor: String,
        /// Its message.
        message: String,
    },
    /// The state backend failed; the open epoch cannot commit.
    #[error("state backend: {0}")]
    State(String),
    /// An I/O error on a named path.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (e.g. `cannot open`).
        action: &'static str,
        /// The path involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Invalid configuration or pipeline wiring.
    #[error("configuration: {0}")]
    Config(String),
    /// The state on disk is damaged (a truncated or missing RocksDB file):
    /// restarting will not repair it; restore it from a retained checkpoint
    /// or, in Kafka mode, from the changelog.
    #[error("damaged state: {0}")]
    Corrupt(String),
    /// A resource this run needs (an output directory, a consumer group)
    /// is held by another running instance: stop, or give this run its own.
    #[error("in use: {0}")]
    InUse(String),
    /// This instance was replaced by another with the same identity (a Kafka
    /// transactional id): it must stop at once and commit nothing more (I4).
    #[error("fenced: {0}")]
    Fenced(String),
    /// The open epoch's transaction was aborted, or its outcome is unknown
    /// (e.g. the broker went away mid-commit): nothing of it is visible.
    /// The runtime recovers and redoes the epoch.
    #[error("epoch aborted: {0}")]
    Aborted(String),
    /// A user-defined error from processor code.
    #[error("{0}")]
    User(String),
}

impl Error {
    /// A user error with a message, for use in processors.
    pub fn user(message: impl fmt::Display) -> Self {
        Error::User(message.to_string())
    }

    /// An I/O error on `path` while doing `action`.
    pub fn io(action: &'static str, path: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.to_string(),
            source,
        }
    }

    /// True for errors the bad-input policy may skip: undecodable input or a
    /// processor's failure on one record.
    pub fn is_record_error(&self) -> bool {
        matches!(
            self,
            Error::BadInput { .. } | Error::Processor { .. } | Error::User(_)
        )
    }
}

/// Result with a weir [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
