//! Workload 9: orders joined with their customer from a table topic,
//! Kafka to Kafka, exactly once with a 100 ms commit interval: weir's
//! `enrich_orders` against the same topology in Kafka Streams
//! (`selectKey` + `repartition` + `KStream#leftJoin(KTable)` +
//! `selectKey`), over the same input.
//!
//! The customers are loaded first, each at a time before every order, so
//! that both systems join every order with its customer: Kafka Streams
//! reads the table's records first by their timestamps, weir's join takes
//! the value as of the order's time. One customer in eleven that orders
//! name does not exist: those orders are written with `"customer": null`.
//! Both outputs are checked: every order once, with as many nulls as the
//! input makes.
//!
//! weir's join writes an order once the customers' watermark passes its
//! time: at once when the customers are read to their end (idle), but an
//! order read before that waits for the watermark of both topics, which
//! the last orders would hold back. So once weir has committed every
//! order, one later order (and one later, keyless customer record, which
//! the join skips) goes to every partition. They are not counted. Kafka
//! Streams joins at once, and needs none.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::data::Rng;
use crate::kafka::{create_topics, Loader, Watcher};
use crate::proc::Proc;
use crate::scaleout::Group;
use crate::{wait_until, Bench, PARTITIONS, RUN_TIMEOUT};

/// The input of one system's run.
struct Inputs {
    orders: String,
    customers: String,
    /// Orders loaded, and how many of them name no customer.
    count: u64,
    unknown: u64,
    /// The latest order's time.
    last: i64,
}

impl Bench {
    /// Workload 9.
    pub(crate) fn joined(&mut self) -> Result<()> {
        let mut rate = BTreeMap::new();
        for system in ["weir", "kstreams"] {
            let name = format!("w9-{system}");
            let input = self.load_orders(&name)?;
            let output = self.topic(&name);
            create_topics(&self.brokers, &[(&output, PARTITIONS)])?;
            let state = self.dir(&name)?;
            // The orders read (the closing ones left out), those without
            // a customer, and when the last one came.
            let (orders, nulls) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
            let last_at = Arc::new(Mutex::new(None::<Instant>));
            let (o, n, l, count) = (orders.clone(), nulls.clone(), last_at.clone(), input.count);
            let on = Box::new(move |key: &[u8], value: &[u8], at: Instant| {
                if key.starts_with(b"closing-") {
                    return;
                }
                let null = serde_json::from_slice::<serde_json::Value>(value)
                    .is_ok_and(|v| v["customer"].is_null());
                n.fetch_add(u64::from(null), Ordering::Relaxed);
                if o.fetch_add(1, Ordering::Relaxed) + 1 == count {
                    *l.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
                }
            });
            let watcher = Watcher::start(&self.brokers, &output, PARTITIONS, Some(on))?;
            let cmd = self.enrich_orders_cmd(system, &input, &output, &state);
            let mut p = Proc::spawn(&name, cmd, &self.log(&name))?;
            if system == "weir" {
                let group = Group::new(&self.brokers, &output)?;
                let ends = group.ends(&input.orders)?;
                wait_until(RUN_TIMEOUT, &mut || {
                    p.check_alive()?;
                    let at = group.committed(&input.orders)?;
                    Ok(ends.iter().all(|(part, end)| at.get(part) >= Some(end)))
                })?;
                self.close_orders(&input)?;
            }
            let read = || *last_at.lock().unwrap_or_else(|p| p.into_inner());
            wait_until(RUN_TIMEOUT, &mut || {
                p.check_alive()?;
                Ok(read().is_some())
            })?;
            let at = read().context("no arrival time")?;
            let secs = (at - p.started).as_secs_f64();
            let exit = p.stop(Duration::from_secs(60))?;
            // Orders still arriving, if any, are more than there are.
            std::thread::sleep(Duration::from_millis(500));
            let (seen, nulls) = (
                orders.load(Ordering::Relaxed),
                nulls.load(Ordering::Relaxed),
            );
            drop(watcher);
            if seen != input.count || nulls != input.unknown {
                bail!(
                    "{name}: wrong output: {seen} orders, {nulls} without a customer (expected {}, {})",
                    input.count,
                    input.unknown
                );
            }
            rate.insert(system, input.count as f64 / secs);
            let ratio = match system {
                "weir" => String::new(),
                peer => format!("weir/{peer} {:.2}x", rate["weir"] / rate[peer]),
            };
            self.row(
                "9 stream-table join",
                system,
                "exactly-once 100 ms",
                format!("{:.0} orders/s ({secs:.2} s)", input.count as f64 / secs),
                ratio,
                Some(exit.peak_rss_mb),
            );
        }
        self.summary
            .insert("join_ratio", rate["weir"] / rate["kstreams"]);
        Ok(())
    }

    /// `enrich_orders` (weir) or the Kafka Streams peer, from `input` into
    /// `output`, which is also the application id.
    fn enrich_orders_cmd(
        &self,
        system: &str,
        input: &Inputs,
        output: &str,
        state: &std::path::Path,
    ) -> Command {
        let topics = [
            "--orders-topic",
            &input.orders,
            "--customers-topic",
            &input.customers,
        ];
        if system == "weir" {
            let mut c = Command::new(self.bin.join("enrich_orders"));
            c.args(["run", "--brokers", &self.brokers])
                .args(topics)
                .args(["--output-topic", output, "--application-id", output])
                .args(["--set", "checkpoint.interval_ms=100", "--state"])
                .arg(state);
            c
        } else {
            let mut c = Command::new(self.kstreams.join("run-enrich-orders"));
            c.args(["--brokers", &self.brokers])
                .args(topics)
                .args(["--output-topic", output, "--application-id", output])
                .args(["--commit-interval-ms", "100", "--state-dir"])
                .arg(state);
            c
        }
    }

    /// Loads the customers (keyed, each at a time before every order) and
    /// then the JSON orders, in time order but up to 2 s out of it, into
    /// topics named after `name`.
    fn load_orders(&self, name: &str) -> Result<Inputs> {
        let (orders, customers) = (
            self.topic(&format!("{name}-orders")),
            self.topic(&format!("{name}-customers")),
        );
        create_topics(
            &self.brokers,
            &[(&orders, PARTITIONS), (&customers, PARTITIONS)],
        )?;
        let known = self.sizes.join_customers;
        // Recent times: they become the output's Kafka timestamps, and the
        // broker's time-based retention deletes records older than 7 days.
        let mut now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64
            - 4 * 3_600_000;
        let mut table = Loader::new(&self.brokers, &customers, PARTITIONS, 20)?;
        let countries = ["FR", "DE", "NL", "SE", "PT", "JP"];
        for c in 0..known {
            let value = format!(
                "{{\"name\":\"customer {c}\",\"country\":\"{}\"}}",
                countries[(c % 6) as usize]
            );
            table.send_keyed(
                format!("c{c}").as_bytes(),
                Some(value.as_bytes()),
                now - 60_000,
            )?;
        }
        table.flush()?;
        let mut loader = Loader::new(&self.brokers, &orders, PARTITIONS, 20)?;
        let mut rng = Rng::new(9);
        let (count, mut unknown) = (self.sizes.join_orders, 0);
        let mut value = String::new();
        for i in 0..count {
            now += (rng.next_u64() % 4) as i64;
            let ts = now - (rng.next_u64() % 2_000) as i64;
            // One in eleven names a customer that does not exist.
            let customer = rng.next_u64() % (known + known / 10);
            unknown += u64::from(customer >= known);
            let cents = rng.next_u64() % 100_000;
            value.clear();
            value.push_str(&format!(
                "{{\"order_id\":\"o{i}\",\"customer_id\":\"c{customer}\",\"amount\":{}.{:02},\"ts\":{ts}}}",
                cents / 100,
                cents % 100
            ));
            loader.send(value.as_bytes())?;
        }
        loader.flush()?;
        println!("bench: loaded {known} customers into {customers} and {count} orders into {orders}, {unknown} of them without a customer");
        Ok(Inputs {
            orders,
            customers,
            count,
            unknown,
            last: now,
        })
    }

    /// Produces an order and a keyless customer record after every order
    /// (by a minute) to every partition of both topics, so that weir's
    /// watermark passes the last orders.
    fn close_orders(&self, input: &Inputs) -> Result<()> {
        let past = input.last + 60_000;
        let mut orders = Loader::new(&self.brokers, &input.orders, PARTITIONS, 0)?;
        let mut customers = Loader::new(&self.brokers, &input.customers, PARTITIONS, 0)?;
        for p in 0..PARTITIONS {
            let order = format!(
                "{{\"order_id\":\"closing-{p}\",\"customer_id\":\"c0\",\"amount\":0,\"ts\":{past}}}"
            );
            orders.send(order.as_bytes())?;
            customers.send(b"{\"name\":\"nobody\",\"country\":\"none\"}")?;
        }
        orders.flush()?;
        customers.flush()
    }
}
