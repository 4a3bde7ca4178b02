//! A pipeline keyed twice (`kafka_top_words`: a count per word, then each
//! letter's top words) against the real broker: a second instance is
//! refused while the first runs, and killed with `kill -9` again and again
//! the first one's output, read `read_committed`, holds every letter's
//! lists one occurrence apart, none repeated or skipped, ending at the
//! letter's true top words, as an independent computation in this test has
//! them.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use rand::SeedableRng;

use common::kafka::{bootstrap, committed_records, create_topic, produce, unique};
use common::top::{make_input, verify};

const KAFKA_TOP_WORDS: &str = env!("CARGO_BIN_EXE_kafka_top_words");

/// `kafka_top_words` from `input` to `output` as `app`, with state in
/// `state`; `extra` arguments last.
fn top_words(input: &str, output: &str, app: &str, state: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(KAFKA_TOP_WORDS);
    c.arg("run")
        .args(["--brokers", bootstrap()])
        .args(["--input-topic", input])
        .args(["--output-topic", output])
        .args(["--application-id", app])
        .args(["--set", "checkpoint.interval_ms=100"])
        .args(["--set", "key_groups=16"])
        .arg("--state")
        .arg(state)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    c
}

#[test]
fn a_pipeline_keyed_twice_runs_as_one_instance_exactly_once_across_kill_9() {
    const WORDS: usize = 300_000;
    const KILLS: usize = 6;
    let seed = common::crash_seed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let input_dir = tmp.path().join("in");
    make_input(&input_dir, 1, WORDS, seed);
    let input = create_topic("top-words-in", 4);
    let output = create_topic("top-words-out", 4);
    let app = unique("top-words");
    produce(&input, &input_dir.join("part0.txt"));
    let state = tmp.path().join("state");

    // The first instance runs; a second, on its own state, is refused.
    let mut first = common::KillOnDrop(
        top_words(&input, &output, &app, &state, &[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    common::kafka::wait_for_members(&app, &mut first, |m| !m.is_empty());
    let (code, err) = common::fails(&mut top_words(
        &input,
        &output,
        &app,
        &tmp.path().join("state-2"),
        &["--until-idle-ms", "1000"],
    ));
    assert_ne!(code, Some(0), "a second instance ran: {err}");
    assert!(err.contains("run refused"), "{err}");
    assert!(
        first.0.try_wait().expect("poll").is_none(),
        "the first stopped"
    );
    drop(first);

    let log = tmp.path().join("kafka_top_words.log");
    let started = Instant::now();
    common::kill_9_repeatedly(KILLS, &mut rng, &log, || {
        top_words(&input, &output, &app, &state, &[])
    });
    common::run_ok(&mut top_words(
        &input,
        &output,
        &app,
        &state,
        &["--until-idle-ms", "3000"],
    ));
    eprintln!("{KILLS} kills in {:?}", started.elapsed());

    // A letter's records are in one partition, in the order written.
    let mut lists: BTreeMap<char, Vec<String>> = BTreeMap::new();
    for (letter, list) in committed_records(&output) {
        let letter = letter.chars().next().expect("a letter");
        lists.entry(letter).or_default().push(list);
    }
    let lines = verify(&input_dir, &lists);
    eprintln!("{lines} lists for {WORDS} words");
}
