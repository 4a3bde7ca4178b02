//! The test broker and Kafka's own tools, for the Kafka tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub const BIN: &str = env!("CARGO_BIN_EXE_kafka_to_files");

pub fn dev_kafka() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dev/kafka")
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
    String::from_utf8(out.stdout).expect("utf8")
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
    let b = bootstrap();
    let topic = unique("words");
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
    produce(&topic, lines_file);
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
