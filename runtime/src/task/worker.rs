//! A worker: the processors and sinks of a range of key groups, fed by the
//! exchange; at every source's barrier it hands the epoch's state writes and
//! flushed outputs to the coordinator.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use weir_core::{Error, Result};

use super::{coordinator_gone, panic_message, Event, Events};
use crate::config::OnBadInput;
use crate::exchange::{Hold, Msg};
use crate::observe::{CacheShare, METRICS};
use crate::stage::{Metrics, SideSinks, Stage, StageCx};
use crate::state::CachedState;
use crate::store::now_ms;

/// A running worker.
pub(crate) struct WorkerHandle {
    /// Ends once the worker has ended, whether it returned, panicked or
    /// was stopped.
    pub(crate) done: tokio::task::JoinHandle<()>,
    /// Stops the worker at its next await (its `done` then ends).
    pub(crate) stop: tokio::task::AbortHandle,
}

/// Runs a worker; a panic becomes an error for the coordinator, which would
/// otherwise wait for the worker's acknowledgement forever.
pub(crate) fn spawn_worker<K: Send + 'static, V: Send + 'static>(
    worker: Worker<K, V>,
    events: Events,
) -> WorkerHandle {
    let task = tokio::spawn(worker.run());
    let stop = task.abort_handle();
    let done = tokio::spawn(async move {
        if let Err(e) = task.await {
            if e.is_panic() {
                let msg = panic_message(&e.into_panic());
                let _ = events.send(Event::Failed(Error::State(format!(
                    "a worker panicked: {msg}; nothing of the open epoch was committed"
                ))));
            }
        }
    });
    WorkerHandle { done, stop }
}

/// Records a worker applies at once of those due from its hold.
const DRAIN_BATCH: usize = 1024;

/// One worker of a keyed run.
pub(crate) struct Worker<K, V> {
    pub(crate) stage: Box<dyn Stage<K, V>>,
    pub(crate) sides: SideSinks,
    pub(crate) rx: mpsc::Receiver<Msg<K, V>>,
    /// After a further exchange: the records of workers of this run held
    /// while their key group's shard is behind (see [`Hold`]).
    pub(crate) held: Option<Box<dyn Hold<K, V>>>,
    pub(crate) state: CachedState,
    pub(crate) sources: usize,
    /// The input each source reads (see `Source::input_of`), by source
    /// index; `None` for a shard of the repartition topic, whose records
    /// may be of any input.
    pub(crate) inputs: Vec<Option<usize>>,
    pub(crate) events: Events,
    pub(crate) policy: OnBadInput,
    pub(crate) metrics: Arc<Metrics>,
    /// Kafka mode: after acknowledging a barrier, wait for the release, so
    /// that nothing (not even a timer) writes between two transactions.
    pub(crate) release: Option<tokio::sync::watch::Receiver<u64>>,
    /// The epoch whose barrier was last requested.
    pub(crate) requested: tokio::sync::watch::Receiver<u64>,
    /// The epoch the run recovered to: the first one filled is the next.
    pub(crate) start_epoch: u64,
    /// Bytes of state writes after which an epoch is ended early, and the
    /// worker waits for that end before reading on (so an epoch's batch,
    /// changelog and memory stay bounded however fast the input comes).
    pub(crate) epoch_budget: usize,
}

impl<K: Send + 'static, V: Send + 'static> Worker<K, V> {
    async fn run(mut self) {
        if let Err(e) = self.run_loop().await {
            let _ = self.events.send(Event::Failed(e));
        }
    }

    async fn run_loop(&mut self) -> Result<()> {
        let mut watermarks = vec![i64::MIN; self.sources];
        // Sources without records for a while hold no watermark back.
        let mut idle = vec![false; self.sources];
        // How far a source read to its input's end lets that input's
        // watermark rise (see `of_input`).
        let mut at_end = vec![None::<i64>; self.sources];
        let mut watermark = i64::MIN;
        // Each input's own, when the source reads several.
        let count = self.inputs.iter().flatten().max().map_or(0, |m| m + 1);
        let mut input_marks = vec![i64::MIN; if count > 1 { count } else { 0 }];
        let mut barriers = 0usize;
        // The epoch being filled, and whether it was reported full. Not
        // from `requested`: this task may first run after the coordinator
        // asked for the first barrier, and would then wait for the end of
        // an epoch that cannot end without it.
        let mut filling = self.start_epoch + 1;
        let mut reported = false;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let metrics = self.metrics.clone();
        let mut cache = CacheShare::default();
        macro_rules! cx {
            () => {
                StageCx {
                    sides: &mut self.sides,
                    state: &mut self.state,
                    watermark,
                    inputs: &input_marks,
                    now: now_ms(),
                    policy: self.policy,
                    metrics: &metrics,
                }
            };
        }
        // Fires the timers the watermark passes, once it rises, unless
        // records are held back, which come later.
        macro_rules! advance {
            () => {
                // An input's own watermark may fire the timers that follow
                // it (see `Declarations::event_timers_follow`).
                let mut rose = false;
                for (input, mark) in input_marks.iter_mut().enumerate() {
                    let now = of_input(&watermarks, &at_end, &self.inputs, input);
                    rose |= now > *mark;
                    *mark = now;
                }
                let low = combined(&watermarks, &idle);
                let holds = self.held.as_ref().is_some_and(|h| h.holds());
                if (low > watermark || rose) && !holds {
                    watermark = watermark.max(low);
                    self.stage.fire(&mut cx!()).await?;
                }
            };
        }
        self.stage.open(&mut cx!()).await?;
        if let Some(held) = &mut self.held {
            held.open(&mut self.state)?;
        }
        loop {
            // Records due from the hold, a batch at a time between messages
            // (whatever reaches their key groups meanwhile is held behind
            // them), within the epoch's budget (see `Held`); past it, the
            // epoch ends first. Not after the last barrier: nothing more
            // commits then.
            let shutdown = *self.requested.borrow() == u64::MAX;
            if let Some(held) = self.held.as_mut().filter(|h| h.draining() && !shutdown) {
                if self.state.dirty_bytes() < self.epoch_budget {
                    let due = held.drain(DRAIN_BATCH, &mut self.state)?;
                    let done = !held.draining();
                    if !due.is_empty() {
                        self.stage.push(due, &mut cx!()).await?;
                    }
                    if done {
                        advance!();
                    }
                    tokio::task::yield_now().await;
                    if self.rx.is_empty() {
                        continue;
                    }
                } else if !reported {
                    reported = true;
                    self.events
                        .send(Event::EpochFull(filling))
                        .map_err(|_| coordinator_gone())?;
                }
            }
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
                Msg::Batch {
                    source,
                    records,
                    keys,
                } => {
                    let (records, keys) = match &mut self.held {
                        Some(held) if held.waits() => {
                            held.arrive(source, records, keys, &mut self.state)?
                        }
                        _ => (records, keys),
                    };
                    if !records.is_empty() {
                        self.stage.push_keyed(records, keys, &mut cx!()).await?;
                    }
                    if self.state.dirty_bytes() >= self.epoch_budget {
                        if !reported {
                            reported = true;
                            self.events
                                .send(Event::EpochFull(filling))
                                .map_err(|_| coordinator_gone())?;
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
                    (idle[source], at_end[source]) = (false, None);
                }
                Msg::Idle { source } => idle[source] = true,
                Msg::AtEnd { source, until } => at_end[source] = Some(until),
                Msg::Finished { source } => watermarks[source] = i64::MAX,
                Msg::Reached { source, mark } => {
                    if let Some(held) = &mut self.held {
                        let released = held.reached(source, mark, &mut self.state)?;
                        if !released.is_empty() {
                            self.stage.push(released, &mut cx!()).await?;
                        }
                    }
                }
                Msg::Barrier(epoch) => {
                    barriers += 1;
                    if barriers == self.sources {
                        barriers = 0;
                        // Every source finished: the last epoch of a bounded
                        // run, which takes whatever is still due.
                        if watermarks.iter().all(|w| *w == i64::MAX) {
                            if let Some(held) = &mut self.held {
                                while held.draining() {
                                    let due = held.drain(DRAIN_BATCH, &mut self.state)?;
                                    self.stage.push(due, &mut cx!()).await?;
                                }
                                advance!();
                            }
                        }
                        filling = epoch + 1;
                        reported = false;
                        // The previous epoch is committed: clean entries may go.
                        self.state.trim();
                        let mut flushes = Vec::new();
                        self.stage.barrier(epoch, &mut flushes).await?;
                        self.sides.flush(&mut flushes)?;
                        let writes = self.state.take_writes();
                        cache.set(self.state.cached_bytes());
                        // Event time in use: a watermark, not yet past the end.
                        if watermark > i64::MIN && watermark < i64::MAX {
                            METRICS.watermark_lag(
                                now_ms().saturating_sub(watermark).max(0) as f64 / 1e3,
                            );
                        }
                        self.events
                            .send(Event::WorkerAck {
                                epoch,
                                bytes: self.state.taken_bytes(),
                                writes,
                                flushes,
                            })
                            .map_err(|_| coordinator_gone())?;
                        if let Some(release) = &mut self.release {
                            // Shutdown releases everything (u64::MAX).
                            let _ = release.wait_for(|r| *r >= epoch).await;
                        }
                    }
                    continue;
                }
            }
            advance!();
        }
        self.stage.close().await
    }
}

/// The watermark of a worker's sources, given each one's and whether it
/// is idle: the least of the active ones, so that no source's records come
/// after it. Idle sources hold nothing back; when every source still
/// reading is idle, the greatest of their watermarks (as Flink's valve
/// does: nothing is coming from any of them, and each has read that far).
/// A finished source's is `i64::MAX`, which the others' hide until they
/// finish too.
fn combined(watermarks: &[i64], idle: &[bool]) -> i64 {
    let (mut active, mut idle_max) = (None::<i64>, None::<i64>);
    for (&w, &quiet) in watermarks.iter().zip(idle) {
        if w == i64::MAX {
            continue;
        }
        if quiet {
            idle_max = Some(idle_max.map_or(w, |m| m.max(w)));
        } else {
            active = Some(active.map_or(w, |m| m.min(w)));
        }
    }
    active.or(idle_max).unwrap_or(i64::MAX)
}

/// The watermark of one input of the source, given each source's, how
/// far each read to its input's end lets it rise (see `Msg::AtEnd`), and
/// which input each reads: the least over the input's sources (and the
/// shards, which may carry any input's records) of their watermarks,
/// raised for those at their end. An idle source is not skipped, unlike
/// in the worker's watermark: quiet for a while says nothing of what its
/// input still holds. A finished source holds nothing back.
fn of_input(
    watermarks: &[i64],
    at_end: &[Option<i64>],
    inputs: &[Option<usize>],
    input: usize,
) -> i64 {
    watermarks
        .iter()
        .zip(at_end)
        .zip(inputs)
        .filter(|(_, of)| of.is_none_or(|i| i == input))
        .map(|((w, end), of)| match end {
            Some(until) if of.is_some() => (*w).max(*until),
            _ => *w,
        })
        .min()
        .unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use weir_core::exec::EncodedKeys;
    use weir_core::state::StateBackend;
    use weir_core::Record;

    use super::*;
    use crate::checkpoint::Control;

    #[test]
    fn idle_sources_hold_no_watermark_back_and_all_idle_ones_give_their_greatest() {
        let (min, max) = (i64::MIN, i64::MAX);
        assert_eq!(combined(&[5, 9, min], &[false, false, false]), min);
        assert_eq!(combined(&[5, 9, min], &[false, false, true]), 5);
        assert_eq!(combined(&[5, 9, min], &[true, true, true]), 9);
        assert_eq!(combined(&[5, max, 3], &[false, false, true]), 5);
        assert_eq!(combined(&[max, max], &[false, false]), max);
        assert_eq!(combined(&[max, 7], &[false, true]), 7);
    }

    #[test]
    fn an_inputs_watermark_is_its_active_sources_and_the_shards_least() {
        let (min, max) = (i64::MIN, i64::MAX);
        let inputs = [Some(0), Some(0), Some(1), None];
        let marks = [5, 9, 2, 7];
        let active = [None; 4];
        assert_eq!(of_input(&marks, &active, &inputs, 0), 5);
        assert_eq!(of_input(&marks, &active, &inputs, 1), 2);
        // An input read to its end rises as far as its end allows; a
        // finished source holds nothing back; a shard holds every input
        // back, at its end or not.
        let end = [None, None, Some(40), Some(50)];
        assert_eq!(of_input(&marks, &end, &inputs[..3], 1), 40);
        assert_eq!(of_input(&marks, &end, &inputs, 1), 7);
        assert_eq!(of_input(&[max, min, 3, max], &active, &inputs, 1), 3);
        assert_eq!(of_input(&[max, min, 3, max], &active, &inputs, 0), min);
        assert_eq!(of_input(&[max, max], &active, &inputs[..2], 0), max);
    }
    use crate::stage::{BoxFuture, FlushedSink};

    /// Writes one state entry per record.
    struct Writes;

    impl Stage<u32, ()> for Writes {
        fn open<'a>(&'a mut self, _cx: &'a mut StageCx<'_>) -> BoxFuture<'a, Result<()>> {
            Box::pin(async { Ok(()) })
        }

        fn push<'a>(
            &'a mut self,
            batch: Vec<Record<u32, ()>>,
            cx: &'a mut StageCx<'_>,
        ) -> BoxFuture<'a, Result<()>> {
            Box::pin(async move {
                for r in batch {
                    cx.state.put_slice(&r.key.to_be_bytes(), &[0; 64]);
                }
                Ok(())
            })
        }

        fn fire<'a>(&'a mut self, _cx: &'a mut StageCx<'_>) -> BoxFuture<'a, Result<()>> {
            Box::pin(async { Ok(()) })
        }

        fn barrier<'a>(
            &'a mut self,
            _epoch: u64,
            _out: &'a mut Vec<FlushedSink>,
        ) -> BoxFuture<'a, Result<()>> {
            Box::pin(async { Ok(()) })
        }

        fn close(&mut self) -> BoxFuture<'_, Result<()>> {
            Box::pin(async { Ok(()) })
        }
    }

    fn batch(keys: std::ops::Range<u32>) -> Msg<u32, ()> {
        let records = keys.map(|k| Record::new(k, ())).collect();
        Msg::Batch {
            source: 0,
            records,
            keys: EncodedKeys::default(),
        }
    }

    /// A worker whose task first ran after the coordinator had asked for
    /// the first barrier took itself to be filling the second epoch: full
    /// of the first epoch's records, it waited for the second barrier,
    /// which could not come before it processed the first. The run hung.
    #[tokio::test]
    async fn a_worker_started_after_the_first_barrier_request_ends_the_first_epoch() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Arc::new(rocksdb::DB::open_default(dir.path()).expect("open RocksDB"));
        let control = Control::new(0);
        let (events, mut acks) = mpsc::unbounded_channel();
        let (tx, rx) = mpsc::channel(16);
        let worker = Worker {
            stage: Box::new(Writes),
            sides: SideSinks::default(),
            rx,
            held: None,
            state: CachedState::new(db, 1 << 20),
            sources: 1,
            inputs: vec![Some(0)],
            events: events.clone(),
            policy: OnBadInput::Fail,
            metrics: Arc::new(Metrics::default()),
            release: None,
            requested: control.watch_requested(),
            start_epoch: 0,
            // Full after the first batch.
            epoch_budget: 1,
        };
        control.request(1);
        for msg in [batch(0..10), batch(10..20), Msg::Barrier(1)] {
            tx.send(msg).await.expect("the worker is running");
        }
        let _worker = spawn_worker(worker, events);
        let acked = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match acks.recv().await {
                    Some(Event::WorkerAck { epoch, writes, .. }) => break (epoch, writes.len()),
                    Some(Event::EpochFull(_)) => {}
                    Some(Event::Failed(e)) => panic!("the worker failed: {e}"),
                    Some(_) | None => panic!("the worker stopped"),
                }
            }
        })
        .await
        .expect("the worker acknowledged the first barrier");
        assert_eq!(acked, (1, 20));
    }
}
