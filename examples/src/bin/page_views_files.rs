//! Counts page views per page and tumbling window of event time, from
//! files into files, exactly once: the windowed count of `page_views`
//! without a broker.
//!
//! Reads every file in `--input`, one JSON view per line (`{"page": str,
//! "user": str, "ts": ms}`, `ts` the event time), keys the views by page
//! through the exchange and counts them per tumbling window of
//! `--window-ms` (default 60000). Once the watermark (the least, over the
//! files still being read, of the latest `ts` each has read) passes a
//! window's end plus `--grace-ms` (default 5000), the window is written
//! under `--output` as one JSON line `{"page", "window_start",
//! "window_end", "views", "users"}` (`users`: distinct users, exactly). At
//! the end of the input every window still open is written. A view later
//! than the grace goes, as a JSON line, under `--late-output` if given, and
//! is otherwise dropped and counted in `weir_late_records_total`. A line
//! that is not such JSON stops the run, or with `--set on_bad_input=skip`
//! is logged and skipped. With `--set follow=true` the files are read on
//! as they grow (until SIGTERM), and a file without new lines for
//! `watermark.idle_ms` (default 5000) stops holding the watermark back.
//!
//! Guarantee: exactly-once (ARCHITECTURE §4.1): the windows' state, the
//! timers that close them, the input positions and the output files'
//! lengths commit in one RocksDB batch; after a crash the output is cut
//! back to the last commit and the windows open then are open again, so
//! every window is written exactly once.
//!
//! Run: `cargo run --release --bin page_views_files -- run --input DIR
//! --output DIR --state DIR [--window-ms 60000] [--grace-ms 5000]`.

use std::process::ExitCode;
use std::time::Duration;

use weir::prelude::*;
use weir_examples::page_views::{pipeline, PageView, Windowing, LATE};

fn main() -> ExitCode {
    App::new("page_views_files")
        .about("page views and distinct users per tumbling window, files to files, exactly once")
        .option("input", "directory of JSON page-view files (or one file)")
        .option("output", "directory of the windows' JSON lines")
        .option("window-ms", "the windows' size, ms (default 60000)")
        .option(
            "grace-ms",
            "how long after its end a window takes views, ms (default 5000)",
        )
        .option("late-output", "directory of the views later than the grace")
        .setting(
            "follow",
            "true: keep reading as the files grow, until SIGTERM (a run option: it can change between runs)",
        )
        .run(|cfg, p| {
            let window_ms = cfg.parse::<u64>("window_ms")?.unwrap_or(60_000);
            if window_ms == 0 {
                return Err(Error::Config(
                    "--window-ms takes the windows' size in ms, at least 1, not 0".into(),
                ));
            }
            let grace_ms = cfg.parse::<u64>("grace_ms")?.unwrap_or(5_000);
            let late = cfg.get_opt::<String>("late_output")?;
            if let Some(dir) = &late {
                p.side_output(&LATE, FileSink::lines(dir));
            }
            let mut source = FileSource::json::<PageView>(cfg.path("input")?);
            if cfg.get_opt::<bool>("follow")?.unwrap_or(false) {
                source = source.follow();
            }
            let windowing = Windowing {
                window: Duration::from_millis(window_ms),
                grace: Duration::from_millis(grace_ms),
                late_output: late.is_some(),
            };
            pipeline(
                p.source(source),
                windowing,
                FileSink::lines(cfg.path("output")?),
            );
            Ok(())
        })
}
