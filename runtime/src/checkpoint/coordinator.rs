//! The checkpoint coordinator: decides when an epoch ends, gathers every
//! task's acknowledgement of its barrier, and has the commit point make the
//! checkpoint durable before the next barrier.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use weir_core::{Error, Result};

use super::{Acks, Checkpoint, Commit, Control, Release, Retention};
use crate::config::{Guarantee, RuntimeConfig};
use crate::instance::RunSummary;
use crate::manifest::{Manifest, SourcePosition};
use crate::stage::Metrics;
use crate::task::Event;

/// How often a long run logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Runs the epochs of one run, from its recovered manifest to its end.
pub(crate) struct Coordinator {
    control: Arc<Control>,
    commit: Arc<dyn Commit>,
    retention: Retention,
    interval: Duration,
    guarantee: Guarantee,
    /// How many source tasks and workers acknowledge every barrier.
    sources: usize,
    workers: usize,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    /// The last epoch whose barrier was requested.
    epoch: u64,
    /// Source tasks at the end of their bounded input.
    finished: usize,
    /// A shutdown was asked for: the next epoch is the last.
    stop: bool,
}

fn closed() -> Error {
    Error::State("every task stopped without a reason".into())
}

impl Coordinator {
    /// A coordinator for `sources` source tasks and `workers` workers,
    /// committing through `commit` from epoch `start` on.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: &RuntimeConfig,
        control: Arc<Control>,
        commit: Arc<dyn Commit>,
        retention: Retention,
        sources: usize,
        workers: usize,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
        start: u64,
    ) -> Self {
        Coordinator {
            control,
            commit,
            retention,
            interval: Duration::from_millis(config.checkpoint.interval_ms),
            guarantee: config.guarantee,
            sources,
            workers,
            metrics,
            shutdown,
            epoch: start,
            finished: 0,
            stop: false,
        }
    }

    /// Runs epochs until every bounded input is done or a shutdown is
    /// asked for; either ends with a commit. `committed` is the manifest
    /// recovery left.
    pub(crate) async fn run(
        mut self,
        events: &mut mpsc::UnboundedReceiver<Event>,
        committed: Manifest,
    ) -> Result<RunSummary> {
        let mut manifest = committed;
        manifest.guarantee = self.guarantee;
        let mut summary = RunSummary {
            last_epoch: manifest.epoch,
            ..RunSummary::default()
        };
        let result = self.epochs(events, &mut manifest, &mut summary).await;
        if self.retention.busy() {
            // On an error the tasks are stopped first: nothing more will commit.
            if result.is_err() {
                self.control.shutdown();
            }
            self.retention.finish().await;
        }
        result?;
        summary.records_read = self.metrics.records_read.load(Ordering::Relaxed);
        summary.skipped = self.metrics.skipped.load(Ordering::Relaxed);
        Ok(summary)
    }

    async fn epochs(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<Event>,
        manifest: &mut Manifest,
        summary: &mut RunSummary,
    ) -> Result<()> {
        let mut last_progress = std::time::Instant::now();
        // Barriers come one interval apart (Kafka Streams measures its
        // commit interval the same way), but never before the previous
        // commit landed. Where processing waits for the commit (Kafka mode)
        // and that takes more than half the interval, the epoch still gets
        // a whole interval of processing after it, or epochs would shrink
        // to nothing.
        let mut next_barrier = Instant::now() + self.interval;
        loop {
            let last = self.until_barrier(events, next_barrier).await?;
            self.epoch += 1;
            let epoch = self.epoch;
            let barrier_at = Instant::now();
            self.control.request(epoch);
            let acks = self.gather(events, epoch).await?;
            let aligned_at = Instant::now();
            let checkpoint = acks.checkpoint(manifest, last);
            // How long processing was held for the commit.
            let mut held = Duration::ZERO;
            if checkpoint.changes(manifest) {
                let (committed, released_at) = self.commit(checkpoint, epoch).await?;
                if !self.commit.overlaps() {
                    held = released_at.unwrap_or_else(Instant::now) - barrier_at;
                }
                let previous = manifest.epoch;
                *manifest = committed;
                self.control.committed(epoch);
                summary.commits += 1;
                summary.last_epoch = epoch;
                summary.commit_times.record(aligned_at.elapsed());
                summary.align_times.record(aligned_at - barrier_at);
                tracing::debug!(epoch, "committed");
                self.retention.committed(previous, epoch);
            } else if !last {
                self.control.release(epoch);
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = std::time::Instant::now();
                tracing::info!(
                    epoch = summary.last_epoch,
                    commits = summary.commits,
                    records = self.metrics.records_read.load(Ordering::Relaxed),
                    commit_p50_ms = summary.commit_times.percentile_ms(0.5),
                    commit_p99_ms = summary.commit_times.percentile_ms(0.99),
                    "progress"
                );
            }
            if last {
                self.control.shutdown();
                return Ok(());
            }
            next_barrier = barrier_at
                + self.interval
                + if held > self.interval / 2 {
                    held
                } else {
                    Duration::ZERO
                };
        }
    }

    /// Waits until the next epoch should end: at `deadline`, or earlier
    /// when a worker's epoch is full. True when that epoch is the last
    /// (every input is done, or a shutdown was asked for).
    async fn until_barrier(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<Event>,
        deadline: Instant,
    ) -> Result<bool> {
        loop {
            if self.finished == self.sources || self.stop {
                return Ok(true);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Ok(false),
                ev = events.recv() => match ev {
                    Some(Event::SourceFinished) => self.finished += 1,
                    Some(Event::Failed(e)) => return Err(e),
                    Some(Event::EpochFull(e)) if e == self.epoch + 1 => return Ok(false),
                    Some(Event::EpochFull(_)) => {}
                    Some(_) => return Err(Error::State("an ack arrived outside a checkpoint".into())),
                    None => return Err(closed()),
                },
                r = self.shutdown.changed() => {
                    if r.is_err() || *self.shutdown.borrow() {
                        tracing::info!("shutdown requested: committing the open epoch");
                        self.stop = true;
                    }
                }
            }
        }
    }

    /// Gathers every task's acknowledgement of epoch `epoch`'s barrier.
    async fn gather(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<Event>,
        epoch: u64,
    ) -> Result<Acks> {
        let mut acks = Acks::new(epoch);
        while !acks.complete(self.sources, self.workers) {
            match events.recv().await {
                Some(Event::SourceAck {
                    task,
                    position,
                    identity,
                    finished,
                    flushes,
                }) => {
                    let position = SourcePosition {
                        position,
                        finished,
                        identity,
                    };
                    acks.source(task, position, flushes);
                }
                Some(Event::WorkerAck {
                    epoch,
                    writes,
                    flushes,
                }) => acks.worker(epoch, writes, flushes)?,
                Some(Event::SourceFinished) => self.finished += 1,
                // The epoch is ending already.
                Some(Event::EpochFull(_)) => {}
                Some(Event::Failed(e)) => return Err(e),
                None => return Err(closed()),
            }
        }
        Ok(acks)
    }

    /// Commits `checkpoint` off the async runtime; returns the committed
    /// manifest and when the next epoch was released.
    async fn commit(
        &self,
        checkpoint: Checkpoint,
        epoch: u64,
    ) -> Result<(Manifest, Option<Instant>)> {
        let released_at = Arc::new(OnceLock::new());
        let release: Release = if checkpoint.last {
            Box::new(|| {})
        } else {
            let (control, at) = (self.control.clone(), released_at.clone());
            Box::new(move || {
                let _ = at.set(Instant::now());
                control.release(epoch);
            })
        };
        let commit = self.commit.clone();
        let committed = tokio::task::spawn_blocking(move || commit.commit(checkpoint, release))
            .await
            .map_err(|e| Error::State(format!("the commit task failed: {e}")))??;
        Ok((committed, released_at.get().copied()))
    }
}
