//! A pipeline keyed twice (`kafka_top_words`: a count per word, then each
//! letter's top words) shared by three instances against the real broker,
//! while its input keeps coming: one is stopped (SIGSTOP) past its
//! session, so that the others take its shards over with a backlog of both
//! exchanges' records, then continued; then another is killed with
//! `kill -9` and started again. Read `read_committed`, the output holds
//! every letter's lists one occurrence apart, none repeated, skipped or
//! out of order, ending at the letter's true top words, as an independent
//! computation in this test has them.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::kafka::{
    bootstrap, committed_records, create_topic, produce, unique, wait_for_group_at_end,
    wait_for_members,
};
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

/// The partitions a member holding everything holds: the input's 4 and
/// the 8 shards of the repartition topic (`key_groups=16`).
const ALL_PARTITIONS: usize = 12;

#[test]
fn instances_of_a_pipeline_keyed_twice_keep_each_words_counts_in_order_through_hand_overs() {
    const WORDS: usize = 240_000;
    let seed = common::crash_seed();
    let tmp = tempfile::tempdir().expect("tempdir");
    let input_dir = tmp.path().join("in");
    make_input(&input_dir, 3, WORDS, seed);
    let part = |n: usize| input_dir.join(format!("part{n}.txt"));
    let input = create_topic("top-words-in", 4);
    let output = create_topic("top-words-out", 4);
    let app = unique("top-words");
    let state = |n: usize| tmp.path().join(format!("state-{n}"));
    let log = |n: usize| tmp.path().join(format!("instance-{n}.log"));
    let _traces: Vec<_> = (1..=3).map(|n| common::LogOnFailure(log(n))).collect();
    let spawn = |state: &Path, log: &Path| {
        common::KillOnDrop(
            top_words(&input, &output, &app, state, &[])
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).expect("log file"))
                .spawn()
                .expect("spawn"),
        )
    };
    let started = Instant::now();
    let mut instances: Vec<_> = (1..=3).map(|n| spawn(&state(n), &log(n))).collect();
    let members = |n: usize| {
        move |m: &[common::kafka::GroupMember]| {
            m.len() == n
                && m.iter().all(|m| m.partitions > 0)
                && m.iter().map(|m| m.partitions).sum::<usize>() == ALL_PARTITIONS
        }
    };
    wait_for_members(&app, &mut instances[0], members(3));
    produce(&input, &part(0));

    // Stopped past its session: the others take its partitions and its
    // shards, with what they sent them meanwhile, and read on.
    let pid = instances[1].0.id().to_string();
    common::run_ok(Command::new("kill").args(["-STOP", &pid]));
    produce(&input, &part(1));
    wait_for_members(&app, &mut instances[0], members(2));
    common::run_ok(Command::new("kill").args(["-CONT", &pid]));
    wait_for_members(&app, &mut instances[0], members(3));

    // Killed: the others take its share over; it comes back.
    let _ = instances[0].0.kill();
    let _ = instances[0].0.wait();
    produce(&input, &part(2));
    wait_for_members(&app, &mut instances[2], members(2));
    instances[0] = spawn(&state(1), &log(1));
    wait_for_members(&app, &mut instances[0], members(3));
    wait_for_group_at_end(&app, &input, &mut instances[0]);
    for p in &mut instances {
        common::run_ok(Command::new("kill").args(["-TERM", &p.0.id().to_string()]));
        assert!(p.0.wait().expect("wait").success());
    }
    eprintln!(
        "three instances, a stop and a kill in {:?}",
        started.elapsed()
    );

    // A letter's records are in one partition, in the order committed.
    let mut lists: BTreeMap<char, Vec<String>> = BTreeMap::new();
    for (letter, list) in committed_records(&output) {
        let letter = letter.chars().next().expect("a letter");
        lists.entry(letter).or_default().push(list);
    }
    let lines = verify(&input_dir, &lists);
    eprintln!("{lines} lists for {WORDS} words");
}
