//! [`SessionOperator`]: session windows as a processor.

use std::marker::PhantomData;

use super::operator::{emit, event_time};
use super::{Aggregate, Emit, Sessions, Windowed};
use crate::state::{Declarations, MapDescriptor};
use crate::{Context, Key, OutputTag, Processor, Record, Result, TimeDomain, Timer};

/// Each open session of a key: its first record's time -> its last
/// record's time and its accumulator.
fn sessions<Acc>() -> MapDescriptor<i64, (i64, Acc)> {
    MapDescriptor::new("sessions")
}

/// Runs session windows over a keyed stream: a key's records belong to
/// one session until it is inactive for longer than the gap, a record
/// that bridges two sessions merges them (their accumulators too), and a
/// session closes when the watermark passes its last record plus the gap
/// and the grace. A record whose session would have closed already is
/// late: it goes to the late output, if there is one, and is counted
/// (`weir_late_records_total`) otherwise.
pub struct SessionOperator<K, V, A> {
    sessions: Sessions,
    agg: A,
    emit: Emit,
    late: Option<OutputTag<K, V>>,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K, V, A: Clone> Clone for SessionOperator<K, V, A> {
    fn clone(&self) -> Self {
        SessionOperator {
            sessions: self.sessions,
            agg: self.agg.clone(),
            emit: self.emit,
            late: self.late.as_ref().map(|t| OutputTag::new(t.name())),
            _t: PhantomData,
        }
    }
}

impl<K, V, A> SessionOperator<K, V, A> {
    /// Sessions of `sessions` folded by `agg`, emitted as `emit`, late
    /// records to `late` (or counted).
    pub fn new(sessions: Sessions, agg: A, emit: Emit, late: Option<OutputTag<K, V>>) -> Self {
        SessionOperator {
            sessions,
            agg,
            emit,
            late,
            _t: PhantomData,
        }
    }

    /// When a session whose last record came at `last` closes.
    fn closes_at(&self, last: i64) -> i64 {
        last.saturating_add(self.sessions.gap)
            .saturating_add(self.sessions.grace)
    }
}

impl<K, V, A> Processor for SessionOperator<K, V, A>
where
    K: Key,
    V: Send + 'static,
    A: Aggregate<V>,
{
    type Key = K;
    type In = V;
    type Out = Windowed<A::Out>;

    fn declare(&self, d: &mut Declarations) {
        d.state(&sessions::<A::Acc>());
        if let Some(late) = &self.late {
            d.output(late);
        }
    }

    async fn process(&mut self, rec: Record<K, V>, ctx: &mut Context<'_, Self>) -> Result<()> {
        let t = event_time::<Self>(rec.timestamp)?;
        let gap = self.sessions.gap;
        // Open sessions are more than the gap apart: those within the gap
        // of this record are all it bridges. (Each is still open: its
        // close is past the watermark.)
        let mut bridged = Vec::new();
        for entry in ctx.state(&sessions::<A::Acc>())?.iter()? {
            let (s, (l, other)) = entry?;
            if s - gap <= t && t <= l + gap {
                bridged.push((s, l, other));
            }
        }
        if bridged.is_empty() && self.closes_at(t) <= ctx.watermark() {
            // Its own session would have closed already: late.
            return match &self.late {
                Some(tag) => ctx.output_record(tag, rec),
                None => {
                    ctx.count_late();
                    Ok(())
                }
            };
        }
        let (mut start, mut last) = (t, t);
        let mut acc = self.agg.init();
        self.agg.add(&mut acc, rec.value);
        let mut merged = Vec::new();
        for (s, l, other) in bridged {
            start = start.min(s);
            last = last.max(l);
            self.agg.merge(&mut acc, other);
            merged.push((s, l));
        }
        let mut open = ctx.state(&sessions::<A::Acc>())?;
        for (s, _) in &merged {
            open.remove(s)?;
        }
        let update = match self.emit {
            Emit::EveryUpdate => Some(self.agg.result(&acc)),
            Emit::Final => None,
        };
        open.put(&start, &(last, acc))?;
        for (_, l) in merged {
            ctx.delete_timer(TimeDomain::EventTime, self.closes_at(l));
        }
        ctx.register_event_timer(self.closes_at(last));
        if let Some(out) = update {
            emit(ctx, rec.key, start, last + gap, out);
        }
        Ok(())
    }

    async fn on_timer(&mut self, timer: Timer<K>, ctx: &mut Context<'_, Self>) -> Result<()> {
        let mut open = ctx.state(&sessions::<A::Acc>())?;
        let mut due = Vec::new();
        for entry in open.iter()? {
            let (s, (l, acc)) = entry?;
            if self.closes_at(l) == timer.timestamp {
                due.push((s, l, acc));
            }
        }
        for (s, _, _) in &due {
            open.remove(s)?;
        }
        if self.emit == Emit::Final {
            for (s, l, acc) in due {
                let out = self.agg.result(&acc);
                emit(ctx, timer.key.clone(), s, l + self.sessions.gap, out);
            }
        }
        Ok(())
    }
}
