//! What the instance is doing now, as `/ready` and `/api/status` tell it:
//! one value per process, set where a run's phase changes.

use std::sync::{LazyLock, Mutex, MutexGuard};

use serde::Serialize;

use super::metrics::{TaskState, METRICS};

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

/// The instance as the status API shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Snapshot {
    /// The pipeline's name.
    pub(crate) pipeline: String,
    /// The instance id its state directory keeps, once known.
    pub(crate) instance: Option<String>,
    /// What the instance is doing.
    pub(crate) phase: Phase,
    /// The tasks (input partitions and shards) the current run holds.
    pub(crate) tasks: usize,
}

/// The process's status.
pub(crate) static STATUS: LazyLock<Mutex<Snapshot>> = LazyLock::new(|| {
    Mutex::new(Snapshot {
        pipeline: String::new(),
        instance: None,
        phase: Phase::Starting,
        tasks: 0,
    })
});

fn status() -> MutexGuard<'static, Snapshot> {
    STATUS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Names the pipeline and the instance.
pub(crate) fn identify(pipeline: &str, instance: &str) {
    let mut s = status();
    pipeline.clone_into(&mut s.pipeline);
    s.instance = Some(instance.to_owned());
}

/// Enters `phase` with `tasks` tasks held (`None`: as many as before).
pub(crate) fn enter(phase: Phase, tasks: Option<usize>) {
    let mut s = status();
    s.phase = phase;
    if let Some(n) = tasks {
        s.tasks = n;
    }
    let state = match phase {
        Phase::Restoring => TaskState::Restoring,
        Phase::Running | Phase::Stopping => TaskState::Running,
        Phase::Starting | Phase::Suspended => TaskState::Suspended,
    };
    METRICS.tasks_all(state, s.tasks);
}

/// The status now.
pub(crate) fn snapshot() -> Snapshot {
    status().clone()
}
