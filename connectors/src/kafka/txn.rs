//! A transactional producer with weir's error discipline (ARCHITECTURE §4.2):
//! a fenced producer stops at once and never retries; after an ambiguous
//! commit or abort (a timeout) the producer is re-initialised, never reused.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer as _, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;
use weir_core::{Error, Result};

use super::client::{client_config, kafka_error, with_defaults, KafkaSettings, PRODUCER_DEFAULTS};

/// A producer as weir uses it.
pub(crate) type Producer = ThreadedProducer<ProducerCx>;

/// What a producer's delivery reports tell weir.
#[derive(Default)]
pub(crate) struct Deliveries {
    /// The changelog topic, whose end positions are tracked.
    pub(crate) changelog: Option<String>,
    /// Per changelog partition: one past the highest delivered offset.
    pub(crate) ends: Mutex<BTreeMap<u16, u64>>,
    /// Records that were not delivered.
    pub(crate) failed: AtomicU64,
}

/// A producer's context: librdkafka's errors go to `tracing`; delivery
/// reports update [`Deliveries`].
#[derive(Clone, Default)]
pub(crate) struct ProducerCx(pub(crate) Arc<Deliveries>);

impl rdkafka::ClientContext for ProducerCx {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!("kafka: {error}: {reason}");
    }
}

impl rdkafka::producer::ProducerContext for ProducerCx {
    type DeliveryOpaque = ();

    /// A failed delivery inside a transaction also fails its commit, which
    /// is what keeps the output exactly once; outside one, the flush before
    /// the commit point checks the count.
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        use rdkafka::message::Message;
        match result {
            Ok(m) => {
                if self.0.changelog.as_deref() == Some(m.topic()) {
                    let mut ends = self.0.ends.lock().unwrap_or_else(|p| p.into_inner());
                    let e = ends.entry(m.partition() as u16).or_insert(0);
                    *e = (*e).max(m.offset() as u64 + 1);
                }
            }
            Err((e, _)) => {
                let before = self.0.failed.fetch_add(1, Ordering::Relaxed);
                // An aborted transaction purges what it had not sent: the
                // abort is the news (and is logged), not each record. Of
                // other failures the first says why; the flush before the
                // checkpoint fails on the count.
                let purged = matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
                );
                if purged {
                    tracing::debug!("kafka: a record was purged: {e}");
                } else if before == 0 {
                    tracing::warn!(
                        "kafka: a record was not delivered ({e}); further failures are counted, not logged"
                    );
                }
            }
        }
    }
}

/// One instance's transactional producer, `transactional.id` = `id`.
pub struct TxnProducer {
    settings: KafkaSettings,
    id: String,
    timeout: Duration,
    /// How long the broker lets one of its transactions stay open.
    open_for: Duration,
    cx: ProducerCx,
    producer: Arc<Producer>,
}

/// How long a transaction may stay open before the broker aborts it, for a
/// producer that is not an epoch's (see [`transaction_timeout`]).
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The broker's largest transaction timeout by default
/// (`transaction.max.timeout.ms`).
const BROKER_MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// How long the broker lets an epoch's transaction stay open, for epochs of
/// `epoch`: two epochs and ten seconds more, for a commit under load. A
/// dead instance's open transaction holds back every `read_committed`
/// reader of its topics (the changelog restore of whoever takes over
/// included) until the broker aborts it, so it is kept short, as Kafka
/// Streams keeps its own (10 s).
///
/// # Errors
/// [`Error::Config`] for an epoch too long for the broker's default
/// largest transaction timeout, naming the longest that fits.
pub fn transaction_timeout(epoch: Duration) -> Result<Duration> {
    let slack = Duration::from_secs(10);
    let timeout = slack + epoch * 2;
    if timeout > BROKER_MAX_TIMEOUT {
        return Err(Error::Config(format!(
            "checkpoint.interval_ms = {} is too long for Kafka transactions: an epoch's transaction stays open that long, and a broker aborts one open longer than its transaction.max.timeout.ms (15 min by default; weir asks for 10 s plus two epochs); set checkpoint.interval_ms to at most {}",
            epoch.as_millis(),
            (BROKER_MAX_TIMEOUT - slack).as_millis() / 2
        )));
    }
    Ok(timeout)
}

/// Defaults of the transactional producer that a `[kafka]` property may
/// override. Right after a commit the coordinator answers the next
/// transaction's first request with CONCURRENT_TRANSACTIONS until the
/// commit markers are written; librdkafka's default backoff (100 ms growing
/// to 1 s) then idles the next epoch for seconds, where the markers take
/// milliseconds. Java's producer retries that case every 20 ms.
const TXN_DEFAULTS: &[(&str, &str)] = &[("retry.backoff.ms", "10"), ("retry.backoff.max.ms", "50")];

fn create(
    settings: &KafkaSettings,
    id: &str,
    timeout: Duration,
    open_for: Duration,
    cx: ProducerCx,
) -> Result<Producer> {
    let open_ms = open_for.as_millis().to_string();
    let config = client_config(
        settings,
        &[
            ("transactional.id", id),
            ("enable.idempotence", "true"),
            ("transaction.timeout.ms", &open_ms),
        ],
    )?;
    let config = with_defaults(with_defaults(config, TXN_DEFAULTS), PRODUCER_DEFAULTS);
    let producer: Producer = config
        .create_with_context(cx)
        .map_err(|e| kafka_error("cannot create a producer", &settings.brokers, e))?;
    // Fences every older producer with this id and aborts its open transaction.
    producer.init_transactions(timeout).map_err(|e| {
        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::InvalidTransactionTimeout) {
            return Error::Config(format!(
                "the brokers at {} refuse transactions open for up to {open_ms} ms (their transaction.max.timeout.ms is lower): shorten checkpoint.interval_ms, or raise transaction.max.timeout.ms on the brokers",
                settings.brokers
            ));
        }
        producer_error("initialise transactions", id, e, &producer)
    })?;
    Ok(producer)
}

/// Whether `code` says a newer producer with the same transactional id
/// took over.
fn is_fencing(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
    )
}

/// Sorts a producer error into: fenced, or fatal (stop: the producer can
/// do nothing more, and a zombie must never start over), or a failure that
/// aborts the epoch. After a fatal error librdkafka fails later calls with
/// generic codes; the producer's recorded fatal error tells the cause.
pub(crate) fn producer_error(what: &str, id: &str, e: KafkaError, producer: &Producer) -> Error {
    let fatal = producer.client().fatal_error();
    let fenced = e.rdkafka_error_code().is_some_and(is_fencing)
        || fatal.as_ref().is_some_and(|(code, _)| is_fencing(*code));
    let txn_fatal = matches!(&e, KafkaError::Transaction(rd) if rd.is_fatal());
    if fenced {
        Error::Fenced(format!(
            "cannot {what}: producer `{id}` was replaced by a newer instance ({e}); this instance stops and commits nothing more"
        ))
    } else if let Some((code, reason)) = fatal {
        Error::Fenced(format!(
            "cannot {what}: producer `{id}` failed fatally ({code}: {reason}); this instance stops and commits nothing more"
        ))
    } else if txn_fatal {
        Error::Fenced(format!(
            "cannot {what}: producer `{id}` failed fatally ({e}); this instance stops and commits nothing more"
        ))
    } else {
        Error::Aborted(format!("cannot {what} with producer `{id}`: {e}"))
    }
}

impl TxnProducer {
    /// Creates the producer and initialises transactions, which fences any
    /// older instance with the same id (its open transaction is aborted).
    pub fn new(settings: &KafkaSettings, id: &str, timeout: Duration) -> Result<Self> {
        Self::with_deliveries(settings, id, timeout, TRANSACTION_TIMEOUT, Arc::default())
    }

    /// `open_for`: how long the broker lets a transaction stay open.
    pub(crate) fn with_deliveries(
        settings: &KafkaSettings,
        id: &str,
        timeout: Duration,
        open_for: Duration,
        deliveries: Arc<Deliveries>,
    ) -> Result<Self> {
        let cx = ProducerCx(deliveries);
        Ok(TxnProducer {
            producer: Arc::new(create(settings, id, timeout, open_for, cx.clone())?),
            settings: settings.clone(),
            id: id.to_owned(),
            timeout,
            open_for,
            cx,
        })
    }

    /// The producer, for sink writers sending into the open transaction.
    pub(crate) fn producer(&self) -> Arc<Producer> {
        self.producer.clone()
    }

    /// Starts a transaction.
    pub fn begin(&self) -> Result<()> {
        self.producer
            .begin_transaction()
            .map_err(|e| producer_error("begin a transaction", &self.id, e, &self.producer))
    }

    /// Sends one record inside the open transaction, waiting while the
    /// local queue is full.
    pub fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<()> {
        let record = Outgoing {
            topic,
            partition,
            key: Some(key),
            value,
            timestamp: None,
        };
        send(&self.producer, &record, None)
            .map_err(|e| producer_error("send", &self.id, e, &self.producer))
    }

    /// Commits the open transaction, with the consumer positions `offsets`
    /// of group `group` inside it. A fenced producer gets
    /// [`Error::Fenced`] and must stop. After any other failure the
    /// transaction's outcome is aborted or unknown: the producer is
    /// re-initialised (aborting it if still open) before the error returns.
    pub fn commit(
        &mut self,
        offsets: Option<(&TopicPartitionList, &ConsumerGroupMetadata)>,
    ) -> Result<()> {
        let result = (|| {
            // The offsets' round trips go while the last records are in flight.
            if let Some((tpl, group)) = offsets {
                self.producer
                    .send_offsets_to_transaction(tpl, group, self.timeout)
                    .map_err(|e| {
                        producer_error(
                            "add offsets to the transaction",
                            &self.id,
                            e,
                            &self.producer,
                        )
                    })?;
            }
            // commit_transaction flushes first, but rust-rdkafka's flush
            // waits in steps of up to 100 ms while the producer's own thread
            // serves the deliveries: with nothing left in flight it returns at once.
            wait_delivered(&self.producer, self.timeout).map_err(|e| {
                producer_error(
                    "deliver the transaction's records",
                    &self.id,
                    e,
                    &self.producer,
                )
            })?;
            self.producer
                .commit_transaction(self.timeout)
                .map_err(|e| producer_error("commit", &self.id, e, &self.producer))
        })();
        match result {
            Err(e @ Error::Fenced(_)) => Err(e),
            Err(e) => {
                self.reinit()?;
                Err(e)
            }
            Ok(()) => Ok(()),
        }
    }

    /// Aborts the open transaction; re-initialises after an ambiguous failure.
    pub fn abort(&mut self) -> Result<()> {
        match self.producer.abort_transaction(self.timeout) {
            Ok(()) => Ok(()),
            Err(e) => match producer_error("abort", &self.id, e, &self.producer) {
                fenced @ Error::Fenced(_) => Err(fenced),
                _ => self.reinit(),
            },
        }
    }

    /// Aborts the open transaction within `within`, for a run that stops:
    /// no retry and no fresh producer, since nothing follows; a broker
    /// that is away aborts it after its timeout instead.
    pub(crate) fn abandon(&self, within: Duration) -> Result<()> {
        self.producer
            .abort_transaction(within)
            .map_err(|e| producer_error("abort", &self.id, e, &self.producer))
    }

    /// A fresh producer under the same id: its `init_transactions` settles
    /// whatever the old one left open.
    fn reinit(&mut self) -> Result<()> {
        self.producer = Arc::new(create(
            &self.settings,
            &self.id,
            self.timeout,
            self.open_for,
            self.cx.clone(),
        )?);
        Ok(())
    }
}

/// Waits until every record sent is acknowledged and its delivery report
/// served (by the producer's own polling thread), at most `timeout`.
/// librdkafka has no event for that, so this looks every 200 µs; rust-rdkafka's
/// `flush` looks every 100 ms, which idles a short transaction for most of that.
pub(crate) fn wait_delivered(
    producer: &Producer,
    timeout: Duration,
) -> std::result::Result<(), KafkaError> {
    let deadline = std::time::Instant::now() + timeout;
    while producer.in_flight_count() > 0 {
        if std::time::Instant::now() >= deadline {
            return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// A record to send.
pub(crate) struct Outgoing<'a> {
    pub(crate) topic: &'a str,
    /// Its partition; the producer's partitioner picks one when `None`.
    pub(crate) partition: Option<i32>,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    /// Its timestamp (ms); the time of sending when `None`.
    pub(crate) timestamp: Option<i64>,
}

/// Sends one record, waiting while the local queue is full (the producer's
/// own thread drains it).
pub(crate) fn send(
    producer: &Producer,
    out: &Outgoing<'_>,
    headers: Option<rdkafka::message::OwnedHeaders>,
) -> std::result::Result<(), KafkaError> {
    let mut record = BaseRecord::<[u8], [u8]>::to(out.topic);
    if let Some(h) = headers {
        record = record.headers(h);
    }
    if let Some(k) = out.key {
        record = record.key(k);
    }
    if let Some(v) = out.value {
        record = record.payload(v);
    }
    if let Some(p) = out.partition {
        record = record.partition(p);
    }
    if let Some(ts) = out.timestamp {
        record = record.timestamp(ts);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                if producer.in_flight_count() == 0 {
                    // Nothing to wait for: the record alone exceeds the
                    // queue (`queue.buffering.max.kbytes`).
                    return Err(KafkaError::MessageProduction(
                        RDKafkaErrorCode::MessageSizeTooLarge,
                    ));
                }
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_stays_open_two_epochs_and_ten_seconds_at_most() {
        let t = |ms| transaction_timeout(Duration::from_millis(ms));
        assert_eq!(t(1000).ok(), Some(Duration::from_secs(12)));
        assert_eq!(t(100).ok(), Some(Duration::from_millis(10_200)));
        assert_eq!(t(445_000).ok(), Some(BROKER_MAX_TIMEOUT));
        let e = t(445_001).expect_err("too long");
        assert!(e.to_string().contains("at most 445000"), "{e}");
    }
}
