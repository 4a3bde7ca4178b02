//! Enriches orders with their customer, from two Kafka topics into a third,
//! exactly once: a stream-table left join by customer, re-keyed by order.
//!
//! Reads `--orders-topic` and `--customers-topic` on `--brokers` as one
//! source (one task per partition of each, `read_committed`, one member of
//! the consumer group `--application-id`). Orders are JSON `{"order_id":
//! str, "customer_id": str, "amount": number, "ts": ms}`; `ts` is their
//! event time, and their keys are ignored. Customers are a table: key =
//! the customer's id, value JSON `{"name", "country"}`; a newer record for
//! a key replaces the older, a null value deletes it; a record takes
//! effect at its Kafka timestamp. Each order is joined, by its
//! `customer_id`, with the customer's latest value as of the order's `ts`
//! (a left join: `"customer": null` when there is none), and written to
//! `--output-topic` once: key = the order's id, value = the order plus
//! `"customer": {"name", "country"}`. An order waits until the customers'
//! watermark (the least, over their partitions, of the latest time each
//! has read, 5 s behind; a partition read to its end counts as complete up
//! to 7 s before its end was seen) passes its `ts`, or else the watermark
//! of both topics does: by then every customer update up to that time has
//! been read, so the result does not depend on how the two topics'
//! partitions were interleaved, nor on crashes. A value that
//! is not such JSON follows `on_bad_input` (`--set on_bad_input=skip`, or
//! `dead-letter` with `--dead-letter-topic DLQ`). With `--until-idle-ms N`
//! the run ends once no record arrived for N ms, after writing every order
//! still waiting.
//!
//! Guarantee: exactly-once (ARCHITECTURE §4.2). Each epoch is one Kafka
//! transaction holding the enriched orders, the join's state changes (the
//! table's versions and the waiting orders, changelog
//! `<application-id>-changelog`) and both topics' offsets; after any crash
//! the join resumes from the last committed epoch, so a `read_committed`
//! consumer of the output sees every order exactly once.
//!
//! Run: `dev/kafka start`; create the topics (`dev/kafka tool kafka-topics
//! --bootstrap-server 127.0.0.1:9092 --create --topic orders --partitions
//! 4`, the same for `customers` and `enriched`); then `cargo run --release
//! --bin enrich_orders -- run --brokers 127.0.0.1:9092 --orders-topic
//! orders --customers-topic customers --output-topic enriched
//! --application-id enrich --state /tmp/enrich-state`.

use std::process::ExitCode;
use std::time::Duration;

use weir::prelude::*;
use weir_examples::enrich_orders::{pipeline, Customer, EnrichedOrder, Order};

fn main() -> ExitCode {
    App::new("enrich_orders")
        .about("orders joined with their customer's latest value, Kafka to Kafka, exactly once")
        .option("brokers", "Kafka bootstrap servers, host:port")
        .option("orders-topic", "topic of JSON orders")
        .option(
            "customers-topic",
            "topic of customers: key = id, JSON value or null",
        )
        .option("output-topic", "topic the enriched orders are written to")
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
            let orders = KafkaSource::records(
                settings.clone(),
                &cfg.get::<String>("orders_topic")?,
                &app,
                NoKey,
                Json::<Order>::new(),
            );
            let customers = KafkaSource::records(
                settings.clone(),
                &cfg.get::<String>("customers_topic")?,
                &app,
                Utf8,
                Json::<Customer>::new(),
            );
            let mut source = orders.and(customers);
            if let Some(ms) = cfg.parse::<u64>("until_idle_ms")? {
                source = source.until_idle(Duration::from_millis(ms));
            }
            let output = KafkaOutput::new(settings, &app);
            if let Some(topic) = cfg.get_opt::<String>("dead_letter_topic")? {
                p.dead_letter(output.dead_letter_sink(&topic));
            }
            let sink = output.record_sink(
                &cfg.get::<String>("output_topic")?,
                Utf8,
                Json::<EnrichedOrder>::new(),
            );
            pipeline(p, source, sink);
            Ok(())
        })
}
