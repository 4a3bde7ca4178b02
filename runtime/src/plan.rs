//! What the pipeline builder produces: a [`Job`] (its source side, its
//! exchange and what runs after it, with types erased) and what the runtime
//! needs of its sinks. The builder (`pipeline.rs`) writes plans; the
//! instance (`instance/`) runs them.

use std::collections::BTreeSet;
use std::sync::Arc;

use weir_core::commit::CommitPoint;
use weir_core::group::Member;
use weir_core::source::DeadLetter;
use weir_core::{Error, Record, Result, Settings};

use crate::checkpoint::RunSummary;
use crate::config::RuntimeConfig;
use crate::manifest::Manifest;
use crate::stage::{
    BoxFuture, NamedSinks, SinkStage, SourceAdmin, SourceSide, StageFactory, StageInit,
};
use crate::store::Store;
use crate::task::layer::Layer;

/// Opens a source task's dead-letter output.
pub(crate) type DeadLetterOpener =
    Arc<dyn Fn(&StageInit<'_>) -> Result<SinkStage<DeadLetter>> + Send + Sync>;

/// Discards the uncommitted tail of a sink output that no task of the run
/// opens: `(id, committed)` (see [`Sink::discard_uncommitted`](weir_core::sink::Sink::discard_uncommitted)).
pub(crate) type Discard = Arc<dyn Fn(&str, u64) -> Result<()> + Send + Sync>;

/// Checks that a sink's output can be written (see [`Sink::check`](weir_core::sink::Sink::check)).
pub(crate) type Check = Arc<dyn Fn() -> Result<()> + Send + Sync>;

/// A sink as recovery and a first run see it.
#[derive(Clone)]
pub(crate) struct SinkOps {
    /// Its outputs' manifest ids start with this (`late:`); empty for the main sink.
    pub(crate) prefix: String,
    pub(crate) discard: Discard,
    pub(crate) check: Check,
}

/// A pipeline ready to run.
pub(crate) struct Built {
    pub(crate) job: Box<dyn Job>,
    pub(crate) named: NamedSinks,
    /// The transactional commit point of the sinks (Kafka mode), if any.
    pub(crate) commit: Option<Arc<dyn CommitPoint>>,
    pub(crate) dead_letter: Option<DeadLetterOpener>,
    /// Every sink, for recovery and a first run's checks.
    pub(crate) sinks: Vec<SinkOps>,
}

/// Everything a job runs with: its plan's sinks, the opened state and the
/// manifest it recovers from.
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
    /// The whole configuration, as processors read it when they open.
    pub(crate) settings: Arc<dyn Settings>,
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
    /// This instance's persistent id (see `instance::identity`).
    pub(crate) instance: String,
    /// Its membership of the group that shares the source's tasks, if the
    /// source has one: every commit asks it first.
    pub(crate) member: Option<Member>,
    /// What this run works on.
    pub(crate) holdings: Holdings,
    /// The run ends once its input is read: it shows its progress.
    pub(crate) bounded: bool,
}

/// What one run of an instance works on: the source tasks and the shards
/// of keyed state the group gave it (ARCHITECTURE §7).
#[derive(Debug, Clone, Default)]
pub(crate) struct Holdings {
    /// The source tasks it reads; every task when `None` (no group, or an
    /// instance that runs the application alone).
    pub(crate) tasks: Option<BTreeSet<String>>,
    /// The shards of keyed state, when instances share them.
    pub(crate) shards: Option<Shards>,
}

impl Holdings {
    /// Those of `held` (the group's names for them): source tasks, and
    /// shards of `shards` as its repartition topic names them.
    pub(crate) fn of(held: Vec<String>, shards: Option<&Shards>) -> Self {
        let mut tasks = BTreeSet::new();
        let mut shards = shards.cloned();
        for task in held {
            match shards
                .as_mut()
                .and_then(|s| s.shard_of(&task).map(|n| (s, n)))
            {
                Some((s, n)) => {
                    s.held.insert(n);
                }
                None => {
                    tasks.insert(task);
                }
            }
        }
        Holdings {
            tasks: Some(tasks),
            shards,
        }
    }

    /// Nothing to work on: no task and no shard.
    pub(crate) fn is_empty(&self) -> bool {
        self.tasks.as_ref().is_some_and(BTreeSet::is_empty)
            && self.shards.as_ref().is_none_or(|s| s.held.is_empty())
    }

    /// Of the source's `tasks`, those this run reads.
    pub(crate) fn filter(&self, tasks: Vec<String>) -> Vec<String> {
        match &self.tasks {
            Some(held) => tasks.into_iter().filter(|t| held.contains(t)).collect(),
            None => tasks,
        }
    }

    /// Whether this run holds key group `group`'s state.
    pub(crate) fn holds_group(&self, group: u16) -> bool {
        self.shards.as_ref().is_none_or(|s| s.holds_group(group))
    }
}

/// How the keyed state is split among an application's instances: key
/// group `g` is in shard `g % count`, one partition of the changelog and
/// of the repartition topic, which one instance holds at a time.
#[derive(Debug, Clone)]
pub(crate) struct Shards {
    /// The repartition topic, which carries records to a shard's holder.
    pub(crate) topic: String,
    /// How many shards there are: the changelog's partitions.
    pub(crate) count: u16,
    /// The shards this run holds.
    pub(crate) held: BTreeSet<u16>,
}

impl Shards {
    /// The shard of key group `group`.
    pub(crate) fn of_group(&self, group: u16) -> u16 {
        group % self.count.max(1)
    }

    /// Whether this run holds key group `group`'s shard.
    pub(crate) fn holds_group(&self, group: u16) -> bool {
        self.held.contains(&self.of_group(group))
    }

    /// The task that reads shard `shard`.
    pub(crate) fn task(&self, shard: u16) -> String {
        format!("{}-{shard}", self.topic)
    }

    /// The shard task `task` reads, if it is one.
    pub(crate) fn shard_of(&self, task: &str) -> Option<u16> {
        task.strip_prefix(&self.topic)?
            .strip_prefix('-')?
            .parse()
            .ok()
            .filter(|n| *n < self.count)
    }
}

/// A pipeline with its types erased, ready to run (see `instance::launch`).
pub(crate) trait Job: Send {
    /// One run, over what `env.holdings` names; a job runs again after a
    /// rebalance.
    fn run(&self, env: JobEnv) -> BoxFuture<'static, Result<RunSummary>>;
    /// Whether records meet keyed state (through an exchange).
    fn keyed(&self) -> bool;
    /// The pipeline's source, for the offsets commands.
    fn source(&self) -> Arc<dyn SourceAdmin>;
    /// The source's tasks; an error when there are none.
    fn tasks(&self) -> Result<Vec<String>> {
        tasks_of(&*self.source())
    }
}

/// The tasks of `source`; an error when there are none.
pub(crate) fn tasks_of(source: &dyn SourceAdmin) -> Result<Vec<String>> {
    let tasks = source.tasks()?;
    if tasks.is_empty() {
        return Err(Error::Config(
            "the source has nothing to read (no input partitions or files); check the input".into(),
        ));
    }
    Ok(tasks)
}

/// Splits a value into the key it is routed by and the value sent on.
pub(crate) type Split<T, K, V> = Arc<dyn Fn(T) -> (K, V) + Send + Sync>;

/// The keyed job: sources -> exchange -> workers (processors, sinks),
/// and after each `key_by` that follows a processor, another exchange and
/// layer of workers.
pub(crate) struct KeyedJob<K, T, V> {
    pub(crate) side: Arc<dyn SourceSide<T>>,
    pub(crate) split: Split<T, K, V>,
    pub(crate) tail: StageFactory<K, V>,
    /// The layers after the first, in order.
    pub(crate) layers: Vec<Arc<dyn Layer>>,
}

/// Opens a task's sink output.
pub(crate) type SinkOpener<T> =
    Arc<dyn Fn(&StageInit<'_>) -> Result<SinkStage<Record<(), T>>> + Send + Sync>;

/// The unkeyed job: each source task writes to its own sink output.
pub(crate) struct DirectJob<T> {
    pub(crate) side: Arc<dyn SourceSide<T>>,
    pub(crate) open_sink: SinkOpener<T>,
}
