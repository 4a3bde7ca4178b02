//! Progress of long work: a bar on a terminal (done, total, rate, time
//! left), log lines through `tracing` otherwise, and the metrics and status
//! of the work.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
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
    /// A bounded run reading its input (bytes of files, or records of
    /// partitions), as of the last epoch. Where no bar is drawn, the
    /// coordinator's progress line tells it.
    Input,
    /// Making a retained checkpoint's files the live state (bytes): hard
    /// links, quick; copies where the file system has no links.
    Replay,
}

impl Work {
    fn what(self) -> &'static str {
        match self {
            Work::Restore => "restoring state from the changelog",
            Work::Input => "reading the input",
            Work::Replay => "replaying: taking the checkpoint's files",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Work::Restore | Work::Input => "records",
            Work::Replay => "bytes",
        }
    }

    fn template(self) -> &'static str {
        match self {
            Work::Restore => {
                "{msg} {wide_bar} {human_pos}/{human_len} records, {per_sec}, {eta} left"
            }
            Work::Input => "{msg} {wide_bar} {percent}%, {eta} left",
            Work::Replay => "{msg} {wide_bar} {bytes}/{total_bytes}, {eta} left",
        }
    }
}

/// The progress of one piece of long work, told as it goes. Its methods
/// take `&self` so that several callbacks can share it.
pub(crate) struct Progress {
    work: Work,
    /// On a terminal: the bar, drawn once the work's size is known.
    bar: Option<OnceLock<ProgressBar>>,
    total: AtomicU64,
    done: AtomicU64,
    logged: Mutex<Instant>,
    started: Instant,
}

impl Progress {
    /// Starts showing `work`'s progress: a bar when stderr is a terminal.
    pub(crate) fn new(work: Work) -> Self {
        Progress {
            work,
            bar: std::io::stderr().is_terminal().then(OnceLock::new),
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            logged: Mutex::new(Instant::now()),
            started: Instant::now(),
        }
    }

    /// The work has `total` records to do (at most).
    pub(crate) fn sized(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            let work = self.work;
            bar.get_or_init(|| {
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                if let Ok(style) = ProgressStyle::with_template(work.template()) {
                    bar.set_style(style);
                }
                bar.set_message(work.what());
                bar
            })
            .set_length(total);
        }
        self.show(self.done.load(Ordering::Relaxed));
    }

    /// `done` records of the work are done.
    pub(crate) fn at(&self, done: u64) {
        self.show(done);
        if self.bar.is_some() || self.work == Work::Input {
            return;
        }
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.elapsed() >= LOG_EVERY {
            *logged = Instant::now();
            let secs = self.started.elapsed().as_secs_f64().max(1e-3);
            tracing::info!(
                done,
                total = self.total.load(Ordering::Relaxed),
                per_second = (done as f64 / secs) as u64,
                unit = self.work.unit(),
                "{}",
                self.work.what()
            );
        }
    }

    /// The work is done, `done` records in all.
    pub(crate) fn finish(self, done: u64) {
        let done = done.max(self.done.load(Ordering::Relaxed));
        self.total.fetch_max(done, Ordering::Relaxed);
        self.show(done);
    }

    fn show(&self, done: u64) {
        let total = self.total.load(Ordering::Relaxed);
        if let Some(bar) = self.bar.as_ref().and_then(OnceLock::get) {
            bar.set_position(done);
        }
        let new = done.saturating_sub(self.done.swap(done, Ordering::Relaxed));
        match self.work {
            Work::Restore => {
                METRICS.restore_records.inc_by(new);
                METRICS
                    .restore_remaining
                    .set(i64::try_from(total.saturating_sub(done)).unwrap_or(i64::MAX));
                status::restoring(done, total);
            }
            // The status and metrics have it per task already.
            Work::Input | Work::Replay => {}
        }
    }
}

/// Finished or failed, the work no longer shows: its bar goes, and no
/// restore is said to remain.
impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.as_ref().and_then(OnceLock::get) {
            bar.finish_and_clear();
        }
        if self.work == Work::Restore {
            METRICS.restore_remaining.set(0);
        }
    }
}
