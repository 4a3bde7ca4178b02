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
pub(crate) struct Control {
    requested: AtomicU64,
    inner: Mutex<Inner>,
    cv: Condvar,
    /// The released epoch, for async waiters (`u64::MAX` on shutdown).
    released: tokio::sync::watch::Sender<u64>,
    /// The requested epoch, for async waiters (`u64::MAX` on shutdown).
    requested_watch: tokio::sync::watch::Sender<u64>,
}

impl Control {
    pub(crate) fn new(last_epoch: u64) -> Self {
        Control {
            requested: AtomicU64::new(last_epoch),
            inner: Mutex::new(Inner {
                released: last_epoch,
                ..Inner::default()
            }),
            cv: Condvar::new(),
            released: tokio::sync::watch::Sender::new(last_epoch),
            requested_watch: tokio::sync::watch::Sender::new(last_epoch),
        }
    }

    /// Watches the requested epoch (async side of [`requested`](Self::requested)).
    pub(crate) fn watch_requested(&self) -> tokio::sync::watch::Receiver<u64> {
        self.requested_watch.subscribe()
    }

    /// Watches the released epoch (async side of [`wait_released`](Self::wait_released)).
    pub(crate) fn watch_released(&self) -> tokio::sync::watch::Receiver<u64> {
        self.released.subscribe()
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
        self.requested_watch.send_replace(epoch);
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
        self.released.send_if_modified(|r| {
            let before = *r;
            *r = (*r).max(epoch);
            *r != before
        });
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
        self.released.send_replace(u64::MAX);
        self.requested_watch.send_replace(u64::MAX);
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
