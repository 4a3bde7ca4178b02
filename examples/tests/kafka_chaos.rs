//! Several exactly-once instances of one application under chaos, against
//! the real broker that `dev/kafka` runs (issue 16): three instances, each
//! on its own state directory, share an 8-partition input while it is
//! produced in parts; at random moments one is killed (`kill -9`) and
//! restarted, one leaves cleanly (SIGTERM) and comes back later, a fourth
//! joins with an empty state directory, and the broker restarts once.
//! Then every instance runs bounded (`--until-idle-ms`) to the end and
//! exits 0. The witnesses are Kafka's own tools: the console consumer
//! (`read_committed`) sees every count 1..N exactly once, and
//! `kafka-consumer-groups` shows the group at the input's end and, during
//! the chaos, several members holding partitions.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use common::kafka::{
    assert_group_at_end, broker, committed_counts, create_topic, group_members, produce, unique,
    wordcount_idle,
};
use common::KillOnDrop;

/// The input's partitions.
const PARTITIONS: u32 = 8;
/// Words in all, produced in `PARTS` parts while the instances run.
const WORDS: usize = 1_000_000;
const PARTS: usize = 10;
/// Kills at the least, over the instances.
const KILLS: usize = 30;

/// One instance's place: its state directory and log, and its process
/// while one runs.
struct Slot {
    state: PathBuf,
    log: PathBuf,
    process: Option<KillOnDrop>,
    /// Processes started on this slot.
    starts: usize,
    /// The log's length when its process started.
    log_at_start: u64,
}

struct Chaos {
    input: String,
    output: String,
    app: String,
    slots: Vec<Slot>,
}

impl Chaos {
    /// Starts an instance on slot `i`, unbounded, or bounded by
    /// `--until-idle-ms` when `idle_ms` is given.
    fn start(&mut self, i: usize, idle_ms: Option<u64>) {
        let slot = &mut self.slots[i];
        slot.starts += 1;
        slot.log_at_start = log_len(&slot.log);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&slot.log)
            .expect("log file");
        let mut cmd = wordcount_idle(&self.input, &self.output, &self.app, &slot.state, idle_ms);
        cmd.args(["--set", "checkpoint.interval_ms=100"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        slot.process = Some(KillOnDrop(cmd.spawn().expect("spawn")));
    }

    /// Fails the test, with the instance's log, if slot `i`'s process
    /// ended by itself. One exception: a process that was starting when
    /// the broker went down fails with "check that the brokers are
    /// reachable" (a run that cannot reach its broker at start is refused,
    /// naming it); a supervisor starts it again, and so does this test.
    /// Returns whether it was started again so.
    fn check_alive(&mut self, i: usize, broker_down_lately: bool) -> bool {
        let slot = &mut self.slots[i];
        if let Some(p) = &mut slot.process {
            if let Some(status) = p.0.try_wait().expect("poll") {
                let log = tail(&slot.log);
                if broker_down_lately
                    && status.code() == Some(1)
                    && log.contains("check that the brokers are reachable")
                {
                    eprintln!("instance {i} could not reach the restarting broker at start; started again: {log}");
                    self.start(i, None);
                    return true;
                }
                panic!("instance {i} exited by itself ({status}) during the chaos: {log}");
            }
        }
        false
    }

    fn running(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|i| self.slots[*i].process.is_some())
            .collect()
    }

    /// `kill -9` of slot `i`'s process.
    fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.slots[i].process.take() {
            let _ = p.0.kill();
            let _ = p.0.wait();
        }
    }

    /// SIGTERM to slot `i`'s process, which must exit 0 (it commits its
    /// open epoch and leaves the group, handing its tasks over). A process
    /// that the signal reached before it logged anything may have been
    /// too early for its handler (still loading), and ends by the signal.
    fn stop(&mut self, i: usize) {
        use std::os::unix::process::ExitStatusExt;
        let slot = &mut self.slots[i];
        if let Some(mut p) = slot.process.take() {
            let pid = p.0.id().to_string();
            common::run_ok(Command::new("kill").args(["-TERM", &pid]));
            let status = p.0.wait().expect("wait");
            let before_its_handler =
                status.signal() == Some(15) && log_len(&slot.log) == slot.log_at_start;
            assert!(
                status.success() || before_its_handler,
                "instance {i} exited {status} on SIGTERM: {}",
                tail(&slot.log)
            );
        }
    }
}

fn log_len(log: &Path) -> u64 {
    std::fs::metadata(log).map(|m| m.len()).unwrap_or(0)
}

/// The last lines of a log, for a failure's message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[test]
fn instances_share_an_application_exactly_once_through_kills_leaves_a_join_and_a_broker_restart() {
    let started = Instant::now();
    let d = common::dirs(PARTS, WORDS, 181);
    let mut parts = common::input_files(&d).into_iter();
    let input = create_topic("words", PARTITIONS);
    produce(&input, &parts.next().expect("a part"));
    let output = create_topic("counts", 4);
    let app = unique("chaos-group");
    let slot = |name: &str| Slot {
        state: d._tmp.path().join(format!("state-{name}")),
        log: d._tmp.path().join(format!("{name}.log")),
        process: None,
        starts: 0,
        log_at_start: 0,
    };
    let mut chaos = Chaos {
        input: input.clone(),
        output: output.clone(),
        app: app.clone(),
        slots: vec![slot("a"), slot("b"), slot("c")],
    };
    for i in 0..3 {
        chaos.start(i, None);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(rand::rng().random());
    let (mut kills, mut leaves, mut sharing) = (0, 0, 0usize);
    let mut broker_restarted = false;
    // When the broker came back, and how many starts it refused.
    let mut broker_back: Option<Instant> = None;
    let mut refused_starts = 0;
    let mut events = 0usize;
    while kills < KILLS || parts.len() > 0 || !broker_restarted || chaos.slots.len() < 4 {
        events += 1;
        std::thread::sleep(Duration::from_millis(rng.random_range(100..1800)));
        for i in chaos.running() {
            let lately = broker_back.is_some_and(|t| t.elapsed() < Duration::from_secs(60));
            if chaos.check_alive(i, lately) {
                refused_starts += 1;
            }
        }
        // Every few events: who holds what, as the group's coordinator says.
        if events.is_multiple_of(4) {
            let holding = group_members(&app)
                .iter()
                .filter(|m| m.partitions > 0)
                .count();
            sharing = sharing.max(holding);
        }
        let stopped: Vec<usize> = (0..chaos.slots.len())
            .filter(|i| chaos.slots[*i].process.is_none())
            .collect();
        match rng.random_range(0..10) {
            // Back after a leave or a kill.
            _ if !stopped.is_empty() && (chaos.running().is_empty() || rng.random_bool(0.5)) => {
                chaos.start(stopped[rng.random_range(0..stopped.len())], None);
            }
            0..=5 => {
                let running = chaos.running();
                let i = running[rng.random_range(0..running.len())];
                chaos.kill(i);
                kills += 1;
                // Restarted at once, or after a while (its partitions
                // move to the others when its session ends).
                if rng.random_bool(0.7) {
                    chaos.start(i, None);
                }
            }
            6 => {
                let running = chaos.running();
                if running.len() > 1 {
                    let i = running[rng.random_range(0..running.len())];
                    chaos.stop(i);
                    leaves += 1;
                }
            }
            7 | 8 => {
                if let Some(part) = parts.next() {
                    produce(&input, &part);
                }
            }
            _ => {
                if chaos.slots.len() < 4 && kills >= KILLS / 3 {
                    // A new machine: an empty state directory.
                    chaos.slots.push(slot("d"));
                    chaos.start(3, None);
                } else if !broker_restarted && kills >= KILLS / 2 {
                    let _ = broker("stop");
                    std::thread::sleep(Duration::from_millis(rng.random_range(0..3000)));
                    let _ = broker("start");
                    broker_restarted = true;
                    broker_back = Some(Instant::now());
                }
            }
        }
    }
    let chaos_s = started.elapsed().as_secs_f64();

    // The end: every instance stops cleanly, then all run bounded to the
    // input's end together and exit 0.
    for i in chaos.running() {
        chaos.check_alive(i, false);
        chaos.stop(i);
    }
    for i in 0..chaos.slots.len() {
        chaos.start(i, Some(3000));
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    for (i, slot) in chaos.slots.iter_mut().enumerate() {
        let mut p = slot.process.take().expect("a bounded run");
        let status = loop {
            if let Some(s) = p.0.try_wait().expect("poll") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "instance {i} did not end: {}",
                tail(&slot.log)
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(
            status.success(),
            "instance {i}'s bounded run exited {status}: {}",
            tail(&slot.log)
        );
    }
    let expected = common::expected_counts(&d.input);
    let records = common::verify_counts(&expected, committed_counts(&output));
    assert_eq!(records, WORDS as u64);
    assert_group_at_end(&app, &input, PARTITIONS as usize);
    let starts: usize = chaos.slots.iter().map(|s| s.starts).sum();
    eprintln!(
        "{kills} kills, {leaves} leaves, 1 join with empty state, 1 broker restart, {starts} processes started ({refused_starts} refused at start while the broker restarted); {records} records read_committed; at most {sharing} members holding partitions at once; chaos {chaos_s:.1} s, in all {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        sharing >= 2,
        "the group never showed two members holding partitions"
    );
}
