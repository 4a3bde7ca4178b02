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

use std::collections::VecDeque;
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
    pub(crate) fn send<K, V: Codec>(
        &mut self,
        group: u16,
        key: &[u8],
        record: &Record<K, V>,
    ) -> Result<()> {
        let Record {
            value,
            timestamp,
            headers,
            ..
        } = record;
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
            *timestamp,
            headers,
        )
    }
}

/// The records a run's shards held when it started, delivered to the
/// workers or not: until they are, nothing of the run's own reaches a
/// worker in memory, lest a key's record overtake an older one of the
/// same key that waits in a shard (sent there by the instance that read
/// the key's input, or ran the processor before the exchange, until the
/// hand-over). Its source tasks read nothing meanwhile; a worker after a
/// further exchange holds, in its state, what reaches it from a worker of
/// this run for a key group whose shard is still behind (see `Held`),
/// so that no barrier waits for the backlog.
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

/// Where a shard's reader got to, told in band to the workers after a
/// further exchange (see `Held`): every record of the shard before
/// `position` has reached them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    pub(crate) position: u64,
    /// The reader has read where the shard ended at the run's start.
    pub(crate) caught_up: bool,
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
    /// Positions records held by an earlier run wait for (see `Held`),
    /// ahead of the reader, in order.
    points: VecDeque<u64>,
    /// Records read past such a position, delivered after its mark.
    carried: Vec<Record<(), Forwarded>>,
    mark: Option<Mark>,
}

impl ShardReader {
    /// Reads a shard through `reader`; `backlog` counts it until it has
    /// delivered what it read to `end`, where the shard ended at the
    /// start, if it starts before that. It marks where it starts, each
    /// of `points` and where it catches up with `end` (see [`Mark`]).
    pub(crate) fn new(
        reader: Box<dyn SourceReader<Forwarded>>,
        end: Option<u64>,
        backlog: &Arc<Backlog>,
        points: impl IntoIterator<Item = u64>,
    ) -> Self {
        let from = reader.position();
        let end = end.filter(|end| from < *end);
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
            points: points.into_iter().filter(|p| *p > from).collect(),
            carried: Vec::new(),
            // What was held at or before here goes before anything read.
            mark: Some(Mark {
                position: from,
                caught_up: end.is_none(),
            }),
        }
    }

    /// Notes whether a read reached where the shard ended at the start;
    /// returns the status to report: [`ReadStatus::Idle`] rather than
    /// `More` then, after which the source task sends on what its
    /// exchange holds and tells the reader it did.
    ///
    /// A reader that ends short of there (a bounded run, or the last
    /// stable offset below an open transaction) does not catch up: what
    /// the workers hold for its key groups stays held, for the next run.
    fn note_backlog(&mut self, status: ReadStatus) -> ReadStatus {
        let position = self.reader.position();
        let Some(end) = self.end else {
            return status;
        };
        let caught_up = position >= end;
        if !caught_up && status != ReadStatus::End {
            return status;
        }
        self.end = None;
        self.untold = true;
        if caught_up {
            self.points.clear();
            self.mark = Some(Mark {
                position,
                caught_up,
            });
        }
        match status {
            ReadStatus::More => ReadStatus::Idle,
            status => status,
        }
    }

    /// Marks the last of `points` the reader passed (`next`: the next
    /// record's position).
    fn note_points(&mut self, next: u64) {
        let mut passed = None;
        while let Some(&p) = self.points.front().filter(|p| **p <= next) {
            passed = Some(p);
            self.points.pop_front();
        }
        if let Some(position) = passed {
            self.mark = Some(Mark {
                position,
                caught_up: false,
            });
        }
    }
}

impl ChainedReader<Forwarded> for ShardReader {
    fn read(
        &mut self,
        max: usize,
        out: &mut dyn FnMut(Record<(), Forwarded>),
    ) -> Result<ReadStatus> {
        if self.mark.is_some() {
            // Told first: a read after the mark goes after it.
            return Ok(ReadStatus::More);
        }
        self.buf.clear();
        let status = if self.carried.is_empty() {
            let status = self.reader.read(&mut self.buf, max)?;
            self.read += self.buf.len() as u64;
            status
        } else {
            std::mem::swap(&mut self.buf, &mut self.carried);
            ReadStatus::More
        };
        // A record at or past a point waits for the point's mark.
        if let Some(&point) = self.points.front() {
            if let Some(i) = self.buf.iter().position(|r| r.value.offset >= point) {
                self.carried = self.buf.split_off(i);
                for r in self.buf.drain(..) {
                    out(r);
                }
                let next = self.carried.first().map_or(point, |r| r.value.offset);
                self.note_points(next);
                return Ok(ReadStatus::More);
            }
        }
        for r in self.buf.drain(..) {
            out(r);
        }
        if self.carried.is_empty() {
            self.note_points(self.reader.position());
        }
        Ok(self.note_backlog(status))
    }

    /// Where the next record to deliver is: a carried one's position.
    fn position(&self) -> u64 {
        match self.carried.first() {
            Some(r) => r.value.offset,
            None => self.reader.position(),
        }
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

    fn take_mark(&mut self) -> Option<Mark> {
        self.mark.take()
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

    /// To the workers after further exchanges: those of the first hold
    /// nothing back (see `Held`).
    fn reached(&mut self, mark: Mark) -> Result<()> {
        self.to.iter_mut().skip(1).try_for_each(|t| t.reached(mark))
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
        r.headers = record.value.headers;
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

    fn reached(&mut self, mark: Mark) -> Result<()> {
        self.to.reached(mark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard of `len` forwarded records, read `per_read` at a time;
    /// `gap` offsets are missing (an aborted transaction's).
    struct Shard {
        next: u64,
        len: u64,
        per_read: u64,
        gap: std::ops::Range<u64>,
    }

    impl SourceReader<Forwarded> for Shard {
        fn read(&mut self, out: &mut Vec<Record<(), Forwarded>>, max: usize) -> Result<ReadStatus> {
            let until = (self.next + self.per_read.min(max as u64)).min(self.len);
            for offset in (self.next..until).filter(|o| !self.gap.contains(o)) {
                let bytes = offset.to_be_bytes().to_vec();
                let (key, value) = (bytes.clone(), bytes);
                let route = Route::default();
                out.push(Record::new(
                    (),
                    Forwarded {
                        key,
                        value,
                        route,
                        headers: Vec::new(),
                        offset,
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

    fn reader_with(from: u64, end: u64, backlog: &Arc<Backlog>, points: &[u64]) -> ShardReader {
        let shard = Shard {
            next: from,
            len: 1_000,
            per_read: 10,
            gap: 23..31,
        };
        ShardReader::new(Box::new(shard), Some(end), backlog, points.to_vec())
    }

    fn reader(from: u64, end: u64, backlog: &Arc<Backlog>) -> ShardReader {
        reader_with(from, end, backlog, &[])
    }

    /// Reads once, as a source task does: after a read that says Idle it
    /// sends on what its exchange holds, and tells the reader so. Returns
    /// the status, the offsets read and the mark, if any.
    fn read_once(r: &mut ShardReader) -> (ReadStatus, Vec<u64>, Option<Mark>) {
        let mut read = Vec::new();
        let status = r
            .read(100, &mut |rec| read.push(rec.value.offset))
            .expect("read");
        if status != ReadStatus::More {
            r.delivered();
        }
        (status, read, r.take_mark())
    }

    fn mark(position: u64, caught_up: bool) -> Option<Mark> {
        Some(Mark {
            position,
            caught_up,
        })
    }

    #[test]
    fn the_backlog_is_delivered_once_every_shard_is_past_its_start_and_sent_on() {
        let backlog = Backlog::new();
        // One shard starts at its end, two behind it.
        let mut at_end = reader(40, 40, &backlog);
        let mut short = reader(0, 10, &backlog);
        let mut long = reader(0, 25, &backlog);
        backlog.check();
        assert!(!backlog.is_read());
        // Each marks where it starts before reading; the one at its end
        // is caught up there.
        assert_eq!(
            read_once(&mut at_end),
            (ReadStatus::More, vec![], mark(40, true))
        );
        assert_eq!(read_once(&mut short).2, mark(0, false));
        assert_eq!(read_once(&mut long).2, mark(0, false));
        // Past its end, the read says Idle and marks it caught up, so that
        // what it read is sent on before the backlog hears of it.
        let read = short.read(100, &mut |_| {}).expect("read");
        assert_eq!(read, ReadStatus::Idle);
        assert_eq!(short.take_mark(), mark(10, true));
        assert_eq!(read_once(&mut long).0, ReadStatus::More);
        assert_eq!(read_once(&mut long).0, ReadStatus::More);
        assert_eq!(
            read_once(&mut long),
            (ReadStatus::Idle, vec![20, 21, 22], mark(30, true))
        );
        assert!(
            !backlog.is_read(),
            "the short shard's reads are not sent on"
        );
        short.delivered();
        assert!(backlog.is_read());
        // Read on past the end, nothing is counted twice, nor marked.
        assert_eq!(read_once(&mut long).2, None);
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

    #[test]
    fn a_reader_that_ends_short_of_its_backlog_does_not_catch_up() {
        let backlog = Backlog::new();
        let shard = Shard {
            next: 0,
            len: 20,
            per_read: 100,
            gap: 0..0,
        };
        // Bounded at 20, with a backlog to 30 (an open transaction's
        // records are past the last stable offset).
        struct Ends(Shard);
        impl SourceReader<Forwarded> for Ends {
            fn read(
                &mut self,
                out: &mut Vec<Record<(), Forwarded>>,
                max: usize,
            ) -> Result<ReadStatus> {
                self.0.read(out, max)?;
                Ok(ReadStatus::End)
            }
            fn position(&self) -> u64 {
                self.0.position()
            }
        }
        let mut r = ShardReader::new(Box::new(Ends(shard)), Some(30), &backlog, [25]);
        backlog.check();
        assert_eq!(read_once(&mut r).2, mark(0, false));
        let (status, read, m) = read_once(&mut r);
        assert_eq!((status, read.len(), m), (ReadStatus::End, 20, None));
        // The run's sources need not wait for it any longer.
        assert!(backlog.is_read());
    }

    #[test]
    fn a_reader_stops_at_each_point_held_records_wait_for_and_marks_it() {
        let backlog = Backlog::new();
        // Points at 5 (before its start), 15, 17 (between two records of
        // one read), 26 (in a gap: the next record is 31) and 50 (past
        // its end: it catches up first).
        let mut r = reader_with(10, 45, &backlog, &[5, 15, 17, 26, 50]);
        assert_eq!(
            read_once(&mut r),
            (ReadStatus::More, vec![], mark(10, false))
        );
        assert_eq!(
            read_once(&mut r),
            (ReadStatus::More, (10..15).collect(), mark(15, false))
        );
        // Until the rest is delivered, the reader is where it stopped.
        assert_eq!(r.position(), 15);
        assert_eq!(
            read_once(&mut r),
            (ReadStatus::More, vec![15, 16], mark(17, false))
        );
        assert_eq!(
            read_once(&mut r),
            (ReadStatus::More, vec![17, 18, 19], None)
        );
        assert_eq!(r.position(), 20);
        // 20..23, then the gap to 31: the point in the gap is marked
        // before the record after it, once the reader is past it.
        assert_eq!(
            read_once(&mut r),
            (ReadStatus::More, vec![20, 21, 22], mark(26, false))
        );
        assert_eq!(r.position(), 30);
        let (_, read, _) = read_once(&mut r);
        assert_eq!(read.first(), Some(&31));
        let mut all = read;
        loop {
            let (status, read, m) = read_once(&mut r);
            all.extend(read);
            if let Some(m) = m {
                assert_eq!(
                    m,
                    Mark {
                        position: 50,
                        caught_up: true
                    }
                );
                assert_eq!(status, ReadStatus::Idle);
                break;
            }
        }
        assert_eq!(
            all,
            (31..50).collect::<Vec<_>>(),
            "each record once, in order"
        );
    }
}
