//! Apache Kafka connectors (the only place weir links librdkafka).

mod client;
mod member;
mod sink;
mod source;
mod topics;
mod txn;

pub use client::{client_config, KafkaSettings, WeirContext};
pub use sink::{KafkaOutput, KafkaSink, CHANGELOG_PARTITIONS};
pub use source::{KafkaRecord, KafkaSource, StartAt};
pub use txn::{transaction_timeout, TxnProducer};
