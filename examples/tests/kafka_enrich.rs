//! The stream-table join (`enrich_orders`) against the real broker: killed
//! with `kill -9` again and again over half a million orders in four
//! partitions, out of order within the watermark's delay, joined with a
//! customers table that changes and loses keys as they come, every order
//! is read `read_committed` exactly once, keyed by its id, enriched with
//! the customer's value as of its time, as an independent computation in
//! this test has it.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use common::kafka::{bootstrap, committed_records, create_topic, produce, unique};

const ENRICH_ORDERS: &str = env!("CARGO_BIN_EXE_enrich_orders");

/// A customer's value: `(name, country)`, or `None` once deleted.
type Customer = Option<(String, String)>;

/// An hour ago: the orders' times become the output's Kafka timestamps,
/// which the broker's time-based retention would delete if they were old.
fn an_hour_ago() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    now - 3_600_000
}

struct Topics {
    orders: String,
    customers: String,
    output: String,
    app: String,
}

fn topics(prefix: &str) -> Topics {
    Topics {
        orders: create_topic(&format!("{prefix}-orders"), 4),
        customers: create_topic(&format!("{prefix}-customers"), 4),
        output: create_topic(&format!("{prefix}-enriched"), 4),
        app: unique(prefix),
    }
}

/// `enrich_orders` on `t`, with state in `state`; `extra` arguments last.
fn enrich_orders(t: &Topics, state: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(ENRICH_ORDERS);
    c.arg("run")
        .args(["--brokers", bootstrap()])
        .args(["--orders-topic", &t.orders])
        .args(["--customers-topic", &t.customers])
        .args(["--output-topic", &t.output])
        .args(["--application-id", &t.app])
        .args([
            "--set",
            "checkpoint.interval_ms=100",
            "--set",
            "key_groups=16",
            // No partition is ever taken for idle: every customer update
            // is read before the orders after it are joined.
            "--set",
            "watermark.idle_ms=600000",
        ])
        .arg("--state")
        .arg(state)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    c
}

/// The customer updates, in the order of their times: `(time, id, value)`.
fn customer_updates(rng: &mut impl Rng, from: i64, span: i64) -> Vec<(i64, String, Customer)> {
    let countries = ["FR", "DE", "NL", "SE", "PT", "JP"];
    let mut updates = Vec::new();
    // Most customers exist before the first order.
    for c in 0..1_000 {
        if rng.random_bool(0.8) {
            let value = (format!("name{c}v0"), countries[c % 6].to_owned());
            updates.push((from - 10_000, format!("c{c}"), Some(value)));
        }
    }
    for i in 0..6_000 {
        let c = rng.random_range(0..1_000);
        let at = from + rng.random_range(0..span);
        let value = (!rng.random_bool(0.05)).then(|| {
            (
                format!("name{c}v{}", i + 1),
                countries[(c + i) % 6].to_owned(),
            )
        });
        updates.push((at, format!("c{c}"), value));
    }
    // Several updates of a key may share a time: the later one wins, in
    // the join as in the partition.
    updates.sort_by_key(|(at, _, _)| *at);
    updates
}

/// Each customer's value as of `at`, given its updates in order.
fn as_of(versions: &[(i64, Customer)], at: i64) -> Option<&(String, String)> {
    versions
        .iter()
        .rev()
        .find(|(t, _)| *t <= at)
        .and_then(|(_, v)| v.as_ref())
}

#[test]
fn every_order_is_read_committed_once_with_its_customer_across_30_kills() {
    const ORDERS: usize = 500_000;
    const KILLS: usize = 30;
    let seed: u64 = rand::rng().random();
    eprintln!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().expect("tmp");
    let t = topics("enrich-chaos");
    let from = an_hour_ago();

    // One sequence of orders, each up to 2 s older than the newest before
    // it (within the join's 5 s), spread round-robin over the partitions.
    let mut orders = Vec::with_capacity(ORDERS);
    let mut text = String::with_capacity(ORDERS * 90);
    let mut now = from;
    for i in 0..ORDERS {
        now += rng.random_range(0..10);
        let ts = now - rng.random_range(0..2_000);
        // c1000 and above never exist: joined with null.
        let customer = format!("c{}", rng.random_range(0..1_100));
        let amount = f64::from(rng.random_range(1..100_000u32)) / 100.0;
        text.push_str(&format!(
            "{{\"order_id\":\"o{i}\",\"customer_id\":\"{customer}\",\"amount\":{amount},\"ts\":{ts}}}\n"
        ));
        orders.push((format!("o{i}"), customer, amount, ts));
    }
    let updates = customer_updates(&mut rng, from, now - from);

    // The customers, keyed, each at its time, in time order.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("producer");
    let mut versions: HashMap<String, Vec<(i64, Customer)>> = HashMap::new();
    for (at, id, value) in &updates {
        let json = value
            .as_ref()
            .map(|(name, country)| format!("{{\"name\":\"{name}\",\"country\":\"{country}\"}}"));
        let mut record = BaseRecord::<str, str>::to(&t.customers)
            .key(id.as_str())
            .timestamp(*at);
        if let Some(json) = &json {
            record = record.payload(json.as_str());
        }
        producer.send(record).expect("send");
        producer.poll(Duration::ZERO);
        versions
            .entry(id.clone())
            .or_default()
            .push((*at, value.clone()));
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    let lines = tmp.path().join("orders.json");
    std::fs::write(&lines, text).expect("write");
    produce(&t.orders, &lines);

    let state = tmp.path().join("state");
    let log = tmp.path().join("enrich_orders.log");
    let started = Instant::now();
    common::kill_9_repeatedly(KILLS, &mut rng, &log, || enrich_orders(&t, &state, &[]));
    // The last run reads to the end, and joins every order still waiting.
    let out = enrich_orders(&t, &state, &["--until-idle-ms", "3000"])
        .stderr(Stdio::piped())
        .output()
        .expect("final run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{KILLS} kills in {:?}", started.elapsed());

    let mut got = committed_orders(&t.output);
    if got.len() < ORDERS {
        // The console consumer stops after 10 s without a record: on a busy
        // broker a read can end early. An order really missing stays so.
        eprintln!("read {} of {ORDERS} orders; reading again", got.len());
        got = committed_orders(&t.output);
    }
    let mut wrong = Vec::new();
    let mut unknown = 0;
    for (id, customer, amount, ts) in &orders {
        let want = versions
            .get(customer)
            .and_then(|v| as_of(v, *ts))
            .map(|(name, country)| serde_json::json!({"name": name, "country": country}))
            .unwrap_or(serde_json::Value::Null);
        unknown += usize::from(want.is_null());
        let expected = serde_json::json!({
            "order_id": id, "customer_id": customer, "amount": amount, "ts": ts, "customer": want
        });
        match got.get(id) {
            Some(v) if *v == expected => {}
            other => wrong.push((id.clone(), other.cloned(), expected)),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {ORDERS} orders missing or enriched wrongly, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(3)]
    );
    assert_eq!(got.len(), ORDERS, "no order that was not in the input");
    eprintln!("{unknown} orders without a customer");
    assert!(unknown > 0 && unknown < ORDERS / 2, "{unknown}");
}

/// The enriched orders `topic` holds, read `read_committed`, by id; an
/// order twice, or keyed by anything but its id, fails.
fn committed_orders(topic: &str) -> BTreeMap<String, serde_json::Value> {
    let mut got = BTreeMap::new();
    for (key, value) in committed_records(topic) {
        let v: serde_json::Value = serde_json::from_str(&value).expect("JSON");
        assert_eq!(
            v["order_id"].as_str(),
            Some(key.as_str()),
            "keyed by id: {value}"
        );
        assert!(got.insert(key, v).is_none(), "an order read twice: {value}");
    }
    got
}
