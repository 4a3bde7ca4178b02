//! The word count: its processor and its pipeline over any line source.

use std::path::PathBuf;

use weir::prelude::*;
use weir::sink::Sink;
use weir::source::Source;

/// Counts occurrences per word; emits the running count of each occurrence.
/// Words are [`CompactString`]s: inline up to 24 bytes, so a word costs no
/// allocation on its way through the exchange.
#[derive(Clone, Debug, Default)]
pub struct WordCount;

/// Each word's count so far.
pub const COUNT: ValueDescriptor<u64> = ValueDescriptor::new("count");

impl Processor for WordCount {
    type Key = CompactString;
    type In = ();
    type Out = u64;

    fn declare(&self, d: &mut Declarations) {
        d.state(&COUNT);
    }

    async fn process(
        &mut self,
        rec: Record<CompactString, ()>,
        ctx: &mut Context<'_, Self>,
    ) -> Result<()> {
        let mut count = ctx.state(&COUNT)?;
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
    counted(p, source).queryable(&COUNT).sink(sink);
}

/// The words of `source`'s lines, split on ASCII whitespace, keyed by word
/// through the exchange and counted: each occurrence's `(word, count)`.
pub fn counted<S: Source<Item = String>>(
    p: &mut Pipeline,
    source: S,
) -> KeyedStream<'_, CompactString, u64> {
    p.source(source)
        .flat_map(|line: String| {
            line.split_ascii_whitespace()
                .map(CompactString::from)
                .collect::<Vec<_>>()
        })
        .key_with(|word| (word, ()))
        .process(WordCount)
}

/// [`pipeline`] into files: `word<TAB>count` lines under `output`.
pub fn to_files<S: Source<Item = String>>(p: &mut Pipeline, source: S, output: PathBuf) {
    pipeline(p, source, FileSink::tsv(output));
}
