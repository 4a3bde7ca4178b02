//! The one place that builds Kafka clients, with weir's defaults.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use weir_core::{Error, Result};

/// Where the cluster is and how to talk to it.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `host:port[,host:port...]`.
    pub brokers: String,
    /// Extra librdkafka properties (the `[kafka]` table of the config); they
    /// override weir's defaults, except the ones exactly-once depends on.
    pub properties: BTreeMap<String, String>,
    /// How long to wait for the cluster's metadata before giving up.
    pub metadata_timeout: Duration,
}

impl KafkaSettings {
    /// Settings for the cluster at `brokers`.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaSettings {
            brokers: brokers.into(),
            properties: BTreeMap::new(),
            metadata_timeout: Duration::from_secs(10),
        }
    }

    /// Adds librdkafka properties.
    pub fn with_properties(mut self, props: BTreeMap<String, String>) -> Self {
        self.properties.extend(props);
        self
    }
}

/// A client config with weir's defaults, the user's properties, then
/// `fixed`: the properties a guarantee depends on, which nothing overrides.
///
/// Sparse connections are off by default (librdkafka then connects to every
/// broker it learns of, where weir's clients need most of them anyway).
/// With them on, a start-up lost up to half a second (seen with
/// `debug=eos`): librdkafka drops its bootstrap connection once metadata
/// names the brokers and holds back the connection to a named one for
/// 50 ms; a metadata request waits that out, and the producer-id state
/// machine of `init_transactions`, run in that gap, finds no broker up ("No
/// brokers available for Transactions") and tries again only on its fixed
/// 500 ms timer. With them off the named brokers connect at once, and the
/// metadata each new connection asks for runs that state machine again.
pub fn client_config(settings: &KafkaSettings, fixed: &[(&str, &str)]) -> Result<ClientConfig> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.brokers)
        .set("client.id", "weir")
        .set("socket.keepalive.enable", "true")
        .set("enable.sparse.connections", "false");
    for (k, v) in &settings.properties {
        if fixed.iter().any(|(f, _)| f == k) {
            return Err(Error::Config(format!(
                "kafka property `{k}` is set by weir for its guarantee and cannot be overridden; remove it from [kafka]"
            )));
        }
        c.set(k, v);
    }
    for (k, v) in fixed {
        c.set(*k, *v);
    }
    Ok(c)
}

/// Defaults of every weir consumer that a `[kafka]` property may override.
/// librdkafka prefetches up to 64 MiB per partition and fetches up to 50 MiB
/// at a time by default, which with large records is most of a process's
/// memory; 4 MiB per partition and 16 MiB per fetch still keep the
/// partitions' fetches flowing.
pub(crate) const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("queued.max.messages.kbytes", "4096"),
    ("fetch.max.bytes", "16777216"),
];

/// Defaults of every weir producer that a `[kafka]` property may override.
/// librdkafka queues up to 1 GiB by default; with 16 MiB a full queue makes
/// the sink wait for deliveries (back-pressure) long before memory runs out.
pub(crate) const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("queue.buffering.max.kbytes", "16384"),
    // Whatever the guarantee, a keyed record goes where the Java clients
    // put it (murmur2 of the key bytes), so that Kafka Streams and other
    // consumers can co-partition with weir's output (ARCHITECTURE §7).
    ("partitioner", "murmur2_random"),
];

/// `config` with each of `defaults` that neither weir nor the user set.
/// The size bounds are raised to fit a `message.max.bytes` the user set:
/// librdkafka refuses a fetch limit below it, and a record larger than
/// the producer queue could never be queued.
pub(crate) fn with_defaults(mut config: ClientConfig, defaults: &[(&str, &str)]) -> ClientConfig {
    let largest = config
        .get("message.max.bytes")
        .and_then(|v| v.parse::<u64>().ok());
    for (k, v) in defaults {
        if config.get(k).is_some() {
            continue;
        }
        let at_least = match (*k, largest) {
            ("fetch.max.bytes", Some(m)) => m,
            ("queue.buffering.max.kbytes", Some(m)) => m.div_ceil(1024) * 2,
            _ => 0,
        };
        match v.parse::<u64>() {
            Ok(n) if n < at_least => config.set(*k, at_least.to_string()),
            _ => config.set(*k, *v),
        };
    }
    config
}

/// Whether the brokers have answered this process: from then on, a broker
/// that does not answer is away for a while (a restart), not misnamed.
static ANSWERED: AtomicBool = AtomicBool::new(false);

/// Notes that the brokers answered (their metadata was read).
pub(crate) fn answered() {
    ANSWERED.store(true, Ordering::Relaxed);
}

/// Maps a client error to one that names the broker and the fix. A broker
/// that does not answer is a configuration error until the brokers have
/// answered this process once (a mistyped `--brokers` is named at once);
/// after that it is a broker away for a while, and the run starts over
/// from its last commit when it is back ([`Error::Aborted`]).
pub(crate) fn kafka_error(what: &str, brokers: &str, e: rdkafka::error::KafkaError) -> Error {
    error_of(what, brokers, e, ANSWERED.load(Ordering::Relaxed))
}

/// [`kafka_error`], told whether the brokers answered before.
fn error_of(
    what: &str,
    brokers: &str,
    e: rdkafka::error::KafkaError,
    answered_before: bool,
) -> Error {
    use rdkafka::error::KafkaError;
    if matches!(
        e,
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_)
    ) {
        return Error::Config(format!(
            "invalid Kafka client configuration: {e}; fix or remove that property under [kafka] (or --set kafka.NAME=VALUE)"
        ));
    }
    if answered_before && e.rdkafka_error_code().is_some_and(unreachable) {
        return Error::Aborted(format!(
            "{what} on Kafka at {brokers}: {e}; the brokers answered before, so waiting for them to be back"
        ));
    }
    Error::Config(format!(
        "{what} on Kafka at {brokers}: {e}; check that the brokers are reachable (--brokers) and the topic exists"
    ))
}

/// Codes that say a broker did not answer, or not yet as the one in charge.
fn unreachable(code: rdkafka::types::RDKafkaErrorCode) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        code,
        C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::OperationTimedOut
            | C::RequestTimedOut
            | C::NetworkException
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::CoordinatorLoadInProgress
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::BrokerNotAvailable
    )
}

/// weir's client context: librdkafka's errors go to `tracing`, without the
/// end-of-partition notices that are normal for a source.
#[derive(Debug, Default, Clone, Copy)]
pub struct WeirContext;

impl rdkafka::ClientContext for WeirContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaErrorCode;
        if matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            return;
        }
        tracing::warn!("kafka: {error}: {reason}");
    }
}

impl rdkafka::consumer::ConsumerContext for WeirContext {
    /// Asynchronous commits are advisory copies of a checkpoint's positions.
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &rdkafka::TopicPartitionList,
    ) {
        if let Err(e) = result {
            tracing::warn!("kafka: cannot copy committed positions to the consumer group: {e}");
        }
    }
}

/// The context of a partition reader's consumer: [`WeirContext`]'s
/// reports, and its partition's last stable offset from librdkafka's
/// statistics (`ls_offset`), for the reader's lag.
pub(crate) struct ReaderContext {
    /// The partition the consumer reads.
    pub(crate) partition: i32,
    /// Its last stable offset as last reported; -1 until then.
    pub(crate) stable_end: Arc<AtomicI64>,
}

impl rdkafka::ClientContext for ReaderContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        WeirContext.error(error, reason);
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        let end = statistics
            .topics
            .values()
            .filter_map(|t| t.partitions.get(&self.partition))
            .map(|p| p.ls_offset)
            .find(|o| *o >= 0);
        if let Some(end) = end {
            self.stable_end.store(end, Ordering::Relaxed);
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ReaderContext {
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &rdkafka::TopicPartitionList,
    ) {
        WeirContext.commit_callback(result, offsets);
    }
}

impl rdkafka::producer::ProducerContext for WeirContext {
    type DeliveryOpaque = ();

    /// A failed delivery inside a transaction also fails its commit, which
    /// is what keeps the output exactly once; this only reports it.
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            tracing::warn!("kafka: a record was not delivered: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;

    fn down() -> KafkaError {
        KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure)
    }

    #[test]
    fn a_broker_not_answering_is_misnamed_until_it_answered_once_then_away() {
        let first = error_of("cannot read metadata", "127.0.0.1:1", down(), false);
        assert!(
            matches!(&first, Error::Config(m) if m.contains("127.0.0.1:1") && m.contains("reachable")),
            "{first}"
        );
        let later = error_of("cannot read metadata", "127.0.0.1:9092", down(), true);
        assert!(matches!(later, Error::Aborted(_)), "{later}");
        // What a broker answers is no outage: still the user's to fix.
        let missing = error_of(
            "cannot read offsets",
            "127.0.0.1:9092",
            KafkaError::OffsetFetch(RDKafkaErrorCode::UnknownTopicOrPartition),
            true,
        );
        assert!(matches!(missing, Error::Config(_)), "{missing}");
    }
}
