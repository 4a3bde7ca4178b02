//! The instance's HTTP server (`http.listen`, ARCHITECTURE §10) beside a
//! running word count over files in `follow` mode: `/metrics` scraped and
//! parsed as Prometheus text (counters that rise with the input, a
//! checkpoint histogram with samples, process metrics), `/healthz` and
//! `/ready`, a malformed request answered 400 with the run going on, and
//! the refusals at start (an address in use, one that is not an address);
//! 50 hung connections that neither stall the run nor its stop;
//! `log.format = "json"`, one JSON object per line with its spans; and the
//! status page in a real browser (headless Chromium, driven by
//! playwright-core: `dev/setup` installs both).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http::{get, scrape, scrape_until, serving, total};
use common::{dirs, fails, wait_for_committed_lines, wordcount, KillOnDrop, LogOnFailure};

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

#[test]
fn metrics_health_and_readiness_of_a_running_pipeline() {
    const WORDS: usize = 20_000;
    let d = dirs(2, WORDS, 191);
    let (mut run, _log, addr) = served_follow(&d, &["--set", "checkpoint.interval_ms=100"]);
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
    // Drained: no file is behind, and each has its series.
    let drained = scrape_until(addr, &mut run.0, "the lag at 0", |s| {
        s.samples
            .iter()
            .filter(|m| m.metric == "weir_input_lag_bytes")
            .count()
            == 2
            && total(s, "weir_input_lag_bytes", None) == 0.0
    });
    assert_eq!(
        total(
            &drained,
            "weir_input_lag_bytes",
            Some(("file", "part0.txt"))
        ),
        0.0
    );
    assert!(total(&first, "process_open_fds", None) > 0.0);
    let (code, body) = get(addr, "/ready");
    assert_eq!(code, 200, "{body}");
    assert!(total(&first, "weir_state_cache_bytes", None) > 0.0);
    // No event time in a word count: no watermark to lag.
    assert!(!first
        .samples
        .iter()
        .any(|s| s.metric == "weir_watermark_lag_seconds"));
    // Nothing is restored from files: the series are there, at 0.
    assert_eq!(total(&first, "weir_restore_records_total", None), 0.0);
    assert_eq!(total(&first, "weir_restore_remaining_records", None), 0.0);
    let (code, body) = get(addr, "/api/status");
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(status["phase"], "running", "{body}");
    let tasks = status["task_list"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 2, "{body}");
    assert!(
        tasks.iter().all(|t| t["lag"] == 0 && t["unit"] == "bytes"),
        "{body}"
    );
    let checkpoints = status["checkpoints"].as_array().expect("checkpoints");
    assert!(
        checkpoints.iter().any(|c| c["result"] == "committed"
            && c["state_bytes"].as_u64() > Some(0)
            && c["records"].as_u64() > Some(0)),
        "{body}"
    );
    assert!(status["topology"][0]
        .as_str()
        .is_some_and(|op| op.starts_with("source:")));

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
    scrape_until(addr, &mut run.0, "the lag at 0 again", |s| {
        total(s, "weir_input_lag_bytes", None) == 0.0
    });

    // A request that is not HTTP is answered 400, and the server goes on;
    // an unknown path is a 404.
    let mut raw = TcpStream::connect(addr).expect("connect");
    raw.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    raw.write_all(b"NOT HTTP AT ALL\r\n\r\n").expect("send");
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(get(addr, "/nothing-here").0, 404);
    assert_eq!(get(addr, "/healthz").0, 200);

    stop_within(&mut run);
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

#[test]
fn json_log_lines_carry_the_spans_of_commits_and_recovery() {
    let d = dirs(2, 2_000, 193);
    let out = wordcount(&["run", "--set", "log.format=json"], &d)
        .env("RUST_LOG", "weir_runtime=debug")
        .output()
        .expect("run");
    common::assert_success(&out);
    let stderr = String::from_utf8(out.stderr).expect("utf8");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let message = |l: &serde_json::Value| l["fields"]["message"].as_str().unwrap_or("").to_owned();
    assert!(
        lines.iter().any(|l| message(l) == "committed"
            && l["span"]["name"] == "epoch"
            && l["span"]["epoch"].as_u64().is_some_and(|e| e > 0)
            && l["spans"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["name"] == "run"))),
        "no commit inside its spans: {stderr}"
    );
    let done = lines
        .iter()
        .find(|l| message(l) == "done" && l["level"] == "INFO")
        .unwrap_or_else(|| panic!("no summary line: {stderr}"));
    // The summary's figures are rounded to hundredths of a millisecond.
    for (key, value) in done["fields"].as_object().expect("fields") {
        if key.ends_with("_ms") {
            let text = value.to_string();
            let decimals = text.split('.').nth(1).map_or(0, str::len);
            assert!(decimals <= 2, "{key} = {text}");
        }
    }
    common::verify_exactly_once(&d.input, &d.output);
}

/// A following word count over `d` serving on a free port: the process,
/// its log's guard, and its address.
/// `extra` are more arguments.
fn served_follow(d: &common::Dirs, extra: &[&str]) -> (KillOnDrop, LogOnFailure, SocketAddr) {
    let log = d._tmp.path().join("run.log");
    let mut args = vec![
        "run",
        "--set",
        "follow=true",
        "--set",
        "http.listen=127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let mut run = KillOnDrop(
        wordcount(&args, d)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn"),
    );
    let addr = serving(&log, &mut run.0);
    (run, LogOnFailure(log), addr)
}

/// Stops `run` with SIGTERM: it must exit 0 within 30 s, whatever
/// connections are still open.
fn stop_within(run: &mut KillOnDrop) {
    let pid = run.0.id().to_string();
    common::run_ok(Command::new("kill").args(["-TERM", &pid]));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = run.0.try_wait().expect("poll") {
            assert!(status.success(), "{status:?}");
            return;
        }
        assert!(Instant::now() < deadline, "the run did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Slow or hung clients cannot stall the pipeline: the server runs off
/// the processing threads. With 50 connections held open (half idle, half
/// stuck in the middle of a request) the run reads its input about as fast
/// as the same run without them (a stall would hold it for good; the
/// bound is loose, this is not a benchmark), `/metrics` still answers, and
/// a SIGTERM stops it at once with the connections still open.
#[test]
fn fifty_hung_connections_neither_stall_the_run_nor_its_stop() {
    const WORDS: usize = 1_000_000;
    let mut took = Vec::new();
    for hang in [false, true] {
        let d = dirs(2, WORDS, 194);
        let started = Instant::now();
        let (mut run, _log, addr) = served_follow(&d, &[]);
        let mut held = Vec::new();
        if hang {
            for i in 0..50 {
                let mut c = TcpStream::connect(addr).expect("connect");
                if i % 2 == 1 {
                    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                        .expect("half a request");
                }
                held.push(c);
            }
        }
        wait_for_committed_lines(&d, WORDS, &mut run.0);
        took.push(started.elapsed());
        assert_eq!(get(addr, "/healthz").0, 200);
        assert!(total(&scrape(addr), "weir_source_records_total", None) > 0.0);
        stop_within(&mut run);
        drop(held);
        common::verify_exactly_once(&d.input, &d.output);
    }
    assert!(
        took[1] <= took[0] * 3 + Duration::from_secs(2),
        "with 50 hung connections {:?}, without {:?}",
        took[1],
        took[0]
    );
}

/// The status page of a running word count, in headless Chromium: every
/// task listed with a position that rises between two looks (the input
/// grows meanwhile), a checkpoint history that grows, both charts drawn,
/// and no error in the page. Its screenshot is kept as the test's
/// artefact.
#[test]
fn the_status_page_shows_tasks_checkpoints_and_charts_in_a_real_browser() {
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dev/browser");
    assert!(
        driver.join("node_modules/playwright-core").is_dir()
            && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Debian's chromium and playwright-core: run dev/setup"
    );
    let d = dirs(3, 30_000, 195);
    let (mut run, _log, addr) = served_follow(&d, &["--set", "checkpoint.interval_ms=200"]);
    wait_for_committed_lines(&d, 30_000, &mut run.0);
    // The input grows while the browser looks.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, file) = (stop.clone(), d.input.join("part0.txt"));
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let lines: String = (0..200).map(|j| format!("grow{} w{j}\n", i % 7)).collect();
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(&file)
                    .and_then(|mut f| f.write_all(lines.as_bytes()))
                    .expect("append");
                i += 1;
                // A steady trickle, not a synchronisation.
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let out = Command::new("node")
        .arg(driver.join("status_page.mjs"))
        .arg(format!("http://{addr}/"))
        .arg("3")
        .arg(&screenshot)
        .output()
        .expect("node runs (dev/setup installs it)");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().expect("writer");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "status page: {} (screenshot {})",
        String::from_utf8_lossy(&out.stdout).trim(),
        screenshot.display()
    );
    assert!(std::fs::metadata(&screenshot).expect("screenshot").len() > 10_000);
    stop_within(&mut run);
}

/// Interactive queries of the word count's `count` state: while the run
/// follows its input, `/api/state/count/WORD` answers each word's
/// committed count, equal to an independent count of the input once every
/// line is committed; a word never seen and a state that is not queryable
/// are 404s, with the run going on. Once it stopped, `state get` reads the
/// same counts from the state directory.
#[test]
fn a_words_committed_count_is_queried_from_the_running_instance_and_the_stopped_state() {
    const WORDS: usize = 40_000;
    let d = dirs(2, WORDS, 196);
    let (mut run, _log, addr) = served_follow(&d, &["--set", "checkpoint.interval_ms=100"]);
    wait_for_committed_lines(&d, WORDS, &mut run.0);
    let expected = common::expected_counts(&d.input);
    let mut words: Vec<&String> = expected.keys().collect();
    words.sort();
    let sample: Vec<&String> = words.iter().step_by(words.len() / 20).copied().collect();
    let value_of = |body: &str| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(body).expect("JSON")["value"].clone()
    };
    for word in &sample {
        let (code, body) = get(addr, &format!("/api/state/count/{word}"));
        assert_eq!(code, 200, "{word}: {body}");
        assert_eq!(value_of(&body), expected[*word], "{word}: {body}");
    }
    // The same key given as JSON.
    let (code, body) = get(addr, &format!("/api/state/count/%22{}%22", sample[0]));
    assert_eq!(
        (code, value_of(&body)),
        (200, expected[sample[0]].into()),
        "{body}"
    );
    let (code, body) = get(addr, "/api/state/count/never-seen");
    assert!(
        code == 404 && body.contains("no committed value"),
        "{code} {body}"
    );
    let (code, body) = get(addr, "/api/state/sum/w1");
    assert!(
        code == 404 && body.contains("queryable ones: count"),
        "{code} {body}"
    );
    // More input: the counts follow once it is committed.
    let word = sample[1];
    let more: String = (0..50).map(|_| format!("{word}\n")).collect();
    std::fs::OpenOptions::new()
        .append(true)
        .open(d.input.join("part0.txt"))
        .and_then(|mut f| f.write_all(more.as_bytes()))
        .expect("append");
    wait_for_committed_lines(&d, WORDS + 50, &mut run.0);
    let (_, body) = get(addr, &format!("/api/state/count/{word}"));
    assert_eq!(value_of(&body), expected[word] + 50, "{body}");
    stop_within(&mut run);

    // Offline, from the stopped state directory.
    let state_get = |key: &str| {
        wordcount(&["state", "get", "--store", "count", "--key", key], &d)
            .output()
            .expect("state get")
    };
    for w in &sample[2..] {
        let out = state_get(w);
        common::assert_success(&out);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            expected[*w].to_string()
        );
    }
    let out = state_get(word);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        (expected[word] + 50).to_string()
    );
    let out = state_get("never-seen");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no committed value"));
}

/// A pipeline on event time (the sessions example, following its input)
/// shows how far its watermark is behind the wall clock: events stamped a
/// minute ago lag by about a minute.
#[test]
fn an_event_time_pipeline_shows_its_watermark_lag() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).expect("input");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let events: String = (0..1000u64)
        .map(|i| format!("{} user{} click\n", now - 60_000 + i, i % 10))
        .collect();
    std::fs::write(input.join("events.txt"), events).expect("write");
    let log = tmp.path().join("run.log");
    let mut run = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_sessions"))
            .args([
                "run",
                "--set",
                "follow=true",
                "--set",
                "http.listen=127.0.0.1:0",
            ])
            .args(["--set", "checkpoint.interval_ms=100", "--input"])
            .arg(&input)
            .arg("--output")
            .arg(tmp.path().join("out"))
            .arg("--state")
            .arg(tmp.path().join("state"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn"),
    );
    let _log = LogOnFailure(log.clone());
    let addr = serving(&log, &mut run.0);
    let scraped = scrape_until(addr, &mut run.0, "a watermark lag", |s| {
        total(s, "weir_watermark_lag_seconds", None) > 0.0
    });
    let lag = total(&scraped, "weir_watermark_lag_seconds", None);
    assert!((55.0..600.0).contains(&lag), "lag {lag} s");
    stop_within(&mut run);
}

/// With the `otel` feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, the
/// spans go over OTLP/HTTP to a collector (here one in the test, decoding
/// the protobuf requests): the run, its epochs (with their number, inside
/// the run) and their commits, from a process named after its binary; the
/// batch still open at the exit is sent too.
#[cfg(feature = "otel")]
#[test]
fn spans_go_to_an_otlp_collector() {
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use prost::Message as _;

    let (sent, received) = std::sync::mpsc::channel::<ExportTraceServiceRequest>();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let collector = listener.local_addr().expect("address");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/v1/traces",
                axum::routing::post(move |body: axum::body::Bytes| async move {
                    let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                    let _ = sent.send(request);
                    (
                        [("content-type", "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }),
            );
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app).await.expect("serve");
        });
    });

    let d = dirs(2, 2_000, 211);
    let out = wordcount(&["run", "--set", "checkpoint.interval_ms=50"], &d)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}"))
        .env_remove("OTEL_SERVICE_NAME")
        .env("RUST_LOG", "info,opentelemetry=debug")
        .output()
        .expect("run");
    common::assert_success(&out);
    common::verify_exactly_once(&d.input, &d.output);

    // What the exit sent may still be on its way when the process ends.
    let mut requests: Vec<_> = received
        .recv_timeout(Duration::from_secs(10))
        .into_iter()
        .collect();
    requests.extend(received.try_iter());
    let resources: Vec<_> = requests.iter().flat_map(|r| &r.resource_spans).collect();
    assert!(
        !resources.is_empty(),
        "no span reached the collector: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let service = resources[0]
        .resource
        .as_ref()
        .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
        .and_then(|a| a.value.as_ref()?.value.clone());
    assert_eq!(service, Some(Value::StringValue("wordcount".into())));
    let spans: Vec<_> = resources
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    let named = |name: &'static str| spans.iter().filter(move |s| s.name == name);
    let run = named("run").next().expect("a run span");
    let epochs: Vec<_> = named("epoch").collect();
    assert!(
        !epochs.is_empty(),
        "no epoch span: {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    for epoch in &epochs {
        assert_eq!(epoch.trace_id, run.trace_id, "an epoch outside its run");
        assert_eq!(
            epoch.parent_span_id, run.span_id,
            "an epoch outside its run"
        );
        let number = epoch
            .attributes
            .iter()
            .find(|a| a.key == "epoch")
            .and_then(|a| a.value.as_ref()?.value.clone());
        // A u64 field goes as a string where the SDK has no unsigned type.
        let number = match number {
            Some(Value::IntValue(n)) => n.try_into().ok(),
            Some(Value::StringValue(s)) => s.parse::<u64>().ok(),
            _ => None,
        };
        assert!(number.is_some_and(|n| n > 0), "{number:?}");
    }
    assert!(
        named("commit").any(|c| epochs.iter().any(|e| e.span_id == c.parent_span_id)),
        "no commit inside an epoch"
    );
}
