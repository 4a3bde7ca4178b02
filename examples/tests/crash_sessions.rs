//! Kills the real `sessions` binary (event-time timers in state) at random
//! moments, restarts it, and checks the sessions against an independent
//! computation: every session exactly once.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

const SESSIONS: &str = env!("CARGO_BIN_EXE_sessions");
const GAP: i64 = 1_000;

#[test]
fn sessions_are_emitted_exactly_once_across_kills() {
    let seed: u64 = rand::rng().random();
    eprintln!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().expect("tmp");
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    let mut events: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for f in 0..3 {
        let mut t = 0i64;
        let mut text = String::new();
        for _ in 0..100_000 {
            // Mostly small steps, sometimes a long pause: sessions form.
            t += if rng.random_ratio(1, 50) {
                rng.random_range(1..5_000)
            } else {
                rng.random_range(1..40)
            };
            let user = format!("u{}", rng.random_range(0..300));
            text.push_str(&format!("{t} {user} view\n"));
            events.entry(user).or_default().push(t);
        }
        std::fs::write(input.join(format!("events{f}.log")), text).expect("write");
    }
    // The independent expectation: split each user's sorted events where
    // the gap to the previous one exceeds GAP.
    let mut expected = Vec::new();
    for (user, mut ts) in events {
        ts.sort_unstable();
        let (mut start, mut end, mut n) = (ts[0], ts[0], 0u64);
        for t in ts {
            if t - end > GAP {
                expected.push(format!("{user}\t{start}\t{end}\t{n}"));
                start = t;
                n = 0;
            }
            end = t;
            n += 1;
        }
        expected.push(format!("{user}\t{start}\t{end}\t{n}"));
    }
    expected.sort();

    let output = tmp.path().join("out");
    let state = tmp.path().join("state");
    let cmd = || {
        let mut c = Command::new(SESSIONS);
        c.args([
            "run",
            "--gap-ms",
            &GAP.to_string(),
            "--set",
            "checkpoint.interval_ms=5",
            "--input",
        ])
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .arg("--state")
        .arg(&state)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        c
    };
    let mut kills = 0;
    while kills < 15 {
        let mut child = common::KillOnDrop(cmd().spawn().expect("spawn"));
        let at = Instant::now() + Duration::from_millis(rng.random_range(5..60));
        let common::Ending::Exited(status) = common::kill_9_at(&mut child.0, at) else {
            kills += 1;
            continue;
        };
        assert!(status.success(), "a run failed: {status}");
        break;
    }
    let status = cmd().status().expect("final run");
    assert!(status.success());
    let got = common::sorted_lines(&output);
    eprintln!("{kills} kills, {} sessions", got.len());
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "sessions differ");
}
