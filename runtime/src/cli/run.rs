//! `run` and `replay`: one process's life, from recovery to the last
//! commit, with retries after aborted epochs.

use clap::ArgMatches;
use weir_core::{Error, Result};

use super::{App, Build};
use crate::checkpoint::RunSummary;
use crate::instance::{run_once, shutdown_signals, Membership, Retry};
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
        let mut membership = Membership::default();
        let summary = loop {
            let p = match pipeline.take() {
                Some(p) => p,
                None => {
                    let (_, p) = self.load(m, build)?;
                    p
                }
            };
            let mut committed = false;
            let run = run_once(
                p,
                &config,
                replay_from,
                shutdown.clone(),
                &mut committed,
                &mut membership,
            );
            match rt.block_on(run) {
                Ok(summary) => break summary,
                Err(e) => {
                    if let Err(e) = retry.after(e, committed) {
                        rt.block_on(membership.leave());
                        return Err(e);
                    }
                }
            }
            // A replay is done once its state is in place: never twice.
            replay_from = None;
        };
        rt.block_on(membership.leave());
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

/// Runs `pipeline` with `config` until its bounded input is done or a
/// shutdown signal (SIGINT, SIGTERM) arrives; each ends with a commit.
/// With `replay_from`, first restores that retained checkpoint.
pub async fn run(
    pipeline: Pipeline,
    config: &Config,
    replay_from: Option<u64>,
) -> Result<RunSummary> {
    let shutdown = shutdown_signals(&tokio::runtime::Handle::current())?;
    let mut membership = Membership::default();
    let result = run_once(
        pipeline,
        config,
        replay_from,
        shutdown,
        &mut false,
        &mut membership,
    )
    .await;
    membership.leave().await;
    result
}
