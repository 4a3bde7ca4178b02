//! Counts the words of a Kafka topic into files, exactly once (local mode).
//!
//! Reads `--input-topic` on `--brokers` (one task per partition,
//! `read_committed`, values are UTF-8 lines), splits each value on ASCII
//! whitespace, counts per word through the exchange, and writes
//! `word<TAB>count` for every occurrence to files under `--output`. With
//! `--until-idle-ms N` it exits 0 once no record arrived for N ms and all it
//! read is committed; otherwise it runs until SIGTERM.
//!
//! Guarantee: exactly-once in local mode (ARCHITECTURE §4.1): the commit
//! point is one synced RocksDB batch holding state, the partitions' offsets
//! and the files' committed lengths. The offsets are then copied to the
//! consumer group `--application-id`, so `kafka-consumer-groups --describe`
//! shows real progress; the checkpoint stays the truth.
//!
//! Run: `dev/kafka start`, then `cargo run --release --bin kafka_to_files --
//! run --brokers 127.0.0.1:9092 --input-topic words --application-id wc
//! --output /tmp/out --state /tmp/state --until-idle-ms 2000`.

use std::process::ExitCode;
use std::time::Duration;

use weir::prelude::*;

fn main() -> ExitCode {
    App::new("kafka_to_files")
        .about("word count from a Kafka topic into files, exactly once")
        .option("brokers", "Kafka bootstrap servers, host:port")
        .option("input-topic", "topic of UTF-8 lines")
        .option(
            "application-id",
            "consumer group that gets a copy of the committed offsets",
        )
        .option("output", "directory of output files")
        .option(
            "until-idle-ms",
            "exit 0 once no record arrived for this long",
        )
        .run(|cfg, p| {
            let props = cfg.flat_table("kafka")?;
            let settings = KafkaSettings::new(cfg.get::<String>("brokers")?).with_properties(props);
            let topic: String = cfg.get("input_topic")?;
            let app: String = cfg.get("application_id")?;
            let mut source = KafkaSource::utf8(settings, &topic, &app);
            if let Some(ms) = cfg.parse::<u64>("until_idle_ms")? {
                source = source.until_idle(Duration::from_millis(ms));
            }
            weir_examples::wordcount::to_files(p, source, cfg.path("output")?);
            Ok(())
        })
}
