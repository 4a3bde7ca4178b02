//! Windows: a keyed stream's records grouped by time, aggregated in state
//! and emitted once the window closes (or on every update), built on
//! timers like any processor. Window state lives in the processor's
//! declared stores, namespaced by window, so it is checkpointed, restored
//! and rolled back exactly like any keyed state.
//!
//! - [`Windows`]: tumbling and hopping windows, in event time (closed by
//!   the watermark, after a grace period) or processing time (closed by
//!   the wall clock).
//! - [`Sessions`]: session windows in event time, merged when a record
//!   bridges two of them.
//! - [`Aggregate`]: how a window's records become its result
//!   ([`Count`], [`Reduce`], or your own accumulator); [`WindowFunction`]
//!   when the result needs stores of its own (a set of distinct users),
//!   kept per window without decoding an accumulator for every record.

mod aggregate;
mod operator;
mod session;

pub use aggregate::{Aggregate, Count, Reduce};
pub use operator::{Accumulate, WindowFunction, WindowOperator, WindowState};
pub use session::SessionOperator;

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A window's result: its bounds and its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Windowed<T> {
    /// First millisecond of the window (inclusive).
    pub start: i64,
    /// End of the window (exclusive).
    pub end: i64,
    /// What its records aggregated to.
    pub value: T,
}

/// When a window's result is emitted, as Kafka Streams' `suppress` chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Emit {
    /// Once, when the window closes (its end plus the grace period has
    /// passed in event time): the final result, never revised.
    #[default]
    Final,
    /// After every record, the result so far; nothing more at the close.
    EveryUpdate,
}

/// Which clock assigns records to windows and closes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The record's event time; a window closes when the watermark passes
    /// its end plus the grace period.
    Event,
    /// The processing time at which the record is handled; a window closes
    /// when the wall clock passes its end.
    Processing,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Tumbling or hopping windows of a fixed size, aligned to the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    size: i64,
    advance: i64,
    grace: i64,
    clock: Clock,
}

impl Windows {
    /// Back-to-back windows of `size`: each record is in exactly one.
    pub fn tumbling(size: Duration) -> Self {
        let size = millis(size).max(1);
        Windows {
            size,
            advance: size,
            grace: 0,
            clock: Clock::Event,
        }
    }

    /// Windows of `size` starting every `advance` (at most `size`): each
    /// record is in `size / advance` of them.
    pub fn hopping(size: Duration, advance: Duration) -> Self {
        let size = millis(size).max(1);
        Windows {
            size,
            advance: millis(advance).clamp(1, size),
            grace: 0,
            clock: Clock::Event,
        }
    }

    /// How long after its end a window still takes records (allowed
    /// lateness): it closes when the watermark reaches its end plus
    /// `grace`. A record later than that is late (see the window's late
    /// output). Without it, a window closes at its end.
    pub fn grace(mut self, grace: Duration) -> Self {
        if self.clock == Clock::Event {
            self.grace = millis(grace).max(0);
        }
        self
    }

    /// Windows of processing time: a record falls in the window of the
    /// moment it is handled, and windows close by the wall clock (there
    /// is no lateness, and no grace).
    pub fn processing_time(mut self) -> Self {
        self.clock = Clock::Processing;
        self.grace = 0;
        self
    }

    /// The size, in ms.
    pub fn size_ms(&self) -> i64 {
        self.size
    }

    /// The grace period, in ms.
    pub fn grace_ms(&self) -> i64 {
        self.grace
    }

    /// The clock.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The starts of the windows that hold time `t`, earliest first.
    pub fn starts(&self, t: i64) -> impl Iterator<Item = i64> {
        let last = t - t.rem_euclid(self.advance);
        let (size, advance) = (self.size, self.advance);
        let count = (size + advance - 1) / advance;
        (0..count)
            .rev()
            .map(move |k| last - k * advance)
            .filter(move |s| *s <= t && t < s + size)
    }

    /// When the window that ends at `end` closes: its end plus the grace.
    pub fn closes_at(&self, end: i64) -> i64 {
        end.saturating_add(self.grace)
    }

    /// A short description for the pipeline's topology.
    pub fn describe(&self) -> String {
        let clock = match self.clock {
            Clock::Event => "",
            Clock::Processing => ",processing-time",
        };
        match self.size == self.advance {
            true => format!("tumbling({}ms,grace={}ms{clock})", self.size, self.grace),
            false => format!(
                "hopping({}ms,every={}ms,grace={}ms{clock})",
                self.size, self.advance, self.grace
            ),
        }
    }
}

/// Session windows in event time: a key's records belong to one session
/// until it is inactive for longer than the gap; a record that bridges two
/// sessions merges them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sessions {
    gap: i64,
    grace: i64,
}

impl Sessions {
    /// Sessions closed by `gap` of inactivity.
    pub fn with_gap(gap: Duration) -> Self {
        Sessions {
            gap: millis(gap).max(1),
            grace: 0,
        }
    }

    /// How long after a session's end it still takes records.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = millis(grace).max(0);
        self
    }

    /// The gap, in ms.
    pub fn gap_ms(&self) -> i64 {
        self.gap
    }

    /// A short description for the pipeline's topology.
    pub fn describe(&self) -> String {
        format!("sessions(gap={}ms,grace={}ms)", self.gap, self.grace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_is_in_one_tumbling_window_and_in_size_over_advance_hopping_ones() {
        let t = Windows::tumbling(Duration::from_secs(60));
        assert_eq!(t.starts(0).collect::<Vec<_>>(), [0]);
        assert_eq!(t.starts(59_999).collect::<Vec<_>>(), [0]);
        assert_eq!(t.starts(60_000).collect::<Vec<_>>(), [60_000]);
        assert_eq!(t.starts(-1).collect::<Vec<_>>(), [-60_000]);
        let h = Windows::hopping(Duration::from_secs(60), Duration::from_secs(20));
        assert_eq!(
            h.starts(65_000).collect::<Vec<_>>(),
            [20_000, 40_000, 60_000]
        );
        assert_eq!(
            h.starts(60_000).collect::<Vec<_>>(),
            [20_000, 40_000, 60_000]
        );
        // An advance that does not divide the size.
        let odd = Windows::hopping(Duration::from_millis(10), Duration::from_millis(4));
        assert_eq!(odd.starts(9).collect::<Vec<_>>(), [0, 4, 8]);
        assert_eq!(odd.starts(11).collect::<Vec<_>>(), [4, 8]);
    }
}
