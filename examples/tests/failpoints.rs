//! One test per crash point of the commit and recovery paths: the real
//! `wordcount` binary aborts there, is restarted, and an independent
//! verifier checks I1 (the committed output prefix matches the committed
//! input prefix), I2 (output past it is discarded) and I3 (crashing during
//! recovery, then recovering, ends in the same place).
//!
//! Needs the `failpoints` feature (`cargo test --all-features`).

mod common;

use common::{
    crash_with, dirs, inspect, run_ok, verify_committed_prefix, verify_exactly_once, wordcount,
    Dirs,
};

const WORDS: usize = 600_000;

/// Runs to the end retaining every 2nd checkpoint; returns the live
/// checkpoint, the oldest retained id and that checkpoint.
fn run_retaining(d: &Dirs) -> (common::Committed, String, common::Committed) {
    run_ok(wordcount(&["run"], d).args([
        "--set",
        "checkpoint.interval_ms=2",
        "--set",
        "checkpoint.retain_every=2",
        "--set",
        "checkpoint.retain_count=50",
    ]));
    let live = inspect(&["latest"], &d.state).expect("committed");
    let id = common::first_retained(&d.state);
    let first = inspect(&[&id], &d.state).expect("a retained checkpoint");
    (live, id, first)
}

fn finish(d: &Dirs) {
    run_ok(&mut wordcount(&["run"], d));
    let lines = verify_exactly_once(&d.input, &d.output);
    assert_eq!(lines as usize, WORDS);
}

#[test]
fn resumes_exactly_after_crash_between_sink_fsync_and_commit() {
    let d = dirs(3, WORDS, 1);
    crash_with(&d, &["run"], "after-sink-flush=2*off->return");
    // Output of the failed epoch was fsynced but not committed: the live
    // checkpoint is the previous one, and the files are longer than it says.
    let c = inspect(&["latest"], &d.state).expect("a committed checkpoint");
    verify_committed_prefix(&d.input, &d.output, &c);
    let on_disk = common::output_bytes(&d.output);
    assert!(
        on_disk > c.sinks.values().sum::<u64>(),
        "the aborted epoch's output is on disk"
    );
    finish(&d);
}

#[test]
fn resumes_exactly_after_crash_right_after_the_commit_batch() {
    let d = dirs(3, WORDS, 2);
    crash_with(&d, &["run"], "after-state-batch=2*off->return");
    let c = inspect(&["latest"], &d.state).expect("a committed checkpoint");
    assert!(c.epoch >= 3);
    verify_committed_prefix(&d.input, &d.output, &c);
    finish(&d);
}

#[test]
fn recovery_that_crashes_midway_ends_in_the_same_place() {
    let d = dirs(3, WORDS, 3);
    crash_with(&d, &["run"], "after-sink-flush=3*off->return");
    let before = inspect(&["latest"], &d.state).expect("a committed checkpoint");
    // Recovery truncates the sinks, then dies before the sources open; twice.
    for _ in 0..2 {
        crash_with(&d, &["run"], "mid-recovery=return");
        let again = inspect(&["latest"], &d.state).expect("still committed");
        assert_eq!(again.epoch, before.epoch);
        assert_eq!(again.sinks, before.sinks);
        assert_eq!(
            common::output_bytes(&d.output),
            before.sinks.values().sum::<u64>()
        );
        verify_committed_prefix(&d.input, &d.output, &again);
    }
    finish(&d);
}

#[test]
fn replay_that_crashes_midway_is_finished_or_undone_cleanly() {
    let d = dirs(2, WORDS, 4);
    let (live, id, first) = run_retaining(&d);
    // Dies after preparing the restored state, before swapping it in.
    crash_with(&d, &["replay", "--from", &id], "mid-replay=return");
    let after = inspect(&["latest"], &d.state).expect("committed");
    assert_eq!(
        after.epoch, live.epoch,
        "an unfinished replay changes nothing"
    );
    assert_eq!(after.sources, live.sources);
    // A replay run to the end: state and positions from checkpoint 2, output
    // appended after what was already written.
    run_ok(&mut wordcount(&["replay", "--from", &id], &d));
    let replayed = inspect(&["latest"], &d.state).expect("committed");
    assert!(replayed.epoch > live.epoch);
    common::verify_replay_output(&d.input, &d.output, &live, &first);
}

#[test]
fn at_least_once_repeats_the_output_of_the_epoch_that_did_not_commit() {
    let d = dirs(3, WORDS, 5);
    let g = ["--set", "guarantee=at-least-once"];
    let mut args = vec!["run"];
    args.extend(g);
    crash_with(&d, &args, "after-sink-flush=2*off->return");
    run_ok(&mut wordcount(&args, &d));
    let expected = common::expected_counts(&d.input);
    let seen = common::output_counts(&d.output);
    let mut lines = 0;
    for (word, n) in &expected {
        let counts = &seen[word];
        lines += counts.len();
        let mut distinct = counts.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            distinct,
            (1..=*n).collect::<Vec<_>>(),
            "no count of {word} is lost"
        );
    }
    assert!(
        lines > WORDS,
        "the redone epoch's output appears twice: {lines} lines for {WORDS} words"
    );
}

#[test]
fn at_most_once_never_repeats_a_record_but_loses_the_epoch_that_did_not_commit() {
    let d = dirs(3, WORDS, 6);
    let mut args = vec!["run"];
    args.extend(["--set", "guarantee=at-most-once"]);
    crash_with(&d, &args, "after-sink-flush=2*off->return");
    run_ok(&mut wordcount(&args, &d));
    let expected = common::expected_counts(&d.input);
    let seen = common::output_counts(&d.output);
    // Each input record yields at most one line: none is read twice.
    let lines: usize = seen.values().map(Vec::len).sum();
    assert!(lines <= WORDS, "{lines} lines for {WORDS} words");
    // What was read after the last checkpoint is lost: its output (records
    // read but not yet written) or its state updates (counts that never reach N).
    let short = expected
        .iter()
        .filter(|(w, n)| seen.get(*w).and_then(|c| c.iter().max()) < Some(*n))
        .count();
    assert!(
        lines < WORDS || short > 0,
        "something of the aborted epoch is lost"
    );
    assert!(short > 0, "{short} words never reach their count");
}

#[test]
fn a_crash_while_a_finished_replay_replaces_the_state_is_completed_by_the_next_start() {
    let d = dirs(2, WORDS, 7);
    let (live, id, first) = run_retaining(&d);
    // The old state is gone, the new one not yet in place.
    crash_with(&d, &["replay", "--from", &id], "mid-replay-swap=return");
    assert!(!d.state.join("db").exists());
    // A plain start finishes the replay rather than starting empty.
    run_ok(&mut wordcount(&["run"], &d));
    common::verify_replay_output(&d.input, &d.output, &live, &first);
}
