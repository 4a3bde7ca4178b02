use crate::exec::SideRecord;
use crate::state::{
    keyed_key, keyed_key_into, MapState, StateBackend, ValueState, KEYED_TAG, MAP_TAG,
};
use crate::timer::TimerQueues;
use crate::{Codec, Processor, Record, Result, TimeDomain};

/// What a processor sees while it handles one record or timer: the current
/// key's state, its timers, the clocks, and the output.
pub struct Context<'a, P: Processor> {
    pub(crate) state: &'a mut dyn StateBackend,
    pub(crate) timers: &'a mut TimerQueues,
    pub(crate) out: &'a mut Vec<Record<P::Key, P::Out>>,
    pub(crate) side: &'a mut Vec<SideRecord>,
    pub(crate) key: &'a P::Key,
    pub(crate) key_bytes: &'a [u8],
    /// Reused for the state key of `value_state`.
    pub(crate) state_key: &'a mut Vec<u8>,
    pub(crate) group: u16,
    pub(crate) node: u16,
    /// Where the record's first value state's name goes (then `None`):
    /// the node predicts from it which state the next records will read.
    pub(crate) first_value_state: Option<&'a mut Option<&'static str>>,
    pub(crate) timestamp: Option<i64>,
    pub(crate) watermark: i64,
    pub(crate) now: i64,
}

impl<'a, P: Processor> Context<'a, P> {
    /// The key of the record or timer being handled.
    pub fn key(&self) -> &P::Key {
        self.key
    }

    /// The event timestamp of the record (or event-time timer) being handled.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// The current event-time watermark: no record older than it is expected.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// The current processing time (milliseconds since the Unix epoch).
    pub fn now(&self) -> i64 {
        self.now
    }

    /// The current key's value state called `name`.
    ///
    /// # Errors
    /// If `name` is empty or longer than 255 bytes.
    pub fn value_state<T: Codec>(&mut self, name: &'static str) -> Result<ValueState<'_, T>> {
        keyed_key_into(
            self.state_key,
            KEYED_TAG,
            self.group,
            self.node,
            name,
            self.key_bytes,
        )?;
        if let Some(first) = self.first_value_state.take() {
            *first = Some(name);
        }
        Ok(ValueState::new(self.state, self.state_key, name))
    }

    /// The current key's map state called `name`.
    ///
    /// # Errors
    /// If `name` is empty or longer than 255 bytes.
    pub fn map_state<K: Codec, V: Codec>(
        &mut self,
        name: &'static str,
    ) -> Result<MapState<'_, K, V>> {
        let prefix = keyed_key(MAP_TAG, self.group, self.node, name, self.key_bytes)?;
        Ok(MapState::new(self.state, prefix, name))
    }

    /// Emits a record downstream under `key`, stamped with the current
    /// record's timestamp.
    pub fn emit(&mut self, key: P::Key, value: P::Out) {
        self.out.push(Record {
            key,
            value,
            timestamp: self.timestamp,
            headers: Vec::new(),
        });
    }

    /// Emits a fully formed record downstream.
    pub fn emit_record(&mut self, record: Record<P::Key, P::Out>) {
        self.out.push(record);
    }

    /// Emits a record to the named sink `sink` (declared on the pipeline
    /// with the same key and value types), beside the main output: late
    /// events, rejects, alerts. It commits with the epoch like all output.
    pub fn emit_to<K: Send + 'static, V: Send + 'static>(
        &mut self,
        sink: &'static str,
        key: K,
        value: V,
    ) {
        self.side.push(SideRecord {
            sink,
            record: Box::new(Record {
                key,
                value,
                timestamp: self.timestamp,
                headers: Vec::new(),
            }),
            type_name: std::any::type_name::<Record<K, V>>(),
        });
    }

    /// Fires [`Processor::on_timer`] for the current key once the watermark
    /// reaches `ts`. Registering the same time twice fires once.
    pub fn register_event_timer(&mut self, ts: i64) {
        self.timers.register(
            self.state,
            TimeDomain::EventTime,
            self.group,
            self.key_bytes,
            ts,
        );
    }

    /// Fires [`Processor::on_timer`] for the current key once the wall clock
    /// reaches `ts`.
    pub fn register_processing_timer(&mut self, ts: i64) {
        self.timers.register(
            self.state,
            TimeDomain::ProcessingTime,
            self.group,
            self.key_bytes,
            ts,
        );
    }

    /// Cancels a timer of the current key, if registered.
    pub fn delete_timer(&mut self, domain: TimeDomain, ts: i64) {
        self.timers
            .delete(self.state, domain, self.group, self.key_bytes, ts);
    }
}
