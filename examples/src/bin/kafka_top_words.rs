//! The most frequent words per first letter of a Kafka topic, into another
//! topic, exactly once: `top_words` on Kafka.
//!
//! Reads `--input-topic` on `--brokers` (one task per partition,
//! `read_committed`; values are UTF-8 lines, keys are ignored), splits each
//! value on ASCII whitespace, counts per word through the exchange, then
//! keys each word and its new count again by the word's first letter,
//! through a second exchange, to keep each letter's `--top` (default 3)
//! most frequent words. Whenever a letter's list changes it writes a record
//! to `--output-topic`: key = the letter, value = `word=count word=count
//! ...` (most frequent first; ties: the word first in byte order first).
//! It runs until SIGTERM or SIGINT, or with `--until-idle-ms N` exits 0
//! once no record arrived for N ms and everything read is committed.
//!
//! Guarantee: exactly-once (ARCHITECTURE §4.2): each epoch is one Kafka
//! transaction holding the output, both layers' state changes (changelog
//! `<application-id>-changelog`) and the input offsets. Instances started
//! on their own `--state` directories with one `--application-id` share
//! the work (ARCHITECTURE §7): each exchange sends a record whose key group
//! another instance holds there through `<application-id>-repartition`,
//! and each word's counts reach its letter in order, across hand-overs.
//!
//! Run: `dev/kafka start`; create the topics (`dev/kafka tool kafka-topics
//! --bootstrap-server 127.0.0.1:9092 --create --topic words --partitions
//! 4`, and the same for `tops`); then `cargo run --release --bin
//! kafka_top_words -- run --brokers 127.0.0.1:9092 --input-topic words
//! --output-topic tops --application-id tw --state /tmp/tw-state`.

use std::process::ExitCode;
use std::time::Duration;

use weir::prelude::*;
use weir_examples::top_words::{pipeline, Top};

fn main() -> ExitCode {
    App::new("kafka_top_words")
        .about("the most frequent words per first letter, from one Kafka topic into another, exactly once")
        .option("brokers", "Kafka bootstrap servers, host:port")
        .option("input-topic", "topic of UTF-8 lines")
        .option("output-topic", "topic the letters' top words are written to")
        .option(
            "application-id",
            "consumer group, transactional id prefix, changelog prefix",
        )
        .option("top", "how many words each letter keeps (default 3)")
        .option(
            "until-idle-ms",
            "exit 0 once no record arrived for this long",
        )
        .run(|cfg, p| {
            let n = cfg.parse::<usize>("top")?.unwrap_or(3);
            if n == 0 {
                return Err(Error::Config(
                    "--top takes how many words each letter keeps, at least 1, not 0".into(),
                ));
            }
            let props = cfg.flat_table("kafka")?;
            let settings = KafkaSettings::new(cfg.get::<String>("brokers")?).with_properties(props);
            let app: String = cfg.get("application_id")?;
            let mut source =
                KafkaSource::utf8(settings.clone(), &cfg.get::<String>("input_topic")?, &app);
            if let Some(ms) = cfg.parse::<u64>("until_idle_ms")? {
                source = source.until_idle(Duration::from_millis(ms));
            }
            let output = KafkaOutput::new(settings, &app);
            let sink = output.key_value_sink::<char, Top>(&cfg.get::<String>("output_topic")?);
            pipeline(p, source, n, sink);
            Ok(())
        })
}
