//! The process's metrics, in Prometheus' naming (`weir_*`, `_total` for
//! counters, base units). One registry per process, as an instance is one
//! process: counters are atomics, bumped once per batch or per epoch and
//! read only when scraped, so they cost the record path nothing it would
//! notice, whether the server is on or not.

use std::sync::LazyLock;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use weir_core::source::Lag;

use super::status::Totals;

/// Buckets of the checkpoint and alignment histograms, in seconds: from a
/// fast local commit (about a millisecond) to a slow transaction.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The reasons of `weir_records_skipped_total`: an input record that
/// cannot be decoded (skipped, or sent to the dead-letter sink), and one
/// its processor failed on.
pub(crate) const SKIP_REASONS: [&str; 3] = ["undecodable", "dead-letter", "processor-error"];

/// What a task is doing, for `weir_tasks{state}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskState {
    /// Reading and processing.
    Running,
    /// Its state is being restored before it runs.
    Restoring,
    /// Held, but not running (between two runs of the instance).
    Suspended,
}

impl TaskState {
    const ALL: [TaskState; 3] = [
        TaskState::Running,
        TaskState::Restoring,
        TaskState::Suspended,
    ];

    fn label(self) -> &'static str {
        match self {
            TaskState::Running => "running",
            TaskState::Restoring => "restoring",
            TaskState::Suspended => "suspended",
        }
    }
}

/// The outcome of an epoch, for `weir_checkpoints_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckpointResult {
    /// Committed: its output and positions are durable.
    Committed,
    /// Aborted: nothing of it was committed; it is redone.
    Aborted,
}

/// Every metric of the process.
pub(crate) struct Metrics {
    registry: Registry,
    /// `weir_source_records_total{task}`.
    pub(crate) source_records: IntCounterVec,
    /// `weir_sink_records_total{sink}`.
    pub(crate) sink_records: IntCounterVec,
    /// `weir_records_skipped_total{reason}`.
    pub(crate) skipped: IntCounterVec,
    /// `weir_dead_letters_total`.
    pub(crate) dead_letters: IntCounter,
    /// `weir_late_records_total`: records that came after their window
    /// closed, dropped for want of a late output.
    pub(crate) late_records: IntCounter,
    checkpoints: IntCounterVec,
    /// `weir_checkpoint_duration_seconds`: from every task's acknowledgement
    /// to the checkpoint being durable.
    pub(crate) checkpoint_seconds: Histogram,
    /// `weir_last_checkpoint_epoch`.
    pub(crate) last_epoch: IntGauge,
    /// `weir_barrier_alignment_seconds`: from the barrier's request to every
    /// task's acknowledgement.
    pub(crate) alignment_seconds: Histogram,
    tasks: IntGaugeVec,
    consumer_lag: IntGaugeVec,
    input_lag_bytes: IntGaugeVec,
    /// `weir_rebalances_total`: times the group moved tasks to or from
    /// this instance.
    pub(crate) rebalances: IntCounter,
    /// `weir_producer_fenced_total`: commits refused because another
    /// process took this instance's tasks or identity.
    pub(crate) fenced: IntCounter,
    /// `weir_restore_remaining_records`: changelog records a restore under
    /// way has still to apply (at most).
    pub(crate) restore_remaining: IntGauge,
    /// `weir_restore_records_total`: changelog records restores applied.
    pub(crate) restore_records: IntCounter,
    /// `weir_state_cache_bytes`: bytes the workers' state caches hold.
    pub(crate) state_cache_bytes: IntGauge,
    /// `weir_watermark_lag_seconds`, registered once a run uses event time.
    watermark_lag: std::sync::OnceLock<Gauge>,
}

/// One worker's part of `weir_state_cache_bytes`, taken back when dropped.
#[derive(Debug, Default)]
pub(crate) struct CacheShare(i64);

impl CacheShare {
    /// The worker's cache holds `bytes` now.
    pub(crate) fn set(&mut self, bytes: usize) {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        METRICS.state_cache_bytes.add(bytes - self.0);
        self.0 = bytes;
    }
}

impl Drop for CacheShare {
    fn drop(&mut self) {
        METRICS.state_cache_bytes.sub(self.0);
    }
}

/// The process's metrics.
pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Registers metric `metric`, as built from constant names and labels:
/// either cannot fail but by a bug, which any test that scrapes finds.
fn registered<M>(registry: &Registry, metric: prometheus::Result<M>) -> M
where
    M: Collector + Clone + 'static,
{
    let metric = metric.expect("a valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("registered once");
        let counters = |name: &str, help: &str, labels: &[&str]| {
            registered(&r, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let gauges = |name: &str, help: &str, labels: &[&str]| {
            registered(&r, IntGaugeVec::new(Opts::new(name, help), labels))
        };
        let seconds = |name: &str, help: &str| {
            let opts = HistogramOpts::new(name, help).buckets(SECONDS_BUCKETS.to_vec());
            registered(&r, Histogram::with_opts(opts))
        };
        let m = Metrics {
            source_records: counters(
                "weir_source_records_total",
                "Records read from each source task (input partition, file or shard).",
                &["task"],
            ),
            sink_records: counters(
                "weir_sink_records_total",
                "Records written to each sink output and flushed at an epoch's barrier (an aborted epoch's records count again when it is redone).",
                &["sink"],
            ),
            skipped: counters(
                "weir_records_skipped_total",
                "Records skipped by the on_bad_input policy, by reason.",
                &["reason"],
            ),
            dead_letters: registered(
                &r,
                IntCounter::new(
                    "weir_dead_letters_total",
                    "Undecodable input records sent to the dead-letter sink.",
                ),
            ),
            late_records: registered(
                &r,
                IntCounter::new(
                    "weir_late_records_total",
                    "Records that came after their window (or session) closed, past its grace, and were dropped because the window has no late output.",
                ),
            ),
            checkpoints: counters(
                "weir_checkpoints_total",
                "Checkpoints by result: committed, or aborted (a run ended with its epoch open, which the next run redoes from the last commit).",
                &["result"],
            ),
            checkpoint_seconds: seconds(
                "weir_checkpoint_duration_seconds",
                "From every task's acknowledgement of an epoch's barrier to its checkpoint being durable.",
            ),
            last_epoch: registered(
                &r,
                IntGauge::new(
                    "weir_last_checkpoint_epoch",
                    "The epoch of the last committed checkpoint.",
                ),
            ),
            alignment_seconds: seconds(
                "weir_barrier_alignment_seconds",
                "From an epoch's barrier request to every task's acknowledgement.",
            ),
            tasks: gauges(
                "weir_tasks",
                "Tasks (input partitions and shards) this instance holds, by state.",
                &["state"],
            ),
            consumer_lag: gauges(
                "weir_consumer_lag_records",
                "Records between a task's position and its partition's last stable offset, at the last epoch.",
                &["topic", "partition"],
            ),
            input_lag_bytes: gauges(
                "weir_input_lag_bytes",
                "Bytes between a file task's position and the file's length, at the last epoch.",
                &["file"],
            ),
            rebalances: registered(
                &r,
                IntCounter::new(
                    "weir_rebalances_total",
                    "Times the consumer group moved tasks to or from this instance.",
                ),
            ),
            fenced: registered(
                &r,
                IntCounter::new(
                    "weir_producer_fenced_total",
                    "Commits refused because another process took this instance's tasks or identity.",
                ),
            ),
            restore_remaining: registered(
                &r,
                IntGauge::new(
                    "weir_restore_remaining_records",
                    "Changelog records the restore under way has still to apply (at most: compaction leaves gaps in the offsets it counts).",
                ),
            ),
            restore_records: registered(
                &r,
                IntCounter::new(
                    "weir_restore_records_total",
                    "Changelog records applied to the local state by restores.",
                ),
            ),
            state_cache_bytes: registered(
                &r,
                IntGauge::new(
                    "weir_state_cache_bytes",
                    "Bytes the workers' state caches hold (entries and their bookkeeping), as of the last epoch.",
                ),
            ),
            watermark_lag: std::sync::OnceLock::new(),
            // A handle on the same registry.
            registry: r.clone(),
        };
        // Every series shows from the first scrape, at 0.
        for r in [CheckpointResult::Committed, CheckpointResult::Aborted] {
            m.checkpoint(r, 0);
        }
        for s in TaskState::ALL {
            m.tasks.with_label_values(&[s.label()]).set(0);
        }
        for reason in SKIP_REASONS {
            m.skipped.with_label_values(&[reason]).inc_by(0);
        }
        m
    }

    /// Counts `n` epochs ended with `result`.
    pub(crate) fn checkpoint(&self, result: CheckpointResult, n: u64) {
        let label = match result {
            CheckpointResult::Committed => "committed",
            CheckpointResult::Aborted => "aborted",
        };
        self.checkpoints.with_label_values(&[label]).inc_by(n);
    }

    /// Sets how many tasks are in each state: `n` in `state`, none in the others.
    pub(crate) fn tasks_all(&self, state: TaskState, n: usize) {
        for s in TaskState::ALL {
            let v = if s == state { n } else { 0 };
            self.tasks
                .with_label_values(&[s.label()])
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        }
    }

    /// Sets a task's lag.
    pub(crate) fn lag(&self, lag: &Lag) {
        let value = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        match lag {
            Lag::Records {
                topic,
                partition,
                behind,
            } => self
                .consumer_lag
                .with_label_values(&[topic.as_str(), &partition.to_string()])
                .set(value(*behind)),
            Lag::Bytes { file, behind } => self
                .input_lag_bytes
                .with_label_values(&[file.as_str()])
                .set(value(*behind)),
        }
    }

    /// Drops a task's lag, when the task leaves this instance.
    pub(crate) fn forget_lag(&self, lag: &Lag) {
        let _ = match lag {
            Lag::Records {
                topic, partition, ..
            } => self
                .consumer_lag
                .remove_label_values(&[topic.as_str(), &partition.to_string()]),
            Lag::Bytes { file, .. } => self.input_lag_bytes.remove_label_values(&[file.as_str()]),
        };
    }

    /// How far the event-time watermark is behind the wall clock, in
    /// seconds: shown from the first run that uses event time on.
    pub(crate) fn watermark_lag(&self, seconds: f64) {
        self.watermark_lag
            .get_or_init(|| {
                registered(
                    &self.registry,
                    Gauge::new(
                        "weir_watermark_lag_seconds",
                        "How far the event-time watermark is behind the wall clock, as of the last epoch (a worker's view).",
                    ),
                )
            })
            .set(seconds);
    }

    /// The totals the status shows.
    pub(crate) fn totals(&self) -> Totals {
        let sum = |v: &IntCounterVec| -> u64 {
            v.collect()
                .iter()
                .flat_map(|f| f.get_metric())
                .map(|m| m.get_counter().get_value() as u64)
                .sum()
        };
        let checkpoints = |label: &str| self.checkpoints.with_label_values(&[label]).get();
        Totals {
            records_in: sum(&self.source_records),
            records_out: sum(&self.sink_records),
            skipped: sum(&self.skipped),
            dead_letters: self.dead_letters.get(),
            committed: checkpoints("committed"),
            aborted: checkpoints("aborted"),
            last_epoch: self.last_epoch.get(),
            rebalances: self.rebalances.get(),
            fenced: self.fenced.get(),
        }
    }

    /// The text a scrape of `/metrics` answers.
    pub(crate) fn render(&self) -> Result<String, prometheus::Error> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}
