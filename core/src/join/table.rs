//! [`TableJoin`]: a stream joined with a table, in event time.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{JoinInput, JoinKind};
use crate::state::{Declarations, ListDescriptor, MapDescriptor};
use crate::{Context, Error, Key, Processor, Record, Result, Timer};

/// The table's values of a key, by the event time they took effect
/// (`None`: deleted then). Older ones are dropped once the watermark has
/// passed a newer one.
fn versions<T>() -> MapDescriptor<i64, Option<T>> {
    MapDescriptor::new("table")
}

/// Stream records waiting for the watermark to pass their time, with it.
fn pending<S>() -> ListDescriptor<(i64, S)> {
    ListDescriptor::new("pending")
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
pub struct TableJoin<K, S, T, O, F> {
    kind: JoinKind,
    join: Arc<F>,
    _t: PhantomData<Types<K, S, T, O>>,
}

/// The types a [`TableJoin`] works on, held by no value.
type Types<K, S, T, O> = fn() -> (K, S, T, O);

impl<K, S, T, O, F> Clone for TableJoin<K, S, T, O, F> {
    fn clone(&self) -> Self {
        TableJoin {
            kind: self.kind,
            join: self.join.clone(),
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
            _t: PhantomData,
        }
    }
}

/// The value in `table` (versions by time) as of time `at`.
fn as_of<T>(table: &[(i64, Option<T>)], at: i64) -> Option<&T> {
    table
        .iter()
        .filter(|(t, _)| *t <= at)
        .max_by_key(|(t, _)| *t)
        .and_then(|(_, v)| v.as_ref())
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

    /// The key's table versions.
    fn table(&self, ctx: &mut Context<'_, Self>) -> Result<Vec<(i64, Option<T>)>> {
        ctx.state(&versions::<T>())?.iter()?.collect()
    }

    /// Drops the versions of `table` older than its newest one at or before
    /// `upto`: no record at or after `upto` is joined with them.
    fn prune(
        &self,
        ctx: &mut Context<'_, Self>,
        table: &[(i64, Option<T>)],
        upto: i64,
    ) -> Result<()> {
        let Some(settled) = table.iter().map(|(t, _)| *t).filter(|t| *t <= upto).max() else {
            return Ok(());
        };
        let mut state = ctx.state(&versions::<T>())?;
        for (t, _) in table.iter().filter(|(t, _)| *t < settled) {
            state.remove(t)?;
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
                ctx.state(&versions::<T>())?.put(&at, &value)?;
                // Each update may settle older ones.
                let earliest = ctx
                    .state(&pending::<S>())?
                    .iter()?
                    .map(|p| p.map(|(t, _)| t))
                    .collect::<Result<Vec<_>>>()?
                    .into_iter()
                    .min()
                    .unwrap_or(i64::MAX);
                let table = self.table(ctx)?;
                self.prune(ctx, &table, earliest.min(ctx.watermark()))
            }
            JoinInput::Stream(record) if at <= ctx.watermark() => {
                // Behind the watermark already (a late record): joined at
                // once, with what the table still holds.
                let table = self.table(ctx)?;
                self.emit(ctx, &rec.key, record, at, &table);
                Ok(())
            }
            JoinInput::Stream(record) => {
                ctx.state(&pending::<S>())?.add(&(at, record))?;
                ctx.register_event_timer(at);
                Ok(())
            }
        }
    }

    async fn on_timer(&mut self, timer: Timer<K>, ctx: &mut Context<'_, Self>) -> Result<()> {
        let mut waiting = ctx
            .state(&pending::<S>())?
            .iter()?
            .collect::<Result<Vec<_>>>()?;
        let later = waiting.iter().position(|(t, _)| *t > timer.timestamp);
        let due: Vec<(i64, S)> = match later {
            // In the order they came, those due now; the rest wait on.
            None => std::mem::take(&mut waiting),
            Some(_) => {
                let (due, rest): (Vec<_>, Vec<_>) = waiting
                    .into_iter()
                    .partition(|(t, _)| *t <= timer.timestamp);
                waiting = rest;
                due
            }
        };
        // Versions older than the newest one before the earliest record
        // still to come (or the watermark) are no longer read.
        let upto = waiting
            .iter()
            .map(|(t, _)| *t)
            .min()
            .unwrap_or(i64::MAX)
            .min(ctx.watermark());
        ctx.state(&pending::<S>())?.update(waiting)?;
        let table = self.table(ctx)?;
        for (at, record) in due {
            self.emit(ctx, &timer.key, record, at, &table);
        }
        self.prune(ctx, &table, upto)
    }
}
