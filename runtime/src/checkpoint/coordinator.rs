//! The checkpoint coordinator: decides when an epoch ends, gathers every
//! task's acknowledgement of its barrier, and has the commit point make the
//! checkpoint durable before the next barrier.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument;
use weir_core::group::{Holding, Member};
use weir_core::{Error, Result};

use super::{Acks, Checkpoint, Commit, Control, Release, Retention, RunSummary};
use crate::config::{Guarantee, RuntimeConfig};
use crate::manifest::{Manifest, SourcePosition};
use crate::observe::progress::{Progress, Work};
use crate::observe::{status, CheckpointResult, Phase, METRICS};
use crate::stage::Metrics;
use crate::store::now_ms;
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
    /// That epoch ended (committed, or released with nothing to commit):
    /// the open epoch is the next.
    settled: bool,
    /// Source tasks at the end of their bounded input.
    finished: usize,
    /// A shutdown was asked for: the next epoch is the last.
    stop: bool,
    /// The instance's membership of its source's group, asked before every
    /// commit whether the instance still holds what it read.
    member: Option<Member>,
    /// A commit panicked midway.
    crashed: AtomicBool,
    /// The group moved tasks: the open epoch is the run's last, and the
    /// instance goes on with a run over what the group assigns next.
    handover: AtomicBool,
    /// A bounded run's progress through its input.
    progress: Option<Progress>,
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
            settled: true,
            finished: 0,
            stop: false,
            member: None,
            crashed: AtomicBool::new(false),
            handover: AtomicBool::new(false),
            progress: None,
        }
    }

    /// Shows the run's progress through its input when it is `bounded`.
    pub(crate) fn with_progress(mut self, bounded: bool) -> Self {
        self.progress = bounded.then(|| Progress::new(Work::Input));
        self
    }

    /// Commits only while `member` says this instance holds its tasks.
    pub(crate) fn with_member(mut self, member: Option<Member>) -> Self {
        self.member = member;
        self
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
        status::enter(Phase::Running, Some(self.sources));
        let result = self.epochs(events, &mut manifest, &mut summary).await;
        if let Some(p) = self.progress.take() {
            p.finish(status::input_progress().0);
        }
        status::enter(Phase::Suspended, None);
        if let Err(e) = &result {
            // The open epoch ends uncommitted: redone from the last commit.
            METRICS.checkpoint(CheckpointResult::Aborted, 1);
            status::checkpoint(status::CheckpointView {
                epoch: self.epoch + u64::from(self.settled),
                time_ms: now_ms(),
                result: "aborted",
                duration_ms: 0.0,
                alignment_ms: 0.0,
                state_bytes: 0,
                records: 0,
                error: Some(e.to_string()),
            });
        }
        if result.is_err() && !self.crashed.load(Ordering::Relaxed) {
            let commit = self.commit.clone();
            let _ = tokio::task::spawn_blocking(move || commit.abandon()).await;
        }
        if self.retention.busy() {
            // On an error the tasks are stopped first: nothing more will commit.
            if result.is_err() {
                self.control.shutdown();
            }
            self.retention.finish().await;
        }
        result?;
        summary.handovers = u64::from(self.handover.load(Ordering::Relaxed));
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
        let mut records_before = self.metrics.records_read.load(Ordering::Relaxed);
        loop {
            let last = self.until_barrier(events, next_barrier).await?;
            self.epoch += 1;
            self.settled = false;
            let epoch = self.epoch;
            let barrier_at = Instant::now();
            self.control.request(epoch);
            let span = tracing::info_span!("epoch", epoch);
            let acks = self.gather(events, epoch).instrument(span.clone()).await?;
            let aligned_at = Instant::now();
            let checkpoint = acks.checkpoint(manifest, last);
            // How long processing was held for the commit.
            let mut held = Duration::ZERO;
            if checkpoint.changes(manifest) {
                let state_bytes = checkpoint.state_bytes;
                let (committed, released_at) = self
                    .commit(checkpoint, epoch)
                    .instrument(span.clone())
                    .await?;
                if !self.commit.overlaps() {
                    held = released_at.unwrap_or_else(Instant::now) - barrier_at;
                }
                let previous = manifest.epoch;
                *manifest = committed;
                self.control.committed(epoch);
                summary.commits += 1;
                summary.last_epoch = epoch;
                let (commit_time, align_time) = (aligned_at.elapsed(), aligned_at - barrier_at);
                summary.commit_times.record(commit_time);
                summary.align_times.record(align_time);
                METRICS.checkpoint(CheckpointResult::Committed, 1);
                METRICS
                    .checkpoint_seconds
                    .observe(commit_time.as_secs_f64());
                METRICS.alignment_seconds.observe(align_time.as_secs_f64());
                METRICS
                    .last_epoch
                    .set(i64::try_from(epoch).unwrap_or(i64::MAX));
                let records = self.metrics.records_read.load(Ordering::Relaxed);
                status::checkpoint(status::CheckpointView {
                    epoch,
                    time_ms: now_ms(),
                    result: "committed",
                    duration_ms: commit_time.as_secs_f64() * 1e3,
                    alignment_ms: align_time.as_secs_f64() * 1e3,
                    state_bytes,
                    records: records - records_before,
                    error: None,
                });
                records_before = records;
                span.in_scope(|| {
                    tracing::debug!(commit_ms = commit_time.as_millis() as u64, "committed");
                });
                self.retention.committed(previous, epoch);
            } else if !last {
                self.control.release(epoch);
            }
            self.settled = true;
            if let Some(p) = &self.progress {
                // Known once a task passed a barrier.
                let (done, total) = status::input_progress();
                if total > 0 {
                    p.sized(total);
                    p.at(done);
                }
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = std::time::Instant::now();
                let input = self.progress.as_ref().map(|_| {
                    let (done, total) = status::input_progress();
                    format!("{:.1}%", 100.0 * done as f64 / total.max(1) as f64)
                });
                tracing::info!(
                    input = input.as_deref().unwrap_or("unbounded"),
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
        // How often the group is asked whether it moved tasks.
        let mut rebalances = tokio::time::interval(Duration::from_millis(50));
        rebalances.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            if self.finished == self.sources || self.stop || self.handover.load(Ordering::Relaxed) {
                return Ok(true);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Ok(false),
                _ = rebalances.tick(), if self.member.is_some() => {
                    if self.member.as_ref().is_some_and(|m| m.moved()) {
                        tracing::info!("the consumer group moved tasks: committing the open epoch, then going on with the new assignment");
                        self.handover.store(true, Ordering::Relaxed);
                    }
                }
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
                        status::enter(Phase::Stopping, None);
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
                    bytes,
                    flushes,
                }) => acks.worker(epoch, writes, bytes, flushes)?,
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
        if let Some(member) = &self.member {
            if member.check()? == Holding::Moved {
                // This epoch still commits (the group's generation is the
                // one it read in); the next one ends the run at once.
                self.handover.store(true, Ordering::Relaxed);
            }
        }
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
        let span = tracing::info_span!("commit", epoch);
        let committed = match tokio::task::spawn_blocking(move || {
            span.in_scope(|| commit.commit(checkpoint, release))
        })
        .await
        {
            Ok(committed) => committed?,
            Err(e) => {
                // A panic while committing is a crash: no abort of the
                // open transaction may follow it; recovery settles it.
                self.crashed.store(true, Ordering::Relaxed);
                return Err(Error::State(format!("the commit task failed: {e}")));
            }
        };
        Ok((committed, released_at.get().copied()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::stage::FlushedSink;
    use crate::store::Store;
    use crate::task::Events;

    /// A commit point that records what it was asked to commit.
    #[derive(Default)]
    struct Recorder {
        /// `(epoch, writes, last)` per commit.
        commits: Mutex<Vec<(u64, usize, bool)>>,
    }

    impl Commit for Recorder {
        fn overlaps(&self) -> bool {
            true
        }

        fn commits_group_offsets(&self) -> bool {
            false
        }

        fn commit(&self, checkpoint: Checkpoint, release: Release) -> Result<Manifest> {
            release();
            let Checkpoint {
                manifest,
                writes,
                last,
                ..
            } = checkpoint;
            let mut commits = self.commits.lock().unwrap_or_else(|p| p.into_inner());
            commits.push((manifest.epoch, writes.len(), last));
            Ok(manifest)
        }
    }

    /// What the one source task and the one worker do at a barrier.
    enum Step {
        /// Acknowledge at `position` with `writes` state writes; finished
        /// input when `finished`.
        Ack {
            position: u64,
            writes: usize,
            finished: bool,
        },
        /// The worker acknowledges another epoch than the one asked for.
        WrongEpoch,
        /// A task fails before acknowledging.
        Fail,
    }

    fn ack(position: u64, writes: usize) -> Step {
        Step::Ack {
            position,
            writes,
            finished: false,
        }
    }

    /// Plays one source task and one worker through `steps`, one per
    /// requested barrier.
    async fn tasks(control: Arc<Control>, events: Events, steps: Vec<Step>) {
        let mut requested = control.watch_requested();
        let mut last = 0;
        for step in steps {
            let Ok(epoch) = requested.wait_for(|r| *r > last).await.map(|r| *r) else {
                return;
            };
            last = epoch;
            let events_sent = match step {
                Step::Ack {
                    position,
                    writes,
                    finished,
                } => {
                    let writes = (0..writes)
                        .map(|i| (vec![i as u8], Some(vec![1])))
                        .collect();
                    let source = Event::SourceAck {
                        task: "t".into(),
                        position,
                        identity: None,
                        finished,
                        flushes: Vec::<FlushedSink>::new(),
                    };
                    let worker = Event::WorkerAck {
                        epoch,
                        writes,
                        bytes: 0,
                        flushes: Vec::new(),
                    };
                    let done = finished.then_some(Event::SourceFinished);
                    [Some(source), Some(worker), done]
                }
                Step::WrongEpoch => {
                    let worker = Event::WorkerAck {
                        epoch: epoch + 6,
                        writes: Vec::new(),
                        bytes: 0,
                        flushes: Vec::new(),
                    };
                    [Some(worker), None, None]
                }
                Step::Fail => [Some(Event::Failed(Error::State("boom".into()))), None, None],
            };
            for e in events_sent.into_iter().flatten() {
                if events.send(e).is_err() {
                    return;
                }
            }
        }
    }

    struct Run {
        result: Result<RunSummary>,
        commits: Vec<(u64, usize, bool)>,
    }

    /// Runs a coordinator of one source task and one worker, played by
    /// `steps`; `shutdown_after` asks for a shutdown once that epoch is
    /// committed.
    async fn coordinate(steps: Vec<Step>, shutdown_after: Option<u64>) -> Run {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(Store::open(dir.path()).expect("a state directory"));
        let mut config = RuntimeConfig::default();
        config.checkpoint.interval_ms = 1;
        let control = Arc::new(Control::new(0));
        let commit = Arc::new(Recorder::default());
        let (events, mut rx) = mpsc::unbounded_channel();
        let (stop, shutdown) = watch::channel(false);
        let coordinator = Coordinator::new(
            &config,
            control.clone(),
            commit.clone(),
            Retention::new(store, &config.checkpoint),
            1,
            1,
            Arc::new(Metrics::default()),
            shutdown,
            0,
        );
        // A dropped sender would read as a shutdown: kept until the end.
        let _kept = match shutdown_after {
            Some(epoch) => {
                let mut released = control.watch_released();
                tokio::spawn(async move {
                    let _ = released.wait_for(|r| *r >= epoch).await;
                    let _ = stop.send(true);
                });
                None
            }
            None => Some(stop),
        };
        tokio::spawn(tasks(control, events, steps));
        let manifest = Manifest::empty("p", "f", "t", 4);
        let result =
            tokio::time::timeout(Duration::from_secs(10), coordinator.run(&mut rx, manifest))
                .await
                .expect("the coordinator ends");
        let commits = commit.commits.lock().map(|c| c.clone()).unwrap_or_default();
        Run { result, commits }
    }

    #[tokio::test]
    async fn only_epochs_that_change_something_commit_and_the_inputs_end_ends_the_run() {
        let steps = vec![
            ack(10, 3),
            // Nothing read, nothing written: not committed.
            ack(10, 0),
            // A new position alone is a change.
            Step::Ack {
                position: 20,
                writes: 0,
                finished: true,
            },
            // The input is done: the next epoch is the last.
            ack(20, 1),
        ];
        let run = coordinate(steps, None).await;
        let summary = run.result.expect("the run ends");
        assert_eq!(
            run.commits,
            vec![(1, 3, false), (3, 0, false), (4, 1, true)]
        );
        assert_eq!((summary.commits, summary.last_epoch), (3, 4));
    }

    #[tokio::test]
    async fn a_task_failing_in_an_epoch_commits_nothing_of_it() {
        let run = coordinate(vec![ack(10, 1), Step::Fail], None).await;
        assert!(matches!(run.result, Err(Error::State(m)) if m == "boom"));
        assert_eq!(run.commits, vec![(1, 1, false)]);
    }

    #[tokio::test]
    async fn an_acknowledgement_of_another_epoch_stops_the_run_uncommitted() {
        let run = coordinate(vec![Step::WrongEpoch], None).await;
        let message = run.result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("acknowledged epoch 7 during epoch 1"),
            "{message}"
        );
        assert!(run.commits.is_empty());
    }

    #[tokio::test]
    async fn a_shutdown_commits_the_open_epoch_as_the_last() {
        let steps = vec![ack(10, 1), ack(20, 2), ack(30, 3)];
        let run = coordinate(steps, Some(1)).await;
        run.result.expect("the run ends");
        // Asked for after the first commit, during the second epoch at the
        // latest: that epoch or the next is the last, and nothing follows.
        let last = run.commits.last().copied().expect("commits");
        assert!(last.2 && last.0 <= 3, "{:?}", run.commits);
        assert_eq!(run.commits.iter().filter(|c| c.2).count(), 1);
    }
}
