//! [`WindowOperator`]: tumbling and hopping windows as a processor.

use std::marker::PhantomData;

use super::{Aggregate, Clock, Emit, Windowed, Windows};
use crate::state::{
    clear_entry, Declarations, Place, StateBackend, StateDescriptor, ValueDescriptor,
};
use crate::{Context, Error, Key, OutputTag, Processor, Record, Result, TimeDomain, Timer};

/// A window's result made from stores of its own, kept per key and window
/// (a map of the users seen, a count): what an [`Aggregate`] cannot do
/// without decoding its whole accumulator for every record. Its stores are
/// declared like a processor's, reached through the [`WindowState`], and
/// cleared when the window closes.
pub trait WindowFunction<K, V>: Clone + Send + Sync + 'static {
    /// What the window emits.
    type Out: Send + 'static;
    /// Declares the stores kept per window.
    fn declare(&self, d: &mut Declarations);
    /// Adds one record's value to the window.
    fn add(&self, value: V, window: &mut WindowState<'_>) -> Result<()>;
    /// The window's result, for key `key`.
    fn result(&self, key: &K, window: &mut WindowState<'_>) -> Result<Self::Out>;
}

/// One key's window, as a [`WindowFunction`] sees it: its bounds and its stores.
pub struct WindowState<'a> {
    backend: &'a mut dyn StateBackend,
    group: u16,
    node: u16,
    /// The record key's encoding, then the window's end: the namespace of
    /// the window's entries.
    key: Vec<u8>,
    buf: &'a mut Vec<u8>,
    now: i64,
    declared: &'a Declarations,
    start: i64,
    end: i64,
}

impl<'a> WindowState<'a> {
    fn of<P: Processor>(ctx: &'a mut Context<'_, P>, start: i64, end: i64) -> Self {
        let mut key = Vec::with_capacity(ctx.key_bytes.len() + 8);
        key.extend_from_slice(ctx.key_bytes);
        key.extend_from_slice(&end.to_be_bytes());
        WindowState {
            backend: &mut *ctx.state,
            group: ctx.group,
            node: ctx.node,
            key,
            buf: &mut *ctx.state_key,
            now: ctx.now,
            declared: ctx.declared,
            start,
            end,
        }
    }

    /// The first millisecond of the window.
    pub fn start(&self) -> i64 {
        self.start
    }

    /// The end of the window (exclusive).
    pub fn end(&self) -> i64 {
        self.end
    }

    /// This window's entry of the store `descriptor` declares.
    ///
    /// # Errors
    /// If the window function does not declare the store.
    pub fn state<D: StateDescriptor>(&mut self, descriptor: &D) -> Result<D::Handle<'_>> {
        let (kind, type_id) = descriptor.identity();
        if !self
            .declared
            .declares(descriptor.name(), kind, type_id, descriptor.expires())
        {
            return Err(Error::Config(format!(
                "a window function reads the state {}, which it does not declare; add `d.state(&DESCRIPTOR)` to its `declare`",
                descriptor.spec()
            )));
        }
        descriptor.handle(Place {
            backend: &mut *self.backend,
            group: self.group,
            node: self.node,
            key: &self.key,
            buf: &mut *self.buf,
            now: self.now,
        })
    }

    /// Drops every entry of the window (it closed).
    fn clear(&mut self) -> Result<()> {
        for spec in self.declared.states() {
            clear_entry(&mut *self.backend, spec, self.group, self.node, &self.key)?;
        }
        Ok(())
    }
}

/// Runs windows of `windows` over a keyed stream: each record goes to the
/// windows that hold its time, `function` keeps their state, and each
/// window's result is emitted as [`Emit`] says. A record whose every
/// window has closed is late: it goes to the late output, if there is
/// one, and is counted (`weir_late_records_total`) otherwise.
pub struct WindowOperator<K, V, F> {
    windows: Windows,
    function: F,
    emit: Emit,
    late: Option<OutputTag<K, V>>,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K, V, F: Clone> Clone for WindowOperator<K, V, F> {
    fn clone(&self) -> Self {
        WindowOperator {
            windows: self.windows,
            function: self.function.clone(),
            emit: self.emit,
            late: self.late.as_ref().map(|t| OutputTag::new(t.name())),
            _t: PhantomData,
        }
    }
}

impl<K, V, F> WindowOperator<K, V, F> {
    /// Windows of `windows` kept by `function`, emitted as `emit`, late
    /// records to `late` (or counted).
    pub fn new(windows: Windows, function: F, emit: Emit, late: Option<OutputTag<K, V>>) -> Self {
        WindowOperator {
            windows,
            function,
            emit,
            late,
            _t: PhantomData,
        }
    }
}

/// The greatest event time (either side of the Unix epoch, in ms) a
/// window takes: about 146 million years, so that a window's bounds, its
/// close and its timer never overflow.
const TIME_LIMIT: i64 = 1 << 62;

/// The event time a record is windowed by, which it must have, within
/// [`TIME_LIMIT`] (a record's time is input: a bad one is a record error,
/// which `on_bad_input` may skip).
pub(super) fn event_time<P: Processor>(timestamp: Option<i64>) -> Result<i64> {
    let error = |message: String| Error::Processor {
        processor: std::any::type_name::<P>().to_owned(),
        message,
    };
    match timestamp {
        None => Err(error("a record without an event time reached an event-time window; stamp the stream with `event_time` before it, or window it in processing time".to_owned())),
        Some(t) if t.unsigned_abs() > TIME_LIMIT as u64 => Err(error(format!(
            "a record's event time {t} is out of range (more than 2^62 ms from the Unix epoch)"
        ))),
        Some(t) => Ok(t),
    }
}

impl<K, V, F> Processor for WindowOperator<K, V, F>
where
    K: Key,
    V: Clone + Send + 'static,
    F: WindowFunction<K, V>,
{
    type Key = K;
    type In = V;
    type Out = Windowed<F::Out>;

    fn declare(&self, d: &mut Declarations) {
        self.function.declare(d);
        if let Some(late) = &self.late {
            d.output(late);
        }
    }

    async fn process(&mut self, rec: Record<K, V>, ctx: &mut Context<'_, Self>) -> Result<()> {
        let t = match self.windows.clock() {
            Clock::Event => event_time::<Self>(rec.timestamp)?,
            Clock::Processing => ctx.now(),
        };
        let size = self.windows.size_ms();
        let watermark = ctx.watermark();
        let mut open = self.windows.starts(t).filter(|start| {
            self.windows.clock() == Clock::Processing
                || self.windows.closes_at(start + size) > watermark
        });
        let Some(mut start) = open.next() else {
            return match &self.late {
                Some(tag) => ctx.output_record(tag, rec),
                None => {
                    ctx.count_late();
                    Ok(())
                }
            };
        };
        let rest: Vec<i64> = open.collect();
        let mut value = Some(rec.value);
        for next in rest.into_iter().map(Some).chain([None]) {
            let end = start + size;
            match self.windows.clock() {
                Clock::Event => ctx.register_event_timer(self.windows.closes_at(end)),
                Clock::Processing => ctx.register_processing_timer(end),
            }
            // The last window takes the value itself, the others a copy.
            let v = match next {
                Some(_) => value.clone(),
                None => value.take(),
            };
            let mut w = WindowState::of(ctx, start, end);
            if let Some(v) = v {
                self.function.add(v, &mut w)?;
            }
            if self.emit == Emit::EveryUpdate {
                let out = self.function.result(&rec.key, &mut w)?;
                emit(ctx, rec.key.clone(), start, end, out);
            }
            match next {
                Some(n) => start = n,
                None => break,
            }
        }
        Ok(())
    }

    async fn on_timer(&mut self, timer: Timer<K>, ctx: &mut Context<'_, Self>) -> Result<()> {
        let end = match timer.domain {
            TimeDomain::EventTime => timer.timestamp - self.windows.grace_ms(),
            TimeDomain::ProcessingTime => timer.timestamp,
        };
        let start = end - self.windows.size_ms();
        let mut w = WindowState::of(ctx, start, end);
        let out = match self.emit {
            Emit::Final => Some(self.function.result(&timer.key, &mut w)?),
            Emit::EveryUpdate => None,
        };
        w.clear()?;
        if let Some(out) = out {
            emit(ctx, timer.key, start, end, out);
        }
        Ok(())
    }
}

/// Emits a window's result, stamped with the window's last millisecond.
pub(super) fn emit<P: Processor<Out = Windowed<T>>, T>(
    ctx: &mut Context<'_, P>,
    key: P::Key,
    start: i64,
    end: i64,
    value: T,
) {
    ctx.emit_record(Record {
        key,
        value: Windowed { start, end, value },
        timestamp: Some(end - 1),
        headers: Vec::new(),
    });
}

/// An [`Aggregate`] as a [`WindowFunction`]: its accumulator in one store.
pub struct Accumulate<A> {
    agg: A,
}

impl<A: Clone> Clone for Accumulate<A> {
    fn clone(&self) -> Self {
        Accumulate {
            agg: self.agg.clone(),
        }
    }
}

impl<A> Accumulate<A> {
    /// Keeps `agg`'s accumulator per window.
    pub fn new(agg: A) -> Self {
        Accumulate { agg }
    }
}

fn acc_store<T>() -> ValueDescriptor<T> {
    ValueDescriptor::new("window")
}

impl<K, V, A> WindowFunction<K, V> for Accumulate<A>
where
    A: Aggregate<V>,
{
    type Out = A::Out;

    fn declare(&self, d: &mut Declarations) {
        d.state(&acc_store::<A::Acc>());
    }

    fn add(&self, value: V, window: &mut WindowState<'_>) -> Result<()> {
        let mut state = window.state(&acc_store::<A::Acc>())?;
        let mut acc = state.get()?.unwrap_or_else(|| self.agg.init());
        self.agg.add(&mut acc, value);
        state.put(&acc)
    }

    fn result(&self, _key: &K, window: &mut WindowState<'_>) -> Result<A::Out> {
        let acc = window
            .state(&acc_store::<A::Acc>())?
            .get()?
            .unwrap_or_else(|| self.agg.init());
        Ok(self.agg.result(&acc))
    }
}
