//! The word count: its processor and its pipeline over any line source.

use std::path::PathBuf;

use weir_connectors::file::FileSink;
use weir_core::prelude::*;
use weir_core::sink::Sink;
use weir_core::source::Source;
use weir_core::CompactString;
use weir_runtime::Pipeline;

/// Counts occurrences per word; emits the running count of each occurrence.
/// Words are [`CompactString`]s: inline up to 24 bytes, so a word costs no
/// allocation on its way through the exchange.
#[derive(Clone, Debug, Default)]
pub struct WordCount;

impl Processor for WordCount {
    type Key = CompactString;
    type In = ();
    type Out = u64;

    async fn process(
        &mut self,
        rec: Record<CompactString, ()>,
        ctx: &mut Context<'_, Self>,
    ) -> Result<()> {
        let mut count = ctx.value_state::<u64>("count")?;
        let n = count.get()?.unwrap_or(0) + 1;
        count.put(&n)?;
        ctx.emit(rec.key, n);
        Ok(())
    }
}

/// The word count pipeline: lines from `source`, split on ASCII whitespace,
/// keyed by word through the exchange, counted, and every occurrence's
/// `(word, count)` written to `sink`. The counts can be queried by word
/// (`/api/state/count/WORD`, `state get --store count --key WORD`).
pub fn pipeline<S, K>(p: &mut Pipeline, source: S, sink: K)
where
    S: Source<Item = String>,
    K: Sink<Record<CompactString, u64>>,
{
    p.source(source)
        .flat_map(|line: String| {
            line.split_ascii_whitespace()
                .map(CompactString::from)
                .collect::<Vec<_>>()
        })
        .key_with(|word| (word, ()))
        .process(WordCount)
        .queryable::<u64>("count")
        .sink(sink);
}

/// [`pipeline`] into files: `word<TAB>count` lines under `output`.
pub fn to_files<S: Source<Item = String>>(p: &mut Pipeline, source: S, output: PathBuf) {
    pipeline(p, source, FileSink::tsv(output));
}
