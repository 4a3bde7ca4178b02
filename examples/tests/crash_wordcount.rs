//! Kills the real `wordcount` binary with `kill -9` at random moments, many
//! times, restarts it each time, and checks with an independent verifier
//! that the output holds every count 1..N exactly once (I1, I2, I3).

mod common;

use std::time::{Duration, Instant};

use rand::SeedableRng;

#[test]
fn resumes_without_duplicates_or_loss_after_repeated_kill_9() {
    const WORDS: usize = 1_500_000;
    const KILLS: u32 = 50;
    let seed = common::crash_seed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let d = common::dirs(4, WORDS, seed);
    let started = Instant::now();
    let done = common::kill_9_at_random(
        KILLS,
        Duration::from_millis(90),
        &mut rng,
        &d.output,
        &d.state,
        |interval| {
            let mut cmd = common::wordcount(&["run"], &d);
            cmd.arg("--set")
                .arg(format!("checkpoint.interval_ms={interval}"));
            cmd
        },
        || {
            let lines = common::verify_exactly_once(&d.input, &d.output);
            assert!(lines as usize >= WORDS - 10);
        },
    );
    let lines = common::verify_exactly_once(&d.input, &d.output);
    eprintln!(
        "{} kills over {} runs, {lines} output lines for {WORDS} words, {:.1}s",
        done.kills,
        done.runs,
        started.elapsed().as_secs_f64()
    );
    eprintln!("output bytes after each kill: {:?}", done.progress);
    assert_eq!(lines as usize, WORDS);
    assert!(done.kills >= KILLS);
}
