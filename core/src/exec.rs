//! Running one processor over records and timers, shared by the runtime
//! and the [`TestDriver`](crate::testing::TestDriver) so that both behave alike.

use std::ops::Range;

use crate::keygroup::key_group;
use crate::state::StateBackend;
use crate::timer::TimerQueues;
use crate::{Codec, Context, Error, Processor, Record, Result, TimeDomain, Timer};

/// A record emitted to a named sink, its type erased until the sink takes it.
pub struct SideRecord {
    /// The sink's name.
    pub sink: &'static str,
    /// A boxed `Record<K, V>`.
    pub record: Box<dyn std::any::Any + Send>,
    /// `Record<K, V>`'s type name, for the error when the sink expects another.
    pub type_name: &'static str,
}

/// The clocks and state a node runs against.
pub struct NodeEnv<'a> {
    /// The worker's state.
    pub state: &'a mut dyn StateBackend,
    /// Current event-time watermark.
    pub watermark: i64,
    /// Current processing time.
    pub now: i64,
}

/// One processor instance with its timers and output buffer.
pub struct KeyedNode<P: Processor> {
    processor: P,
    node: u16,
    key_groups: u16,
    timers: TimerQueues,
    out: Vec<Record<P::Key, P::Out>>,
    side: Vec<SideRecord>,
    key_buf: Vec<u8>,
    state_key: Vec<u8>,
    /// The current record's key, for [`Context::key`]: refilled with
    /// `clone_from`, which reuses its buffers (no allocation per record
    /// for a `String` key).
    key_slot: Option<P::Key>,
}

impl<P: Processor> KeyedNode<P> {
    /// Node `node` (its index in the pipeline, part of its state keys).
    pub fn new(processor: P, node: u16, key_groups: u16) -> Self {
        KeyedNode {
            processor,
            node,
            key_groups,
            timers: TimerQueues::new(node),
            out: Vec::new(),
            side: Vec::new(),
            key_buf: Vec::new(),
            state_key: Vec::new(),
            key_slot: None,
        }
    }

    /// Loads the node's timers for `groups` and calls [`Processor::open`].
    pub async fn open(&mut self, state: &mut dyn StateBackend, groups: Range<u16>) -> Result<()> {
        self.timers.load(state, groups)?;
        self.processor.open().await
    }

    /// Calls [`Processor::close`].
    pub async fn close(&mut self) -> Result<()> {
        self.processor.close().await
    }

    /// Runs the processor on one record; its output is buffered.
    pub async fn process(
        &mut self,
        record: Record<P::Key, P::In>,
        env: &mut NodeEnv<'_>,
    ) -> Result<()> {
        self.key_buf.clear();
        record.key.encode_into(&mut self.key_buf)?;
        let group = key_group(&self.key_buf, self.key_groups);
        let key: &P::Key = match &mut self.key_slot {
            Some(k) => {
                k.clone_from(&record.key);
                k
            }
            slot @ None => slot.insert(record.key.clone()),
        };
        let mut ctx = Context::<P> {
            state: &mut *env.state,
            timers: &mut self.timers,
            out: &mut self.out,
            side: &mut self.side,
            key,
            key_bytes: &self.key_buf,
            state_key: &mut self.state_key,
            group,
            node: self.node,
            timestamp: record.timestamp,
            watermark: env.watermark,
            now: env.now,
        };
        self.processor
            .process(record, &mut ctx)
            .await
            .map_err(|e| processor_error::<P>(e))
    }

    /// Fires every timer due at the env's clocks, event time first; returns
    /// how many fired. Their output is buffered.
    pub async fn fire_due(&mut self, env: &mut NodeEnv<'_>) -> Result<usize> {
        let mut fired = 0;
        for (domain, upto) in [
            (TimeDomain::EventTime, env.watermark),
            (TimeDomain::ProcessingTime, env.now),
        ] {
            while let Some((ts, group, key_bytes)) = self.timers.pop_due(env.state, domain, upto) {
                let key = P::Key::decode(&key_bytes)?;
                let mut ctx = Context::<P> {
                    state: &mut *env.state,
                    timers: &mut self.timers,
                    out: &mut self.out,
                    side: &mut self.side,
                    key: &key,
                    key_bytes: &key_bytes,
                    state_key: &mut self.state_key,
                    group,
                    node: self.node,
                    timestamp: (domain == TimeDomain::EventTime).then_some(ts),
                    watermark: env.watermark,
                    now: env.now,
                };
                let timer = Timer {
                    key: key.clone(),
                    timestamp: ts,
                    domain,
                };
                self.processor
                    .on_timer(timer, &mut ctx)
                    .await
                    .map_err(|e| processor_error::<P>(e))?;
                fired += 1;
            }
        }
        Ok(fired)
    }

    /// True when timers are pending.
    pub fn has_timers(&self) -> bool {
        !self.timers.is_empty()
    }

    /// Takes the buffered output.
    pub fn take_output(&mut self) -> Vec<Record<P::Key, P::Out>> {
        std::mem::take(&mut self.out)
    }

    /// Takes the records emitted to named sinks.
    pub fn take_side_output(&mut self) -> Vec<SideRecord> {
        std::mem::take(&mut self.side)
    }

    /// Moves the buffered output into `out`.
    pub fn drain_output_into(&mut self, out: &mut Vec<Record<P::Key, P::Out>>) {
        out.append(&mut self.out);
    }
}

/// Wraps a user error with the processor's name; state and codec errors pass.
fn processor_error<P>(e: Error) -> Error {
    match e {
        Error::User(message) => Error::Processor {
            processor: std::any::type_name::<P>().to_owned(),
            message,
        },
        other => other,
    }
}
