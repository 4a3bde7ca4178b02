//! The transactional producer against the real broker: a second producer
//! with the same transactional id fences the first, whose open transaction
//! is aborted and which can commit nothing more (I4). Kafka's own console
//! consumer, `read_committed`, is the witness.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use weir_connectors::kafka::{KafkaSettings, TxnProducer};
use weir_core::Error;

fn dev_kafka() -> PathBuf {
    // Cargo sets it when it runs a test too: a test binary built in a
    // target directory shared with another checkout finds this one's script.
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    crate_dir.join("../dev/kafka")
}

fn kafka(args: &[&str]) -> String {
    let out = Command::new(dev_kafka())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("dev/kafka");
    assert!(
        out.status.success(),
        "dev/kafka {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

#[test]
fn a_newer_producer_with_the_same_id_fences_the_older_one() {
    let bootstrap = kafka(&["start"]).trim().to_owned();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let topic = format!("fencing-{nanos}");
    let id = format!("weir-test-{nanos}");
    kafka(&[
        "tool",
        "kafka-topics",
        "--bootstrap-server",
        &bootstrap,
        "--create",
        "--topic",
        &topic,
        "--partitions",
        "1",
    ]);
    let settings = KafkaSettings::new(bootstrap.clone());
    let timeout = Duration::from_secs(30);
    let send = |p: &TxnProducer, v: &str| p.send(&topic, Some(0), b"k", Some(v.as_bytes()));

    let mut old = TxnProducer::new(&settings, &id, timeout).expect("first producer");
    old.begin().expect("begin");
    send(&old, "committed-by-old").expect("send");
    old.commit(None).expect("commit");
    old.begin().expect("begin");
    send(&old, "open-when-fenced").expect("send");

    // The replacement: its init aborts the old one's open transaction.
    let mut new = TxnProducer::new(&settings, &id, timeout).expect("second producer");
    let fenced = old.commit(None);
    assert!(
        matches!(fenced, Err(Error::Fenced(_))),
        "the old producer must be fenced: {fenced:?}"
    );
    new.begin().expect("begin");
    send(&new, "committed-by-new").expect("send");
    new.commit(None).expect("commit");

    let seen = kafka(&[
        "tool",
        "kafka-console-consumer",
        "--bootstrap-server",
        &bootstrap,
        "--topic",
        &topic,
        "--from-beginning",
        "--isolation-level",
        "read_committed",
        "--timeout-ms",
        "5000",
    ]);
    let values: Vec<&str> = seen.lines().collect();
    assert_eq!(values, vec!["committed-by-old", "committed-by-new"]);
}
