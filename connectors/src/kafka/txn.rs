//! A transactional producer with weir's error discipline (ARCHITECTURE §4.2):
//! a fenced producer stops at once and never retries; after an ambiguous
//! commit or abort (a timeout) the producer is re-initialised, never reused.

use std::time::Duration;

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;
use weir_core::{Error, Result};

use super::client::{client_config, kafka_error, KafkaSettings, WeirContext};

/// One instance's transactional producer, `transactional.id` = `id`.
pub struct TxnProducer {
    settings: KafkaSettings,
    id: String,
    timeout: Duration,
    producer: ThreadedProducer<WeirContext>,
}

/// How long a transaction may stay open before the broker aborts it: longer
/// than the longest commit plus a restart.
const TRANSACTION_TIMEOUT_MS: &str = "60000";

fn create(
    settings: &KafkaSettings,
    id: &str,
    timeout: Duration,
) -> Result<ThreadedProducer<WeirContext>> {
    let producer: ThreadedProducer<WeirContext> = client_config(
        settings,
        &[
            ("transactional.id", id),
            ("enable.idempotence", "true"),
            ("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS),
        ],
    )?
    .create_with_context(WeirContext)
    .map_err(|e| kafka_error("cannot create a producer", &settings.brokers, e))?;
    // Fences every older producer with this id and aborts its open transaction.
    producer
        .init_transactions(timeout)
        .map_err(|e| txn_error("initialise transactions", id, e))?;
    Ok(producer)
}

/// Sorts a transaction error into: fenced (stop), or another failure.
fn txn_error(what: &str, id: &str, e: KafkaError) -> Error {
    let fenced = match &e {
        KafkaError::Transaction(rd) => {
            rd.is_fatal()
                || matches!(
                    rd.code(),
                    RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced
                )
        }
        _ => false,
    };
    if fenced {
        Error::Fenced(format!(
            "cannot {what}: producer `{id}` was replaced by a newer instance ({e}); this instance stops and commits nothing more"
        ))
    } else {
        Error::State(format!("cannot {what} with producer `{id}`: {e}"))
    }
}

impl TxnProducer {
    /// Creates the producer and initialises transactions, which fences any
    /// older instance with the same id (its open transaction is aborted).
    pub fn new(settings: &KafkaSettings, id: &str, timeout: Duration) -> Result<Self> {
        Ok(TxnProducer {
            producer: create(settings, id, timeout)?,
            settings: settings.clone(),
            id: id.to_owned(),
            timeout,
        })
    }

    /// Starts a transaction.
    pub fn begin(&self) -> Result<()> {
        self.producer
            .begin_transaction()
            .map_err(|e| txn_error("begin a transaction", &self.id, e))
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
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).key(key);
        if let Some(v) = value {
            record = record.payload(v);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(txn_error("send", &self.id, e)),
            }
        }
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
            if let Some((tpl, group)) = offsets {
                self.producer
                    .send_offsets_to_transaction(tpl, group, self.timeout)
                    .map_err(|e| txn_error("add offsets to the transaction", &self.id, e))?;
            }
            self.producer
                .commit_transaction(self.timeout)
                .map_err(|e| txn_error("commit", &self.id, e))
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
            Err(e) => match txn_error("abort", &self.id, e) {
                fenced @ Error::Fenced(_) => Err(fenced),
                _ => self.reinit(),
            },
        }
    }

    /// A fresh producer under the same id: its `init_transactions` settles
    /// whatever the old one left open.
    fn reinit(&mut self) -> Result<()> {
        self.producer = create(&self.settings, &self.id, self.timeout)?;
        Ok(())
    }
}
