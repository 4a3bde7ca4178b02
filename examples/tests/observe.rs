//! The instance's HTTP server (`http.listen`, ARCHITECTURE §10) beside a
//! running word count over files in `follow` mode: `/metrics` scraped and
//! parsed as Prometheus text (counters that rise with the input, a
//! checkpoint histogram with samples, process metrics), `/healthz` and
//! `/ready`, a malformed request answered 400 with the run going on, and
//! the refusals at start (an address in use, one that is not an address).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{dirs, fails, wait_for_committed_lines, wordcount, KillOnDrop, LogOnFailure};

/// The address the run's log says it serves on.
fn serving(log: &Path, child: &mut Child) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(addr) = text
            .split("serving http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
        {
            return addr.parse().expect("an address");
        }
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the run exited: {text}"
        );
        assert!(Instant::now() < deadline, "no address logged: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET path`: the status code and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent
        .get(&format!("http://{addr}{path}"))
        .call()
        .expect("an answer");
    let code = response.status().as_u16();
    let body = response.body_mut().read_to_string().expect("a body");
    (code, body)
}

/// The metrics, parsed as the Prometheus text format.
fn scrape(addr: SocketAddr) -> prometheus_parse::Scrape {
    let (code, body) = get(addr, "/metrics");
    assert_eq!(code, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text")
}

/// The sum of every sample of `name` (whatever its labels) whose labels
/// include `label` when given.
fn total(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => 0.0,
        })
        .sum()
}

/// Lines in every input file.
fn input_lines(input: &Path) -> f64 {
    let lines: usize = std::fs::read_dir(input)
        .expect("input")
        .map(|e| {
            std::fs::read_to_string(e.expect("entry").path())
                .expect("read")
                .lines()
                .count()
        })
        .sum();
    lines as f64
}

/// Scrapes until `ready` holds, within a minute.
fn scrape_until(
    addr: SocketAddr,
    child: &mut Child,
    what: &str,
    ready: impl Fn(&prometheus_parse::Scrape) -> bool,
) -> prometheus_parse::Scrape {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = scrape(addr);
        if ready(&s) {
            return s;
        }
        assert!(child.try_wait().expect("poll").is_none(), "the run exited");
        assert!(Instant::now() < deadline, "never {what}: {:?}", s.samples);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn metrics_health_and_readiness_of_a_running_pipeline() {
    const WORDS: usize = 20_000;
    let d = dirs(2, WORDS, 191);
    let log = d._tmp.path().join("run.log");
    let _log = LogOnFailure(log.clone());
    let mut run = KillOnDrop(
        wordcount(
            &[
                "run",
                "--set",
                "follow=true",
                "--set",
                "http.listen=127.0.0.1:0",
                "--set",
                "checkpoint.interval_ms=100",
            ],
            &d,
        )
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn"),
    );
    let addr = serving(&log, &mut run.0);
    let (code, body) = get(addr, "/healthz");
    assert_eq!((code, body.contains("ok")), (200, true), "{body}");

    // Every record read and written shows, with the checkpoints that
    // committed them.
    wait_for_committed_lines(&d, WORDS, &mut run.0);
    let lines = input_lines(&d.input);
    let first = scrape_until(addr, &mut run.0, "every record counted", |s| {
        total(s, "weir_source_records_total", None) == lines
            && total(s, "weir_sink_records_total", None) == WORDS as f64
    });
    let committed = |s: &prometheus_parse::Scrape| {
        total(s, "weir_checkpoints_total", Some(("result", "committed")))
    };
    assert!(committed(&first) > 0.0);
    assert!(total(&first, "weir_checkpoint_duration_seconds", None) > 0.0);
    assert!(total(&first, "weir_barrier_alignment_seconds", None) > 0.0);
    assert!(total(&first, "weir_last_checkpoint_epoch", None) > 0.0);
    assert_eq!(
        total(&first, "weir_tasks", Some(("state", "running"))),
        2.0,
        "one task per input file"
    );
    assert_eq!(
        total(
            &first,
            "weir_checkpoints_total",
            Some(("result", "aborted"))
        ),
        0.0
    );
    assert!(total(&first, "process_resident_memory_bytes", None) > 0.0);
    assert!(total(&first, "process_open_fds", None) > 0.0);
    let (code, body) = get(addr, "/ready");
    assert_eq!(code, 200, "{body}");
    let (code, body) = get(addr, "/api/status");
    assert!(
        code == 200 && body.contains("\"phase\":\"running\""),
        "{body}"
    );

    // More input: the counters rise with it.
    let more: String = (0..100).map(|i| format!("w{i} w{i} w7\n")).collect();
    std::fs::OpenOptions::new()
        .append(true)
        .open(d.input.join("part0.txt"))
        .and_then(|mut f| f.write_all(more.as_bytes()))
        .expect("append");
    wait_for_committed_lines(&d, WORDS + 300, &mut run.0);
    let second = scrape_until(addr, &mut run.0, "the new lines counted", |s| {
        total(s, "weir_source_records_total", None) == lines + 100.0
    });
    assert!(committed(&second) > committed(&first));

    // A request that is not HTTP is answered 400, and the server goes on;
    // an unknown path is a 404.
    let mut raw = TcpStream::connect(addr).expect("connect");
    raw.write_all(b"NOT HTTP AT ALL\r\n\r\n").expect("send");
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(get(addr, "/nothing-here").0, 404);
    assert_eq!(get(addr, "/healthz").0, 200);

    let pid = run.0.id().to_string();
    common::run_ok(Command::new("kill").args(["-TERM", &pid]));
    assert!(run.0.wait().expect("wait").success());
    common::verify_exactly_once(&d.input, &d.output);
}

#[test]
fn an_address_in_use_or_not_an_address_is_refused_at_start_naming_the_setting() {
    let d = dirs(1, 100, 192);
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address");
    let (code, err) = fails(&mut wordcount(
        &["run", "--set", &format!("http.listen={addr}")],
        &d,
    ));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot serve HTTP on {addr} (http.listen)"))
            && err.contains("port 0"),
        "{err}"
    );
    assert!(!d.output.exists(), "a refused run wrote output");
    let (code, err) = fails(&mut wordcount(
        &["run", "--set", "http.listen=localhost-ish"],
        &d,
    ));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("`http.listen`") && err.contains("127.0.0.1:9464"),
        "{err}"
    );
}
