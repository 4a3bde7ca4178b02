//! The test broker and Kafka's own tools, for the Kafka tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub const BIN: &str = env!("CARGO_BIN_EXE_kafka_to_files");
pub const WC_BIN: &str = env!("CARGO_BIN_EXE_kafka_wordcount");

pub fn dev_kafka() -> PathBuf {
    // Cargo sets it when it runs a test too: a test binary built in a
    // target directory shared with another checkout finds this one's script.
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    crate_dir.join("../dev/kafka")
}

/// Starts the test broker once per test binary (idempotent across binaries).
pub fn bootstrap() -> &'static str {
    static B: OnceLock<String> = OnceLock::new();
    B.get_or_init(|| broker("start").trim().to_owned())
}

pub fn tool(args: &[&str], stdin: Option<&Path>) -> String {
    let mut c = Command::new(dev_kafka());
    c.arg("tool").args(args);
    if let Some(f) = stdin {
        c.stdin(std::fs::File::open(f).expect("stdin file"));
    } else {
        c.stdin(Stdio::null());
    }
    let out = c.output().expect("dev/kafka tool");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Lossy: a dead-letter topic holds bytes that are not UTF-8.
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("{prefix}-{nanos}")
}

/// Creates a topic of `partitions` and produces `lines` (spread round-robin).
pub fn topic_with(partitions: u32, lines_file: &Path) -> String {
    let topic = create_topic("words", partitions);
    produce(&topic, lines_file);
    topic
}

/// Creates a new topic named after `prefix`.
pub fn create_topic(prefix: &str, partitions: u32) -> String {
    let b = bootstrap();
    let topic = unique(prefix);
    tool(
        &[
            "kafka-topics",
            "--bootstrap-server",
            b,
            "--create",
            "--topic",
            &topic,
            "--partitions",
            &partitions.to_string(),
        ],
        None,
    );
    topic
}

/// Produces the lines of `lines_file` into `topic`, spread round-robin.
pub fn produce(topic: &str, lines_file: &Path) {
    tool(
        &[
            "kafka-console-producer",
            "--bootstrap-server",
            bootstrap(),
            "--topic",
            topic,
            "--command-property",
            "partitioner.class=org.apache.kafka.clients.producer.RoundRobinPartitioner",
        ],
        Some(lines_file),
    );
}

/// Runs `dev/kafka ARG` (start, stop), asserting success; returns its stdout.
pub fn broker(arg: &str) -> String {
    let out = Command::new(dev_kafka())
        .arg(arg)
        .output()
        .expect("dev/kafka");
    assert!(
        out.status.success(),
        "dev/kafka {arg}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

/// The `kafka_wordcount` binary for `input` -> `output` as application
/// `app` with state in `state`, bounded (`--until-idle-ms 1500`), with a
/// 50 ms checkpoint interval.
pub fn wordcount(input: &str, output: &str, app: &str, state: &Path) -> Command {
    wordcount_idle(input, output, app, state, Some(1500))
}

/// Like [`wordcount`], with `--until-idle-ms idle_ms`, or unbounded.
pub fn wordcount_idle(
    input: &str,
    output: &str,
    app: &str,
    state: &Path,
    idle_ms: Option<u64>,
) -> Command {
    let mut c = Command::new(WC_BIN);
    c.arg("run");
    if let Some(ms) = idle_ms {
        c.args(["--until-idle-ms".to_owned(), ms.to_string()]);
    }
    c.args([
        "--brokers",
        bootstrap(),
        "--input-topic",
        input,
        "--output-topic",
        output,
        "--application-id",
        app,
        "--set",
        "checkpoint.interval_ms=50",
        // 16 changelog partitions per application, not 128: the suite
        // creates dozens, and the broker restart test restarts them all.
        "--set",
        "key_groups=16",
        "--state",
    ])
    .arg(state)
    .env("RUST_LOG", "warn")
    .env_remove("FAILPOINTS")
    .stdin(Stdio::null());
    c
}

/// Everything in `topic`, read `read_committed` by Kafka's own console
/// consumer (the witness), printed with the formatter's `properties`.
fn read_committed(topic: &str, properties: &[&str]) -> String {
    let mut args = vec![
        "kafka-console-consumer",
        "--bootstrap-server",
        bootstrap(),
        "--topic",
        topic,
        "--from-beginning",
        "--isolation-level",
        "read_committed",
        "--timeout-ms",
        "10000",
    ];
    for p in properties {
        args.extend(["--formatter-property", p]);
    }
    tool(&args, None)
}

/// Every record a `read_committed` consumer reads from `topic`, as (key,
/// value) text, with Kafka's own console consumer as the witness.
pub fn committed_records(topic: &str) -> Vec<(String, String)> {
    read_committed(topic, &["print.key=true"])
        .lines()
        .map(|line| {
            let (k, v) = line
                .split_once('\t')
                .unwrap_or_else(|| panic!("malformed record {line:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// What a `read_committed` consumer reads from `topic` (key = word, value
/// = count), with Kafka's own console consumer as the witness.
pub fn committed_counts(topic: &str) -> HashMap<String, Vec<u64>> {
    let text = read_committed(topic, &["print.key=true"]);
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    for line in text.lines() {
        let (w, c) = line
            .split_once('\t')
            .unwrap_or_else(|| panic!("malformed record {line:?}"));
        seen.entry(w.to_owned()).or_default().push(
            c.parse()
                .unwrap_or_else(|_| panic!("bad count in {line:?}")),
        );
    }
    seen
}

/// Group `group`'s committed offsets of `topic`, per partition, as Kafka's
/// `kafka-consumer-groups --describe` shows them (partitions without one
/// are left out), with the log end offsets.
pub fn group_offsets(group: &str, topic: &str) -> BTreeMap<i32, (Option<u64>, u64)> {
    let described = tool(
        &[
            "kafka-consumer-groups",
            "--bootstrap-server",
            bootstrap(),
            "--describe",
            "--group",
            group,
        ],
        None,
    );
    described
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|c| c.len() >= 5 && c[1] == topic)
        .map(|c| {
            let p = c[2].parse().expect("partition");
            (
                p,
                (c[3].parse().ok(), c[4].parse().expect("log end offset")),
            )
        })
        .collect()
}

/// The log end offset of every partition of `topic`.
fn group_offsets_or_ends(topic: &str) -> BTreeMap<i32, u64> {
    let text = tool(
        &[
            "kafka-get-offsets",
            "--bootstrap-server",
            bootstrap(),
            "--topic",
            topic,
        ],
        None,
    );
    // topic:partition:offset
    text.lines()
        .filter_map(|l| {
            let mut c = l.rsplitn(3, ':');
            let end = c.next()?.parse().ok()?;
            let p = c.next()?.parse().ok()?;
            Some((p, end))
        })
        .collect()
}

/// Asserts that group `group` committed the end of every partition of `topic`.
pub fn assert_group_at_end(group: &str, topic: &str, partitions: usize) {
    let offsets = group_offsets(group, topic);
    assert_eq!(offsets.len(), partitions, "{offsets:?}");
    for (p, (committed, end)) in &offsets {
        assert_eq!(*committed, Some(*end), "partition {p}: {offsets:?}");
    }
}

/// Occurrences of each word in the records of `topic` below the offsets
/// `upto` (per partition; a partition not listed counts nothing).
pub fn input_counts_below(topic: &str, upto: &BTreeMap<i32, u64>) -> HashMap<String, u64> {
    // Every record of the topic (produced without transactions: one per
    // offset), so that the reader stops as soon as it has them all.
    let total: u64 = group_offsets_or_ends(topic).values().sum();
    let max = total.to_string();
    let text = tool(
        &[
            "kafka-console-consumer",
            "--bootstrap-server",
            bootstrap(),
            "--topic",
            topic,
            "--from-beginning",
            "--formatter-property",
            "print.partition=true",
            "--formatter-property",
            "print.offset=true",
            "--max-messages",
            &max,
            "--timeout-ms",
            "30000",
        ],
        None,
    );
    let mut counts = HashMap::new();
    for line in text.lines() {
        let mut cols = line.splitn(3, '\t');
        let (Some(p), Some(o), Some(value)) = (cols.next(), cols.next(), cols.next()) else {
            continue;
        };
        let p: i32 = p
            .trim_start_matches("Partition:")
            .parse()
            .expect("partition");
        let o: u64 = o.trim_start_matches("Offset:").parse().expect("offset");
        if upto.get(&p).is_some_and(|end| o < *end) {
            for w in value.split_ascii_whitespace() {
                *counts.entry(w.to_owned()).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// A run over the input files of some `Dirs` in two parts.
pub struct Parts {
    /// The input files, in order.
    pub files: Vec<PathBuf>,
    /// A 4-partition topic holding the first file.
    pub input: String,
    /// An empty 4-partition output topic.
    pub output: String,
    /// A new application id.
    pub app: String,
}

/// The input files of `d`, the first produced into a new 4-partition
/// topic, a new output topic, and a new application id named `prefix-...`.
pub fn first_part(d: &super::Dirs, prefix: &str) -> Parts {
    let files = super::input_files(d);
    let input = create_topic("words", 4);
    produce(&input, &files[0]);
    Parts {
        files,
        input,
        output: create_topic("counts", 4),
        app: unique(prefix),
    }
}

/// Waits until group `app` has committed the end of every one of the 4
/// partitions of `topic`, while `child` runs.
pub fn wait_for_group_at_end(app: &str, topic: &str, child: &mut super::KillOnDrop) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    loop {
        let o = group_offsets(app, topic);
        if o.len() == 4 && o.values().all(|(c, end)| *c == Some(*end)) {
            return;
        }
        assert!(
            child.0.try_wait().expect("poll").is_none(),
            "the pipeline exited"
        );
        assert!(std::time::Instant::now() < deadline, "stuck at {o:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The input file of `d` (one file) produced into a new topic of 4 partitions.
pub fn input_topic(d: &super::Dirs) -> (String, PathBuf) {
    let file = std::fs::read_dir(&d.input)
        .expect("ls")
        .next()
        .expect("one file")
        .expect("entry")
        .path();
    (topic_with(4, &file), file)
}

/// The partitions each key of `topic` was found in, as Kafka's console
/// consumer (`read_committed`) prints them.
pub fn partitions_of_keys(topic: &str) -> HashMap<String, BTreeSet<i32>> {
    let text = read_committed(
        topic,
        &[
            "print.partition=true",
            "print.key=true",
            "print.value=false",
        ],
    );
    let mut found: HashMap<String, BTreeSet<i32>> = HashMap::new();
    for line in text.lines() {
        let (partition, key) = line
            .strip_prefix("Partition:")
            .and_then(|l| l.split_once('\t'))
            .unwrap_or_else(|| panic!("malformed record {line:?}"));
        let partition = partition
            .parse()
            .unwrap_or_else(|_| panic!("bad partition in {line:?}"));
        found.entry(key.to_owned()).or_default().insert(partition);
    }
    found
}

/// Where Kafka's own producer (the Java clients' default partitioner)
/// puts each of `keys` in a new topic of `partitions`.
pub fn java_partitions(keys: &[&String], partitions: u32, scratch: &Path) -> HashMap<String, i32> {
    let topic = create_topic("witness", partitions);
    let lines: String = keys.iter().map(|k| format!("{k}\t1\n")).collect();
    let file = scratch.join("witness.txt");
    std::fs::write(&file, lines).expect("write the witness's input");
    tool(
        &[
            "kafka-console-producer",
            "--bootstrap-server",
            bootstrap(),
            "--topic",
            &topic,
            "--reader-property",
            "parse.key=true",
            "--reader-property",
            "key.separator=\t",
        ],
        Some(&file),
    );
    partitions_of_keys(&topic)
        .into_iter()
        .map(|(k, p)| {
            let only = p.first().copied().expect("a partition");
            (k, only)
        })
        .collect()
}

/// One member of a consumer group, as Kafka's own
/// `kafka-consumer-groups --describe --members --verbose` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Its `group.instance.id` (`-` for a dynamic member).
    pub instance: String,
    pub client: String,
    /// The partitions it holds.
    pub partitions: usize,
}

/// The active members of group `group` (none while it has none).
pub fn group_members(group: &str) -> Vec<GroupMember> {
    let described = tool(
        &[
            "kafka-consumer-groups",
            "--bootstrap-server",
            bootstrap(),
            "--describe",
            "--members",
            "--verbose",
            "--group",
            group,
        ],
        None,
    );
    let mut lines = described.lines().skip_while(|l| !l.starts_with("GROUP "));
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    // A table of fixed-width columns, some of which may be blank.
    let starts: Vec<(usize, &str)> = header
        .match_indices(|c: char| !c.is_whitespace())
        .filter(|(i, _)| *i == 0 || header[..*i].ends_with(' '))
        .map(|(i, _)| (i, header[i..].split_whitespace().next().unwrap_or_default()))
        .collect();
    let cell = |line: &str, name: &str| -> String {
        let Some(k) = starts.iter().position(|(_, n)| *n == name) else {
            return "-".to_owned();
        };
        let from = starts[k].0.min(line.len());
        let to = starts
            .get(k + 1)
            .map_or(line.len(), |(i, _)| (*i).min(line.len()));
        let text = line.get(from..to).unwrap_or_default().trim();
        if text.is_empty() {
            "-".to_owned()
        } else {
            text.to_owned()
        }
    };
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| GroupMember {
            instance: cell(l, "GROUP-INSTANCE-ID"),
            client: cell(l, "CLIENT-ID"),
            partitions: cell(l, "#PARTITIONS")
                .parse()
                .unwrap_or_else(|_| panic!("#PARTITIONS in {l:?} under {header:?}")),
        })
        .collect()
}

/// Waits until group `group` lists `expected` (in any order) while `child`
/// runs; returns the members then.
pub fn wait_for_members(
    group: &str,
    child: &mut super::KillOnDrop,
    expected: impl Fn(&[GroupMember]) -> bool,
) -> Vec<GroupMember> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let members = group_members(group);
        if expected(&members) {
            return members;
        }
        assert!(
            child.0.try_wait().expect("poll").is_none(),
            "the pipeline exited; the group lists {members:?}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the group never listed what was expected: {members:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A transactional producer of application `app` that added positions to
/// its open transaction and did not commit them: a process paused (or
/// killed) in the middle of its commit.
pub struct Zombie(rdkafka::producer::BaseProducer);

impl Zombie {
    /// Opens a transaction as `transactional_id` holding position `at` of
    /// every partition of `topic` for group `app`.
    pub fn open(app: &str, transactional_id: &str, topic: &str, at: i64) -> Self {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::producer::Producer;
        use rdkafka::{ClientConfig, Offset, TopicPartitionList};
        let t = std::time::Duration::from_secs(30);
        let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap())
            .set("transactional.id", transactional_id)
            .create()
            .expect("producer");
        producer.init_transactions(t).expect("init");
        producer.begin_transaction().expect("begin");
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap())
            .set("group.id", app)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in group_offsets(app, topic).keys() {
            tpl.add_partition_offset(topic, *p, Offset::Offset(at))
                .expect("offset");
        }
        let group = consumer.group_metadata().expect("group metadata");
        producer
            .send_offsets_to_transaction(&tpl, &group, t)
            .expect("offsets into the transaction");
        Zombie(producer)
    }

    /// Tries to commit the transaction.
    pub fn commit(&self) -> Result<(), rdkafka::error::KafkaError> {
        use rdkafka::producer::Producer;
        self.0
            .commit_transaction(std::time::Duration::from_secs(30))
    }

    /// Aborts the transaction.
    pub fn abort(self) {
        use rdkafka::producer::Producer;
        self.0
            .abort_transaction(std::time::Duration::from_secs(30))
            .expect("abort");
    }
}
