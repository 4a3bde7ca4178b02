//! `run` and `replay`: one process's life, from recovery to the last
//! commit, with retries after aborted epochs.

use std::sync::Arc;

use clap::ArgMatches;
use weir_core::{Error, Result};

use super::{check_fingerprint, refuse_if_read_elsewhere, App, Build, Signature};
use crate::executor::{JobEnv, RunSummary};
use crate::store::{self, Store};
use crate::{Config, Pipeline};

impl App {
    pub(super) fn run_cmd(
        &self,
        m: &ArgMatches,
        build: &Build<'_>,
        replay_from: Option<u64>,
    ) -> Result<()> {
        let (config, pipeline) = self.load(m, build)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.runtime().parallelism.max(1))
            .enable_all()
            .build()
            .map_err(|e| Error::io("cannot start the tokio runtime", "", e))?;
        // At once: a SIGTERM during recovery ends the run cleanly too.
        let shutdown = shutdown_signals(rt.handle())?;
        let mut pipeline = Some(pipeline);
        let mut replay_from = replay_from;
        let mut retry = Retry::default();
        let summary = loop {
            let p = match pipeline.take() {
                Some(p) => p,
                None => {
                    let (_, p) = self.load(m, build)?;
                    p
                }
            };
            let mut committed = false;
            let run = run_once(p, &config, replay_from, shutdown.clone(), &mut committed);
            match rt.block_on(run) {
                Ok(summary) => break summary,
                Err(e) => retry.after(e, committed)?,
            }
            // A replay is done once its state is in place: never twice.
            replay_from = None;
        };
        tracing::info!(
            commits = summary.commits,
            epoch = summary.last_epoch,
            records = summary.records_read,
            skipped = summary.skipped,
            commit_p50_ms = summary.commit_times.percentile_ms(0.5),
            commit_p99_ms = summary.commit_times.percentile_ms(0.99),
            commit_max_ms = summary.commit_times.max_ms(),
            align_p50_ms = summary.align_times.percentile_ms(0.5),
            align_p99_ms = summary.align_times.percentile_ms(0.99),
            "done"
        );
        Ok(())
    }
}

/// Recovers from aborted epochs (e.g. the broker restarted mid-commit):
/// the run starts over from the last commit point, as after a crash,
/// with a growing pause; errors while the cluster is still away are
/// retried for a while. An incident ends only when a run commits: runs
/// that keep failing without a commit give up after [`RETRY_FOR`], however
/// long each of them took to fail.
#[derive(Default)]
struct Retry {
    since: Option<std::time::Instant>,
    attempts: u32,
}

/// How long a run keeps recovering from aborted epochs before giving up.
const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(120);

impl Retry {
    fn after(&mut self, e: Error, committed: bool) -> Result<()> {
        if committed {
            // The run made progress before this abort: a new incident.
            *self = Retry::default();
        }
        let since = match (&e, self.since) {
            (Error::Aborted(_), None) => *self.since.insert(std::time::Instant::now()),
            (Error::Fenced(_), _) | (_, None) => return Err(e),
            (_, Some(since)) => since,
        };
        if since.elapsed() > RETRY_FOR {
            return Err(e);
        }
        self.attempts += 1;
        let pause = std::time::Duration::from_millis(250 << self.attempts.min(5));
        tracing::warn!(
            attempt = self.attempts,
            "{e}; recovering from the last commit and redoing the epoch in {pause:?}"
        );
        std::thread::sleep(pause);
        Ok(())
    }
}

/// Runs `pipeline` with `config` until its bounded input is done or a
/// shutdown signal (SIGINT, SIGTERM) arrives; each ends with a commit.
/// With `replay_from`, first restores that retained checkpoint.
pub async fn run(
    pipeline: Pipeline,
    config: &Config,
    replay_from: Option<u64>,
) -> Result<RunSummary> {
    let shutdown = shutdown_signals(&tokio::runtime::Handle::current())?;
    run_once(pipeline, config, replay_from, shutdown, &mut false).await
}

/// SIGINT and SIGTERM, caught from now on: the receiver turns true at the
/// first, and the run commits its open epoch and ends.
fn shutdown_signals(rt: &tokio::runtime::Handle) -> Result<tokio::sync::watch::Receiver<bool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let _in_runtime = rt.enter();
    let catch = |kind: SignalKind| {
        signal(kind).map_err(|e| Error::io("cannot catch signals", "SIGINT/SIGTERM", e))
    };
    let (mut term, mut int) = (
        catch(SignalKind::terminate())?,
        catch(SignalKind::interrupt())?,
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    rt.spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}

/// [`run`], also telling whether the run committed any checkpoint before
/// it failed (so that a retry knows a new incident from the same one).
async fn run_once(
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
    // Before anything is touched (a replay rewrites the state directory).
    refuse_if_read_elsewhere(
        built.job.source(),
        if replay_from.is_some() {
            "replay"
        } else {
            "run"
        },
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
    let manifest = match store.manifest()? {
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
        })
        .await;
    if result.is_err() {
        *committed = matches!(progress.manifest(), Ok(Some(m)) if m.epoch > start_epoch);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aborted() -> Error {
        Error::Aborted("the transaction was aborted".into())
    }

    /// An incident that began longer than [`RETRY_FOR`] ago, three retries in.
    fn incident_past_its_limit() -> Retry {
        let long_ago = std::time::Instant::now()
            .checked_sub(RETRY_FOR + std::time::Duration::from_secs(1))
            .expect("the clock is past RETRY_FOR");
        Retry {
            since: Some(long_ago),
            attempts: 3,
        }
    }

    #[test]
    fn runs_failing_without_a_commit_give_up_however_long_each_took() {
        let mut retry = incident_past_its_limit();
        // Before, a run that took longer than RETRY_FOR / 4 to fail counted
        // as a new incident, so a run wedged for 30 s at a time retried forever.
        assert!(matches!(
            retry.after(aborted(), false),
            Err(Error::Aborted(_))
        ));
    }

    #[test]
    fn a_commit_before_the_abort_starts_a_new_incident() {
        let mut retry = incident_past_its_limit();
        assert!(retry.after(aborted(), true).is_ok());
        assert_eq!(retry.attempts, 1);
        assert!(retry.since.is_some_and(|s| s.elapsed() < RETRY_FOR));
    }

    #[test]
    fn fencing_and_errors_outside_an_incident_are_not_retried() {
        let mut retry = Retry::default();
        assert!(retry
            .after(Error::Fenced("a newer instance".into()), false)
            .is_err());
        assert!(retry
            .after(Error::Config("no such topic".into()), false)
            .is_err());
    }
}
