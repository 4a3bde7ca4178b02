//! Counts words across every file of a directory, exactly once.
//!
//! Reads every regular file in `--input` (one task per file), splits each
//! line on ASCII whitespace, routes each word through the exchange to the
//! worker that owns its key group, keeps a running count per word in keyed
//! state (RocksDB under `--state`), and for every occurrence writes
//! `word<TAB>count` to files under `--output`. It exits 0 once every input
//! file is read and committed.
//!
//! Guarantee: exactly-once. Killed at any moment (even `kill -9`) and run
//! again with the same arguments, it resumes from its last checkpoint: the
//! output holds, for every word, the counts 1..N once each.
//!
//! Run: `cargo run --release --bin wordcount -- run --input examples/data
//! --output /tmp/wc-out --state /tmp/wc-state` (add
//! `--set checkpoint.interval_ms=100` for shorter epochs).

use std::process::ExitCode;

use weir_connectors::file::{FileSink, FileSource};
use weir_runtime::prelude::*;

/// Counts occurrences per word.
#[derive(Clone)]
struct WordCount;

impl Processor for WordCount {
    type Key = String;
    type In = ();
    type Out = u64;

    async fn process(
        &mut self,
        rec: Record<String, ()>,
        ctx: &mut Context<'_, Self>,
    ) -> Result<()> {
        let mut count = ctx.value_state::<u64>("count")?;
        let n = count.get()?.unwrap_or(0) + 1;
        count.put(&n)?;
        ctx.emit(rec.key, n);
        Ok(())
    }
}

fn main() -> ExitCode {
    weir_runtime::cli::main("wordcount", |cfg, p| {
        p.source(FileSource::lines(cfg.path("input")?))
            .flat_map(|line: String| {
                line.split_ascii_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .key_with(|word| (word, ()))
            .process(WordCount)
            .sink(FileSink::tsv(cfg.path("output")?));
        Ok(())
    })
}
