//! [`PipelineDriver`]: several processors, keyed again between them, run
//! in memory as one worker holding every key group would run them, with
//! checkpoints and simulated crashes.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use super::MemState;
use crate::exec::{declarations, KeyedNode, NodeEnv, SideRecord};
use crate::keygroup::DEFAULT_KEY_GROUPS;
use crate::state::{Declared, StateBackend, ValueDescriptor};
use crate::{Key, OutputTag, Processor, Record, Result};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What every link of the chain works with.
struct Env<'a> {
    state: &'a mut MemState,
    watermark: i64,
    now: i64,
    settings: &'a BTreeMap<String, String>,
    side: &'a mut Vec<SideRecord>,
    late: &'a mut u64,
}

/// One link of the chain: a processor or a re-keying, and what follows.
trait Link<K, V>: Send {
    fn push<'a>(
        &'a mut self,
        batch: Vec<Record<K, V>>,
        env: &'a mut Env<'_>,
    ) -> BoxFuture<'a, Result<()>>;
    /// Fires due timers here and downstream; how many fired.
    fn fire<'a>(&'a mut self, env: &'a mut Env<'_>) -> BoxFuture<'a, Result<usize>>;
    /// Opens this link's processor, and those after it, anew: a restart.
    fn open<'a>(&'a mut self, env: &'a mut Env<'_>) -> BoxFuture<'a, Result<()>>;
}

/// A processor and the links after it.
struct ProcessLink<P: Processor + Clone> {
    template: P,
    id: u16,
    declared: Declared,
    node: KeyedNode<P>,
    /// The watermark its timers last fired at (see the runtime's stages).
    fired_at: i64,
    next: Box<dyn Link<P::Key, P::Out>>,
}

impl<P: Processor + Clone> ProcessLink<P> {
    fn env<'e>(env: &'e mut Env<'_>) -> NodeEnv<'e> {
        NodeEnv {
            state: &mut *env.state,
            watermark: env.watermark,
            inputs: &[],
            now: env.now,
        }
    }

    /// Hands what the processor emitted downstream, at `watermark`.
    async fn forward(&mut self, env: &mut Env<'_>, watermark: i64) -> Result<()> {
        env.side.extend(self.node.take_side_output());
        *env.late += self.node.take_late();
        let out = self.node.take_output();
        if out.is_empty() {
            return Ok(());
        }
        let now = std::mem::replace(&mut env.watermark, watermark);
        let pushed = self.next.push(out, env).await;
        env.watermark = now;
        pushed
    }
}

impl<P: Processor + Clone + Sync> Link<P::Key, P::In> for ProcessLink<P> {
    fn push<'a>(
        &'a mut self,
        batch: Vec<Record<P::Key, P::In>>,
        env: &'a mut Env<'_>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for record in batch {
                self.node.process(record, &mut Self::env(env)).await?;
            }
            let watermark = env.watermark;
            self.forward(env, watermark).await
        })
    }

    fn fire<'a>(&'a mut self, env: &'a mut Env<'_>) -> BoxFuture<'a, Result<usize>> {
        Box::pin(async move {
            let n = self.node.fire_due(&mut Self::env(env)).await?;
            // What its timers emitted goes on before the watermark that
            // fired them, as a watermark travels behind the records before it.
            let fired_at = self.fired_at;
            self.forward(env, fired_at).await?;
            self.fired_at = self.fired_at.max(env.watermark);
            Ok(n + self.next.fire(env).await?)
        })
    }

    fn open<'a>(&'a mut self, env: &'a mut Env<'_>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.node = KeyedNode::new(
                self.template.clone(),
                self.id,
                DEFAULT_KEY_GROUPS,
                self.declared.clone(),
            );
            self.fired_at = i64::MIN;
            let groups: Vec<u16> = (0..DEFAULT_KEY_GROUPS).collect();
            self.node
                .open(&mut *env.state, "test", &groups, env.now, env.settings)
                .await?;
            self.next.open(env).await
        })
    }
}

/// Makes zero or more records of one.
type Step<K, V, L, U> = Arc<dyn Fn(Record<K, V>, &mut Vec<Record<L, U>>) + Send + Sync>;

/// A stateless step: each record becomes zero or more (a re-keying, a map).
struct MapLink<K, V, L, U> {
    f: Step<K, V, L, U>,
    next: Box<dyn Link<L, U>>,
}

impl<K: Send + 'static, V: Send + 'static, L: Send + 'static, U: Send + 'static> Link<K, V>
    for MapLink<K, V, L, U>
{
    fn push<'a>(
        &'a mut self,
        batch: Vec<Record<K, V>>,
        env: &'a mut Env<'_>,
    ) -> BoxFuture<'a, Result<()>> {
        let mut out = Vec::with_capacity(batch.len());
        for r in batch {
            (self.f)(r, &mut out);
        }
        self.next.push(out, env)
    }

    fn fire<'a>(&'a mut self, env: &'a mut Env<'_>) -> BoxFuture<'a, Result<usize>> {
        self.next.fire(env)
    }

    fn open<'a>(&'a mut self, env: &'a mut Env<'_>) -> BoxFuture<'a, Result<()>> {
        self.next.open(env)
    }
}

/// The chain's output: committed, and since the last checkpoint.
struct Outputs<K, V> {
    committed: Vec<Record<K, V>>,
    pending: Vec<Record<K, V>>,
}

/// The end of the chain.
struct Collect<K, V>(Arc<Mutex<Outputs<K, V>>>);

impl<K: Send + 'static, V: Send + 'static> Link<K, V> for Collect<K, V> {
    fn push<'a>(
        &'a mut self,
        mut batch: Vec<Record<K, V>>,
        _env: &'a mut Env<'_>,
    ) -> BoxFuture<'a, Result<()>> {
        let mut out = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        out.pending.append(&mut batch);
        Box::pin(async { Ok(()) })
    }

    fn fire<'a>(&'a mut self, _env: &'a mut Env<'_>) -> BoxFuture<'a, Result<usize>> {
        Box::pin(async { Ok(0) })
    }

    fn open<'a>(&'a mut self, _env: &'a mut Env<'_>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// Makes the chain's links, given the link after them.
type Build<K, V, L, O> = Box<dyn FnOnce(Box<dyn Link<L, O>>) -> Box<dyn Link<K, V>>>;

/// A chain of processors under construction, from records of key `K` and
/// value `V` to records of key `L` and value `O`: see [`PipelineDriver`].
pub struct Chain<K, V, L = K, O = V> {
    build: Build<K, V, L, O>,
    /// Each processor's declarations, by node.
    declared: Vec<Declared>,
}

impl<K: Key, V: Send + 'static> Chain<K, V, K, V> {
    /// A chain that starts with records of key `K` and value `V`.
    pub fn new() -> Self {
        Chain {
            build: Box::new(|tail| tail),
            declared: Vec::new(),
        }
    }
}

impl<K: Key, V: Send + 'static> Default for Chain<K, V, K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Key, V: Send + 'static, L: Key, O: Send + 'static> Chain<K, V, L, O> {
    /// Runs `processor` next, on the records keyed as they come.
    ///
    /// # Errors
    /// A bad declaration.
    pub fn process<P>(mut self, processor: P) -> Result<Chain<K, V, L, P::Out>>
    where
        P: Processor<Key = L, In = O> + Clone + Sync,
    {
        let declared = declarations(&processor)?;
        let id = u16::try_from(self.declared.len()).unwrap_or(u16::MAX);
        self.declared.push(declared.clone());
        let build = self.build;
        Ok(Chain {
            build: Box::new(move |tail: Box<dyn Link<L, P::Out>>| {
                let node =
                    KeyedNode::new(processor.clone(), id, DEFAULT_KEY_GROUPS, declared.clone());
                build(Box::new(ProcessLink {
                    template: processor,
                    id,
                    declared,
                    node,
                    fired_at: i64::MIN,
                    next: tail,
                }))
            }),
            declared: self.declared,
        })
    }

    /// Keys each record again, by `f(key, value)`, which also makes its
    /// new value (the runtime's `key_with` after a processor).
    pub fn key_with<M: Key, U: Send + 'static>(
        self,
        f: impl Fn(L, O) -> (M, U) + Send + Sync + 'static,
    ) -> Chain<K, V, M, U> {
        self.then(move |r: Record<L, O>, out: &mut Vec<Record<M, U>>| {
            let (key, value) = f(r.key, r.value);
            out.push(Record {
                key,
                value,
                timestamp: r.timestamp,
                headers: r.headers,
            });
        })
    }

    /// Transforms each value, keeping the key.
    pub fn map<U: Send + 'static>(
        self,
        f: impl Fn(O) -> U + Send + Sync + 'static,
    ) -> Chain<K, V, L, U> {
        self.then(move |r: Record<L, O>, out: &mut Vec<Record<L, U>>| out.push(r.map_value(&f)))
    }

    fn then<M: Send + 'static, U: Send + 'static>(
        self,
        f: impl Fn(Record<L, O>, &mut Vec<Record<M, U>>) + Send + Sync + 'static,
    ) -> Chain<K, V, M, U> {
        let build = self.build;
        let f: Step<L, O, M, U> = Arc::new(f);
        Chain {
            build: Box::new(move |tail: Box<dyn Link<M, U>>| {
                build(Box::new(MapLink { f, next: tail }))
            }),
            declared: self.declared,
        }
    }

    /// The driver of this chain, every processor opened on empty state.
    ///
    /// # Errors
    /// A processor's `open` failing.
    pub async fn start(self) -> Result<PipelineDriver<K, V, L, O>> {
        self.start_with(BTreeMap::new()).await
    }

    /// [`start`](Self::start), with the configuration the processors'
    /// `open` reads.
    ///
    /// # Errors
    /// A processor's `open` failing.
    pub async fn start_with(
        self,
        settings: BTreeMap<String, String>,
    ) -> Result<PipelineDriver<K, V, L, O>> {
        let outputs = Arc::new(Mutex::new(Outputs {
            committed: Vec::new(),
            pending: Vec::new(),
        }));
        let head = (self.build)(Box::new(Collect(outputs.clone())));
        let mut d = PipelineDriver {
            head,
            outputs,
            state: MemState::default(),
            settings,
            watermark: i64::MIN,
            now: 0,
            side: Vec::new(),
            side_committed: 0,
            late: 0,
            nodes: self.declared.len(),
        };
        d.with_env(|head, env| head.open(env)).await?;
        Ok(d)
    }
}

/// Drives processors chained as a pipeline chains them, re-keyed between
/// them (count per word, then the top words per letter; a window, then
/// another; a join, then an aggregate), in memory: what
/// [`TestDriver`](super::TestDriver) does for one processor. One worker
/// holds every key group, so a key given again reaches its state as the
/// runtime's exchange would route it. Watermarks travel as in the runtime:
/// what a processor's timers emit reaches the next one before the
/// watermark that fired them.
///
/// ```
/// # use weir_core::{prelude::*, testing::Chain};
/// # #[derive(Clone)]
/// # struct Count;
/// # const N: ValueDescriptor<u64> = ValueDescriptor::new("n");
/// # impl Processor for Count {
/// #     type Key = String;
/// #     type In = ();
/// #     type Out = u64;
/// #     fn declare(&self, d: &mut Declarations) { d.state(&N); }
/// #     async fn process(&mut self, r: Record<String, ()>, ctx: &mut Context<'_, Self>) -> Result<()> {
/// #         let mut c = ctx.state(&N)?;
/// #         let n = c.get()?.unwrap_or(0) + 1;
/// #         c.put(&n)?;
/// #         ctx.emit(r.key, n);
/// #         Ok(())
/// #     }
/// # }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// // Count per word, then count the words' updates per first letter.
/// let mut d = Chain::<String, ()>::new()
///     .process(Count)?
///     .key_with(|word: String, _n| (word[..1].to_owned(), ()))
///     .process(Count)?
///     .start()
///     .await?;
/// d.pipe("ab".to_owned(), ()).await?;
/// d.pipe("ac".to_owned(), ()).await?;
/// d.checkpoint();
/// d.pipe("ad".to_owned(), ()).await?;
/// d.crash_and_restore().await?;            // "ad" is forgotten, in both
/// assert_eq!(d.value(1, &"a".to_owned(), &N)?, Some(2));
/// # Ok::<_, weir_core::Error>(()) }).unwrap();
/// ```
pub struct PipelineDriver<K, V, L, O> {
    head: Box<dyn Link<K, V>>,
    outputs: Arc<Mutex<Outputs<L, O>>>,
    state: MemState,
    settings: BTreeMap<String, String>,
    watermark: i64,
    now: i64,
    side: Vec<SideRecord>,
    side_committed: usize,
    late: u64,
    nodes: usize,
}

impl<K: Key, V: Send + 'static, L: Send + 'static, O: Send + 'static> PipelineDriver<K, V, L, O> {
    async fn with_env<T>(
        &mut self,
        f: impl for<'a> FnOnce(&'a mut Box<dyn Link<K, V>>, &'a mut Env<'_>) -> BoxFuture<'a, Result<T>>,
    ) -> Result<T> {
        let mut env = Env {
            state: &mut self.state,
            watermark: self.watermark,
            now: self.now,
            settings: &self.settings,
            side: &mut self.side,
            late: &mut self.late,
        };
        f(&mut self.head, &mut env).await
    }

    /// Processes a record with no timestamp.
    pub async fn pipe(&mut self, key: K, value: V) -> Result<()> {
        self.pipe_record(Record::new(key, value)).await
    }

    /// Processes a record with event timestamp `ts`.
    pub async fn pipe_at(&mut self, key: K, value: V, ts: i64) -> Result<()> {
        self.pipe_record(Record::new(key, value).with_timestamp(ts))
            .await
    }

    /// Processes one record through the whole chain.
    pub async fn pipe_record(&mut self, record: Record<K, V>) -> Result<()> {
        self.with_env(|head, env| head.push(vec![record], env))
            .await
    }

    /// Moves the watermark to `ts`, firing due event-time timers along
    /// the chain; how many fired.
    pub async fn advance_watermark(&mut self, ts: i64) -> Result<usize> {
        self.watermark = self.watermark.max(ts);
        self.with_env(|head, env| head.fire(env)).await
    }

    /// Moves processing time to `ts`, firing due processing-time timers.
    pub async fn advance_processing_time(&mut self, ts: i64) -> Result<usize> {
        self.now = self.now.max(ts);
        self.with_env(|head, env| head.fire(env)).await
    }

    /// Commits the open epoch: every processor's state and the output
    /// become durable.
    pub fn checkpoint(&mut self) {
        self.state.commit();
        let mut out = self.outputs.lock().unwrap_or_else(PoisonError::into_inner);
        let mut pending = std::mem::take(&mut out.pending);
        out.committed.append(&mut pending);
        self.side_committed = self.side.len();
    }

    /// Simulates a crash and a restart: the open epoch's state writes,
    /// timers and output are lost in every processor; fresh clones are
    /// opened on the last checkpoint. Clocks keep their values.
    pub async fn crash_and_restore(&mut self) -> Result<()> {
        self.state.overlay.clear();
        self.outputs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pending
            .clear();
        self.side.truncate(self.side_committed);
        self.with_env(|head, env| head.open(env)).await
    }

    /// The records any processor emitted to the side output `tag`.
    pub fn side_output<A: Clone + 'static, B: Clone + 'static>(
        &self,
        tag: &OutputTag<A, B>,
    ) -> Vec<Record<A, B>> {
        self.side
            .iter()
            .filter(|s| s.sink == tag.name())
            .filter_map(|s| s.record.downcast_ref::<Record<A, B>>())
            .cloned()
            .collect()
    }

    /// How many records the processors dropped as late.
    pub fn late_records(&self) -> u64 {
        self.late
    }

    /// How many state entries (values, map and list entries, timers) the
    /// processors hold now.
    pub fn state_entries(&mut self) -> usize {
        self.state.scan_prefix(&[]).map_or(0, |all| all.len())
    }

    /// Every record the last processor emitted, committed ones first.
    pub fn output(&self) -> Vec<Record<L, O>>
    where
        L: Clone,
        O: Clone,
    {
        let out = self.outputs.lock().unwrap_or_else(PoisonError::into_inner);
        out.committed.iter().chain(&out.pending).cloned().collect()
    }

    /// The records emitted up to the last checkpoint.
    pub fn committed_output(&self) -> Vec<Record<L, O>>
    where
        L: Clone,
        O: Clone,
    {
        let out = self.outputs.lock().unwrap_or_else(PoisonError::into_inner);
        out.committed.clone()
    }

    /// `key`'s value in the store `descriptor` of processor `node` (its
    /// place in the chain, from 0), as that processor would read it now.
    ///
    /// # Errors
    /// No processor `node`, or a value that does not decode.
    pub fn value<Q: Key, T: 'static, S: crate::Serde<T> + Clone>(
        &mut self,
        node: usize,
        key: &Q,
        descriptor: &ValueDescriptor<T, S>,
    ) -> Result<Option<T>> {
        if node >= self.nodes {
            return Err(crate::Error::Config(format!(
                "the chain has {} processors; node {node} is none of them",
                self.nodes
            )));
        }
        let (mut buf, mut kb) = (Vec::new(), Vec::new());
        let node = u16::try_from(node).unwrap_or(u16::MAX);
        self.state
            .handle(node, key, descriptor, self.now, &mut buf, &mut kb)?
            .get()
    }
}
