//! Counts page views per page and tumbling window of event time, from one
//! Kafka topic into another, exactly once.
//!
//! Reads `--input-topic` on `--brokers` (one task per partition,
//! `read_committed`). Each value is JSON `{"page": str, "user": str, "ts":
//! ms}`; `ts` is the event time, keys are ignored, and a record with a null
//! value is skipped. Views are keyed by page through the exchange and
//! counted per tumbling window of `--window-ms` (default 60000). Once the
//! watermark (the least, over the active partitions, of the latest `ts`
//! each has read) passes a window's end plus `--grace-ms` (default 5000),
//! the window is written to `--output-topic` exactly once: key = the page,
//! value = JSON `{"page", "window_start", "window_end", "views", "users"}`,
//! where `users` is the exact number of distinct users. A view later than
//! that goes to `--late-topic` (key = the page, value = the view), or
//! without it is dropped and counted in `weir_late_records_total`. A
//! partition without records for `watermark.idle_ms` (default 5000) stops
//! holding the watermark back, so quiet partitions do not keep windows
//! open. A value that is not such JSON stops the run, or with `--set
//! on_bad_input=skip` is logged and skipped, or with `--set
//! on_bad_input=dead-letter --dead-letter-topic DLQ` goes to `DLQ` inside
//! the same transaction. With `--until-idle-ms N` the run ends once no
//! record arrived for N ms: every window still open is then written.
//!
//! Guarantee: exactly-once (ARCHITECTURE §4.2). Each epoch is one Kafka
//! transaction holding the windows written, the late views, the window
//! state's changes (changelog `<application-id>-changelog`) and the input
//! offsets; after any crash the windows open then are rebuilt from the
//! changelog, so a `read_committed` consumer of the output sees every
//! window exactly once, with exact counts.
//!
//! Run: `dev/kafka start`; create the topics (`dev/kafka tool kafka-topics
//! --bootstrap-server 127.0.0.1:9092 --create --topic views --partitions
//! 4`, and the same for `page-stats`); then `cargo run --release --bin
//! page_views -- run --brokers 127.0.0.1:9092 --input-topic views
//! --output-topic page-stats --application-id pv --state /tmp/pv-state`.

use std::process::ExitCode;
use std::time::Duration;

use weir::prelude::*;
use weir_examples::page_views::{pipeline, PageStats, PageView, Windowing, LATE};

fn main() -> ExitCode {
    App::new("page_views")
        .about("page views and distinct users per tumbling window, Kafka to Kafka, exactly once")
        .option("brokers", "Kafka bootstrap servers, host:port")
        .option("input-topic", "topic of JSON page views")
        .option("output-topic", "topic the windows are written to")
        .option(
            "application-id",
            "consumer group, transactional id prefix, changelog prefix",
        )
        .option("window-ms", "the windows' size, ms (default 60000)")
        .option(
            "grace-ms",
            "how long after its end a window takes views, ms (default 5000)",
        )
        .option("late-topic", "where views later than the grace go")
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
            let mut source = KafkaSource::records(
                settings.clone(),
                &cfg.get::<String>("input_topic")?,
                &app,
                NoKey,
                Json::<PageView>::new(),
            );
            if let Some(ms) = cfg.parse::<u64>("until_idle_ms")? {
                source = source.until_idle(Duration::from_millis(ms));
            }
            let window_ms = cfg.parse::<u64>("window_ms")?.unwrap_or(60_000);
            if window_ms == 0 {
                return Err(Error::Config(
                    "--window-ms takes the windows' size in ms, at least 1, not 0".into(),
                ));
            }
            let grace_ms = cfg.parse::<u64>("grace_ms")?.unwrap_or(5_000);
            let output = KafkaOutput::new(settings, &app);
            let late = cfg.get_opt::<String>("late_topic")?;
            if let Some(topic) = &late {
                p.side_output(
                    &LATE,
                    output.record_sink(topic, Utf8, Json::<PageView>::new()),
                );
            }
            if let Some(topic) = cfg.get_opt::<String>("dead_letter_topic")? {
                p.dead_letter(output.dead_letter_sink(&topic));
            }
            let sink = output.record_sink(
                &cfg.get::<String>("output_topic")?,
                Utf8,
                Json::<PageStats>::new(),
            );
            let windowing = Windowing {
                window: Duration::from_millis(window_ms),
                grace: Duration::from_millis(grace_ms),
                late_output: late.is_some(),
            };
            let views = p
                .source(source)
                .flat_map(|r: KafkaRecord<(), PageView>| r.value);
            pipeline(views, windowing, sink);
            Ok(())
        })
}
