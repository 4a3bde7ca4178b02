//! A source task: one thread that reads one input partition into the
//! exchange and stops at each requested barrier (ARCHITECTURE §4).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use weir_core::source::{DeadLetter, Lag, ReadStatus};
use weir_core::{Error, Record, Result};

use super::{coordinator_gone, panic_message, Event, Events};
use crate::checkpoint::Control;
use crate::config::{Guarantee, OnBadInput};
use crate::exchange::{Backlog, Exchange};
use crate::observe::{status, METRICS};
use crate::stage::{ChainedReader, Metrics, SinkStage};
use crate::store::Store;

/// One source task's settings.
pub(crate) struct SourceTask<T> {
    pub(crate) task: String,
    pub(crate) reader: Box<dyn ChainedReader<T>>,
    pub(crate) output: Box<dyn Exchange<T>>,
    pub(crate) finished: bool,
    pub(crate) watermark_delay: Option<i64>,
    pub(crate) dead_letter: Option<SinkStage<DeadLetter>>,
    /// Records of the shards' backlog come first: the task reads nothing
    /// before it is read (see [`Backlog`]).
    pub(crate) after: Option<Arc<Backlog>>,
}

/// What every source task of a run shares.
pub(crate) struct Shared {
    pub(crate) control: Arc<Control>,
    pub(crate) events: Events,
    pub(crate) store: Arc<Store>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) batch: usize,
    pub(crate) policy: OnBadInput,
    pub(crate) guarantee: Guarantee,
    pub(crate) start_epoch: u64,
    /// Local mode: tell readers about committed positions (e.g. to copy
    /// them to a consumer group). Kafka mode commits them in the transaction.
    pub(crate) advisory: bool,
    /// A task without records for this long stops holding the event-time
    /// watermark back (`watermark.idle_ms`); `None`: never.
    pub(crate) idle_after: Option<Duration>,
}

/// Starts source task `t` on a thread of its own; its failure, or a panic,
/// reaches the coordinator as [`Event::Failed`].
pub(crate) fn spawn_source<T: Send + 'static>(
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

/// Whether `reader` has read what its input holds, as far as it can tell:
/// a partition quiet only because its reader is stuck (a backlog it does
/// not get, a broker that does not answer) must not stop holding the
/// watermark back, or its backlog would come late.
fn caught_up<T>(reader: &dyn ChainedReader<T>) -> bool {
    match reader.lag() {
        Some(Lag::Records { behind, .. } | Lag::Bytes { behind, .. }) => behind == 0,
        None => true,
    }
}

/// How long a task reads nothing, with its input's known end reached,
/// before it tells the workers (see [`at_end_until`]).
const AT_END_AFTER: Duration = Duration::from_millis(200);

/// How old the end a reader knows may be: Kafka's statistics report a
/// partition's last stable offset every second.
const END_STALENESS_MS: i64 = 2_000;

/// The event time up to which a task read to its input's known end has
/// every record: a record still to come was produced after the end was
/// last seen (`END_STALENESS_MS` ago at most), and if stamped when it was
/// produced (Kafka's `CreateTime`), within `delay` of it, its time is
/// later. Orders joined with a table read to its end need not wait for
/// `watermark.idle_ms` then; a table stamped with older times than its
/// records' production holds its orders back to the watermark, as before.
fn at_end_until(now_ms: i64, delay: i64) -> i64 {
    now_ms
        .saturating_sub(END_STALENESS_MS)
        .saturating_sub(delay)
        .saturating_sub(1)
}

/// Whether `reader` knows it has read what its input holds (unlike
/// [`caught_up`], an unknown lag is not).
fn at_end<T>(reader: &dyn ChainedReader<T>) -> bool {
    matches!(
        reader.lag(),
        Some(Lag::Records { behind: 0, .. } | Lag::Bytes { behind: 0, .. })
    )
}

/// Runs a source task; its lag leaves the metrics when it ends (the task
/// stops, or moves to another instance).
fn source_loop<T: Send + 'static>(t: &mut SourceTask<T>, s: &Shared) -> Result<()> {
    let mut last_lag = None;
    let result = read_loop(t, s, &mut last_lag);
    if let Some(lag) = &last_lag {
        METRICS.forget_lag(lag);
    }
    status::task_left(&t.task);
    result
}

fn read_loop<T: Send + 'static>(
    t: &mut SourceTask<T>,
    s: &Shared,
    last_lag: &mut Option<Lag>,
) -> Result<()> {
    let records = METRICS.source_records.with_label_values(&[&t.task]);
    let mut last = s.start_epoch;
    let mut buf: Vec<Record<(), T>> = Vec::with_capacity(s.batch);
    let mut max_ts = i64::MIN;
    let mut sent_watermark = i64::MIN;
    // When the task last read a record, and whether it told the workers
    // it is idle since (see `watermark.idle_ms`).
    let mut last_record = std::time::Instant::now();
    let mut idle_told = false;
    // Whether it told them it read its input to the end (see `at_end`).
    let mut end_told = false;
    let mut unpublished: Option<(u64, u64)> = None;
    loop {
        let requested = s.control.requested();
        if requested > last {
            // The previous epoch committed before this barrier was asked for.
            publish(t, s, &mut unpublished)?;
            let mut flushes = t.output.barrier(requested)?;
            t.reader.delivered();
            if let Some(dl) = &mut t.dead_letter {
                flushes.push(dl.flushed()?);
            }
            let position = t.reader.position();
            // Once per epoch: cheap, and as fresh as a scrape needs.
            let lag = t.reader.lag();
            if let Some(lag) = &lag {
                METRICS.lag(lag);
            }
            status::task_passed(&t.task, position, lag.as_ref(), records.get(), t.finished);
            if lag.is_some() {
                *last_lag = lag;
            }
            s.events
                .send(Event::SourceAck {
                    task: t.task.clone(),
                    position,
                    identity: t.reader.identity(),
                    finished: t.finished,
                    flushes,
                })
                .map_err(|_| coordinator_gone())?;
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
        if t.after.as_ref().is_some_and(|b| !b.is_read()) {
            // Waiting, it is neither idle nor at its end.
            last_record = std::time::Instant::now();
            s.control.idle(last, Duration::from_millis(10));
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
                s.metrics
                    .skip("undecodable", "an undecodable input record", &e);
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
                    dl.write(&letter)?;
                    METRICS.dead_letters.inc();
                }
                s.metrics.skip(
                    "dead-letter",
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
        let read = t.reader.take_read_count();
        s.metrics.records_read.fetch_add(read, Ordering::Relaxed);
        records.inc_by(read);
        if read > 0 {
            last_record = std::time::Instant::now();
        }
        if !buf.is_empty() {
            // Commit the position before processing: a crash loses these records.
            let identity = t.reader.identity();
            s.store
                .save_read_position(&t.task, t.reader.position(), identity.as_deref())?;
            for r in buf.drain(..) {
                if let Some(ts) = r.timestamp {
                    max_ts = max_ts.max(ts);
                }
                t.output.push(r)?;
            }
        }
        // After the records read before it.
        if let Some(mark) = t.reader.take_mark() {
            t.output.reached(mark)?;
        }
        if let Some(delay) = t.watermark_delay {
            // Watermark W promises no more events at or before W.
            let wm = max_ts.saturating_sub(delay).saturating_sub(1);
            // An idle task that reads again is active again, whether or
            // not its watermark rose.
            if wm > sent_watermark || ((idle_told || end_told) && read > 0) {
                sent_watermark = sent_watermark.max(wm);
                (idle_told, end_told) = (false, false);
                t.output.watermark(sent_watermark)?;
            } else if !end_told
                && !idle_told
                && last_record.elapsed() >= AT_END_AFTER
                && at_end(&*t.reader)
            {
                end_told = true;
                t.output
                    .at_end(at_end_until(crate::store::now_ms(), delay))?;
            } else if !idle_told
                && s.idle_after
                    .is_some_and(|after| last_record.elapsed() >= after)
                && caught_up(&*t.reader)
            {
                idle_told = true;
                t.output.idle()?;
            }
        }
        match status {
            ReadStatus::More => {}
            ReadStatus::Idle => {
                t.output.flush_pending()?;
                t.reader.delivered();
                s.control.idle(last, Duration::from_millis(20));
            }
            ReadStatus::End => {
                t.finished = true;
                t.output.finish()?;
                t.reader.delivered();
                s.events
                    .send(Event::SourceFinished)
                    .map_err(|_| coordinator_gone())?;
            }
        }
    }
}
