//! Kafka -> Kafka exactly-once (ARCHITECTURE §4.2) against the real broker
//! that `dev/kafka` runs. The witnesses are Kafka's own tools: the console
//! consumer reading the output `read_committed`, and
//! `kafka-consumer-groups` for the committed input offsets.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use common::kafka::{
    assert_group_at_end, committed_counts, create_topic, first_part, java_partitions,
    partitions_of_keys, produce, unique, wait_for_group_at_end, wordcount, wordcount_idle, Parts,
};

/// One test at a time: the chaos test wants the machine to itself.
static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one() -> std::sync::MutexGuard<'static, ()> {
    ONE.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn kafka_wordcount_is_exactly_once_across_50_kill_9() {
    let _one = one();
    // 1.6 million words in 32 parts of 50,000: a part is produced whenever
    // the input is used up before the 50th kill, the rest before the end.
    // A run can use up a part between two kills (a restart takes well under
    // a second), so there are parts enough for every run to finish one.
    const WORDS: usize = 1_600_000;
    let started = Instant::now();
    let d = common::dirs(32, WORDS, 41);
    let mut parts = common::input_files(&d).into_iter();
    let input = create_topic("words", 4);
    produce(&input, &parts.next().expect("a part"));
    let output = create_topic("counts", 4);
    let app = unique("chaos");
    let mut rng = rand::rngs::StdRng::seed_from_u64(rand::rng().random());
    let (mut kills, mut runs) = (0, 0);
    while kills < 50 {
        runs += 1;
        let log_path = d._tmp.path().join("run.log");
        let log = std::fs::File::create(&log_path).expect("log");
        let child = wordcount(&input, &output, &app, &d.state)
            .args(["--set", "checkpoint.interval_ms=100"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn");
        let mut child = common::KillOnDrop(child);
        // Starting (fencing, the changelog's roll-forward, the group's
        // offsets) takes tens of milliseconds: kill before, during and after it.
        let deadline = Instant::now() + Duration::from_millis(rng.random_range(20..2500));
        let common::Ending::Exited(status) = common::kill_9_at(&mut child.0, deadline) else {
            kills += 1;
            continue;
        };
        // It used up its input and ended, perhaps just before the kill.
        assert!(
            status.success(),
            "a run failed: {status}: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        match parts.next() {
            Some(part) => produce(&input, &part),
            None => break,
        }
    }
    for part in parts {
        produce(&input, &part);
    }
    let out = wordcount(&input, &output, &app, &d.state)
        .output()
        .expect("final run");
    common::assert_success(&out);
    let expected = common::expected_counts(&d.input);
    let records = common::verify_counts(&expected, committed_counts(&output));
    assert_eq!(records, WORDS as u64);
    assert_group_at_end(&app, &input, 4);
    eprintln!(
        "{kills} kills in {} runs, {records} records read_committed, {:.1} s",
        runs + 1,
        started.elapsed().as_secs_f64()
    );
    assert!(
        kills >= 50,
        "only {kills} kills: all 32 parts ran out first"
    );
}

#[test]
fn a_second_process_with_the_same_instance_id_fences_the_first_which_commits_nothing_more() {
    let _one = one();
    use std::io::BufRead;
    const WORDS: usize = 200_000;
    let d = common::dirs(2, WORDS, 42);
    let Parts {
        files,
        input,
        output,
        app,
    } = first_part(&d, "fence");
    // The first instance runs until stopped (no --until-idle-ms).
    let mut a = common::KillOnDrop(
        wordcount_idle(&input, &output, &app, &d.state, None)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn first"),
    );
    // Read its log as it comes: a full pipe would stall it.
    let mut a_err = a.0.stderr.take().expect("stderr");
    let a_log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut a_err, &mut s);
        s
    });
    wait_for_group_at_end(&app, &input, &mut a);
    // The second process: same application, a new state directory
    // (restored from the changelog) that holds the first one's instance
    // id, as a copy of its state directory would, or its disk restored on
    // another machine while it still runs. Once it has started, it has
    // taken the first one's place in the group and fenced its producer.
    let tmp = tempfile::tempdir().expect("tempdir");
    let b_state = tmp.path().join("state");
    std::fs::create_dir(&b_state).expect("mkdir");
    std::fs::copy(d.state.join("instance"), b_state.join("instance")).expect("copy the id");
    let mut b = common::KillOnDrop(
        wordcount_idle(&input, &output, &app, &b_state, Some(4000))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn second"),
    );
    let mut b_err = std::io::BufReader::new(b.0.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.contains("rolled the state forward") {
        line.clear();
        assert!(
            b_err.read_line(&mut line).expect("read") > 0,
            "the second instance ended early"
        );
    }
    let drain = std::thread::spawn(move || std::io::copy(&mut b_err, &mut std::io::sink()));
    // Both read the second file; only the second instance may commit it.
    produce(&input, &files[1]);
    let status = a.0.wait().expect("first instance exits");
    let err = a_log.join().expect("log reader");
    assert_eq!(status.code(), Some(1), "the fenced instance fails: {err}");
    assert!(err.contains("fenced"), "{err}");
    assert!(b.0.wait().expect("second instance").success());
    let _ = drain.join();
    let expected = common::expected_counts(&d.input);
    let records = common::verify_counts(&expected, committed_counts(&output));
    assert_eq!(records, WORDS as u64);
    assert_group_at_end(&app, &input, 4);
}

#[test]
fn offsets_reset_starts_a_new_timeline_that_a_restore_from_the_changelog_follows() {
    let _one = one();
    const WORDS: usize = 100_000;
    let d = common::dirs(2, WORDS, 43);
    let Parts {
        files,
        input,
        output,
        app,
    } = first_part(&d, "reset");
    let run = |state: &std::path::Path| {
        common::assert_success(
            &wordcount(&input, &output, &app, state)
                .output()
                .expect("run"),
        )
    };
    run(&d.state);
    // Read the first file again, from a wiped state: a second timeline.
    let reset = std::process::Command::new(common::kafka::WC_BIN)
        .args([
            "offsets",
            "reset",
            "--to-earliest",
            "--reset-state",
            "--brokers",
        ])
        .arg(common::kafka::bootstrap())
        .args([
            "--input-topic",
            &input,
            "--output-topic",
            &output,
            "--application-id",
            &app,
        ])
        .arg("--state")
        .arg(&d.state)
        .output()
        .expect("reset");
    common::assert_success(&reset);
    run(&d.state);
    // A new machine: the state is restored from the changelog, where the
    // new timeline replaced the old one; the second file counts on from it.
    produce(&input, &files[1]);
    let fresh = tempfile::tempdir().expect("tempdir");
    run(&fresh.path().join("state"));

    let first = common::expected_counts_of(&[files[0].as_path()]);
    let all = common::expected_counts(&d.input);
    let mut seen = committed_counts(&output);
    for (word, n) in &all {
        let mut counts = seen.remove(word).unwrap_or_default();
        counts.sort_unstable();
        let mut want: Vec<u64> = (1..=first.get(word).copied().unwrap_or(0)).collect();
        want.extend(1..=*n);
        want.sort_unstable();
        assert_eq!(counts, want, "{word}");
    }
    assert!(
        seen.is_empty(),
        "{:?}",
        seen.keys().take(5).collect::<Vec<_>>()
    );
    assert_group_at_end(&app, &input, 4);
}

/// Issue 15, item 4: a transaction of the application left open with
/// positions in it (a process stopped or killed between adding its offsets
/// and committing them) would commit them over a reset. `offsets reset`
/// aborts the open transaction of an instance that its commits name, and
/// refuses while one that nothing names holds the group's offsets.
#[test]
fn offsets_reset_fences_or_refuses_a_transaction_left_open_with_positions() {
    let _one = one();
    const WORDS: usize = 20_000;
    let d = common::dirs(1, WORDS, 47);
    let Parts {
        input, output, app, ..
    } = first_part(&d, "zombie");
    common::assert_success(
        &wordcount(&input, &output, &app, &d.state)
            .output()
            .expect("run"),
    );
    let ended = common::kafka::group_offsets(&app, &input);
    let reset = |state: &std::path::Path| {
        std::process::Command::new(common::kafka::WC_BIN)
            .args(["offsets", "reset", "--to-earliest", "--reset-state"])
            .args(["--brokers", common::kafka::bootstrap()])
            .args(["--input-topic", &input, "--output-topic", &output])
            .args(["--application-id", &app])
            .arg("--state")
            .arg(state)
            .output()
            .expect("reset")
    };
    let other = tempfile::tempdir().expect("tempdir");
    let other = other.path().join("state");

    // A process that no commit names holds positions in an open
    // transaction: refused, nothing moved.
    let stranger = common::kafka::Zombie::open(&app, &format!("{app}-stranger"), &input, 1);
    let out = reset(&other);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "refused: {err}");
    assert!(
        err.contains("refused: an open transaction holds positions"),
        "{err}"
    );
    assert_eq!(common::kafka::group_offsets(&app, &input), ended);
    stranger.abort();

    // The instance that wrote the last positions, paused in its commit:
    // fenced, its transaction aborted, and the reset holds.
    let id = std::fs::read_to_string(d.state.join("instance")).expect("instance id");
    let paused = common::kafka::Zombie::open(&app, &format!("{app}-{}", id.trim()), &input, 1);
    let out = reset(&other);
    common::assert_success(&out);
    assert!(
        paused.commit().is_err(),
        "the paused instance's commit must be fenced"
    );
    let offsets = common::kafka::group_offsets(&app, &input);
    assert_eq!(offsets.len(), 4);
    assert!(
        offsets.values().all(|(c, _)| *c == Some(0)),
        "the reset holds: {offsets:?}"
    );
}

/// ARCHITECTURE §7: output partitioning is the Java clients', whatever the
/// guarantee, so that other Kafka applications can co-partition with it.
#[test]
fn every_output_record_sits_where_the_java_clients_put_its_key() {
    let _one = one();
    const PARTITIONS: u32 = 5;
    let d = common::dirs(1, 5_000, 17);
    let input = create_topic("words", 3);
    for part in common::input_files(&d) {
        produce(&input, &part);
    }
    let mut placed = Vec::new();
    for guarantee in ["exactly-once", "at-least-once"] {
        let output = create_topic("counts", PARTITIONS);
        let state = d._tmp.path().join(format!("state-{guarantee}"));
        let out = wordcount(&input, &output, &unique("placed"), &state)
            .args(["--set", &format!("guarantee={guarantee}")])
            .output()
            .expect("spawn");
        common::assert_success(&out);
        placed.push((guarantee, partitions_of_keys(&output)));
    }
    let keys: Vec<&String> = placed[0].1.keys().collect();
    assert!(keys.len() > 100, "{} words", keys.len());
    let java = java_partitions(&keys, PARTITIONS, d._tmp.path());
    for (guarantee, found) in &placed {
        for (key, partitions) in found {
            let expected = java.get(key).copied();
            assert!(
                expected.is_some_and(|p| partitions.len() == 1 && partitions.contains(&p)),
                "{guarantee}: `{key}` in partitions {partitions:?}, Kafka's producer puts it in {expected:?}"
            );
        }
    }
}
