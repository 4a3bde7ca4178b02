//! [`TestDriver`]: runs one processor in memory, with checkpoints and
//! simulated crashes, without a broker or a disk; [`PipelineDriver`]
//! (built by a [`Chain`]) runs several, keyed again between them.

mod chain;

pub use chain::{Chain, PipelineDriver};

use std::collections::BTreeMap;

use crate::exec::{declarations, KeyedNode, NodeEnv, SideRecord};
use crate::keygroup::{key_group, DEFAULT_KEY_GROUPS};
use crate::state::{
    Declared, ListDescriptor, MapDescriptor, Place, StateBackend, StateDescriptor, ValueDescriptor,
};
use crate::{Codec, Key, OutputTag, Processor, Record, Result, Serde};

/// Committed state plus an overlay of the open epoch's writes.
#[derive(Default)]
struct MemState {
    committed: BTreeMap<Vec<u8>, Vec<u8>>,
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl MemState {
    /// The handle of `key`'s entry of the store `descriptor` of processor
    /// `node`, as the processor would reach it at processing time `now`.
    fn handle<'a, K: Key, D: StateDescriptor>(
        &'a mut self,
        node: u16,
        key: &K,
        descriptor: &D,
        now: i64,
        buf: &'a mut Vec<u8>,
        key_bytes: &'a mut Vec<u8>,
    ) -> Result<D::Handle<'a>> {
        crate::encode_key(key, key_bytes)?;
        descriptor.handle(Place {
            group: key_group(key_bytes, DEFAULT_KEY_GROUPS),
            backend: self,
            node,
            key: key_bytes,
            buf,
            now,
        })
    }

    /// Makes the open epoch's writes committed.
    fn commit(&mut self) {
        for (k, v) in std::mem::take(&mut self.overlay) {
            match v {
                Some(v) => self.committed.insert(k, v),
                None => self.committed.remove(&k),
            };
        }
    }
}

impl StateBackend for MemState {
    fn get(&mut self, key: &[u8]) -> Result<Option<&[u8]>> {
        Ok(match self.overlay.get(key) {
            Some(v) => v.as_deref(),
            None => self.committed.get(key).map(Vec::as_slice),
        })
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.overlay.insert(key, Some(value));
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.overlay.insert(key, None);
    }

    fn scan_prefix(&mut self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut merged: BTreeMap<&[u8], Option<&[u8]>> = BTreeMap::new();
        for (k, v) in self.committed.range(prefix.to_vec()..) {
            if !k.starts_with(prefix) {
                break;
            }
            merged.insert(k, Some(v));
        }
        for (k, v) in self.overlay.range(prefix.to_vec()..) {
            if !k.starts_with(prefix) {
                break;
            }
            merged.insert(k, v.as_deref());
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_vec(), v.to_vec())))
            .collect())
    }
}

/// Drives one processor as the runtime would, in memory.
///
/// ```
/// # use weir_core::{prelude::*, testing::TestDriver};
/// #[derive(Clone)]
/// struct Count;
/// const N: ValueDescriptor<u64> = ValueDescriptor::new("n");
/// impl Processor for Count {
///     type Key = String;
///     type In = ();
///     type Out = u64;
///     fn declare(&self, d: &mut Declarations) {
///         d.state(&N);
///     }
///     async fn process(&mut self, r: Record<String, ()>, ctx: &mut Context<'_, Self>) -> Result<()> {
///         let mut c = ctx.state(&N)?;
///         let n = c.get()?.unwrap_or(0) + 1;
///         c.put(&n)?;
///         ctx.emit(r.key, n);
///         Ok(())
///     }
/// }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut d = TestDriver::new(Count).await?;
/// d.pipe("a".to_owned(), ()).await?;
/// d.checkpoint();
/// d.pipe("a".to_owned(), ()).await?;
/// d.crash_and_restore().await?;            // the second record is forgotten
/// assert_eq!(d.value(&"a".to_owned(), &N)?, Some(1));
/// # Ok::<_, weir_core::Error>(()) }).unwrap();
/// ```
pub struct TestDriver<P: Processor + Clone> {
    template: P,
    declared: Declared,
    settings: BTreeMap<String, String>,
    node: KeyedNode<P>,
    state: MemState,
    key_groups: u16,
    watermark: i64,
    /// Each input's watermark (see [`Context::input_watermark`](crate::Context::input_watermark)).
    inputs: Vec<i64>,
    now: i64,
    committed_output: Vec<Record<P::Key, P::Out>>,
    pending_output: Vec<Record<P::Key, P::Out>>,
    side_output: Vec<SideRecord>,
    side_committed: usize,
    late: u64,
}

impl<P: Processor + Clone> TestDriver<P> {
    /// A driver for a clone of `processor`, opened, with empty state,
    /// watermark and processing time at 0.
    ///
    /// # Errors
    /// A bad declaration, or the processor's `open` failing.
    pub async fn new(processor: P) -> Result<Self> {
        Self::with_settings(processor, BTreeMap::new()).await
    }

    /// [`new`](Self::new), with the configuration the processor's `open`
    /// reads (see [`OpenContext::setting`](crate::OpenContext::setting)).
    ///
    /// # Errors
    /// A bad declaration, or the processor's `open` failing.
    pub async fn with_settings(processor: P, settings: BTreeMap<String, String>) -> Result<Self> {
        let declared = declarations(&processor)?;
        let mut state = MemState::default();
        let mut node = KeyedNode::new(processor.clone(), 0, DEFAULT_KEY_GROUPS, declared.clone());
        let groups: Vec<u16> = (0..DEFAULT_KEY_GROUPS).collect();
        node.open(&mut state, "test", &groups, 0, &settings).await?;
        Ok(TestDriver {
            template: processor,
            declared,
            settings,
            node,
            state,
            key_groups: DEFAULT_KEY_GROUPS,
            watermark: i64::MIN,
            inputs: Vec::new(),
            now: 0,
            committed_output: Vec::new(),
            pending_output: Vec::new(),
            side_output: Vec::new(),
            side_committed: 0,
            late: 0,
        })
    }

    /// Processes a record with no timestamp.
    pub async fn pipe(&mut self, key: P::Key, value: P::In) -> Result<()> {
        self.pipe_record(Record::new(key, value)).await
    }

    /// Processes a record with event timestamp `ts`.
    pub async fn pipe_at(&mut self, key: P::Key, value: P::In, ts: i64) -> Result<()> {
        self.pipe_record(Record::new(key, value).with_timestamp(ts))
            .await
    }

    /// Processes one record.
    pub async fn pipe_record(&mut self, record: Record<P::Key, P::In>) -> Result<()> {
        let mut env = NodeEnv {
            state: &mut self.state,
            watermark: self.watermark,
            inputs: &self.inputs,
            now: self.now,
        };
        self.node.process(record, &mut env).await?;
        self.node.drain_output_into(&mut self.pending_output);
        self.side_output.extend(self.node.take_side_output());
        self.late += self.node.take_late();
        Ok(())
    }

    /// Moves the watermark to `ts`, firing due event-time timers.
    pub async fn advance_watermark(&mut self, ts: i64) -> Result<usize> {
        self.watermark = self.watermark.max(ts);
        self.fire().await
    }

    /// Moves the watermark of the source's input `input` alone to `ts`
    /// (see [`Context::input_watermark`](crate::Context::input_watermark)):
    /// what processors see of it from the next record on. Fires the
    /// event-time timers due at it of a processor whose timers follow that
    /// input (see [`Declarations::event_timers_follow`](crate::Declarations::event_timers_follow));
    /// others' follow [`advance_watermark`](Self::advance_watermark).
    pub async fn advance_input_watermark(&mut self, input: usize, ts: i64) -> Result<usize> {
        if self.inputs.len() <= input {
            self.inputs.resize(input + 1, i64::MIN);
        }
        self.inputs[input] = self.inputs[input].max(ts);
        self.fire().await
    }

    /// Moves processing time to `ts`, firing due processing-time timers.
    pub async fn advance_processing_time(&mut self, ts: i64) -> Result<usize> {
        self.now = self.now.max(ts);
        self.fire().await
    }

    async fn fire(&mut self) -> Result<usize> {
        let mut env = NodeEnv {
            state: &mut self.state,
            watermark: self.watermark,
            inputs: &self.inputs,
            now: self.now,
        };
        let n = self.node.fire_due(&mut env).await?;
        self.node.drain_output_into(&mut self.pending_output);
        self.side_output.extend(self.node.take_side_output());
        self.late += self.node.take_late();
        Ok(n)
    }

    /// Commits the open epoch: its state and output become durable.
    pub fn checkpoint(&mut self) {
        self.state.commit();
        self.committed_output.append(&mut self.pending_output);
        self.side_committed = self.side_output.len();
    }

    /// Simulates a crash and a restart: the open epoch's state writes, timers
    /// and output are lost; a fresh clone of the processor is opened on the
    /// last checkpoint. Clocks keep their values.
    pub async fn crash_and_restore(&mut self) -> Result<()> {
        self.state.overlay.clear();
        self.pending_output.clear();
        self.side_output.truncate(self.side_committed);
        self.node = KeyedNode::new(
            self.template.clone(),
            0,
            self.key_groups,
            self.declared.clone(),
        );
        let groups: Vec<u16> = (0..self.key_groups).collect();
        self.node
            .open(&mut self.state, "test", &groups, self.now, &self.settings)
            .await
    }

    /// Every record emitted, committed ones first.
    pub fn output(&self) -> Vec<&Record<P::Key, P::Out>> {
        self.committed_output
            .iter()
            .chain(self.pending_output.iter())
            .collect()
    }

    /// The records emitted to the side output `tag`.
    pub fn side_output<K: 'static, V: 'static>(&self, tag: &OutputTag<K, V>) -> Vec<&Record<K, V>> {
        self.side_output
            .iter()
            .filter(|s| s.sink == tag.name())
            .filter_map(|s| s.record.downcast_ref::<Record<K, V>>())
            .collect()
    }

    /// How many records the processor dropped as late (see
    /// [`Context::count_late`](crate::Context::count_late)).
    pub fn late_records(&self) -> u64 {
        self.late
    }

    /// How many state entries (values, map and list entries, timers) the
    /// processor holds now: what a test of cleanup counts.
    pub fn state_entries(&mut self) -> usize {
        self.state.scan_prefix(&[]).map_or(0, |all| all.len())
    }

    /// The records emitted up to the last checkpoint.
    pub fn committed_output(&self) -> &[Record<P::Key, P::Out>] {
        &self.committed_output
    }

    /// The handle of `key`'s entry of the store `descriptor`, as the
    /// processor would reach it now.
    fn handle<'a, D: StateDescriptor>(
        &'a mut self,
        key: &P::Key,
        descriptor: &D,
        buf: &'a mut Vec<u8>,
        key_bytes: &'a mut Vec<u8>,
    ) -> Result<D::Handle<'a>> {
        self.state
            .handle(0, key, descriptor, self.now, buf, key_bytes)
    }

    /// Every state entry the processor holds now, its key's and value's
    /// bytes as stored: what a test of a store's format reads.
    pub fn raw_state(&mut self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.state.scan_prefix(&[]).unwrap_or_default()
    }

    /// `key`'s value in the store `descriptor`, as the processor would read it now.
    pub fn value<T: 'static, S: Serde<T> + Clone>(
        &mut self,
        key: &P::Key,
        descriptor: &ValueDescriptor<T, S>,
    ) -> Result<Option<T>> {
        let (mut buf, mut kb) = (Vec::new(), Vec::new());
        self.handle(key, descriptor, &mut buf, &mut kb)?.get()
    }

    /// `key`'s map in the store `descriptor`, in the order of the encoded map keys.
    pub fn map_entries<K: Codec + 'static, V: 'static, S: Serde<V> + Clone>(
        &mut self,
        key: &P::Key,
        descriptor: &MapDescriptor<K, V, S>,
    ) -> Result<Vec<(K, V)>> {
        let (mut buf, mut kb) = (Vec::new(), Vec::new());
        self.handle(key, descriptor, &mut buf, &mut kb)?
            .iter()?
            .collect()
    }

    /// `key`'s list in the store `descriptor`.
    pub fn list<T: 'static, S: Serde<T> + Clone>(
        &mut self,
        key: &P::Key,
        descriptor: &ListDescriptor<T, S>,
    ) -> Result<Vec<T>> {
        let (mut buf, mut kb) = (Vec::new(), Vec::new());
        self.handle(key, descriptor, &mut buf, &mut kb)?
            .iter()?
            .collect()
    }
}
