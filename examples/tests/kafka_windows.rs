//! The windowed page-view count (`page_views`) against the real broker:
//! killed with `kill -9` again and again over half a million views in four
//! partitions, out of order within the grace, every window is read
//! `read_committed` exactly once with exact views and distinct users, as
//! an independent computation in this test has them; a quiet partition
//! does not keep windows open; malformed views go to the dead-letter
//! topic and late ones to the late topic.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use common::kafka::{bootstrap, committed_records, create_topic, produce, unique};
use common::KillOnDrop;

const PAGE_VIEWS: &str = env!("CARGO_BIN_EXE_page_views");
const WINDOW: i64 = 60_000;
const GRACE: i64 = 5_000;

/// `(page, window_start)` -> `(views, users)`.
type Windows = BTreeMap<(String, i64), (u64, u64)>;

/// The start of a window an hour ago: views' times, which become the
/// windows' Kafka timestamps, must be recent. The broker's time-based
/// retention (7 days) deletes a segment whose records are older, and rolls
/// a segment at once whose first record is: windows of 2023 were read
/// `read_committed` one moment and gone the next.
fn an_hour_ago() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let t = now - 3_600_000;
    t - t.rem_euclid(WINDOW)
}

fn view(page: &str, user: &str, ts: i64) -> String {
    format!("{{\"page\":\"{page}\",\"user\":\"{user}\",\"ts\":{ts}}}")
}

/// The windows `topic` holds, read `read_committed`; a window twice fails.
fn committed_windows(topic: &str) -> Windows {
    let mut got = Windows::new();
    for (page, value) in committed_records(topic) {
        let v: serde_json::Value = serde_json::from_str(&value).expect("JSON");
        assert_eq!(
            v["page"].as_str(),
            Some(page.as_str()),
            "keyed by page: {value}"
        );
        let start = v["window_start"].as_i64().expect("start");
        assert_eq!(v["window_end"].as_i64(), Some(start + WINDOW), "{value}");
        let counts = (
            v["views"].as_u64().expect("views"),
            v["users"].as_u64().expect("users"),
        );
        assert!(
            got.insert((page, start), counts).is_none(),
            "a window read twice: {value}"
        );
    }
    got
}

struct Topics {
    input: String,
    output: String,
    late: String,
    app: String,
}

fn topics(prefix: &str, partitions: u32) -> Topics {
    Topics {
        input: create_topic(&format!("{prefix}-views"), partitions),
        output: create_topic(&format!("{prefix}-stats"), 4),
        late: create_topic(&format!("{prefix}-late"), 1),
        app: unique(prefix),
    }
}

/// `page_views` on `t`, with state in `state`; `extra` arguments last.
fn page_views(t: &Topics, state: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(PAGE_VIEWS);
    c.arg("run")
        .args(["--brokers", bootstrap(), "--input-topic", &t.input])
        .args(["--output-topic", &t.output, "--late-topic", &t.late])
        .args(["--application-id", &t.app])
        .args([
            "--window-ms",
            &WINDOW.to_string(),
            "--grace-ms",
            &GRACE.to_string(),
        ])
        .args([
            "--set",
            "checkpoint.interval_ms=100",
            "--set",
            "key_groups=16",
        ])
        .arg("--state")
        .arg(state)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    c
}

#[test]
fn every_window_is_read_committed_once_with_exact_counts_across_30_kills() {
    const VIEWS: usize = 500_000;
    const KILLS: usize = 30;
    let seed: u64 = rand::rng().random();
    eprintln!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().expect("tmp");
    let t = topics("pv-chaos", 4);
    // One sequence of views, each up to 2 s older than the newest before
    // it (within the 5 s grace), spread round-robin over the partitions:
    // no view is late, whatever the order the partitions are read in.
    let mut expected: BTreeMap<(String, i64), (u64, BTreeSet<u32>)> = BTreeMap::new();
    let mut text = String::with_capacity(VIEWS * 60);
    let mut now = an_hour_ago();
    for _ in 0..VIEWS {
        now += rng.random_range(0..10);
        let ts = now - rng.random_range(0..2_000);
        let page = format!("/p{}", rng.random_range(0..40));
        let user = rng.random_range(0..3_000u32);
        text.push_str(&view(&page, &format!("u{user}"), ts));
        text.push('\n');
        let e = expected
            .entry((page, ts - ts.rem_euclid(WINDOW)))
            .or_default();
        e.0 += 1;
        e.1.insert(user);
    }
    let expected: Windows = expected
        .into_iter()
        .map(|(k, (views, users))| (k, (views, users.len() as u64)))
        .collect();
    let lines = tmp.path().join("views.json");
    std::fs::write(&lines, text).expect("write");
    produce(&t.input, &lines);

    let state = tmp.path().join("state");
    let log = tmp.path().join("page_views.log");
    let started = Instant::now();
    common::kill_9_repeatedly(KILLS, &mut rng, &log, || {
        page_views(&t, &state, &["--set", "watermark.idle_ms=60000"])
    });
    // The last run reads to the end, and closes every window at it.
    let out = page_views(&t, &state, &["--until-idle-ms", "3000"])
        .stderr(Stdio::piped())
        .output()
        .expect("final run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{KILLS} kills in {:?}", started.elapsed());
    let late = committed_records(&t.late);
    assert!(
        late.is_empty(),
        "no view may be late, but {} were, e.g. {:?}",
        late.len(),
        late.first()
    );
    let mut got = committed_windows(&t.output);
    if got.len() < expected.len() {
        // The console consumer stops after 10 s without a record: on a busy
        // broker a read can end early. A window really missing stays so.
        eprintln!(
            "read {} of {} windows; reading again",
            got.len(),
            expected.len()
        );
        got = committed_windows(&t.output);
    }
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(5)
        .collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "windows; missing e.g. {missing:?}"
    );
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(v))
        .take(5)
        .collect();
    assert!(wrong.is_empty(), "windows differ, e.g. {wrong:?}");
}

/// A producer of views to chosen partitions.
fn producer() -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("producer")
}

fn send(p: &BaseProducer, topic: &str, partition: i32, value: &str) {
    p.send(
        BaseRecord::<(), str>::to(topic)
            .partition(partition)
            .payload(value),
    )
    .expect("send");
}

#[test]
fn a_quiet_partition_does_not_keep_windows_open() {
    let tmp = tempfile::tempdir().expect("tmp");
    let t = topics("pv-idle", 4);
    let p = producer();
    let t0 = an_hour_ago();
    // Partitions 0 to 2 run to 150 s of event time; partition 3 has one
    // view at 0 and then nothing, which would hold the watermark at 0.
    for i in 0..1_500 {
        send(
            &p,
            &t.input,
            i % 3,
            &view("/a", "u", t0 + i64::from(i) * 100),
        );
    }
    send(&p, &t.input, 3, &view("/b", "v", t0));
    p.flush(Duration::from_secs(30)).expect("flush");
    let state = tmp.path().join("state");
    let log = tmp.path().join("page_views.log");
    let mut cmd = page_views(&t, &state, &["--set", "watermark.idle_ms=1000"]);
    cmd.stderr(std::fs::File::create(&log).expect("log"));
    let mut child = KillOnDrop(cmd.spawn().expect("spawn"));
    // [0, 60 s) and [60 s, 120 s) close (150 s > 120 s + 5 s of grace);
    // [120 s, 180 s) stays open.
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let got = committed_windows(&t.output);
        if got.len() >= 3 || Instant::now() > deadline {
            break got;
        }
        if let Some(status) = child.0.try_wait().expect("poll") {
            panic!(
                "page_views exited ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
    };
    let keys: Vec<(&str, i64)> = got.keys().map(|(p, s)| (p.as_str(), *s - t0)).collect();
    assert_eq!(keys, [("/a", 0), ("/a", 60_000), ("/b", 0)], "{got:?}");
    assert_eq!(got[&("/a".to_owned(), t0)], (600, 1));
    common::run_ok(Command::new("kill").args(["-TERM", &child.0.id().to_string()]));
    assert!(child.0.wait().expect("wait").success());
}

#[test]
fn malformed_views_go_to_the_dead_letter_topic_and_late_ones_to_the_late_topic() {
    let tmp = tempfile::tempdir().expect("tmp");
    // One partition: no other holds the watermark back.
    let t = topics("pv-bad", 1);
    let dlq = create_topic("pv-bad-dlq", 1);
    let p = producer();
    let t0 = an_hour_ago();
    // In order: each view is read after the ones before it, in batches of
    // one, so that the watermark follows every view.
    for i in 0..200 {
        send(&p, &t.input, 0, &view("/a", "u", t0 + i * 1_000));
    }
    send(&p, &t.input, 0, "{\"page\": 7}");
    send(&p, &t.input, 0, &view("/a", "late", t0 + 1_000));
    p.flush(Duration::from_secs(30)).expect("flush");
    let state = tmp.path().join("state");
    let out = page_views(
        &t,
        &state,
        &[
            "--until-idle-ms",
            "2000",
            "--set",
            "batch_size=1",
            "--set",
            "on_bad_input=dead-letter",
            "--dead-letter-topic",
            &dlq,
        ],
    )
    .stderr(Stdio::piped())
    .output()
    .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = committed_windows(&t.output);
    assert_eq!(
        got[&("/a".to_owned(), t0)],
        (60, 1),
        "the late view is not counted"
    );
    let dead: Vec<String> = committed_records(&dlq)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(dead, ["{\"page\": 7}"]);
    let late: Vec<(String, String)> = committed_records(&t.late);
    assert_eq!(late, [("/a".to_owned(), view("/a", "late", t0 + 1_000))]);
}
