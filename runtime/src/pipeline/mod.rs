//! The pipeline builder: `source -> stateless ops -> key_by -> processors,
//! windows and joins [-> key_by -> processors ...] -> sink`.

mod window;

pub use window::{SessionWindowedStream, WindowedStream};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::collections::BTreeMap;

use weir_core::commit::CommitPoint;
use weir_core::exec::{declarations, KeyedNode};
use weir_core::sink::Sink;
use weir_core::source::{DeadLetter, Source};
use weir_core::state::{Declared, StateDescriptor, ValueDescriptor};
use weir_core::{Codec, Error, Key, OutputSpec, OutputTag, Processor, Record, Result};

use crate::exchange::Rekey;
use crate::observe::query::{KeyParser, Queryable, ValueDecoder};
use crate::plan::{Built, DeadLetterOpener, DirectJob, Job, KeyedJob, SinkOps, Split};
use crate::stage::{
    BaseSide, ChainSide, KeyedOp, NamedSinks, OpStage, ProcessStage, SideOp, SideOpener, SinkStage,
    SourceSide, StageFactory, StageInit, TypedSide,
};
use crate::task::layer::{Layer, TypedLayer};

/// What a pipeline knows of one of its sinks besides how to open it.
struct SinkEntry {
    /// For messages: `sink`, ``named sink `late` ``, `dead-letter sink`.
    what: String,
    commit_point: Option<Arc<dyn CommitPoint>>,
    location: Option<PathBuf>,
    ops: SinkOps,
}

/// A pipeline under construction. Built by the closure handed to
/// [`App::run`](crate::cli::App::run); it holds one source, the operators
/// after it, and one sink.
pub struct Pipeline {
    name: String,
    topology: Vec<String>,
    next_node: u16,
    job: Option<Box<dyn Job>>,
    named: NamedSinks,
    sinks: Vec<SinkEntry>,
    source_locations: Vec<PathBuf>,
    dead_letter: Option<DeadLetterOpener>,
    queryables: Vec<Arc<Queryable>>,
    /// Each processor node's type name and declarations, in node order.
    declared: Vec<(String, Declared)>,
    /// Why the states of the last processor cannot be queried by the
    /// stream's key here (a window's or a join's are kept per window or
    /// version; after a `key_by` the key is another); `None` after a
    /// plain processor.
    not_queryable: Option<&'static str>,
    /// The side outputs that have a sink, with their types.
    side_outputs: Vec<OutputSpec>,
    error: Option<Error>,
}

impl Pipeline {
    /// An empty pipeline called `name`.
    pub fn new(name: &str) -> Self {
        Pipeline {
            name: name.to_owned(),
            topology: Vec::new(),
            next_node: 0,
            job: None,
            named: Vec::new(),
            sinks: Vec::new(),
            source_locations: Vec::new(),
            dead_letter: None,
            queryables: Vec::new(),
            declared: Vec::new(),
            not_queryable: Some("comes before any `.process(...)`"),
            side_outputs: Vec::new(),
            error: None,
        }
    }

    /// Every declared store, as `node/name` -> its signature (see
    /// [`StateSpec::signature`](weir_core::state::StateSpec::signature))
    /// and the processor that keeps it: what the manifest records, so
    /// that a restart on state written with other types is refused, naming
    /// the store.
    pub fn schema(&self) -> BTreeMap<String, String> {
        self.declared
            .iter()
            .enumerate()
            .flat_map(|(node, (processor, d))| {
                d.states().iter().map(move |s| {
                    (
                        format!("{node}/{}", s.name),
                        format!("{} in {processor}", s.signature()),
                    )
                })
            })
            .collect()
    }

    /// The states declared queryable.
    pub(crate) fn queryables(&self) -> &[Arc<Queryable>] {
        &self.queryables
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The operators in order, as recorded in the fingerprint.
    pub fn topology(&self) -> String {
        self.topology.join(" -> ")
    }

    /// A hash of the topology: state written by one pipeline is refused by another.
    pub fn fingerprint(&self) -> String {
        let text = format!("{}|{}", self.name, self.topology());
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
    }

    /// Starts the pipeline at `source`; one task per input partition.
    pub fn source<S: Source>(&mut self, source: S) -> Stream<'_, S::Item> {
        if self.topology.iter().any(|t| t.starts_with("source:")) {
            self.error.get_or_insert(Error::Config(
                "a pipeline has one source and one sink; build one chain from `source` to `sink`"
                    .into(),
            ));
        }
        self.topology.push(format!("source:{}", source.describe()));
        self.source_locations = source.locations();
        Stream {
            side: Arc::new(BaseSide(source)),
            p: self,
        }
    }

    /// Gives the side output `tag` its sink, of exactly the tag's record
    /// type: processors that declare the tag reach it with
    /// [`Context::output`](weir_core::Context::output). One output per
    /// worker, committed with the epoch like the main sink.
    pub fn side_output<K, V, S>(&mut self, tag: &OutputTag<K, V>, sink: S)
    where
        K: Send + 'static,
        V: Send + 'static,
        S: Sink<Record<K, V>>,
    {
        let name = tag.name();
        if self.named.iter().any(|(n, _)| *n == name) {
            self.error.get_or_insert(Error::Config(format!(
                "the side output `{name}` is given a sink twice; give each tag one sink, or each sink a tag of its own"
            )));
        }
        self.topology
            .push(format!("side_output:{name}:{}", sink.describe()));
        self.side_outputs.push(tag.spec());
        let sink = Arc::new(sink);
        self.register_sink(&format!("side output `{name}`"), &format!("{name}:"), &sink);
        let opener: SideOpener = Arc::new(move |init: &StageInit<'_>| {
            Ok(Box::new(TypedSide::<K, V> {
                name,
                stage: SinkStage::open_named(&*sink, init, Some(name))?,
            }))
        });
        self.named.push((name, opener));
    }

    /// Refuses a side output that a processor emits to and no sink takes,
    /// or takes as another type.
    fn check_side_outputs(&self) -> Result<()> {
        for (processor, d) in &self.declared {
            for o in d.outputs() {
                match self.side_outputs.iter().find(|s| s.name == o.name) {
                    None => {
                        return Err(Error::Config(format!(
                            "processor `{processor}` emits to the side output `{}`, which has no sink; add `p.side_output(&TAG, sink)` for it",
                            o.name
                        )))
                    }
                    Some(s) if s.type_id() != o.type_id() => {
                        return Err(Error::Config(format!(
                            "processor `{processor}` emits {} to the side output `{}`, whose sink takes {}; give the tags of different types different names",
                            o.types, o.name, s.types
                        )))
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Declares where undecodable input records go under `on_bad_input =
    /// "dead-letter"`: one output per source task, committed with the
    /// epoch like every sink (in Kafka mode, inside its transaction).
    pub fn dead_letter<S: Sink<DeadLetter>>(&mut self, sink: S) {
        if self.dead_letter.is_some() {
            self.error.get_or_insert(Error::Config(
                "a pipeline has one dead-letter sink; `dead_letter` was called twice".into(),
            ));
        }
        let sink = Arc::new(sink);
        self.register_sink("dead-letter sink", "dead-letter:", &sink);
        self.dead_letter = Some(Arc::new(move |init: &StageInit<'_>| {
            SinkStage::open_named(&*sink, init, Some("dead-letter"))
        }));
    }

    /// Notes what recovery and the checks of [`into_job`](Self::into_job)
    /// need of a sink: its commit point (see [`Sink::commit_point`]), its
    /// location, and how to discard an unopened output's uncommitted tail.
    fn register_sink<T: 'static, S: Sink<T>>(&mut self, what: &str, prefix: &str, sink: &Arc<S>) {
        let s = sink.clone();
        let c = sink.clone();
        self.sinks.push(SinkEntry {
            what: what.to_owned(),
            commit_point: sink.commit_point(),
            location: sink.location(),
            ops: SinkOps {
                prefix: prefix.to_owned(),
                discard: Arc::new(move |id, committed| s.discard_uncommitted(id, committed)),
                check: Arc::new(move || c.check()),
            },
        });
    }

    /// Refuses an output inside the input or the input inside an output
    /// (the run would read what it writes), and two sinks on one location
    /// (they would write the same files).
    fn check_locations(&self) -> Result<()> {
        let outputs: Vec<(&str, PathBuf)> = self
            .sinks
            .iter()
            .filter_map(|s| Some((s.what.as_str(), resolved(s.location.as_deref()?))))
            .collect();
        for input in &self.source_locations {
            let input_at = resolved(input);
            // A single input file is read, not its directory: an output
            // beside it (`--input words.txt --output .`) is fine.
            let input_is_dir = !input_at.is_file();
            for (what, out) in &outputs {
                if out.starts_with(&input_at) || (input_is_dir && input_at.starts_with(out)) {
                    return Err(Error::Config(format!(
                        "the {what} writes to {}, {} the input {}: the run would read its own output; pass an output outside the input",
                        out.display(),
                        if out.starts_with(&input_at) { "inside" } else { "which holds" },
                        input.display()
                    )));
                }
            }
        }
        for (i, (what, out)) in outputs.iter().enumerate() {
            if let Some((other, _)) = outputs[..i].iter().find(|(_, o)| o == out) {
                return Err(Error::Config(format!(
                    "the {other} and the {what} both write to {}: their files would mix; give each its own directory",
                    out.display()
                )));
            }
        }
        Ok(())
    }

    /// The transactional commit point every sink writes through, if the
    /// sinks have one; an error when only some of them do, or several.
    fn commit_point(&self) -> Result<Option<Arc<dyn CommitPoint>>> {
        let mut found: Option<(&str, &Arc<dyn CommitPoint>)> = None;
        for SinkEntry {
            what,
            commit_point: cp,
            ..
        } in &self.sinks
        {
            match (cp, found) {
                (Some(cp), None) => found = Some((what, cp)),
                (Some(cp), Some((first, f))) if cp.id() != f.id() => {
                    return Err(Error::Config(format!(
                        "the {first} and the {what} write through different transactions (`{}`, `{}`); create every Kafka sink of a pipeline from the same KafkaOutput",
                        f.id(),
                        cp.id()
                    )))
                }
                _ => {}
            }
        }
        if let Some((first, f)) = found {
            if let Some(s) = self.sinks.iter().find(|s| s.commit_point.is_none()) {
                return Err(Error::Config(format!(
                    "the {first} commits in transaction `{}`, which the {} cannot join; write every output of an exactly-once Kafka pipeline to Kafka (or run it at-least-once)",
                    f.id(),
                    s.what
                )));
            }
        }
        Ok(found.map(|(_, cp)| cp.clone()))
    }

    pub(crate) fn into_job(self) -> Result<Built> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let commit = self.commit_point()?;
        self.check_locations()?;
        self.check_side_outputs()?;
        let sinks = self.sinks.iter().map(|s| s.ops.clone()).collect();
        let (named, dead_letter) = (self.named, self.dead_letter);
        let job = self.job.ok_or_else(|| {
            Error::Config(format!(
                "pipeline `{}` has no sink; end the chain with `.sink(...)`",
                self.name
            ))
        })?;
        Ok(Built {
            job,
            named,
            commit,
            dead_letter,
            sinks,
        })
    }

    fn set_job(&mut self, job: Box<dyn Job>) {
        if self.job.is_some() {
            self.error.get_or_insert(Error::Config(
                "a pipeline has one sink; `.sink(...)` was called twice".into(),
            ));
        }
        self.job = Some(job);
    }
}

/// A stream before the exchange: records of type `T` with no key.
pub struct Stream<'p, T> {
    p: &'p mut Pipeline,
    side: Arc<dyn SourceSide<T>>,
}

impl<'p, T: Send + 'static> Stream<'p, T> {
    fn chain<U: Send + 'static>(
        self,
        name: &str,
        op: SideOp<T, U>,
        delay: Option<i64>,
    ) -> Stream<'p, U> {
        self.p.topology.push(name.to_owned());
        Stream {
            side: Arc::new(ChainSide {
                inner: self.side,
                op,
                watermark_delay: delay,
            }),
            p: self.p,
        }
    }

    /// Transforms each value.
    pub fn map<U: Send + 'static>(
        self,
        f: impl Fn(T) -> U + Send + Sync + 'static,
    ) -> Stream<'p, U> {
        self.chain("map", Arc::new(move |r, out| out(r.map_value(&f))), None)
    }

    /// Turns each value into zero or more values.
    pub fn flat_map<U: Send + 'static, I: IntoIterator<Item = U>>(
        self,
        f: impl Fn(T) -> I + Send + Sync + 'static,
    ) -> Stream<'p, U> {
        self.chain(
            "flat_map",
            Arc::new(
                move |r: Record<(), T>, out: &mut dyn FnMut(Record<(), U>)| {
                    let ts = r.timestamp;
                    for v in f(r.value) {
                        out(Record {
                            key: (),
                            value: v,
                            timestamp: ts,
                            headers: Vec::new(),
                        });
                    }
                },
            ),
            None,
        )
    }

    /// Keeps the values for which `f` is true.
    pub fn filter(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Stream<'p, T> {
        self.chain(
            "filter",
            Arc::new(
                move |r: Record<(), T>, out: &mut dyn FnMut(Record<(), T>)| {
                    if f(&r.value) {
                        out(r)
                    }
                },
            ),
            None,
        )
    }

    /// Stamps each record with the event time `ts(value)` (ms) and lets the
    /// watermark follow the highest event time seen, `max_delay_ms` behind.
    /// Event-time timers fire when the watermark passes them, and all of them
    /// fire when a bounded input ends.
    pub fn event_time(
        self,
        ts: impl Fn(&T) -> i64 + Send + Sync + 'static,
        max_delay_ms: i64,
    ) -> Stream<'p, T> {
        self.chain(
            "event_time",
            Arc::new(
                move |mut r: Record<(), T>, out: &mut dyn FnMut(Record<(), T>)| {
                    r.timestamp = Some(ts(&r.value));
                    out(r)
                },
            ),
            Some(max_delay_ms.max(0)),
        )
    }

    /// Keys each record by `f(value)` and routes it, through the exchange,
    /// to the worker owning its key group: every record of a key meets the
    /// same state, whichever input it came from. The value is encoded
    /// ([`Codec`]) when its key group's state is held by another instance
    /// of the application, which gets it through the repartition topic.
    pub fn key_by<K: Key>(
        self,
        f: impl Fn(&T) -> K + Send + Sync + 'static,
    ) -> KeyedStream<'p, K, T>
    where
        T: Codec,
    {
        self.key_with(move |v| (f(&v), v))
    }

    /// Like [`key_by`](Self::key_by), but splits each value into its key
    /// and a new value, so that nothing is cloned: `|word| (word, ())`.
    pub fn key_with<K: Key, V: Codec + Send + 'static>(
        self,
        f: impl Fn(T) -> (K, V) + Send + Sync + 'static,
    ) -> KeyedStream<'p, K, V> {
        self.p.topology.push("key_by".to_owned());
        let side = self.side;
        let split: Split<T, K, V> = Arc::new(f);
        KeyedStream {
            p: self.p,
            finish: Box::new(move |tail, layers| {
                Box::new(KeyedJob {
                    side,
                    split,
                    tail,
                    layers,
                })
            }),
        }
    }

    /// Ends the pipeline at `sink`, one output per source task, without an exchange.
    pub fn sink<S: Sink<Record<(), T>>>(self, sink: S) {
        self.p.topology.push(format!("sink:{}", sink.describe()));
        let sink = Arc::new(sink);
        self.p.register_sink("sink", "", &sink);
        let job = DirectJob {
            side: self.side,
            open_sink: Arc::new(move |init: &StageInit<'_>| SinkStage::open(&*sink, init)),
        };
        self.p.set_job(Box::new(job));
    }
}

/// Ends a keyed stream's plan: given the stages after it and the layers
/// of workers after those (one per later `key_by`), the job.
type Finish<K, V> = Box<dyn FnOnce(StageFactory<K, V>, Vec<Arc<dyn Layer>>) -> Box<dyn Job>>;

/// A keyed stream after the exchange: records of key `K` and value `V`.
pub struct KeyedStream<'p, K, V> {
    p: &'p mut Pipeline,
    finish: Finish<K, V>,
}

impl<'p, K: Key, V: Send + 'static> KeyedStream<'p, K, V> {
    /// Runs `processor` (one clone per worker) on every record, with keyed
    /// state and timers; continues with what it emits.
    pub fn process<P>(self, processor: P) -> KeyedStream<'p, K, P::Out>
    where
        P: Processor<Key = K, In = V> + Clone + Sync,
    {
        let stream = self.named_process(
            &format!("process:{}", std::any::type_name::<P>()),
            processor,
        );
        stream.p.not_queryable = None;
        stream
    }

    /// [`process`](Self::process), shown in the topology as `what`.
    fn named_process<P>(self, what: &str, processor: P) -> KeyedStream<'p, K, P::Out>
    where
        P: Processor<Key = K, In = V> + Clone + Sync,
    {
        let node = self.p.next_node;
        self.p.next_node += 1;
        self.p.not_queryable = Some(
            "follows a window or a join, whose state is kept per window or version, not by key alone; query the state of a `.process(...)`",
        );
        let name = std::any::type_name::<P>();
        let declared = match declarations(&processor) {
            Ok(d) => d,
            Err(e) => {
                self.p.error.get_or_insert(e);
                Declared::default()
            }
        };
        let states: Vec<String> = declared.states().iter().map(|s| s.to_string()).collect();
        let mut shown = match states.is_empty() {
            true => what.to_owned(),
            false => format!("{what}{{{}}}", states.join(", ")),
        };
        if !declared.settings().is_empty() {
            let settings: Vec<String> = declared
                .settings()
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            shown = format!("{shown}[{}]", settings.join(", "));
        }
        self.p.topology.push(shown);
        self.p.declared.push((name.to_owned(), declared.clone()));
        let finish = self.finish;
        KeyedStream {
            p: self.p,
            finish: Box::new(move |tail: StageFactory<K, P::Out>, layers| {
                let factory: StageFactory<K, V> = Arc::new(move |init: &StageInit<'_>| {
                    let mut keyed =
                        KeyedNode::new(processor.clone(), node, init.key_groups, declared.clone());
                    keyed.hold(&init.groups);
                    Ok(Box::new(ProcessStage {
                        node: keyed,
                        fired_at: i64::MIN,
                        task: init.task.clone(),
                        groups: init.groups.clone(),
                        settings: init.settings.clone(),
                        next: tail(init)?,
                    }))
                });
                finish(factory, layers)
            }),
        }
    }

    /// Lets the value store `descriptor` of the processor before this
    /// call be read by key while the pipeline runs (`GET
    /// /api/state/{name}/{key}` with `http.listen` set) and from a stopped
    /// state directory (`state get --store NAME --key KEY`), as JSON: the
    /// committed value, never one an open epoch wrote. A key is given as
    /// JSON (`42`, `"a b"`, `{"id": 7}`), or as plain text for a string key.
    pub fn queryable<T>(self, descriptor: &ValueDescriptor<T>) -> Self
    where
        K: serde::de::DeserializeOwned,
        T: Codec + serde::Serialize + 'static,
    {
        let name = descriptor.name();
        let Some((processor, declared)) = self.p.declared.last() else {
            self.p.error.get_or_insert(Error::Config(format!(
                "`.queryable(&{name})` must follow the `.process(...)` whose state it reads"
            )));
            return self;
        };
        let spec = descriptor.spec();
        if let Some(why) = self.p.not_queryable {
            self.p
                .error
                .get_or_insert(Error::Config(format!("`.queryable(&{name})` {why}")));
            return self;
        }
        if !declared.states().contains(&spec) {
            self.p.error.get_or_insert(Error::Config(format!(
                "`.queryable` reads the state {spec}, which processor `{processor}` does not declare; declare it in its `declare`, or query a state it declares"
            )));
            return self;
        }
        if self.p.queryables.iter().any(|q| q.name == name) {
            self.p.error.get_or_insert(Error::Config(format!(
                "the state `{name}` is declared queryable twice; a name reads one state"
            )));
            return self;
        }
        let key: Box<KeyParser> = Box::new(|text: &str| {
            let key: K = serde_json::from_str(text)
                .or_else(|_| serde_json::from_value(serde_json::Value::String(text.to_owned())))
                .map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            weir_core::encode_key(&key, &mut out).map_err(|e| e.to_string())?;
            Ok(out)
        });
        let value: Box<ValueDecoder> = Box::new(|bytes: &[u8]| {
            let v = T::decode(bytes).map_err(|e| e.to_string())?;
            serde_json::to_value(&v).map_err(|e| e.to_string())
        });
        let node = self.p.next_node - 1;
        self.p.queryables.push(Arc::new(Queryable {
            name,
            node,
            key,
            value,
            expires: descriptor.ttl().is_some(),
        }));
        self
    }

    /// Transforms each value, keeping the key.
    pub fn map<U: Send + 'static>(
        self,
        f: impl Fn(V) -> U + Send + Sync + 'static,
    ) -> KeyedStream<'p, K, U> {
        self.op("map", Arc::new(move |r, out| out.push(r.map_value(&f))))
    }

    /// Turns each value into zero or more values, keeping the key (and
    /// the record's timestamp and headers).
    pub fn flat_map<U: Send + 'static, I: IntoIterator<Item = U>>(
        self,
        f: impl Fn(V) -> I + Send + Sync + 'static,
    ) -> KeyedStream<'p, K, U> {
        self.op(
            "flat_map",
            Arc::new(move |r: Record<K, V>, out: &mut Vec<Record<K, U>>| {
                let (key, timestamp, headers) = (r.key, r.timestamp, r.headers);
                for value in f(r.value) {
                    out.push(Record {
                        key: key.clone(),
                        value,
                        timestamp,
                        headers: headers.clone(),
                    });
                }
            }),
        )
    }

    /// Keeps the records for which `f` is true.
    pub fn filter(
        self,
        f: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> KeyedStream<'p, K, V> {
        self.op(
            "filter",
            Arc::new(move |r: Record<K, V>, out: &mut Vec<Record<K, V>>| {
                if f(&r.key, &r.value) {
                    out.push(r)
                }
            }),
        )
    }

    /// Gives each record the key `f(key, value)` on its way to the sink:
    /// the output's key (an order's id, after a join by customer). The
    /// records stay on their worker, so what follows is no longer keyed
    /// by the new key: it may map, filter and write, but not keep state.
    pub fn select_key<L: Send + 'static>(
        self,
        f: impl Fn(&K, &V) -> L + Send + Sync + 'static,
    ) -> OutputStream<'p, L, V> {
        OutputStream(self.op(
            "select_key",
            Arc::new(move |r: Record<K, V>, out: &mut Vec<Record<L, V>>| {
                let key = f(&r.key, &r.value);
                out.push(Record {
                    key,
                    value: r.value,
                    timestamp: r.timestamp,
                    headers: r.headers,
                })
            }),
        ))
    }

    /// Keys each record again, by `f(key, value)`, and routes it through
    /// a further exchange to the worker owning the new key's group: what
    /// follows keeps state per new key. Timestamps and headers go along;
    /// watermarks and checkpoint barriers follow the records, so that the
    /// whole pipeline still commits as one. Where instances share the
    /// application, a record whose new key group another instance holds
    /// goes there through the repartition topic, as at the first exchange,
    /// and a key's records keep their order through hand-overs.
    pub fn key_by<L: Key>(
        self,
        f: impl Fn(&K, &V) -> L + Send + Sync + 'static,
    ) -> KeyedStream<'p, L, V>
    where
        V: Codec,
    {
        self.key_with(move |k, v| (f(&k, &v), v))
    }

    /// Like [`key_by`](Self::key_by), but makes the new key and value out
    /// of the old ones, so that the old key can go on in the value: count
    /// per word, then `key_with(|word, count| (first_letter(&word), (word,
    /// count)))` for the top words per first letter.
    pub fn key_with<L: Key, U: Codec + Send + 'static>(
        self,
        f: impl Fn(K, V) -> (L, U) + Send + Sync + 'static,
    ) -> KeyedStream<'p, L, U> {
        self.p.not_queryable = Some(
            "follows a `key_by`, whose key is not the one the processor before it keeps its state by; put `.queryable(..)` right after that `.process(..)`",
        );
        let keyed = self.op(
            "key_by",
            Arc::new(move |r: Record<K, V>, out: &mut Vec<Record<L, U>>| {
                let (key, value) = f(r.key, r.value);
                out.push(Record {
                    key,
                    value,
                    timestamp: r.timestamp,
                    headers: r.headers,
                })
            }),
        );
        // The stages after it run in the next layer; the exchange to that
        // layer ends this one's.
        let finish = keyed.finish;
        KeyedStream {
            p: keyed.p,
            finish: Box::new(move |tail: StageFactory<L, U>, mut layers| {
                layers.insert(0, Arc::new(TypedLayer { tail }) as Arc<dyn Layer>);
                let exchange: StageFactory<L, U> =
                    Arc::new(|init: &StageInit<'_>| Ok(Box::new(Rekey::<L, U>::open(init)?)));
                finish(exchange, layers)
            }),
        }
    }

    /// Ends the pipeline at `sink`, one output per worker.
    pub fn sink<S: Sink<Record<K, V>>>(self, sink: S) {
        self.into_sink(sink)
    }
}

impl<'p, K: Send + 'static, V: Send + 'static> KeyedStream<'p, K, V> {
    fn op<L, U: Send + 'static>(self, name: &str, op: KeyedOp<K, V, L, U>) -> KeyedStream<'p, L, U>
    where
        L: Send + 'static,
    {
        self.p.topology.push(name.to_owned());
        let finish = self.finish;
        KeyedStream {
            p: self.p,
            finish: Box::new(move |tail: StageFactory<L, U>, layers| {
                let factory: StageFactory<K, V> = Arc::new(move |init: &StageInit<'_>| {
                    Ok(Box::new(OpStage {
                        op: op.clone(),
                        next: tail(init)?,
                    }))
                });
                finish(factory, layers)
            }),
        }
    }

    fn into_sink<S: Sink<Record<K, V>>>(self, sink: S) {
        self.p.topology.push(format!("sink:{}", sink.describe()));
        let sink = Arc::new(sink);
        self.p.register_sink("sink", "", &sink);
        let tail: StageFactory<K, V> =
            Arc::new(move |init: &StageInit<'_>| Ok(Box::new(SinkStage::open(&*sink, init)?)));
        let job = (self.finish)(tail, Vec::new());
        self.p.set_job(job);
    }
}

/// Records on their way to the sink after [`KeyedStream::select_key`]:
/// keyed for the output, no longer for state.
pub struct OutputStream<'p, K, V>(KeyedStream<'p, K, V>);

impl<'p, K: Send + 'static, V: Send + 'static> OutputStream<'p, K, V> {
    /// Transforms each value, keeping the key.
    pub fn map<U: Send + 'static>(
        self,
        f: impl Fn(V) -> U + Send + Sync + 'static,
    ) -> OutputStream<'p, K, U> {
        OutputStream(
            self.0
                .op("map", Arc::new(move |r, out| out.push(r.map_value(&f)))),
        )
    }

    /// Keeps the records for which `f` is true.
    pub fn filter(
        self,
        f: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> OutputStream<'p, K, V> {
        OutputStream(self.0.op(
            "filter",
            Arc::new(move |r: Record<K, V>, out: &mut Vec<Record<K, V>>| {
                if f(&r.key, &r.value) {
                    out.push(r)
                }
            }),
        ))
    }

    /// Ends the pipeline at `sink`, one output per worker.
    pub fn sink<S: Sink<Record<K, V>>>(self, sink: S) {
        self.0.into_sink(sink)
    }
}

/// `path` made absolute, with symbolic links resolved as far as it exists
/// (an output directory may not exist yet).
fn resolved(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(canon) = existing.canonicalize() {
            return rest.iter().rev().fold(canon, |p, c| p.join(c));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return abs,
        }
    }
}
