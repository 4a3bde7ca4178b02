//! Checkpoint cost against state size (benchmark workload 3).
//!
//! A generator source with one task first writes keys `0..--keys` into
//! keyed state (`--load-only true` stops there), then runs `--epochs`
//! epochs that each read and update `--touch` distinct keys spread over the
//! whole key space. The source paces itself on the checkpoints: it hands out
//! one epoch's worth of records, then waits until they are committed, so
//! every measured epoch touches exactly `--touch` keys. The run's `done`
//! log line gives the commit time percentiles (`commit_p50_ms`,
//! `commit_p99_ms`): from the barrier to the durable RocksDB batch.
//!
//! Guarantee: exactly-once, as every local-mode pipeline.
//!
//! Run (`dev/bench` does this for 10^4..10^7 keys):
//! `state_cost run --state /tmp/sc --output /tmp/sc-out --keys 1000000
//! --load-only true` then the same with `--epochs 30` instead of
//! `--load-only true`.

use std::process::ExitCode;

use weir_connectors::file::FileSink;
use weir_core::prelude::*;
use weir_core::source::{ReadStatus, Resume, Source, SourceReader};

/// Keys written per epoch while loading.
const LOAD_BATCH: u64 = 250_000;
/// A prime that divides no power of ten: consecutive positions map to
/// distinct keys spread over the key space.
const STRIDE: u64 = 1_000_003;

#[derive(Clone, Copy)]
struct Paced {
    keys: u64,
    touch: u64,
    end: u64,
}

impl Source for Paced {
    type Item = u64;

    fn describe(&self) -> String {
        "bench-paced-keys".into()
    }

    fn tasks(&self) -> Result<Vec<String>> {
        Ok(vec!["0".into()])
    }

    fn open(&self, _task: &str, from: Option<&Resume>) -> Result<Box<dyn SourceReader<u64>>> {
        let pos = from.map_or(0, |f| f.position);
        Ok(Box::new(PacedReader {
            spec: *self,
            pos,
            stop: pos,
            committed: pos,
        }))
    }
}

struct PacedReader {
    spec: Paced,
    pos: u64,
    /// Where the current epoch's share ends.
    stop: u64,
    /// The last committed position.
    committed: u64,
}

impl PacedReader {
    fn key(&self, p: u64) -> u64 {
        let Paced { keys, .. } = self.spec;
        if p < keys {
            p
        } else {
            (p - keys).wrapping_mul(STRIDE) % keys
        }
    }
}

impl SourceReader<u64> for PacedReader {
    fn read(&mut self, out: &mut Vec<Record<(), u64>>, max: usize) -> Result<ReadStatus> {
        if self.pos >= self.spec.end {
            return Ok(ReadStatus::End);
        }
        if self.pos >= self.stop {
            if self.committed < self.stop {
                return Ok(ReadStatus::Idle);
            }
            let Paced { keys, touch, end } = self.spec;
            self.stop = if self.pos < keys {
                (self.pos + LOAD_BATCH).min(keys)
            } else {
                self.pos + touch
            }
            .min(end);
        }
        let n = (self.stop - self.pos).min(max as u64);
        for p in self.pos..self.pos + n {
            out.push(Record::new((), self.key(p)));
        }
        self.pos += n;
        Ok(ReadStatus::More)
    }

    fn position(&self) -> u64 {
        self.pos
    }

    fn committed(&mut self, position: u64) -> Result<()> {
        self.committed = position;
        Ok(())
    }
}

/// Reads and updates one value per key.
#[derive(Clone)]
struct Touch;

const V: ValueDescriptor<u64> = ValueDescriptor::new("v");

impl Processor for Touch {
    type Key = u64;
    type In = ();
    type Out = u64;

    fn declare(&self, d: &mut Declarations) {
        d.state(&V);
    }

    async fn process(&mut self, _rec: Record<u64, ()>, ctx: &mut Context<'_, Self>) -> Result<()> {
        let mut v = ctx.state(&V)?;
        let n = v.get()?.unwrap_or(0) + 1;
        v.put(&n)?;
        Ok(())
    }
}

fn main() -> ExitCode {
    weir_runtime::cli::App::new("state_cost")
        .about("checkpoint cost against state size (benchmark)")
        .option("output", "directory of the (empty) output")
        .option("keys", "keys in state")
        .option("touch", "keys each measured epoch updates (10000)")
        .option("epochs", "measured epochs after the load")
        .option("load-only", "true: stop once every key is written")
        .run(|cfg, p| {
            let keys = cfg.parse::<u64>("keys")?.unwrap_or(10_000).max(1);
            let touch = cfg.parse::<u64>("touch")?.unwrap_or(10_000).clamp(1, keys);
            let epochs = cfg.parse::<u64>("epochs")?.unwrap_or(30);
            let load_only = cfg.parse::<bool>("load_only")?.unwrap_or(false);
            let end = if load_only {
                keys
            } else {
                keys + epochs * touch
            };
            p.source(Paced { keys, touch, end })
                .key_with(|k: u64| (k, ()))
                .process(Touch)
                .sink(FileSink::lines(cfg.path("output")?));
            Ok(())
        })
}
