//! Recovery at the start of a run: whatever the last run left, this run
//! starts from exactly the last commit point (ARCHITECTURE §4).
//!
//! - [`sinks`]: every output the checkpoint names is cut back to its
//!   committed length, before any record is read.
//! - [`sources`]: every task resumes from its checkpointed position, in the
//!   input the checkpoint read.
//! - [`changelog`] (Kafka mode): older instances are fenced and the state
//!   is rolled forward from the changelog to the committed transaction.
//!
//! Each step can be interrupted and run again to the same end (I3).

pub(crate) mod changelog;
pub(crate) mod moved;
mod sinks;
mod sources;

pub(crate) use sinks::SinkRecovery;
pub(crate) use sources::resume_points;

use std::sync::Arc;

use weir_core::{Error, Result};

use crate::checkpoint::{Commit, Local, RunInit, Transactional};
use crate::config::Guarantee;
use crate::plan::JobEnv;
use crate::stage::SourceAdmin;
use moved::HeldShards;

/// Opens the run's commit point. An exactly-once pipeline whose sinks
/// commit through a transaction (Kafka mode) fences older instances and
/// rolls its state forward from the changelog first, updating
/// `env.manifest`; this must happen before the sinks are opened. Any other
/// pipeline commits locally.
pub(crate) async fn open_commit(
    env: &mut JobEnv,
    source: Arc<dyn SourceAdmin>,
) -> Result<Arc<dyn Commit>> {
    let commit = match &env.commit {
        Some(commit) if env.config.guarantee == Guarantee::ExactlyOnce => commit.clone(),
        _ => return Ok(Arc::new(Local::new(env.store.clone()))),
    };
    let store = env.store.clone();
    let mut manifest = env.manifest.clone();
    let init = RunInit {
        instance: env.instance.clone(),
        epoch: std::time::Duration::from_millis(env.config.checkpoint.interval_ms),
        shards: env.holdings.shards.as_ref().map(|s| HeldShards {
            held: s.held.clone(),
            count: s.count,
        }),
        moved_keep: std::time::Duration::from_millis(env.config.moved_state_keep_ms),
    };
    let span = tracing::info_span!("recovery", instance = %init.instance);
    let (txn, manifest) = tokio::task::spawn_blocking(move || {
        span.in_scope(|| {
            Transactional::open(&*commit, source, store, &mut manifest, &init)
                .map(|t| (t, manifest))
        })
    })
    .await
    .map_err(|e| Error::State(format!("the recovery task failed: {e}")))??;
    env.manifest = manifest;
    Ok(Arc::new(txn))
}
