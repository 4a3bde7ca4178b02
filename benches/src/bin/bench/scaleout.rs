//! Workload 7: two instances of one application, weir against Kafka
//! Streams (one stream thread each), exactly-once with a 100 ms commit
//! interval: the words/s the pair reaches over one input, and the time
//! from `kill -9` of one instance until the partitions it held have
//! committed output again.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::data::Zipf;
use crate::kafka::{create_topics, Loader, Watcher};
use crate::proc::Proc;
use crate::{wait_until, Bench, LINE_WORDS, PARTITIONS, RUN_TIMEOUT, VOCABULARY};

/// The peers compared, by the name `Bench::wordcount_cmd` takes.
const SYSTEMS: [&str; 2] = ["weir", "kstreams"];
/// The input's rate while the failover is measured: well within what one
/// instance of either system keeps up with.
const FAILOVER_LINES_PER_S: u64 = 1000;
/// How long two instances may take to share the input steadily.
const STEADY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the failover may take before the workload fails.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(300);

impl Bench {
    /// Workload 7.
    pub(crate) fn scale_out(&mut self) -> Result<()> {
        self.scale_out_throughput()?;
        self.failover()
    }

    /// Instance `i` of `system`'s word count from `input` into `output`
    /// (also the application id), on a state directory of its own.
    fn instance(&self, system: &str, input: &str, output: &str, i: usize) -> Result<Proc> {
        let name = format!("{output}-{i}");
        let state = self.dir(&name)?;
        let mut cmd = self.wordcount_cmd(system, input, output, &state, 100, true);
        if system == "kstreams" {
            // Its static member's id; weir's comes from the state directory.
            cmd.args(["--instance", &i.to_string()]);
        }
        Proc::spawn(&name, cmd, &self.log(&name))
    }

    /// The static member id (`group.instance.id`) of instance `i` of
    /// `system` in application `output`: weir's names the instance id its
    /// state directory keeps (known once it started), Kafka Streams' adds
    /// its stream thread's number to the one it was given.
    fn member_of(&self, system: &str, output: &str, i: usize) -> Result<String> {
        if system == "kstreams" {
            return Ok(format!("{output}-{i}-1"));
        }
        let file = self.work.join(format!("{output}-{i}")).join("instance");
        let id = std::fs::read_to_string(&file)
            .with_context(|| format!("no instance id in {}", file.display()))?;
        Ok(format!("{output}-{}", id.trim()))
    }

    /// Two instances of each system over the same input, started together.
    fn scale_out_throughput(&mut self) -> Result<()> {
        let input = self.topic("w7-words");
        create_topics(&self.brokers, &[(&input, PARTITIONS)])?;
        let (total, sum) = self.load(&input, self.sizes.kafka_words, 7)?;
        let mut rate = HashMap::new();
        for system in SYSTEMS {
            let output = self.topic(&format!("w7-{system}"));
            create_topics(&self.brokers, &[(&output, PARTITIONS)])?;
            let watcher = Watcher::start(&self.brokers, &output, PARTITIONS, None)?;
            let mut pair = [
                self.instance(system, &input, &output, 0)?,
                self.instance(system, &input, &output, 1)?,
            ];
            let at = watcher.wait_for(total, RUN_TIMEOUT, &mut || {
                pair.iter_mut().try_for_each(Proc::check_alive)
            })?;
            let secs = (at - pair[0].started).as_secs_f64();
            if watcher.sum() != sum || watcher.seen() != total {
                bail!(
                    "w7 {system}: wrong output: {} records summing to {} (expected {total}, {sum})",
                    watcher.seen(),
                    watcher.sum()
                );
            }
            let mut rss = 0f64;
            for p in &mut pair {
                rss = rss.max(p.stop(Duration::from_secs(60))?.peak_rss_mb);
            }
            rate.insert(system, total as f64 / secs);
            let ratio = match system {
                "weir" => String::new(),
                peer => {
                    let r = rate["weir"] / rate[peer];
                    self.summary.insert("scaleout_ratio", r);
                    format!("weir/{peer} {r:.2}x")
                }
            };
            self.row(
                "7 scale-out",
                system,
                "2 instances, exactly-once 100 ms",
                format!("{:.0} words/s ({secs:.2} s)", total as f64 / secs),
                ratio,
                Some(rss),
            );
        }
        Ok(())
    }

    /// Two instances of each system read an input produced at a steady
    /// rate; one that holds input partitions is killed (`kill -9`), and the
    /// figure is the time until every input partition it held has a
    /// committed position past the partition's end at the kill: the survivor
    /// took the partition over (after the group let the dead member go),
    /// restored its state and committed its output. The output is checked
    /// afterwards: every count once.
    fn failover(&mut self) -> Result<()> {
        let mut times = HashMap::new();
        for system in SYSTEMS {
            let name = format!("w7-failover-{system}");
            let input = self.topic(&format!("{name}-in"));
            let output = self.topic(&name);
            create_topics(
                &self.brokers,
                &[(&input, PARTITIONS), (&output, PARTITIONS)],
            )?;
            let watcher = Watcher::start(&self.brokers, &output, PARTITIONS, None)?;
            let feed = Feed::start(&self.brokers, &input)?;
            let mut pair = [
                self.instance(system, &input, &output, 0)?,
                self.instance(system, &input, &output, 1)?,
            ];
            let group = Group::new(&self.brokers, &output)?;
            // Steady: both are members of the settled group, and every input
            // partition committed since. (The group balances the count of
            // partitions a member holds over the input and, for weir, the
            // repartition topic together: one instance may hold every input
            // partition and the other only shards.)
            let mut held = BTreeMap::new();
            wait_until(STEADY_TIMEOUT, &mut || {
                pair.iter_mut().try_for_each(Proc::check_alive)?;
                held = group.input_held(&input)?;
                Ok(held.len() == 2)
            })?;
            let settled = group.committed(&input)?;
            wait_until(STEADY_TIMEOUT, &mut || {
                pair.iter_mut().try_for_each(Proc::check_alive)?;
                let now = group.committed(&input)?;
                Ok(settled
                    .iter()
                    .all(|(p, o)| now.get(p).is_some_and(|n| n > o)))
            })?;
            // Who holds what now, after the wait.
            wait_until(STEADY_TIMEOUT, &mut || {
                held = group.input_held(&input)?;
                Ok(held.len() == 2)
            })?;
            // Instance 1 unless it holds no input partition.
            let input_of = |i: usize| -> Result<Vec<i32>> {
                held.get(&self.member_of(system, &output, i)?)
                    .cloned()
                    .with_context(|| format!("w7 {system}: which member is which in {held:?}"))
            };
            let victim = if input_of(1)?.is_empty() { 0 } else { 1 };
            let partitions = input_of(victim)?;
            if partitions.is_empty() {
                bail!("w7 {system}: neither instance holds an input partition: {held:?}");
            }
            println!(
                "bench: w7 {system}: killing instance {victim}, which holds input partitions {partitions:?} ({held:?})"
            );
            let killed = Instant::now();
            let first = pair[victim].kill()?;
            // Past the input's end at the kill: a commit the victim had in
            // flight cannot reach it, only the survivor's.
            let before = group.ends(&input)?;
            let survivor = 1 - victim;
            wait_until(FAILOVER_TIMEOUT, &mut || {
                pair[survivor].check_alive()?;
                let now = group.committed(&input)?;
                Ok(partitions.iter().all(|p| {
                    now.get(p).copied().unwrap_or(0) > before.get(p).copied().unwrap_or(0)
                }))
            })
            .with_context(|| {
                format!("w7 {system}: the survivor never took the partitions {partitions:?} over")
            })?;
            let secs = killed.elapsed().as_secs_f64();
            let (total, sum) = feed.stop()?;
            watcher.wait_for(total, RUN_TIMEOUT, &mut || pair[survivor].check_alive())?;
            if watcher.sum() != sum || watcher.seen() != total {
                bail!(
                    "w7 {system} failover: wrong output: {} records summing to {} (expected {total}, {sum})",
                    watcher.seen(),
                    watcher.sum()
                );
            }
            let exit = pair[survivor].stop(Duration::from_secs(60))?;
            times.insert(system, secs);
            let ratio = if system == "weir" {
                self.summary.insert("failover_s", secs);
                String::new()
            } else {
                let r = secs / times["weir"];
                self.summary.insert("failover_ratio", r);
                format!("{system}/weir {r:.1}x")
            };
            self.row(
                "7 failover",
                system,
                "kill -9 of 1 of 2, defaults",
                format!("{secs:.2} s to committed output"),
                ratio,
                Some(first.peak_rss_mb.max(exit.peak_rss_mb)),
            );
        }
        Ok(())
    }
}

/// The input of the failover: Zipf lines at a steady rate on a thread of
/// its own, counted, until stopped.
struct Feed {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<(u64, u64)>>,
}

impl Feed {
    fn start(brokers: &str, topic: &str) -> Result<Feed> {
        let mut loader = Loader::new(brokers, topic, PARTITIONS, 5)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || -> Result<(u64, u64)> {
            let mut zipf = Zipf::new(VOCABULARY, 77);
            let mut counts: HashMap<String, u64> = HashMap::new();
            let mut line = String::new();
            let started = Instant::now();
            let mut sent = 0u64;
            while !stopped.load(Ordering::Relaxed) {
                let due = started + Duration::from_micros(sent * 1_000_000 / FAILOVER_LINES_PER_S);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                zipf.line(LINE_WORDS, &mut line);
                for w in line.split_ascii_whitespace() {
                    *counts.entry(w.to_owned()).or_default() += 1;
                }
                loader.send(line.as_bytes())?;
                sent += 1;
            }
            loader.flush()?;
            let total = counts.values().sum();
            let sum = counts.values().map(|n| n * (n + 1) / 2).sum();
            Ok((total, sum))
        });
        Ok(Feed { stop, thread })
    }

    /// Stops the feed; the words sent and the sum of all their counts.
    fn stop(self) -> Result<(u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the input feed panicked"))?
    }
}

/// What the broker says of an application's consumer group.
pub(crate) struct Group {
    consumer: BaseConsumer,
    group: String,
}

impl Group {
    pub(crate) fn new(brokers: &str, group: &str) -> Result<Group> {
        let consumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            // The settled positions, without waiting for a pending commit.
            .set("isolation.level", "read_uncommitted")
            .create()
            .context("cannot create the group's observer")?;
        Ok(Group {
            consumer,
            group: group.to_owned(),
        })
    }

    /// The committed position of each partition of `topic` (0 for none).
    pub(crate) fn committed(&self, topic: &str) -> Result<BTreeMap<i32, i64>> {
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(topic, p);
        }
        let got = self
            .consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .context("cannot read the group's offsets")?;
        Ok((0..PARTITIONS)
            .map(|p| {
                let at = match got.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => 0,
                };
                (p, at)
            })
            .collect())
    }

    /// The end offset of each partition of `topic`.
    pub(crate) fn ends(&self, topic: &str) -> Result<BTreeMap<i32, i64>> {
        (0..PARTITIONS)
            .map(|p| {
                let (_, high) = self
                    .consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .context("cannot read the input's end offsets")?;
                Ok((p, high))
            })
            .collect()
    }

    /// The partitions of `topic` each member of the stable group holds,
    /// by the member's static instance id (none while it rebalances).
    fn input_held(&self, topic: &str) -> Result<BTreeMap<String, Vec<i32>>> {
        let list = self
            .consumer
            .fetch_group_list(Some(&self.group), Duration::from_secs(10))
            .context("cannot describe the group")?;
        let mut held = BTreeMap::new();
        for g in list.groups().iter().filter(|g| g.state() == "Stable") {
            for m in g.members() {
                let partitions = assigned(m.assignment().unwrap_or_default(), topic);
                // A static member's id is its instance id, a dash and a
                // UUID (36 characters).
                let id = m.id();
                let instance = id.get(..id.len().saturating_sub(37)).unwrap_or_default();
                held.insert(instance.to_owned(), partitions);
            }
        }
        Ok(held)
    }
}

/// The partitions of `topic` in a consumer protocol assignment: a version
/// (i16), then per topic its name (i16 length, bytes) and its partitions
/// (i32 count, i32 each), then user data.
fn assigned(bytes: &[u8], topic: &str) -> Vec<i32> {
    let mut at = 2usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = bytes.get(at..at + n)?;
        at += n;
        Some(s)
    };
    let mut out = Vec::new();
    let mut read = || -> Option<()> {
        let topics = i32::from_be_bytes(take(4)?.try_into().ok()?);
        for _ in 0..topics.max(0) {
            let len = i16::from_be_bytes(take(2)?.try_into().ok()?);
            let name = take(len.max(0) as usize)?.to_vec();
            let count = i32::from_be_bytes(take(4)?.try_into().ok()?);
            for _ in 0..count.max(0) {
                let p = i32::from_be_bytes(take(4)?.try_into().ok()?);
                if name == topic.as_bytes() {
                    out.push(p);
                }
            }
        }
        Some(())
    };
    let _ = read();
    out
}
