//! Sessionizing: a user's events belong to one session until the user is
//! inactive for longer than the gap; an event-time timer closes it.
//!
//! Events of one user may arrive out of order (from several input files, or
//! within the source's allowed delay), so a user can have several open
//! sessions at once; an event that bridges two of them merges them, as
//! Flink's merging session windows do.

use std::fmt;

use serde::{Deserialize, Serialize};
use weir::prelude::*;

/// The timestamp of an event line `<timestamp-ms> <user> <anything...>`.
pub fn parse_timestamp(line: &str) -> Option<i64> {
    line.split_ascii_whitespace().next()?.parse().ok()
}

/// The user of an event line.
pub fn user_of(line: &str) -> String {
    line.split_ascii_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_owned()
}

/// A session: first and last event time, number of events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Timestamp of the first event.
    pub start: i64,
    /// Timestamp of the last event.
    pub end: i64,
    /// Number of events.
    pub events: u64,
}

impl fmt::Display for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\t{}\t{}", self.start, self.end, self.events)
    }
}

/// Groups each user's events into sessions separated by more than `gap_ms`
/// of inactivity, and emits each session once its gap has passed in event time.
#[derive(Clone, Debug)]
pub struct Sessionizer {
    /// Inactivity that closes a session, in milliseconds.
    pub gap_ms: i64,
}

/// Open sessions of the current user, by start time.
const OPEN: MapDescriptor<i64, Session> = MapDescriptor::new("open");

/// The side output of events that came after their session would have
/// closed: user, event line.
pub const LATE: OutputTag<String, String> = OutputTag::new("late");

impl Processor for Sessionizer {
    type Key = String;
    type In = String;
    type Out = Session;

    fn declare(&self, d: &mut Declarations) {
        d.state(&OPEN).output(&LATE);
    }

    async fn process(
        &mut self,
        rec: Record<String, String>,
        ctx: &mut Context<'_, Self>,
    ) -> Result<()> {
        let ts = rec
            .timestamp
            .filter(|_| parse_timestamp(&rec.value).is_some())
            .ok_or_else(|| {
                Error::user(format!("not `<timestamp-ms> <user> ...`: {:?}", rec.value))
            })?;
        let gap = self.gap_ms;
        if ts.saturating_add(gap) <= ctx.watermark() {
            // Its session would have closed already: too late to count.
            return ctx.output(&LATE, rec.key, rec.value);
        }
        let mut merged = Session {
            start: ts,
            end: ts,
            events: 1,
        };
        let mut closed_timers = Vec::new();
        let mut open = ctx.state(&OPEN)?;
        for entry in open.iter()? {
            let (start, s) = entry?;
            // The event falls within `gap` of this session: they are one.
            if s.start - gap <= ts && ts <= s.end + gap {
                merged.start = merged.start.min(s.start);
                merged.end = merged.end.max(s.end);
                merged.events += s.events;
                open.remove(&start)?;
                closed_timers.push(s.end + gap);
            }
        }
        open.put(&merged.start, &merged)?;
        for t in closed_timers {
            ctx.delete_timer(TimeDomain::EventTime, t);
        }
        ctx.register_event_timer(merged.end + gap);
        Ok(())
    }

    async fn on_timer(&mut self, timer: Timer<String>, ctx: &mut Context<'_, Self>) -> Result<()> {
        let gap = self.gap_ms;
        let mut open = ctx.state(&OPEN)?;
        let mut due = Vec::new();
        for entry in open.iter()? {
            let (_, s) = entry?;
            if s.end + gap == timer.timestamp {
                due.push(s);
            }
        }
        for s in &due {
            open.remove(&s.start)?;
        }
        for s in due {
            ctx.emit(timer.key.clone(), s);
        }
        Ok(())
    }
}
