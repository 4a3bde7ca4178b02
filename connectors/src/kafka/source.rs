//! Reading Kafka topic-partitions as source tasks.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;

use weir_core::commit::GroupOffsets;
use weir_core::group::{GroupMemberInfo, Member};
use weir_core::source::{
    Forwarded, Lag, ReadStatus, ResetTo, Resume, Route, Source, SourceReader, TaskOffsets,
};
use weir_core::{Either, Error, Header, Record, Result, Serde};

use super::client::{
    answered, client_config, kafka_error, with_defaults, KafkaSettings, ReaderContext, WeirContext,
    CONSUMER_DEFAULTS,
};
use super::member::{
    assigned_partitions, committer_of, is_instance, static_id, JoinAs, KafkaMember,
};
use super::topics::{delete_records, ensure_topic, Wanted, EXCHANGE_HEADER};

/// Where a new application (no checkpoint yet) starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest retained record.
    Earliest,
    /// Only records produced from now on.
    Latest,
    /// The first record at or after this time (ms since the Unix epoch).
    Timestamp(i64),
}

/// The records of a topic, one task per partition, read
/// `read_committed` without auto-commit: their values as UTF-8 strings
/// ([`KafkaSource::utf8`]), or whole, key and value read by serdes, with
/// partition, offset and timestamp ([`KafkaSource::records`]). Timestamps
/// and headers are the [`Record`]'s too. Several topics, each read its own
/// way, are one source ([`KafkaSource::and`]): one member of the
/// application's consumer group, one transaction.
pub struct KafkaSource<T = String> {
    settings: KafkaSettings,
    /// The topics read, each with how its records are read, in order.
    inputs: Vec<Input<T>>,
    group: String,
    start: StartAt,
    until_idle: Option<Duration>,
    admin: AdminConsumer,
    member: MemberSlot,
    repartition: RepartitionSlot,
    /// What the records are read as, for the topology: `utf8`, `json<T>`.
    format: String,
    /// Why the topics cannot be read together (see [`KafkaSource::and`]),
    /// refused when the run starts.
    conflict: Option<String>,
}

/// A topic a [`KafkaSource`] reads, and how it makes values of its records.
struct Input<T> {
    topic: String,
    decode: Decode<T>,
}

impl<T> Clone for Input<T> {
    fn clone(&self) -> Self {
        Input {
            topic: self.topic.clone(),
            decode: self.decode.clone(),
        }
    }
}

impl<T> Clone for KafkaSource<T> {
    fn clone(&self) -> Self {
        KafkaSource {
            settings: self.settings.clone(),
            inputs: self.inputs.clone(),
            group: self.group.clone(),
            start: self.start,
            until_idle: self.until_idle,
            admin: self.admin.clone(),
            member: self.member.clone(),
            repartition: self.repartition.clone(),
            format: self.format.clone(),
            conflict: self.conflict.clone(),
        }
    }
}

impl<T> std::fmt::Debug for KafkaSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("topics", &self.topics().collect::<Vec<_>>())
            .field("group", &self.group)
            .field("format", &self.format)
            .finish()
    }
}

/// A Kafka record as [`KafkaSource::records`] reads it (its timestamp and
/// headers are the [`Record`]'s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord<K, V> {
    /// The key, if the record has one.
    pub key: Option<K>,
    /// The value; `None` for a tombstone (a null value, which deletes the
    /// key from a compacted topic's table).
    pub value: Option<V>,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its timestamp (ms since the Unix epoch), if it has one: the
    /// producer's or the broker's, as the topic says.
    pub timestamp: Option<i64>,
}

/// The repartition topic and its partition count, once prepared (see
/// [`Source::repartition`]); shared by the source's clones.
#[derive(Clone, Default)]
struct RepartitionSlot(Arc<Mutex<Option<(String, u16)>>>);

impl RepartitionSlot {
    fn get(&self) -> Option<(String, u16)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl std::fmt::Debug for RepartitionSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RepartitionSlot").field(&self.get()).finish()
    }
}

/// This instance's member of the consumer group, once the run joined it
/// (shared by the source's clones: its readers copy positions through it).
#[derive(Clone, Default)]
struct MemberSlot(Arc<Mutex<Option<Arc<KafkaMember>>>>);

impl MemberSlot {
    fn get(&self) -> Option<Arc<KafkaMember>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, member: Arc<KafkaMember>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(member);
    }
}

impl std::fmt::Debug for MemberSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemberSlot")
    }
}

/// The one consumer a source's metadata and offset requests share, made on
/// first use: each new client costs a connection and its handshake, which
/// a restart would otherwise pay several times over. Dropped after an
/// error, so that the next request starts afresh (a consumer has been seen
/// to stay wedged after a broker restart).
#[derive(Clone, Default)]
struct AdminConsumer(Arc<Mutex<Option<Arc<BaseConsumer<WeirContext>>>>>);

impl std::fmt::Debug for AdminConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminConsumer")
    }
}

impl KafkaSource<String> {
    /// Values of `topic` as UTF-8 strings; `group` is the consumer group
    /// (the application id) that receives a copy of each committed position.
    pub fn utf8(settings: KafkaSettings, topic: &str, group: &str) -> Self {
        KafkaSource::decoding(settings, topic, group, Arc::new(utf8_value), "utf8")
    }
}

impl<K: Send + 'static, V: Send + 'static> KafkaSource<KafkaRecord<K, V>> {
    /// The records of `topic` in full: key read by `key`, value by `value`
    /// (a record whose key or value they cannot read is bad input, and
    /// follows the pipeline's `on_bad_input`), with partition and offset;
    /// timestamps and headers go to the [`Record`]. `group` is the
    /// consumer group (the application id).
    pub fn records(
        settings: KafkaSettings,
        topic: &str,
        group: &str,
        key: impl Serde<K>,
        value: impl Serde<V>,
    ) -> Self {
        let format = format!("{}:{}", key.name(), value.name());
        let decode: Decode<KafkaRecord<K, V>> = Arc::new(move |task, offset, m| {
            let bad = |what: &str, why: String, raw: &[u8]| Error::BadInput {
                task: task.to_owned(),
                position: offset,
                message: format!("the record's {what} cannot be read: {why}"),
                raw: Some(raw.to_vec()),
            };
            let k = match m.key() {
                Some(b) => Some(key.deserialize(b).map_err(|e| bad("key", e, b))?),
                None => None,
            };
            let v = match m.payload() {
                Some(b) => Some(value.deserialize(b).map_err(|e| bad("value", e, b))?),
                None => None,
            };
            Ok(KafkaRecord {
                key: k,
                value: v,
                partition: m.partition(),
                offset: m.offset(),
                timestamp: m.timestamp().to_millis(),
            })
        });
        KafkaSource::decoding(settings, topic, group, decode, &format)
    }
}

impl<T> KafkaSource<T> {
    fn decoding(
        settings: KafkaSettings,
        topic: &str,
        group: &str,
        decode: Decode<T>,
        format: &str,
    ) -> Self {
        KafkaSource {
            settings,
            inputs: vec![Input {
                topic: topic.to_owned(),
                decode,
            }],
            group: group.to_owned(),
            start: StartAt::Earliest,
            until_idle: None,
            admin: AdminConsumer::default(),
            member: MemberSlot::default(),
            repartition: RepartitionSlot::default(),
            format: format.to_owned(),
            conflict: None,
        }
    }

    /// This source's topics and `other`'s, read as one source of values
    /// [`Either::Left`] from this one's and [`Either::Right`] from
    /// `other`'s: orders and the customers they are joined with, say. The
    /// topics share this source's consumer group (one member, one
    /// transaction), where to start and when to end (`other`'s are not
    /// used); `other` must name the same brokers and group, or the run is
    /// refused. Their tasks are the partitions of every topic, each
    /// `<topic>-<partition>`. Chain `and` for more topics.
    pub fn and<U: Send + 'static>(self, other: KafkaSource<U>) -> KafkaSource<Either<T, U>>
    where
        T: Send + 'static,
    {
        let mut conflict = self.conflict.clone().or(other.conflict.clone());
        if other.settings.brokers != self.settings.brokers || other.group != self.group {
            conflict.get_or_insert(format!(
                "the topics {:?} are read as one source, but on brokers `{}` for group `{}`, and {:?} on `{}` for `{}`; build them with the same brokers and application id",
                self.topics().collect::<Vec<_>>(),
                self.settings.brokers,
                self.group,
                other.topics().collect::<Vec<_>>(),
                other.settings.brokers,
                other.group
            ));
        }
        let mut inputs: Vec<Input<Either<T, U>>> = Vec::new();
        for input in self.inputs {
            let decode = input.decode;
            inputs.push(Input {
                topic: input.topic,
                decode: Arc::new(move |t, o, m| decode(t, o, m).map(Either::Left)),
            });
        }
        for input in other.inputs {
            let decode = input.decode;
            inputs.push(Input {
                topic: input.topic,
                decode: Arc::new(move |t, o, m| decode(t, o, m).map(Either::Right)),
            });
        }
        for (i, input) in inputs.iter().enumerate() {
            if inputs[..i].iter().any(|x| x.topic == input.topic) {
                conflict.get_or_insert(format!(
                    "the topic `{}` is read twice by one source; read each topic once",
                    input.topic
                ));
            }
        }
        KafkaSource {
            settings: self.settings,
            inputs,
            group: self.group,
            start: self.start,
            until_idle: self.until_idle,
            admin: self.admin,
            member: self.member,
            repartition: self.repartition,
            format: format!("either<{},{}>", self.format, other.format),
            conflict,
        }
    }

    /// The topics this source reads, in order.
    fn topics(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().map(|i| i.topic.as_str())
    }

    /// Refuses a source whose topics cannot be read together.
    fn check(&self) -> Result<()> {
        match &self.conflict {
            Some(why) => Err(Error::Config(why.clone())),
            None => Ok(()),
        }
    }

    /// Where to start without a checkpoint (default: earliest).
    pub fn start_at(mut self, start: StartAt) -> Self {
        self.start = start;
        self
    }

    /// Ends a partition's task once no record arrived for `idle`: a bounded
    /// run over what the topic holds.
    pub fn until_idle(mut self, idle: Duration) -> Self {
        self.until_idle = Some(idle);
        self
    }

    fn consumer(&self) -> Result<BaseConsumer<WeirContext>> {
        self.consumer_with(WeirContext, &[])
    }

    /// A consumer for a partition reader of `partition`; with `statistics`,
    /// they report the partition's last stable offset into `stable_end`
    /// every second (the reader's lag). librdkafka queues them until the
    /// consumer is polled: only a reader that is read on may have them.
    fn reader_consumer(
        &self,
        partition: i32,
        stable_end: &Arc<AtomicI64>,
        statistics: bool,
    ) -> Result<BaseConsumer<ReaderContext>> {
        let context = ReaderContext {
            partition,
            stable_end: stable_end.clone(),
        };
        let every = if statistics { "1000" } else { "0" };
        self.consumer_with(context, &[("statistics.interval.ms", every)])
    }

    fn consumer_with<C: ConsumerContext>(
        &self,
        context: C,
        more: &[(&str, &str)],
    ) -> Result<BaseConsumer<C>> {
        let mut config = client_config(
            &self.settings,
            &[
                ("group.id", &self.group),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("isolation.level", "read_committed"),
                ("enable.partition.eof", "true"),
                // Only when a checkpointed offset was deleted by retention.
                ("auto.offset.reset", "earliest"),
            ],
        )
        .map(|c| with_defaults(c, CONSUMER_DEFAULTS))?;
        for (k, v) in more {
            config.set(*k, *v);
        }
        config
            .create_with_context(context)
            .map_err(|e| kafka_error("cannot create a consumer", &self.settings.brokers, e))
    }

    /// Runs `f` with the shared admin consumer (see [`AdminConsumer`]).
    fn with_admin<R>(&self, f: impl FnOnce(&BaseConsumer<WeirContext>) -> Result<R>) -> Result<R> {
        let consumer = {
            let mut slot = self.admin.0.lock().unwrap_or_else(|p| p.into_inner());
            match &*slot {
                Some(c) => c.clone(),
                None => slot.insert(Arc::new(self.consumer()?)).clone(),
            }
        };
        let result = f(&consumer);
        if result.is_err() {
            let mut slot = self.admin.0.lock().unwrap_or_else(|p| p.into_inner());
            if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, &consumer)) {
                *slot = None;
            }
        }
        result
    }

    /// The topics' partitions as task names, asked through `consumer`.
    fn tasks_with(&self, consumer: &BaseConsumer<WeirContext>) -> Result<Vec<String>> {
        self.check()?;
        let mut tasks = Vec::new();
        for name in self.topics() {
            let md = consumer
                .fetch_metadata(Some(name), self.settings.metadata_timeout)
                .map_err(|e| kafka_error("cannot read metadata", &self.settings.brokers, e))?;
            answered();
            match md.topics().iter().find(|t| t.name() == name) {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                    tasks.extend(t.partitions().iter().map(|p| format!("{name}-{}", p.id())))
                }
                _ => return Err(Error::Config(format!(
                    "topic `{name}` does not exist on {}; create it (e.g. kafka-topics --create --topic {name} --partitions 4) or fix the option that names it (`--input-topic`, `--orders-topic`, ...)",
                    self.settings.brokers
                ))),
            }
        }
        Ok(tasks)
    }

    /// The offset of `partition` that `to` names, asked through `consumer`:
    /// an offset is clamped to the retained range, and a time past the last
    /// record gives the end.
    fn offset_at(
        &self,
        consumer: &BaseConsumer<WeirContext>,
        topic: &str,
        partition: i32,
        to: ResetTo,
    ) -> Result<i64> {
        let timeout = self.settings.metadata_timeout;
        let brokers = &self.settings.brokers;
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(|e| kafka_error("cannot read offsets", brokers, e))?;
        Ok(match to {
            ResetTo::Earliest => low,
            ResetTo::Latest => high,
            ResetTo::Offset(n) => (n as i64).clamp(low, high),
            ResetTo::Timestamp(ts) => {
                let mut q = TopicPartitionList::new();
                q.add_partition_offset(topic, partition, Offset::Offset(ts))
                    .map_err(|e| kafka_error("bad timestamp", brokers, e))?;
                let found = consumer
                    .offsets_for_times(q, timeout)
                    .map_err(|e| kafka_error("cannot look up offsets by time", brokers, e))?;
                match found.find_partition(topic, partition).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) if o >= 0 => o,
                    _ => high,
                }
            }
        })
    }

    /// The input `task` is a partition of, and the partition.
    fn input_of(&self, task: &str) -> Result<(&Input<T>, i32)> {
        self.inputs
            .iter()
            .find_map(|i| partition_in(task, &i.topic).map(|p| (i, p)))
            .ok_or_else(|| {
                Error::Config(format!(
                    "`{task}` is not a partition of {}",
                    self.topics()
                        .map(|t| format!("topic `{t}`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ))
            })
    }

    /// The topic and partition of `task`: an input's, or the repartition
    /// topic's once prepared.
    fn topic_partition(&self, task: &str) -> Result<(String, i32)> {
        if let Some((topic, _)) = self.repartition.get() {
            if let Some(p) = partition_in(task, &topic) {
                return Ok((topic, p));
            }
        }
        self.input_of(task).map(|(i, p)| (i.topic.clone(), p))
    }

    /// The repartition topic's tasks, once prepared.
    fn shard_tasks(&self) -> Vec<String> {
        self.repartition
            .get()
            .map(|(topic, n)| (0..n).map(|s| format!("{topic}-{s}")).collect())
            .unwrap_or_default()
    }

    /// A reader of `partition` of `topic` from offset `start`, whose
    /// records `decode` makes values of.
    fn reader<R>(
        &self,
        task: &str,
        topic: &str,
        partition: i32,
        start: i64,
        decode: Decode<R>,
        statistics: bool,
    ) -> Result<PartitionReader<R, T>> {
        let stable_end = Arc::new(AtomicI64::new(-1));
        let consumer = self.reader_consumer(partition, &stable_end, statistics)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(start))
            .map_err(|e| kafka_error("bad offset", &self.settings.brokers, e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| kafka_error("cannot assign", &self.settings.brokers, e))?;
        Ok(PartitionReader {
            consumer,
            task: task.to_owned(),
            topic: topic.to_owned(),
            partition,
            next: start as u64,
            until_idle: self.until_idle,
            idle_since: None,
            checked: None,
            copied: None,
            source: self.clone(),
            decode,
            drain: false,
            stable_end,
            statistics,
        })
    }
}

/// The partition of `topic` that task `task` (`<topic>-<partition>`) reads.
fn partition_in(task: &str, topic: &str) -> Option<i32> {
    task.strip_prefix(topic)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|p| p.parse().ok())
}

/// Makes a value of a record (its task, offset and message).
type Decode<T> = Arc<dyn Fn(&str, u64, &BorrowedMessage<'_>) -> Result<T> + Send + Sync>;

/// An input record's value as UTF-8 text.
fn utf8_value(task: &str, offset: u64, m: &BorrowedMessage<'_>) -> Result<String> {
    let payload = m.payload().unwrap_or_default();
    std::str::from_utf8(payload)
        .map(str::to_owned)
        .map_err(|e| Error::BadInput {
            task: task.to_owned(),
            position: offset,
            message: format!("value is not UTF-8: {e}"),
            raw: Some(payload.to_vec()),
        })
}

/// A record another instance forwarded: its encoded key and value, its
/// route (its last header, see `route_headers` in the sink) and its own
/// headers.
fn forwarded(task: &str, offset: u64, m: &impl Message) -> Result<Forwarded> {
    let mut route = Route::default();
    let mut headers: Vec<Header> = m
        .headers()
        .into_iter()
        .flat_map(|h| h.iter())
        .map(|h| Header {
            name: h.key.to_owned(),
            value: h.value.unwrap_or_default().to_vec(),
        })
        .collect();
    if headers.last().is_some_and(|h| h.name == EXCHANGE_HEADER) {
        match headers.pop().map(|h| h.value).as_deref() {
            Some([n]) => route.exchange = *n,
            _ => return Err(unroutable(task, offset, EXCHANGE_HEADER)),
        }
    }
    Ok(Forwarded {
        key: m.key().unwrap_or_default().to_vec(),
        value: m.payload().unwrap_or_default().to_vec(),
        route,
        headers,
        offset,
    })
}

/// A forwarded record whose header `header` weir did not write.
fn unroutable(task: &str, offset: u64, header: &str) -> Error {
    Error::State(format!(
        "the record at {offset} of `{task}` has a `{header}` header weir did not write: the repartition topic is weir's own; let no other producer write to it"
    ))
}

impl<T: Send + 'static> Source for KafkaSource<T> {
    type Item = T;

    fn describe(&self) -> String {
        format!("kafka-{}", self.format)
    }

    fn tasks(&self) -> Result<Vec<String>> {
        self.with_admin(|c| self.tasks_with(c))
    }

    /// Its topics, in the order [`and`](KafkaSource::and) joined them.
    fn inputs(&self) -> usize {
        self.inputs.len()
    }

    fn input_of(&self, task: &str) -> usize {
        self.inputs
            .iter()
            .position(|i| partition_in(task, &i.topic).is_some())
            .unwrap_or(0)
    }

    fn active_readers(&self, own: Option<&str>) -> Result<Vec<String>> {
        let own_id = own.map(|i| static_id(&self.group, i));
        Ok(self
            .members()?
            .into_iter()
            .filter(|m| {
                !matches!((own, &own_id), (Some(i), Some(id)) if is_instance(&m.member, &m.client, id, i))
            })
            .map(|m| {
                format!(
                    "member `{}` (client `{}` on {}) of consumer group `{}`",
                    m.member, m.client, m.host, self.group
                )
            })
            .collect())
    }

    fn members(&self) -> Result<Vec<GroupMemberInfo>> {
        let repartition = self.repartition.get().map(|(topic, _)| topic);
        self.with_admin(|consumer| {
            let groups = consumer
                .fetch_group_list(Some(&self.group), self.settings.metadata_timeout)
                .map_err(|e| {
                    kafka_error(
                        "cannot describe the consumer group",
                        &self.settings.brokers,
                        e,
                    )
                })?;
            Ok(groups
                .groups()
                .iter()
                .filter(|g| g.name() == self.group)
                .flat_map(|g| g.members())
                .map(|m| {
                    let raw = m.assignment().unwrap_or_default();
                    let mut tasks = Vec::new();
                    let topics = self.topics().map(str::to_owned).chain(repartition.clone());
                    for topic in topics {
                        let mut partitions = assigned_partitions(raw, &topic);
                        partitions.sort_unstable();
                        tasks.extend(partitions.into_iter().map(|p| format!("{topic}-{p}")));
                    }
                    GroupMemberInfo {
                        member: m.id().to_owned(),
                        client: m.client_id().to_owned(),
                        host: m.client_host().to_owned(),
                        tasks,
                    }
                })
                .collect())
        })
    }

    fn has_group(&self) -> bool {
        true
    }

    fn join(&self, instance: &str, shared: bool) -> Result<Option<Member>> {
        let mut topics: Vec<String> = self.topics().map(str::to_owned).collect();
        let mut partitions = self.tasks()?.len();
        if let Some((topic, shards)) = self.repartition.get() {
            topics.push(topic);
            partitions += usize::from(shards);
        }
        let at = JoinAs {
            group: &self.group,
            topics,
            instance,
            partitions,
            shared,
        };
        let member = KafkaMember::join(&self.settings, &at, &|| {
            Ok(!self.active_readers(Some(instance))?.is_empty())
        })?;
        self.member.set(member.clone());
        Ok(Some(member as Member))
    }

    fn until_idle(&self) -> Option<Duration> {
        self.until_idle
    }

    fn bounded(&self) -> bool {
        self.until_idle.is_some()
    }

    fn offsets(&self) -> Result<Vec<TaskOffsets>> {
        self.with_admin(|consumer| {
            let timeout = self.settings.metadata_timeout;
            let brokers = &self.settings.brokers;
            let mut tpl = TopicPartitionList::new();
            let mut tasks = self.tasks_with(consumer)?;
            tasks.extend(self.shard_tasks());
            for task in &tasks {
                let (topic, p) = self.topic_partition(task)?;
                tpl.add_partition(&topic, p);
            }
            let committed = consumer.committed_offsets(tpl, timeout).map_err(|e| {
                // The brokers answered the metadata just now: a wait this
                // long is librdkafka asking again while a pending
                // transaction holds the positions (unstable offsets).
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::OperationTimedOut) {
                    Error::Aborted(format!(
                        "the group's positions did not settle within {timeout:?}: {e}"
                    ))
                } else {
                    kafka_error("cannot read the group's offsets", brokers, e)
                }
            })?;
            tasks
                .into_iter()
                .map(|task| {
                    let (topic, p) = self.topic_partition(&task)?;
                    let (_, high) = consumer
                        .fetch_watermarks(&topic, p, timeout)
                        .map_err(|e| kafka_error("cannot read offsets", brokers, e))?;
                    let found = committed.find_partition(&topic, p);
                    // A position a pending transaction holds stays unsettled
                    // after librdkafka's retries: never read as none.
                    if let Some(Err(e)) = found.as_ref().map(|e| e.error()) {
                        return Err(Error::Aborted(format!(
                            "the group's position of {topic}-{p} is not settled: {e}"
                        )));
                    }
                    let committed = match found.map(|e| e.offset()) {
                        Some(Offset::Offset(o)) if o >= 0 => Some(o as u64),
                        _ => None,
                    };
                    Ok(TaskOffsets {
                        task,
                        committed,
                        end: Some(high.max(0) as u64),
                    })
                })
                .collect()
        })
    }

    fn resolve(&self, to: ResetTo) -> Result<BTreeMap<String, u64>> {
        self.with_admin(|consumer| {
            let mut out = BTreeMap::new();
            for task in self.tasks_with(consumer)? {
                let (input, p) = self.input_of(&task)?;
                let pos = self.offset_at(consumer, &input.topic, p, to)?;
                out.insert(task, pos.max(0) as u64);
            }
            Ok(out)
        })
    }

    fn group_offsets(&self, positions: &BTreeMap<String, u64>) -> Result<Option<GroupOffsets>> {
        let offsets = positions
            .iter()
            .map(|(task, pos)| {
                let (topic, p) = self.topic_partition(task)?;
                Ok((topic, p, *pos))
            })
            .collect::<Result<_>>()?;
        Ok(Some(GroupOffsets {
            group: self.group.clone(),
            offsets,
            member: self.member.get().map(|m| m as Member),
        }))
    }

    fn publish(&self, positions: &BTreeMap<String, u64>) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for (task, pos) in positions {
            let (input, p) = self.input_of(task)?;
            tpl.add_partition_offset(&input.topic, p, Offset::Offset(*pos as i64))
                .map_err(|e| kafka_error("bad offset", &self.settings.brokers, e))?;
        }
        self.with_admin(|consumer| {
            consumer.commit(&tpl, CommitMode::Sync).map_err(|e| {
                kafka_error(
                    "cannot commit the group's offsets",
                    &self.settings.brokers,
                    e,
                )
            })
        })
    }

    fn open(&self, task: &str, from: Option<&Resume>) -> Result<Box<dyn SourceReader<T>>> {
        let position = from.map(|f| f.position);
        let (input, partition) = self.input_of(task)?;
        let topic = input.topic.as_str();
        // Resolve a concrete offset, so that the position is known before
        // the first record: a checkpoint taken then must not say "0".
        let start = match (position, self.start) {
            (Some(p), _) => p as i64,
            (None, start) => {
                let to = match start {
                    StartAt::Earliest => ResetTo::Earliest,
                    StartAt::Latest => ResetTo::Latest,
                    StartAt::Timestamp(ts) => ResetTo::Timestamp(ts),
                };
                self.with_admin(|c| self.offset_at(c, topic, partition, to))?
            }
        };
        Ok(Box::new(self.reader(
            task,
            topic,
            partition,
            start,
            input.decode.clone(),
            true,
        )?))
    }

    fn repartition(&self, shards: u16) -> Result<Option<String>> {
        let topic = format!("{}-repartition", self.group);
        // Kept until read and purged: an application that stays down long
        // loses nothing to retention (as Kafka Streams keeps its own).
        let found = ensure_topic(
            &self.settings,
            &Wanted {
                topic: &topic,
                role: "repartition",
                partitions: shards,
                configs: &[("cleanup.policy", "delete"), ("retention.ms", "-1")],
            },
        )?;
        if found != shards {
            return Err(Error::Config(format!(
                "the repartition topic `{topic}` on {} has {found} partitions, but this application's state is split into {shards} shards (the partitions of its changelog); with another count, records would reach instances that do not hold their key group. Give `{topic}` {shards} partitions again; or, once no record in it is left to read (`offsets show` lists no lag on it), stop every instance, delete it (kafka-topics --delete --topic {topic}) and let weir make it again",
                self.settings.brokers
            )));
        }
        *self.repartition.0.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((topic.clone(), shards));
        Ok(Some(topic))
    }

    fn open_shard(
        &self,
        shard: u16,
        from: Option<u64>,
        drain: bool,
    ) -> Result<Box<dyn SourceReader<Forwarded>>> {
        let Some((topic, _)) = self.repartition.get() else {
            return Err(Error::State(format!(
                "shard {shard} opened before the repartition topic was prepared"
            )));
        };
        let task = format!("{topic}-{shard}");
        let partition = i32::from(shard);
        let start = match from {
            Some(p) => p as i64,
            // No holder ever committed a position: every record there is
            // still to be processed, from the first one retained.
            None => self.with_admin(|c| {
                c.fetch_watermarks(&topic, partition, self.settings.metadata_timeout)
                    .map(|(low, _)| low)
                    .map_err(|e| kafka_error("cannot read offsets", &self.settings.brokers, e))
            })?,
        };
        // A drained shard ends at once and is not read on: no statistics.
        let mut reader = self.reader(
            &task,
            &topic,
            partition,
            start,
            Arc::new(|task: &str, offset, m: &BorrowedMessage<'_>| forwarded(task, offset, m))
                as Decode<Forwarded>,
            !drain,
        )?;
        reader.drain = drain;
        Ok(Box::new(reader))
    }

    fn last_committers(&self) -> Result<BTreeMap<String, Option<u16>>> {
        let mut tpl = TopicPartitionList::new();
        let mut tasks = self.tasks()?;
        tasks.extend(self.shard_tasks());
        for task in &tasks {
            let (topic, p) = self.topic_partition(task)?;
            tpl.add_partition(&topic, p);
        }
        // The settled positions, whatever is pending: read_uncommitted asks
        // the group without requiring stable offsets.
        let consumer: BaseConsumer<WeirContext> = client_config(
            &self.settings,
            &[
                ("group.id", &self.group),
                ("enable.auto.commit", "false"),
                ("isolation.level", "read_uncommitted"),
            ],
        )?
        .create_with_context(WeirContext)
        .map_err(|e| kafka_error("cannot create a consumer", &self.settings.brokers, e))?;
        let committed = consumer
            .committed_offsets(tpl, self.settings.metadata_timeout)
            .map_err(|e| {
                kafka_error("cannot read the group's offsets", &self.settings.brokers, e)
            })?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|e| committer_of(e.metadata()))
            .map(|(id, key_groups)| (id.to_owned(), key_groups))
            .collect())
    }

    fn shard_ends(&self, shards: &[u16]) -> Result<BTreeMap<u16, u64>> {
        let Some((topic, _)) = self.repartition.get() else {
            return Ok(BTreeMap::new());
        };
        self.with_admin(|consumer| {
            shards
                .iter()
                .map(|&shard| {
                    let (_, high) = consumer
                        .fetch_watermarks(&topic, i32::from(shard), self.settings.metadata_timeout)
                        .map_err(|e| {
                            kafka_error("cannot read a shard's end", &self.settings.brokers, e)
                        })?;
                    Ok((shard, high.max(0) as u64))
                })
                .collect()
        })
    }

    fn purge(&self, positions: &BTreeMap<String, u64>) -> Result<()> {
        let Some((topic, _)) = self.repartition.get() else {
            return Ok(());
        };
        let mut tpl = TopicPartitionList::new();
        for (task, pos) in positions {
            if let Some(p) = partition_in(task, &topic) {
                tpl.add_partition_offset(&topic, p, Offset::Offset(*pos as i64))
                    .map_err(|e| kafka_error("bad offset", &self.settings.brokers, e))?;
            }
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        delete_records(&self.settings, &tpl)
    }
}

/// Reads one partition into values of `T`, for a source of `U`s (the
/// same type, but for the repartition topic's shards).
struct PartitionReader<T, U> {
    consumer: BaseConsumer<ReaderContext>,
    task: String,
    topic: String,
    partition: i32,
    /// The next offset to read.
    next: u64,
    until_idle: Option<Duration>,
    idle_since: Option<Instant>,
    /// When an idle partition was last checked for records it should have seen.
    checked: Option<Instant>,
    /// The last position copied to the consumer group (asynchronously).
    copied: Option<u64>,
    /// To make a new consumer when this one is stuck.
    source: KafkaSource<U>,
    decode: Decode<T>,
    /// Ends at the partition's end (see [`Source::open_shard`]).
    drain: bool,
    /// The partition's last stable offset, as the consumer's statistics
    /// last reported it (-1 before the first report).
    stable_end: Arc<AtomicI64>,
    /// Whether the consumer reports statistics (until the reader ends).
    statistics: bool,
}

impl<T, U> Drop for PartitionReader<T, U> {
    /// The last copy to the group waits for its outcome, so that a finished
    /// run leaves the group at its last checkpoint.
    fn drop(&mut self) {
        if let Some(position) = self.copied {
            let mut tpl = TopicPartitionList::new();
            if tpl
                .add_partition_offset(&self.topic, self.partition, Offset::Offset(position as i64))
                .is_ok()
            {
                if let Err(e) = self.copy(&tpl, CommitMode::Sync) {
                    tracing::warn!(task = %self.task, "cannot copy the committed position to the consumer group: {e}");
                }
            }
        }
    }
}

/// How long a partition may stay idle before the reader checks whether the
/// broker holds records past its position.
const STALL_CHECK: Duration = Duration::from_secs(5);

impl<T, U> PartitionReader<T, U> {
    /// Copies a committed position to the consumer group: as the
    /// instance's member when it joined one (a group with members refuses
    /// commits from outside it), else as a client of the group.
    fn copy(&self, tpl: &TopicPartitionList, mode: CommitMode) -> Result<()> {
        match self.source.member.get() {
            Some(member) => member.commit(tpl, mode),
            None => self.consumer.commit(tpl, mode).map_err(|e| {
                kafka_error(
                    "cannot commit the group's offsets",
                    &self.source.settings.brokers,
                    e,
                )
            }),
        }
    }

    /// After a broker restart, a consumer has been seen to stay wedged:
    /// its requests to the broker queue up and time out, and it reads
    /// nothing although the partition has more records. If the partition's
    /// end is past the position (or the consumer cannot even ask), read on
    /// from the position with a new consumer.
    fn unstick(&mut self) {
        let behind = match self.consumer.fetch_watermarks(
            &self.topic,
            self.partition,
            Duration::from_secs(2),
        ) {
            Ok((_, high)) => high.max(0) as u64 > self.next,
            Err(_) => true,
        };
        tracing::debug!(task = %self.task, position = self.next, behind, "an idle partition checked against its end");
        if !behind {
            return;
        }
        let fresh = self
            .source
            .reader_consumer(self.partition, &self.stable_end, self.statistics)
            .and_then(|c| {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(
                    &self.topic,
                    self.partition,
                    Offset::Offset(self.next as i64),
                )
                .and_then(|()| c.assign(&tpl))
                .map_err(|e| kafka_error("cannot assign", &self.source.settings.brokers, e))?;
                Ok(c)
            });
        match fresh {
            Ok(c) => {
                tracing::info!(
                    task = %self.task,
                    position = self.next,
                    "no records for a while below the partition's end: reading on with a new consumer"
                );
                self.consumer = c;
            }
            Err(e) => tracing::warn!(task = %self.task, "cannot make a new consumer: {e}"),
        }
    }

    /// Moves the position to the consumer's, which may be past control
    /// records (transaction markers) that yield no message.
    fn skip_to_position(&mut self) {
        if let Ok(tpl) = self.consumer.position() {
            if let Some(Offset::Offset(o)) = tpl
                .find_partition(&self.topic, self.partition)
                .map(|e| e.offset())
            {
                self.next = self.next.max(o.max(0) as u64);
            }
        }
    }

    fn idle(&mut self) -> ReadStatus {
        let since = *self.idle_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= STALL_CHECK && self.checked.is_none_or(|c| c.elapsed() >= STALL_CHECK)
        {
            self.checked = Some(Instant::now());
            self.unstick();
        }
        match self.until_idle {
            Some(limit) if since.elapsed() >= limit => ReadStatus::End,
            _ => ReadStatus::Idle,
        }
    }
}

impl<T: Send, U> PartitionReader<T, U> {
    fn read_records(&mut self, out: &mut Vec<Record<(), T>>, max: usize) -> Result<ReadStatus> {
        let mut timeout = Duration::from_millis(50);
        for _ in 0..max {
            let Some(result) = self.consumer.poll(timeout) else {
                return Ok(if out.is_empty() {
                    self.idle()
                } else {
                    ReadStatus::More
                });
            };
            timeout = Duration::ZERO;
            match result {
                Ok(m) => {
                    self.idle_since = None;
                    let offset = m.offset() as u64;
                    self.next = offset + 1;
                    let value = (self.decode)(&self.task, offset, &m)?;
                    let mut r = Record::new((), value);
                    r.timestamp = m.timestamp().to_millis();
                    if let Some(headers) = m.headers() {
                        r.headers = headers
                            .iter()
                            .map(|h| Header {
                                name: h.key.to_owned(),
                                value: h.value.unwrap_or_default().to_vec(),
                            })
                            .collect();
                    }
                    out.push(r);
                }
                Err(KafkaError::PartitionEOF(_)) => {
                    // Past the end's transaction markers too: a group at
                    // this position shows no lag.
                    self.skip_to_position();
                    return Ok(if !out.is_empty() {
                        ReadStatus::More
                    } else if self.drain {
                        ReadStatus::End
                    } else {
                        self.idle()
                    });
                }
                Err(e) => {
                    // Transient broker trouble: librdkafka retries; report it.
                    tracing::warn!(task = %self.task, "kafka: {e}; retrying");
                    let _ = self.idle();
                    return Ok(ReadStatus::Idle);
                }
            }
        }
        Ok(ReadStatus::More)
    }

    /// At its end, the reader is no longer read, and its consumer no
    /// longer polled: one without statistics takes its place (it still
    /// copies committed positions), lest they queue up unread.
    fn end_statistics(&mut self) {
        if !self.statistics {
            return;
        }
        self.statistics = false;
        match self
            .source
            .reader_consumer(self.partition, &self.stable_end, false)
        {
            Ok(quiet) => {
                let old = std::mem::replace(&mut self.consumer, quiet);
                // Closing a consumer takes librdkafka about 100 ms.
                std::thread::spawn(move || drop(old));
            }
            Err(e) => {
                tracing::warn!(task = %self.task, "cannot make a consumer without statistics: {e}")
            }
        }
    }
}

impl<T: Send, U: Send> SourceReader<T> for PartitionReader<T, U> {
    fn read(&mut self, out: &mut Vec<Record<(), T>>, max: usize) -> Result<ReadStatus> {
        let status = self.read_records(out, max)?;
        if status == ReadStatus::End {
            self.end_statistics();
        }
        Ok(status)
    }

    fn position(&self) -> u64 {
        self.next
    }

    /// Against the last stable offset: records of open transactions and
    /// transaction markers are not lag.
    fn lag(&self) -> Option<Lag> {
        let end = u64::try_from(self.stable_end.load(Ordering::Relaxed)).ok()?;
        Some(Lag::Records {
            topic: self.topic.clone(),
            partition: self.partition,
            behind: end.saturating_sub(self.next),
        })
    }

    fn committed(&mut self, position: u64) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, self.partition, Offset::Offset(position as i64))
            .map_err(|e| Error::State(format!("cannot commit group offset: {e}")))?;
        // Asynchronous: a group coordinator that is slow to come back (a
        // broker restart) must not hold up reading. The outcome is logged
        // by the consumer's context.
        if let Err(e) = self.copy(&tpl, CommitMode::Async) {
            // Advisory only: the checkpoint is the truth.
            tracing::warn!(task = %self.task, "cannot copy the committed position to the consumer group: {e}");
        }
        self.copied = Some(position);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_record_keeps_its_headers_and_route() -> Result<()> {
        use rdkafka::message::OwnedMessage;
        use rdkafka::Timestamp;
        use weir_core::source::Route;

        let own = vec![
            Header {
                name: "trace".into(),
                value: b"t-1".to_vec(),
            },
            Header {
                name: "empty".into(),
                value: Vec::new(),
            },
        ];
        let message = |route: Route, own: &[Header]| {
            OwnedMessage::new(
                Some(b"v".to_vec()),
                Some(b"k".to_vec()),
                "app-repartition".into(),
                Timestamp::CreateTime(42),
                3,
                7,
                super::super::sink::route_headers(route, own),
            )
        };
        let f = forwarded("shard-3", 7, &message(Route { exchange: 2 }, &own))?;
        assert_eq!((f.key, f.value), (b"k".to_vec(), b"v".to_vec()));
        assert_eq!((f.route, f.offset), (Route { exchange: 2 }, 7));
        assert_eq!(f.headers, own);
        // The first exchange's records without headers are written as
        // before later exchanges crossed instances: with none.
        assert!(super::super::sink::route_headers(Route::default(), &[]).is_none());
        let f = forwarded("shard-3", 7, &message(Route::default(), &own))?;
        assert_eq!((f.route, f.headers), (Route::default(), own.clone()));
        // A header of the record's own by weir's name stays the record's.
        let mut theirs = own;
        theirs.push(Header {
            name: EXCHANGE_HEADER.into(),
            value: vec![9, 9],
        });
        for route in [Route::default(), Route { exchange: 1 }] {
            let f = forwarded("shard-3", 7, &message(route, &theirs))?;
            assert_eq!((f.route, &f.headers), (route, &theirs));
        }
        Ok(())
    }

    fn settings() -> KafkaSettings {
        // Nothing listens there: these tests never reach a broker.
        KafkaSettings::new("127.0.0.1:1")
    }

    #[test]
    fn topics_read_together_need_one_group_and_brokers_and_each_topic_once() {
        let other_group = KafkaSource::utf8(settings(), "orders", "app").and(KafkaSource::utf8(
            settings(),
            "customers",
            "other",
        ));
        let err = other_group.tasks().expect_err("refused").to_string();
        assert!(err.contains("same brokers and application id"), "{err}");

        let twice = KafkaSource::utf8(settings(), "orders", "app").and(KafkaSource::utf8(
            settings(),
            "orders",
            "app",
        ));
        let err = twice.tasks().expect_err("refused").to_string();
        assert!(err.contains("`orders` is read twice"), "{err}");
    }

    #[test]
    fn a_task_belongs_to_the_topic_whose_partition_it_names() {
        let source = KafkaSource::utf8(settings(), "orders", "app")
            .and(KafkaSource::utf8(settings(), "orders-eu", "app"))
            .and(KafkaSource::utf8(settings(), "orders-eu-1", "app"));
        let of = |task: &str| {
            source
                .input_of(task)
                .map(|(i, p)| (i.topic.clone(), p))
                .map_err(|e| e.to_string())
        };
        assert_eq!(of("orders-3"), Ok(("orders".to_owned(), 3)));
        assert_eq!(of("orders-eu-1"), Ok(("orders-eu".to_owned(), 1)));
        assert_eq!(of("orders-eu-1-0"), Ok(("orders-eu-1".to_owned(), 0)));
        let err = of("customers-0").expect_err("no such topic");
        assert!(err.contains("topic `orders-eu`"), "{err}");
        assert_eq!(
            source.describe(),
            "kafka-either<either<utf8,utf8>,utf8>",
            "the topology says how each topic is read, not which"
        );
    }
}
