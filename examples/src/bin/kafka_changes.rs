//! The change stream of a topic of keyed updates, exactly once and in each
//! key's order, on as many instances as the application runs.
//!
//! Reads `--input-topic` on `--brokers` (`read_committed`; keys and values
//! are UTF-8, a null value deletes its key, a record without a key is
//! skipped), keeps each key's latest value, and for every update writes a
//! record to `--output-topic` with key = the key and value = JSON
//! `{"old": previous value or null, "new": value or null}`. It runs until
//! SIGTERM or SIGINT, or with `--until-idle-ms N` exits 0 once no record
//! arrived for N ms and everything read is committed.
//!
//! Guarantee: exactly-once (ARCHITECTURE §4.2), and each key's updates are
//! applied in the order they were written, across restarts, `kill -9` and
//! rebalances: instances started on their own `--state` directories with
//! one `--application-id` share the input's partitions (ARCHITECTURE §7),
//! and a key's `old` is always the `new` before it. A `read_committed`
//! consumer of the output sees each key's changes once each, as a chain.
//!
//! Run: `dev/kafka start`; create the topics (`dev/kafka tool kafka-topics
//! --bootstrap-server 127.0.0.1:9092 --create --topic updates --partitions
//! 4`, and the same for `changes`); then `cargo run --release --bin
//! kafka_changes -- run --brokers 127.0.0.1:9092 --input-topic updates
//! --output-topic changes --application-id changes --state /tmp/changes-1`
//! (and a second instance with `--state /tmp/changes-2`).

use std::process::ExitCode;
use std::time::Duration;

use weir::prelude::*;
use weir_examples::changes::{pipeline, Change};

fn main() -> ExitCode {
    App::new("kafka_changes")
        .about("each key's updates, with the value each replaced, from one Kafka topic into another, exactly once and in order")
        .option("brokers", "Kafka bootstrap servers, host:port")
        .option("input-topic", "topic of keyed UTF-8 updates")
        .option("output-topic", "topic the changes are written to")
        .option(
            "application-id",
            "consumer group, transactional id prefix, changelog prefix",
        )
        .option(
            "until-idle-ms",
            "exit 0 once no record arrived for this long",
        )
        .run(|cfg, p| {
            let props = cfg.flat_table("kafka")?;
            let settings = KafkaSettings::new(cfg.get::<String>("brokers")?).with_properties(props);
            let app: String = cfg.get("application_id")?;
            let mut source = KafkaSource::records(
                settings.clone(),
                &cfg.get::<String>("input_topic")?,
                &app,
                Utf8,
                Utf8,
            );
            if let Some(ms) = cfg.parse::<u64>("until_idle_ms")? {
                source = source.until_idle(Duration::from_millis(ms));
            }
            let output = KafkaOutput::new(settings, &app);
            let sink = output.record_sink::<String, Change>(
                &cfg.get::<String>("output_topic")?,
                Utf8,
                Json::<Change>::new(),
            );
            pipeline(p, source, sink);
            Ok(())
        })
}
