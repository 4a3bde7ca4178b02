//! The sink side of recovery (ARCHITECTURE §4.1): every output the last
//! checkpoint names is cut back to its committed length before anything
//! runs, whether or not a task of this run opens it.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

use weir_core::Result;

use crate::config::Guarantee;
use crate::plan::JobEnv;

/// The sink side of recovery: says where each output opened by this run is
/// truncated to, and remembers which were opened, so that the others
/// (written by a run with another parallelism, or for an input that is
/// gone) are cut back too.
pub(crate) struct SinkRecovery<'a> {
    env: &'a JobEnv,
    opened: Mutex<BTreeSet<String>>,
}

impl<'a> SinkRecovery<'a> {
    pub(crate) fn new(env: &'a JobEnv) -> Self {
        SinkRecovery {
            env,
            opened: Mutex::new(BTreeSet::new()),
        }
    }

    /// Where the output `id`, opened by this run, is truncated to: its
    /// committed length (0 when nothing of it committed) under exactly-once;
    /// `None` (keep everything) otherwise.
    pub(crate) fn truncate_to(&self, id: &str) -> Option<u64> {
        self.opened
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned());
        match self.env.config.guarantee {
            Guarantee::ExactlyOnce => Some(self.env.manifest.sinks.get(id).copied().unwrap_or(0)),
            Guarantee::AtLeastOnce | Guarantee::AtMostOnce => None,
        }
    }

    /// Under exactly-once, cuts back every output the checkpoint names that
    /// no task of this run opened. Call it once every output is opened,
    /// before any record is read.
    pub(crate) fn discard_unopened(&self) -> Result<()> {
        if self.env.config.guarantee != Guarantee::ExactlyOnce {
            return Ok(());
        }
        let opened = self.opened.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, committed) in &self.env.manifest.sinks {
            if opened.contains(id) {
                continue;
            }
            // Named sinks' ids carry their prefix; the main sink's none.
            let owner = self
                .env
                .sinks
                .iter()
                .filter(|s| id.starts_with(s.prefix.as_str()))
                .max_by_key(|s| s.prefix.len());
            if let Some(sink) = owner {
                tracing::debug!(output = %id, committed, "recovering an output no task of this run writes");
                (sink.discard)(&id[sink.prefix.len()..], *committed)?;
            }
        }
        Ok(())
    }
}
