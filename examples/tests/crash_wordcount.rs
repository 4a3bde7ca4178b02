//! Kills the real `wordcount` binary with `kill -9` at random moments, many
//! times, restarts it each time, and checks with an independent verifier
//! that the output holds every count 1..N exactly once (I1, I2, I3).

mod common;

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

#[test]
fn resumes_without_duplicates_or_loss_after_repeated_kill_9() {
    const WORDS: usize = 1_500_000;
    const KILLS: u32 = 50;
    let seed: u64 = std::env::var("WEIRDEV_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("seed {seed} (set WEIRDEV_CRASH_SEED to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let d = common::dirs(4, WORDS, seed);
    let started = Instant::now();
    let mut kills = 0u32;
    let mut runs = 0u32;
    let mut progress = Vec::new();
    loop {
        runs += 1;
        // Short epochs, so that kills land in every phase: processing,
        // flushing, fsync, the commit batch, recovery and start-up.
        let interval = rng.random_range(2..40u32);
        let mut cmd = common::wordcount(&["run"], &d);
        cmd.arg("--set")
            .arg(format!("checkpoint.interval_ms={interval}"));
        let mut child = common::spawn(cmd);
        if kills < KILLS {
            let delay = Duration::from_millis(rng.random_range(5..90));
            let status = match common::kill_9_at(&mut child, Instant::now() + delay) {
                common::Ending::Killed => {
                    kills += 1;
                    progress.push(common::output_bytes(&d.output));
                    continue;
                }
                // It ended before the random moment, or just as the kill came.
                common::Ending::Exited(status) => status,
            };
            let err = child.stderr.take().map(std::io::read_to_string);
            assert!(status.success(), "run failed: {status:?} {err:?}");
            // Finished before we could kill it: with fewer than KILLS
            // kills, start over on a fresh output to keep going.
            let lines = common::verify_exactly_once(&d.input, &d.output);
            assert!(lines as usize >= WORDS - 10);
            std::fs::remove_dir_all(&d.output).expect("reset output");
            std::fs::remove_dir_all(&d.state).expect("reset state");
            continue;
        }
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "final run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        break;
    }
    let lines = common::verify_exactly_once(&d.input, &d.output);
    eprintln!(
        "{kills} kills over {runs} runs, {lines} output lines for {WORDS} words, {:.1}s",
        started.elapsed().as_secs_f64()
    );
    eprintln!("output bytes after each kill: {progress:?}");
    assert_eq!(lines as usize, WORDS);
    assert!(kills >= KILLS);
}
