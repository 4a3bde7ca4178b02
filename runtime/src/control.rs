//! The coordinator's control of source threads: epoch requests (barriers),
//! release after the commit, and shutdown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Default)]
struct Inner {
    released: u64,
    committed: u64,
    shutdown: bool,
}

/// Shared by the coordinator (async) and the source threads (blocking).
#[derive(Default)]
pub(crate) struct Control {
    requested: AtomicU64,
    inner: Mutex<Inner>,
    cv: Condvar,
}

impl Control {
    pub(crate) fn new(last_epoch: u64) -> Self {
        let c = Control::default();
        c.requested.store(last_epoch, Ordering::SeqCst);
        c.lock().released = last_epoch;
        c
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked; its data is
        // two plain fields that are always consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks every source to end epoch `epoch` at its next batch boundary.
    pub(crate) fn request(&self, epoch: u64) {
        let _g = self.lock();
        self.requested.store(epoch, Ordering::SeqCst);
        self.cv.notify_all();
    }

    /// The last epoch whose end was requested.
    pub(crate) fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    /// Lets sources run on past the barrier of `epoch`.
    pub(crate) fn release(&self, epoch: u64) {
        let mut g = self.lock();
        g.released = g.released.max(epoch);
        self.cv.notify_all();
    }

    /// Records that the checkpoint of `epoch` committed.
    pub(crate) fn committed(&self, epoch: u64) {
        let mut g = self.lock();
        g.committed = g.committed.max(epoch);
    }

    /// Whether the checkpoint of `epoch` (or a later one) committed.
    pub(crate) fn is_committed(&self, epoch: u64) -> bool {
        self.lock().committed >= epoch
    }

    /// Stops every source thread.
    pub(crate) fn shutdown(&self) {
        let mut g = self.lock();
        g.shutdown = true;
        self.cv.notify_all();
    }

    pub(crate) fn is_shutdown(&self) -> bool {
        self.lock().shutdown
    }

    /// Blocks until `epoch` is released or shutdown; true on shutdown.
    pub(crate) fn wait_released(&self, epoch: u64) -> bool {
        let mut g = self.lock();
        while g.released < epoch && !g.shutdown {
            g = self.cv.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        g.shutdown
    }

    /// Blocks for at most `timeout`, waking early on a request or shutdown.
    pub(crate) fn idle(&self, since_request: u64, timeout: Duration) {
        let g = self.lock();
        if g.shutdown || self.requested() != since_request {
            return;
        }
        let _ = self
            .cv
            .wait_timeout(g, timeout)
            .unwrap_or_else(|p| p.into_inner());
    }
}
