//! The broker side of the benchmarks: topics, producing input, and a
//! `read_committed` consumer that watches an output topic.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// Creates `topics` (name, partitions), replication 1.
pub(crate) fn create_topics(brokers: &str, topics: &[(&str, i32)]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("cannot create the admin client")?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, p)| NewTopic::new(name, *p, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = rt
        .block_on(admin.create_topics(&new, &AdminOptions::new()))
        .context("create_topics")?;
    for r in results {
        if let Err((name, code)) = r {
            if code != RDKafkaErrorCode::TopicAlreadyExists {
                bail!("cannot create topic {name}: {code}");
            }
        }
    }
    Ok(())
}

/// Counts failed deliveries.
#[derive(Default)]
pub(crate) struct Deliveries {
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A producer for loading input quickly.
pub(crate) struct Loader {
    producer: BaseProducer<Deliveries>,
    topic: String,
    partitions: i32,
    next: i32,
    pub(crate) records: u64,
}

impl Loader {
    pub(crate) fn new(
        brokers: &str,
        topic: &str,
        partitions: i32,
        linger_ms: u32,
    ) -> Result<Loader> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", linger_ms.to_string())
            .set("batch.num.messages", "10000")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576")
            .set("enable.idempotence", "true")
            // Keyed records go where Kafka's Java clients would put them:
            // Kafka Streams expects a table's topic partitioned so.
            .set("partitioner", "murmur2_random")
            .create_with_context(Deliveries::default())
            .context("cannot create the producer")?;
        Ok(Loader {
            producer,
            topic: topic.to_owned(),
            partitions,
            next: 0,
            records: 0,
        })
    }

    /// Sends one value, to the partitions in turn.
    pub(crate) fn send(&mut self, value: &[u8]) -> Result<()> {
        let partition = self.next;
        self.next = (self.next + 1) % self.partitions;
        let rec = BaseRecord::<[u8], [u8]>::to(&self.topic)
            .payload(value)
            .partition(partition);
        enqueue(&self.producer, rec, &mut self.records)
    }

    /// Sends one keyed record with its timestamp (a `None` value: a
    /// tombstone), to the partition of its key.
    pub(crate) fn send_keyed(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        timestamp: i64,
    ) -> Result<()> {
        let mut rec = BaseRecord::<[u8], [u8]>::to(&self.topic)
            .key(key)
            .timestamp(timestamp);
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        enqueue(&self.producer, rec, &mut self.records)
    }

    /// Waits until everything sent is acknowledged.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.producer
            .flush(Duration::from_secs(120))
            .context("cannot flush the input producer")?;
        let failed = self.producer.context().failed.load(Ordering::Relaxed);
        if failed > 0 {
            bail!(
                "{failed} input records were not delivered to {}",
                self.topic
            );
        }
        Ok(())
    }
}

/// Queues `rec`, waiting while the producer's queue is full, and counts
/// it in `records` (serving delivery reports every 1024).
fn enqueue(
    producer: &BaseProducer<Deliveries>,
    mut rec: BaseRecord<'_, [u8], [u8]>,
    records: &mut u64,
) -> Result<()> {
    loop {
        match producer.send(rec) {
            Ok(()) => break,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                rec = back;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, back)) => bail!("cannot produce to {}: {e}", back.topic),
        }
    }
    *records += 1;
    if records.is_multiple_of(1024) {
        producer.poll(Duration::ZERO);
    }
    Ok(())
}

pub(crate) type OnRecord = Box<dyn FnMut(&[u8], &[u8], Instant) + Send>;

/// Reads an output topic `read_committed` from the beginning on a thread
/// of its own, counting records and summing their (decimal) values.
pub(crate) struct Watcher {
    seen: Arc<AtomicU64>,
    sum: Arc<AtomicU64>,
    /// When the last record was read, in µs after `base` (0: none yet).
    last_at: Arc<AtomicU64>,
    base: Instant,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Watcher {
    pub(crate) fn start(
        brokers: &str,
        topic: &str,
        partitions: i32,
        on: Option<OnRecord>,
    ) -> Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("bench-watcher-{topic}"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", "10")
            // Large fetches and a deep prefetch queue: the watcher must read
            // far faster than any pipeline writes, or it measures itself.
            .set("max.partition.fetch.bytes", "16777216")
            .set("fetch.max.bytes", "67108864")
            .set("queued.min.messages", "1000000")
            .set("queued.max.messages.kbytes", "262144")
            .create()
            .context("cannot create the output consumer")?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let seen = Arc::new(AtomicU64::new(0));
        let sum = Arc::new(AtomicU64::new(0));
        let last_at = Arc::new(AtomicU64::new(0));
        let base = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, m, l, st) = (seen.clone(), sum.clone(), last_at.clone(), stop.clone());
        let mut on = on;
        let thread = std::thread::spawn(move || -> Result<()> {
            while !st.load(Ordering::Relaxed) {
                let Some(msg) = consumer.poll(Duration::from_millis(50)) else {
                    continue;
                };
                let msg = msg.map_err(|e| anyhow!("output consumer: {e}"))?;
                let now = Instant::now();
                let value = msg.payload().unwrap_or_default();
                let n: u64 = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if let Some(f) = on.as_mut() {
                    f(msg.key().unwrap_or_default(), value, now);
                }
                m.fetch_add(n, Ordering::Relaxed);
                let us = u64::try_from((now - base).as_micros()).unwrap_or(u64::MAX);
                l.store(us.max(1), Ordering::Relaxed);
                s.fetch_add(1, Ordering::Release);
            }
            Ok(())
        });
        Ok(Watcher {
            seen,
            sum,
            last_at,
            base,
            stop,
            thread: Some(thread),
        })
    }

    pub(crate) fn seen(&self) -> u64 {
        self.seen.load(Ordering::Acquire)
    }

    pub(crate) fn sum(&self) -> u64 {
        self.sum.load(Ordering::Relaxed)
    }

    /// Waits until `n` records were read; returns when the n-th arrived.
    /// `alive` is asked meanwhile whether the producer of the output runs.
    pub(crate) fn wait_for(
        &self,
        n: u64,
        timeout: Duration,
        alive: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        let mut checked = Instant::now();
        loop {
            if self.seen() >= n {
                return match self.last_at.load(Ordering::Relaxed) {
                    0 => Err(anyhow!("no arrival time")),
                    us => Ok(self.base + Duration::from_micros(us)),
                };
            }
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                bail!("the output consumer stopped");
            }
            if checked.elapsed() > Duration::from_millis(200) {
                alive()?;
                checked = Instant::now();
            }
            if Instant::now() > deadline {
                bail!(
                    "only {} of {n} output records after {timeout:?}",
                    self.seen()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
