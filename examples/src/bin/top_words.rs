//! The most frequent words per first letter, across every file of a
//! directory, exactly once: a word count, then the words keyed again by
//! their first letter.
//!
//! Reads every regular file in `--input` (one task per file), splits each
//! line on ASCII whitespace, routes each word through the exchange to the
//! worker that owns its key group and counts it there (keyed state), then
//! routes each word and its new count through a second exchange, by the
//! word's first letter, to the worker that keeps that letter's `--top`
//! (default 3) most frequent words. Whenever a letter's list changes it
//! writes `letter<TAB>word=count word=count ...` to files under
//! `--output`: each letter's last line is its top words over the whole
//! input (most frequent first; ties: the word first in byte order first).
//! It exits 0 once every input file is read and committed.
//!
//! Guarantee: exactly-once. Both layers of state, the input positions and
//! the output files' lengths commit in one RocksDB batch at each
//! checkpoint, whose barrier passes both exchanges behind the records.
//! Killed at any moment (even `kill -9`) and run again with the same
//! arguments, it resumes from its last checkpoint: no count is lost or
//! counted twice, and the output is cut back to the checkpoint, so that
//! every line was written once, in order.
//!
//! Run: `cargo run --release --bin top_words -- run --input examples/data
//! --output /tmp/top-out --state /tmp/top-state [--top 3]`.

use std::process::ExitCode;

use weir::prelude::*;

fn main() -> ExitCode {
    App::new("top_words")
        .about("the most frequent words per first letter, across every file of a directory, exactly once")
        .option("input", "directory (or file) of text")
        .option("output", "directory of `letter<TAB>word=count ...` files")
        .option("top", "how many words each letter keeps (default 3)")
        .run(|cfg, p| {
            let n = cfg.parse::<usize>("top")?.unwrap_or(3);
            if n == 0 {
                return Err(Error::Config(
                    "--top takes how many words each letter keeps, at least 1, not 0".into(),
                ));
            }
            let source = FileSource::lines(cfg.path("input")?);
            weir_examples::top_words::to_files(p, source, n, cfg.path("output")?);
            Ok(())
        })
}
