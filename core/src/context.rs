use crate::exec::SideRecord;
use crate::output::OutputTag;
use crate::state::{Declarations, Place, StateBackend, StateDescriptor, StateKind, StateSpec};
use crate::timer::TimerQueues;
use crate::{Error, Processor, Record, Result, TimeDomain};

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
    /// What the processor declared: every handle is checked against it.
    pub(crate) declared: &'a Declarations,
    /// Where the record's first value state's name goes (then `None`),
    /// with whether it has a time to live: the node predicts from it which
    /// state the next records will read.
    pub(crate) first_value_state: Option<&'a mut Option<(&'static str, bool)>>,
    pub(crate) timestamp: Option<i64>,
    pub(crate) watermark: i64,
    pub(crate) inputs: &'a [i64],
    pub(crate) now: i64,
    /// Records dropped as late (see [`count_late`](Self::count_late)).
    pub(crate) late: &'a mut u64,
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

    /// The watermark of the source's input `input` alone (`KafkaSource::and`'s
    /// topics and `Union`'s sides, numbered from 0 in order): no record of
    /// that input older than it is expected: the least over its partitions,
    /// where a finished one holds nothing back, an idle one holds it where
    /// it was, and one read to its end lets it rise to a little before the
    /// time its end was seen. Never below [`watermark`](Self::watermark);
    /// that watermark for an input the source does not have, and in a run
    /// that does not hold every partition of the source.
    pub fn input_watermark(&self, input: usize) -> i64 {
        self.inputs
            .get(input)
            .map_or(self.watermark, |w| (*w).max(self.watermark))
    }

    /// The current processing time (milliseconds since the Unix epoch).
    pub fn now(&self) -> i64 {
        self.now
    }

    /// The current key's entry of the store `descriptor` declares: a
    /// [`ValueState`](crate::ValueState), [`MapState`](crate::MapState) or
    /// [`ListState`](crate::ListState).
    ///
    /// # Errors
    /// If the processor does not declare the store (see
    /// [`Processor::declare`]), or declares it with other types.
    pub fn state<D: StateDescriptor>(&mut self, descriptor: &D) -> Result<D::Handle<'_>> {
        let name = descriptor.name();
        let (kind, type_id) = descriptor.identity();
        if !self
            .declared
            .declares(name, kind, type_id, descriptor.expires())
        {
            return Err(undeclared::<P>(self.declared, &descriptor.spec()));
        }
        if kind == StateKind::Value {
            if let Some(first) = self.first_value_state.take() {
                *first = Some((name, descriptor.expires()));
            }
        }
        descriptor.handle(Place {
            backend: &mut *self.state,
            group: self.group,
            node: self.node,
            key: self.key_bytes,
            buf: self.state_key,
            now: self.now,
        })
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

    /// Emits a record to the side output `tag`, beside the main output
    /// (late events, rejects, alerts), stamped with the current record's
    /// timestamp. It commits with the epoch like all output.
    ///
    /// # Errors
    /// If the processor does not declare the tag (see [`Processor::declare`]).
    pub fn output<K: Send + 'static, V: Send + 'static>(
        &mut self,
        tag: &OutputTag<K, V>,
        key: K,
        value: V,
    ) -> Result<()> {
        let record = Record {
            key,
            value,
            timestamp: self.timestamp,
            headers: Vec::new(),
        };
        self.output_record(tag, record)
    }

    /// [`output`](Self::output) of a fully formed record.
    ///
    /// # Errors
    /// If the processor does not declare the tag.
    pub fn output_record<K: Send + 'static, V: Send + 'static>(
        &mut self,
        tag: &OutputTag<K, V>,
        record: Record<K, V>,
    ) -> Result<()> {
        let spec = tag.spec();
        if !self.declared.has_output(spec.name, spec.type_id()) {
            return Err(Error::Config(format!(
                "processor `{}` emits to the side output `{}` ({}), which it does not declare; add `d.output(&TAG)` to its `declare`",
                std::any::type_name::<P>(),
                spec.name,
                spec.types
            )));
        }
        self.side.push(SideRecord {
            sink: spec.name,
            record: Box::new(record),
            type_name: spec.types,
        });
        Ok(())
    }

    /// Counts a record dropped because it came too late (after the window
    /// or session it belongs to closed), in `weir_late_records_total`.
    pub fn count_late(&mut self) {
        *self.late += 1;
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

/// Why a handle of the store `wanted` is refused to processor `P`.
fn undeclared<P>(declared: &Declarations, wanted: &StateSpec) -> Error {
    let processor = std::any::type_name::<P>();
    match declared.states().iter().find(|s| s.name == wanted.name) {
        Some(s) => Error::Config(format!(
            "processor `{processor}` reads the state `{}` as {}, but declares it as {}; use the descriptor it declares",
            wanted.name,
            wanted.signature(),
            s.signature()
        )),
        None => Error::Config(format!(
            "processor `{processor}` reads the state {wanted}, which it does not declare; add `d.state(&DESCRIPTOR)` to its `declare`"
        )),
    }
}
