//! [`WindowJoin`]: two streams joined within a window of event time.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::JoinKind;
use crate::state::{Declarations, ValueDescriptor};
use crate::{Context, Either, Error, Key, Processor, Record, Result, Timer};

/// How far apart in event time two records of a [`WindowJoin`] may be, and
/// how long after that a record may come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindows {
    /// A right record joins a left one of time `t` from `t - before`...
    before: i64,
    /// ...to `t + after`, both included.
    after: i64,
    grace: i64,
}

impl JoinWindows {
    /// Records at most `window` apart, either way (Kafka Streams'
    /// `JoinWindows.ofTimeDifferenceAndGrace`), with no grace.
    pub fn within(window: Duration) -> Self {
        let ms = millis(window);
        JoinWindows {
            before: ms,
            after: ms,
            grace: 0,
        }
    }

    /// A right record joins a left one of time `t` from `t - before` to
    /// `t + after` (Flink's interval join, `between(-before, after)`).
    pub fn between(before: Duration, after: Duration) -> Self {
        JoinWindows {
            before: millis(before),
            after: millis(after),
            grace: 0,
        }
    }

    /// How far behind the watermark a record may still come and be joined:
    /// a record older than the watermark less `grace` is late (dropped and
    /// counted in `weir_late_records_total`), as its partners may be gone.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = millis(grace);
        self
    }

    /// For the topology: `-before..+after, grace`.
    pub fn describe(&self) -> String {
        format!(
            "-{}ms..+{}ms, grace {}ms",
            self.before, self.after, self.grace
        )
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A key's left records, by time (then arrival): `(time, joined yet,
/// record)`. One value per key, read whole: a key keeps the records of one
/// window's span.
fn lefts<L>() -> ValueDescriptor<Vec<(i64, bool, L)>> {
    ValueDescriptor::new("left")
}

/// A key's right records, by time (then arrival).
fn rights<R>() -> ValueDescriptor<Vec<(i64, R)>> {
    ValueDescriptor::new("right")
}

/// Joins the left records of a stream (`Either::Left`) with its right
/// records (`Either::Right`) of the same key whose event times are within
/// the [`JoinWindows`], and emits `join(key, &left, Some(&right))` for
/// every such pair, as soon as its second record comes, stamped with the
/// later of the two times. With [`JoinKind::Left`], a left record that
/// found no partner by the time none can come any more (the watermark
/// passed its window and the grace) is emitted once as `join(key, &left,
/// None)`, stamped with its own time: by then the watermark is past that
/// time by the window's `after` and the grace, so a window after the join
/// takes it only if its own grace is at least that long (else it is late
/// there, as in Kafka Streams' outer joins).
///
/// Each record is kept (in keyed state) until the watermark has passed
/// the last time a partner of it could have, plus the grace, and dropped
/// then by an event-time timer. A record that comes later than that (its
/// time behind the watermark by more than the grace) is late: dropped and
/// counted. So the pairs emitted are the same however the two inputs'
/// partitions are interleaved, and the same after a crash and a replay,
/// as long as records come out of order by less than the watermark's
/// delay plus the grace. Records need an event time (see
/// `Stream::event_time`).
pub struct WindowJoin<K, L, R, O, F> {
    kind: JoinKind,
    windows: JoinWindows,
    join: Arc<F>,
    _t: PhantomData<Types<K, L, R, O>>,
}

/// The types a [`WindowJoin`] works on, held by no value.
type Types<K, L, R, O> = fn() -> (K, L, R, O);

impl<K, L, R, O, F> Clone for WindowJoin<K, L, R, O, F> {
    fn clone(&self) -> Self {
        WindowJoin {
            kind: self.kind,
            windows: self.windows,
            join: self.join.clone(),
            _t: PhantomData,
        }
    }
}

impl<K, L, R, O, F> WindowJoin<K, L, R, O, F>
where
    F: Fn(&K, &L, Option<&R>) -> O,
{
    /// A join of kind `kind` within `windows` that makes its output with `join`.
    pub fn new(kind: JoinKind, windows: JoinWindows, join: F) -> Self {
        WindowJoin {
            kind,
            windows,
            join: Arc::new(join),
            _t: PhantomData,
        }
    }
}

impl<K, L, R, O, F> WindowJoin<K, L, R, O, F>
where
    K: Key,
    L: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
    O: Send + 'static,
    F: Fn(&K, &L, Option<&R>) -> O + Send + Sync + 'static,
{
    fn emit(&self, ctx: &mut Context<'_, Self>, key: &K, left: &L, right: Option<&R>, at: i64) {
        let value = (self.join)(key, left, right);
        ctx.emit_record(Record {
            key: key.clone(),
            value,
            timestamp: Some(at),
            headers: Vec::new(),
        });
    }

    /// The last time a left record of time `t` can meet a right one.
    fn left_until(&self, t: i64) -> i64 {
        t.saturating_add(self.windows.after)
            .saturating_add(self.windows.grace)
    }

    /// The last time a right record of time `t` can meet a left one.
    fn right_until(&self, t: i64) -> i64 {
        t.saturating_add(self.windows.before)
            .saturating_add(self.windows.grace)
    }
}

impl<K, L, R, O, F> Processor for WindowJoin<K, L, R, O, F>
where
    K: Key,
    L: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
    O: Send + 'static,
    F: Fn(&K, &L, Option<&R>) -> O + Send + Sync + 'static,
{
    type Key = K;
    type In = Either<L, R>;
    type Out = O;

    fn declare(&self, d: &mut Declarations) {
        d.state(&lefts::<L>()).state(&rights::<R>());
    }

    async fn process(
        &mut self,
        rec: Record<K, Either<L, R>>,
        ctx: &mut Context<'_, Self>,
    ) -> Result<()> {
        let at = rec.timestamp.ok_or_else(|| Error::Processor {
            processor: std::any::type_name::<Self>().to_owned(),
            message: "a record without an event time reached a windowed join; stamp both inputs with `event_time`".to_owned(),
        })?;
        // Its partners may be gone: late.
        if at.saturating_add(self.windows.grace) < ctx.watermark() {
            ctx.count_late();
            return Ok(());
        }
        let (before, after) = (self.windows.before, self.windows.after);
        match rec.value {
            Either::Left(left) => {
                let others = ctx.state(&rights::<R>())?.get()?.unwrap_or_default();
                let from = others.partition_point(|(t, _)| *t < at.saturating_sub(before));
                let mut joined = false;
                for (t, right) in others[from..]
                    .iter()
                    .take_while(|(t, _)| *t <= at.saturating_add(after))
                {
                    self.emit(ctx, &rec.key, &left, Some(right), at.max(*t));
                    joined = true;
                }
                let mut state = ctx.state(&lefts::<L>())?;
                let mut mine = state.get()?.unwrap_or_default();
                let slot = mine.partition_point(|(t, _, _)| *t <= at);
                mine.insert(slot, (at, joined, left));
                state.put(&mine)?;
                ctx.register_event_timer(self.left_until(at).saturating_add(1));
            }
            Either::Right(right) => {
                let mut others = ctx.state(&lefts::<L>())?.get()?.unwrap_or_default();
                let from = others.partition_point(|(t, _, _)| *t < at.saturating_sub(after));
                let mut marked = false;
                for (t, joined, left) in others[from..]
                    .iter_mut()
                    .take_while(|(t, _, _)| *t <= at.saturating_add(before))
                {
                    self.emit(ctx, &rec.key, left, Some(&right), at.max(*t));
                    marked |= !*joined;
                    *joined = true;
                }
                // A left join remembers who found a partner.
                if marked && self.kind == JoinKind::Left {
                    ctx.state(&lefts::<L>())?.put(&others)?;
                }
                let mut state = ctx.state(&rights::<R>())?;
                let mut mine = state.get()?.unwrap_or_default();
                let slot = mine.partition_point(|(t, _)| *t <= at);
                mine.insert(slot, (at, right));
                state.put(&mine)?;
                ctx.register_event_timer(self.right_until(at).saturating_add(1));
            }
        }
        Ok(())
    }

    /// Drops the records no partner can come for any more; with a left
    /// join, emits those of the left that found none.
    async fn on_timer(&mut self, timer: Timer<K>, ctx: &mut Context<'_, Self>) -> Result<()> {
        let watermark = ctx.watermark().max(timer.timestamp);
        // At the end of the input every record is done, even one whose
        // last time saturated at the end of time.
        let is_done = |until: i64| until < watermark || watermark == i64::MAX;
        let mut mine = ctx.state(&lefts::<L>())?.get()?.unwrap_or_default();
        let done = mine.partition_point(|(t, _, _)| is_done(self.left_until(*t)));
        if done > 0 {
            let gone: Vec<_> = mine.drain(..done).collect();
            let mut state = ctx.state(&lefts::<L>())?;
            match mine.is_empty() {
                true => state.clear(),
                false => state.put(&mine)?,
            }
            if self.kind == JoinKind::Left {
                for (t, _, left) in gone.iter().filter(|(_, joined, _)| !joined) {
                    self.emit(ctx, &timer.key, left, None, *t);
                }
            }
        }
        let mut theirs = ctx.state(&rights::<R>())?.get()?.unwrap_or_default();
        let done = theirs.partition_point(|(t, _)| is_done(self.right_until(*t)));
        if done > 0 {
            theirs.drain(..done);
            let mut state = ctx.state(&rights::<R>())?;
            match theirs.is_empty() {
                true => state.clear(),
                false => state.put(&theirs)?,
            }
        }
        Ok(())
    }
}
