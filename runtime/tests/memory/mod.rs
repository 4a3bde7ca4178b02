//! An in-memory transactional log standing in for a Kafka cluster in
//! in-process tests: the commit point of ARCHITECTURE §4.2 (a changelog
//! partition per key group, output records, transactions with fencing)
//! with no broker. What a transaction holds becomes visible only when it
//! commits; a newer `open` fences the older producer and aborts its open
//! transaction, as `init_transactions` does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use weir_core::commit::{ApplyFn, CommitPoint, GroupOffsets, Transaction, TxnInit};
use weir_core::sink::{Flushed, Sink, SinkWriter};
use weir_core::{Error, Record, Result};

/// A changelog record: key, and value (`None` deletes the key).
type Change = (Vec<u8>, Option<Vec<u8>>);

#[derive(Default)]
struct Log {
    /// The producer epoch of the newest `open`; older ones are fenced.
    producer: u64,
    /// Committed changelog records per key group.
    changelog: BTreeMap<u16, Vec<Change>>,
    /// Committed output records, in commit order.
    output: Vec<(String, u64)>,
    /// Transactions committed.
    commits: u64,
    /// The open transaction.
    open: Option<Open>,
}

/// What an open transaction holds, invisible until it commits.
#[derive(Default)]
struct Open {
    changes: Vec<(u16, Change)>,
    output: Vec<(String, u64)>,
}

/// The in-memory cluster, shared by the commit point, the sink and the test.
#[derive(Clone, Default)]
pub(crate) struct Broker(Arc<Mutex<Log>>);

impl Broker {
    fn lock(&self) -> MutexGuard<'_, Log> {
        // A crash point panics while a run holds the lock; the log itself
        // is always consistent between two calls.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Committed output, as a `read_committed` consumer sees it.
    pub(crate) fn committed_output(&self) -> Vec<(String, u64)> {
        self.lock().output.clone()
    }

    /// Records in the open transaction, invisible to readers.
    pub(crate) fn pending_output(&self) -> usize {
        self.lock().open.as_ref().map_or(0, |t| t.output.len())
    }

    /// Transactions committed so far.
    pub(crate) fn commits(&self) -> u64 {
        self.lock().commits
    }

    /// The last committed value of changelog key `key` (in key group 0).
    pub(crate) fn committed_value(&self, key: &[u8]) -> Option<Vec<u8>> {
        let log = self.lock();
        log.changelog
            .get(&0)?
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.clone())
    }
}

/// The commit point every sink of a test pipeline writes through.
pub(crate) struct MemoryCommitPoint(Broker);

impl CommitPoint for MemoryCommitPoint {
    fn id(&self) -> String {
        "memory".into()
    }

    fn open(&self, _init: &TxnInit) -> Result<Box<dyn Transaction>> {
        let mut log = self.0.lock();
        log.producer += 1;
        // Fencing aborts the older producer's open transaction.
        log.open = None;
        Ok(Box::new(MemoryTxn {
            broker: self.0.clone(),
            producer: log.producer,
        }))
    }
}

struct MemoryTxn {
    broker: Broker,
    producer: u64,
}

impl MemoryTxn {
    /// The log, or [`Error::Fenced`] once a newer producer opened.
    fn log(&self) -> Result<MutexGuard<'_, Log>> {
        let log = self.broker.lock();
        if log.producer != self.producer {
            return Err(Error::Fenced("a newer producer opened the log".into()));
        }
        Ok(log)
    }
}

impl Transaction for MemoryTxn {
    fn begin(&mut self) -> Result<()> {
        let mut log = self.log()?;
        if log.open.is_some() {
            return Err(Error::State("a transaction is open already".into()));
        }
        log.open = Some(Open::default());
        Ok(())
    }

    fn changelog(&mut self, group: u16, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let mut log = self.log()?;
        let open = log
            .open
            .as_mut()
            .ok_or_else(|| Error::State("a changelog record outside a transaction".into()))?;
        open.changes
            .push((group, (key.to_vec(), value.map(<[u8]>::to_vec))));
        Ok(())
    }

    fn abort(&mut self) -> Result<()> {
        self.log()?.open = None;
        Ok(())
    }

    fn commit(&mut self, offsets: Option<&GroupOffsets>) -> Result<()> {
        if offsets.is_some() {
            return Err(Error::State("file sources have no consumer group".into()));
        }
        let mut log = self.log()?;
        let open = log
            .open
            .take()
            .ok_or_else(|| Error::State("commit without a transaction".into()))?;
        for (group, change) in open.changes {
            log.changelog.entry(group).or_default().push(change);
        }
        log.output.extend(open.output);
        log.commits += 1;
        Ok(())
    }

    fn changelog_positions(&self) -> BTreeMap<u16, u64> {
        let log = self.broker.lock();
        log.changelog
            .iter()
            .map(|(g, records)| (*g, records.len() as u64))
            .collect()
    }

    fn restore(
        &mut self,
        from: &BTreeMap<u16, u64>,
        shards: Option<&BTreeSet<u16>>,
        sized: &mut dyn FnMut(u64),
        apply: &mut ApplyFn<'_>,
    ) -> Result<BTreeMap<u16, u64>> {
        let changelog = self.log()?.changelog.clone();
        let held = |g: &u16| shards.is_none_or(|s| s.contains(g));
        sized(
            changelog
                .iter()
                .filter(|(g, _)| held(g))
                .map(|(g, records)| {
                    (records.len() as u64).saturating_sub(from.get(g).copied().unwrap_or(0))
                })
                .sum(),
        );
        let mut reached = from.clone();
        for (group, records) in &changelog {
            if !held(group) {
                continue;
            }
            let start = from.get(group).copied().unwrap_or(0) as usize;
            for (key, value) in records.iter().skip(start) {
                apply(key, value.as_deref())?;
            }
            reached.insert(*group, records.len() as u64);
        }
        Ok(reached)
    }
}

/// A sink of `(word, count)` records into the broker's open transaction.
pub(crate) struct MemorySink(pub(crate) Broker);

impl Sink<Record<String, u64>> for MemorySink {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn id(&self, task: &str) -> String {
        format!("memory-{task}")
    }

    fn open(
        &self,
        _task: &str,
        _truncate_to: Option<u64>,
    ) -> Result<Box<dyn SinkWriter<Record<String, u64>>>> {
        Ok(Box::new(MemoryWriter(self.0.clone())))
    }

    fn commit_point(&self) -> Option<Arc<dyn CommitPoint>> {
        Some(Arc::new(MemoryCommitPoint(self.0.clone())))
    }
}

struct MemoryWriter(Broker);

impl SinkWriter<Record<String, u64>> for MemoryWriter {
    fn write(&mut self, item: &Record<String, u64>) -> Result<()> {
        let mut log = self.0.lock();
        let open = log.open.as_mut().ok_or_else(|| {
            Error::State("a sink wrote between two transactions: its record would be lost".into())
        })?;
        open.output.push((item.key.clone(), item.value));
        Ok(())
    }

    fn flush(&mut self) -> Result<Flushed> {
        Ok(Flushed {
            position: None,
            sync: None,
        })
    }
}
