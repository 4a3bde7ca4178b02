//! Kafka mode's crash points (ARCHITECTURE §4.2, §9): `kafka_wordcount`
//! aborts at each, and Kafka's own tools check what a `read_committed`
//! reader sees then (I1, I2) and after recovery (exactly once). Needs the
//! `failpoints` feature.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::kafka::{
    assert_group_at_end, committed_counts, create_topic, first_part, group_offsets,
    input_counts_below, input_topic, produce, unique, wordcount, Parts,
};

const WORDS: usize = 200_000;

struct Setup {
    d: common::Dirs,
    input: String,
    output: String,
    app: String,
}

/// One test at a time: the witnesses (Kafka's console tools) are slow on
/// a loaded machine.
static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one() -> std::sync::MutexGuard<'static, ()> {
    ONE.lock().unwrap_or_else(|p| p.into_inner())
}

fn setup(seed: u64) -> Setup {
    let d = common::dirs(1, WORDS, seed);
    let (input, _) = input_topic(&d);
    Setup {
        output: create_topic("counts", 4),
        app: unique("fp"),
        input,
        d,
    }
}

impl Setup {
    fn cmd(&self, state: &Path) -> Command {
        wordcount(&self.input, &self.output, &self.app, state)
    }

    /// Runs with crash point `spec` armed and checks that it aborted.
    fn crash(&self, state: &Path, spec: &str) {
        let out = self
            .cmd(state)
            .env("FAILPOINTS", spec)
            .output()
            .expect("spawn");
        assert!(
            common::died(out.status),
            "{spec}: expected an abort, got {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// I1 and I2 as a `read_committed` reader sees them: the output is
    /// exactly the counts of the input below the group's committed offsets.
    fn assert_consistent(&self) -> u64 {
        let committed: BTreeMap<i32, u64> = group_offsets(&self.app, &self.input)
            .into_iter()
            .filter_map(|(p, (c, _))| c.map(|c| (p, c)))
            .collect();
        let expected = input_counts_below(&self.input, &committed);
        common::verify_counts(&expected, committed_counts(&self.output))
    }

    /// Runs to the end and checks exactly once, with the group at the end.
    fn finish(&self, state: &Path) -> String {
        let out = self
            .cmd(state)
            .env("RUST_LOG", "info")
            .output()
            .expect("spawn");
        common::assert_success(&out);
        let expected = common::expected_counts(&self.d.input);
        let records = common::verify_counts(&expected, committed_counts(&self.output));
        assert_eq!(records, WORDS as u64);
        assert_group_at_end(&self.app, &self.input, 4);
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

#[test]
fn a_crash_before_the_transaction_commits_redoes_the_epoch() {
    let _one = one();
    let s = setup(51);
    s.crash(&s.d.state, "before-txn-commit=return");
    // The first epoch's transaction never committed: nothing is visible,
    // neither output nor offsets (I2).
    assert_eq!(s.assert_consistent(), 0);
    assert!(group_offsets(&s.app, &s.input)
        .values()
        .all(|(c, _)| c.is_none()));
    s.finish(&s.d.state);
}

#[test]
fn a_crash_after_the_commit_before_the_batch_rolls_the_state_forward() {
    let _one = one();
    let s = setup(52);
    s.crash(&s.d.state, "after-txn-commit=return");
    let shown = s.assert_consistent();
    assert!(shown > 0, "the committed epochs are visible");
    // A crash in the middle of rolling forward changes nothing (I3).
    s.crash(&s.d.state, "mid-recovery=return");
    assert_eq!(s.assert_consistent(), shown);
    let log = s.finish(&s.d.state);
    assert!(log.contains("rolled the state forward"), "{log}");
}

#[test]
fn a_crash_after_the_batch_resumes_where_it_stopped() {
    let _one = one();
    let s = setup(53);
    s.crash(&s.d.state, "after-state-batch=return");
    assert!(s.assert_consistent() > 0);
    s.finish(&s.d.state);
}

#[test]
fn a_task_without_local_state_restores_from_the_changelog() {
    let _one = one();
    let s = setup(54);
    s.crash(&s.d.state, "after-state-batch=return");
    let shown = s.assert_consistent();
    // A new machine: no local state at all. The counts go on from the
    // changelog, not from zero.
    let fresh = tempfile::tempdir().expect("tempdir");
    let log = s.finish(&fresh.path().join("state"));
    assert!(log.contains("rolled the state forward"), "{log}");
    assert!(shown > 0);
}

#[test]
fn at_least_once_repeats_output_after_a_crash_and_loses_nothing() {
    let _one = one();
    let s = setup(55);
    let alo = ["--set", "guarantee=at-least-once"];
    let out = s
        .cmd(&s.d.state)
        .args(alo)
        .env("FAILPOINTS", "after-sink-flush=return")
        .output()
        .expect("spawn");
    assert!(
        common::died(out.status),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::assert_success(&s.cmd(&s.d.state).args(alo).output().expect("spawn"));
    let expected = common::expected_counts(&s.d.input);
    let seen = committed_counts(&s.output);
    let mut records = 0;
    for (word, n) in &expected {
        let mut counts = seen.get(word).cloned().unwrap_or_default();
        records += counts.len();
        counts.sort_unstable();
        counts.dedup();
        assert_eq!(
            counts,
            (1..=*n).collect::<Vec<_>>(),
            "no count of {word} is lost"
        );
    }
    assert!(
        records > WORDS,
        "the epoch that did not commit is output twice: {records} records for {WORDS} words"
    );
    assert_group_at_end(&s.app, &s.input, 4);
}

#[test]
fn at_most_once_never_repeats_a_record_but_loses_after_a_crash() {
    let _one = one();
    let d = common::dirs(2, WORDS, 56);
    let Parts {
        files,
        input,
        output,
        app,
    } = first_part(&d, "amo");
    let amo = ["--set", "guarantee=at-most-once"];
    let out = wordcount(&input, &output, &app, &d.state)
        .args(amo)
        .env("FAILPOINTS", "after-sink-flush=return")
        .output()
        .expect("spawn");
    assert!(
        common::died(out.status),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // More input after the crash: its counts build on the state that was lost.
    produce(&input, &files[1]);
    common::assert_success(
        &wordcount(&input, &output, &app, &d.state)
            .args(amo)
            .output()
            .expect("spawn"),
    );
    let expected = common::expected_counts(&d.input);
    let seen = committed_counts(&output);
    // Each input record yields at most one output record: none is read twice.
    let records: usize = seen.values().map(Vec::len).sum();
    assert!(records <= WORDS, "{records} records for {WORDS} words");
    // The state updates of the epoch that did not commit are lost.
    let short = expected
        .iter()
        .filter(|(w, n)| seen.get(*w).and_then(|c| c.iter().max()) < Some(*n))
        .count();
    assert!(short > 0, "some words never reach their count");
    assert_group_at_end(&app, &input, 4);
}

#[test]
fn undecodable_records_go_to_the_dead_letter_topic_exactly_once() {
    let _one = one();
    let s = setup(58);
    let dlq = create_topic("dlq", 1);
    // 20 values that are not UTF-8, after the words.
    let settings = weir::kafka::KafkaSettings::new(common::kafka::bootstrap());
    let timeout = std::time::Duration::from_secs(30);
    let mut p =
        weir::kafka::TxnProducer::new(&settings, &unique("bad"), timeout).expect("producer");
    p.begin().expect("begin");
    for i in 0..20u8 {
        let value = [0xff, 0xfe, b'a' + i];
        p.send(&s.input, Some(i32::from(i % 4)), b"k", Some(&value))
            .expect("send");
    }
    p.commit(None).expect("commit");

    // The policy needs a dead-letter sink.
    let out = s
        .cmd(&s.d.state)
        .args(["--set", "on_bad_input=dead-letter"])
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no dead-letter sink"), "{err}");

    let dl = [
        "--set",
        "on_bad_input=dead-letter",
        "--dead-letter-topic",
        dlq.as_str(),
    ];
    let crashed = s
        .cmd(&s.d.state)
        .args(dl)
        .env("FAILPOINTS", "before-txn-commit=return")
        .output()
        .expect("spawn");
    assert!(common::died(crashed.status));
    common::assert_success(&s.cmd(&s.d.state).args(dl).output().expect("spawn"));
    let expected = common::expected_counts(&s.d.input);
    assert_eq!(
        common::verify_counts(&expected, committed_counts(&s.output)),
        WORDS as u64
    );
    let letters = common::kafka::tool(
        &[
            "kafka-console-consumer",
            "--bootstrap-server",
            common::kafka::bootstrap(),
            "--topic",
            &dlq,
            "--from-beginning",
            "--isolation-level",
            "read_committed",
            "--formatter-property",
            "print.headers=true",
            "--timeout-ms",
            "6000",
        ],
        None,
    );
    let lines: Vec<&str> = letters.lines().collect();
    assert_eq!(lines.len(), 20, "each bad record once: {letters}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("weir.error:value is not UTF-8")),
        "{letters}"
    );
    assert_group_at_end(&s.app, &s.input, 4);
}
