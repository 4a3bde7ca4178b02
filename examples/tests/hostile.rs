//! Hostile use, as an adversarial new user tries it: the configuration
//! changed between runs, inputs replaced or rotated, two runs on one output,
//! broken pipes. Each must end in the right result (checked by the
//! independent verifier of `common`) or in a clear refusal, never in a
//! silent duplicate or loss.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{dirs, fails, run_ok, verify_exactly_once, wordcount, Dirs, KillOnDrop};

const SESSIONS: &str = env!("CARGO_BIN_EXE_sessions");

/// Item 1: the parallelism changes between a crash and the restart, down
/// and then up. The file of a worker that is no longer started must lose
/// its uncommitted tail too.
#[cfg(feature = "failpoints")]
#[test]
fn a_parallelism_change_after_a_crash_gives_the_output_of_an_uninterrupted_run() {
    let d = dirs(3, 600_000, 151);
    // Crash after the third epoch's output is fsynced, before it commits.
    common::crash_with(
        &d,
        &["run", "--set", "parallelism=2"],
        "after-sink-flush=2*off->return",
    );
    let c = common::inspect(&["latest"], &d.state).expect("a committed checkpoint");
    let tail = |name: &str| {
        let on_disk = std::fs::metadata(d.output.join(name)).map_or(0, |m| m.len());
        on_disk.saturating_sub(c.sinks.get(name).copied().unwrap_or(0))
    };
    assert!(
        tail("part-worker-1") > 0,
        "worker 1's file holds output past its committed length"
    );
    // Down to one worker: worker 1's file is no longer written.
    common::crash_with(
        &d,
        &["run", "--set", "parallelism=1"],
        "after-sink-flush=1*off->return",
    );
    let c = common::inspect(&["latest"], &d.state).expect("a committed checkpoint");
    let worker_1 = std::fs::metadata(d.output.join("part-worker-1")).map_or(0, |m| m.len());
    assert_eq!(
        Some(&worker_1),
        c.sinks.get("part-worker-1"),
        "recovery cut back the file no worker of the new run writes"
    );
    // And up to three.
    run_ok(
        wordcount(&["run", "--set", "parallelism=3"], &d)
            .args(["--set", "checkpoint.interval_ms=20"]),
    );
    let lines = verify_exactly_once(&d.input, &d.output);
    assert_eq!(lines, 600_000);
}

/// Waits until `path` exists (the first run has opened its output).
fn wait_for(path: &std::path::Path, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the first run ended before it opened {}",
            path.display()
        );
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Item 3: a second run on an output directory that a running instance
/// writes is refused, naming the holder, and the first one's output stays
/// exact.
#[test]
fn a_second_run_on_a_busy_output_directory_is_refused_naming_the_holder() {
    let d = dirs(2, 20_000, 153);
    let mut first = KillOnDrop(
        wordcount(&["run", "--set", "follow=true"], &d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    wait_for(&d.output.join("part-worker-0"), &mut first.0);
    let other_state = d._tmp.path().join("state-2");
    let (code, err) = fails(&mut common::wordcount_at(
        &["run"],
        &d.input,
        &d.output,
        &other_state,
    ));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("is being written by process")
            && err.contains(&first.0.id().to_string())
            && err.contains("--output"),
        "{err}"
    );
    // The first run goes on, reads everything (it follows the input, so
    // a stop before that would end it early, on a prefix) and ends exact.
    common::wait_for_committed_lines(&d, 20_000, &mut first.0);
    let pid = first.0.id().to_string();
    run_ok(Command::new("kill").args(["-TERM", &pid]));
    let status = first.0.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    verify_exactly_once(&d.input, &d.output);
}

/// Item 3: an output inside the input (or the input itself), and two sinks
/// on one directory, are refused before anything is written.
#[test]
fn an_output_inside_the_input_and_two_sinks_on_one_directory_are_refused() {
    let d = dirs(1, 1_000, 154);
    for output in [d.input.clone(), d.input.join("out")] {
        let (code, err) = fails(&mut common::wordcount_at(
            &["run"],
            &d.input,
            &output,
            &d.state,
        ));
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("would read its own output"), "{err}");
    }
    assert_eq!(
        std::fs::read_dir(&d.input).expect("ls").count(),
        1,
        "nothing was written into the input"
    );
    let (code, err) = fails(
        Command::new(SESSIONS)
            .args(["run", "--input"])
            .arg(&d.input)
            .arg("--output")
            .arg(&d.output)
            .arg("--set")
            .arg(format!("late_output={:?}", d.output.display().to_string()))
            .arg("--state")
            .arg(d._tmp.path().join("sessions-state")),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("both write to"), "{err}");
}

/// Item 5: listings whose reader has gone (`| head`) end quietly, and a run
/// whose standard error cannot be written still runs to an exact end.
#[test]
fn broken_pipes_and_a_full_stderr_neither_panic_nor_stop_a_run() {
    let d = dirs(2, 20_000, 155);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = wordcount(&["run", "--set", "checkpoint.retain_every=1"], &d)
        .env("RUST_LOG", "debug")
        .stderr(full)
        .output()
        .expect("spawn");
    assert!(out.status.success(), "{:?}", out.status);
    verify_exactly_once(&d.input, &d.output);

    for args in [
        &["checkpoints", "list", "--state"][..],
        &["state", "dump", "--state"][..],
        &["checkpoints", "inspect", "latest", "--state"][..],
    ] {
        let mut child = Command::new(common::WORDCOUNT)
            .args(args)
            .arg(&d.state)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // The reader is gone before the first line is written.
        drop(child.stdout.take());
        let mut err = String::new();
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err)
            .expect("read stderr");
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// Item 2: between runs, an input file is replaced by a new, longer one
/// (another inode), or truncated and rewritten in place (the same inode):
/// the next run refuses to read it from the old position, naming the file
/// and the choices, and the output stays as it was.
#[test]
fn a_replaced_or_rewritten_input_file_is_refused_on_resume() {
    let d = dirs(2, 2_000, 156);
    run_ok(&mut wordcount(&["run"], &d));
    let before = common::sorted_lines(&d.output);
    let a = common::input_files(&d)[0].clone();
    let longer = format!(
        "a brand new first line\n{}",
        "more words here\n".repeat(2_000)
    );

    // Rewritten in place (`>` keeps the inode), longer than before.
    std::fs::write(&a, &longer).expect("rewrite");
    let (code, err) = fails(&mut wordcount(&["run"], &d));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&a.display().to_string())
            && err.contains("its first lines changed")
            && err.contains("offsets reset")
            && err.contains("replay --from"),
        "{err}"
    );

    // Replaced: written aside and renamed over it.
    let aside = d._tmp.path().join("new.txt");
    std::fs::write(&aside, format!("{longer}{longer}")).expect("write");
    std::fs::rename(&aside, &a).expect("rename");
    let (code, err) = fails(&mut wordcount(&["run"], &d));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("another file has its name now"), "{err}");
    assert_eq!(
        common::sorted_lines(&d.output),
        before,
        "nothing was written"
    );
}

/// Item 2, follow mode: a file rotated by rename-and-create is read to its
/// end through the open handle, then the new file from its start; a file
/// rotated by copytruncate is read again from its start. Every line is
/// counted once; a restart resumes in the new file.
#[test]
fn follow_mode_reads_through_rename_and_copytruncate_rotations() {
    use std::io::Write;
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = Dirs {
        input: tmp.path().join("in"),
        output: tmp.path().join("out"),
        state: tmp.path().join("state"),
        _tmp: tmp,
    };
    let rotated = d._tmp.path().join("rotated");
    std::fs::create_dir_all(&d.input).expect("mkdir");
    std::fs::create_dir_all(&rotated).expect("mkdir");
    let log = d.input.join("app.log");
    let lines = |tag: &str, n: usize| -> String {
        (0..n)
            .map(|i| format!("{tag}{} common\n", i % 50))
            .collect()
    };
    let mut writer = std::fs::File::create(&log).expect("create");
    writer.write_all(lines("a", 300).as_bytes()).expect("write");
    let mut run = KillOnDrop(
        wordcount(
            &[
                "run",
                "--set",
                "follow=true",
                "--set",
                "checkpoint.interval_ms=50",
            ],
            &d,
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn"),
    );
    common::wait_for_lines(&d, 600, &mut run.0);

    // Rename-and-create: the writer still appends to the renamed file once.
    std::fs::rename(&log, rotated.join("app.log.1")).expect("rename");
    writer.write_all(lines("b", 100).as_bytes()).expect("write");
    drop(writer);
    std::fs::write(&log, lines("c", 200)).expect("create anew");
    common::wait_for_lines(&d, 1200, &mut run.0);

    // Copytruncate: copied aside, then truncated and written again.
    std::fs::copy(&log, rotated.join("app.log.2")).expect("copy");
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .expect("truncate");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open")
        .write_all(lines("d", 150).as_bytes())
        .expect("write");
    common::wait_for_lines(&d, 1500, &mut run.0);
    let pid = run.0.id().to_string();
    run_ok(Command::new("kill").args(["-TERM", &pid]));
    assert!(run.0.wait().expect("wait").success());

    let mut expected =
        common::expected_counts_of(&[&rotated.join("app.log.1"), &rotated.join("app.log.2")]);
    for (w, n) in common::expected_counts_of(&[&log]) {
        *expected.entry(w).or_insert(0) += n;
    }
    // The copy holds the c lines, the live file the d lines: each once.
    let total = common::verify_counts(&expected, common::output_counts(&d.output));
    assert_eq!(total, 1500);
    // A restart resumes in the file now under the name: nothing more.
    run_ok(&mut wordcount(&["run"], &d));
    assert_eq!(
        common::verify_counts(&expected, common::output_counts(&d.output)),
        1500
    );
    // Rotated inside the input directory while no run reads it: the renamed
    // file resumes where it was (nothing again), the new one from its start.
    std::fs::rename(&log, d.input.join("app.log.3")).expect("rename");
    std::fs::write(&log, lines("e", 100)).expect("create anew");
    run_ok(&mut wordcount(&["run"], &d));
    for (w, n) in common::expected_counts_of(&[&log]) {
        *expected.entry(w).or_insert(0) += n;
    }
    assert_eq!(
        common::verify_counts(&expected, common::output_counts(&d.output)),
        1700
    );
}

/// Item 8: a damaged state directory (CURRENT overwritten, the MANIFEST
/// truncated, a table file gone) is named as damaged, every restart says so
/// again, and `replay --from` a retained checkpoint rebuilds it: the output
/// is then exactly once again.
#[test]
fn a_damaged_state_directory_is_named_and_replay_restores_it() {
    type Damage = fn(&std::path::Path);
    let damages: [(&str, Damage); 3] = [
        ("CURRENT overwritten", |db| {
            std::fs::write(db.join("CURRENT"), b"MANIFEST-00").expect("damage");
        }),
        ("MANIFEST truncated", |db| {
            let manifest = files_of(db, "MANIFEST-").remove(0);
            std::fs::OpenOptions::new()
                .write(true)
                .open(manifest)
                .and_then(|f| f.set_len(20))
                .expect("damage");
        }),
        ("a table file removed", |db| {
            std::fs::remove_file(files_of(db, ".sst").remove(0)).expect("damage");
        }),
    ];
    for (i, (what, damage)) in damages.into_iter().enumerate() {
        let d = dirs(2, 200_000, 158 + i as u64 * 100);
        run_ok(wordcount(&["run"], &d).args([
            "--set",
            "checkpoint.interval_ms=5",
            "--set",
            "checkpoint.retain_every=2",
            "--set",
            "checkpoint.retain_count=50",
        ]));
        let first = common::first_retained(&d.state);
        damage(&d.state.join("db"));
        for _ in 0..2 {
            let (code, err) = fails(&mut wordcount(&["run"], &d));
            assert_eq!(code, Some(1), "{what}: {err}");
            assert!(
                err.contains("cannot be read") && err.contains("replay --from"),
                "{what}: {err}"
            );
        }
        let out = wordcount(&["replay", "--from", &first], &d)
            .output()
            .expect("spawn");
        common::assert_success(&out);
        verify_exactly_once(&d.input, &d.output);
    }
}

/// The files of `dir` whose names contain `part`, in name order.
fn files_of(dir: &std::path::Path, part: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(part))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no {part} file in {}", dir.display());
    files
}

/// Items 9 and 10: read-only commands on a mistyped path, or naming a state
/// that is not there, fail naming it; a run on an input that does not
/// exist leaves no state directory behind.
#[test]
fn mistyped_paths_and_names_fail_and_leave_nothing_behind() {
    let d = dirs(1, 1_000, 159);
    let typo = d._tmp.path().join("stat");
    for args in [
        &["checkpoints", "list"][..],
        &["state", "dump"][..],
        &["checkpoints", "inspect", "latest"][..],
    ] {
        let (code, err) = fails(
            Command::new(common::WORDCOUNT)
                .args(args)
                .arg("--state")
                .arg(&typo),
        );
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains("does not exist"), "{args:?}: {err}");
    }
    run_ok(&mut wordcount(&["run"], &d));
    let (code, err) = fails(
        Command::new(common::WORDCOUNT)
            .args(["state", "dump", "--store", "cuont", "--state"])
            .arg(&d.state),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("no state called `cuont`") && err.contains("count"),
        "{err}"
    );

    let fresh = d._tmp.path().join("fresh-state");
    let (code, err) = fails(&mut common::wordcount_at(
        &["run"],
        &d._tmp.path().join("no-such-input"),
        &d._tmp.path().join("fresh-out"),
        &fresh,
    ));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no-such-input"), "{err}");
    assert!(
        !fresh.exists(),
        "a failed first run created its state directory"
    );
}

/// Item 6: configuration typos, from each place a key can come from, are
/// refused naming the nearest key; bad values are named in words; `--help`
/// lists the keys and `config show` says where each value came from.
#[test]
fn configuration_typos_are_refused_and_the_configuration_can_be_shown() {
    let d = dirs(1, 1_000, 160);
    let file = d._tmp.path().join("weir.toml");
    std::fs::write(&file, "gaurantee = \"at-most-once\"\n").expect("write");
    let mut with_file = wordcount(&["run"], &d);
    with_file.arg("--config").arg(&file);
    let mut with_env = wordcount(&["run"], &d);
    with_env.env("WEIR_CHECKPOINT__INTERVALMS", "5");
    let cases: [(&mut Command, &str, &str); 4] = [
        (
            &mut wordcount(&["run", "--set", "nosuchkey=5"], &d),
            "`nosuchkey`",
            "command line",
        ),
        (&mut with_file, "did you mean `guarantee`", "weir.toml"),
        (
            &mut with_env,
            "did you mean `checkpoint.interval_ms`",
            "WEIR_CHECKPOINT__INTERVALMS",
        ),
        (
            &mut wordcount(
                &[
                    "run",
                    "--set",
                    "checkpoint.interval_ms=18446744073709551615",
                ],
                &d,
            ),
            "takes a whole number of milliseconds",
            "command line",
        ),
    ];
    for (cmd, says, from) in cases {
        let (code, err) = fails(cmd);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains(says) && err.contains(from), "{err}");
        assert!(!err.contains(".rs:") && !err.contains("toml::"), "{err}");
    }
    assert!(
        !d.state.exists(),
        "a refused configuration created the state directory"
    );

    let help = Command::new(common::WORDCOUNT)
        .args(["run", "--help"])
        .output()
        .expect("spawn");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("checkpoint.interval_ms")
            && help.contains("default: 1000")
            && help.contains("follow"),
        "{help}"
    );
    let out = wordcount(&["config", "show", "--set", "parallelism=3"], &d)
        .env("WEIR_CHECKPOINT__RETAIN_EVERY", "4")
        .output()
        .expect("spawn");
    common::assert_success(&out);
    let shown = String::from_utf8_lossy(&out.stdout);
    for line in [
        "parallelism = 3  # on the command line",
        "checkpoint.retain_every = 4  # from the environment variable WEIR_CHECKPOINT__RETAIN_EVERY",
        "checkpoint.interval_ms = 1000  # the default",
    ] {
        assert!(shown.contains(line), "{line} in {shown}");
    }
}

/// Items 7 and 11: `follow` can be switched between runs (it is not part of
/// the fingerprint), and a SIGTERM during recovery ends the run cleanly.
#[test]
fn follow_can_be_switched_between_runs_and_sigterm_during_recovery_is_clean() {
    use std::io::BufRead;
    let d = dirs(2, 20_000, 161);
    run_ok(&mut wordcount(&["run"], &d));
    let mut run = KillOnDrop(
        wordcount(&["run", "--set", "follow=true"], &d)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    let stderr = run.0.stderr.take().expect("stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut log = String::new();
    for line in lines.by_ref() {
        let line = line.expect("read");
        log.push_str(&line);
        log.push('\n');
        if line.contains("recovering from checkpoint") {
            break;
        }
    }
    assert!(log.contains("recovering from checkpoint"), "{log}");
    let pid = run.0.id().to_string();
    run_ok(Command::new("kill").args(["-TERM", &pid]));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = run.0.wait().expect("wait");
    assert!(status.success(), "{status:?}: {log}{}", rest.join("\n"));
    assert!(
        rest.iter().any(|l| l.contains("shutdown requested")),
        "{}",
        rest.join("\n")
    );
    verify_exactly_once(&d.input, &d.output);
}

/// Item 11: the smaller refusals: the sessions pipeline's impossible gaps,
/// and a dead-letter sink that `on_bad_input` would never use.
#[test]
fn impossible_options_are_refused() {
    let d = dirs(1, 1_000, 162);
    for gap in ["0", "-1"] {
        let (code, err) = fails(
            Command::new(SESSIONS)
                .args(["run", &format!("--gap-ms={gap}"), "--input"])
                .arg(&d.input)
                .arg("--output")
                .arg(&d.output)
                .arg("--state")
                .arg(&d.state),
        );
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains("--gap-ms") && err.contains("at least 1"),
            "{err}"
        );
    }
    let (code, err) = fails(
        Command::new(env!("CARGO_BIN_EXE_kafka_wordcount"))
            .args([
                "run",
                "--brokers",
                "127.0.0.1:1",
                "--input-topic",
                "in",
                "--output-topic",
                "out",
                "--application-id",
                "app",
                "--dead-letter-topic",
                "dead",
                "--state",
            ])
            .arg(&d.state),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("on_bad_input is `fail`") && err.contains("dead-letter"),
        "{err}"
    );
}

/// Items 10 and 11 on the real broker: a first run against a missing input
/// topic leaves neither a state directory nor a changelog topic behind, and
/// a missing dead-letter topic is named as the dead-letter topic.
#[test]
fn missing_kafka_topics_are_named_and_leave_nothing_behind() {
    use common::kafka::{bootstrap, create_topic, tool, unique, wordcount as kafka_wordcount};
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let app = unique("hostile");
    let output = create_topic("hostile-out", 1);
    let missing = unique("no-such-input");
    let (code, err) = fails(&mut kafka_wordcount(&missing, &output, &app, &state));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("topic `{missing}` does not exist")) && err.contains("--input-topic"),
        "{err}"
    );
    assert!(
        !state.exists(),
        "a failed first run created its state directory"
    );
    let topics = tool(
        &["kafka-topics", "--bootstrap-server", bootstrap(), "--list"],
        None,
    );
    assert!(
        !topics.contains(&format!("{app}-changelog")),
        "a failed first run created its changelog"
    );

    let input = create_topic("hostile-in", 1);
    let dead = unique("no-such-dead-letters");
    let (code, err) = fails(kafka_wordcount(&input, &output, &app, &state).args([
        "--dead-letter-topic",
        &dead,
        "--set",
        "on_bad_input=dead-letter",
    ]));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("dead-letter topic `{dead}` does not exist"))
            && err.contains("--dead-letter-topic"),
        "{err}"
    );
    assert!(
        !state.exists(),
        "a failed first run created its state directory"
    );
}

/// Item 11: a symbolic link to a file in the input directory is read like
/// the file; a directory in it is skipped with a log line saying why.
#[test]
fn symlinked_inputs_are_read_and_skipped_entries_are_logged() {
    let d = dirs(1, 2_000, 163);
    let outside = d._tmp.path().join("elsewhere.txt");
    std::fs::write(&outside, "linked words here\nlinked again\n").expect("write");
    std::os::unix::fs::symlink(&outside, d.input.join("link.txt")).expect("symlink");
    std::fs::create_dir_all(d.input.join("archive")).expect("mkdir");
    let out = wordcount(&["run"], &d)
        .env("RUST_LOG", "info")
        .output()
        .expect("spawn");
    common::assert_success(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("skipping an input entry that is not a regular file")
            && err.contains("archive"),
        "{err}"
    );
    std::fs::remove_dir(d.input.join("archive")).expect("rmdir");
    // The verifier reads the link as the file it points to.
    verify_exactly_once(&d.input, &d.output);
    let counts = common::output_counts(&d.output);
    assert_eq!(counts.get("linked").map(Vec::len), Some(2));
}

/// Items 3 and 4 on the real broker: while another consumer is an active
/// member of the application's group (here Kafka's own console consumer),
/// a run, a replay and `offsets reset` are refused, naming it; once it has
/// left, the run goes ahead.
#[test]
fn a_run_and_an_offsets_reset_are_refused_while_the_group_has_an_active_member() {
    use common::kafka::{bootstrap, create_topic, dev_kafka, unique, BIN};
    let d = dirs(1, 1_000, 164);
    let topic = create_topic("hostile-group", 2);
    let app = unique("hostile-group-app");
    let mut member = KillOnDrop(
        Command::new(dev_kafka())
            .args(["tool", "kafka-console-consumer", "--bootstrap-server"])
            .args([bootstrap(), "--topic", &topic, "--group", &app])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the console consumer"),
    );
    // Kafka's own tool is the witness that the member has joined.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let described = Command::new(dev_kafka())
            .args(["tool", "kafka-consumer-groups", "--bootstrap-server"])
            .args([bootstrap(), "--describe", "--members", "--group", &app])
            .stdin(Stdio::null())
            .output()
            .expect("kafka-consumer-groups");
        if String::from_utf8_lossy(&described.stdout).contains("console-consumer") {
            break;
        }
        assert!(
            member.0.try_wait().expect("poll").is_none(),
            "the console consumer exited"
        );
        assert!(
            Instant::now() < deadline,
            "the console consumer never joined"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let to_files = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(args)
            .args(["--brokers", bootstrap(), "--input-topic", &topic])
            .args(["--application-id", &app, "--until-idle-ms", "500"])
            .arg("--output")
            .arg(&d.output)
            .arg("--state")
            .arg(&d.state)
            .env("RUST_LOG", "warn");
        c
    };
    for args in [
        &["run"][..],
        &["offsets", "reset", "--to-earliest", "--keep-state"][..],
        &["replay", "--from", "1"][..],
    ] {
        let (code, err) = fails(&mut to_files(args));
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(
            err.contains("refused") && err.contains("console-consumer") && err.contains(&app),
            "{args:?}: {err}"
        );
    }
    assert!(
        !d.state.exists(),
        "a refused run created its state directory"
    );
    // The member leaves when its process ends cleanly.
    let pid = member.0.id().to_string();
    run_ok(Command::new("kill").args(["-TERM", &pid]));
    let _ = member.0.wait();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = to_files(&["run"]).output().expect("spawn");
        if out.status.success() {
            break;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("console-consumer"), "{err}");
        assert!(Instant::now() < deadline, "the member never left: {err}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// An epoch longer than a Kafka transaction may stay open (the broker
/// aborts one past its `transaction.max.timeout.ms`, 15 min by default)
/// would have every epoch aborted: an exactly-once Kafka run refuses it at
/// start, naming the longest that fits, before it creates anything.
#[test]
fn an_epoch_longer_than_a_kafka_transaction_may_stay_open_is_refused() {
    use common::kafka::{create_topic, wordcount_idle};
    let topic = create_topic("hostile-epoch", 1);
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let mut cmd = wordcount_idle(&topic, &topic, "hostile-epoch-app", &state, Some(500));
    let (code, err) = fails(cmd.args(["--set", "checkpoint.interval_ms=600000"]));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("checkpoint.interval_ms") && err.contains("at most 445000"),
        "{err}"
    );
    assert!(!state.exists(), "a refused run created its state directory");
}
