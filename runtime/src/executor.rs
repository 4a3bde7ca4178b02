//! Running a pipeline: one thread per source task, one tokio task per keyed
//! worker, and the checkpoint coordinator (ARCHITECTURE §4.1).
//!
//! An epoch ends with a barrier. The coordinator asks every source to end
//! the epoch; each source, at its next batch boundary, sends a barrier to
//! every worker, reports its position and pauses. A worker that has the
//! barrier of every source has processed exactly the epoch's records: it
//! flushes its sinks and hands its dirty state to the coordinator. The
//! coordinator releases the sources into the next epoch, then fsyncs the sink
//! output and writes state, positions, sink lengths and the manifest in one
//! synced RocksDB batch: the commit point. The next barrier is requested
//! only once that batch is written.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use weir_core::commit::CommitPoint;
use weir_core::exec::EncodedKeys;
use weir_core::keygroup::{key_group, owned_range, owner};
use weir_core::source::{DeadLetter, ReadStatus};
use weir_core::{Error, Key, Record, Result};

use crate::config::{Guarantee, OnBadInput, RuntimeConfig};
use crate::control::Control;
use crate::failpoints::{self, crash_point};
use crate::manifest::{Manifest, SourcePosition};
use crate::pipeline::{DeadLetterOpener, SinkOps};
use crate::recovery::{resume_points, start_position, SinkRecovery};
use crate::stage::{
    BoxFuture, ChainedReader, FlushedSink, Metrics, NamedSinks, SideSinks, SinkStage, SourceAdmin,
    SourceSide, Stage, StageCx, StageFactory, StageInit,
};
use crate::state::{CachedState, Write};
use crate::store::{now_ms, Store};
use crate::txn::Txn;

/// Exchange batches that may wait in a worker's queue.
const WORKER_QUEUE: usize = 4;

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Checkpoints committed by this run.
    pub commits: u64,
    /// The last committed epoch.
    pub last_epoch: u64,
    /// Records read from the sources.
    pub records_read: u64,
    /// Records skipped by the bad-input policy.
    pub skipped: u64,
    /// Per committed epoch: from the moment every task acknowledged its
    /// barrier (the epoch's writes are handed over) to the commit being
    /// durable. The checkpoint's own cost.
    pub commit_times: crate::Histogram,
    /// Per committed epoch: from the barrier's request to every task's
    /// acknowledgement, i.e. how long the records queued before the barrier
    /// took to be processed.
    pub align_times: crate::Histogram,
}

/// Everything a job runs with.
pub(crate) struct JobEnv {
    pub(crate) named: NamedSinks,
    /// The transactional commit point of the sinks (Kafka mode), if any.
    pub(crate) commit: Option<Arc<dyn CommitPoint>>,
    /// Where undecodable input goes under `on_bad_input = "dead-letter"`.
    pub(crate) dead_letter: Option<DeadLetterOpener>,
    /// Every sink, for recovery: its outputs' id prefix, and how to
    /// discard an unopened output's uncommitted tail.
    pub(crate) sinks: Vec<SinkOps>,
    pub(crate) store: Arc<Store>,
    pub(crate) manifest: Manifest,
    pub(crate) config: RuntimeConfig,
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
}

/// A pipeline with its types erased, ready to run.
pub(crate) trait Job: Send {
    fn run(self: Box<Self>, env: JobEnv) -> BoxFuture<'static, Result<RunSummary>>;
    /// The pipeline's source, for the offsets commands.
    fn source(&self) -> &dyn SourceAdmin;
    /// The source's tasks; an error when there are none.
    fn tasks(&self) -> Result<Vec<String>>;
}

enum Msg<K, V> {
    /// Records and their keys' encodings and groups (see [`EncodedKeys`]).
    Batch(Vec<Record<K, V>>, EncodedKeys),
    Watermark {
        source: usize,
        watermark: i64,
    },
    Finished {
        source: usize,
    },
    Barrier(u64),
}

enum Event {
    SourceAck {
        task: String,
        position: u64,
        identity: Option<String>,
        finished: bool,
        flushes: Vec<FlushedSink>,
    },
    WorkerAck {
        epoch: u64,
        writes: Vec<Write>,
        flushes: Vec<FlushedSink>,
    },
    SourceFinished,
    /// A worker's writes in epoch `.0` reached its share of the cache: the
    /// epoch should end now rather than at its interval.
    EpochFull(u64),
    Failed(Error),
}

type Events = mpsc::UnboundedSender<Event>;

/// Where a source thread sends its records.
trait SourceOutput<T>: Send {
    fn push(&mut self, record: Record<(), T>) -> Result<()>;
    fn watermark(&mut self, watermark: i64) -> Result<()>;
    /// Sends buffered records on (an idle input should not hold them back).
    fn flush_pending(&mut self) -> Result<()>;
    fn barrier(&mut self, epoch: u64) -> Result<Vec<FlushedSink>>;
    fn finish(&mut self) -> Result<()>;
}

fn worker_gone() -> Error {
    Error::State("a worker stopped; see its error above".into())
}

/// Bytes per key to reserve in a new batch's [`EncodedKeys`].
const KEY_BYTES_GUESS: usize = 16;

/// Routes records by key group to the workers' channels.
struct Exchange<K, T, V> {
    source: usize,
    split: Split<T, K, V>,
    txs: Vec<mpsc::Sender<Msg<K, V>>>,
    bufs: Vec<Vec<Record<K, V>>>,
    /// The encoded keys of `bufs`' records, handed on with them.
    keys: Vec<EncodedKeys>,
    batch: usize,
    key_groups: u16,
    key_buf: Vec<u8>,
}

impl<K: Key, T: Send + 'static, V: Send + 'static> Exchange<K, T, V> {
    fn send(&mut self, w: usize) -> Result<()> {
        let batch = std::mem::replace(&mut self.bufs[w], Vec::with_capacity(self.batch));
        let keys = std::mem::replace(
            &mut self.keys[w],
            EncodedKeys::with_capacity(self.batch, KEY_BYTES_GUESS),
        );
        self.txs[w]
            .blocking_send(Msg::Batch(batch, keys))
            .map_err(|_| worker_gone())
    }

    fn broadcast(&mut self, msg: impl Fn() -> Msg<K, V>) -> Result<()> {
        for tx in &self.txs {
            tx.blocking_send(msg()).map_err(|_| worker_gone())?;
        }
        Ok(())
    }
}

impl<K: Key, T: Send + 'static, V: Send + 'static> SourceOutput<T> for Exchange<K, T, V> {
    fn push(&mut self, record: Record<(), T>) -> Result<()> {
        let (key, value) = (self.split)(record.value);
        self.key_buf.clear();
        weir_core::encode_key(&key, &mut self.key_buf)?;
        let group = key_group(&self.key_buf, self.key_groups);
        let w = owner(group, self.txs.len(), self.key_groups);
        self.keys[w].push(&self.key_buf, group)?;
        self.bufs[w].push(Record {
            key,
            value,
            timestamp: record.timestamp,
            headers: record.headers,
        });
        if self.bufs[w].len() >= self.batch {
            self.send(w)?;
        }
        Ok(())
    }

    fn watermark(&mut self, watermark: i64) -> Result<()> {
        self.flush_pending()?;
        let source = self.source;
        self.broadcast(|| Msg::Watermark { source, watermark })
    }

    fn flush_pending(&mut self) -> Result<()> {
        for w in 0..self.bufs.len() {
            if !self.bufs[w].is_empty() {
                self.send(w)?;
            }
        }
        Ok(())
    }

    fn barrier(&mut self, epoch: u64) -> Result<Vec<FlushedSink>> {
        self.flush_pending()?;
        self.broadcast(|| Msg::Barrier(epoch))?;
        Ok(Vec::new())
    }

    fn finish(&mut self) -> Result<()> {
        self.flush_pending()?;
        let source = self.source;
        self.broadcast(|| Msg::Finished { source })
    }
}

/// Writes records straight to the task's sink output (no exchange).
struct Direct<T> {
    sink: SinkStage<Record<(), T>>,
}

impl<T: Send + 'static> SourceOutput<T> for Direct<T> {
    fn push(&mut self, record: Record<(), T>) -> Result<()> {
        self.sink.writer.write(&record)
    }

    fn watermark(&mut self, _watermark: i64) -> Result<()> {
        Ok(())
    }

    fn flush_pending(&mut self) -> Result<()> {
        Ok(())
    }

    fn barrier(&mut self, _epoch: u64) -> Result<Vec<FlushedSink>> {
        let mut out = Vec::new();
        Stage::<(), T>::flush(&mut self.sink, &mut out)?;
        Ok(out)
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// One source task's settings.
struct SourceTask<T> {
    task: String,
    reader: Box<dyn ChainedReader<T>>,
    output: Box<dyn SourceOutput<T>>,
    finished: bool,
    watermark_delay: Option<i64>,
    dead_letter: Option<SinkStage<DeadLetter>>,
}

struct Shared {
    control: Arc<Control>,
    events: Events,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    batch: usize,
    policy: OnBadInput,
    guarantee: Guarantee,
    start_epoch: u64,
    /// Local mode: tell readers about committed positions (e.g. to copy
    /// them to a consumer group). Kafka mode commits them in the transaction.
    advisory: bool,
}

fn spawn_source<T: Send + 'static>(
    mut t: SourceTask<T>,
    shared: Arc<Shared>,
) -> Result<std::thread::JoinHandle<()>> {
    let name = format!("weir-src-{}", t.task);
    std::thread::Builder::new()
        .name(name.chars().take(15).collect())
        .spawn(move || {
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                source_loop(&mut t, &shared)
            }));
            let failure = match run {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(panic) => Some(Error::State(format!(
                    "source task {} panicked: {}; nothing of the open epoch was committed",
                    t.task,
                    panic_message(&panic)
                ))),
            };
            if let Some(e) = failure {
                let _ = shared.events.send(Event::Failed(e));
            }
        })
        .map_err(|e| Error::io("cannot spawn a thread for", name, e))
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// Runs a worker; a panic becomes an error for the coordinator, which would
/// otherwise wait for the worker's acknowledgement forever.
fn spawn_worker<K: Send + 'static, V: Send + 'static>(
    worker: Worker<K, V>,
    events: Events,
) -> tokio::task::JoinHandle<()> {
    let task = tokio::spawn(worker.run());
    tokio::spawn(async move {
        if let Err(e) = task.await {
            if e.is_panic() {
                let msg = panic_message(&e.into_panic());
                let _ = events.send(Event::Failed(Error::State(format!(
                    "a worker panicked: {msg}; nothing of the open epoch was committed"
                ))));
            }
        }
    })
}

/// Hands the reader the position of the last epoch it acknowledged, once
/// that epoch's checkpoint has committed.
fn publish<T>(
    t: &mut SourceTask<T>,
    s: &Shared,
    unpublished: &mut Option<(u64, u64)>,
) -> Result<()> {
    if let Some((epoch, position)) = *unpublished {
        if s.control.is_committed(epoch) {
            *unpublished = None;
            if s.advisory {
                t.reader.committed(position)?;
            }
        }
    }
    Ok(())
}

fn source_loop<T: Send + 'static>(t: &mut SourceTask<T>, s: &Shared) -> Result<()> {
    let mut last = s.start_epoch;
    let mut buf: Vec<Record<(), T>> = Vec::with_capacity(s.batch);
    let mut max_ts = i64::MIN;
    let mut sent_watermark = i64::MIN;
    let gone = || Error::State("the coordinator stopped".into());
    let mut unpublished: Option<(u64, u64)> = None;
    loop {
        let requested = s.control.requested();
        if requested > last {
            // The previous epoch committed before this barrier was asked for.
            publish(t, s, &mut unpublished)?;
            let mut flushes = t.output.barrier(requested)?;
            if let Some(dl) = &mut t.dead_letter {
                flushes.push(FlushedSink {
                    id: dl.id.clone(),
                    flushed: dl.writer.flush()?,
                });
            }
            let position = t.reader.position();
            s.events
                .send(Event::SourceAck {
                    task: t.task.clone(),
                    position,
                    identity: t.reader.identity(),
                    finished: t.finished,
                    flushes,
                })
                .map_err(|_| gone())?;
            last = requested;
            let shutdown = s.control.wait_released(requested);
            // Released before its commit lands: tell the reader once it has.
            unpublished = Some((requested, position));
            publish(t, s, &mut unpublished)?;
            if shutdown {
                return Ok(());
            }
            continue;
        }
        publish(t, s, &mut unpublished)?;
        if s.control.is_shutdown() {
            return Ok(());
        }
        if t.finished {
            s.control.idle(last, Duration::from_millis(500));
            continue;
        }
        // Records go straight on to the exchange as the reader's operators
        // produce them (a batch of lines is ten thousand words: buffered,
        // they would leave the cache before the exchange reads them), except
        // at-most-once, which commits the batch's position before any of it
        // is processed.
        let streaming = s.guarantee != Guarantee::AtMostOnce;
        let mut pushed: Result<()> = Ok(());
        let output = &mut t.output;
        let mut emit = |r: Record<(), T>| {
            if !streaming {
                buf.push(r);
            } else if pushed.is_ok() {
                if let Some(ts) = r.timestamp {
                    max_ts = max_ts.max(ts);
                }
                pushed = output.push(r);
            }
        };
        let read = t.reader.read(s.batch, &mut emit);
        pushed?;
        let status = match read {
            Ok(status) => status,
            Err(e @ Error::BadInput { .. }) if s.policy == OnBadInput::Skip => {
                s.metrics.skip("an undecodable input record", &e);
                ReadStatus::More
            }
            Err(Error::BadInput {
                task,
                position,
                message,
                raw,
            }) if s.policy == OnBadInput::DeadLetter => {
                let letter = DeadLetter {
                    task,
                    position,
                    error: message,
                    raw,
                };
                if let Some(dl) = &mut t.dead_letter {
                    dl.writer.write(&letter)?;
                }
                s.metrics.skip(
                    "an undecodable input record (sent to the dead-letter sink)",
                    &Error::BadInput {
                        task: letter.task,
                        position: letter.position,
                        message: letter.error,
                        raw: None,
                    },
                );
                ReadStatus::More
            }
            Err(e) => return Err(e),
        };
        s.metrics
            .records_read
            .fetch_add(t.reader.take_read_count(), Ordering::Relaxed);
        if !buf.is_empty() {
            // Commit the position before processing: a crash loses these records.
            s.store.save_read_position(&t.task, t.reader.position())?;
            for r in buf.drain(..) {
                if let Some(ts) = r.timestamp {
                    max_ts = max_ts.max(ts);
                }
                t.output.push(r)?;
            }
        }
        if let Some(delay) = t.watermark_delay {
            // Watermark W promises no more events at or before W.
            let wm = max_ts.saturating_sub(delay).saturating_sub(1);
            if wm > sent_watermark {
                sent_watermark = wm;
                t.output.watermark(wm)?;
            }
        }
        match status {
            ReadStatus::More => {}
            ReadStatus::Idle => {
                t.output.flush_pending()?;
                s.control.idle(last, Duration::from_millis(20));
            }
            ReadStatus::End => {
                t.finished = true;
                t.output.finish()?;
                s.events.send(Event::SourceFinished).map_err(|_| gone())?;
            }
        }
    }
}

struct Worker<K, V> {
    stage: Box<dyn Stage<K, V>>,
    sides: SideSinks,
    rx: mpsc::Receiver<Msg<K, V>>,
    state: CachedState,
    sources: usize,
    events: Events,
    policy: OnBadInput,
    metrics: Arc<Metrics>,
    /// Kafka mode: after acknowledging a barrier, wait for the release, so
    /// that nothing (not even a timer) writes between two transactions.
    release: Option<tokio::sync::watch::Receiver<u64>>,
    /// The epoch whose barrier was last requested.
    requested: tokio::sync::watch::Receiver<u64>,
    /// Bytes of state writes after which an epoch is ended early, and the
    /// worker waits for that end before reading on (so an epoch's batch,
    /// changelog and memory stay bounded however fast the input comes).
    epoch_budget: usize,
}

impl<K: Send + 'static, V: Send + 'static> Worker<K, V> {
    async fn run(mut self) {
        if let Err(e) = self.run_loop().await {
            let _ = self.events.send(Event::Failed(e));
        }
    }

    async fn run_loop(&mut self) -> Result<()> {
        let mut watermarks = vec![i64::MIN; self.sources];
        let mut watermark = i64::MIN;
        let mut barriers = 0usize;
        // The epoch being filled, and whether it was reported full.
        let mut filling = *self.requested.borrow() + 1;
        let mut reported = false;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let metrics = self.metrics.clone();
        macro_rules! cx {
            () => {
                StageCx {
                    sides: &mut self.sides,
                    state: &mut self.state,
                    watermark,
                    now: now_ms(),
                    policy: self.policy,
                    metrics: &metrics,
                }
            };
        }
        self.stage.open(&mut cx!()).await?;
        loop {
            // Unbiased: a full channel must not starve processing-time timers.
            let msg = tokio::select! {
                m = self.rx.recv() => m,
                _ = tick.tick() => {
                    // Processing-time timers.
                    self.stage.fire(&mut cx!()).await?;
                    continue;
                }
            };
            let Some(msg) = msg else { break };
            match msg {
                Msg::Batch(batch, keys) => {
                    self.stage.push_keyed(batch, keys, &mut cx!()).await?;
                    if self.state.dirty_bytes() >= self.epoch_budget {
                        if !reported {
                            reported = true;
                            self.events
                                .send(Event::EpochFull(filling))
                                .map_err(|_| Error::State("the coordinator stopped".into()))?;
                        }
                        // Back-pressure: no more input until the epoch's end
                        // is requested (at once, unless a commit is pending).
                        let _ = self.requested.wait_for(|r| *r >= filling).await;
                    }
                }
                Msg::Watermark {
                    source,
                    watermark: w,
                } => {
                    watermarks[source] = watermarks[source].max(w);
                }
                Msg::Finished { source } => watermarks[source] = i64::MAX,
                Msg::Barrier(epoch) => {
                    barriers += 1;
                    if barriers == self.sources {
                        barriers = 0;
                        filling = epoch + 1;
                        reported = false;
                        // The previous epoch is committed: clean entries may go.
                        self.state.trim();
                        let mut flushes = Vec::new();
                        self.stage.flush(&mut flushes)?;
                        self.sides.flush(&mut flushes)?;
                        let writes = self.state.take_writes();
                        self.events
                            .send(Event::WorkerAck {
                                epoch,
                                writes,
                                flushes,
                            })
                            .map_err(|_| Error::State("the coordinator stopped".into()))?;
                        if let Some(release) = &mut self.release {
                            // Shutdown releases everything (u64::MAX).
                            let _ = release.wait_for(|r| *r >= epoch).await;
                        }
                    }
                    continue;
                }
            }
            let low = watermarks.iter().copied().min().unwrap_or(i64::MIN);
            if low > watermark {
                watermark = low;
                self.stage.fire(&mut cx!()).await?;
            }
        }
        self.stage.close().await
    }
}

/// Splits a value into the key it is routed by and the value sent on.
pub(crate) type Split<T, K, V> = Arc<dyn Fn(T) -> (K, V) + Send + Sync>;

/// The keyed job: sources -> exchange -> workers (processors, sinks).
pub(crate) struct KeyedJob<K, T, V> {
    pub(crate) side: Arc<dyn SourceSide<T>>,
    pub(crate) split: Split<T, K, V>,
    pub(crate) tail: StageFactory<K, V>,
}

/// Opens a task's sink output.
pub(crate) type SinkOpener<T> =
    Arc<dyn Fn(&StageInit<'_>) -> Result<SinkStage<Record<(), T>>> + Send + Sync>;

/// The unkeyed job: each source task writes to its own sink output.
pub(crate) struct DirectJob<T> {
    pub(crate) side: Arc<dyn SourceSide<T>>,
    pub(crate) open_sink: SinkOpener<T>,
}

fn shared(
    env: &JobEnv,
    control: &Arc<Control>,
    events: &Events,
    metrics: &Arc<Metrics>,
) -> Arc<Shared> {
    Arc::new(Shared {
        control: control.clone(),
        events: events.clone(),
        store: env.store.clone(),
        metrics: metrics.clone(),
        batch: env.config.batch_size,
        policy: env.config.on_bad_input,
        guarantee: env.config.guarantee,
        start_epoch: env.manifest.epoch,
        advisory: env.commit.is_none() || env.config.guarantee != Guarantee::ExactlyOnce,
    })
}

/// Kafka mode (an exactly-once pipeline whose sinks commit through a
/// transaction): opens the commit point and recovers from it, updating
/// `env.manifest`. Must run before the sinks are opened.
async fn open_txn(env: &mut JobEnv, source: Arc<dyn SourceAdmin>) -> Result<Option<Txn>> {
    let Some(commit) = env.commit.clone() else {
        return Ok(None);
    };
    if env.config.guarantee != Guarantee::ExactlyOnce {
        return Ok(None);
    }
    let store = env.store.clone();
    let mut manifest = env.manifest.clone();
    let (txn, manifest) = tokio::task::spawn_blocking(move || {
        Txn::open(&*commit, source, &store, &mut manifest).map(|t| (t, manifest))
    })
    .await
    .map_err(|e| Error::State(format!("the recovery task failed: {e}")))??;
    env.manifest = manifest;
    Ok(Some(txn))
}

/// Opens each source task's dead-letter output, if the pipeline has one.
fn dead_letters(
    env: &JobEnv,
    tasks: &[String],
    truncate: &(dyn Fn(&str) -> Option<u64> + Sync),
) -> Result<Vec<Option<SinkStage<DeadLetter>>>> {
    tasks
        .iter()
        .map(|task| {
            let init = StageInit {
                task: task.clone(),
                groups: 0..0,
                key_groups: env.manifest.key_groups,
                truncate_to: truncate,
            };
            env.dead_letter.as_ref().map(|open| open(&init)).transpose()
        })
        .collect()
}

/// The source's tasks and, in Kafka mode, the recovered commit point
/// (see [`open_txn`]): asked at once, as they are independent round trips
/// to the brokers. A failure to list the tasks is the one reported.
async fn tasks_and_txn<T: Send + 'static>(
    env: &mut JobEnv,
    side: Arc<dyn SourceSide<T>>,
) -> Result<(Vec<String>, Option<Txn>)> {
    let admin: Arc<dyn SourceAdmin> = side.clone();
    let listing = tokio::task::spawn_blocking(move || tasks_of(&*side));
    let listed = |joined: std::result::Result<Result<Vec<String>>, tokio::task::JoinError>| {
        joined.map_err(|e| Error::State(format!("listing the source's tasks failed: {e}")))?
    };
    if env.manifest.epoch == 0 {
        // Nothing committed yet: a missing input must not leave a changelog
        // (or anything else) behind, so the tasks are listed first.
        let tasks = listed(listing.await)?;
        return Ok((tasks, open_txn(env, admin).await?));
    }
    let txn = open_txn(env, admin).await;
    let tasks = listed(listing.await)?;
    Ok((tasks, txn?))
}

fn tasks_of<T>(side: &dyn SourceSide<T>) -> Result<Vec<String>> {
    let tasks = side.tasks()?;
    if tasks.is_empty() {
        return Err(Error::Config(
            "the source has nothing to read (no input partitions or files); check the input".into(),
        ));
    }
    Ok(tasks)
}

impl<K: Key, T: Send + 'static, V: Send + 'static> Job for KeyedJob<K, T, V> {
    fn source(&self) -> &dyn SourceAdmin {
        &*self.side
    }

    fn tasks(&self) -> Result<Vec<String>> {
        tasks_of(&*self.side)
    }

    fn run(self: Box<Self>, mut env: JobEnv) -> BoxFuture<'static, Result<RunSummary>> {
        Box::pin(async move {
            let (tasks, txn) = tasks_and_txn(&mut env, self.side.clone()).await?;
            let workers = env.config.parallelism;
            let key_groups = env.manifest.key_groups;
            let control = Arc::new(Control::new(env.manifest.epoch));
            let (events, mut rx) = mpsc::unbounded_channel();
            let metrics = Arc::new(Metrics::default());

            // Recovery, in order: sinks truncate, then sources seek.
            let mut txs = Vec::new();
            let mut handles = Vec::new();
            let recovery = SinkRecovery::new(&env);
            let truncate = |id: &str| recovery.truncate_to(id);
            let mut stages = Vec::new();
            for w in 0..workers {
                let init = StageInit {
                    task: format!("worker-{w}"),
                    groups: owned_range(w, workers, key_groups),
                    key_groups,
                    truncate_to: &truncate,
                };
                let mut sides = SideSinks::default();
                for (name, open) in &env.named {
                    sides.0.push((name, open(&init)?));
                }
                stages.push(((self.tail)(&init)?, sides));
            }
            let mut letters = dead_letters(&env, &tasks, &truncate)?.into_iter();
            recovery.discard_unopened()?;
            crash_point(failpoints::MID_RECOVERY);
            let cache_bytes = env.config.cache_mb.saturating_mul(1 << 20);
            for (stage, sides) in stages {
                // Few batches in flight per worker: with large records they
                // are most of the memory, and a barrier waits behind them.
                let (tx, wrx) = mpsc::channel(WORKER_QUEUE);
                txs.push(tx);
                let worker = Worker {
                    stage,
                    sides,
                    rx: wrx,
                    state: CachedState::new(env.store.db(), cache_bytes),
                    sources: tasks.len(),
                    events: events.clone(),
                    policy: env.config.on_bad_input,
                    metrics: metrics.clone(),
                    release: txn.as_ref().map(|_| control.watch_released()),
                    requested: control.watch_requested(),
                    // Dirty entries stay until committed: at most half the
                    // cache, so that clean entries still get the rest.
                    epoch_budget: cache_bytes / 2,
                };
                handles.push(spawn_worker(worker, events.clone()));
            }
            let shared = shared(&env, &control, &events, &metrics);
            let mut threads = Vec::new();
            let resumes = resume_points(&env, &*self.side, &tasks)?;
            for (i, task) in tasks.iter().enumerate() {
                let pos = start_position(&env, task, &resumes)?;
                let t = SourceTask {
                    task: task.clone(),
                    reader: self.side.open(task, pos.as_ref())?,
                    output: Box::new(Exchange {
                        source: i,
                        split: self.split.clone(),
                        txs: txs.clone(),
                        bufs: (0..workers).map(|_| Vec::new()).collect(),
                        keys: (0..workers).map(|_| EncodedKeys::default()).collect(),
                        batch: env.config.batch_size,
                        key_groups,
                        key_buf: Vec::new(),
                    }),
                    finished: false,
                    watermark_delay: self.side.watermark_delay(),
                    dead_letter: letters.next().flatten(),
                };
                threads.push(spawn_source(t, shared.clone())?);
            }
            drop(txs);
            drop(events);
            let result = coordinate(
                &env,
                &control,
                &mut rx,
                tasks.len(),
                workers,
                &metrics,
                txn.as_ref(),
            )
            .await;
            control.shutdown();
            finish_threads(threads).await;
            if result.is_ok() {
                for h in handles {
                    h.await
                        .map_err(|e| Error::State(format!("a worker panicked: {e}")))?;
                }
                // A worker's error at close arrives after the coordinator stopped.
                if let Ok(Event::Failed(e)) = rx.try_recv() {
                    return Err(e);
                }
            } else {
                for h in handles {
                    h.abort();
                }
            }
            result
        })
    }
}

impl<T: Send + 'static> Job for DirectJob<T> {
    fn source(&self) -> &dyn SourceAdmin {
        &*self.side
    }

    fn tasks(&self) -> Result<Vec<String>> {
        tasks_of(&*self.side)
    }

    fn run(self: Box<Self>, mut env: JobEnv) -> BoxFuture<'static, Result<RunSummary>> {
        Box::pin(async move {
            if let Some((name, _)) = env.named.first() {
                return Err(Error::Config(format!(
                    "the named sink `{name}` is written by processors, and this pipeline has none; add a `key_by` and a `process`, or drop the named sink"
                )));
            }
            let (tasks, txn) = tasks_and_txn(&mut env, self.side.clone()).await?;
            let control = Arc::new(Control::new(env.manifest.epoch));
            let (events, mut rx) = mpsc::unbounded_channel();
            let metrics = Arc::new(Metrics::default());
            let recovery = SinkRecovery::new(&env);
            let truncate = |id: &str| recovery.truncate_to(id);
            let mut sinks = Vec::new();
            for task in &tasks {
                let init = StageInit {
                    task: task.clone(),
                    groups: 0..0,
                    key_groups: env.manifest.key_groups,
                    truncate_to: &truncate,
                };
                sinks.push((self.open_sink)(&init)?);
            }
            let mut letters = dead_letters(&env, &tasks, &truncate)?.into_iter();
            recovery.discard_unopened()?;
            crash_point(failpoints::MID_RECOVERY);
            let shared = shared(&env, &control, &events, &metrics);
            let mut threads = Vec::new();
            let resumes = resume_points(&env, &*self.side, &tasks)?;
            for (task, sink) in tasks.iter().zip(sinks) {
                let pos = start_position(&env, task, &resumes)?;
                let t = SourceTask {
                    task: task.clone(),
                    reader: self.side.open(task, pos.as_ref())?,
                    output: Box::new(Direct { sink }),
                    finished: false,
                    watermark_delay: None,
                    dead_letter: letters.next().flatten(),
                };
                threads.push(spawn_source(t, shared.clone())?);
            }
            drop(events);
            let result = coordinate(
                &env,
                &control,
                &mut rx,
                tasks.len(),
                0,
                &metrics,
                txn.as_ref(),
            )
            .await;
            control.shutdown();
            finish_threads(threads).await;
            result
        })
    }
}

async fn finish_threads(threads: Vec<std::thread::JoinHandle<()>>) {
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
}

/// How often a long run logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The checkpoint coordinator: triggers epochs, gathers acks, commits.
async fn coordinate(
    env: &JobEnv,
    control: &Control,
    events: &mut mpsc::UnboundedReceiver<Event>,
    sources: usize,
    workers: usize,
    metrics: &Metrics,
    txn: Option<&Txn>,
) -> Result<RunSummary> {
    let cfg = &env.config;
    let interval = Duration::from_millis(cfg.checkpoint.interval_ms);
    let mut manifest = env.manifest.clone();
    manifest.guarantee = cfg.guarantee;
    let mut epoch = manifest.epoch;
    let mut finished = 0usize;
    let mut stop = false;
    let mut shutdown = env.shutdown.clone();
    let mut summary = RunSummary {
        last_epoch: manifest.epoch,
        ..RunSummary::default()
    };
    let closed = || Error::State("every task stopped without a reason".into());
    let mut last_progress = std::time::Instant::now();
    // The retained checkpoint being cut, if any.
    let mut retaining: Option<tokio::task::JoinHandle<()>> = None;
    // The epoch of the last checkpoint cut in this run. A cut in the
    // background takes the state as it is when it runs, which may be an
    // epoch or two past the one that asked for it.
    let last_cut = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Barriers come one interval apart (Kafka Streams measures its commit
    // interval the same way), but never before the previous commit landed.
    // In Kafka mode processing stops while a transaction commits; when that
    // takes more than half the interval, the epoch still gets a whole
    // interval of processing after it, or epochs would shrink to nothing.
    let mut next_barrier = tokio::time::Instant::now() + interval;
    let result: Result<()> = async {
        loop {
            let deadline = next_barrier;
            let last = loop {
                if finished == sources || stop {
                    break true;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break false,
                    ev = events.recv() => match ev {
                        Some(Event::SourceFinished) => finished += 1,
                        Some(Event::Failed(e)) => return Err(e),
                        Some(Event::EpochFull(e)) if e == epoch + 1 => break false,
                        Some(Event::EpochFull(_)) => {}
                        Some(_) => return Err(Error::State("an ack arrived outside a checkpoint".into())),
                        None => return Err(closed()),
                    },
                    r = shutdown.changed() => {
                        if r.is_err() || *shutdown.borrow() {
                            tracing::info!("shutdown requested: committing the open epoch");
                            stop = true;
                        }
                    }
                }
            };
            epoch += 1;
            let barrier_at = tokio::time::Instant::now();
            // How long processing was held for the commit (Kafka mode).
            let mut held = Duration::ZERO;
            control.request(epoch);
            let mut positions = BTreeMap::new();
            let mut writes = Vec::new();
            let mut flushes = Vec::new();
            let (mut source_acks, mut worker_acks) = (0, 0);
            while source_acks < sources || worker_acks < workers {
                match events.recv().await {
                    Some(Event::SourceAck {
                        task,
                        position,
                        identity,
                        finished,
                        flushes: f,
                    }) => {
                        source_acks += 1;
                        positions.insert(
                            task,
                            SourcePosition {
                                position,
                                finished,
                                identity,
                            },
                        );
                        flushes.extend(f);
                    }
                    Some(Event::WorkerAck {
                        epoch: e,
                        writes: w,
                        flushes: f,
                    }) => {
                        if e != epoch {
                            return Err(Error::State(format!(
                                "a worker acknowledged epoch {e} during epoch {epoch}"
                            )));
                        }
                        worker_acks += 1;
                        writes.extend(w);
                        flushes.extend(f);
                    }
                    Some(Event::SourceFinished) => finished += 1,
                    // The epoch is ending already.
                    Some(Event::EpochFull(_)) => {}
                    Some(Event::Failed(e)) => return Err(e),
                    None => return Err(closed()),
                }
            }
            let aligned_at = tokio::time::Instant::now();
            let mut next = manifest.clone();
            next.epoch = epoch;
            next.time_ms = now_ms();
            // Tasks no longer listed keep their entries: their input may come back.
            next.sources.extend(positions);
            let mut syncs = Vec::new();
            for f in flushes {
                if let Some(p) = f.flushed.position {
                    next.sinks.insert(f.id, p);
                }
                syncs.extend(f.flushed.sync);
            }
            let changed =
                !writes.is_empty() || next.sources != manifest.sources || next.sinks != manifest.sinks;
            let mut retain = false;
            if let Some(txn) = txn {
                // Kafka mode: the transaction is the commit point; the next
                // epoch starts once the next transaction is open.
                if changed {
                    let t = txn.clone();
                    let sources = next.sources.clone();
                    let done = tokio::task::spawn_blocking(move || {
                        // In key order, RocksDB's memtable inserts are cheapest.
                        writes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                        t.commit(&writes, &sources, last).map(|()| writes)
                    })
                    .await
                    .map_err(|e| Error::State(format!("the commit task failed: {e}")))?;
                    let writes = done?;
                    held = barrier_at.elapsed();
                    if !last {
                        control.release(epoch);
                    }
                    next.changelog.extend(txn.changelog_positions());
                    let store = env.store.clone();
                    let committed = next.clone();
                    tokio::task::spawn_blocking(move || {
                        store.apply_committed(writes, &committed)?;
                        crash_point(failpoints::AFTER_STATE_BATCH);
                        Ok::<_, Error>(())
                    })
                    .await
                    .map_err(|e| Error::State(format!("the commit task failed: {e}")))??;
                } else if !last {
                    control.release(epoch);
                }
            } else {
                // Every worker holds the epoch's writes and every sink its bytes:
                // the next epoch may start while this one commits. Reads stay
                // right meanwhile, because the workers' caches keep what RocksDB
                // lacks until the commit lands (see `state.rs`), and the next
                // barrier is only requested after it has.
                if !last {
                    control.release(epoch);
                }
                if changed {
                    let store = env.store.clone();
                    let committed = next.clone();
                    tokio::task::spawn_blocking(move || -> Result<()> {
                        // In key order, RocksDB's memtable inserts are cheapest.
                        writes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                        for sync in syncs {
                            sync()?;
                        }
                        crash_point(failpoints::AFTER_SINK_FLUSH);
                        store.commit(writes, &committed)?;
                        crash_point(failpoints::AFTER_STATE_BATCH);
                        Ok(())
                    })
                    .await
                    .map_err(|e| Error::State(format!("the commit task failed: {e}")))??;
                }
            }
            if changed {
                // Every K-th: when the committed epoch crosses a multiple of K
                // (epochs without changes are not committed, so some are
                // skipped), and at least K after the last cut.
                let k = cfg.checkpoint.retain_every;
                retain = k > 0
                    && epoch / k != manifest.epoch / k
                    && epoch >= last_cut.load(Ordering::Relaxed).saturating_add(k);
                manifest = next;
                control.committed(epoch);
                summary.commits += 1;
                summary.last_epoch = epoch;
                summary.commit_times.record(aligned_at.elapsed());
                summary.align_times.record(aligned_at - barrier_at);
                tracing::debug!(epoch, "committed");
            }
            if retain && retaining.as_ref().is_none_or(|h| h.is_finished()) {
                // Cut in the background: cutting flushes RocksDB's memtable,
                // which must not hold up the next epoch. One at a time; while
                // one is being cut, the next is skipped.
                // A failure here loses a replay point, not committed data.
                let store = env.store.clone();
                let keep = cfg.checkpoint.retain_count.max(1);
                let cut = last_cut.clone();
                retaining = Some(tokio::task::spawn_blocking(move || {
                    match store.retain(keep) {
                        Ok(id) => {
                            cut.store(id, Ordering::Relaxed);
                            tracing::info!(epoch = id, "retained checkpoint {id}");
                        }
                        Err(e) => tracing::warn!("could not retain a checkpoint: {e}; the run goes on"),
                    }
                }));
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = std::time::Instant::now();
                let read = metrics.records_read.load(Ordering::Relaxed);
                tracing::info!(
                    epoch = summary.last_epoch,
                    commits = summary.commits,
                    records = read,
                    commit_p50_ms = summary.commit_times.percentile_ms(0.5),
                    commit_p99_ms = summary.commit_times.percentile_ms(0.99),
                    "progress"
                );
            }
            if last {
                control.shutdown();
                break;
            }
            next_barrier = barrier_at
                + interval
                + if held > interval / 2 {
                    held
                } else {
                    Duration::ZERO
                };
        }
        Ok(())
    }
    .await;
    if let Some(h) = retaining.take() {
        // Never left running: a retry reopens the state directory, and an
        // exit should not leave a checkpoint half-made. On an error the
        // tasks are stopped first: nothing more will commit.
        if result.is_err() {
            control.shutdown();
        }
        let _ = h.await;
    }
    result?;
    summary.records_read = metrics.records_read.load(Ordering::Relaxed);
    summary.skipped = metrics.skipped.load(Ordering::Relaxed);
    Ok(summary)
}
