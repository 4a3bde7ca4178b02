//! What the instance is doing now, as `/ready`, `/api/status` and the
//! status page tell it: one value per process, set where a run's phase
//! changes, where a task passes a barrier and where an epoch ends. Each
//! update is a short lock once per epoch (or per incident), never per record.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{LazyLock, Mutex, MutexGuard};

use serde::Serialize;
use weir_core::source::Lag;

use super::metrics::{TaskState, METRICS};
use crate::store::now_ms;

/// How many checkpoints the history keeps (the page charts them).
const CHECKPOINTS_KEPT: usize = 120;
/// How many rebalances and incidents the status keeps.
const EVENTS_KEPT: usize = 20;

/// A run's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Phase {
    /// Building the pipeline, joining the group, checking its inputs.
    Starting,
    /// Recovering: fencing, rolling the state forward, restoring shards.
    Restoring,
    /// Every held task is running.
    Running,
    /// Between two runs: a retry's pause, or the group moving tasks.
    Suspended,
    /// Ending with the last commit.
    Stopping,
}

/// A source task (an input partition, file or shard) as of its last barrier.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TaskView {
    /// The task's name.
    pub(crate) task: String,
    /// `running`, or `finished` once its bounded input is read.
    pub(crate) state: &'static str,
    /// Its position in its input: an offset, or a byte of a file.
    pub(crate) position: u64,
    /// The input's end, where known: the partition's last stable offset,
    /// or the file's length.
    pub(crate) end: Option<u64>,
    /// `end - position`.
    pub(crate) lag: Option<u64>,
    /// What `position`, `end` and `lag` count: `records` or `bytes`.
    pub(crate) unit: &'static str,
    /// Records read by this process.
    pub(crate) records: u64,
    /// When it last passed a barrier (ms since the Unix epoch).
    pub(crate) time_ms: i64,
}

/// One epoch's end.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CheckpointView {
    /// The epoch.
    pub(crate) epoch: u64,
    /// When it ended (ms since the Unix epoch).
    pub(crate) time_ms: i64,
    /// `committed` or `aborted`.
    pub(crate) result: &'static str,
    /// From every task's acknowledgement to the checkpoint being durable.
    pub(crate) duration_ms: f64,
    /// From the barrier's request to every task's acknowledgement.
    pub(crate) alignment_ms: f64,
    /// Bytes of state (keys and values) the checkpoint wrote.
    pub(crate) state_bytes: u64,
    /// Records read in the epoch.
    pub(crate) records: u64,
    /// Why it aborted.
    pub(crate) error: Option<String>,
}

/// A time the group moved tasks to or from this instance.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RebalanceView {
    /// When (ms since the Unix epoch).
    pub(crate) time_ms: i64,
    /// The tasks the instance held after it.
    pub(crate) held: usize,
}

/// The consumer group the instance is a member of, as of its last
/// rebalance.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GroupView {
    /// The group's id.
    pub(crate) id: String,
    /// The generation this instance is in (the group counts one more at
    /// every rebalance).
    pub(crate) generation: Option<i32>,
    /// When this was read (ms since the Unix epoch).
    pub(crate) time_ms: i64,
    /// The group's members, as the broker describes it.
    pub(crate) members: Vec<MemberView>,
    /// Why the members are not listed, when the broker could not say.
    pub(crate) error: Option<String>,
}

/// A member of the group.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MemberView {
    /// The weir instance it is, when it is one.
    pub(crate) instance: Option<String>,
    /// Where it serves HTTP, when it says.
    pub(crate) address: Option<String>,
    /// The host it connects from.
    pub(crate) host: String,
    /// The tasks (input partitions) it holds.
    pub(crate) tasks: Vec<String>,
    /// Whether it is this instance.
    pub(crate) this: bool,
}

/// An error the run met, or an input record it skipped.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Incident {
    /// When (ms since the Unix epoch).
    pub(crate) time_ms: i64,
    /// `error`, or the reason of a skipped record (`undecodable`,
    /// `dead-letter`, `processor-error`).
    pub(crate) kind: &'static str,
    /// What happened.
    pub(crate) message: String,
}

/// A restore from the changelog under way.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Restore {
    /// Changelog records applied.
    pub(crate) done: u64,
    /// Records to apply in all (an upper bound: offsets, which compaction
    /// and transaction markers leave gaps in).
    pub(crate) total: u64,
}

/// The process's totals, read from the metrics when asked.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Totals {
    /// Records read from the sources.
    pub(crate) records_in: u64,
    /// Records written to the sinks and flushed.
    pub(crate) records_out: u64,
    /// Input records skipped by the `on_bad_input` policy.
    pub(crate) skipped: u64,
    /// Records sent to the dead-letter sink.
    pub(crate) dead_letters: u64,
    /// Checkpoints committed.
    pub(crate) committed: u64,
    /// Epochs aborted.
    pub(crate) aborted: u64,
    /// The last committed epoch.
    pub(crate) last_epoch: i64,
    /// Times the group moved tasks.
    pub(crate) rebalances: u64,
    /// Commits refused as fenced.
    pub(crate) fenced: u64,
}

/// The instance as the status API shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Snapshot {
    /// The pipeline's name.
    pub(crate) pipeline: String,
    /// Its operators from source to sinks (named sinks last).
    pub(crate) topology: Vec<String>,
    /// The instance id its state directory keeps, once known.
    pub(crate) instance: Option<String>,
    /// When the process started (ms since the Unix epoch).
    pub(crate) started_ms: i64,
    /// Now (ms since the Unix epoch), for rates between two looks.
    pub(crate) now_ms: i64,
    /// What the instance is doing.
    pub(crate) phase: Phase,
    /// The tasks (input partitions and shards) the current run holds.
    pub(crate) tasks: usize,
    /// The consumer group, for a source that has one.
    pub(crate) group: Option<GroupView>,
    /// The source tasks, as of their last barrier.
    pub(crate) task_list: Vec<TaskView>,
    /// A restore under way.
    pub(crate) restore: Option<Restore>,
    /// The last checkpoints, oldest first.
    pub(crate) checkpoints: VecDeque<CheckpointView>,
    /// The last rebalances, oldest first.
    pub(crate) rebalances: VecDeque<RebalanceView>,
    /// The last errors and skipped records, oldest first.
    pub(crate) incidents: VecDeque<Incident>,
    /// The process's totals.
    pub(crate) totals: Totals,
}

/// What is kept between looks.
struct Status {
    snapshot: Snapshot,
    tasks: BTreeMap<String, TaskView>,
}

/// The process's status.
static STATUS: LazyLock<Mutex<Status>> = LazyLock::new(|| {
    Mutex::new(Status {
        snapshot: Snapshot {
            pipeline: String::new(),
            topology: Vec::new(),
            instance: None,
            started_ms: now_ms(),
            now_ms: 0,
            phase: Phase::Starting,
            tasks: 0,
            group: None,
            task_list: Vec::new(),
            restore: None,
            checkpoints: VecDeque::new(),
            rebalances: VecDeque::new(),
            incidents: VecDeque::new(),
            totals: Totals::default(),
        },
        tasks: BTreeMap::new(),
    })
});

fn status() -> MutexGuard<'static, Status> {
    STATUS.lock().unwrap_or_else(|p| p.into_inner())
}

fn push_bounded<T>(list: &mut VecDeque<T>, item: T, kept: usize) {
    if list.len() == kept {
        list.pop_front();
    }
    list.push_back(item);
}

/// Names the pipeline, its operators and the instance.
pub(crate) fn identify(pipeline: &str, topology: &str, instance: &str) {
    let s = &mut status().snapshot;
    pipeline.clone_into(&mut s.pipeline);
    s.topology = topology.split(" -> ").map(str::to_owned).collect();
    s.instance = Some(instance.to_owned());
}

/// Enters `phase` with `tasks` tasks held (`None`: as many as before).
pub(crate) fn enter(phase: Phase, tasks: Option<usize>) {
    let mut st = status();
    let s = &mut st.snapshot;
    s.phase = phase;
    if let Some(n) = tasks {
        s.tasks = n;
    }
    if phase != Phase::Restoring {
        s.restore = None;
    }
    let state = match phase {
        Phase::Restoring => TaskState::Restoring,
        Phase::Running | Phase::Stopping => TaskState::Running,
        Phase::Starting | Phase::Suspended => TaskState::Suspended,
    };
    METRICS.tasks_all(state, s.tasks);
}

/// Task `task` passed a barrier at `position`, `lag` behind its input's
/// end, having read `records`.
pub(crate) fn task_passed(
    task: &str,
    position: u64,
    lag: Option<&Lag>,
    records: u64,
    finished: bool,
) {
    let (behind, unit) = match lag {
        Some(Lag::Records { behind, .. }) => (Some(*behind), "records"),
        Some(Lag::Bytes { behind, .. }) => (Some(*behind), "bytes"),
        None => (None, ""),
    };
    let view = TaskView {
        task: task.to_owned(),
        state: if finished { "finished" } else { "running" },
        position,
        end: behind.map(|b| position.saturating_add(b)),
        lag: behind,
        unit,
        records,
        time_ms: now_ms(),
    };
    status().tasks.insert(task.to_owned(), view);
}

/// Task `task` left this instance (stopped, or moved to another).
pub(crate) fn task_left(task: &str) {
    status().tasks.remove(task);
}

/// An epoch ended.
pub(crate) fn checkpoint(view: CheckpointView) {
    push_bounded(&mut status().snapshot.checkpoints, view, CHECKPOINTS_KEPT);
}

/// The group moved tasks; the instance holds `held` now.
pub(crate) fn rebalanced(held: usize) {
    let view = RebalanceView {
        time_ms: now_ms(),
        held,
    };
    push_bounded(&mut status().snapshot.rebalances, view, EVENTS_KEPT);
}

/// The group is as `view` says, as of a rebalance (a view asked for
/// earlier than the one shown is dropped).
pub(crate) fn group(view: GroupView) {
    let shown = &mut status().snapshot.group;
    if shown.as_ref().is_none_or(|g| g.time_ms <= view.time_ms) {
        *shown = Some(view);
    }
}

/// The run met an error (`kind` `error`) or skipped a record (`kind` its reason).
pub(crate) fn incident(kind: &'static str, message: String) {
    let view = Incident {
        time_ms: now_ms(),
        kind,
        message,
    };
    push_bounded(&mut status().snapshot.incidents, view, EVENTS_KEPT);
}

/// A restore has applied `done` of `total` changelog records.
pub(crate) fn restoring(done: u64, total: u64) {
    status().snapshot.restore = Some(Restore { done, total });
}

/// How far the source tasks are through their inputs: the sums of their
/// positions and of their inputs' ends, over the tasks whose end is known.
pub(crate) fn input_progress() -> (u64, u64) {
    status()
        .tasks
        .values()
        .filter_map(|t| t.end.map(|end| (t.position, end)))
        .fold((0, 0), |(d, t), (p, e)| {
            (d.saturating_add(p), t.saturating_add(e))
        })
}

/// The phase now.
pub(crate) fn snapshot_phase() -> Phase {
    status().snapshot.phase
}

/// The status now.
pub(crate) fn snapshot() -> Snapshot {
    let st = status();
    let mut s = st.snapshot.clone();
    s.task_list = st.tasks.values().cloned().collect();
    drop(st);
    s.now_ms = now_ms();
    s.totals = METRICS.totals();
    s
}
