//! The exchange across instances (ARCHITECTURE §7): a record whose key
//! group's shard another instance holds is sent to that shard's partition
//! of the repartition topic, inside the epoch's transaction ([`Remote`]);
//! the holder reads its shards back, committed records only, as source
//! tasks of its own ([`ShardReader`]).
//!
//! A key's records keep their order across a hand-over: a run reads what
//! its shards held when it started (its [`Backlog`]) before its source
//! tasks read a record, as records of a key forwarded there by the key's
//! previous reader come before those it now reads itself and keeps in
//! memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use weir_core::commit::Forward;
use weir_core::source::{Forwarded, Lag, ReadStatus, SourceReader};
use weir_core::{Codec, Error, Key, Record, Result};

use crate::plan::Shards;
use crate::stage::ChainedReader;

/// Where a source task's records of other instances' shards go.
pub(crate) struct Remote {
    /// Per key group: held here.
    local: Vec<bool>,
    count: u16,
    forward: Box<dyn Forward>,
    value: Vec<u8>,
}

impl Remote {
    /// Forwards through `forward` the records of `key_groups` key groups
    /// whose shard (of `shards`) this run does not hold.
    pub(crate) fn new(shards: &Shards, key_groups: u16, forward: Box<dyn Forward>) -> Self {
        Remote {
            local: (0..key_groups).map(|g| shards.holds_group(g)).collect(),
            count: shards.count,
            forward,
            value: Vec::new(),
        }
    }

    /// Whether key group `group` is held by this run.
    #[inline]
    pub(crate) fn holds(&self, group: u16) -> bool {
        self.local.get(usize::from(group)).copied().unwrap_or(true)
    }

    /// Sends a record of key group `group`, whose key is encoded as `key`,
    /// to its shard's holder.
    pub(crate) fn send<V: Codec>(
        &mut self,
        group: u16,
        key: &[u8],
        value: &V,
        timestamp: Option<i64>,
    ) -> Result<()> {
        self.value.clear();
        value.encode_into(&mut self.value)?;
        self.forward
            .send(group % self.count.max(1), key, &self.value, timestamp)
    }
}

/// The records a run's shards held when it started, read or not: until
/// they are, the run's source tasks read nothing, lest a key's record
/// kept in memory overtake one of the same key forwarded before (by the
/// instance that read its input until the hand-over, or by this one to
/// an instance that held the shard then).
#[derive(Debug)]
pub(crate) struct Backlog {
    /// Shards not yet read to where they ended at the start.
    behind: AtomicUsize,
}

impl Backlog {
    /// A backlog of no shard yet (see [`ShardReader::new`]).
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Backlog {
            behind: AtomicUsize::new(0),
        })
    }

    /// Whether every shard is read to where it ended at the start.
    pub(crate) fn is_read(&self) -> bool {
        self.behind.load(Ordering::Acquire) == 0
    }

    fn shard_read(&self) {
        self.behind.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reads one shard of the repartition topic: the records other instances
/// forwarded to this one, decoded back into key and value.
pub(crate) struct ShardReader<K, V> {
    task: String,
    reader: Box<dyn SourceReader<Forwarded>>,
    buf: Vec<Record<(), Forwarded>>,
    read: u64,
    /// Where the shard ended at the start, and the backlog to tell once
    /// the reader is there.
    backlog: Option<(u64, Arc<Backlog>)>,
    _types: std::marker::PhantomData<fn() -> (K, V)>,
}

impl<K: Key, V: Codec + Send + 'static> ShardReader<K, V> {
    /// Reads shard task `task` through `reader`; `backlog` counts it until
    /// it has read to `end`, where the shard ended at the start, if it
    /// starts before that.
    pub(crate) fn new(
        task: String,
        reader: Box<dyn SourceReader<Forwarded>>,
        end: Option<u64>,
        backlog: &Arc<Backlog>,
    ) -> Self {
        let backlog = end.filter(|end| reader.position() < *end).map(|end| {
            backlog.behind.fetch_add(1, Ordering::AcqRel);
            (end, backlog.clone())
        });
        ShardReader {
            task,
            reader,
            buf: Vec::new(),
            read: 0,
            backlog,
            _types: std::marker::PhantomData,
        }
    }

    /// Tells the backlog once the reader is past where the shard ended.
    fn check_backlog(&mut self, status: ReadStatus) {
        if let Some((end, backlog)) = &self.backlog {
            if self.reader.position() >= *end || status == ReadStatus::End {
                backlog.shard_read();
                self.backlog = None;
            }
        }
    }

    fn decode(&self, f: &Forwarded) -> Result<(K, V)> {
        let undecodable = |e: Error| {
            Error::State(format!(
                "a record in `{}` cannot be decoded ({e}): another version of this application's pipeline forwarded it. Run one version of a pipeline per application id at a time",
                self.task
            ))
        };
        let key = K::decode(&f.key).map_err(undecodable)?;
        let value = V::decode(&f.value).map_err(undecodable)?;
        Ok((key, value))
    }
}

impl<K: Key, V: Codec + Send + 'static> ChainedReader<(K, V)> for ShardReader<K, V> {
    fn read(&mut self, max: usize, out: &mut dyn FnMut(Record<(), (K, V)>)) -> Result<ReadStatus> {
        self.buf.clear();
        let status = self.reader.read(&mut self.buf, max)?;
        let buf = std::mem::take(&mut self.buf);
        self.read += buf.len() as u64;
        for r in &buf {
            let mut record = Record::new((), self.decode(&r.value)?);
            record.timestamp = r.timestamp;
            out(record);
        }
        self.buf = buf;
        self.check_backlog(status);
        Ok(status)
    }

    fn position(&self) -> u64 {
        self.reader.position()
    }

    fn identity(&self) -> Option<String> {
        None
    }

    fn committed(&mut self, position: u64) -> Result<()> {
        self.reader.committed(position)
    }

    fn take_read_count(&mut self) -> u64 {
        std::mem::take(&mut self.read)
    }

    fn lag(&self) -> Option<Lag> {
        self.reader.lag()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard of `len` forwarded records (key = value = the offset),
    /// read `per_read` at a time from `from`.
    struct Shard {
        next: u64,
        len: u64,
        per_read: u64,
    }

    impl SourceReader<Forwarded> for Shard {
        fn read(&mut self, out: &mut Vec<Record<(), Forwarded>>, max: usize) -> Result<ReadStatus> {
            let until = (self.next + self.per_read.min(max as u64)).min(self.len);
            for offset in self.next..until {
                let n = u32::try_from(offset).expect("small");
                let mut key = Vec::new();
                weir_core::encode_key(&n, &mut key)?;
                out.push(Record::new(
                    (),
                    Forwarded {
                        key,
                        value: n.encode()?,
                    },
                ));
            }
            self.next = until;
            Ok(if until < self.len {
                ReadStatus::More
            } else {
                ReadStatus::Idle
            })
        }

        fn position(&self) -> u64 {
            self.next
        }
    }

    fn reader(from: u64, per_read: u64, end: u64, backlog: &Arc<Backlog>) -> ShardReader<u32, u32> {
        let shard = Shard {
            next: from,
            len: 1_000,
            per_read,
        };
        ShardReader::new(
            "app-repartition-0".into(),
            Box::new(shard),
            Some(end),
            backlog,
        )
    }

    #[test]
    fn the_backlog_is_read_once_every_shard_is_past_where_it_ended_at_the_start() {
        let backlog = Backlog::new();
        // One shard starts at its end, two behind it.
        let _at_end = reader(40, 10, 40, &backlog);
        let mut short = reader(0, 10, 10, &backlog);
        let mut long = reader(0, 10, 25, &backlog);
        assert!(!backlog.is_read());
        let mut seen = Vec::new();
        let mut out = |r: Record<(), (u32, u32)>| seen.push(r.value.0);
        short.read(100, &mut out).expect("read");
        long.read(100, &mut out).expect("read");
        long.read(100, &mut out).expect("read");
        assert!(!backlog.is_read(), "one shard is at 20 of 25");
        long.read(100, &mut out).expect("read");
        assert!(backlog.is_read());
        // Read on past the end, nothing is counted twice.
        long.read(100, &mut out).expect("read");
        assert!(backlog.is_read());
        assert_eq!(seen.len(), 50);
    }
}
