//! Kills the real `top_words` binary (a count per word, keyed again by
//! first letter for each letter's top words: two exchanges) with `kill -9`
//! at random moments, many times, restarts it each time, and checks with
//! an independent verifier that every letter's lists follow one another
//! one occurrence at a time, with none repeated or skipped, and end at the
//! letter's true top words (I1, I2, I3).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::top::{file_lists, make_input, verify};
use rand::rngs::StdRng;
use rand::SeedableRng;

const TOP_WORDS: &str = env!("CARGO_BIN_EXE_top_words");

fn top_words(input: &Path, output: &Path, state: &Path, interval: u32) -> Command {
    let mut c = Command::new(TOP_WORDS);
    c.arg("run")
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .arg("--state")
        .arg(state)
        .arg("--set")
        .arg(format!("checkpoint.interval_ms={interval}"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    c
}

#[test]
fn two_exchanges_resume_without_duplicates_or_loss_after_repeated_kill_9() {
    const WORDS: usize = 2_000_000;
    const KILLS: u32 = 30;
    let seed = common::crash_seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let (input, output, state) = (
        tmp.path().join("in"),
        tmp.path().join("out"),
        tmp.path().join("state"),
    );
    make_input(&input, 4, WORDS, seed);
    let started = Instant::now();
    let done = common::kill_9_at_random(
        KILLS,
        Duration::from_millis(400),
        &mut rng,
        &output,
        &state,
        |interval| top_words(&input, &output, &state, interval),
        || {
            verify(&input, &file_lists(&output));
        },
    );
    let lines = verify(&input, &file_lists(&output));
    eprintln!(
        "{} kills over {} runs, {lines} output lines for {WORDS} words, {:.1}s",
        done.kills,
        done.runs,
        started.elapsed().as_secs_f64()
    );
    eprintln!("output bytes after each kill: {:?}", done.progress);
    assert!(done.kills >= KILLS);
}
