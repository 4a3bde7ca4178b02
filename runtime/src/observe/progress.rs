//! Progress of long work: a bar on a terminal (records done, total, rate,
//! time left), log lines through `tracing` otherwise, and the metrics and
//! status of the work.

use std::cell::Cell;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{status, METRICS};

/// How often progress is logged where no bar is drawn.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Long work whose progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Work {
    /// Applying the changelog to the local state (Kafka mode's recovery).
    Restore,
}

impl Work {
    fn what(self) -> &'static str {
        match self {
            Work::Restore => "restoring state from the changelog",
        }
    }
}

/// The progress of one piece of long work, told as it goes. Used from one
/// thread; its methods take `&self` so that several callbacks can share it.
pub(crate) struct Progress {
    work: Work,
    bar: Option<ProgressBar>,
    total: Cell<u64>,
    done: Cell<u64>,
    logged: Cell<Instant>,
    started: Instant,
}

impl Progress {
    /// Starts showing `work`'s progress: a bar when stderr is a terminal.
    pub(crate) fn new(work: Work) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} {wide_bar} {human_pos}/{human_len} records, {per_sec}, {eta} left",
            ) {
                bar.set_style(style);
            }
            bar.set_message(work.what());
            bar
        });
        Progress {
            work,
            bar,
            total: Cell::new(0),
            done: Cell::new(0),
            logged: Cell::new(Instant::now()),
            started: Instant::now(),
        }
    }

    /// The work has `total` records to do (at most).
    pub(crate) fn sized(&self, total: u64) {
        self.total.set(total);
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
        self.show(0);
    }

    /// `done` records of the work are done.
    pub(crate) fn at(&self, done: u64) {
        self.show(done);
        if self.bar.is_none() && self.logged.get().elapsed() >= LOG_EVERY {
            self.logged.set(Instant::now());
            let secs = self.started.elapsed().as_secs_f64().max(1e-3);
            tracing::info!(
                records = done,
                total = self.total.get(),
                per_second = (done as f64 / secs) as u64,
                "{}",
                self.work.what()
            );
        }
    }

    /// The work is done, `done` records in all.
    pub(crate) fn finish(self, done: u64) {
        self.total.set(self.total.get().max(done));
        self.show(done);
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        match self.work {
            Work::Restore => METRICS.restore_remaining.set(0),
        }
    }

    fn show(&self, done: u64) {
        let total = self.total.get();
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
        let new = done.saturating_sub(self.done.replace(done));
        match self.work {
            Work::Restore => {
                METRICS.restore_records.inc_by(new);
                METRICS
                    .restore_remaining
                    .set(i64::try_from(total.saturating_sub(done)).unwrap_or(i64::MAX));
                status::restoring(done, total);
            }
        }
    }
}
