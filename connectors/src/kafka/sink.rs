//! Writing to Kafka. Exactly-once: every sink of a [`KafkaOutput`] sends
//! into one transaction per epoch, which is also the pipeline's commit
//! point (ARCHITECTURE §4.2): it holds the output, the state changes as
//! changelog records, and the source offsets. At-least-once and
//! at-most-once: an idempotent producer, flushed before each checkpoint.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Display;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::Producer as _;
use rdkafka::{Offset, TopicPartitionList};
use weir_core::commit::{ApplyFn, CommitPoint, Forward, GroupOffsets, Transaction, TxnInit};
use weir_core::sink::{Flushed, Sink, SinkWriter};
use weir_core::source::{DeadLetter, Route};
use weir_core::{Error, Record, Result, Serde};

use super::client::{
    answered, client_config, kafka_error, with_defaults, KafkaSettings, WeirContext,
    CONSUMER_DEFAULTS, PRODUCER_DEFAULTS,
};
use super::member::{committer, KafkaMember};
use super::topics::{ensure_topic, partition_count, Wanted, EXCHANGE_HEADER};
use super::txn::{
    producer_error, send, transaction_timeout, wait_delivered, Deliveries, Outgoing, Producer,
    ProducerCx, TxnProducer,
};

/// How long a commit, an abort or a flush may take before it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The Kafka output of one application (`application_id`): the sinks made
/// from it share one producer, so that they commit together.
///
/// ```no_run
/// # use weir_connectors::kafka::{KafkaOutput, KafkaSettings};
/// let out = KafkaOutput::new(KafkaSettings::new("127.0.0.1:9092"), "wordcount");
/// let counts = out.key_value_sink::<String, u64>("counts");
/// ```
#[derive(Clone)]
pub struct KafkaOutput {
    inner: Arc<Output>,
}

struct Output {
    settings: KafkaSettings,
    app: String,
    topics: Mutex<BTreeMap<String, Role>>,
    producer: Mutex<Option<Active>>,
}

/// The producer the sinks write through.
#[derive(Clone)]
struct Active {
    producer: Arc<Producer>,
    /// The transactional id, or the client's role for a plain producer.
    id: String,
    /// Set for a plain producer (no transaction): its delivery reports.
    plain: Option<Arc<Deliveries>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl KafkaOutput {
    /// The output of application `application_id` (also the consumer
    /// group of its Kafka source) on the cluster of `settings`.
    pub fn new(settings: KafkaSettings, application_id: &str) -> Self {
        KafkaOutput {
            inner: Arc::new(Output {
                settings,
                app: application_id.to_owned(),
                topics: Mutex::new(BTreeMap::new()),
                producer: Mutex::new(None),
            }),
        }
    }

    /// The transactional id of instance `instance` of the application:
    /// `<application-id>-<instance-id>`, the instance id being kept in its
    /// state directory, so that a restart on that directory fences its own
    /// zombie (ARCHITECTURE §7).
    pub fn transactional_id(&self, instance: &str) -> String {
        transactional_id(&self.inner.app, instance)
    }

    /// The changelog topic: `<application-id>-changelog`, compacted. Key
    /// group `g` goes to partition `g % P`, P being the topic's partition
    /// count (created with [`CHANGELOG_PARTITIONS`], or fewer when the
    /// pipeline has fewer key groups).
    pub fn changelog_topic(&self) -> String {
        format!("{}-changelog", self.inner.app)
    }

    /// A sink of `T` into `topic`; `encode(item, key, value)` fills the
    /// record's key and value bytes and returns whether it has a key.
    pub fn sink<T: 'static>(
        &self,
        topic: &str,
        encode: impl Fn(&T, &mut Vec<u8>, &mut Vec<u8>) -> bool + Send + Sync + 'static,
    ) -> KafkaSink<T> {
        self.sink_as(topic, Role::Output, move |item, k, v| {
            Ok(encode(item, k, v))
        })
    }

    fn sink_as<T: 'static>(
        &self,
        topic: &str,
        role: Role,
        encode: impl Fn(&T, &mut Vec<u8>, &mut Vec<u8>) -> std::result::Result<bool, String>
            + Send
            + Sync
            + 'static,
    ) -> KafkaSink<T> {
        lock(&self.inner.topics).insert(topic.to_owned(), role);
        KafkaSink {
            out: self.inner.clone(),
            topic: topic.to_owned(),
            encode: Arc::new(encode),
            headers: None,
            timestamp: None,
            format: "bytes".to_owned(),
        }
    }

    /// A dead-letter sink into `topic` (see `Pipeline::dead_letter`): the
    /// value is the record's raw bytes; the key is `task@position`; the
    /// headers `weir.error`, `weir.task` and `weir.position` say what and
    /// where.
    pub fn dead_letter_sink(&self, topic: &str) -> KafkaSink<DeadLetter> {
        use std::io::Write;
        let mut sink = self.sink_as(topic, Role::DeadLetter, |d: &DeadLetter, key, value| {
            let _ = write!(key, "{}@{}", d.task, d.position);
            value.extend_from_slice(d.raw.as_deref().unwrap_or_default());
            Ok(true)
        });
        sink.format = "dead-letter".to_owned();
        sink.headers = Some(Arc::new(|d: &DeadLetter| {
            Some(
                OwnedHeaders::new()
                    .insert(Header {
                        key: "weir.error",
                        value: Some(d.error.as_bytes()),
                    })
                    .insert(Header {
                        key: "weir.task",
                        value: Some(d.task.as_bytes()),
                    })
                    .insert(Header {
                        key: "weir.position",
                        value: Some(d.position.to_string().as_bytes()),
                    }),
            )
        }));
        sink
    }

    /// A sink of records into `topic`, whose key `key` writes (no key for
    /// [`NoKey`](weir_core::serdes::NoKey)) and value `value` writes, with
    /// the record's headers, and its timestamp when it has one (the time
    /// of sending otherwise). Partitioned by the key's bytes, as the Java
    /// clients do.
    pub fn record_sink<K: 'static, V: 'static>(
        &self,
        topic: &str,
        key: impl Serde<K>,
        value: impl Serde<V>,
    ) -> KafkaSink<Record<K, V>> {
        let format = format!("{}:{}", key.name(), value.name());
        let mut sink = self.sink_as(topic, Role::Output, move |r: &Record<K, V>, k, v| {
            // A value the serde cannot write fails the run (a bug in the
            // pipeline, not bad input): see `KafkaWriter::write`.
            let keyed = !key.is_absent(&r.key);
            if keyed {
                if let Err(e) = key.serialize(&r.key, k) {
                    return Err(format!("the key cannot be written: {e}"));
                }
            }
            value
                .serialize(&r.value, v)
                .map_err(|e| format!("the value cannot be written: {e}"))?;
            Ok(keyed)
        });
        sink.format = format;
        sink.headers = Some(Arc::new(|r: &Record<K, V>| {
            (!r.headers.is_empty()).then(|| {
                r.headers.iter().fold(OwnedHeaders::new(), |h, x| {
                    h.insert(Header {
                        key: &x.name,
                        value: Some(&x.value),
                    })
                })
            })
        }));
        sink.timestamp = Some(Arc::new(|r: &Record<K, V>| r.timestamp));
        sink
    }

    /// A sink of records into `topic`: key and value as their `Display` text.
    pub fn key_value_sink<K: Display + 'static, V: Display + 'static>(
        &self,
        topic: &str,
    ) -> KafkaSink<Record<K, V>> {
        use std::io::Write;
        let mut sink = self.sink(topic, |r: &Record<K, V>, key, value| {
            // Writing into a Vec cannot fail.
            let _ = write!(key, "{}", r.key);
            let _ = write!(value, "{}", r.value);
            true
        });
        sink.format = "display".to_owned();
        sink
    }
}

/// What a sink's topic is for, to name it when it is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Output,
    DeadLetter,
}

impl Output {
    /// Checks that every sink's topic exists: nothing is written otherwise.
    /// Returns the partition count of `also`, if it exists (0 if not).
    fn check_topics(&self, also: Option<&str>) -> Result<usize> {
        let consumer: BaseConsumer<WeirContext> = client_config(&self.settings, &[])?
            .create_with_context(WeirContext)
            .map_err(|e| kafka_error("cannot create a client", &self.settings.brokers, e))?;
        let md = consumer
            .fetch_metadata(None, self.settings.metadata_timeout)
            .map_err(|e| kafka_error("cannot read metadata", &self.settings.brokers, e))?;
        answered();
        let partitions = |topic: &str| {
            md.topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map_or(0, |t| t.partitions().len())
        };
        for (topic, role) in lock(&self.topics).iter() {
            if partitions(topic) == 0 {
                let (what, flag) = match role {
                    Role::Output => ("output topic", "--output-topic"),
                    Role::DeadLetter => ("dead-letter topic", "--dead-letter-topic"),
                };
                return Err(Error::Config(format!(
                    "{what} `{topic}` does not exist on {}; create it (e.g. kafka-topics --create --topic {topic} --partitions 4) or fix {flag}",
                    self.settings.brokers
                )));
            }
        }
        Ok(also.map_or(0, partitions))
    }

    /// The producer for a sink writer: the open transaction's, or else (at
    /// least / at most once) a plain idempotent one, made on first use.
    fn active(&self) -> Result<Active> {
        let mut p = lock(&self.producer);
        if let Some(a) = &*p {
            return Ok(a.clone());
        }
        self.check_topics(None)?;
        let deliveries = Arc::new(Deliveries::default());
        let producer: Producer = client_config(&self.settings, &[("enable.idempotence", "true")])
            .map(|c| with_defaults(c, PRODUCER_DEFAULTS))?
            .create_with_context(ProducerCx(deliveries.clone()))
            .map_err(|e| kafka_error("cannot create a producer", &self.settings.brokers, e))?;
        let a = Active {
            producer: Arc::new(producer),
            id: format!("{} (idempotent)", self.app),
            plain: Some(deliveries),
        };
        *p = Some(a.clone());
        Ok(a)
    }
}

/// Fills a record's key and value bytes from an item; true if it has a key.
type Encode<T> =
    dyn Fn(&T, &mut Vec<u8>, &mut Vec<u8>) -> std::result::Result<bool, String> + Send + Sync;

/// A sink into one Kafka topic, made by [`KafkaOutput::sink`].
pub struct KafkaSink<T> {
    out: Arc<Output>,
    topic: String,
    encode: Arc<Encode<T>>,
    headers: Option<Arc<HeadersOf<T>>>,
    timestamp: Option<Arc<TimestampOf<T>>>,
    /// How items are written, for the topology: `utf8:json<T>`.
    format: String,
}

/// The headers of an item's record, if it has any.
type HeadersOf<T> = dyn Fn(&T) -> Option<OwnedHeaders> + Send + Sync;

/// The timestamp of an item's record, if it has one.
type TimestampOf<T> = dyn Fn(&T) -> Option<i64> + Send + Sync;

impl<T: 'static> Sink<T> for KafkaSink<T> {
    fn describe(&self) -> String {
        // Not the topic: a run option, which may change between runs.
        match self.format.as_str() {
            "bytes" | "display" => "kafka".to_owned(),
            format => format!("kafka-{format}"),
        }
    }

    fn id(&self, _task: &str) -> String {
        format!("kafka:{}", self.topic)
    }

    fn open(&self, _task: &str, _truncate_to: Option<u64>) -> Result<Box<dyn SinkWriter<T>>> {
        Ok(Box::new(KafkaWriter {
            active: self.out.active()?,
            topic: self.topic.clone(),
            encode: self.encode.clone(),
            headers: self.headers.clone(),
            timestamp: self.timestamp.clone(),
            key: Vec::new(),
            value: Vec::new(),
        }))
    }

    fn commit_point(&self) -> Option<Arc<dyn CommitPoint>> {
        Some(Arc::new(KafkaCommit(self.out.clone())))
    }

    fn check(&self) -> Result<()> {
        self.out.check_topics(None).map(|_| ())
    }
}

struct KafkaWriter<T> {
    active: Active,
    topic: String,
    encode: Arc<Encode<T>>,
    headers: Option<Arc<HeadersOf<T>>>,
    timestamp: Option<Arc<TimestampOf<T>>>,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl<T> SinkWriter<T> for KafkaWriter<T> {
    fn write(&mut self, item: &T) -> Result<()> {
        self.key.clear();
        self.value.clear();
        let keyed =
            (self.encode)(item, &mut self.key, &mut self.value).map_err(|why| Error::Codec {
                op: "encode",
                what: format!("a record for `{}`", self.topic),
                message: why,
            })?;
        let record = Outgoing {
            topic: &self.topic,
            partition: None,
            key: keyed.then_some(self.key.as_slice()),
            value: Some(&self.value),
            timestamp: self.timestamp.as_ref().and_then(|t| t(item)),
        };
        send(
            &self.active.producer,
            &record,
            self.headers.as_ref().and_then(|h| h(item)),
        )
        .map_err(|e| {
            producer_error(
                &format!("send to `{}`", self.topic),
                &self.active.id,
                e,
                &self.active.producer,
            )
        })
    }

    fn flush(&mut self) -> Result<Flushed> {
        let Some(deliveries) = self.active.plain.clone() else {
            // The transaction's commit flushes.
            return Ok(Flushed {
                position: None,
                sync: None,
            });
        };
        let producer = self.active.producer.clone();
        let topic = self.topic.clone();
        Ok(Flushed {
            position: None,
            // Before the checkpoint: every record delivered, or no checkpoint.
            sync: Some(Box::new(move || {
                wait_delivered(&producer, TIMEOUT).map_err(|e| {
                    Error::State(format!(
                        "cannot deliver the output to `{topic}` ({e}); the checkpoint is not taken"
                    ))
                })?;
                match deliveries.failed.load(Ordering::Relaxed) {
                    0 => Ok(()),
                    n => Err(Error::State(format!(
                        "{n} output records to `{topic}` were not delivered; the checkpoint is not taken, and the run stops to redo it"
                    ))),
                }
            })),
        })
    }
}

/// The commit point of a [`KafkaOutput`]: its transactions.
struct KafkaCommit(Arc<Output>);

/// The transactional id of instance `instance` of application `app` (see
/// [`KafkaOutput::transactional_id`]).
fn transactional_id(app: &str, instance: &str) -> String {
    format!("{app}-{instance}")
}

impl CommitPoint for KafkaCommit {
    fn id(&self) -> String {
        format!("kafka transactions of application `{}`", self.0.app)
    }

    fn admits(&self, epoch: Duration) -> Result<()> {
        transaction_timeout(epoch).map(|_| ())
    }

    fn shards(&self, key_groups: u16) -> Result<Option<u16>> {
        let out = &self.0;
        let changelog = KafkaOutput { inner: out.clone() }.changelog_topic();
        ensure_changelog(&out.settings, &changelog, key_groups).map(Some)
    }

    fn fence_instance(&self, instance: &str) -> Result<()> {
        let id = transactional_id(&self.0.app, instance);
        // Initialising transactions under its id aborts its open one.
        TxnProducer::new(&self.0.settings, &id, TIMEOUT).map(drop)
    }

    fn forwarder(&self, topic: &str) -> Result<Box<dyn Forward>> {
        let active = self.0.active()?;
        if active.plain.is_some() {
            return Err(Error::State(format!(
                "records for other instances go through `{topic}` only inside a transaction, and none is open"
            )));
        }
        Ok(Box::new(KafkaForward {
            active,
            topic: topic.to_owned(),
        }))
    }

    fn open(&self, init: &TxnInit) -> Result<Box<dyn Transaction>> {
        let out = &self.0;
        let open_for = transaction_timeout(init.epoch)?;
        let handle = KafkaOutput { inner: out.clone() };
        let changelog = handle.changelog_topic();
        let deliveries = Arc::new(Deliveries {
            changelog: Some(changelog.clone()),
            ..Deliveries::default()
        });
        // Fencing (the broker aborts or completes the previous instance's
        // transaction) and the topic checks are independent round trips:
        // a restart waits for the longer of the two, not for their sum.
        let started = Instant::now();
        let (producer, partitions) = std::thread::scope(|scope| {
            let fence = scope.spawn(|| {
                let fenced = TxnProducer::with_deliveries(
                    &out.settings,
                    &handle.transactional_id(&init.instance),
                    TIMEOUT,
                    open_for,
                    deliveries.clone(),
                );
                tracing::debug!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "transactional producer ready (previous instance fenced)"
                );
                fenced
            });
            let partitions = out.check_topics(Some(&changelog)).and_then(|n| match n {
                0 => ensure_changelog(&out.settings, &changelog, init.key_groups),
                n => partition_count(&changelog, "changelog", n, &out.settings),
            });
            tracing::debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "output topics and changelog checked"
            );
            let producer = fence.join().unwrap_or_else(|_| {
                Err(Error::State(
                    "the thread creating the transactional producer panicked".into(),
                ))
            });
            (producer, partitions)
        });
        let partitions = partitions?;
        let producer = producer?;
        *lock(&out.producer) = Some(Active {
            producer: producer.producer(),
            id: handle.transactional_id(&init.instance),
            plain: None,
        });
        Ok(Box::new(KafkaTransaction {
            instance: init.instance.clone(),
            key_groups: init.key_groups,
            out: out.clone(),
            producer,
            changelog,
            partitions,
            deliveries,
            groups: HashMap::new(),
        }))
    }
}

/// Sends records for other instances' shards into the open transaction.
struct KafkaForward {
    active: Active,
    topic: String,
}

impl Forward for KafkaForward {
    fn send(
        &mut self,
        shard: u16,
        route: Route,
        key: &[u8],
        value: &[u8],
        timestamp: Option<i64>,
        headers: &[weir_core::Header],
    ) -> Result<()> {
        let record = Outgoing {
            topic: &self.topic,
            partition: Some(i32::from(shard)),
            key: Some(key),
            value: Some(value),
            timestamp,
        };
        let headers = route_headers(route, headers);
        send(&self.active.producer, &record, headers).map_err(|e| {
            producer_error(
                &format!("send to `{}`", self.topic),
                &self.active.id,
                e,
                &self.active.producer,
            )
        })
    }
}

/// A forwarded record's headers: its own, then, last, one that carries
/// its [`Route`], so that a header of the record's own of that name is
/// never taken for it. A first exchange's record without headers has
/// none at all, as every forwarded record had before later exchanges
/// crossed instances, so that they read the same either way.
pub(crate) fn route_headers(route: Route, own: &[weir_core::Header]) -> Option<OwnedHeaders> {
    if own.is_empty() && route.exchange == 0 {
        return None;
    }
    let mut headers = OwnedHeaders::new_with_capacity(own.len() + 1);
    for h in own {
        headers = headers.insert(Header {
            key: &h.name,
            value: Some(&h.value),
        });
    }
    Some(headers.insert(Header {
        key: EXCHANGE_HEADER,
        value: Some(&[route.exchange]),
    }))
}

struct KafkaTransaction {
    /// This instance's id, recorded with every position it commits (see
    /// [`committer`]).
    instance: String,
    /// The key groups this instance runs with, recorded beside its id.
    key_groups: u16,
    out: Arc<Output>,
    producer: TxnProducer,
    changelog: String,
    /// The changelog topic's partition count.
    partitions: u16,
    deliveries: Arc<Deliveries>,
    /// Per consumer group: a consumer for its group metadata.
    groups: HashMap<String, BaseConsumer<WeirContext>>,
}

impl KafkaTransaction {
    /// The group metadata `offsets` commit with: the current generation of
    /// this instance's member of the group (KIP-447), read now; for offsets
    /// of a source that joined no group, a client's of the group (which
    /// the broker does not fence by generation).
    fn group_metadata(&mut self, offsets: &GroupOffsets) -> Result<ConsumerGroupMetadata> {
        if let Some(member) = &offsets.member {
            if let Some(kafka) = member.as_any().downcast_ref::<KafkaMember>() {
                return kafka.group_metadata();
            }
        }
        let group = &offsets.group;
        let settings = &self.out.settings;
        if !self.groups.contains_key(group) {
            let c: BaseConsumer<WeirContext> = client_config(
                settings,
                &[("group.id", group), ("enable.auto.commit", "false")],
            )?
            .create_with_context(WeirContext)
            .map_err(|e| kafka_error("cannot create a consumer", &settings.brokers, e))?;
            self.groups.insert(group.to_owned(), c);
        }
        self.groups
            .get(group)
            .and_then(|c| c.group_metadata())
            .ok_or_else(|| Error::State(format!("no group metadata for consumer group `{group}`")))
    }
}

impl Transaction for KafkaTransaction {
    fn begin(&mut self) -> Result<()> {
        self.producer.begin()
    }

    fn changelog(&mut self, group: u16, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let partition = group % self.partitions;
        self.producer
            .send(&self.changelog, Some(i32::from(partition)), key, value)
    }

    fn commit(&mut self, offsets: Option<&GroupOffsets>) -> Result<()> {
        let Some(o) = offsets else {
            return self.producer.commit(None);
        };
        let mut tpl = TopicPartitionList::new();
        let committer = committer(&self.instance, self.key_groups);
        for (topic, partition, offset) in &o.offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset as i64))
                .map_err(|e| Error::State(format!("bad offset for {topic}-{partition}: {e}")))?;
            if let Some(mut e) = tpl.find_partition(topic, *partition) {
                e.set_metadata(committer.as_str());
            }
        }
        let meta = self.group_metadata(o)?;
        self.producer.commit(Some((&tpl, &meta)))
    }

    fn abort(&mut self) -> Result<()> {
        // Bounded: a broker that is away (the reason the run stopped,
        // often) must not hold up the retry that follows.
        self.producer.abandon(Duration::from_secs(2))
    }

    fn changelog_positions(&self) -> BTreeMap<u16, u64> {
        lock(&self.deliveries.ends).clone()
    }

    fn restore(
        &mut self,
        from: &BTreeMap<u16, u64>,
        shards: Option<&BTreeSet<u16>>,
        sized: &mut dyn FnMut(u64),
        apply: &mut ApplyFn<'_>,
    ) -> Result<BTreeMap<u16, u64>> {
        let settings = &self.out.settings;
        // A partition with nothing after its position (a new application's
        // changelog, or one that did not change since) is not read: a new
        // consumer's first fetches take hundreds of milliseconds, where the
        // producer's client knows its end in one round trip.
        let producer = self.producer.producer();
        let mut size = 0u64;
        let restored: Vec<u16> = (0..self.partitions)
            .filter(|p| shards.is_none_or(|s| s.contains(p)))
            .filter(|&p| {
                let ends = producer.client().fetch_watermarks(
                    &self.changelog,
                    i32::from(p),
                    settings.metadata_timeout,
                );
                match ends {
                    Ok((low, high)) => {
                        let start = from.get(&p).map_or(low, |o| *o as i64).max(low);
                        size += u64::try_from(high - start).unwrap_or(0);
                        start < high
                    }
                    // Read to know.
                    _ => true,
                }
            })
            .collect();
        if restored.is_empty() {
            return Ok(from.clone());
        }
        sized(size);
        let restore_group = format!("{}-restore", self.out.app);
        let consumer: BaseConsumer<WeirContext> = client_config(
            settings,
            &[
                ("group.id", &restore_group),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("isolation.level", "read_committed"),
                ("enable.partition.eof", "true"),
                ("auto.offset.reset", "earliest"),
                // The end of a partition is an empty fetch: do not wait for one.
                ("fetch.wait.max.ms", "10"),
            ],
        )
        .map(|c| with_defaults(c, CONSUMER_DEFAULTS))?
        .create_with_context(WeirContext)
        .map_err(|e| kafka_error("cannot create a consumer", &settings.brokers, e))?;
        let mut tpl = TopicPartitionList::new();
        for &p in &restored {
            let offset = from
                .get(&p)
                .map_or(Offset::Beginning, |o| Offset::Offset(*o as i64));
            tpl.add_partition_offset(&self.changelog, i32::from(p), offset)
                .map_err(|e| Error::State(format!("bad changelog offset: {e}")))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| kafka_error("cannot read the changelog", &settings.brokers, e))?;
        let mut pending: BTreeSet<i32> = restored.iter().map(|&p| i32::from(p)).collect();
        let mut progress = Instant::now();
        let stall = settings.metadata_timeout.max(Duration::from_secs(10)) * 6;
        while !pending.is_empty() {
            match consumer.poll(Duration::from_millis(200)) {
                None => {
                    if progress.elapsed() > stall {
                        return Err(Error::State(format!(
                            "reading the changelog `{}` made no progress for {stall:?} ({} partitions left); check the brokers at {}",
                            self.changelog,
                            pending.len(),
                            settings.brokers
                        )));
                    }
                }
                Some(Ok(m)) => {
                    progress = Instant::now();
                    apply(m.key().unwrap_or_default(), m.payload())?;
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    progress = Instant::now();
                    pending.remove(&p);
                }
                Some(Err(e)) => tracing::warn!("kafka: reading the changelog: {e}; retrying"),
            }
        }
        let positions = consumer
            .position()
            .map_err(|e| kafka_error("cannot read the changelog", &settings.brokers, e))?;
        let mut reached = from.clone();
        for e in positions.elements_for_topic(&self.changelog) {
            if let Offset::Offset(o) = e.offset() {
                reached.insert(e.partition() as u16, o.max(0) as u64);
            }
        }
        // Closing a consumer takes about 100 ms of librdkafka's own
        // shutdown, which recovery need not wait for.
        std::thread::spawn(move || drop(consumer));
        Ok(reached)
    }
}

/// Partitions of a new changelog topic, and so the shards of an
/// application's keyed state among its instances (at most this many hold
/// state at once; the repartition topic gets as many partitions). Every
/// partition an epoch writes to costs its transaction a commit marker,
/// which the broker writes before the next transaction may start, so an
/// epoch should touch few partitions; a restore reads every partition in
/// one consumer either way. Key groups still partition the state; the
/// topic just carries several per partition.
pub const CHANGELOG_PARTITIONS: u16 = 8;

/// Creates the compacted changelog topic (with [`CHANGELOG_PARTITIONS`], at
/// most one per key group) unless it exists; returns its partition count,
/// which the existing topic decides.
fn ensure_changelog(settings: &KafkaSettings, topic: &str, key_groups: u16) -> Result<u16> {
    ensure_topic(
        settings,
        &Wanted {
            topic,
            role: "changelog",
            partitions: CHANGELOG_PARTITIONS.min(key_groups).max(1),
            configs: &[("cleanup.policy", "compact")],
        },
    )
}
