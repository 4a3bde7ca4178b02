//! Timers: per key, in event time (fired by the watermark) or processing
//! time (fired by the wall clock). They are state: registered in an epoch,
//! they are committed or rolled back with it.

use std::collections::BTreeSet;

use crate::state::{StateBackend, TIMER_TAG};
use crate::Result;

/// Which clock fires a timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeDomain {
    /// Fired when the watermark passes the timestamp.
    EventTime,
    /// Fired when the wall clock passes the timestamp.
    ProcessingTime,
}

impl TimeDomain {
    fn tag(self) -> u8 {
        match self {
            TimeDomain::EventTime => 0,
            TimeDomain::ProcessingTime => 1,
        }
    }
}

/// A timer that fired, handed to [`Processor::on_timer`](crate::Processor::on_timer).
#[derive(Debug, Clone, PartialEq)]
pub struct Timer<K> {
    /// The key the timer was registered for.
    pub key: K,
    /// Its timestamp (milliseconds).
    pub timestamp: i64,
    /// Its clock.
    pub domain: TimeDomain,
}

fn ts_bytes(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

fn timer_prefix(group: u16, node: u16) -> Vec<u8> {
    let mut k = Vec::with_capacity(32);
    k.push(TIMER_TAG);
    k.extend_from_slice(&group.to_be_bytes());
    k.extend_from_slice(&node.to_be_bytes());
    k
}

fn timer_key(group: u16, node: u16, domain: TimeDomain, ts: i64, key: &[u8]) -> Vec<u8> {
    let mut k = timer_prefix(group, node);
    k.push(domain.tag());
    k.extend_from_slice(&ts_bytes(ts));
    k.extend_from_slice(key);
    k
}

/// An entry of the timer queue: timestamp, key group, encoded key.
type Entry = (i64, u16, Vec<u8>);

/// The timers of one processor node in one worker: an in-memory queue per
/// clock, mirrored in state so that they survive a crash.
#[derive(Debug, Default)]
pub struct TimerQueues {
    node: u16,
    event: BTreeSet<Entry>,
    processing: BTreeSet<Entry>,
}

impl TimerQueues {
    /// Empty queues for processor node `node`.
    pub fn new(node: u16) -> Self {
        TimerQueues {
            node,
            ..Default::default()
        }
    }

    fn queue(&mut self, domain: TimeDomain) -> &mut BTreeSet<Entry> {
        match domain {
            TimeDomain::EventTime => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        }
    }

    /// Reloads the timers of the key groups in `groups` from state.
    pub fn load(
        &mut self,
        state: &mut dyn StateBackend,
        groups: impl IntoIterator<Item = u16>,
    ) -> Result<()> {
        self.event.clear();
        self.processing.clear();
        for g in groups {
            let prefix = timer_prefix(g, self.node);
            for (k, _) in state.scan_prefix(&prefix)? {
                let rest = &k[prefix.len()..];
                if rest.len() < 9 {
                    continue;
                }
                let mut tsb = [0u8; 8];
                tsb.copy_from_slice(&rest[1..9]);
                let ts = (u64::from_be_bytes(tsb) ^ (1 << 63)) as i64;
                let entry = (ts, g, rest[9..].to_vec());
                match rest[0] {
                    0 => self.event.insert(entry),
                    _ => self.processing.insert(entry),
                };
            }
        }
        Ok(())
    }

    /// Registers a timer (idempotent).
    pub fn register(
        &mut self,
        state: &mut dyn StateBackend,
        domain: TimeDomain,
        group: u16,
        key: &[u8],
        ts: i64,
    ) {
        let node = self.node;
        // The queue holds every timer of the worker's key groups: one it
        // did not hold is in no committed state either.
        if self.queue(domain).insert((ts, group, key.to_vec())) {
            state.put_new(timer_key(group, node, domain, ts, key), Vec::new());
        }
    }

    /// Deletes a timer, if registered.
    pub fn delete(
        &mut self,
        state: &mut dyn StateBackend,
        domain: TimeDomain,
        group: u16,
        key: &[u8],
        ts: i64,
    ) {
        let node = self.node;
        if self.queue(domain).remove(&(ts, group, key.to_vec())) {
            state.delete(timer_key(group, node, domain, ts, key));
        }
    }

    /// Removes and returns the earliest timer of `domain` due at `upto`.
    pub fn pop_due(
        &mut self,
        state: &mut dyn StateBackend,
        domain: TimeDomain,
        upto: i64,
    ) -> Option<(i64, u16, Vec<u8>)> {
        let node = self.node;
        let q = self.queue(domain);
        let first = q.first()?;
        if first.0 > upto {
            return None;
        }
        let entry = q.pop_first()?;
        state.delete(timer_key(entry.1, node, domain, entry.0, &entry.2));
        Some(entry)
    }

    /// Number of pending timers of both clocks.
    pub fn len(&self) -> usize {
        self.event.len() + self.processing.len()
    }

    /// True when no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
