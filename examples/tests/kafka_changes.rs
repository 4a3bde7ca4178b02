//! Each key's updates in order across instances and rebalances
//! (`kafka_changes`: each update with the value it replaced) against the
//! real broker. While updates keep coming, one of two instances is stopped
//! (SIGSTOP) past its session, so that the other takes its shards over
//! with a backlog of records forwarded to them, then continued, and then
//! the other is killed with `kill -9` and started again. Read
//! `read_committed`, every key's changes form one unbroken chain, each
//! `old` the `new` before it: every update once, in the order written.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::kafka::{
    bootstrap, committed_records, create_topic, unique, wait_for_group_at_end, wait_for_members,
};
use common::{KillOnDrop, LogOnFailure};

const KAFKA_CHANGES: &str = env!("CARGO_BIN_EXE_kafka_changes");

/// One change as read: the value replaced, and the new one.
type Change = (Option<String>, Option<String>);

/// Keys updated in each round.
const KEYS: usize = 400;
/// Rounds of updates: key `k{i}` takes the values `0`, `1`, ... in turn.
const ROUNDS: usize = 500;
/// Rounds a second, so that updates keep coming through the rebalances.
const ROUNDS_PER_S: usize = 15;

/// The partitions a member holding everything holds: the input's 4 and
/// the 8 shards of the repartition topic (`key_groups=16`).
const ALL_PARTITIONS: usize = 12;

/// `kafka_changes` of `app` on `state`, running until stopped, its log in
/// `log`.
fn instance(input: &str, output: &str, app: &str, state: &Path, log: &Path) -> KillOnDrop {
    let mut c = Command::new(KAFKA_CHANGES);
    c.arg("run")
        .args(["--brokers", bootstrap()])
        .args(["--input-topic", input])
        .args(["--output-topic", output])
        .args(["--application-id", app])
        .args(["--set", "checkpoint.interval_ms=100"])
        .args(["--set", "key_groups=16"])
        .arg("--state")
        .arg(state)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"));
    KillOnDrop(c.spawn().expect("spawn"))
}

/// Writes `ROUNDS` rounds of updates of every key to `topic`, keyed (so
/// that a key's updates are in one partition, in order), `ROUNDS_PER_S`
/// rounds a second.
fn produce_updates(topic: String) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
        use rdkafka::ClientConfig;
        let producer: ThreadedProducer<_> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap())
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        let started = Instant::now();
        for round in 0..ROUNDS {
            let value = round.to_string();
            for k in 0..KEYS {
                let key = format!("k{k}");
                let mut record = BaseRecord::to(&topic).key(&key).payload(&value);
                // A full queue drains as the producer's thread delivers.
                while let Err((e, back)) = producer.send(record) {
                    assert!(
                        matches!(
                            e.rdkafka_error_code(),
                            Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ),
                        "produce: {e}"
                    );
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            // Paced, not synchronised: the updates spread over the test.
            let due =
                started + Duration::from_millis((round as u64 + 1) * 1000 / ROUNDS_PER_S as u64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        producer
            .flush(Duration::from_secs(60))
            .expect("every update delivered");
    })
}

#[test]
fn each_keys_updates_apply_in_order_once_across_a_takeover_a_return_and_kill_9() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = create_topic("changes-in", 4);
    let output = create_topic("changes-out", 4);
    let app = unique("changes");
    let (first_state, second_state) = (tmp.path().join("state-1"), tmp.path().join("state-2"));
    let (first_log, second_log) = (tmp.path().join("first.log"), tmp.path().join("second.log"));
    let _traces = (
        LogOnFailure(first_log.clone()),
        LogOnFailure(second_log.clone()),
    );
    let producing = produce_updates(input.clone());
    let started = Instant::now();
    let mut first = instance(&input, &output, &app, &first_state, &first_log);
    let mut second = instance(&input, &output, &app, &second_state, &second_log);
    let both =
        |m: &[common::kafka::GroupMember]| m.len() == 2 && m.iter().all(|m| m.partitions > 0);
    wait_for_members(&app, &mut first, both);

    // Stopped past its session: the first takes its input partitions and
    // its shards, whose backlog the first forwarded meanwhile.
    let pid = second.0.id().to_string();
    common::run_ok(Command::new("kill").args(["-STOP", &pid]));
    wait_for_members(&app, &mut first, |m| {
        m.len() == 1 && m[0].partitions == ALL_PARTITIONS
    });
    common::run_ok(Command::new("kill").args(["-CONT", &pid]));
    wait_for_members(&app, &mut first, both);

    // Killed: the second takes everything over; the first comes back.
    let _ = first.0.kill();
    let _ = first.0.wait();
    wait_for_members(&app, &mut second, |m| {
        m.len() == 1 && m[0].partitions == ALL_PARTITIONS
    });
    let mut first = instance(&input, &output, &app, &first_state, &first_log);
    wait_for_members(&app, &mut first, both);
    eprintln!("rebalances done after {:?}", started.elapsed());

    producing.join().expect("the producer");
    wait_for_group_at_end(&app, &input, &mut first);
    for p in [&mut first, &mut second] {
        common::run_ok(Command::new("kill").args(["-TERM", &p.0.id().to_string()]));
        assert!(p.0.wait().expect("wait").success());
    }

    // A key's changes are in one partition, in the order committed.
    let mut chains: BTreeMap<String, Vec<Change>> = BTreeMap::new();
    for (key, value) in committed_records(&output) {
        let change: serde_json::Value = serde_json::from_str(&value).expect("JSON");
        let text = |field: &str| change[field].as_str().map(str::to_owned);
        chains
            .entry(key)
            .or_default()
            .push((text("old"), text("new")));
    }
    assert_eq!(chains.len(), KEYS, "keys with changes");
    for (key, chain) in &chains {
        let expected: Vec<_> = (0..ROUNDS)
            .map(|i| (i.checked_sub(1).map(|p| p.to_string()), Some(i.to_string())))
            .collect();
        if *chain != expected {
            let first_off = chain
                .iter()
                .zip(&expected)
                .position(|(a, b)| a != b)
                .unwrap_or(chain.len().min(expected.len()));
            panic!(
                "{key}: {} changes, {ROUNDS} expected; first off at {first_off}: {:?}",
                chain.len(),
                &chain[first_off.saturating_sub(2)..(first_off + 3).min(chain.len())]
            );
        }
    }
    eprintln!("{} chains of {ROUNDS} changes in order", chains.len());
}
