//! Attributes clicks to the impressions near them in time, from files into
//! files, exactly once: a stream-stream join within a window of event time.
//!
//! Reads every file in `--clicks` (JSON lines `{"click_id", "ad", "user",
//! "ts"}`) and in `--impressions` (`{"impression_id", "ad", "user", "ts"}`),
//! `ts` the event time in ms, keys both by ad and user through one
//! exchange, and joins each click with every impression of the same ad and
//! user at most `--window-ms` (default 60000) before or after it. For
//! every such pair it writes, under `--output`, one JSON line
//! `{"click_id", "impression_id", "ad", "user", "click_ts",
//! "impression_ts"}`, as soon as both are read; a click with no impression
//! that near is written once with `"impression_id": null`, when the
//! watermark (the least, over the files still being read, of the latest
//! `ts` each has read, less 5 s) has passed its time plus the window. A
//! record more than 5 s out of order within its file may be late, and is
//! then dropped and counted in `weir_late_records_total`. It exits 0 once
//! every file is read and committed.
//!
//! Guarantee: exactly-once (ARCHITECTURE §4.1): the records waiting for a
//! partner, the timers that drop them, the input positions and the output
//! files' lengths commit in one RocksDB batch; after a crash the output is
//! cut back to the last commit, so every pair, and every click without
//! one, is written exactly once.
//!
//! Run: `cargo run --release --bin attribute_clicks -- run --clicks DIR
//! --impressions DIR --output DIR --state DIR [--window-ms 60000]`.

use std::process::ExitCode;
use std::time::Duration;

use weir::prelude::*;

fn main() -> ExitCode {
    App::new("attribute_clicks")
        .about("clicks joined with the impressions near them in time, files to files, exactly once")
        .option("clicks", "directory of JSON click files")
        .option("impressions", "directory of JSON impression files")
        .option("output", "directory of the attributed clicks' JSON lines")
        .option(
            "window-ms",
            "how far apart a click and an impression may be, ms (default 60000)",
        )
        .run(|cfg, p| {
            let window_ms = cfg.parse::<u64>("window_ms")?.unwrap_or(60_000);
            weir_examples::clicks::pipeline(
                p,
                &cfg.path("clicks")?,
                &cfg.path("impressions")?,
                Duration::from_millis(window_ms),
                FileSink::lines(cfg.path("output")?),
            );
            Ok(())
        })
}
