//! `run` and `replay`: one process's life, from recovery to the last
//! commit, with retries after aborted epochs.

use clap::ArgMatches;
use weir_core::{Error, Result};

use super::{App, Build};
use crate::checkpoint::RunSummary;
use crate::instance::{run_once, shutdown_signals, Membership, Retry};
use crate::observe::http::Server;
use crate::observe::status;
use crate::{Config, Pipeline};

impl App {
    pub(super) fn run_cmd(
        &self,
        m: &ArgMatches,
        build: &Build<'_>,
        replay_from: Option<u64>,
    ) -> Result<()> {
        let config = self.config(m)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.runtime().parallelism.max(1))
            .enable_all()
            .build()
            .map_err(|e| Error::io("cannot start the tokio runtime", "", e))?;
        // Before the pipeline is built (its connectors may wait on a
        // broker): a SIGTERM at any time from here, recovery included, ends
        // the run cleanly, never by the signal's default.
        let shutdown = shutdown_signals(rt.handle())?;
        // Serving from the start: /healthz answers while the run recovers.
        let _server = match config.runtime().http.address()? {
            Some(listen) => {
                let server = Server::start(listen)?;
                // The group's other members learn where to send queries.
                weir_core::group::advertise(&server.address.to_string());
                Some(server)
            }
            None => None,
        };
        let mut pipeline = Some(self.load(m, build)?.1);
        let mut replay_from = replay_from;
        let mut retry = Retry::default();
        let mut membership = Membership::default();
        let summary = loop {
            let mut committed = false;
            // A run that starts over builds its pipeline anew, which may
            // fail while the brokers are still away: retried alike.
            let result = match pipeline
                .take()
                .map_or_else(|| self.load(m, build).map(|l| l.1), Ok)
            {
                Ok(p) => rt.block_on(run_once(
                    p,
                    &config,
                    replay_from,
                    shutdown.clone(),
                    &mut committed,
                    &mut membership,
                )),
                Err(e) => Err(e),
            };
            if let Err(e) = &result {
                status::incident("error", e.to_string());
            }
            match result {
                Ok(summary) => break summary,
                // Asked to stop, and the run could not even end with a
                // commit (the brokers are away): the open epoch is redone
                // by the next start; no retry keeps the process up.
                Err(e) if *shutdown.borrow() => {
                    rt.block_on(membership.leave());
                    return Err(e);
                }
                Err(e) => match retry.after(e, committed) {
                    Ok(pause) => rt.block_on(pause_unless_shutdown(pause, shutdown.clone())),
                    Err(e) => {
                        rt.block_on(membership.leave());
                        return Err(e);
                    }
                },
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

/// Waits `pause`, or less if a shutdown is asked for meanwhile (the run
/// that follows then recovers and ends at once).
async fn pause_unless_shutdown(
    pause: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let _ = tokio::time::timeout(pause, shutdown.wait_for(|asked| *asked)).await;
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
