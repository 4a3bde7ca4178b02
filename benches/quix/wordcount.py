"""The word count of workload 1 in Quix Streams: the peer closest to weir's
architecture (exactly-once through Kafka transactions, RocksDB state with
changelog topics). Reads lines of words from --input-topic, re-keys each word
through Quix's repartition topic (group_by), counts it in RocksDB state, and
writes (word, count as decimal text) to --output-topic, as weir's
kafka_wordcount and the Kafka Streams peer do.

    ./run --brokers 127.0.0.1:9092 --input-topic words --output-topic counts \
          --application-id wc --state-dir /tmp/wc --commit-interval-ms 100 \
          --guarantee exactly-once
"""

import argparse
import logging

from quixstreams import Application


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--brokers", required=True)
    p.add_argument("--input-topic", required=True)
    p.add_argument("--output-topic", required=True)
    p.add_argument("--application-id", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--commit-interval-ms", type=int, default=100)
    p.add_argument(
        "--guarantee", choices=["exactly-once", "at-least-once"], default="exactly-once"
    )
    a = p.parse_args()
    app = Application(
        broker_address=a.brokers,
        consumer_group=a.application_id,
        auto_offset_reset="earliest",
        processing_guarantee=a.guarantee,
        commit_interval=a.commit_interval_ms / 1000,
        state_dir=a.state_dir,
        loglevel=logging.WARNING,
    )
    words = app.topic(a.input_topic, value_deserializer="str")
    counts = app.topic(a.output_topic, key_serializer="str", value_serializer="str")

    def count(word: str, state) -> str:
        n = state.get("count", 0) + 1
        state.set("count", n)
        return str(n)

    sdf = app.dataframe(words)
    sdf = sdf.apply(lambda line: line.split(), expand=True)
    sdf = sdf.group_by(lambda word: word, name="word")
    sdf = sdf.apply(count, stateful=True)
    sdf.to_topic(counts)
    app.run()


if __name__ == "__main__":
    main()
