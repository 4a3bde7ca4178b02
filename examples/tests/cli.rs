//! The pipeline binary as a user meets it: errors that name the fix, the
//! bad-input policy, clean shutdown, checkpoints and state listings.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{dirs, inspect, run_ok, verify_exactly_once, wordcount};

const SESSIONS: &str = env!("CARGO_BIN_EXE_sessions");

#[test]
fn a_state_directory_of_another_pipeline_is_refused_naming_both() {
    let d = dirs(1, 1000, 10);
    run_ok(&mut wordcount(&["run"], &d));
    let out = Command::new(SESSIONS)
        .args(["run", "--input"])
        .arg(&d.input)
        .arg("--output")
        .arg(d.state.join("unused-out"))
        .arg("--state")
        .arg(&d.state)
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("belongs to pipeline `wordcount`"), "{err}");
    assert!(
        err.contains("not `sessions`") && err.contains("--state"),
        "{err}"
    );
    // The way out keeps the state: run its own pipeline on it, or give
    // this one another directory; never "delete it" first.
    assert!(
        err.contains("Run `wordcount` on it") && !err.to_lowercase().contains("delete"),
        "{err}"
    );
}

#[test]
fn undecodable_input_fails_by_default_and_is_skipped_and_counted_on_request() {
    let d = dirs(1, 1000, 11);
    std::fs::write(
        d.input.join("bad.txt"),
        b"good words\n\xff\xfe broken\nmore good\n",
    )
    .expect("write");
    let out = wordcount(&["run"], &d).output().expect("spawn");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.txt") && err.contains("position 11") && err.contains("UTF-8"),
        "{err}"
    );
    assert!(
        inspect(&["latest"], &d.state).is_none(),
        "nothing was committed"
    );

    let out = wordcount(&["run", "--set", "on_bad_input=skip"], &d)
        .env("RUST_LOG", "warn")
        .output()
        .expect("spawn");
    common::assert_success(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("skipping") && err.contains("skipped_total=1"),
        "{err}"
    );
    // The verifier reads the bad file too; drop it, the line was skipped.
    std::fs::write(d.input.join("bad.txt"), b"good words\nmore good\n").expect("rewrite");
    verify_exactly_once(&d.input, &d.output);
}

#[test]
fn sigterm_commits_the_open_epoch_and_exits_zero() {
    let d = dirs(2, 20_000, 12);
    let child = wordcount(
        &[
            "run",
            "--set",
            "follow=true",
            "--set",
            "checkpoint.interval_ms=600000",
        ],
        &d,
    )
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("spawn");
    let mut child = common::KillOnDrop(child);
    // Wait until it has read all its input, inside its first (long) epoch.
    let input_bytes: u64 = std::fs::read_dir(&d.input)
        .expect("ls")
        .map(|e| e.expect("entry").metadata().expect("stat").len())
        .sum();
    let deadline = Instant::now() + Duration::from_secs(60);
    while common::bytes_read_by(child.0.id()) < input_bytes {
        assert!(Instant::now() < deadline, "input not read");
        assert!(child.0.try_wait().expect("poll").is_none(), "exited early");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        inspect(&["latest"], &d.state).is_none(),
        "nothing committed before the signal"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let status = child.0.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    let c = inspect(&["latest"], &d.state).expect("committed at shutdown");
    assert_eq!(
        c.sinks.values().sum::<u64>(),
        common::output_bytes(&d.output)
    );
    assert_eq!(verify_exactly_once(&d.input, &d.output), 20_000);
}

#[test]
fn retained_checkpoints_are_listed_and_state_can_be_dumped() {
    let d = dirs(2, 200_000, 13);
    run_ok(&mut wordcount(
        &[
            "run",
            "--set",
            "checkpoint.interval_ms=2",
            "--set",
            "checkpoint.retain_every=2",
            "--set",
            "checkpoint.retain_count=3",
        ],
        &d,
    ));
    let list = common::cli_output(&["checkpoints", "list", "--state"], &d.state);
    let ids: Vec<u64> = list
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(
        !ids.is_empty() && ids.len() <= 3,
        "kept at most retain_count: {list}"
    );
    assert!(
        ids.windows(2).all(|w| w[1] >= w[0] + 2),
        "about every 2nd: {list}"
    );
    let dump = common::cli_output(&["state", "dump", "--store", "count", "--state"], &d.state);
    let expected = common::expected_counts(&d.input);
    let mut rows = 0;
    for line in dump.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let word = cols[3].trim_matches('"');
        assert_eq!(
            cols[4].parse::<u64>().ok(),
            expected.get(word).copied(),
            "{line}"
        );
        rows += 1;
    }
    assert_eq!(rows, expected.len());
}

#[test]
fn a_missing_input_directory_is_named_with_the_fix() {
    let d = dirs(1, 10, 14);
    std::fs::remove_dir_all(&d.input).expect("rm");
    let out = wordcount(&["run"], &d).output().expect("spawn");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pass an existing file or directory as input"),
        "{err}"
    );
}

fn counts_per_word(d: &common::Dirs) -> std::collections::HashMap<String, Vec<u64>> {
    let mut seen = common::output_counts(&d.output);
    for v in seen.values_mut() {
        v.sort_unstable();
    }
    seen
}

#[test]
fn offsets_reset_asks_about_state_and_then_reprocesses_with_or_without_it() {
    let d = dirs(2, 5_000, 15);
    run_ok(&mut wordcount(&["run"], &d));
    let expected = common::expected_counts(&d.input);

    let out = wordcount(&["offsets", "reset", "--to-earliest"], &d)
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--keep-state") && err.contains("--reset-state"),
        "{err}"
    );

    // Reset with the state kept: the input is counted a second time on top.
    run_ok(&mut wordcount(
        &["offsets", "reset", "--to-earliest", "--keep-state"],
        &d,
    ));
    let shown = String::from_utf8(
        wordcount(&["offsets", "show"], &d)
            .output()
            .expect("show")
            .stdout,
    )
    .expect("utf8");
    assert!(
        shown
            .lines()
            .skip(1)
            .all(|l| l.split_whitespace().nth(1) == Some("0")),
        "{shown}"
    );
    run_ok(&mut wordcount(&["run"], &d));
    for (w, n) in &expected {
        assert_eq!(
            counts_per_word(&d)[w],
            (1..=2 * n).collect::<Vec<_>>(),
            "{w}"
        );
    }

    // Reset with the state wiped: a new timeline counting from 1 again.
    run_ok(&mut wordcount(
        &["offsets", "reset", "--to-earliest", "--reset-state"],
        &d,
    ));
    run_ok(&mut wordcount(&["run"], &d));
    for (w, n) in &expected {
        let mut want: Vec<u64> = (1..=2 * n).chain(1..=*n).collect();
        want.sort_unstable();
        assert_eq!(counts_per_word(&d)[w], want, "{w}");
    }
}

#[test]
fn offsets_reset_is_refused_while_an_instance_runs() {
    let d = dirs(1, 1_000, 16);
    let child = wordcount(&["run", "--set", "follow=true"], &d)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let _guard = common::KillOnDrop(child);
    // The running instance holds the state directory's lock once RocksDB is open.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.state.join("db").join("LOCK").exists() {
        assert!(Instant::now() < deadline, "never opened its state");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = wordcount(&["offsets", "reset", "--to-earliest", "--keep-state"], &d)
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another running instance"), "{err}");
}

#[test]
fn environment_variables_configure_the_runtime() {
    let d = dirs(1, 2_000, 17);
    run_ok(
        wordcount(&["run"], &d)
            .env("WEIR_CHECKPOINT__RETAIN_EVERY", "1")
            .env("WEIR_CHECKPOINT__RETAIN_COUNT", "7"),
    );
    let list = common::cli_output(&["checkpoints", "list", "--state"], &d.state);
    assert!(
        list.lines().count() >= 2,
        "every checkpoint retained: {list}"
    );
}

#[test]
fn a_malformed_event_fails_the_run_naming_its_file_and_position_and_is_skipped_on_request() {
    let tmp = tempfile::tempdir().expect("tmp");
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    std::fs::write(input.join("e.log"), "100 u a\nnot-a-time u b\n200 u c\n").expect("write");
    let cmd = |extra: &[&str]| {
        let mut c = Command::new(SESSIONS);
        c.args(["run", "--gap-ms", "50", "--input"])
            .arg(&input)
            .arg("--output")
            .arg(tmp.path().join("out"))
            .arg("--state")
            .arg(tmp.path().join("state"))
            .args(extra)
            .env("RUST_LOG", "warn");
        c.output().expect("spawn")
    };
    let out = cmd(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad input in e.log at position 8") && err.contains("not-a-time"),
        "{err}"
    );
    let out = cmd(&["--set", "on_bad_input=skip"]);
    common::assert_success(&out);
    let lines = common::sorted_lines(&tmp.path().join("out"));
    assert_eq!(lines, vec!["u\t100\t100\t1", "u\t200\t200\t1"]);
}
