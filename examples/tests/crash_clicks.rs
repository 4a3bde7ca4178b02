//! Kills the real `attribute_clicks` binary (a stream-stream join within a
//! window of event time, clicks left, impressions right, from two
//! directories) with `kill -9` at random moments, many times, restarts it
//! each time, and compares its output with an independent computation:
//! every click with every impression of its ad and user within the
//! window exactly once, and every click without one exactly once with
//! none (I1, I2, I3).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ATTRIBUTE_CLICKS: &str = env!("CARGO_BIN_EXE_attribute_clicks");
const WINDOW_MS: i64 = 60_000;
const BASE_MS: i64 = 1_700_000_000_000;

/// A record of either side: id, ad, user, time.
type Event = (String, u32, u32, i64);

/// Writes `files` files of `count` events of `kind` (`click` or
/// `impression`) over 3000 s, each up to 2 s out of order within its file
/// (less than the pipeline's 5 s delay); returns them.
fn write_side(dir: &Path, kind: &str, files: usize, count: usize, rng: &mut StdRng) -> Vec<Event> {
    std::fs::create_dir_all(dir).expect("mkdir");
    let per_file = count / files;
    let step = 3_000_000 / per_file as i64;
    let mut all = Vec::new();
    for f in 0..files {
        let mut text = String::new();
        for i in 0..per_file {
            let id = format!("{kind}-{f}-{i}");
            let (ad, user) = (rng.random_range(0..20u32), rng.random_range(0..300u32));
            let ts = BASE_MS + i as i64 * step + rng.random_range(0..2_000);
            text.push_str(&format!(
                r#"{{"{kind}_id":"{id}","ad":"ad{ad}","user":"u{user}","ts":{ts}}}"#
            ));
            text.push('\n');
            all.push((id, ad, user, ts));
        }
        std::fs::write(dir.join(format!("{kind}s-{f}.json")), text).expect("write input");
    }
    all
}

/// Every `(click id, impression id or "-")` the join must write, counted.
fn expected(clicks: &[Event], impressions: &[Event]) -> HashMap<(String, String), u32> {
    let mut shown: HashMap<(u32, u32), Vec<(i64, &str)>> = HashMap::new();
    for (id, ad, user, ts) in impressions {
        shown.entry((*ad, *user)).or_default().push((*ts, id));
    }
    let mut want = HashMap::new();
    for (id, ad, user, ts) in clicks {
        let near: Vec<&str> = shown
            .get(&(*ad, *user))
            .into_iter()
            .flatten()
            .filter(|(t, _)| (t - ts).abs() <= WINDOW_MS)
            .map(|(_, i)| *i)
            .collect();
        if near.is_empty() {
            *want.entry((id.clone(), "-".to_owned())).or_insert(0) += 1;
        }
        for i in near {
            *want.entry((id.clone(), i.to_owned())).or_insert(0) += 1;
        }
    }
    want
}

/// What the output holds, counted the same way.
fn written(output: &Path) -> HashMap<(String, String), u32> {
    let mut got = HashMap::new();
    for entry in std::fs::read_dir(output).expect("list output") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read output");
        for line in text.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
            let click = v["click_id"].as_str().expect("a click id").to_owned();
            let shown = v["impression_id"].as_str().unwrap_or("-").to_owned();
            *got.entry((click, shown)).or_insert(0) += 1;
        }
    }
    got
}

/// Asserts that the output is exactly what the join must write.
fn verify(want: &HashMap<(String, String), u32>, output: &Path) -> usize {
    let got = written(output);
    let mut wrong = BTreeMap::new();
    for (pair, n) in want {
        let seen = got.get(pair).copied().unwrap_or(0);
        if seen != *n {
            wrong.insert(pair.clone(), (*n, seen));
        }
    }
    for (pair, seen) in &got {
        if !want.contains_key(pair) {
            wrong.insert(pair.clone(), (0, *seen));
        }
    }
    let shown: Vec<_> = wrong.iter().take(10).collect();
    assert!(
        wrong.is_empty(),
        "{} pairs written the wrong number of times (pair: (want, got)), e.g. {shown:?}",
        wrong.len()
    );
    got.values().map(|n| *n as usize).sum()
}

fn attribute_clicks(dir: &Path, interval: u32) -> Command {
    let mut c = Command::new(ATTRIBUTE_CLICKS);
    c.arg("run")
        .arg("--clicks")
        .arg(dir.join("clicks"))
        .arg("--impressions")
        .arg(dir.join("impressions"))
        .arg("--output")
        .arg(dir.join("out"))
        .arg("--state")
        .arg(dir.join("state"))
        .args(["--window-ms", &WINDOW_MS.to_string()])
        .arg("--set")
        .arg(format!("checkpoint.interval_ms={interval}"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    c
}

#[test]
fn a_windowed_join_writes_every_pair_once_after_repeated_kill_9() {
    const KILLS: u32 = 30;
    let seed = common::crash_seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let clicks = write_side(&dir.join("clicks"), "click", 2, 150_000, &mut rng);
    let impressions = write_side(&dir.join("impressions"), "impression", 2, 250_000, &mut rng);
    let want = expected(&clicks, &impressions);
    let lone = want.keys().filter(|(_, i)| i == "-").count();
    eprintln!(
        "{} pairs to write, {lone} clicks without an impression",
        want.len()
    );
    let started = Instant::now();
    let done = common::kill_9_at_random(
        KILLS,
        Duration::from_millis(400),
        &mut rng,
        &dir.join("out"),
        &dir.join("state"),
        |interval| attribute_clicks(dir, interval),
        || {
            verify(&want, &dir.join("out"));
        },
    );
    let lines = verify(&want, &dir.join("out"));
    eprintln!(
        "{} kills over {} runs, {lines} output lines, {:.1}s",
        done.kills,
        done.runs,
        started.elapsed().as_secs_f64()
    );
    eprintln!("output bytes after each kill: {:?}", done.progress);
    assert!(done.kills >= KILLS);
}
