//! The pieces a pipeline is made of at run time: the source side (a source
//! task fused with the stateless operators before the exchange) and the
//! keyed stages a worker runs after it (processors, maps, sinks).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus::IntCounter;
use weir_core::commit::GroupOffsets;
use weir_core::exec::{EncodedKeys, KeyedNode, NodeEnv, SideRecord};
use weir_core::group::{GroupMemberInfo, Member};
use weir_core::sink::{Flushed, Sink, SinkWriter};
use weir_core::source::{
    Forwarded, Lag, ReadStatus, ResetTo, Resume, Source, SourceReader, TaskOffsets,
};
use weir_core::{Error, Processor, Record, Result, Settings};

use crate::config::OnBadInput;
use crate::exchange::{Remote, Waits};
use crate::observe::{status, METRICS};
use crate::state::CachedState;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Counters of one run.
#[derive(Default, Debug)]
pub(crate) struct Metrics {
    pub(crate) records_read: AtomicU64,
    pub(crate) skipped: AtomicU64,
    /// When a skip was last logged (ms since the epoch).
    skip_told_ms: std::sync::atomic::AtomicI64,
}

impl Metrics {
    /// Counts a record skipped by the `on_bad_input` policy, for `reason`
    /// (the label of `weir_records_skipped_total`), and logs it: the first
    /// of each second, so that a stream of bad input costs a count each,
    /// not a log line and an incident each.
    pub(crate) fn skip(&self, reason: &'static str, what: &str, e: &Error) {
        let n = self.skipped.fetch_add(1, Ordering::Relaxed) + 1;
        METRICS.skipped.with_label_values(&[reason]).inc();
        let now = crate::store::now_ms();
        let told = self.skip_told_ms.load(Ordering::Relaxed);
        if (told == 0 || now.saturating_sub(told) >= 1000)
            && self
                .skip_told_ms
                .compare_exchange(told, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            status::incident(reason, format!("skipped {what}: {e} ({n} skipped in all)"));
            tracing::warn!(
                skipped_total = n,
                "skipping {what}: {e} (further skips this second are counted, not logged)"
            );
        }
    }
}

/// A record operator on the source side, before the exchange.
pub(crate) type SideOp<T, U> =
    Arc<dyn Fn(Record<(), T>, &mut dyn FnMut(Record<(), U>)) + Send + Sync>;

/// What the offsets commands ask of a pipeline's source.
pub(crate) trait SourceAdmin: Send + Sync {
    fn tasks(&self) -> Result<Vec<String>>;
    /// See [`Source::input_of`].
    fn input_of(&self, task: &str) -> usize;
    fn active_readers(&self, own: Option<&str>) -> Result<Vec<String>>;
    fn join(&self, instance: &str, shared: bool) -> Result<Option<Member>>;
    fn until_idle(&self) -> Option<std::time::Duration>;
    fn bounded(&self) -> bool;
    fn repartition(&self, shards: u16) -> Result<Option<String>>;
    fn open_shard(
        &self,
        shard: u16,
        from: Option<u64>,
        drain: bool,
    ) -> Result<Box<dyn SourceReader<Forwarded>>>;
    fn shard_ends(&self, shards: &[u16]) -> Result<BTreeMap<u16, u64>>;
    fn purge(&self, positions: &BTreeMap<String, u64>) -> Result<()>;
    fn last_committers(&self) -> Result<BTreeMap<String, Option<u16>>>;
    fn members(&self) -> Result<Vec<GroupMemberInfo>>;
    fn resume_points(
        &self,
        tasks: &[String],
        recorded: &[(String, Resume)],
    ) -> Result<BTreeMap<String, Resume>>;
    fn offsets(&self) -> Result<Vec<TaskOffsets>>;
    fn resolve(&self, to: ResetTo) -> Result<BTreeMap<String, u64>>;
    fn publish(&self, positions: &BTreeMap<String, u64>) -> Result<()>;
    fn group_offsets(&self, positions: &BTreeMap<String, u64>) -> Result<Option<GroupOffsets>>;
}

/// A source with its stateless operators fused in.
pub(crate) trait SourceSide<T>: SourceAdmin {
    fn open(&self, task: &str, from: Option<&Resume>) -> Result<Box<dyn ChainedReader<T>>>;
    /// Watermark lag behind the highest event time seen; `None` when the
    /// stream carries no event time.
    fn watermark_delay(&self) -> Option<i64>;
}

pub(crate) trait ChainedReader<T>: Send {
    fn read(&mut self, max: usize, out: &mut dyn FnMut(Record<(), T>)) -> Result<ReadStatus>;
    fn position(&self) -> u64;
    fn identity(&self) -> Option<String>;
    fn committed(&mut self, position: u64) -> Result<()>;
    /// Records read from the source since the last call (before any operator).
    fn take_read_count(&mut self) -> u64;
    /// How far the reader is behind its input's end (see [`SourceReader::lag`]).
    fn lag(&self) -> Option<Lag>;
    /// What it read has reached the exchange's receivers (the task's
    /// exchange sent on what it held).
    fn delivered(&mut self) {}
    /// Where the reader got to, for the workers after a further exchange
    /// (a shard reader's; see `exchange::Mark`): the task hands it on,
    /// after what it read before.
    fn take_mark(&mut self) -> Option<crate::exchange::Mark> {
        None
    }
}

pub(crate) struct BaseSide<S>(pub(crate) S);

struct BaseReader<T> {
    reader: Box<dyn SourceReader<T>>,
    buf: Vec<Record<(), T>>,
    read: u64,
}

impl<S: Source> SourceAdmin for BaseSide<S> {
    fn tasks(&self) -> Result<Vec<String>> {
        self.0.tasks()
    }

    fn input_of(&self, task: &str) -> usize {
        self.0.input_of(task)
    }

    fn active_readers(&self, own: Option<&str>) -> Result<Vec<String>> {
        self.0.active_readers(own)
    }

    fn join(&self, instance: &str, shared: bool) -> Result<Option<Member>> {
        self.0.join(instance, shared)
    }

    fn repartition(&self, shards: u16) -> Result<Option<String>> {
        self.0.repartition(shards)
    }

    fn open_shard(
        &self,
        shard: u16,
        from: Option<u64>,
        drain: bool,
    ) -> Result<Box<dyn SourceReader<Forwarded>>> {
        self.0.open_shard(shard, from, drain)
    }

    fn shard_ends(&self, shards: &[u16]) -> Result<BTreeMap<u16, u64>> {
        self.0.shard_ends(shards)
    }

    fn purge(&self, positions: &BTreeMap<String, u64>) -> Result<()> {
        self.0.purge(positions)
    }

    fn last_committers(&self) -> Result<BTreeMap<String, Option<u16>>> {
        self.0.last_committers()
    }

    fn until_idle(&self) -> Option<std::time::Duration> {
        self.0.until_idle()
    }

    fn bounded(&self) -> bool {
        self.0.bounded()
    }

    fn members(&self) -> Result<Vec<GroupMemberInfo>> {
        self.0.members()
    }

    fn resume_points(
        &self,
        tasks: &[String],
        recorded: &[(String, Resume)],
    ) -> Result<BTreeMap<String, Resume>> {
        self.0.resume_points(tasks, recorded)
    }

    fn offsets(&self) -> Result<Vec<TaskOffsets>> {
        self.0.offsets()
    }

    fn resolve(&self, to: ResetTo) -> Result<BTreeMap<String, u64>> {
        self.0.resolve(to)
    }

    fn publish(&self, positions: &BTreeMap<String, u64>) -> Result<()> {
        self.0.publish(positions)
    }

    fn group_offsets(&self, positions: &BTreeMap<String, u64>) -> Result<Option<GroupOffsets>> {
        self.0.group_offsets(positions)
    }
}

impl<S: Source> SourceSide<S::Item> for BaseSide<S> {
    fn open(&self, task: &str, from: Option<&Resume>) -> Result<Box<dyn ChainedReader<S::Item>>> {
        Ok(Box::new(BaseReader {
            reader: self.0.open(task, from)?,
            buf: Vec::new(),
            read: 0,
        }))
    }

    fn watermark_delay(&self) -> Option<i64> {
        None
    }
}

impl<T: Send> ChainedReader<T> for BaseReader<T> {
    fn read(&mut self, max: usize, out: &mut dyn FnMut(Record<(), T>)) -> Result<ReadStatus> {
        let status = self.reader.read(&mut self.buf, max);
        // Records before a bad one were read: hand them on either way.
        self.read += self.buf.len() as u64;
        for r in self.buf.drain(..) {
            out(r);
        }
        status
    }

    fn position(&self) -> u64 {
        self.reader.position()
    }

    fn identity(&self) -> Option<String> {
        self.reader.identity()
    }

    fn committed(&mut self, position: u64) -> Result<()> {
        self.reader.committed(position)
    }

    fn take_read_count(&mut self) -> u64 {
        std::mem::take(&mut self.read)
    }

    fn lag(&self) -> Option<Lag> {
        self.reader.lag()
    }
}

pub(crate) struct ChainSide<T, U> {
    pub(crate) inner: Arc<dyn SourceSide<T>>,
    pub(crate) op: SideOp<T, U>,
    /// Set by `event_time`: the watermark delay from here on.
    pub(crate) watermark_delay: Option<i64>,
}

struct ChainReader<T, U> {
    inner: Box<dyn ChainedReader<T>>,
    op: SideOp<T, U>,
}

impl<T: Send + 'static, U: Send + 'static> SourceAdmin for ChainSide<T, U> {
    fn tasks(&self) -> Result<Vec<String>> {
        self.inner.tasks()
    }

    fn input_of(&self, task: &str) -> usize {
        self.inner.input_of(task)
    }

    fn active_readers(&self, own: Option<&str>) -> Result<Vec<String>> {
        self.inner.active_readers(own)
    }

    fn join(&self, instance: &str, shared: bool) -> Result<Option<Member>> {
        self.inner.join(instance, shared)
    }

    fn repartition(&self, shards: u16) -> Result<Option<String>> {
        self.inner.repartition(shards)
    }

    fn open_shard(
        &self,
        shard: u16,
        from: Option<u64>,
        drain: bool,
    ) -> Result<Box<dyn SourceReader<Forwarded>>> {
        self.inner.open_shard(shard, from, drain)
    }

    fn shard_ends(&self, shards: &[u16]) -> Result<BTreeMap<u16, u64>> {
        self.inner.shard_ends(shards)
    }

    fn purge(&self, positions: &BTreeMap<String, u64>) -> Result<()> {
        self.inner.purge(positions)
    }

    fn last_committers(&self) -> Result<BTreeMap<String, Option<u16>>> {
        self.inner.last_committers()
    }

    fn until_idle(&self) -> Option<std::time::Duration> {
        self.inner.until_idle()
    }

    fn bounded(&self) -> bool {
        self.inner.bounded()
    }

    fn members(&self) -> Result<Vec<GroupMemberInfo>> {
        self.inner.members()
    }

    fn resume_points(
        &self,
        tasks: &[String],
        recorded: &[(String, Resume)],
    ) -> Result<BTreeMap<String, Resume>> {
        self.inner.resume_points(tasks, recorded)
    }

    fn offsets(&self) -> Result<Vec<TaskOffsets>> {
        self.inner.offsets()
    }

    fn resolve(&self, to: ResetTo) -> Result<BTreeMap<String, u64>> {
        self.inner.resolve(to)
    }

    fn publish(&self, positions: &BTreeMap<String, u64>) -> Result<()> {
        self.inner.publish(positions)
    }

    fn group_offsets(&self, positions: &BTreeMap<String, u64>) -> Result<Option<GroupOffsets>> {
        self.inner.group_offsets(positions)
    }
}

impl<T: Send + 'static, U: Send + 'static> SourceSide<U> for ChainSide<T, U> {
    fn open(&self, task: &str, from: Option<&Resume>) -> Result<Box<dyn ChainedReader<U>>> {
        Ok(Box::new(ChainReader {
            inner: self.inner.open(task, from)?,
            op: self.op.clone(),
        }))
    }

    fn watermark_delay(&self) -> Option<i64> {
        self.watermark_delay
            .or_else(|| self.inner.watermark_delay())
    }
}

impl<T: Send, U: Send> ChainedReader<U> for ChainReader<T, U> {
    fn read(&mut self, max: usize, out: &mut dyn FnMut(Record<(), U>)) -> Result<ReadStatus> {
        let op = &self.op;
        self.inner.read(max, &mut |r| op(r, out))
    }

    fn position(&self) -> u64 {
        self.inner.position()
    }

    fn identity(&self) -> Option<String> {
        self.inner.identity()
    }

    fn committed(&mut self, position: u64) -> Result<()> {
        self.inner.committed(position)
    }

    fn take_read_count(&mut self) -> u64 {
        self.inner.take_read_count()
    }

    fn lag(&self) -> Option<Lag> {
        self.inner.lag()
    }
}

/// A sink output flushed at a barrier.
pub(crate) struct FlushedSink {
    pub(crate) id: String,
    pub(crate) flushed: Flushed,
}

/// A worker's writer of one named sink.
pub(crate) trait SideWriter: Send {
    fn write(&mut self, record: SideRecord) -> Result<()>;
    fn flush(&mut self, out: &mut Vec<FlushedSink>) -> Result<()>;
}

/// Opens a worker's writer of a named sink.
pub(crate) type SideOpener =
    Arc<dyn Fn(&StageInit<'_>) -> Result<Box<dyn SideWriter>> + Send + Sync>;

/// The named sinks a pipeline declares, with how to open them.
pub(crate) type NamedSinks = Vec<(&'static str, SideOpener)>;

/// A named sink of `Record<K, V>`.
pub(crate) struct TypedSide<K, V> {
    pub(crate) name: &'static str,
    pub(crate) stage: SinkStage<Record<K, V>>,
}

impl<K: Send + 'static, V: Send + 'static> SideWriter for TypedSide<K, V> {
    fn write(&mut self, side: SideRecord) -> Result<()> {
        match side.record.downcast::<Record<K, V>>() {
            Ok(r) => self.stage.write(&r),
            Err(_) => Err(Error::Config(format!(
                "a processor emitted {} to the side output `{}`, whose sink takes {}; give tags of different types different names",
                side.type_name,
                self.name,
                std::any::type_name::<Record<K, V>>()
            ))),
        }
    }

    fn flush(&mut self, out: &mut Vec<FlushedSink>) -> Result<()> {
        out.push(self.stage.flushed()?);
        Ok(())
    }
}

/// A worker's named sinks, by name.
#[derive(Default)]
pub(crate) struct SideSinks(pub(crate) Vec<(&'static str, Box<dyn SideWriter>)>);

impl SideSinks {
    fn write(&mut self, records: Vec<SideRecord>) -> Result<()> {
        for r in records {
            let Some((_, w)) = self.0.iter_mut().find(|(n, _)| *n == r.sink) else {
                return Err(Error::Config(format!(
                    "a processor emitted to the side output `{}`, which has no sink; add `p.side_output(&TAG, sink)` for it",
                    r.sink
                )));
            };
            w.write(r)?;
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self, out: &mut Vec<FlushedSink>) -> Result<()> {
        self.0.iter_mut().try_for_each(|(_, w)| w.flush(out))
    }
}

/// What a stage needs while running.
pub(crate) struct StageCx<'a> {
    pub(crate) sides: &'a mut SideSinks,
    pub(crate) state: &'a mut CachedState,
    pub(crate) watermark: i64,
    /// Each source input's watermark, for the processor that takes
    /// records straight from the exchange; empty for the stages after it,
    /// whose records a processor has handled (and may have held back).
    pub(crate) inputs: &'a [i64],
    pub(crate) now: i64,
    pub(crate) policy: OnBadInput,
    pub(crate) metrics: &'a Metrics,
}

/// What a stage is built from, per worker.
pub(crate) struct StageInit<'a> {
    /// Task name of the worker (names its sink outputs).
    pub(crate) task: String,
    /// Its number among the workers of its layer (or the source tasks).
    pub(crate) worker: usize,
    /// The workers of the next layer, when an exchange ends this one's
    /// stages: a [`NextLayer`](crate::exchange::NextLayer) of its types.
    pub(crate) next_layer: Option<&'a (dyn std::any::Any + Send + Sync)>,
    /// The key groups it processes in this run.
    pub(crate) groups: Vec<u16>,
    pub(crate) key_groups: u16,
    /// Sink id -> position to truncate to (`None`: keep everything).
    pub(crate) truncate_to: &'a (dyn Fn(&str) -> Option<u64> + Sync),
    /// The configuration processors read when they open.
    pub(crate) settings: Arc<dyn Settings>,
    /// Its layer: 0 for the workers the source tasks feed, `n` for those
    /// after the `n`-th exchange after a processor.
    pub(crate) layer: u8,
    /// Where the run shares keyed state with other instances: how records
    /// for exchange `n` reach the shards of the repartition topic.
    pub(crate) remote: Option<&'a (dyn Fn(u8) -> Result<Remote> + Sync)>,
    /// The shards this run reads, whose backlog a worker after a further
    /// exchange holds its layer's records for (see [`Waits`]).
    pub(crate) waits: Option<&'a Waits>,
}

/// A keyed stage of one worker; stages chain to the sink.
pub(crate) trait Stage<K, V>: Send {
    fn open<'a>(&'a mut self, cx: &'a mut StageCx<'_>) -> BoxFuture<'a, Result<()>>;
    fn push<'a>(
        &'a mut self,
        batch: Vec<Record<K, V>>,
        cx: &'a mut StageCx<'_>,
    ) -> BoxFuture<'a, Result<()>>;
    /// [`push`](Self::push) of a batch from the exchange, with the keys'
    /// encodings and key groups it computed (in the records' order).
    fn push_keyed<'a>(
        &'a mut self,
        batch: Vec<Record<K, V>>,
        keys: EncodedKeys,
        cx: &'a mut StageCx<'_>,
    ) -> BoxFuture<'a, Result<()>> {
        drop(keys);
        self.push(batch, cx)
    }
    /// Fires due timers here and downstream.
    fn fire<'a>(&'a mut self, cx: &'a mut StageCx<'_>) -> BoxFuture<'a, Result<()>>;
    /// Ends epoch `epoch` here and downstream: sinks flush (into `out`,
    /// for the checkpoint), an exchange sends the barrier on.
    fn barrier<'a>(
        &'a mut self,
        epoch: u64,
        out: &'a mut Vec<FlushedSink>,
    ) -> BoxFuture<'a, Result<()>>;
    fn close(&mut self) -> BoxFuture<'_, Result<()>>;
}

pub(crate) type StageFactory<K, V> =
    Arc<dyn Fn(&StageInit<'_>) -> Result<Box<dyn Stage<K, V>>> + Send + Sync>;

/// How many records ahead of the one processed a keyed stage prefetches
/// state: far enough for the backend's two dependent loads (its hint, then
/// the slot the hint names, each up to a memory latency) to arrive before
/// the record's `get`, near enough for them to stay in the cache.
const PREFETCH_AHEAD: usize = 16;

pub(crate) struct ProcessStage<P: Processor> {
    pub(crate) node: KeyedNode<P>,
    /// The watermark its timers last fired at: what the stages after it
    /// see while they take the output of timers that fire at a newer one.
    pub(crate) fired_at: i64,
    /// The worker it runs in.
    pub(crate) task: String,
    pub(crate) groups: Vec<u16>,
    pub(crate) settings: Arc<dyn Settings>,
    pub(crate) next: Box<dyn Stage<P::Key, P::Out>>,
}

impl<P: Processor> ProcessStage<P> {
    /// Processes `batch` (with its keys' encodings, when the exchange
    /// handed them on) and pushes the output downstream.
    async fn run(
        &mut self,
        batch: Vec<Record<P::Key, P::In>>,
        keys: Option<&EncodedKeys>,
        cx: &mut StageCx<'_>,
    ) -> Result<()> {
        for (i, record) in batch.into_iter().enumerate() {
            if let Some((key_bytes, group)) = keys.and_then(|k| k.get(i + PREFETCH_AHEAD)) {
                self.node.prefetch(key_bytes, group, &mut *cx.state);
            }
            let mut env = NodeEnv {
                state: &mut *cx.state,
                watermark: cx.watermark,
                inputs: cx.inputs,
                now: cx.now,
            };
            let done = match keys.and_then(|k| k.get(i)) {
                Some((key_bytes, group)) => {
                    self.node
                        .process_encoded(record, key_bytes, group, &mut env)
                        .await
                }
                None => self.node.process(record, &mut env).await,
            };
            if let Err(e) = done {
                if cx.policy != OnBadInput::Fail && e.is_record_error() {
                    cx.metrics
                        .skip("processor-error", "a record its processor failed on", &e);
                } else {
                    return Err(e);
                }
            }
        }
        cx.sides.write(self.node.take_side_output())?;
        count_late(self.node.take_late());
        let out = self.node.take_output();
        if out.is_empty() {
            Ok(())
        } else {
            let inputs = std::mem::take(&mut cx.inputs);
            let pushed = self.next.push(out, cx).await;
            cx.inputs = inputs;
            pushed
        }
    }
}

impl<P: Processor> Stage<P::Key, P::In> for ProcessStage<P> {
    fn open<'a>(&'a mut self, cx: &'a mut StageCx<'_>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.node
                .open(
                    &mut *cx.state,
                    &self.task,
                    &self.groups,
                    cx.now,
                    &*self.settings,
                )
                .await?;
            self.next.open(cx).await
        })
    }

    fn push<'a>(
        &'a mut self,
        batch: Vec<Record<P::Key, P::In>>,
        cx: &'a mut StageCx<'_>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.run(batch, None, cx))
    }

    fn push_keyed<'a>(
        &'a mut self,
        batch: Vec<Record<P::Key, P::In>>,
        keys: EncodedKeys,
        cx: &'a mut StageCx<'_>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let keys = (keys.len() == batch.len()).then_some(keys);
            self.run(batch, keys.as_ref(), cx).await
        })
    }

    fn fire<'a>(&'a mut self, cx: &'a mut StageCx<'_>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if self.node.has_timers() {
                let mut env = NodeEnv {
                    state: &mut *cx.state,
                    watermark: cx.watermark,
                    inputs: cx.inputs,
                    now: cx.now,
                };
                self.node.fire_due(&mut env).await?;
                cx.sides.write(self.node.take_side_output())?;
                count_late(self.node.take_late());
                let out = self.node.take_output();
                if !out.is_empty() {
                    // As a watermark travels behind the records before it
                    // (Flink's order): the stages after this one take what
                    // its timers emitted (a window's result, stamped with
                    // its end) before they see the watermark that fired
                    // them, so that it is not late there.
                    let now = std::mem::replace(&mut cx.watermark, self.fired_at);
                    let inputs = std::mem::take(&mut cx.inputs);
                    let pushed = self.next.push(out, cx).await;
                    (cx.watermark, cx.inputs) = (now, inputs);
                    pushed?;
                }
            }
            self.fired_at = self.fired_at.max(cx.watermark);
            let inputs = std::mem::take(&mut cx.inputs);
            let fired = self.next.fire(cx).await;
            cx.inputs = inputs;
            fired
        })
    }

    fn barrier<'a>(
        &'a mut self,
        epoch: u64,
        out: &'a mut Vec<FlushedSink>,
    ) -> BoxFuture<'a, Result<()>> {
        self.next.barrier(epoch, out)
    }

    fn close(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.node.close().await?;
            self.next.close().await
        })
    }
}

/// Adds `n` records dropped as late to `weir_late_records_total`.
fn count_late(n: u64) {
    if n > 0 {
        METRICS.late_records.inc_by(n);
    }
}

/// A stateless keyed operator: each record becomes zero or more.
pub(crate) type KeyedOp<K, V, L, U> =
    Arc<dyn Fn(Record<K, V>, &mut Vec<Record<L, U>>) + Send + Sync>;

/// A stateless operator after the exchange.
pub(crate) struct OpStage<K, V, L, U> {
    pub(crate) op: KeyedOp<K, V, L, U>,
    pub(crate) next: Box<dyn Stage<L, U>>,
}

impl<K, V, L, U> Stage<K, V> for OpStage<K, V, L, U>
where
    K: Send + 'static,
    V: Send + 'static,
    L: Send + 'static,
    U: Send + 'static,
{
    fn open<'a>(&'a mut self, cx: &'a mut StageCx<'_>) -> BoxFuture<'a, Result<()>> {
        self.next.open(cx)
    }

    fn push<'a>(
        &'a mut self,
        batch: Vec<Record<K, V>>,
        cx: &'a mut StageCx<'_>,
    ) -> BoxFuture<'a, Result<()>> {
        let mut out = Vec::with_capacity(batch.len());
        for r in batch {
            (self.op)(r, &mut out);
        }
        self.next.push(out, cx)
    }

    fn fire<'a>(&'a mut self, cx: &'a mut StageCx<'_>) -> BoxFuture<'a, Result<()>> {
        self.next.fire(cx)
    }

    fn barrier<'a>(
        &'a mut self,
        epoch: u64,
        out: &'a mut Vec<FlushedSink>,
    ) -> BoxFuture<'a, Result<()>> {
        self.next.barrier(epoch, out)
    }

    fn close(&mut self) -> BoxFuture<'_, Result<()>> {
        self.next.close()
    }
}

pub(crate) struct SinkStage<T> {
    pub(crate) id: String,
    writer: Box<dyn SinkWriter<T>>,
    /// Records written since the last flush, added to `written_total`
    /// there: a count per epoch, not an atomic per record.
    written: u64,
    written_total: IntCounter,
}

impl<T> SinkStage<T> {
    pub(crate) fn open<S: Sink<T>>(sink: &S, init: &StageInit<'_>) -> Result<Self> {
        Self::open_named(sink, init, None)
    }

    /// Opens a sink; a named sink's manifest id is prefixed with its name.
    pub(crate) fn open_named<S: Sink<T>>(
        sink: &S,
        init: &StageInit<'_>,
        name: Option<&str>,
    ) -> Result<Self> {
        let id = match name {
            Some(n) => format!("{n}:{}", sink.id(&init.task)),
            None => sink.id(&init.task),
        };
        let writer = sink.open(&init.task, (init.truncate_to)(&id))?;
        let written_total = METRICS.sink_records.with_label_values(&[&id]);
        Ok(SinkStage {
            id,
            writer,
            written: 0,
            written_total,
        })
    }

    /// Writes one record.
    #[inline]
    pub(crate) fn write(&mut self, record: &T) -> Result<()> {
        self.written += 1;
        self.writer.write(record)
    }

    /// Flushes what was written, for the barrier's acknowledgement.
    pub(crate) fn flushed(&mut self) -> Result<FlushedSink> {
        let flushed = self.writer.flush()?;
        self.written_total.inc_by(std::mem::take(&mut self.written));
        Ok(FlushedSink {
            id: self.id.clone(),
            flushed,
        })
    }
}

impl<K: Send + 'static, V: Send + 'static> Stage<K, V> for SinkStage<Record<K, V>> {
    fn open<'a>(&'a mut self, _cx: &'a mut StageCx<'_>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn push<'a>(
        &'a mut self,
        batch: Vec<Record<K, V>>,
        _cx: &'a mut StageCx<'_>,
    ) -> BoxFuture<'a, Result<()>> {
        let r = batch.iter().try_for_each(|r| self.write(r));
        Box::pin(async move { r })
    }

    fn fire<'a>(&'a mut self, _cx: &'a mut StageCx<'_>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn barrier<'a>(
        &'a mut self,
        _epoch: u64,
        out: &'a mut Vec<FlushedSink>,
    ) -> BoxFuture<'a, Result<()>> {
        let flushed = self.flushed().map(|f| out.push(f));
        Box::pin(async move { flushed })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}
