//! The topics weir makes for an application: its changelog and its
//! repartition topic, one partition per shard of its keyed state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;
use weir_core::{Error, Result};

use super::client::{answered, client_config, kafka_error, KafkaSettings, WeirContext};

/// A topic weir makes when it is missing.
pub(crate) struct Wanted<'a> {
    pub(crate) topic: &'a str,
    /// What it is, for messages: "changelog", "repartition".
    pub(crate) role: &'a str,
    pub(crate) partitions: u16,
    /// Topic configs, e.g. `cleanup.policy`.
    pub(crate) configs: &'a [(&'a str, &'a str)],
}

/// Creates `wanted` unless it exists; returns its partition count, which an
/// existing topic decides.
pub(crate) fn ensure_topic(settings: &KafkaSettings, wanted: &Wanted<'_>) -> Result<u16> {
    let admin: AdminClient<WeirContext> = client_config(settings, &[])?
        .create_with_context(WeirContext)
        .map_err(|e| kafka_error("cannot create an admin client", &settings.brokers, e))?;
    let Wanted {
        topic,
        role,
        partitions,
        configs,
    } = *wanted;
    let mut new = NewTopic::new(topic, i32::from(partitions), TopicReplication::Fixed(-1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(settings.metadata_timeout));
    let results = block_on(admin.create_topics([&new], &opts)).map_err(|e| {
        kafka_error(
            &format!("cannot create the {role} topic"),
            &settings.brokers,
            e,
        )
    })?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => {
                let configs: Vec<String> =
                    configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                return Err(Error::Config(format!(
                    "cannot create the {role} topic `{t}` on {}: {code}; create it ({partitions} partitions, {}) or grant the right to",
                    settings.brokers,
                    configs.join(", ")
                )));
            }
        }
    }
    // A topic just created takes a moment to show in the metadata.
    let deadline = Instant::now() + settings.metadata_timeout;
    let found = loop {
        let md = admin
            .inner()
            .fetch_metadata(Some(topic), settings.metadata_timeout)
            .map_err(|e| kafka_error("cannot read metadata", &settings.brokers, e))?;
        answered();
        let n = md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len());
        if n > 0 || Instant::now() >= deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    partition_count(topic, role, found, settings)
}

/// Deletes the records of `below`'s partitions below its offsets
/// (`DeleteRecords`).
pub(crate) fn delete_records(settings: &KafkaSettings, below: &TopicPartitionList) -> Result<()> {
    let admin: AdminClient<WeirContext> = client_config(settings, &[])?
        .create_with_context(WeirContext)
        .map_err(|e| kafka_error("cannot create an admin client", &settings.brokers, e))?;
    let opts = AdminOptions::new().operation_timeout(Some(settings.metadata_timeout));
    let done = block_on(admin.delete_records(below, &opts))
        .map_err(|e| kafka_error("cannot delete records", &settings.brokers, e))?;
    for e in done.elements() {
        if let Err(err) = e.error() {
            return Err(kafka_error("cannot delete records", &settings.brokers, err));
        }
    }
    Ok(())
}

/// A topic's partition count as weir keeps it.
pub(crate) fn partition_count(
    topic: &str,
    role: &str,
    partitions: usize,
    settings: &KafkaSettings,
) -> Result<u16> {
    match u16::try_from(partitions) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(Error::Config(format!(
            "the {role} topic `{topic}` shows {partitions} partitions on {}; wait for the brokers to settle, or delete the topic and let weir create it",
            settings.brokers
        ))),
    }
}

/// Waits for a future on this thread (librdkafka's own threads complete
/// the admin futures).
pub(crate) fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// The header of a record in the repartition topic that names the
/// exchange it goes on to, when not the first (one byte).
pub(crate) const EXCHANGE_HEADER: &str = "weir.exchange";
