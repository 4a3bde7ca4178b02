//! The broker restarts while a pipeline runs: `kafka_to_files` (local
//! mode) and `kafka_wordcount` (Kafka transactions) carry on, and the
//! output is still exactly once. In its own test binary, since it stops the
//! broker that the other Kafka tests use; its tests run one at a time.

mod common;

use std::process::{Command, Stdio};

use common::kafka::{
    assert_group_at_end, bootstrap, broker, committed_counts, first_part, produce, topic_with,
    wait_for_group_at_end, wordcount_idle, Parts, BIN,
};

/// One broker restart at a time.
static BROKER: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_broker_restart_mid_run_is_ridden_out_exactly_once() {
    let _one = BROKER.lock().unwrap_or_else(|p| p.into_inner());
    let d = common::dirs(2, 40_000, 31);
    let files = common::input_files(&d);
    let topic = topic_with(2, &files[0]);
    let (_log, log) = common::LogOnFailure::create(d._tmp.path(), "pipeline.log");
    let child = Command::new(BIN)
        .args([
            "run",
            "--brokers",
            bootstrap(),
            "--input-topic",
            &topic,
            "--application-id",
            &topic,
        ])
        .args(["--set", "checkpoint.interval_ms=100", "--output"])
        .arg(&d.output)
        .arg("--state")
        .arg(&d.state)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn");
    let mut child = common::KillOnDrop(child);
    common::wait_for_lines(&d, 20_000, &mut child.0);

    broker("stop");
    broker("start");
    produce(&topic, &files[1]);
    common::wait_for_committed_lines(&d, 40_000, &mut child.0);

    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(child.0.wait().expect("wait").success());
    assert_eq!(common::verify_exactly_once(&d.input, &d.output), 40_000);
}

#[test]
fn a_broker_restart_under_transactions_aborts_and_redoes_the_epoch_exactly_once() {
    let _one = BROKER.lock().unwrap_or_else(|p| p.into_inner());
    let d = common::dirs(2, 200_000, 32);
    let Parts {
        files,
        input,
        output,
        app,
    } = first_part(&d, "restart");
    let (_log, log) = common::LogOnFailure::create(d._tmp.path(), "pipeline.log");
    let child = wordcount_idle(&input, &output, &app, &d.state, None)
        .args(["--set", "checkpoint.interval_ms=100"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn");
    let mut child = common::KillOnDrop(child);
    wait_for_group_at_end(&app, &input, &mut child);

    // The pipeline is busy with these when the broker stops: its open
    // epoch is aborted and redone.
    produce(&input, &files[1]);
    broker("stop");
    broker("start");
    wait_for_group_at_end(&app, &input, &mut child);

    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(child.0.wait().expect("wait").success());
    let expected = common::expected_counts(&d.input);
    assert_eq!(
        common::verify_counts(&expected, committed_counts(&output)),
        200_000
    );
    assert_group_at_end(&app, &input, 4);
}
