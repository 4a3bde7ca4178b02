//! The exchange across instances (ARCHITECTURE §7): a record whose key
//! group's shard another instance holds is sent to that shard's partition
//! of the repartition topic, inside the epoch's transaction ([`Remote`]),
//! whichever exchange it crosses (the first `key_by`, or one after a
//! processor); the holder reads its shards back, committed records only,
//! as source tasks of its own ([`ShardReader`]), and hands each record to
//! the workers after its exchange ([`Shard`]).
//!
//! A key's records keep their order across a hand-over: a run delivers
//! what its shards held when it started (its [`Backlog`]) to its workers
//! before a record of its own reaches one in memory.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use weir_core::commit::Forward;
use weir_core::source::{Forwarded, Lag, ReadStatus, Route, SourceReader};
use weir_core::{Codec, Error, Key, Record, Result};

use super::{Exchange, InMemory};
use crate::plan::Shards;
use crate::stage::{ChainedReader, FlushedSink};

/// Where a task's records of other instances' shards go.
pub(crate) struct Remote {
    /// Per key group: held here.
    local: Vec<bool>,
    count: u16,
    forward: Box<dyn Forward>,
    /// The exchange its records cross.
    exchange: u8,
    value: Vec<u8>,
}

impl Remote {
    /// Forwards through `forward` the records of `key_groups` key groups
    /// whose shard (of `shards`) this run does not hold, to the workers
    /// after exchange `exchange`.
    pub(crate) fn new(
        shards: &Shards,
        key_groups: u16,
        forward: Box<dyn Forward>,
        exchange: u8,
    ) -> Self {
        Remote {
            local: (0..key_groups).map(|g| shards.holds_group(g)).collect(),
            count: shards.count,
            forward,
            exchange,
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
        let route = Route {
            exchange: self.exchange,
        };
        self.forward.send(
            group % self.count.max(1),
            route,
            key,
            &self.value,
            timestamp,
        )
    }
}

/// The records a run's shards held when it started, delivered to the
/// workers or not: until they are, nothing of the run's own reaches a
/// worker in memory, lest a key's record overtake an older one of the
/// same key that waits in a shard (sent there by the instance that read
/// the key's input, or ran the processor before the exchange, until the
/// hand-over). Its source tasks read nothing meanwhile; its workers keep
/// what they emit for a later exchange's key groups held here (see
/// `Rekey`); and, in a pipeline that keys again, a shard reader holds its
/// barrier back until it has delivered its part, so that no worker's
/// barrier, and no epoch, can end before the backlog is delivered (an
/// epoch as long as the backlog: why such a pipeline does not share its
/// key groups yet, see `instance::shares_tasks`).
#[derive(Debug)]
pub(crate) struct Backlog {
    /// Shards not yet delivered to where they ended at the start.
    behind: AtomicUsize,
    /// Set once every shard is counted and none is behind.
    read: AtomicBool,
}

impl Backlog {
    /// A backlog of no shard yet (see [`ShardReader::new`]);
    /// [`check`](Self::check) once every shard is counted.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Backlog {
            behind: AtomicUsize::new(0),
            read: AtomicBool::new(false),
        })
    }

    /// Whether the backlog is delivered: records may stay in memory.
    pub(crate) fn is_read(&self) -> bool {
        self.read.load(Ordering::Acquire)
    }

    /// Marks the backlog delivered if no shard is behind.
    pub(crate) fn check(&self) {
        if self.behind.load(Ordering::Acquire) == 0 {
            self.read.store(true, Ordering::Release);
        }
    }

    fn shard_read(&self) {
        self.behind.fetch_sub(1, Ordering::AcqRel);
        self.check();
    }
}

/// Reads one shard of the repartition topic: the records other instances
/// forwarded to this one.
pub(crate) struct ShardReader {
    reader: Box<dyn SourceReader<Forwarded>>,
    buf: Vec<Record<(), Forwarded>>,
    read: u64,
    /// Where the shard ended at the start, until the reader has read
    /// there.
    end: Option<u64>,
    /// Read there, and not yet told (see [`delivered`](ChainedReader::delivered)).
    untold: bool,
    backlog: Arc<Backlog>,
    /// Whether barriers wait for its part of the backlog: where workers
    /// keep records for it (see [`Backlog`]).
    holds: bool,
}

impl ShardReader {
    /// Reads a shard through `reader`; `backlog` counts it until it has
    /// delivered what it read to `end`, where the shard ended at the
    /// start, if it starts before that. With `holds`, no barrier passes
    /// it until then (a pipeline that keys again: its workers keep
    /// records for the backlog).
    pub(crate) fn new(
        reader: Box<dyn SourceReader<Forwarded>>,
        end: Option<u64>,
        backlog: &Arc<Backlog>,
        holds: bool,
    ) -> Self {
        let end = end.filter(|end| reader.position() < *end);
        if end.is_some() {
            backlog.behind.fetch_add(1, Ordering::AcqRel);
        }
        ShardReader {
            reader,
            buf: Vec::new(),
            read: 0,
            end,
            untold: false,
            backlog: backlog.clone(),
            holds,
        }
    }

    /// Notes whether a read reached where the shard ended at the start;
    /// returns the status to report: [`ReadStatus::Idle`] rather than
    /// `More` then, after which the source task sends on what its
    /// exchange holds and tells the reader it did.
    fn note_backlog(&mut self, status: ReadStatus) -> ReadStatus {
        let read_up = self
            .end
            .is_some_and(|end| self.reader.position() >= end || status == ReadStatus::End);
        if !read_up {
            return status;
        }
        self.end = None;
        self.untold = true;
        match status {
            ReadStatus::More => ReadStatus::Idle,
            status => status,
        }
    }
}

impl ChainedReader<Forwarded> for ShardReader {
    fn read(
        &mut self,
        max: usize,
        out: &mut dyn FnMut(Record<(), Forwarded>),
    ) -> Result<ReadStatus> {
        self.buf.clear();
        let status = self.reader.read(&mut self.buf, max)?;
        self.read += self.buf.len() as u64;
        for r in self.buf.drain(..) {
            out(r);
        }
        Ok(self.note_backlog(status))
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

    fn delivered(&mut self) {
        if std::mem::take(&mut self.untold) {
            self.backlog.shard_read();
        }
    }

    /// Until it has delivered its part of the backlog: every barrier
    /// waits for the backlog (see [`Backlog`]).
    fn holds_barrier(&self) -> bool {
        self.holds && (self.end.is_some() || self.untold)
    }
}

/// Where a shard's records go: each to the workers after its exchange,
/// decoded into their key and value types (see [`Decoding`]). Watermarks
/// and barriers go to every one of them.
pub(crate) struct Shard {
    /// By exchange.
    pub(crate) to: Vec<Box<dyn Exchange<Forwarded>>>,
    pub(crate) task: String,
}

impl Exchange<Forwarded> for Shard {
    fn push(&mut self, record: Record<(), Forwarded>) -> Result<()> {
        let exchange = record.value.route.exchange;
        match self.to.get_mut(usize::from(exchange)) {
            Some(to) => to.push(record),
            None => Err(Error::State(format!(
                "a record in `{}` goes to exchange {exchange}, and this pipeline has {}: another version of this application's pipeline forwarded it. Run one version of a pipeline per application id at a time",
                self.task,
                self.to.len()
            ))),
        }
    }

    fn watermark(&mut self, watermark: i64) -> Result<()> {
        self.to.iter_mut().try_for_each(|t| t.watermark(watermark))
    }

    fn idle(&mut self) -> Result<()> {
        self.to.iter_mut().try_for_each(|t| t.idle())
    }

    fn at_end(&mut self, until: i64) -> Result<()> {
        self.to.iter_mut().try_for_each(|t| t.at_end(until))
    }

    fn flush_pending(&mut self) -> Result<()> {
        self.to.iter_mut().try_for_each(|t| t.flush_pending())
    }

    fn barrier(&mut self, epoch: u64) -> Result<Vec<FlushedSink>> {
        let mut flushed = Vec::new();
        for t in &mut self.to {
            flushed.extend(t.barrier(epoch)?);
        }
        Ok(flushed)
    }

    fn finish(&mut self) -> Result<()> {
        self.to.iter_mut().try_for_each(|t| t.finish())
    }
}

/// The records of one exchange from a shard, decoded back into the key
/// and value types of the workers after it, who own them.
pub(crate) struct Decoding<K, V> {
    pub(crate) task: String,
    pub(crate) to: InMemory<K, (K, V), V>,
}

impl<K: Key, V: Codec + Send + 'static> Exchange<Forwarded> for Decoding<K, V> {
    fn push(&mut self, record: Record<(), Forwarded>) -> Result<()> {
        let undecodable = |e: Error| {
            Error::State(format!(
                "a record in `{}` cannot be decoded ({e}): another version of this application's pipeline forwarded it. Run one version of a pipeline per application id at a time",
                self.task
            ))
        };
        let f = &record.value;
        let key = K::decode(&f.key).map_err(undecodable)?;
        let value = V::decode(&f.value).map_err(undecodable)?;
        let mut r = Record::new((), (key, value));
        r.timestamp = record.timestamp;
        self.to.push(r)
    }

    fn watermark(&mut self, watermark: i64) -> Result<()> {
        self.to.watermark(watermark)
    }

    fn idle(&mut self) -> Result<()> {
        self.to.idle()
    }

    fn at_end(&mut self, until: i64) -> Result<()> {
        self.to.at_end(until)
    }

    fn flush_pending(&mut self) -> Result<()> {
        self.to.flush_pending()
    }

    fn barrier(&mut self, epoch: u64) -> Result<Vec<FlushedSink>> {
        self.to.barrier(epoch)
    }

    fn finish(&mut self) -> Result<()> {
        self.to.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard of `len` forwarded records, read `per_read` at a time.
    struct Shard {
        next: u64,
        len: u64,
        per_read: u64,
    }

    impl SourceReader<Forwarded> for Shard {
        fn read(&mut self, out: &mut Vec<Record<(), Forwarded>>, max: usize) -> Result<ReadStatus> {
            let until = (self.next + self.per_read.min(max as u64)).min(self.len);
            for offset in self.next..until {
                let bytes = offset.to_be_bytes().to_vec();
                let (key, value) = (bytes.clone(), bytes);
                let route = Route::default();
                out.push(Record::new((), Forwarded { key, value, route }));
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

    fn reader(from: u64, end: u64, backlog: &Arc<Backlog>) -> ShardReader {
        let shard = Shard {
            next: from,
            len: 1_000,
            per_read: 10,
        };
        ShardReader::new(Box::new(shard), Some(end), backlog, true)
    }

    /// Reads once, as a source task does: after a read that says Idle it
    /// sends on what its exchange holds, and tells the reader so.
    fn read_once(r: &mut ShardReader) -> ReadStatus {
        let status = r.read(100, &mut |_| {}).expect("read");
        if status != ReadStatus::More {
            r.delivered();
        }
        status
    }

    #[test]
    fn the_backlog_is_delivered_once_every_shard_is_past_its_start_and_sent_on() {
        let backlog = Backlog::new();
        // One shard starts at its end, two behind it.
        let at_end = reader(40, 40, &backlog);
        let mut short = reader(0, 10, &backlog);
        let mut long = reader(0, 25, &backlog);
        backlog.check();
        assert!(!backlog.is_read());
        assert!(!at_end.holds_barrier());
        assert!(short.holds_barrier() && long.holds_barrier());
        // Past its end, the read says Idle, so that what it read is sent
        // on before the backlog hears of it; until then, its barrier waits.
        let read = short.read(100, &mut |_| {}).expect("read");
        assert_eq!(read, ReadStatus::Idle);
        assert!(short.holds_barrier());
        assert_eq!(read_once(&mut long), ReadStatus::More);
        assert_eq!(read_once(&mut long), ReadStatus::More);
        assert_eq!(read_once(&mut long), ReadStatus::Idle);
        assert!(!long.holds_barrier());
        assert!(
            !backlog.is_read(),
            "the short shard's reads are not sent on"
        );
        short.delivered();
        assert!(!short.holds_barrier());
        assert!(backlog.is_read());
        // Read on past the end, nothing is counted twice.
        assert_eq!(read_once(&mut long), ReadStatus::More);
        assert!(backlog.is_read());
    }

    #[test]
    fn a_run_without_a_shard_behind_has_its_backlog_delivered_at_once() {
        let backlog = Backlog::new();
        let _at_end = reader(40, 40, &backlog);
        assert!(!backlog.is_read(), "not before every shard is counted");
        backlog.check();
        assert!(backlog.is_read());
    }
}
