//! Kafka -> files in local mode against the real broker that `dev/kafka`
//! runs: `kill -9` at random moments, then an independent verifier on the
//! files, and Kafka's own `kafka-consumer-groups` as the witness that the
//! committed offsets reached the end of the topic.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use common::kafka::{assert_group_at_end, bootstrap, topic_with, unique, BIN};

fn run(topic: &str, group: &str, out: &Path, state: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args([
        "run",
        "--brokers",
        bootstrap(),
        "--input-topic",
        topic,
        "--application-id",
        group,
        "--until-idle-ms",
        "1500",
    ])
    .args(["--set", "checkpoint.interval_ms=20", "--output"])
    .arg(out)
    .arg("--state")
    .arg(state)
    .env("RUST_LOG", "warn")
    .stdin(Stdio::null());
    c
}

#[test]
fn kafka_to_files_is_exactly_once_across_kill_9_and_the_group_sees_the_end() {
    let d = common::dirs(1, 300_000, 21);
    let file = std::fs::read_dir(&d.input)
        .expect("ls")
        .next()
        .expect("one file")
        .expect("entry")
        .path();
    let topic = topic_with(4, &file);
    let group = unique("app");
    let mut rng = rand::rngs::StdRng::seed_from_u64(rand::rng().random());
    let mut kills = 0;
    while kills < 10 {
        let child = run(&topic, &group, &d.output, &d.state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut child = common::KillOnDrop(child);
        let at = Instant::now() + Duration::from_millis(rng.random_range(50..400));
        let common::Ending::Exited(status) = common::kill_9_at(&mut child.0, at) else {
            kills += 1;
            continue;
        };
        assert!(status.success(), "a run failed: {status}");
        break;
    }
    let out = run(&topic, &group, &d.output, &d.state)
        .output()
        .expect("final run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = common::verify_exactly_once(&d.input, &d.output);
    assert_eq!(lines, 300_000);
    eprintln!("{kills} kills, {lines} lines");

    // The pipeline's own view: checkpointed = group-committed = end, no lag.
    let out = Command::new(BIN)
        .args([
            "offsets",
            "show",
            "--brokers",
            bootstrap(),
            "--input-topic",
            &topic,
            "--application-id",
            &group,
            "--output",
        ])
        .arg(&d.output)
        .arg("--state")
        .arg(&d.state)
        .output()
        .expect("offsets show");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8(out.stdout).expect("utf8");
    let rows: Vec<Vec<&str>> = shown
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 4, "{shown}");
    for r in &rows {
        assert!(r[1] == r[2] && r[2] == r[3] && r[4] == "0", "{shown}");
    }

    // The witness: Kafka's own tool sees the group at the end of every partition.
    assert_group_at_end(&group, &topic, 4);
}

#[test]
fn a_missing_topic_and_an_unreachable_broker_are_named_with_the_fix() {
    let d = common::dirs(1, 10, 22);
    let out = run("no-such-topic", "g", &d.output, &d.state)
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("topic `no-such-topic` does not exist") && err.contains("--create"),
        "{err}"
    );

    let out = Command::new(BIN)
        .args([
            "run",
            "--brokers",
            "127.0.0.1:1",
            "--input-topic",
            "t",
            "--application-id",
            "g",
            "--output",
        ])
        .arg(&d.output)
        .arg("--state")
        .arg(&d.state)
        .args(["--set", "kafka.socket.connection.setup.timeout.ms=1000"])
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("127.0.0.1:1") && err.contains("reachable"),
        "{err}"
    );

    // Properties exactly-once depends on, and properties librdkafka does not know.
    for (set, says) in [
        ("kafka.enable.auto.commit=true", "cannot be overridden"),
        (
            "kafka.no.such.property=1",
            "invalid Kafka client configuration",
        ),
    ] {
        let out = run("t", "g", &d.output, &d.state)
            .args(["--set", set])
            .output()
            .expect("spawn");
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(says) && err.contains("[kafka]"),
            "{set}: {err}"
        );
    }
}
