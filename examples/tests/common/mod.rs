//! Helpers for the tests that run the real example binaries. The verifier
//! here shares no code with the pipeline: it reads the input and output
//! files itself.
#![allow(dead_code, unreachable_pub)]

pub mod http;
pub mod kafka;
pub mod top;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const WORDCOUNT: &str = env!("CARGO_BIN_EXE_wordcount");

/// Writes `files` input files holding `words` words in total, drawn from a
/// skewed vocabulary, ten words a line. Returns the directory.
pub fn make_input(dir: &Path, files: usize, words: usize, seed: u64) -> PathBuf {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).expect("create input dir");
    let mut rng = StdRng::seed_from_u64(seed);
    let per_file = words / files;
    for f in 0..files {
        let mut text = String::with_capacity(per_file * 8);
        for i in 0..per_file {
            // Skewed: small ids are frequent, like words in text.
            let r: f64 = rng.random();
            let id = (r * r * r * 20_000.0) as u32;
            text.push_str(&format!("w{id}"));
            text.push(if i % 10 == 9 { '\n' } else { ' ' });
        }
        std::fs::write(input.join(format!("part{f}.txt")), text).expect("write input");
    }
    input
}

/// Occurrences of each word in every file under `input`, split on ASCII whitespace.
pub fn expected_counts(input: &Path) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for entry in std::fs::read_dir(input).expect("list input") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read input");
        for w in text.split_ascii_whitespace() {
            *counts.entry(w.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}

/// Occurrences of each word in `files`, split on ASCII whitespace.
pub fn expected_counts_of(files: &[&Path]) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for f in files {
        let text = std::fs::read_to_string(f).expect("read input");
        for w in text.split_ascii_whitespace() {
            *counts.entry(w.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}

/// Every `word<TAB>count` line of every file under `output`.
pub fn output_counts(output: &Path) -> HashMap<String, Vec<u64>> {
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    if !output.exists() {
        return seen;
    }
    for entry in std::fs::read_dir(output).expect("list output") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read output");
        for line in text.lines() {
            let (w, c) = line
                .split_once('\t')
                .unwrap_or_else(|| panic!("malformed line {line:?}"));
            seen.entry(w.to_owned()).or_default().push(
                c.parse()
                    .unwrap_or_else(|_| panic!("bad count in {line:?}")),
            );
        }
    }
    seen
}

/// Checks that the output holds, for every word, exactly the counts 1..N
/// once each, N being its occurrences in the input. Returns the line count.
pub fn verify_exactly_once(input: &Path, output: &Path) -> u64 {
    verify_counts(&expected_counts(input), output_counts(output))
}

/// Checks that `seen` holds, for every word, exactly the counts 1..N once
/// each, N being `expected[word]`, and no other word. Returns the lines.
pub fn verify_counts(expected: &HashMap<String, u64>, mut seen: HashMap<String, Vec<u64>>) -> u64 {
    let mut problems = BTreeMap::new();
    let mut lines = 0;
    for (word, n) in expected {
        let mut counts = seen.remove(word).unwrap_or_default();
        lines += counts.len() as u64;
        counts.sort_unstable();
        if counts != (1..=*n).collect::<Vec<_>>() {
            let dups = counts.windows(2).filter(|w| w[0] == w[1]).count();
            problems.insert(
                word.clone(),
                format!(
                    "expected 1..={n}, got {} lines ({dups} duplicates)",
                    counts.len()
                ),
            );
        }
    }
    for word in seen.keys() {
        problems.insert(word.clone(), "not in the input".into());
    }
    assert!(
        problems.is_empty(),
        "{} words wrong, e.g. {:?}",
        problems.len(),
        problems.iter().take(5).collect::<Vec<_>>()
    );
    lines
}

pub fn wordcount(args: &[&str], dirs: &Dirs) -> Command {
    wordcount_at(args, &dirs.input, &dirs.output, &dirs.state)
}

/// `wordcount ARGS` on these input, output and state paths.
pub fn wordcount_at(args: &[&str], input: &Path, output: &Path, state: &Path) -> Command {
    let mut c = Command::new(WORDCOUNT);
    c.args(args)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .arg("--state")
        .arg(state)
        .env("RUST_LOG", "warn")
        .env_remove("FAILPOINTS")
        .stdin(Stdio::null());
    c
}

/// The input files of `dirs`, in name order.
pub fn input_files(dirs: &Dirs) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(&dirs.input)
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
}

pub struct Dirs {
    pub _tmp: tempfile::TempDir,
    pub input: PathBuf,
    pub output: PathBuf,
    pub state: PathBuf,
}

pub fn dirs(files: usize, words: usize, seed: u64) -> Dirs {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = make_input(tmp.path(), files, words, seed);
    Dirs {
        output: tmp.path().join("out"),
        state: tmp.path().join("state"),
        input,
        _tmp: tmp,
    }
}

/// Runs `cmd` to its end: its exit code and standard error.
pub fn fails(cmd: &mut Command) -> (Option<i32>, String) {
    let out = cmd.output().expect("spawn");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs to completion and asserts exit 0.
pub fn run_ok(cmd: &mut Command) {
    assert_success(&cmd.output().expect("spawn"));
}

/// True if the process was killed by a signal (abort or kill -9).
pub fn died(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal().is_some()
}

/// The seed of a crash test's randomness: `WEIRDEV_CRASH_SEED`, or a new
/// one, printed so that a failing run can be repeated.
pub fn crash_seed() -> u64 {
    let seed = std::env::var("WEIRDEV_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("seed {seed} (set WEIRDEV_CRASH_SEED to repeat)");
    seed
}

/// What [`kill_9_at_random`] did.
pub struct Kills {
    pub kills: u32,
    pub runs: u32,
    /// The output's bytes after each kill.
    pub progress: Vec<u64>,
}

/// Starts `run(interval)` (a checkpoint interval of 2 to 40 ms, drawn for
/// each run, so that kills land in every phase: processing, flushing,
/// fsync, the commit batch, recovery and start-up) and kills it with
/// `kill -9` after 5 ms to `max_delay` ms, until `kills` kills are done;
/// then runs it once more to its end. A run that ends before its kill
/// must succeed: `verify` checks its output, which is then removed with
/// `state`, so that the kills go on from a fresh start.
pub fn kill_9_at_random(
    kills: u32,
    max_delay: Duration,
    rng: &mut impl Rng,
    output: &Path,
    state: &Path,
    mut run: impl FnMut(u32) -> Command,
    verify: impl Fn(),
) -> Kills {
    let mut done = Kills {
        kills: 0,
        runs: 0,
        progress: Vec::new(),
    };
    let max_ms = max_delay.as_millis().max(6) as u64;
    loop {
        done.runs += 1;
        let interval = rng.random_range(2..40u32);
        let mut child = spawn(run(interval));
        if done.kills >= kills {
            assert_success(&child.wait_with_output().expect("wait"));
            return done;
        }
        let delay = Duration::from_millis(rng.random_range(5..max_ms));
        let status = match kill_9_at(&mut child, Instant::now() + delay) {
            Ending::Killed => {
                done.kills += 1;
                done.progress.push(output_bytes(output));
                continue;
            }
            // It ended before the random moment, or just as the kill came.
            Ending::Exited(status) => status,
        };
        let err = child.stderr.take().map(std::io::read_to_string);
        assert!(status.success(), "run failed: {status:?} {err:?}");
        verify();
        std::fs::remove_dir_all(output).expect("reset output");
        std::fs::remove_dir_all(state).expect("reset state");
    }
}

/// How a run ended when the test sent it `kill -9`.
pub enum Ending {
    /// The signal killed it.
    Killed,
    /// It had already exited on its own (a zombie ignores the signal):
    /// the status is its own.
    Exited(ExitStatus),
}

/// Starts `run()` `kills` times, each with its stderr in `log`, and kills it
/// with `kill -9` after a random 300 to 2,500 ms; a run that ends by itself
/// first fails the test, with its log.
pub fn kill_9_repeatedly(
    kills: usize,
    rng: &mut impl Rng,
    log: &Path,
    mut run: impl FnMut() -> Command,
) {
    for _ in 0..kills {
        let mut cmd = run();
        cmd.stderr(std::fs::File::create(log).expect("log"));
        let mut child = KillOnDrop(cmd.spawn().expect("spawn"));
        let at = Instant::now() + Duration::from_millis(rng.random_range(300..2_500));
        if let Ending::Exited(status) = kill_9_at(&mut child.0, at) {
            panic!(
                "{} exited by itself ({status}): {}",
                cmd.get_program().to_string_lossy(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

/// Waits until `at` unless the run ends first, then sends `kill -9` and
/// reaps the process. A run that ended on its own, even in the moment
/// between the last look and the signal, reports its own status: the caller
/// treats it as a finished run, not as a kill.
pub fn kill_9_at(child: &mut Child, at: Instant) -> Ending {
    use std::os::unix::process::ExitStatusExt;
    while Instant::now() < at {
        if let Some(status) = child.try_wait().expect("poll") {
            return Ending::Exited(status);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if let Some(status) = child.try_wait().expect("poll") {
        return Ending::Exited(status);
    }
    child.kill().expect("kill -9");
    let status = child.wait().expect("reap");
    if status.signal() == Some(9) {
        Ending::Killed
    } else {
        Ending::Exited(status)
    }
}

pub fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// Total bytes of the files under `output` (committed or not).
pub fn output_bytes(output: &Path) -> u64 {
    std::fs::read_dir(output)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The live checkpoint as `checkpoints inspect latest` prints it: source
/// positions and sink committed lengths.
pub struct Committed {
    pub epoch: u64,
    pub sources: HashMap<String, u64>,
    pub sinks: HashMap<String, u64>,
}

pub fn inspect(args: &[&str], state: &Path) -> Option<Committed> {
    let out = Command::new(WORDCOUNT)
        .args(["checkpoints", "inspect"])
        .args(args)
        .arg("--state")
        .arg(state)
        .output()
        .expect("spawn inspect");
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).expect("utf8");
    let mut c = Committed {
        epoch: 0,
        sources: HashMap::new(),
        sinks: HashMap::new(),
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("checkpoint ") {
            c.epoch = rest.split_whitespace().next()?.parse().ok()?;
        } else if let Some((name, rest)) = line.trim().split_once('\t') {
            let number = |i: usize| rest.split_whitespace().nth(i)?.parse::<u64>().ok();
            if rest.starts_with("position") {
                c.sources.insert(name.to_owned(), number(1)?);
            } else if rest.starts_with("committed length") {
                c.sinks.insert(name.to_owned(), number(2)?);
            }
        }
    }
    Some(c)
}

/// I1 checked from outside: the committed prefix of every output file holds
/// exactly the counts of the committed prefix of every input file.
pub fn verify_committed_prefix(input: &Path, output: &Path, c: &Committed) {
    let mut expected: HashMap<String, u64> = HashMap::new();
    for (file, pos) in &c.sources {
        let bytes = std::fs::read(input.join(file)).expect("read input");
        let prefix = std::str::from_utf8(&bytes[..*pos as usize]).expect("utf8");
        assert!(
            prefix.is_empty() || prefix.ends_with('\n'),
            "position {pos} of {file} is not at a line start"
        );
        for w in prefix.split_ascii_whitespace() {
            *expected.entry(w.to_owned()).or_insert(0) += 1;
        }
    }
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    for (file, len) in &c.sinks {
        let bytes = std::fs::read(output.join(file)).expect("read output");
        assert!(
            bytes.len() as u64 >= *len,
            "{file} shorter than its committed length"
        );
        let text = std::str::from_utf8(&bytes[..*len as usize]).expect("utf8");
        for line in text.lines() {
            let (w, n) = line.split_once('\t').expect("tsv");
            seen.entry(w.to_owned())
                .or_default()
                .push(n.parse().expect("count"));
        }
    }
    assert_eq!(
        expected.len(),
        seen.len(),
        "words in committed input vs committed output"
    );
    for (w, n) in expected {
        let mut counts = seen.remove(&w).unwrap_or_default();
        counts.sort_unstable();
        assert_eq!(
            counts,
            (1..=n).collect::<Vec<_>>(),
            "committed counts of {w}"
        );
    }
}

/// After a replay from checkpoint `from` of a run that had committed `live`,
/// the output is the old timeline (each word 1..N) followed, in each file,
/// by the new one (each word c+1..N, c its count at `from`).
pub fn verify_replay_output(input: &Path, output: &Path, live: &Committed, from: &Committed) {
    let total = expected_counts(input);
    let mut at_from: HashMap<String, u64> = HashMap::new();
    for (file, pos) in &from.sources {
        let bytes = std::fs::read(input.join(file)).expect("read input");
        for w in std::str::from_utf8(&bytes[..*pos as usize])
            .expect("utf8")
            .split_ascii_whitespace()
        {
            *at_from.entry(w.to_owned()).or_insert(0) += 1;
        }
    }
    let mut old: HashMap<String, Vec<u64>> = HashMap::new();
    let mut new: HashMap<String, Vec<u64>> = HashMap::new();
    for entry in std::fs::read_dir(output).expect("list output") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let bytes = std::fs::read(&path).expect("read output");
        let split = live.sinks.get(&name).copied().unwrap_or(0) as usize;
        for (part, into) in [(&bytes[..split], &mut old), (&bytes[split..], &mut new)] {
            for line in std::str::from_utf8(part).expect("utf8").lines() {
                let (w, n) = line.split_once('\t').expect("tsv");
                into.entry(w.to_owned())
                    .or_default()
                    .push(n.parse().expect("count"));
            }
        }
    }
    for (w, n) in &total {
        let mut o = old.remove(w).unwrap_or_default();
        o.sort_unstable();
        assert_eq!(o, (1..=*n).collect::<Vec<_>>(), "old timeline of {w}");
        let c = at_from.get(w).copied().unwrap_or(0);
        let mut nw = new.remove(w).unwrap_or_default();
        nw.sort_unstable();
        assert_eq!(nw, (c + 1..=*n).collect::<Vec<_>>(), "new timeline of {w}");
    }
}

/// Asserts that a finished command succeeded, showing its stderr if not.
pub fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stdout of `wordcount ARGS STATE`, asserting success.
pub fn cli_output(args: &[&str], state: &Path) -> String {
    let out = Command::new(WORDCOUNT)
        .args(args)
        .arg(state)
        .output()
        .expect("spawn");
    assert_success(&out);
    String::from_utf8(out.stdout).expect("utf8")
}

/// Every line of every file under `dir`, sorted.
pub fn sorted_lines(dir: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_dir(dir)
        .expect("list output")
        .flat_map(|e| {
            std::fs::read_to_string(e.expect("entry").path())
                .expect("read output")
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    lines
}

/// Kills (SIGKILL) and reaps the child when dropped, so that a failing test
/// leaves no process behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child's log file, whose last lines are printed when the test fails
/// (dropped while panicking), so that a hang in CI leaves its trace.
pub struct LogOnFailure(pub PathBuf);

impl LogOnFailure {
    /// A new log file `name` under `dir`, for a child's stderr.
    pub fn create(dir: &Path, name: &str) -> (Self, std::fs::File) {
        let path = dir.join(name);
        let file = std::fs::File::create(&path).expect("create log");
        (LogOnFailure(path), file)
    }
}

impl Drop for LogOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let from = lines.len().saturating_sub(200);
            eprintln!("--- last lines of {} ---", self.0.display());
            for l in &lines[from..] {
                eprintln!("{l}");
            }
        }
    }
}

/// Bytes process `pid` has read so far (`rchar` of /proc/PID/io).
pub fn bytes_read_by(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("rchar: "))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The id of the oldest retained checkpoint, from `checkpoints list`.
pub fn first_retained(state: &Path) -> String {
    let list = cli_output(&["checkpoints", "list", "--state"], state);
    list.lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no retained checkpoint: {list}"))
        .to_owned()
}

/// Runs `wordcount ARGS` with 2 ms epochs and `FAILPOINTS=spec`, expecting
/// the abort at that crash point. A 1 MiB cache ends an epoch once its
/// writes fill half of it, so the input takes many epochs even when fsyncs
/// are slow (as under parallel tests) and the epochs' interval is not met.
pub fn crash_with(d: &Dirs, args: &[&str], spec: &str) {
    let out = wordcount(args, d)
        .args(["--set", "checkpoint.interval_ms=2", "--set", "cache_mb=1"])
        .env("FAILPOINTS", spec)
        .output()
        .expect("spawn");
    assert!(
        died(out.status),
        "expected an abort at {spec}, got {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let point = spec.split('=').next().unwrap_or(spec);
    assert!(
        stderr.contains(point),
        "abort did not come from {point}: {stderr}"
    );
}

/// Waits until the live checkpoint of `d` commits `lines` output lines
/// while `child` runs: lines written are not committed yet, and an epoch
/// aborted and redone (a lost group membership, a broker away) cuts them
/// back.
pub fn wait_for_committed_lines(d: &Dirs, lines: usize, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let committed: usize = inspect(&["latest"], &d.state).map_or(0, |c| {
            c.sinks
                .iter()
                .map(|(file, len)| {
                    let bytes = std::fs::read(d.output.join(file)).unwrap_or_default();
                    let upto = usize::try_from(*len).unwrap_or(usize::MAX).min(bytes.len());
                    bytes[..upto].iter().filter(|b| **b == b'\n').count()
                })
                .sum()
        });
        if committed >= lines {
            assert_eq!(committed, lines, "more lines than words");
            return;
        }
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the pipeline exited"
        );
        assert!(
            Instant::now() < deadline,
            "stuck at {committed} of {lines} committed lines"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the output of `d` holds `lines` lines (committed output of
/// whole epochs: files grow at barriers), and no more; fails if `child`
/// exits first or it takes two minutes.
pub fn wait_for_lines(d: &Dirs, lines: usize, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n: usize = output_counts(&d.output).values().map(Vec::len).sum();
        if n >= lines {
            assert_eq!(n, lines, "more lines than words");
            return;
        }
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the pipeline exited"
        );
        assert!(Instant::now() < deadline, "stuck at {n} of {lines} lines");
        std::thread::sleep(Duration::from_millis(20));
    }
}
