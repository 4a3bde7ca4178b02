//! Seeing into a running pipeline (ARCHITECTURE §10): the process's
//! Prometheus metrics ([`metrics`]), what the instance is doing now
//! ([`status`]), the progress of long work ([`progress`]), and the HTTP server that serves both when `http.listen`
//! is set ([`http`]).

pub(crate) mod http;
pub(crate) mod metrics;
pub(crate) mod progress;
pub(crate) mod query;
pub(crate) mod status;

pub(crate) use metrics::{CacheShare, CheckpointResult, METRICS};
pub(crate) use status::Phase;
