//! The exchange across instances (ARCHITECTURE §7): a record whose key
//! group's shard another instance holds is sent to that shard's partition
//! of the repartition topic, inside the epoch's transaction ([`Remote`]),
//! whichever exchange it crosses (the first `key_by`, or one after a
//! processor); the holder reads its shards back, committed records only,
//! as source tasks of its own ([`ShardReader`]), and hands each record to
//! the workers after its exchange ([`Shard`]).
//!
//! A key's records keep their order across a hand-over: a run reads what
//! its shards held when it started (its [`Backlog`]) before a record of
//! its own reaches a worker in memory. Until then its source tasks read
//! nothing, and its workers send what they emit for a later exchange to
//! the shard's partition even where they hold the shard themselves, so
//! that it comes after what the key's previous holder sent there.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// to its shard's holder: this run itself when `run` names it (see
    /// [`Backlog::forward_to_self`]).
    pub(crate) fn send<V: Codec>(
        &mut self,
        group: u16,
        key: &[u8],
        value: &V,
        timestamp: Option<i64>,
        run: Option<u64>,
    ) -> Result<()> {
        self.value.clear();
        value.encode_into(&mut self.value)?;
        let route = Route {
            exchange: self.exchange,
            run,
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

/// A closed [`Backlog`]'s mark in its `sent` count.
const CLOSED: u64 = 1 << 63;

/// The records a run's shards held when it started, read or not: until
/// they are, nothing of the run's own goes to a worker in memory, lest a
/// key's record overtake one of the same key sent to the shard before (by
/// the instance that read its input, or ran the processor before the
/// exchange, until the hand-over). Its workers send what they emit for a
/// later exchange to the shard's partition meanwhile, tagged with the
/// run's number, and the backlog is read once every shard is past where
/// it ended at the start and every record the run sent itself is back.
#[derive(Debug)]
pub(crate) struct Backlog {
    /// This run's number, in the records it sends itself.
    run: u64,
    /// Shards not yet read to where they ended at the start.
    behind: AtomicUsize,
    /// Records sent to itself, and [`CLOSED`] once read.
    sent: AtomicU64,
    /// Records sent to itself and read back.
    back: AtomicU64,
}

impl Backlog {
    /// The backlog of run number `run`, of no shard yet (see
    /// [`ShardReader::new`]); [`check`](Self::check) once every shard is
    /// counted.
    pub(crate) fn new(run: u64) -> Arc<Self> {
        Arc::new(Backlog {
            run,
            behind: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            back: AtomicU64::new(0),
        })
    }

    /// Whether the backlog is read: records may stay in memory.
    pub(crate) fn is_read(&self) -> bool {
        self.sent.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Counts a record this run must send to a shard it holds, and
    /// returns its number for the record; `None` once the backlog is read
    /// (the record stays in memory).
    pub(crate) fn forward_to_self(&self) -> Option<u64> {
        self.sent
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n & CLOSED == 0).then_some(n + 1)
            })
            .ok()
            .map(|_| self.run)
    }

    /// Closes the backlog if it is read: every shard past its start's end
    /// and every record sent to itself back. A record counted meanwhile
    /// keeps it open.
    pub(crate) fn check(&self) {
        if self.behind.load(Ordering::Acquire) != 0 {
            return;
        }
        let sent = self.sent.load(Ordering::Acquire);
        if sent & CLOSED == 0 && self.back.load(Ordering::Acquire) == sent {
            let _ = self.sent.compare_exchange(
                sent,
                sent | CLOSED,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    fn shard_read(&self) {
        self.behind.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reads one shard of the repartition topic: the records other instances
/// forwarded to this one (and this run to itself, see [`Backlog`]).
pub(crate) struct ShardReader {
    reader: Box<dyn SourceReader<Forwarded>>,
    buf: Vec<Record<(), Forwarded>>,
    read: u64,
    /// Where the shard ended at the start, until the reader is there.
    end: Option<u64>,
    backlog: Arc<Backlog>,
    /// What the last read brought the backlog (the shard read to its
    /// start's end, records sent to itself), told at the next: once what
    /// it read has reached the workers (see [`tell_backlog`](Self::tell_backlog)).
    untold: (bool, u64),
}

impl ShardReader {
    /// Reads a shard through `reader`; `backlog` counts it until it has
    /// read to `end`, where the shard ended at the start, if it starts
    /// before that.
    pub(crate) fn new(
        reader: Box<dyn SourceReader<Forwarded>>,
        end: Option<u64>,
        backlog: &Arc<Backlog>,
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
            backlog: backlog.clone(),
            untold: (false, 0),
        }
    }

    /// Tells the backlog what the reads since the last call brought, now
    /// that it has reached the workers: a read that brought the backlog
    /// anything returns [`ReadStatus::Idle`] (or `End`), after which the
    /// source task sends on what its exchange holds. Told any earlier, a
    /// record of the run's own could reach a worker first.
    fn tell_backlog(&mut self) {
        let (read_up, back) = std::mem::take(&mut self.untold);
        if back > 0 {
            self.backlog.back.fetch_add(back, Ordering::AcqRel);
        }
        if read_up {
            self.backlog.shard_read();
        }
        if !self.backlog.is_read() {
            self.backlog.check();
        }
    }

    /// Notes what a read brought the backlog; returns the status to report.
    fn note_backlog(&mut self, status: ReadStatus, back: u64) -> ReadStatus {
        let read_up = self
            .end
            .is_some_and(|end| self.reader.position() >= end || status == ReadStatus::End);
        if read_up {
            self.end = None;
        }
        self.untold.0 |= read_up;
        self.untold.1 += back;
        match status {
            ReadStatus::More if read_up || back > 0 => ReadStatus::Idle,
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
        let run = Some(self.backlog.run);
        let mut back = 0;
        for r in self.buf.drain(..) {
            back += u64::from(r.value.route.run == run);
            out(r);
        }
        Ok(self.note_backlog(status, back))
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
        self.tell_backlog();
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

    /// A shard of `len` forwarded records, read `per_read` at a time; the
    /// offsets in `own` were sent by run 7 to itself.
    struct Shard {
        next: u64,
        len: u64,
        per_read: u64,
        own: Vec<u64>,
    }

    impl SourceReader<Forwarded> for Shard {
        fn read(&mut self, out: &mut Vec<Record<(), Forwarded>>, max: usize) -> Result<ReadStatus> {
            let until = (self.next + self.per_read.min(max as u64)).min(self.len);
            for offset in self.next..until {
                let route = Route {
                    exchange: 1,
                    run: self.own.contains(&offset).then_some(7),
                };
                let bytes = offset.to_be_bytes().to_vec();
                let (key, value) = (bytes.clone(), bytes);
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

    fn reader(from: u64, end: u64, own: &[u64], backlog: &Arc<Backlog>) -> ShardReader {
        let shard = Shard {
            next: from,
            len: 1_000,
            per_read: 10,
            own: own.to_vec(),
        };
        ShardReader::new(Box::new(shard), Some(end), backlog)
    }

    /// Reads once, as a source task does: what a read that brought the
    /// backlog anything returns makes the task send on, then tell it.
    fn read_once(r: &mut ShardReader) -> ReadStatus {
        let status = r.read(100, &mut |_| {}).expect("read");
        if status != ReadStatus::More {
            r.delivered();
        }
        status
    }

    #[test]
    fn the_backlog_is_read_once_every_shard_is_past_its_start_and_told_once_delivered() {
        let backlog = Backlog::new(7);
        // One shard starts at its end, two behind it.
        let _at_end = reader(40, 40, &[], &backlog);
        let mut short = reader(0, 10, &[], &backlog);
        let mut long = reader(0, 25, &[], &backlog);
        backlog.check();
        assert!(!backlog.is_read());
        // Past its end, the read says Idle, so that what it read is sent
        // on before the backlog hears of it.
        let read = short.read(100, &mut |_| {}).expect("read");
        assert_eq!(read, ReadStatus::Idle);
        assert_eq!(read_once(&mut long), ReadStatus::More);
        assert_eq!(read_once(&mut long), ReadStatus::More);
        assert_eq!(read_once(&mut long), ReadStatus::Idle);
        assert!(
            !backlog.is_read(),
            "the short shard's reads are not delivered"
        );
        short.delivered();
        assert!(backlog.is_read());
        // Read on past the end, nothing is counted twice.
        read_once(&mut long);
        assert!(backlog.is_read());
        assert_eq!(
            backlog.forward_to_self(),
            None,
            "read: records stay in memory"
        );
    }

    #[test]
    fn records_a_run_sends_itself_keep_the_backlog_open_until_they_are_back() {
        let backlog = Backlog::new(7);
        let mut shard = reader(0, 5, &[20, 21], &backlog);
        backlog.check();
        assert_eq!(backlog.forward_to_self(), Some(7));
        assert_eq!(backlog.forward_to_self(), Some(7));
        // Read to its start's end (10 records), none of its own yet.
        read_once(&mut shard);
        assert!(!backlog.is_read(), "two records sent to itself are out");
        read_once(&mut shard);
        assert!(!backlog.is_read());
        // Both back (offsets 20 and 21), delivered: read.
        assert_eq!(read_once(&mut shard), ReadStatus::Idle);
        assert!(backlog.is_read());
        assert_eq!(backlog.forward_to_self(), None);
    }
}
