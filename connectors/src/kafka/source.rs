//! Reading Kafka topic-partitions as source tasks.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;

use weir_core::commit::GroupOffsets;
use weir_core::group::{GroupMemberInfo, Member};
use weir_core::source::{ReadStatus, ResetTo, Resume, Source, SourceReader, TaskOffsets};
use weir_core::{Error, Record, Result};

use super::client::{
    client_config, kafka_error, with_defaults, KafkaSettings, WeirContext, CONSUMER_DEFAULTS,
};
use super::member::{assigned_partitions, is_instance, static_id, KafkaMember};

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

/// The records of one topic as UTF-8 strings, one task per partition,
/// read `read_committed` without auto-commit.
#[derive(Debug, Clone)]
pub struct KafkaSource {
    settings: KafkaSettings,
    topic: String,
    group: String,
    start: StartAt,
    until_idle: Option<Duration>,
    admin: AdminConsumer,
    member: MemberSlot,
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

impl KafkaSource {
    /// Values of `topic` as UTF-8 strings; `group` is the consumer group
    /// (the application id) that receives a copy of each committed position.
    pub fn utf8(settings: KafkaSettings, topic: &str, group: &str) -> Self {
        KafkaSource {
            settings,
            topic: topic.to_owned(),
            group: group.to_owned(),
            start: StartAt::Earliest,
            until_idle: None,
            admin: AdminConsumer::default(),
            member: MemberSlot::default(),
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
        client_config(
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
        .map(|c| with_defaults(c, CONSUMER_DEFAULTS))?
        .create_with_context(WeirContext)
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

    /// The topic's partitions as task names, asked through `consumer`.
    fn tasks_with(&self, consumer: &BaseConsumer<WeirContext>) -> Result<Vec<String>> {
        let md = consumer
            .fetch_metadata(Some(&self.topic), self.settings.metadata_timeout)
            .map_err(|e| kafka_error("cannot read metadata", &self.settings.brokers, e))?;
        let topic = md.topics().iter().find(|t| t.name() == self.topic);
        match topic {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(t
                .partitions()
                .iter()
                .map(|p| format!("{}-{}", self.topic, p.id()))
                .collect()),
            _ => Err(Error::Config(format!(
                "topic `{}` does not exist on {}; create it (e.g. kafka-topics --create --topic {} --partitions 4) or fix --input-topic",
                self.topic, self.settings.brokers, self.topic
            ))),
        }
    }

    /// The offset of `partition` that `to` names, asked through `consumer`:
    /// an offset is clamped to the retained range, and a time past the last
    /// record gives the end.
    fn offset_at(
        &self,
        consumer: &BaseConsumer<WeirContext>,
        partition: i32,
        to: ResetTo,
    ) -> Result<i64> {
        let timeout = self.settings.metadata_timeout;
        let brokers = &self.settings.brokers;
        let (low, high) = consumer
            .fetch_watermarks(&self.topic, partition, timeout)
            .map_err(|e| kafka_error("cannot read offsets", brokers, e))?;
        Ok(match to {
            ResetTo::Earliest => low,
            ResetTo::Latest => high,
            ResetTo::Offset(n) => (n as i64).clamp(low, high),
            ResetTo::Timestamp(ts) => {
                let mut q = TopicPartitionList::new();
                q.add_partition_offset(&self.topic, partition, Offset::Offset(ts))
                    .map_err(|e| kafka_error("bad timestamp", brokers, e))?;
                let found = consumer
                    .offsets_for_times(q, timeout)
                    .map_err(|e| kafka_error("cannot look up offsets by time", brokers, e))?;
                match found
                    .find_partition(&self.topic, partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(o)) if o >= 0 => o,
                    _ => high,
                }
            }
        })
    }

    fn partition_of(&self, task: &str) -> Result<i32> {
        task.strip_prefix(&self.topic)
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| {
                Error::Config(format!(
                    "`{task}` is not a partition of topic `{}`",
                    self.topic
                ))
            })
    }
}

impl Source for KafkaSource {
    type Item = String;

    fn describe(&self) -> String {
        "kafka-utf8".to_owned()
    }

    fn tasks(&self) -> Result<Vec<String>> {
        self.with_admin(|c| self.tasks_with(c))
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
                    let mut partitions =
                        assigned_partitions(m.assignment().unwrap_or_default(), &self.topic);
                    partitions.sort_unstable();
                    GroupMemberInfo {
                        member: m.id().to_owned(),
                        client: m.client_id().to_owned(),
                        host: m.client_host().to_owned(),
                        tasks: partitions
                            .into_iter()
                            .map(|p| format!("{}-{p}", self.topic))
                            .collect(),
                    }
                })
                .collect())
        })
    }

    fn join(&self, instance: &str) -> Result<Option<Member>> {
        let partitions = self.tasks()?.len();
        let member = KafkaMember::join(
            &self.settings,
            &self.group,
            &self.topic,
            instance,
            partitions,
            &|| Ok(!self.active_readers(Some(instance))?.is_empty()),
        )?;
        self.member.set(member.clone());
        Ok(Some(member as Member))
    }

    fn offsets(&self) -> Result<Vec<TaskOffsets>> {
        self.with_admin(|consumer| {
            let timeout = self.settings.metadata_timeout;
            let brokers = &self.settings.brokers;
            let mut tpl = TopicPartitionList::new();
            let tasks = self.tasks_with(consumer)?;
            for task in &tasks {
                tpl.add_partition(&self.topic, self.partition_of(task)?);
            }
            let committed = consumer
                .committed_offsets(tpl, timeout)
                .map_err(|e| kafka_error("cannot read the group's offsets", brokers, e))?;
            tasks
                .into_iter()
                .map(|task| {
                    let p = self.partition_of(&task)?;
                    let (_, high) = consumer
                        .fetch_watermarks(&self.topic, p, timeout)
                        .map_err(|e| kafka_error("cannot read offsets", brokers, e))?;
                    let committed =
                        match committed.find_partition(&self.topic, p).map(|e| e.offset()) {
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
                let p = self.partition_of(&task)?;
                let pos = self.offset_at(consumer, p, to)?;
                out.insert(task, pos.max(0) as u64);
            }
            Ok(out)
        })
    }

    fn group_offsets(&self, positions: &BTreeMap<String, u64>) -> Result<Option<GroupOffsets>> {
        let offsets = positions
            .iter()
            .map(|(task, pos)| Ok((self.topic.clone(), self.partition_of(task)?, *pos)))
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
            tpl.add_partition_offset(
                &self.topic,
                self.partition_of(task)?,
                Offset::Offset(*pos as i64),
            )
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

    fn open(&self, task: &str, from: Option<&Resume>) -> Result<Box<dyn SourceReader<String>>> {
        let position = from.map(|f| f.position);
        let partition = self.partition_of(task)?;
        // Resolve a concrete offset, so that the position is known before
        // the first record: a checkpoint taken then must not say "0".
        let start = match (position, self.start) {
            (Some(p), _) => p as i64,
            (None, StartAt::Earliest) => {
                self.with_admin(|c| self.offset_at(c, partition, ResetTo::Earliest))?
            }
            (None, StartAt::Latest) => {
                self.with_admin(|c| self.offset_at(c, partition, ResetTo::Latest))?
            }
            (None, StartAt::Timestamp(ts)) => {
                self.with_admin(|c| self.offset_at(c, partition, ResetTo::Timestamp(ts)))?
            }
        };
        let consumer = self.consumer()?;
        let offset = Offset::Offset(start);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, offset)
            .map_err(|e| kafka_error("bad offset", &self.settings.brokers, e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| kafka_error("cannot assign", &self.settings.brokers, e))?;
        Ok(Box::new(PartitionReader {
            consumer,
            task: task.to_owned(),
            topic: self.topic.clone(),
            partition,
            next: start as u64,
            until_idle: self.until_idle,
            idle_since: None,
            checked: None,
            copied: None,
            source: self.clone(),
        }))
    }
}

struct PartitionReader {
    consumer: BaseConsumer<WeirContext>,
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
    source: KafkaSource,
}

impl Drop for PartitionReader {
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

impl PartitionReader {
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
        if !behind {
            return;
        }
        let fresh = self.source.consumer().and_then(|c| {
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

impl SourceReader<String> for PartitionReader {
    fn read(&mut self, out: &mut Vec<Record<(), String>>, max: usize) -> Result<ReadStatus> {
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
                    let payload = m.payload().unwrap_or_default();
                    let value = std::str::from_utf8(payload)
                        .map_err(|e| Error::BadInput {
                            task: self.task.clone(),
                            position: offset,
                            message: format!("value is not UTF-8: {e}"),
                            raw: Some(payload.to_vec()),
                        })?
                        .to_owned();
                    let mut r = Record::new((), value);
                    r.timestamp = m.timestamp().to_millis();
                    out.push(r);
                }
                Err(KafkaError::PartitionEOF(_)) => {
                    // Past the end's transaction markers too: a group at
                    // this position shows no lag.
                    self.skip_to_position();
                    return Ok(if out.is_empty() {
                        self.idle()
                    } else {
                        ReadStatus::More
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

    fn position(&self) -> u64 {
        self.next
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
