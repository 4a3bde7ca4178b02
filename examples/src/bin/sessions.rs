//! Sessionizes user activity with event-time timers, exactly once.
//!
//! Reads event lines `<timestamp-ms> <user> <anything...>` from every file
//! in `--input` (each file in time order, up to `--max-delay-ms` out of
//! order), keys them by user, and groups each user's events into sessions
//! that end after `--gap-ms` (default 1800000, 30 min) without an event. A
//! session is written as `user<TAB>start<TAB>end<TAB>events` under `--output`
//! once the watermark passes its end plus the gap; at the end of the input
//! every open session is closed. An event that comes after its session
//! would have closed goes to the named sink `late`, under `--late-output`
//! (default: the output directory's name plus `-late`). A malformed line
//! stops the run, or with `--set on_bad_input=skip` is logged, counted and
//! skipped.
//!
//! Guarantee: exactly-once, timers included: a timer registered in an epoch
//! that did not commit is forgotten with it, and one that fired in a
//! committed epoch never fires again.
//!
//! Run: `cargo run --release --bin sessions -- run --input DIR --output DIR
//! --state DIR [--gap-ms 60000] [--set follow=true]` (`follow`: read on as
//! the event files grow, until SIGTERM).

use std::process::ExitCode;

use weir::prelude::*;
use weir_examples::sessions::{parse_timestamp, user_of, Sessionizer, LATE};

fn main() -> ExitCode {
    App::new("sessions")
        .about("per-user sessions closed by event-time timers")
        .option("input", "directory of event files")
        .option("output", "directory of session files")
        .option(
            "gap-ms",
            "inactivity that closes a session, ms (default 1800000)",
        )
        .option(
            "max-delay-ms",
            "how far out of order events may come, ms (default 0)",
        )
        .setting(
            "late_output",
            "directory of late events (default: the output directory's name plus -late)",
        )
        .setting(
            "follow",
            "true: keep reading as the event files grow, until SIGTERM (a run option: it can change between runs)",
        )
        .run(|cfg, p| {
            let gap_ms = cfg.parse::<i64>("gap_ms")?.unwrap_or(1_800_000);
            if gap_ms < 1 {
                return Err(Error::Config(format!(
                    "--gap-ms takes the milliseconds of inactivity that close a session, at least 1, not {gap_ms}"
                )));
            }
            let max_delay = cfg.parse::<i64>("max_delay_ms")?.unwrap_or(0);
            if max_delay < 0 {
                return Err(Error::Config(format!(
                    "--max-delay-ms takes how far out of order events may come, in ms, at least 0, not {max_delay}"
                )));
            }
            let output = cfg.path("output")?;
            let late = match cfg.get_opt::<String>("late_output")? {
                Some(dir) => dir.into(),
                None => std::path::PathBuf::from(format!("{}-late", output.display())),
            };
            p.side_output(&LATE, FileSink::tsv(late));
            // A malformed line is bad input where it is read: named by its
            // file and position, and skipped with on_bad_input=skip.
            let mut lines = FileSource::lines(cfg.path("input")?);
            if cfg.get_opt::<bool>("follow")?.unwrap_or(false) {
                lines = lines.follow();
            }
            let events = lines.validate(|line| {
                match (parse_timestamp(line), line.split_ascii_whitespace().nth(1)) {
                    (Some(_), Some(_)) => Ok(()),
                    _ => Err("not an event `<timestamp-ms> <user> ...`".to_owned()),
                }
            });
            p.source(events)
                // Unparseable lines keep the lowest time: the processor reports them.
                .event_time(
                    |line: &String| parse_timestamp(line).unwrap_or(i64::MIN),
                    max_delay,
                )
                .key_with(|line: String| (user_of(&line), line))
                .process(Sessionizer { gap_ms })
                .sink(FileSink::tsv(output));
            Ok(())
        })
}
