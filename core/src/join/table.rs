//! [`TableJoin`]: a stream joined with a table, in event time.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{JoinInput, JoinKind};
use crate::state::{Declarations, ValueDescriptor};
use crate::{Context, Error, Key, Processor, Record, Result, Timer};

/// The table's values of a key, by the event time they took effect
/// (`None`: deleted then), oldest first. Older ones are dropped once the
/// watermark has passed a newer one. One value per key, read whole: a key
/// keeps few versions, and a read costs one lookup, never a scan.
fn versions<T>() -> ValueDescriptor<Vec<(i64, Option<T>)>> {
    ValueDescriptor::new("table")
}

/// Stream records waiting for the watermark to pass their time, with it,
/// in the order they came. One value per key: a key's records within the
/// watermark's delay.
fn pending<S>() -> ValueDescriptor<Vec<(i64, S)>> {
    ValueDescriptor::new("pending")
}

/// Joins each stream record with the table's value for its key as of the
/// record's event time, and emits `join(key, record, value)`: with
/// [`JoinKind::Inner`] only when there is a value, with [`JoinKind::Left`]
/// always (`None` without one).
///
/// A stream record waits (in state) until the watermark passes its time:
/// by then every table update up to that time has been read, so the
/// result is the same however the two inputs' partitions are interleaved,
/// and the same after a crash and a replay, as long as updates come in
/// time (out of order by less than the watermark's delay, and not from a
/// partition the watermark had stopped waiting for as idle). A late update
/// (or stream record) is joined with what the table holds when it comes:
/// versions older than the newest one the watermark passed are gone. A record already behind the
/// watermark is joined at once, with the table as it is kept then. Table
/// updates are kept per key and time until no waiting record and no time
/// the watermark has not passed needs them. Records need an event time
/// (see `Stream::event_time`).
///
/// When the table's updates all come from one input of the source
/// ([`table_from`](Self::table_from)), a stream record does not wait for
/// the watermark of every input, only for the table's: one whose time that
/// input has passed (a table read to its end, up to a little before then)
/// is joined at once, with the same result.
pub struct TableJoin<K, S, T, O, F> {
    kind: JoinKind,
    join: Arc<F>,
    /// The source's input the table comes from, when only one.
    table_input: Option<usize>,
    _t: PhantomData<Types<K, S, T, O>>,
}

/// The types a [`TableJoin`] works on, held by no value.
type Types<K, S, T, O> = fn() -> (K, S, T, O);

impl<K, S, T, O, F> Clone for TableJoin<K, S, T, O, F> {
    fn clone(&self) -> Self {
        TableJoin {
            kind: self.kind,
            join: self.join.clone(),
            table_input: self.table_input,
            _t: PhantomData,
        }
    }
}

impl<K, S, T, O, F> TableJoin<K, S, T, O, F>
where
    F: Fn(&K, S, Option<&T>) -> O,
{
    /// A join of kind `kind` that makes its output with `join`.
    pub fn new(kind: JoinKind, join: F) -> Self {
        TableJoin {
            kind,
            join: Arc::new(join),
            table_input: None,
            _t: PhantomData,
        }
    }

    /// Says that every table update comes from input `input` of the source
    /// (see `Context::input_watermark`), and no stream record does: a
    /// stream record then waits only until that input's watermark passes
    /// its time. The join must take its records straight from the source's
    /// exchange (no window or join before it).
    pub fn table_from(mut self, input: usize) -> Self {
        self.table_input = Some(input);
        self
    }
}

/// The value in `table` (versions by time, oldest first) as of time `at`.
fn as_of<T>(table: &[(i64, Option<T>)], at: i64) -> Option<&T> {
    let newer = table.partition_point(|(t, _)| *t <= at);
    newer.checked_sub(1).and_then(|i| table[i].1.as_ref())
}

/// Drops the versions of `table` older than its newest one at or before
/// `upto`: no record at or after `upto` is joined with them. Whether it
/// dropped any.
fn prune<T>(table: &mut Vec<(i64, Option<T>)>, upto: i64) -> bool {
    let settled = table.partition_point(|(t, _)| *t <= upto);
    if settled > 1 {
        table.drain(..settled - 1);
        true
    } else {
        false
    }
}

impl<K, S, T, O, F> TableJoin<K, S, T, O, F>
where
    K: Key,
    S: Serialize + DeserializeOwned + Send + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
    O: Send + 'static,
    F: Fn(&K, S, Option<&T>) -> O + Send + Sync + 'static,
{
    /// Emits the join of `record` (of time `at`) with `table`, as the kind says.
    fn emit(
        &self,
        ctx: &mut Context<'_, Self>,
        key: &K,
        record: S,
        at: i64,
        table: &[(i64, Option<T>)],
    ) {
        let value = as_of(table, at);
        if self.kind == JoinKind::Inner && value.is_none() {
            return;
        }
        let out = (self.join)(key, record, value);
        ctx.emit_record(Record {
            key: key.clone(),
            value: out,
            timestamp: Some(at),
            headers: Vec::new(),
        });
    }

    /// The key's table versions, oldest first.
    fn table(&self, ctx: &mut Context<'_, Self>) -> Result<Vec<(i64, Option<T>)>> {
        Ok(ctx.state(&versions::<T>())?.get()?.unwrap_or_default())
    }

    /// Keeps `table` as the key's versions, pruned up to `upto`; written
    /// only when `changed` or pruned.
    fn keep(
        &self,
        ctx: &mut Context<'_, Self>,
        mut table: Vec<(i64, Option<T>)>,
        upto: i64,
        changed: bool,
    ) -> Result<()> {
        if prune(&mut table, upto) || changed {
            ctx.state(&versions::<T>())?.put(&table)?;
        }
        Ok(())
    }
}

impl<K, S, T, O, F> Processor for TableJoin<K, S, T, O, F>
where
    K: Key,
    S: Serialize + DeserializeOwned + Send + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
    O: Send + 'static,
    F: Fn(&K, S, Option<&T>) -> O + Send + Sync + 'static,
{
    type Key = K;
    type In = JoinInput<S, T>;
    type Out = O;

    fn declare(&self, d: &mut Declarations) {
        d.state(&versions::<T>()).state(&pending::<S>());
        // A waiting record goes once the table's input has passed it.
        if let Some(input) = self.table_input {
            d.event_timers_follow(input);
        }
    }

    async fn process(
        &mut self,
        rec: Record<K, JoinInput<S, T>>,
        ctx: &mut Context<'_, Self>,
    ) -> Result<()> {
        let at = rec.timestamp.ok_or_else(|| Error::Processor {
            processor: std::any::type_name::<Self>().to_owned(),
            message: "a record without an event time reached a stream-table join; stamp both inputs with `event_time`".to_owned(),
        })?;
        match rec.value {
            JoinInput::Table(value) => {
                let mut table = self.table(ctx)?;
                // In time order; a second value at one time replaces the first.
                let at_or_after = table.partition_point(|(t, _)| *t < at);
                match table.get_mut(at_or_after) {
                    Some(slot) if slot.0 == at => slot.1 = value,
                    _ => table.insert(at_or_after, (at, value)),
                }
                // Each update may settle older ones.
                let earliest = ctx
                    .state(&pending::<S>())?
                    .get()?
                    .and_then(|p| p.iter().map(|(t, _)| *t).min())
                    .unwrap_or(i64::MAX);
                self.keep(ctx, table, earliest.min(ctx.watermark()), true)
            }
            JoinInput::Stream(record) if at <= ctx.watermark() => {
                // Behind the watermark already (a late record): joined at
                // once, with what the table still holds.
                let table = self.table(ctx)?;
                self.emit(ctx, &rec.key, record, at, &table);
                Ok(())
            }
            JoinInput::Stream(record)
                if self
                    .table_input
                    .is_some_and(|input| at <= ctx.input_watermark(input)) =>
            {
                // Every table update up to its time has been read, and
                // versions are pruned only up to the (lower) watermark:
                // joined at once, as it would be once the watermark passed.
                let table = self.table(ctx)?;
                self.emit(ctx, &rec.key, record, at, &table);
                Ok(())
            }
            JoinInput::Stream(record) => {
                let mut state = ctx.state(&pending::<S>())?;
                let mut waiting = state.get()?.unwrap_or_default();
                waiting.push((at, record));
                state.put(&waiting)?;
                ctx.register_event_timer(at);
                Ok(())
            }
        }
    }

    async fn on_timer(&mut self, timer: Timer<K>, ctx: &mut Context<'_, Self>) -> Result<()> {
        let mut state = ctx.state(&pending::<S>())?;
        let waiting = state.get()?.unwrap_or_default();
        // In the order they came, those due now; the rest wait on.
        let (due, waiting): (Vec<_>, Vec<_>) = waiting
            .into_iter()
            .partition(|(t, _)| *t <= timer.timestamp);
        if waiting.is_empty() {
            state.clear();
        } else {
            state.put(&waiting)?;
        }
        // Versions older than the newest one before the earliest record
        // still to come (or the watermark) are no longer read.
        let upto = waiting
            .iter()
            .map(|(t, _)| *t)
            .min()
            .unwrap_or(i64::MAX)
            .min(ctx.watermark());
        let table = self.table(ctx)?;
        for (at, record) in due {
            self.emit(ctx, &timer.key, record, at, &table);
        }
        self.keep(ctx, table, upto, false)
    }
}
