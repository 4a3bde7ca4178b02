//! Counts the words of a Kafka topic into another topic, exactly once.
//!
//! Reads `--input-topic` on `--brokers` (one task per partition,
//! `read_committed`; values are UTF-8 lines, keys are ignored), splits each
//! value on ASCII whitespace, counts per word through the exchange (so the
//! counts are global), and for every occurrence writes a record to
//! `--output-topic` with key = the word and value = its count after that
//! occurrence, as decimal text. It runs until SIGTERM or SIGINT (which
//! commit the open epoch and exit 0), or with `--until-idle-ms N` exits 0
//! once no record arrived for N ms and everything read is committed.
//!
//! Guarantee: exactly-once (ARCHITECTURE §4.2). Each epoch is one Kafka
//! transaction (`transactional.id` = `<application-id>-0`) holding the
//! output records, the state changes as changelog records (compacted topic
//! `<application-id>-changelog`, key group g on partition g mod 8), and the
//! input offsets of consumer group `--application-id`. RocksDB under
//! `--state` applies the epoch after the commit; after a crash it is rolled
//! forward from the changelog, or restored from it when `--state` is new.
//! A `read_committed` consumer of the output sees every count exactly once,
//! however often the process is killed. `--set guarantee=at-least-once`
//! (or `at-most-once`) trades that for no transactions. A value that is not
//! UTF-8 stops the run, or with `--set on_bad_input=skip` is logged and
//! skipped, or with `--set on_bad_input=dead-letter --dead-letter-topic DLQ`
//! goes to `DLQ` inside the same transaction (raw bytes, error in headers).
//!
//! Run: `dev/kafka start`; create the topics (`dev/kafka tool kafka-topics
//! --bootstrap-server 127.0.0.1:9092 --create --topic words --partitions 4`,
//! and the same for `counts`); then `cargo run --release --bin
//! kafka_wordcount -- run --brokers 127.0.0.1:9092 --input-topic words
//! --output-topic counts --application-id wc --state /tmp/wc-state`.

use std::process::ExitCode;
use std::time::Duration;

use weir::prelude::*;

fn main() -> ExitCode {
    App::new("kafka_wordcount")
        .about("word count from one Kafka topic into another, exactly once")
        .option("brokers", "Kafka bootstrap servers, host:port")
        .option("input-topic", "topic of UTF-8 lines")
        .option("output-topic", "topic the counts are written to")
        .option(
            "application-id",
            "consumer group, transactional id prefix, changelog prefix",
        )
        .option(
            "until-idle-ms",
            "exit 0 once no record arrived for this long",
        )
        .option(
            "dead-letter-topic",
            "with --set on_bad_input=dead-letter: where undecodable records go",
        )
        .run(|cfg, p| {
            let props = cfg.flat_table("kafka")?;
            let settings = KafkaSettings::new(cfg.get::<String>("brokers")?).with_properties(props);
            let app: String = cfg.get("application_id")?;
            let mut source =
                KafkaSource::utf8(settings.clone(), &cfg.get::<String>("input_topic")?, &app);
            if let Some(ms) = cfg.parse::<u64>("until_idle_ms")? {
                source = source.until_idle(Duration::from_millis(ms));
            }
            let output = KafkaOutput::new(settings, &app);
            let sink =
                output.key_value_sink::<CompactString, u64>(&cfg.get::<String>("output_topic")?);
            if let Some(topic) = cfg.get_opt::<String>("dead_letter_topic")? {
                p.dead_letter(output.dead_letter_sink(&topic));
            }
            weir_examples::wordcount::pipeline(p, source, sink);
            Ok(())
        })
}
