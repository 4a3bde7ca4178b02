use std::future::Future;

use crate::state::Declarations;
use crate::{Context, Key, OpenContext, Record, Result, Timer};

/// A keyed operator. The runtime calls [`process`](Processor::process) for
/// each record and [`on_timer`](Processor::on_timer) for each timer that
/// fires; state, timers and output go through the [`Context`]. Everything a
/// processor does through its context is part of the current epoch and is
/// committed, or rolled back, with it.
///
/// Instances are cloned, one per worker, from the value given to the
/// pipeline, so keep per-instance fields to configuration.
pub trait Processor: Sized + Send + 'static {
    /// The key of incoming and outgoing records.
    type Key: Key;
    /// The value of incoming records.
    type In: Send + 'static;
    /// The value of emitted records.
    type Out: Send + 'static;

    /// Declares the state this processor keeps and the side outputs it
    /// emits to, each once, by its descriptor or tag. The declarations are
    /// part of the pipeline's fingerprint: a restart on state written with
    /// other types is refused, naming the store, before any record is read.
    /// A store or tag reached without being declared is an error.
    ///
    /// ```ignore
    /// fn declare(&self, d: &mut Declarations) {
    ///     d.state(&COUNT).output(&LATE);
    /// }
    /// ```
    fn declare(&self, d: &mut Declarations) {
        let _ = d;
    }

    /// Handles one record.
    fn process(
        &mut self,
        record: Record<Self::Key, Self::In>,
        ctx: &mut Context<'_, Self>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Handles a timer registered through [`Context`]; does nothing by default.
    fn on_timer(
        &mut self,
        timer: Timer<Self::Key>,
        ctx: &mut Context<'_, Self>,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = (timer, ctx);
        async { Ok(()) }
    }

    /// Called once before the first record after every (re)start, in each
    /// worker, with where it runs and the configuration.
    fn open(&mut self, ctx: &mut OpenContext<'_>) -> impl Future<Output = Result<()>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Called once at a clean end (bounded input done, or shutdown).
    fn close(&mut self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
}
