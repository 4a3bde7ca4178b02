//! Apache Kafka connectors (the only place weir links librdkafka).

mod client;
mod source;

pub use client::{client_config, KafkaSettings, WeirContext};
pub use source::{KafkaSource, StartAt};
