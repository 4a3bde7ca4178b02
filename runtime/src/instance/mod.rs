//! One process's life as an instance of the application: admission checks,
//! opening the state, recovery and the run ([`launch`]), retries after an
//! aborted epoch ([`Retry`]), and the signals that end it cleanly.

mod admission;
pub(crate) mod identity;
mod launch;
mod retry;
mod signals;

pub(crate) use admission::{check_fingerprint, join_group, refuse_if_read_elsewhere, Signature};
pub(crate) use retry::Retry;
pub(crate) use signals::shutdown_signals;

use std::sync::Arc;

use weir_core::{Error, Result};

use crate::checkpoint::RunSummary;
use crate::plan::JobEnv;
use crate::store::{self, Store};
use crate::{Config, Pipeline};

/// [`run`], also telling whether the run committed any checkpoint before
/// it failed (so that a retry knows a new incident from the same one).
pub(crate) async fn run_once(
    pipeline: Pipeline,
    config: &Config,
    replay_from: Option<u64>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    committed: &mut bool,
) -> Result<RunSummary> {
    let rc = config.runtime().clone();
    let dir = rc.state.clone().ok_or_else(|| {
        Error::Config("no state directory; pass --state DIR (or set `state` in the config)".into())
    })?;
    let signature = Signature::of(&pipeline);
    let built = pipeline.into_job()?;
    match (rc.on_bad_input, built.dead_letter.is_some()) {
        (crate::OnBadInput::DeadLetter, false) => return Err(Error::Config(
            "on_bad_input = \"dead-letter\", but this pipeline has no dead-letter sink; declare one (Pipeline::dead_letter, e.g. through the binary's --dead-letter-topic option) or choose fail or skip".into(),
        )),
        (policy @ (crate::OnBadInput::Fail | crate::OnBadInput::Skip), true) => {
            return Err(Error::Config(format!(
                "this pipeline has a dead-letter sink (e.g. --dead-letter-topic), but on_bad_input is `{}`, so nothing would ever reach it; set on_bad_input=dead-letter to use it, or drop it",
                if policy == crate::OnBadInput::Fail { "fail" } else { "skip" }
            )))
        }
        _ => {}
    }
    if let (Some(commit), crate::Guarantee::ExactlyOnce) = (&built.commit, rc.guarantee) {
        commit.admits(std::time::Duration::from_millis(rc.checkpoint.interval_ms))?;
    }
    // Before anything is touched (a replay rewrites the state directory).
    refuse_if_read_elsewhere(
        &*built.job.source(),
        if replay_from.is_some() {
            "replay"
        } else {
            "run"
        },
        identity::peek(&dir)?,
    )?;
    if let Some(id) = replay_from {
        let chk = store::list_checkpoints(&dir)?
            .into_iter()
            .find(|m| m.epoch == id);
        if let Some(m) = &chk {
            check_fingerprint(m, &signature, &dir)?;
        }
        let m = Store::replay(&dir, id)?;
        tracing::info!(
            from = id,
            epoch = m.epoch,
            generation = m.generation,
            "replaying from checkpoint {id}"
        );
    }
    let store_exists = dir.join("db").is_dir();
    if !store_exists {
        // A first run: an input or output that is not there must not leave
        // a state directory (or anything else) behind.
        built.job.tasks()?;
        for sink in &built.sinks {
            (sink.check)()?;
        }
    }
    let store = Arc::new(Store::open(&dir)?);
    let recovered = store.manifest()?;
    let instance = identity::load_or_create(&dir, recovered.is_some())?;
    let manifest = match recovered {
        Some(m) => {
            check_fingerprint(&m, &signature, &dir)?;
            if m.key_groups != rc.key_groups {
                return Err(Error::Config(format!(
                    "key_groups is fixed when a state directory is created: {} in {}, but {} is configured; set key_groups = {} or use a new --state",
                    m.key_groups,
                    dir.display(),
                    rc.key_groups,
                    m.key_groups
                )));
            }
            tracing::info!(epoch = m.epoch, "recovering from checkpoint {}", m.epoch);
            m
        }
        None => signature.empty_manifest(rc.key_groups),
    };
    let start_epoch = manifest.epoch;
    let progress = Arc::clone(&store);
    let member = {
        let (source, id) = (built.job.source(), instance.clone());
        tokio::task::spawn_blocking(move || join_group(&*source, &id))
            .await
            .map_err(|e| Error::State(format!("joining the consumer group failed: {e}")))??
    };
    let result = built
        .job
        .run(JobEnv {
            named: built.named,
            commit: built.commit,
            dead_letter: built.dead_letter,
            sinks: built.sinks,
            store,
            manifest,
            config: rc,
            shutdown,
            instance,
            member: member.clone(),
        })
        .await;
    if let Some(member) = member {
        // Also after a failure: a retry joins again, and a stop hands the
        // partitions over at once.
        let _ = tokio::task::spawn_blocking(move || member.leave()).await;
    }
    if result.is_err() {
        *committed = matches!(progress.manifest(), Ok(Some(m)) if m.epoch > start_epoch);
    }
    result
}
