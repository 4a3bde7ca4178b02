//! Running one processor over records and timers, shared by the runtime
//! and the [`TestDriver`](crate::testing::TestDriver) so that both behave alike.

use std::sync::Arc;

use crate::keygroup::key_group;
use crate::open::Settings;
use crate::state::{
    keyed_key_into, Declarations, Declared, StateBackend, KEYED_TAG, KEYED_TTL_TAG,
};
use crate::timer::TimerQueues;
use crate::{Codec, Context, Error, OpenContext, Processor, Record, Result, TimeDomain, Timer};

/// A record emitted to a named sink, its type erased until the sink takes it.
pub struct SideRecord {
    /// The sink's name.
    pub sink: &'static str,
    /// A boxed `Record<K, V>`.
    pub record: Box<dyn std::any::Any + Send>,
    /// `Record<K, V>`'s type name, for the error when the sink expects another.
    pub type_name: &'static str,
}

/// The encoded keys of a batch of records and their key groups, in the
/// records' order: what the exchange computed to route them, handed on so
/// that the keyed node after it does not encode and hash each key again.
#[derive(Debug, Default)]
pub struct EncodedKeys {
    bytes: Vec<u8>,
    ends: Vec<u32>,
    groups: Vec<u16>,
}

impl EncodedKeys {
    /// Room for `records` keys of about `bytes_each` bytes.
    pub fn with_capacity(records: usize, bytes_each: usize) -> Self {
        EncodedKeys {
            bytes: Vec::with_capacity(records * bytes_each),
            ends: Vec::with_capacity(records),
            groups: Vec::with_capacity(records),
        }
    }

    /// Appends the next record's encoded key and its key group.
    ///
    /// # Errors
    /// If the keys of one batch exceed 4 GiB.
    pub fn push(&mut self, key_bytes: &[u8], group: u16) -> Result<()> {
        self.bytes.extend_from_slice(key_bytes);
        let end = u32::try_from(self.bytes.len()).map_err(|_| {
            Error::State("a batch's keys exceed 4 GiB; lower `batch_size`".to_owned())
        })?;
        self.ends.push(end);
        self.groups.push(group);
        Ok(())
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The `i`th key's bytes and key group.
    pub fn get(&self, i: usize) -> Option<(&[u8], u16)> {
        let end = *self.ends.get(i)? as usize;
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1] as usize,
        };
        Some((&self.bytes[start..end], self.groups[i]))
    }
}

/// The clocks and state a node runs against.
pub struct NodeEnv<'a> {
    /// The worker's state.
    pub state: &'a mut dyn StateBackend,
    /// Current event-time watermark.
    pub watermark: i64,
    /// Each source input's own watermark (see
    /// [`Context::input_watermark`]), by input number.
    pub inputs: &'a [i64],
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
    /// What the processor declared.
    declared: Declared,
    /// The value state the last record read first (and whether it
    /// expires): the one a record further on is likely to read (see
    /// [`prefetch`](Self::prefetch)).
    predicted: Option<(&'static str, bool)>,
    /// The state key [`prefetch`](Self::prefetch) builds.
    prefetch_key: Vec<u8>,
    /// Records dropped as late since [`take_late`](Self::take_late).
    late: u64,
    /// The key groups this node's worker holds, when it holds only some:
    /// a record of another key group is refused (see [`hold`](Self::hold)).
    held: Option<GroupSet>,
}

/// A set of key groups.
#[derive(Debug, Clone)]
pub struct GroupSet(Vec<bool>);

impl GroupSet {
    /// The groups `groups` of `key_groups`.
    pub fn of(groups: &[u16], key_groups: u16) -> Self {
        let mut held = vec![false; usize::from(key_groups)];
        for g in groups {
            if let Some(h) = held.get_mut(usize::from(*g)) {
                *h = true;
            }
        }
        GroupSet(held)
    }

    /// Whether it holds `group`.
    pub fn contains(&self, group: u16) -> bool {
        self.0.get(usize::from(group)).copied().unwrap_or(false)
    }
}

impl<P: Processor> KeyedNode<P> {
    /// Node `node` (its index in the pipeline, part of its state keys).
    /// `declared` is what the processor declares (see [`declarations`]),
    /// checked when the pipeline was built.
    pub fn new(processor: P, node: u16, key_groups: u16, declared: Declared) -> Self {
        KeyedNode {
            declared,
            processor,
            node,
            key_groups,
            timers: TimerQueues::new(node),
            out: Vec::new(),
            side: Vec::new(),
            key_buf: Vec::new(),
            state_key: Vec::new(),
            key_slot: None,
            predicted: None,
            prefetch_key: Vec::new(),
            late: 0,
            held: None,
        }
    }

    /// Runs the node in a worker that holds key groups `groups` only. A
    /// record that reaches it other than through the exchange (from a
    /// processor before it) whose key is in another group is refused: its
    /// state would be written where no worker that owns it looks. The
    /// exchange never sends one (it routes by key group).
    pub fn hold(&mut self, groups: &[u16]) {
        self.held = Some(GroupSet::of(groups, self.key_groups));
    }

    /// Why a record of key group `group`, which the worker does not hold,
    /// is refused.
    fn foreign_key(&self, group: u16) -> Error {
        Error::Config(format!(
            "processor `{}` was handed a record whose key is in key group {group}, which another worker holds: the processor before it emitted a key other than the one it was given, and state kept under it here would be lost to the worker that owns it. Emit the key a processor is given when a stateful processor follows it, or key the records again before the next processor (`.key_by(..)` after the first), which routes each to the worker owning its new key",
            std::any::type_name::<P>()
        ))
    }

    /// Loads the node's timers for `groups` and calls [`Processor::open`]
    /// for worker `task` at processing time `now`.
    pub async fn open(
        &mut self,
        state: &mut dyn StateBackend,
        task: &str,
        groups: &[u16],
        now: i64,
        settings: &dyn Settings,
    ) -> Result<()> {
        self.timers.load(state, groups.iter().copied())?;
        let declared = self.declared.clone();
        let mut ctx = OpenContext::new(task, groups, self.key_groups, now, &declared, settings);
        self.processor
            .open(&mut ctx)
            .await
            .map_err(processor_error::<P>)
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
        let mut key_buf = std::mem::take(&mut self.key_buf);
        key_buf.clear();
        let result = match crate::encode_key(&record.key, &mut key_buf) {
            Ok(()) => {
                let group = key_group(&key_buf, self.key_groups);
                match self.held.as_ref().is_some_and(|h| !h.contains(group)) {
                    true => Err(self.foreign_key(group)),
                    false => self.process_encoded(record, &key_buf, group, env).await,
                }
            }
            Err(e) => Err(e),
        };
        self.key_buf = key_buf;
        result
    }

    /// [`process`](Self::process) for a record whose key is already
    /// encoded (`key_bytes`) and placed in its key `group`, as the
    /// exchange did to route it: neither is computed again.
    pub async fn process_encoded(
        &mut self,
        record: Record<P::Key, P::In>,
        key_bytes: &[u8],
        group: u16,
        env: &mut NodeEnv<'_>,
    ) -> Result<()> {
        debug_assert_eq!(group, key_group(key_bytes, self.key_groups));
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
            key_bytes,
            state_key: &mut self.state_key,
            group,
            node: self.node,
            declared: &self.declared,
            first_value_state: Some(&mut self.predicted),
            timestamp: record.timestamp,
            watermark: env.watermark,
            inputs: env.inputs,
            now: env.now,
            late: &mut self.late,
        };
        self.processor
            .process(record, &mut ctx)
            .await
            .map_err(|e| processor_error::<P>(e))
    }

    /// Tells `state` that a record further on, with `key_bytes` in key
    /// `group`, is likely to read the value state the last record read
    /// first, so that its memory is on its way into the CPU cache by then
    /// (a lookup in a large state otherwise waits on a cache miss).
    pub fn prefetch(&mut self, key_bytes: &[u8], group: u16, state: &mut dyn StateBackend) {
        if let Some((name, expires)) = self.predicted {
            let built = keyed_key_into(
                &mut self.prefetch_key,
                if expires { KEYED_TTL_TAG } else { KEYED_TAG },
                group,
                self.node,
                name,
                key_bytes,
            );
            if built.is_ok() {
                state.prefetch(&self.prefetch_key);
            }
        }
    }

    /// Fires every timer due at the env's clocks, event time first; returns
    /// how many fired. Their output is buffered.
    pub async fn fire_due(&mut self, env: &mut NodeEnv<'_>) -> Result<usize> {
        let mut fired = 0;
        // An input's own watermark, when the timers follow one.
        let event_upto = match self.declared.timer_input() {
            Some(input) => env
                .inputs
                .get(input)
                .map_or(env.watermark, |w| (*w).max(env.watermark)),
            None => env.watermark,
        };
        for (domain, upto) in [
            (TimeDomain::EventTime, event_upto),
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
                    declared: &self.declared,
                    first_value_state: None,
                    timestamp: (domain == TimeDomain::EventTime).then_some(ts),
                    watermark: env.watermark,
                    inputs: env.inputs,
                    now: env.now,
                    late: &mut self.late,
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

    /// How many records were dropped as late since the last call.
    pub fn take_late(&mut self) -> u64 {
        std::mem::take(&mut self.late)
    }

    /// True when timers are pending.
    pub fn has_timers(&self) -> bool {
        !self.timers.is_empty()
    }

    /// Takes the buffered output, leaving room for as much again (an
    /// output vector grown record by record would reallocate and copy
    /// about ten times per batch).
    pub fn take_output(&mut self) -> Vec<Record<P::Key, P::Out>> {
        let room = self.out.len();
        std::mem::replace(&mut self.out, Vec::with_capacity(room))
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

/// What `processor` declares, checked: the stores and side outputs its
/// nodes are built with.
///
/// # Errors
/// A bad declaration (see [`Declarations::check`]).
pub fn declarations<P: Processor>(processor: &P) -> Result<Declared> {
    let mut d = Declarations::default();
    processor.declare(&mut d);
    d.check(std::any::type_name::<P>())?;
    Ok(Arc::new(d))
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
