//! Every crash point of the commit and recovery paths (ARCHITECTURE §4.1
//! and §4.2), in-process: no spawned binary and no broker. A run is one
//! "process" (its own tokio runtime, dropped at its end); a crash point
//! armed with `panic` stops it on the spot, leaving whatever it left on
//! disk and in the commit point. Local mode commits to RocksDB next to real
//! files; transactional mode commits through an in-memory transactional
//! log (`memory/`). After each crash an independent verifier checks I1
//! (the committed output is exactly the processing of the committed input
//! prefix) and I2 (nothing of the interrupted epoch is visible); crashes
//! during recovery check I3; the finished run is checked against the whole
//! input, and its state against a run that never crashed.
//!
//! Needs the `failpoints` feature (`cargo test --all-features`).

mod memory;

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use fail::FailScenario;
use memory::{Broker, MemorySink};
use weir_connectors::file::{FileSink, FileSource};
use weir_runtime::failpoints::{
    AFTER_SINK_FLUSH, AFTER_STATE_BATCH, AFTER_TXN_COMMIT, BEFORE_TXN_COMMIT, MID_RECOVERY,
};
use weir_runtime::manifest::Manifest;
use weir_runtime::prelude::*;
use weir_runtime::RunSummary;

/// What an armed crash point panics with.
const CRASH: &str = "crash-point";
const FILES: usize = 3;
const WORDS_PER_FILE: usize = 100_000;

/// Counts each word: emits `(word, occurrences so far)`.
#[derive(Clone)]
struct Counts;

const COUNT: ValueDescriptor<u64> = ValueDescriptor::new("count");

impl Processor for Counts {
    type Key = String;
    type In = String;
    type Out = u64;

    fn declare(&self, d: &mut Declarations) {
        d.state(&COUNT);
    }

    async fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut Context<'_, Self>,
    ) -> Result<()> {
        let mut count = ctx.state(&COUNT)?;
        let n = count.get()?.unwrap_or(0) + 1;
        count.put(&n)?;
        ctx.emit(r.key, n);
        Ok(())
    }
}

/// Where the sink writes: files (local mode) or the in-memory log.
#[derive(Clone)]
enum Out {
    Files(PathBuf),
    Log(Broker),
}

fn wordcount(input: &Path, out: &Out) -> Pipeline {
    let mut p = Pipeline::new("crash-points");
    let counted = p
        .source(FileSource::lines(input))
        .flat_map(|l: String| {
            l.split_ascii_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .key_by(|w: &String| w.clone())
        .process(Counts);
    match out {
        Out::Files(dir) => counted.sink(FileSink::tsv(dir)),
        Out::Log(broker) => counted.sink(MemorySink(broker.clone())),
    }
    p
}

struct Dirs {
    _tmp: tempfile::TempDir,
    input: PathBuf,
    state: PathBuf,
    out: Out,
}

/// A skewed input of `FILES` files, and a local or transactional output.
fn dirs(seed: u64, transactional: bool) -> Dirs {
    let tmp = tempfile::tempdir().expect("temp dir");
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).expect("create the input");
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for f in 0..FILES {
        let mut text = String::new();
        for i in 0..WORDS_PER_FILE {
            // xorshift; small ids are more frequent, like words in text,
            // and most are rare: an epoch fills the cache in a few
            // thousand words, so the input takes many epochs.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let r = (x % 1_000_000) as f64 / 1_000_000.0;
            text.push_str(&format!("w{}", (r * r * 200_000.0) as u32));
            text.push(if i % 10 == 9 { '\n' } else { ' ' });
        }
        std::fs::write(input.join(format!("part{f}.txt")), text).expect("write the input");
    }
    let out = if transactional {
        Out::Log(Broker::default())
    } else {
        Out::Files(tmp.path().join("out"))
    };
    Dirs {
        state: tmp.path().join("state"),
        input,
        out,
        _tmp: tmp,
    }
}

fn config(state: &Path) -> Config {
    let set = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    // Short epochs, and a 1 MiB cache that ends an epoch once its writes
    // fill half of it: many epochs, however slow the machine.
    let o = vec![
        set("state", &format!("{:?}", state.display().to_string())),
        set("checkpoint.interval_ms", "2"),
        set("cache_mb", "1"),
        set("parallelism", "2"),
    ];
    Config::load(None, &o, &[]).expect("a valid config")
}

/// Leaves the crash points' panics out of the test output.
fn quiet_crashes() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info.payload().downcast_ref::<String>().map(String::as_str);
            if message != Some(CRASH) {
                report(info);
            }
        }));
    });
}

enum Ending {
    Done(RunSummary),
    Crashed,
    Failed(Error),
}

/// Runs the pipeline as one process would: its own runtime, all of whose
/// tasks and threads are gone when this returns.
fn run(d: &Dirs) -> Ending {
    quiet_crashes();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let pipeline = wordcount(&d.input, &d.out);
    let cfg = config(&d.state);
    let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(weir_runtime::cli::run(pipeline, &cfg, None))
    }));
    drop(rt);
    match ran {
        Err(_) => Ending::Crashed,
        // A crash point in a blocking task reaches the run as its failure.
        Ok(Err(e)) if e.to_string().contains(CRASH) => Ending::Crashed,
        Ok(Err(e)) => Ending::Failed(e),
        Ok(Ok(summary)) => Ending::Done(summary),
    }
}

/// Runs with crash point `point` armed to pass `skip` times, then crash;
/// expects the crash.
fn crash(d: &Dirs, point: &str, skip: usize) {
    fail::cfg(point, &format!("{skip}*off->panic({CRASH})")).expect("a valid failpoint");
    let ending = run(d);
    fail::remove(point);
    match ending {
        Ending::Crashed => {}
        Ending::Done(s) => panic!("expected a crash at {point}, the run ended: {s:?}"),
        Ending::Failed(e) => panic!("expected a crash at {point}, the run failed: {e}"),
    }
}

/// Runs to the end; returns its summary.
fn finish(d: &Dirs) -> RunSummary {
    match run(d) {
        Ending::Done(s) => s,
        Ending::Crashed => panic!("a crash with no crash point armed"),
        Ending::Failed(e) => panic!("the run failed: {e}"),
    }
}

fn manifest(state: &Path) -> Manifest {
    weir_runtime::store::open_read_only(state)
        .and_then(|s| s.manifest())
        .expect("a readable state directory")
        .expect("a committed checkpoint")
}

/// Every keyed-state entry of a state directory.
fn state_of(state: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut entries = Vec::new();
    weir_runtime::store::open_read_only(state)
        .and_then(|s| {
            s.for_each_state(|k, v| {
                entries.push((k.to_vec(), v.to_vec()));
                true
            })
        })
        .expect("a readable state directory");
    entries
}

/// The occurrences of each word in the input, up to `positions` (bytes
/// per file) or all of it.
fn expected(input: &Path, positions: Option<&BTreeMap<String, u64>>) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for f in 0..FILES {
        let name = format!("part{f}.txt");
        let text = std::fs::read(input.join(&name)).expect("read the input");
        let end = positions.map_or(text.len(), |p| {
            p.get(&name)
                .map_or(0, |&n| usize::try_from(n).expect("a position"))
        });
        let prefix = std::str::from_utf8(&text[..end]).expect("UTF-8 input");
        for w in prefix.split_ascii_whitespace() {
            *counts.entry(w.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}

/// Checks that `output` is exactly one `(w, 1..=n)` for each word `w`
/// occurring `n` times in `expected`: no loss, no duplicate.
fn verify(output: &[(String, u64)], expected: &HashMap<String, u64>) {
    let mut seen: HashMap<&str, Vec<u64>> = HashMap::new();
    for (w, n) in output {
        seen.entry(w).or_default().push(*n);
    }
    for (w, counts) in &mut seen {
        counts.sort_unstable();
        let n = expected.get(*w).copied().unwrap_or(0);
        assert!(
            counts.iter().copied().eq(1..=n),
            "word {w}: output counts {:?}, expected 1..={n}",
            &counts[..counts.len().min(10)]
        );
    }
    let missing = expected.keys().filter(|w| !seen.contains_key(w.as_str()));
    assert_eq!(
        missing.count(),
        0,
        "words of the input missing from the output"
    );
}

/// The output files' records, each file up to its committed length when
/// `committed` is given (a reader that honours committed lengths).
fn file_output(dir: &Path, committed: Option<&BTreeMap<String, u64>>) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("list the output") {
        let path = entry.expect("an output entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let bytes = std::fs::read(&path).expect("read an output");
        let end = committed.map_or(bytes.len(), |c| {
            c.get(name)
                .map_or(0, |&n| usize::try_from(n).expect("a length"))
        });
        let text = std::str::from_utf8(&bytes[..end]).expect("UTF-8 output");
        for line in text.lines() {
            let (w, n) = line.split_once('\t').expect("a tab-separated record");
            out.push((w.to_owned(), n.parse().expect("a count")));
        }
    }
    out
}

/// The positions the in-memory log committed (a file source has no
/// consumer group, so they are changelog records).
fn log_positions(broker: &Broker) -> BTreeMap<String, u64> {
    (0..FILES)
        .filter_map(|f| {
            let task = format!("part{f}.txt");
            let value = broker.committed_value(format!("meta/position/{task}").as_bytes())?;
            let bytes = <[u8; 8]>::try_from(value.as_slice()).ok()?;
            Some((task, u64::from_be_bytes(bytes)))
        })
        .collect()
}

/// I1 right after a crash: what is committed (output, positions) describes
/// one prefix of the input.
fn verify_committed(d: &Dirs) {
    match &d.out {
        Out::Files(dir) => {
            let m = manifest(&d.state);
            let positions = m.sources.iter().map(|(t, p)| (t.clone(), p.position));
            let positions: BTreeMap<_, _> = positions.collect();
            verify(
                &file_output(dir, Some(&m.sinks)),
                &expected(&d.input, Some(&positions)),
            );
        }
        Out::Log(broker) => verify(
            &broker.committed_output(),
            &expected(&d.input, Some(&log_positions(broker))),
        ),
    }
}

/// Finishes the run and checks the whole output, and the state against a
/// run of the same input that never crashed.
fn finish_and_verify(d: &Dirs) {
    finish(d);
    let output = match &d.out {
        Out::Files(dir) => file_output(dir, None),
        Out::Log(broker) => broker.committed_output(),
    };
    verify(&output, &expected(&d.input, None));
    let clean = Dirs {
        out: match &d.out {
            Out::Files(_) => Out::Files(d._tmp.path().join("clean-out")),
            Out::Log(_) => Out::Log(Broker::default()),
        },
        state: d._tmp.path().join("clean-state"),
        input: d.input.clone(),
        _tmp: tempfile::tempdir().expect("temp dir"),
    };
    finish(&clean);
    assert!(
        state_of(&d.state) == state_of(&clean.state),
        "the state differs from that of a run that never crashed"
    );
}

#[test]
fn local_a_crash_after_the_sinks_fsync_discards_their_uncommitted_output() {
    let scenario = FailScenario::setup();
    let d = dirs(1, false);
    crash(&d, AFTER_SINK_FLUSH, 2);
    verify_committed(&d);
    let Out::Files(dir) = &d.out else {
        unreachable!()
    };
    let committed: u64 = manifest(&d.state).sinks.values().sum();
    assert!(
        file_output(dir, None).len() > file_output(dir, Some(&manifest(&d.state).sinks)).len(),
        "the interrupted epoch's output ({committed} bytes committed) is on disk, uncommitted"
    );
    finish_and_verify(&d);
    scenario.teardown();
}

#[test]
fn local_a_crash_after_the_commit_batch_resumes_there() {
    let scenario = FailScenario::setup();
    let d = dirs(2, false);
    crash(&d, AFTER_STATE_BATCH, 2);
    assert!(manifest(&d.state).epoch >= 3, "the third commit is durable");
    verify_committed(&d);
    finish_and_verify(&d);
    scenario.teardown();
}

#[test]
fn local_a_crash_during_recovery_ends_in_the_same_place() {
    let scenario = FailScenario::setup();
    let d = dirs(3, false);
    crash(&d, AFTER_SINK_FLUSH, 3);
    let before = manifest(&d.state);
    // Recovery cuts the outputs back, then dies before reading; twice.
    crash(&d, MID_RECOVERY, 0);
    crash(&d, MID_RECOVERY, 0);
    assert_eq!(manifest(&d.state), before, "recovery commits nothing");
    let Out::Files(dir) = &d.out else {
        unreachable!()
    };
    for (id, len) in &before.sinks {
        let on_disk = std::fs::metadata(dir.join(id)).map_or(0, |m| m.len());
        assert_eq!(on_disk, *len, "{id} is cut back to its committed length");
    }
    verify_committed(&d);
    finish_and_verify(&d);
    scenario.teardown();
}

#[test]
fn transactional_a_crash_before_the_commit_leaves_the_epoch_invisible() {
    let scenario = FailScenario::setup();
    let d = dirs(4, true);
    crash(&d, BEFORE_TXN_COMMIT, 2);
    let Out::Log(broker) = &d.out else {
        unreachable!()
    };
    assert!(
        broker.pending_output() > 0,
        "the open transaction holds output"
    );
    verify_committed(&d);
    finish_and_verify(&d);
    scenario.teardown();
}

#[test]
fn transactional_a_crash_after_the_commit_rolls_the_state_forward() {
    let scenario = FailScenario::setup();
    let d = dirs(5, true);
    crash(&d, AFTER_TXN_COMMIT, 2);
    let Out::Log(broker) = &d.out else {
        unreachable!()
    };
    // The log has the third epoch; RocksDB stops at the second.
    assert!(broker.commits() >= 3);
    let behind = manifest(&d.state);
    verify_committed(&d);
    finish_and_verify(&d);
    assert!(manifest(&d.state).epoch > behind.epoch);
    scenario.teardown();
}

#[test]
fn transactional_a_crash_after_the_state_batch_resumes_there() {
    let scenario = FailScenario::setup();
    let d = dirs(6, true);
    crash(&d, AFTER_STATE_BATCH, 2);
    verify_committed(&d);
    finish_and_verify(&d);
    scenario.teardown();
}

#[test]
fn transactional_a_crash_while_rolling_forward_ends_in_the_same_place() {
    let scenario = FailScenario::setup();
    let d = dirs(7, true);
    crash(&d, AFTER_TXN_COMMIT, 3);
    // The roll forward applies the changelog, then dies before its
    // manifest; twice.
    crash(&d, MID_RECOVERY, 0);
    crash(&d, MID_RECOVERY, 0);
    verify_committed(&d);
    finish_and_verify(&d);
    scenario.teardown();
}
