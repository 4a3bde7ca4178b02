//! Workload 8: page views and distinct users per page and tumbling
//! window of event time, Kafka to Kafka, exactly once with a 100 ms commit
//! interval: weir's `page_views` against the same topology in Kafka
//! Streams (`windowedBy(TimeWindows).aggregate(..)` with
//! `suppress(untilWindowCloses)`), over the same input.
//!
//! Kafka Streams' stream time after its repartition topic is the latest
//! event time its task has read, and it reads its input partitions one
//! fetch at a time (up to 1 MiB of one partition, about 100 s of event time
//! here), so a preloaded input reaches it far out of order: with a grace of
//! seconds it drops most views as late (34,518 of 100,000 counted in a
//! trial). weir's watermark is the least over its input partitions, and
//! drops none. So the grace here is 5 minutes, which both count every view
//! with; and the views that close the last windows (far ahead in event
//! time) are produced only once the system has committed every other view:
//! read earlier, they would move Kafka Streams' stream time past every
//! window at once.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::data::Rng;
use crate::kafka::{create_topics, Loader, Watcher};
use crate::proc::Proc;
use crate::scaleout::Group;
use crate::{wait_until, Bench, PARTITIONS, RUN_TIMEOUT};

/// The windows' size and grace.
const WINDOW_MS: i64 = 60_000;
const GRACE_MS: i64 = 300_000;
/// Pages and users the views are spread over.
const PAGES: u64 = 200;
const USERS: u64 = 20_000;

impl Bench {
    /// Workload 8.
    pub(crate) fn windowed(&mut self) -> Result<()> {
        let views = self.sizes.window_views;
        let mut rate = BTreeMap::new();
        for system in ["weir", "kstreams"] {
            let name = format!("w8-{system}");
            // An input of its own (the same views): the views that close
            // the windows come after the others for each system.
            let input = self.topic(&format!("{name}-views"));
            create_topics(&self.brokers, &[(&input, PARTITIONS)])?;
            let (windows, total, last) = self.load_views(&input, views)?;
            let output = self.topic(&name);
            create_topics(&self.brokers, &[(&output, PARTITIONS)])?;
            let state = self.dir(&name)?;
            // Sums the `views` of every window read.
            let counted = Arc::new(AtomicU64::new(0));
            let c = counted.clone();
            let on = Box::new(move |_: &[u8], value: &[u8], _| {
                let views = serde_json::from_slice::<serde_json::Value>(value)
                    .ok()
                    .and_then(|v| v["views"].as_u64())
                    .unwrap_or(0);
                c.fetch_add(views, Ordering::Relaxed);
            });
            let watcher = Watcher::start(&self.brokers, &output, PARTITIONS, Some(on))?;
            let cmd = self.page_views_cmd(system, &input, &output, &state);
            let group = Group::new(&self.brokers, &output)?;
            let ends = group.ends(&input)?;
            let mut p = Proc::spawn(&name, cmd, &self.log(&name))?;
            // Every view committed: then the views that close the windows.
            wait_until(RUN_TIMEOUT, &mut || {
                p.check_alive()?;
                let at = group.committed(&input)?;
                Ok(ends.iter().all(|(part, end)| at.get(part) >= Some(end)))
            })?;
            self.close_windows(&input, last)?;
            let at = watcher.wait_for(windows, RUN_TIMEOUT, &mut || p.check_alive())?;
            let secs = (at - p.started).as_secs_f64();
            let exit = p.stop(Duration::from_secs(60))?;
            // The windows still arriving, if any, are more than there are.
            std::thread::sleep(Duration::from_millis(500));
            if watcher.seen() != windows || counted.load(Ordering::Relaxed) != total {
                bail!(
                    "{name}: wrong output: {} windows holding {} views (expected {windows}, {total})",
                    watcher.seen(),
                    counted.load(Ordering::Relaxed)
                );
            }
            rate.insert(system, total as f64 / secs);
            let ratio = match system {
                "weir" => String::new(),
                peer => format!("weir/{peer} {:.2}x", rate["weir"] / rate[peer]),
            };
            self.row(
                "8 windowed page views",
                system,
                "exactly-once 100 ms",
                format!("{:.0} views/s ({secs:.2} s)", total as f64 / secs),
                ratio,
                Some(exit.peak_rss_mb),
            );
        }
        self.summary
            .insert("windowed_ratio", rate["weir"] / rate["kstreams"]);
        Ok(())
    }

    /// `page_views` (weir) or the Kafka Streams peer, from `input` into
    /// `output`, which is also the application id.
    fn page_views_cmd(
        &self,
        system: &str,
        input: &str,
        output: &str,
        state: &std::path::Path,
    ) -> Command {
        let (window, grace) = (WINDOW_MS.to_string(), GRACE_MS.to_string());
        if system == "weir" {
            let mut c = Command::new(self.bin.join("page_views"));
            c.args(["run", "--brokers", &self.brokers, "--input-topic", input])
                .args(["--output-topic", output, "--application-id", output])
                .args(["--window-ms", &window, "--grace-ms", &grace])
                .args(["--set", "checkpoint.interval_ms=100", "--state"])
                .arg(state);
            c
        } else {
            let mut c = Command::new(self.kstreams.join("run-page-views"));
            c.args(["--brokers", &self.brokers, "--input-topic", input])
                .args(["--output-topic", output, "--application-id", output])
                .args(["--window-ms", &window, "--grace-ms", &grace])
                .args(["--commit-interval-ms", "100", "--state-dir"])
                .arg(state);
            c
        }
    }

    /// Loads `views` JSON page views into `topic`, in event-time order but
    /// up to 2 s out of it. Returns how many windows they make, the views,
    /// and the latest event time.
    fn load_views(&self, topic: &str, views: u64) -> Result<(u64, u64, i64)> {
        let mut loader = Loader::new(&self.brokers, topic, PARTITIONS, 20)?;
        let mut rng = Rng::new(8);
        let mut windows: BTreeSet<(u64, i64)> = BTreeSet::new();
        // Recent times: they become the windows' Kafka timestamps, and the
        // broker's time-based retention deletes records older than 7 days.
        let mut now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64
            - 4 * 3_600_000;
        let mut value = String::new();
        for _ in 0..views {
            now += (rng.next_u64() % 4) as i64;
            let ts = now - (rng.next_u64() % 2_000) as i64;
            // Skewed: low page numbers are viewed most.
            let page = (rng.unit().powi(2) * PAGES as f64) as u64;
            let user = rng.next_u64() % USERS;
            value.clear();
            value.push_str(&format!(
                "{{\"page\":\"/p{page}\",\"user\":\"u{user}\",\"ts\":{ts}}}"
            ));
            loader.send(value.as_bytes())?;
            windows.insert((page, ts - ts.rem_euclid(WINDOW_MS)));
        }
        loader.flush()?;
        println!(
            "bench: loaded {views} page views into {topic}: {} windows",
            windows.len()
        );
        Ok((windows.len() as u64, views, now))
    }

    /// Produces views past every window's close (after `last`), on every
    /// page (so that Kafka Streams' every repartitioned task sees one) and
    /// every input partition (so that weir's every partition's watermark
    /// passes it).
    fn close_windows(&self, topic: &str, last: i64) -> Result<()> {
        let mut loader = Loader::new(&self.brokers, topic, PARTITIONS, 0)?;
        let past = last + WINDOW_MS + GRACE_MS + 1_000;
        for page in 0..PAGES {
            for _ in 0..PARTITIONS {
                let value = format!("{{\"page\":\"/p{page}\",\"user\":\"end\",\"ts\":{past}}}");
                loader.send(value.as_bytes())?;
            }
        }
        loader.flush()
    }
}
