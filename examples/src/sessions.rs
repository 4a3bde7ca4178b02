//! Sessionizing: a user's events belong to one session until the user is
//! inactive for longer than the gap; an event-time timer closes it.

use std::fmt;

use serde::{Deserialize, Serialize};
use weir_core::prelude::*;

/// One event line: `<timestamp-ms> <user> <anything...>`.
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

/// A closed session.
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

impl Processor for Sessionizer {
    type Key = String;
    type In = String;
    type Out = Session;

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
        let mut state = ctx.value_state::<Session>("session")?;
        let current = state.get()?;
        let session = match current {
            Some(mut s) if ts <= s.end + gap => {
                let old_deadline = s.end + gap;
                s.start = s.start.min(ts);
                s.end = s.end.max(ts);
                s.events += 1;
                state.put(&s)?;
                ctx.delete_timer(TimeDomain::EventTime, old_deadline);
                s
            }
            previous => {
                let s = Session {
                    start: ts,
                    end: ts,
                    events: 1,
                };
                state.put(&s)?;
                if let Some(p) = previous {
                    // A late gap: the old session is over.
                    ctx.delete_timer(TimeDomain::EventTime, p.end + gap);
                    ctx.emit(rec.key.clone(), p);
                }
                s
            }
        };
        ctx.register_event_timer(session.end + gap);
        Ok(())
    }

    async fn on_timer(&mut self, timer: Timer<String>, ctx: &mut Context<'_, Self>) -> Result<()> {
        let mut state = ctx.value_state::<Session>("session")?;
        if let Some(s) = state.get()? {
            if s.end + self.gap_ms == timer.timestamp {
                state.clear();
                ctx.emit(timer.key, s);
            }
        }
        Ok(())
    }
}
