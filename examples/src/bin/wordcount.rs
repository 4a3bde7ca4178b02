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
//! `--set checkpoint.interval_ms=100` for shorter epochs, `--set follow=true`
//! to keep tailing the files until SIGTERM).

use std::process::ExitCode;

use weir::prelude::*;

fn main() -> ExitCode {
    App::new("wordcount")
        .about("counts words across every file of a directory, exactly once")
        .option("input", "directory (or file) of text")
        .option("output", "directory of `word<TAB>count` files")
        .setting(
            "follow",
            "true: keep reading as the input files grow, until SIGTERM (a run option: it can change between runs)",
        )
        .run(|cfg, p| {
        let mut source = FileSource::lines(cfg.path("input")?);
        if cfg.get_opt::<bool>("follow")?.unwrap_or(false) {
            source = source.follow();
        }
        weir_examples::wordcount::to_files(p, source, cfg.path("output")?);
        Ok(())
    })
}
