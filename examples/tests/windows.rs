//! Kills the real `page_views_files` binary (windows in event time: state
//! per window, timers that close them) at random moments, restarts it,
//! and checks the windows against an independent computation; and shows
//! that a quiet input file does not hold windows open, and where late
//! views go.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

const PAGE_VIEWS: &str = env!("CARGO_BIN_EXE_page_views_files");
const WINDOW: i64 = 10_000;

/// `(page, window_start)` -> `(views, users)`, from the output's JSON lines.
type Windows = BTreeMap<(String, i64), (u64, u64)>;

fn read_windows(dir: &Path) -> Windows {
    let mut got = Windows::new();
    for line in common::sorted_lines(dir) {
        let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        let page = v["page"].as_str().expect("page").to_owned();
        let start = v["window_start"].as_i64().expect("start");
        assert_eq!(v["window_end"].as_i64(), Some(start + WINDOW), "{line}");
        let counts = (
            v["views"].as_u64().expect("views"),
            v["users"].as_u64().expect("users"),
        );
        assert!(
            got.insert((page, start), counts).is_none(),
            "a window written twice: {line}"
        );
    }
    got
}

fn view(page: &str, user: &str, ts: i64) -> String {
    format!("{{\"page\":\"{page}\",\"user\":\"{user}\",\"ts\":{ts}}}\n")
}

fn page_views(input: &Path, output: &Path, state: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(PAGE_VIEWS);
    c.arg("run")
        .args(["--window-ms", &WINDOW.to_string(), "--grace-ms", "3000"])
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .arg("--state")
        .arg(state)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    c
}

#[test]
fn every_window_is_written_once_with_exact_counts_across_kills() {
    let seed: u64 = rand::rng().random();
    eprintln!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().expect("tmp");
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    // The independent expectation: per page and window, the views and the
    // set of users.
    let mut expected: BTreeMap<(String, i64), (u64, BTreeSet<String>)> = BTreeMap::new();
    for f in 0..3 {
        let mut t = 0i64;
        let mut text = String::new();
        for i in 0..40_000 {
            t += rng.random_range(0..10);
            // Out of order, within the grace (3 s).
            let ts = (t - rng.random_range(0..2_500)).max(0);
            let page = format!("/p{}", rng.random_range(0..20));
            let user = format!("u{}", rng.random_range(0..500));
            text.push_str(&view(&page, &user, ts));
            let e = expected.entry((page, ts - ts % WINDOW)).or_default();
            e.0 += 1;
            e.1.insert(user);
            if f == 1 && i == 20_000 {
                text.push_str("{\"page\": 7}\n");
            }
        }
        std::fs::write(input.join(format!("views{f}.json")), text).expect("write");
    }
    let expected: Windows = expected
        .into_iter()
        .map(|(k, (views, users))| (k, (views, users.len() as u64)))
        .collect();
    let (output, state) = (tmp.path().join("out"), tmp.path().join("state"));
    let cmd = || {
        let mut c = page_views(
            &input,
            &output,
            &state,
            &[
                "--set",
                "checkpoint.interval_ms=5",
                "--set",
                "on_bad_input=skip",
            ],
        );
        c.stderr(Stdio::null());
        c
    };
    let mut kills = 0;
    while kills < 15 {
        let mut child = common::KillOnDrop(cmd().spawn().expect("spawn"));
        let at = Instant::now() + Duration::from_millis(rng.random_range(10..300));
        let common::Ending::Exited(status) = common::kill_9_at(&mut child.0, at) else {
            kills += 1;
            continue;
        };
        assert!(status.success(), "a run failed: {status}");
        break;
    }
    assert!(cmd().status().expect("final run").success());
    let got = read_windows(&output);
    eprintln!("{kills} kills, {} windows", got.len());
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "windows differ");
}

#[test]
fn a_quiet_file_stops_holding_windows_open_after_the_idle_time() {
    let tmp = tempfile::tempdir().expect("tmp");
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    // `busy` runs to 35 s of event time; `quiet` has one view at 0 and then
    // nothing, which would keep its watermark, and every window, at 0.
    let busy: String = (0..350).map(|i| view("/a", "u", i * 100)).collect();
    std::fs::write(input.join("busy.json"), busy).expect("write");
    std::fs::write(input.join("quiet.json"), view("/b", "v", 0)).expect("write");
    let run = |idle_ms: &str, name: &str| {
        let (output, state) = (
            tmp.path().join(name),
            tmp.path().join(format!("{name}-state")),
        );
        let mut c = page_views(
            &input,
            &output,
            &state,
            &[
                "--set",
                "follow=true",
                "--set",
                &format!("watermark.idle_ms={idle_ms}"),
            ],
        );
        let log = tmp.path().join(format!("{name}.log"));
        c.stderr(std::fs::File::create(&log).expect("log"));
        (common::KillOnDrop(c.spawn().expect("spawn")), output)
    };
    // Idle after 300 ms: the windows `busy` has passed close.
    let (mut child, output) = run("300", "idle");
    let deadline = Instant::now() + Duration::from_secs(30);
    let closed = loop {
        let got = if output.is_dir() {
            read_windows(&output)
        } else {
            Windows::new()
        };
        if got.len() >= 4 || Instant::now() > deadline {
            break got;
        }
        if let Some(status) = child.0.try_wait().expect("poll") {
            let log = std::fs::read_to_string(tmp.path().join("idle.log")).unwrap_or_default();
            panic!("the run ended ({status}): {log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let windows: Vec<(&str, i64)> = closed.keys().map(|(p, s)| (p.as_str(), *s)).collect();
    assert_eq!(
        windows,
        [("/a", 0), ("/a", 10_000), ("/a", 20_000), ("/b", 0)],
        "[30 s, 40 s) stays open: 35 s + 3 s of grace is short of its end"
    );
    assert_eq!(closed[&("/a".to_owned(), 0)], (100, 1));
    common::run_ok(Command::new("kill").args(["-TERM", &child.0.id().to_string()]));
    assert!(child.0.wait().expect("wait").success());

    // Never idle: the quiet file holds every window open.
    let (mut child, output) = run("0", "never");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !output.is_dir() || read_windows(&output).is_empty(),
        "a window closed although the quiet file holds the watermark at 0"
    );
    common::run_ok(Command::new("kill").args(["-TERM", &child.0.id().to_string()]));
    assert!(child.0.wait().expect("wait").success());
}

#[test]
fn views_later_than_the_grace_go_to_the_late_output() {
    let tmp = tempfile::tempdir().expect("tmp");
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    let mut text: String = (0..200).map(|i| view("/a", "u", i * 100)).collect();
    // 20 s of event time read: [0, 10 s) closed at 13 s. Within the grace
    // of [10 s, 20 s), a view still counts there; one for [0, 10 s) is late.
    text.push_str(&view("/a", "w", 18_000));
    text.push_str(&view("/a", "late", 9_999));
    std::fs::write(input.join("views.json"), text).expect("write");
    let (output, late, state) = (
        tmp.path().join("out"),
        tmp.path().join("late"),
        tmp.path().join("state"),
    );
    // One view per read: a watermark after each (it follows the reads).
    let mut c = page_views(
        &input,
        &output,
        &state,
        &["--set", "batch_size=1", "--late-output"],
    );
    c.arg(&late);
    common::run_ok(&mut c);
    let got = read_windows(&output);
    assert_eq!(got[&("/a".to_owned(), 0)], (100, 1));
    assert_eq!(got[&("/a".to_owned(), 10_000)], (101, 2));
    let late = common::sorted_lines(&late);
    assert_eq!(late, [view("/a", "late", 9_999).trim_end()]);
}
