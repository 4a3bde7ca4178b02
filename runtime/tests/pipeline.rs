//! Pipelines run in-process through `cli::run`, on real files and RocksDB.

use std::path::Path;

use weir_connectors::file::{FileSink, FileSource};
use weir_core::serdes::Json;
use weir_runtime::prelude::*;

fn config(state: &Path, extra: &[(&str, &str)]) -> Result<Config> {
    let mut o = vec![(
        "state".to_owned(),
        format!("{:?}", state.display().to_string()),
    )];
    o.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Config::load(None, &o, &[])
}

fn write_input(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write");
    }
}

fn read_all(dir: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_dir(dir)
        .expect("ls")
        .flat_map(|e| {
            std::fs::read_to_string(e.expect("entry").path())
                .expect("read")
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_pipeline_writes_one_output_per_input_file_and_resumes_without_repeating(
) -> Result<()> {
    let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
    let (input, output, state) = (
        tmp.path().join("in"),
        tmp.path().join("out"),
        tmp.path().join("state"),
    );
    write_input(&input, &[("a.txt", "1\n2\n3\n"), ("b.txt", "10\n")]);
    let build = |p: &mut Pipeline| {
        p.source(FileSource::lines(&input))
            .map(|l: String| l.parse::<u64>().map_or(0, |n| n * 2))
            .filter(|n| *n > 2)
            .sink(FileSink::lines(&output));
    };
    let mut p = Pipeline::new("double");
    build(&mut p);
    let s = weir_runtime::cli::run(p, &config(&state, &[])?, None).await?;
    assert_eq!(s.records_read, 4);
    assert_eq!(read_all(&output), vec!["20", "4", "6"]);
    assert!(output.join("part-a.txt").is_file() && output.join("part-b.txt").is_file());

    // More input in one file: a second run reads only the new lines.
    std::fs::write(input.join("a.txt"), "1\n2\n3\n4\n").map_err(|e| Error::io("write", "a", e))?;
    let mut p = Pipeline::new("double");
    build(&mut p);
    let s = weir_runtime::cli::run(p, &config(&state, &[])?, None).await?;
    assert_eq!(s.records_read, 1);
    assert_eq!(read_all(&output), vec!["20", "4", "6", "8"]);
    Ok(())
}

/// Panics on `boom` (a bug), fails on `refused` (an error it reports).
#[derive(Clone)]
struct Explodes;

impl Processor for Explodes {
    type Key = String;
    type In = String;
    type Out = String;

    async fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut Context<'_, Self>,
    ) -> Result<()> {
        assert!(r.value != "boom", "processor bug");
        if r.value == "refused" {
            return Err(Error::user(format!("cannot take {:?}", r.value)));
        }
        ctx.emit(r.key, r.value);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_error_fails_the_run_by_default_and_is_skipped_on_request() -> Result<()> {
    let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
    let input = tmp.path().join("in");
    write_input(&input, &[("a.txt", "fine\nrefused\nalso\n")]);
    let pipeline = |output: &Path| {
        let mut p = Pipeline::new("refuses");
        p.source(FileSource::lines(&input))
            .key_by(|l: &String| l.clone())
            .process(Explodes)
            .sink(FileSink::lines(output));
        p
    };
    let (out_1, state_1) = (tmp.path().join("out-1"), tmp.path().join("state-1"));
    let r = weir_runtime::cli::run(pipeline(&out_1), &config(&state_1, &[])?, None).await;
    let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("Explodes") && msg.contains("cannot take \"refused\""),
        "{msg}"
    );
    let (out_2, state_2) = (tmp.path().join("out-2"), tmp.path().join("state-2"));
    let skip = config(&state_2, &[("on_bad_input", "skip")])?;
    let s = weir_runtime::cli::run(pipeline(&out_2), &skip, None).await?;
    assert_eq!(s.skipped, 1);
    assert_eq!(read_all(&out_2), vec!["also", "fine"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_processor_fails_the_run_instead_of_hanging_it() -> Result<()> {
    let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
    let (input, output, state) = (
        tmp.path().join("in"),
        tmp.path().join("out"),
        tmp.path().join("state"),
    );
    write_input(&input, &[("a.txt", "fine\nboom\nfine\n")]);
    let mut p = Pipeline::new("explodes");
    p.source(FileSource::lines(&input))
        .key_by(|l: &String| l.clone())
        .process(Explodes)
        .sink(FileSink::tsv(&output));
    let r = weir_runtime::cli::run(p, &config(&state, &[])?, None).await;
    let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("panicked") && msg.contains("processor bug"),
        "{msg}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_without_a_sink_is_refused() -> Result<()> {
    let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
    let state = tmp.path().join("state");
    let mut p = Pipeline::new("nothing");
    let _ = p.source(FileSource::lines(tmp.path())).map(|l: String| l);
    let e = weir_runtime::cli::run(p, &config(&state, &[])?, None)
        .await
        .err()
        .map(|e| e.to_string());
    assert!(e.is_some_and(|m| m.contains("has no sink")));
    Ok(())
}

/// Keeps each key's last value (4 KiB here) and emits its length.
#[derive(Clone)]
struct Remembers;

const V: ValueDescriptor<String> = ValueDescriptor::new("v");

impl Processor for Remembers {
    type Key = String;
    type In = String;
    type Out = usize;

    fn declare(&self, d: &mut Declarations) {
        d.state(&V);
    }

    async fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut Context<'_, Self>,
    ) -> Result<()> {
        let mut v = ctx.state(&V)?;
        v.put(&r.value)?;
        ctx.emit(r.key, r.value.len());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epochs_end_early_when_their_state_writes_fill_the_cache() -> Result<()> {
    let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
    let (input, output, state) = (
        tmp.path().join("in"),
        tmp.path().join("out"),
        tmp.path().join("state"),
    );
    // 2,000 keys of 4 KiB: 8 MiB of state writes against a 1 MiB cache.
    let value = "x".repeat(4096);
    let text: String = (0..2000).map(|i| format!("k{i} {value}\n")).collect();
    write_input(&input, &[("a.txt", &text)]);
    let build = |p: &mut Pipeline| {
        p.source(FileSource::lines(&input))
            .key_with(|l: String| match l.split_once(' ') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (l, String::new()),
            })
            .process(Remembers)
            .sink(FileSink::tsv(&output));
    };
    // An hour's interval: only the cache's bound can end an epoch early
    // (checked after each exchange batch, here 16 records).
    let cfg = config(
        &state,
        &[
            ("cache_mb", "1"),
            ("batch_size", "16"),
            ("checkpoint.interval_ms", "3600000"),
        ],
    )?;
    let mut p = Pipeline::new("remembers");
    build(&mut p);
    let s = weir_runtime::cli::run(p, &cfg, None).await?;
    assert_eq!(s.records_read, 2000);
    // Each worker ends an epoch once its writes fill half its cache, so
    // the 8 MiB take several epochs (unbounded, they would take one).
    assert!(
        s.commits >= 4,
        "{} commits: epochs were not ended by their size",
        s.commits
    );
    let out = read_all(&output);
    assert_eq!(out.len(), 2000);
    assert!(out.iter().all(|l| l.ends_with("\t4096")));
    // Everything was committed: a second run has nothing to read.
    let mut p = Pipeline::new("remembers");
    build(&mut p);
    let s = weir_runtime::cli::run(p, &cfg, None).await?;
    assert_eq!(s.records_read, 0);
    assert_eq!(read_all(&output).len(), 2000);
    Ok(())
}

/// At-most-once saves a task's read position before it processes what it
/// read. That position belonged to the file, not to its name: after a
/// rotation between runs, the new file under the old name was read from the
/// old file's end (its first lines lost), and the rotated file could be read
/// again from its last checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_once_read_positions_follow_a_rotated_file() -> Result<()> {
    let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
    let (input, output, state) = (
        tmp.path().join("in"),
        tmp.path().join("out"),
        tmp.path().join("state"),
    );
    write_input(&input, &[("app.log", "a\nb\nc\n")]);
    let run = || async {
        let mut p = Pipeline::new("rotated");
        p.source(FileSource::lines(&input))
            .map(|l: String| l)
            .sink(FileSink::lines(&output));
        let at_most_once = config(&state, &[("guarantee", "at-most-once")])?;
        weir_runtime::cli::run(p, &at_most_once, None).await
    };
    run().await?;
    std::fs::rename(input.join("app.log"), input.join("app.log.1"))
        .map_err(|e| Error::io("rename", "app.log", e))?;
    write_input(&input, &[("app.log", "d\ne\nf\ng\n")]);
    run().await?;
    assert_eq!(read_all(&output), vec!["a", "b", "c", "d", "e", "f", "g"]);
    Ok(())
}

const TALLY: ValueDescriptor<u64> = ValueDescriptor::new("tally");
const TALLY_AS_TEXT: ValueDescriptor<String> = ValueDescriptor::new("tally");
const TALLY_AS_JSON: ValueDescriptor<u64, Json<u64>> =
    ValueDescriptor::new("tally").with_serde(Json::new());

/// How a version of the tally stores it.
#[derive(Clone, Copy)]
enum Stored {
    /// A number, in the pipeline's own encoding.
    Number,
    /// Text, in a later version.
    Text,
    /// A number, written as JSON.
    Json,
}

/// Tallies each key, in the version `stored` says.
#[derive(Clone)]
struct Tally {
    stored: Stored,
}

impl Processor for Tally {
    type Key = String;
    type In = ();
    type Out = String;

    fn declare(&self, d: &mut Declarations) {
        match self.stored {
            Stored::Number => d.state(&TALLY),
            Stored::Text => d.state(&TALLY_AS_TEXT),
            Stored::Json => d.state(&TALLY_AS_JSON),
        };
    }

    async fn process(&mut self, r: Record<String, ()>, ctx: &mut Context<'_, Self>) -> Result<()> {
        let n = match self.stored {
            Stored::Text => {
                let mut t = ctx.state(&TALLY_AS_TEXT)?;
                let n = t.get()?.map_or(0, |s| s.parse().unwrap_or(0)) + 1;
                t.put(&n.to_string())?;
                n
            }
            Stored::Number => {
                let mut t = ctx.state(&TALLY)?;
                let n = t.get()?.unwrap_or(0) + 1;
                t.put(&n)?;
                n
            }
            Stored::Json => {
                let mut t = ctx.state(&TALLY_AS_JSON)?;
                let n = t.get()?.unwrap_or(0) + 1;
                t.put(&n)?;
                n
            }
        };
        ctx.emit(r.key, n.to_string());
        Ok(())
    }
}

/// Tallies in the version `first`; then a restart in the version `then`
/// on more input is refused, with `refusal` in its message, having read
/// and written nothing; then `first` reads on.
async fn a_restart_in_another_version_is_refused(
    first: Stored,
    then: Stored,
    refusal: &[&str],
) -> Result<()> {
    let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
    let (input, output, state) = (
        tmp.path().join("in"),
        tmp.path().join("out"),
        tmp.path().join("state"),
    );
    write_input(&input, &[("a.txt", "x\ny\nx\n")]);
    let build = |stored: Stored| {
        let mut p = Pipeline::new("tally");
        p.source(FileSource::lines(&input))
            .key_by(|l: &String| l.clone())
            .map(|_| ())
            .process(Tally { stored })
            .sink(FileSink::tsv(&output));
        p
    };
    weir_runtime::cli::run(build(first), &config(&state, &[])?, None).await?;
    assert_eq!(read_all(&output), ["x\t1", "x\t2", "y\t1"]);
    std::fs::write(input.join("a.txt"), "x\ny\nx\nx\n").map_err(|e| Error::io("write", "a", e))?;
    let e = weir_runtime::cli::run(build(then), &config(&state, &[])?, None)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(refusal.iter().all(|part| e.contains(part)), "{e}");
    assert_eq!(read_all(&output).len(), 3, "nothing was read or written");
    // The version that wrote the state reads on.
    weir_runtime::cli::run(build(first), &config(&state, &[])?, None).await?;
    assert_eq!(read_all(&output), ["x\t1", "x\t2", "x\t3", "y\t1"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_state_of_another_type_is_refused_naming_the_store() -> Result<()> {
    a_restart_in_another_version_is_refused(
        Stored::Number,
        Stored::Text,
        &[
            "holds the store `tally` as value<u64> in pipeline::Tally",
            "declares it as value<alloc::string::String> in pipeline::Tally",
            "new --state",
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_state_written_with_another_serde_is_refused_naming_both() -> Result<()> {
    a_restart_in_another_version_is_refused(
        Stored::Json,
        Stored::Number,
        &[
            "holds the store `tally` as value<u64 as json<u64>> in pipeline::Tally",
            "declares it as value<u64> in pipeline::Tally",
        ],
    )
    .await
}

const REJECTS: OutputTag<String, String> = OutputTag::new("rejects");
const REJECTS_AS_NUMBERS: OutputTag<String, u64> = OutputTag::new("rejects");

/// Sends empty lines to the side output `rejects`.
#[derive(Clone)]
struct Rejects;

impl Processor for Rejects {
    type Key = String;
    type In = String;
    type Out = String;

    fn declare(&self, d: &mut Declarations) {
        d.output(&REJECTS);
    }

    async fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut Context<'_, Self>,
    ) -> Result<()> {
        if r.value.is_empty() {
            return ctx.output(&REJECTS, r.key, "empty".to_owned());
        }
        ctx.emit(r.key, r.value);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_output_needs_a_sink_of_its_own_types() -> Result<()> {
    let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
    let (input, output, rejects, state) = (
        tmp.path().join("in"),
        tmp.path().join("out"),
        tmp.path().join("rejects"),
        tmp.path().join("state"),
    );
    write_input(&input, &[("a.txt", "a\n\nb\n")]);
    let chain = |p: &mut Pipeline| {
        p.source(FileSource::lines(&input))
            .key_by(|l: &String| format!("k{}", l.len()))
            .process(Rejects)
            .sink(FileSink::tsv(&output));
    };
    let mut p = Pipeline::new("rejects");
    chain(&mut p);
    let e = weir_runtime::cli::run(p, &config(&state, &[])?, None)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("side output `rejects`, which has no sink"),
        "{e}"
    );

    let mut p = Pipeline::new("rejects");
    p.side_output(&REJECTS_AS_NUMBERS, FileSink::tsv(&rejects));
    chain(&mut p);
    let e = weir_runtime::cli::run(p, &config(&state, &[])?, None)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("whose sink takes"), "{e}");

    let mut p = Pipeline::new("rejects");
    p.side_output(&REJECTS, FileSink::tsv(&rejects));
    chain(&mut p);
    weir_runtime::cli::run(p, &config(&state, &[])?, None).await?;
    assert_eq!(read_all(&output), ["k1\ta", "k1\tb"]);
    assert_eq!(read_all(&rejects), ["k0\tempty"]);
    Ok(())
}

/// Emits each record under the key `k<length of its value>`: another key
/// than it was given.
#[derive(Clone)]
struct Rekeys;

impl Processor for Rekeys {
    type Key = String;
    type In = String;
    type Out = String;

    async fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut Context<'_, Self>,
    ) -> Result<()> {
        ctx.emit(format!("k{}", r.value.len()), r.value);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_changed_between_processors_never_lands_in_another_workers_key_group() -> Result<()> {
    let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
    let (input, output) = (tmp.path().join("in"), tmp.path().join("out"));
    let lines: String = (0..200)
        .map(|i| format!("{}\n", "x".repeat(i % 13 + 1)))
        .collect();
    write_input(&input, &[("a.txt", &lines)]);
    let build = || {
        let mut p = Pipeline::new("rekeys");
        p.source(FileSource::lines(&input))
            .key_by(|l: &String| l.clone())
            .process(Rekeys)
            .map(|_| ())
            .process(Tally {
                stored: Stored::Number,
            })
            .sink(FileSink::tsv(&output));
        p
    };
    // Two workers: some of the new keys are in the other worker's groups.
    let state = tmp.path().join("state-2");
    let e = weir_runtime::cli::run(build(), &config(&state, &[("parallelism", "2")])?, None)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("which another worker holds") && e.contains("key_by"),
        "{e}"
    );
    // One worker holds every group: the state is where it belongs.
    let _ = std::fs::remove_dir_all(&output);
    let state = tmp.path().join("state-1");
    weir_runtime::cli::run(build(), &config(&state, &[("parallelism", "1")])?, None).await?;
    let tallies = read_all(&output);
    assert_eq!(tallies.len(), 200);
    assert!(tallies.contains(&"k13\t15".to_owned()), "{tallies:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_flat_map_keeps_the_key_of_each_value_it_makes() -> Result<()> {
    let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
    let (input, output, state) = (
        tmp.path().join("in"),
        tmp.path().join("out"),
        tmp.path().join("state"),
    );
    write_input(&input, &[("a.txt", "ab:3\nab:2\nc:1\n")]);
    let mut p = Pipeline::new("repeat");
    p.source(FileSource::lines(&input))
        .key_with(|l: String| {
            let (k, n) = l.split_once(':').unwrap_or((&l, "0"));
            (k.to_owned(), n.parse::<usize>().unwrap_or(0))
        })
        .flat_map(|n| std::iter::repeat_n((), n))
        .process(Tally {
            stored: Stored::Number,
        })
        .sink(FileSink::tsv(&output));
    weir_runtime::cli::run(p, &config(&state, &[])?, None).await?;
    let got = read_all(&output);
    assert_eq!(got.len(), 6);
    assert!(
        got.contains(&"ab\t5".to_owned()) && got.contains(&"c\t1".to_owned()),
        "{got:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_joins_its_table_as_of_each_records_time_across_files() -> Result<()> {
    use weir_core::join::{JoinInput, JoinKind};
    let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
    let (input, output, state) = (
        tmp.path().join("in"),
        tmp.path().join("out"),
        tmp.path().join("state"),
    );
    // `time kind key value`: customers (the table) in one file, orders
    // (the stream) in another, read in whatever order the tasks go.
    write_input(
        &input,
        &[
            (
                "customers.txt",
                "1 c ann Ann\n10 c ann Annie\n2 c bob Bob\n",
            ),
            (
                "orders.txt",
                "5 o ann 100\n12 o ann 101\n6 o eve 102\n30 o bob 103\n",
            ),
        ],
    );
    let mut p = Pipeline::new("enrich");
    p.source(FileSource::lines(&input))
        .event_time(
            |l: &String| {
                l.split(' ')
                    .next()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0)
            },
            0,
        )
        .key_with(|l: String| {
            let f: Vec<&str> = l.split(' ').collect();
            let side = match f.get(1) {
                Some(&"c") => JoinInput::Table(f.get(3).map(|n| (*n).to_owned())),
                _ => JoinInput::Stream(f.get(3).and_then(|o| o.parse::<u64>().ok()).unwrap_or(0)),
            };
            (f.get(2).copied().unwrap_or("").to_owned(), side)
        })
        .join_table(
            JoinKind::Left,
            |_c: &String, order: u64, name: Option<&String>| {
                format!("{order}={}", name.map_or("?", String::as_str))
            },
        )
        .sink(FileSink::tsv(&output));
    weir_runtime::cli::run(p, &config(&state, &[])?, None).await?;
    assert_eq!(
        read_all(&output),
        [
            "ann\t100=Ann",
            "ann\t101=Annie",
            "bob\t103=Bob",
            "eve\t102=?"
        ]
    );
    Ok(())
}

/// Orders and customers from two directories, each with a file `a.txt`,
/// as one `Union`: `time id customer amount` and `time id name`.
fn enrich_from_two_directories(p: &mut Pipeline, orders: &Path, customers: &Path, output: &Path) {
    use weir_core::join::{JoinInput, JoinKind};
    use weir_core::source::Union;
    use weir_core::Either;
    let time = |l: &String| {
        l.split(' ')
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    };
    p.source(Union::new(
        ("orders", FileSource::lines(orders)),
        ("customers", FileSource::lines(customers)),
    ))
    .event_time(
        move |e: &Either<String, String>| time(e.as_ref().either(|l| l, |r| r)),
        0,
    )
    .key_with(|e: Either<String, String>| {
        let line = e.clone().into_inner();
        let f: Vec<String> = line.split(' ').map(str::to_owned).collect();
        let field = |i: usize| f.get(i).cloned().unwrap_or_default();
        match e {
            Either::Left(_) => (field(2), JoinInput::Stream((field(1), field(3)))),
            Either::Right(_) => (field(1), JoinInput::Table(Some(field(2)))),
        }
    })
    .join_table(
        JoinKind::Left,
        |_c: &String, (id, amount): (String, String), name: Option<&String>| {
            format!("{amount} {} {id}", name.map_or("?", String::as_str))
        },
    )
    .select_key(|_customer, line: &String| line.rsplit(' ').next().unwrap_or_default().to_owned())
    .sink(FileSink::tsv(output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_union_reads_two_directories_as_one_input_and_resumes_each_file_where_it_was(
) -> Result<()> {
    let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
    let (orders, customers, output, state) = (
        tmp.path().join("orders"),
        tmp.path().join("customers"),
        tmp.path().join("out"),
        tmp.path().join("state"),
    );
    // The same file name on both sides: tasks `orders/a.txt` and
    // `customers/a.txt`.
    write_input(&orders, &[("a.txt", "5 o1 ann 100\n6 o2 eve 7\n")]);
    write_input(&customers, &[("a.txt", "1 ann Ann\n")]);
    let mut p = Pipeline::new("enrich");
    enrich_from_two_directories(&mut p, &orders, &customers, &output);
    weir_runtime::cli::run(p, &config(&state, &[])?, None).await?;
    assert_eq!(read_all(&output), ["o1\t100 Ann o1", "o2\t7 ? o2"]);

    // More lines in both files: only they are read on the second run.
    write_input(
        &orders,
        &[("a.txt", "5 o1 ann 100\n6 o2 eve 7\n20 o3 eve 8\n")],
    );
    write_input(&customers, &[("a.txt", "1 ann Ann\n10 eve Eve\n")]);
    let mut p = Pipeline::new("enrich");
    enrich_from_two_directories(&mut p, &orders, &customers, &output);
    weir_runtime::cli::run(p, &config(&state, &[])?, None).await?;
    assert_eq!(
        read_all(&output),
        ["o1\t100 Ann o1", "o2\t7 ? o2", "o3\t8 Eve o3"]
    );

    // Two inputs of one name cannot be told apart: refused.
    let mut p = Pipeline::new("twice");
    p.source(weir_core::source::Union::new(
        ("in", FileSource::lines(&orders)),
        ("in", FileSource::lines(&customers)),
    ))
    .sink(FileSink::lines(tmp.path().join("out2")));
    let err = weir_runtime::cli::run(p, &config(&tmp.path().join("state2"), &[])?, None)
        .await
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("both inputs of a union are named `in`"),
        "{err}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_after_a_window_takes_every_result_even_at_the_end_of_the_input() -> Result<()> {
    use std::time::Duration;
    use weir_core::window::{Windowed, Windows};
    let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
    let (input, output, state) = (
        tmp.path().join("in"),
        tmp.path().join("out"),
        tmp.path().join("state"),
    );
    // One event every second for two minutes.
    let lines: String = (0..120).map(|s| format!("{}\n", s * 1000)).collect();
    write_input(&input, &[("a.txt", &lines)]);
    let mut p = Pipeline::new("minutes");
    p.source(FileSource::lines(&input))
        .event_time(|l: &String| l.parse().unwrap_or(0), 0)
        .key_by(|_| "all".to_owned())
        .window(Windows::tumbling(Duration::from_secs(10)))
        .count()
        .map(|w: Windowed<u64>| w.value)
        .window(Windows::tumbling(Duration::from_secs(60)))
        .reduce(|a, b| a + b)
        .map(|w: Windowed<u64>| format!("{}:{}", w.start, w.value))
        .sink(FileSink::tsv(&output));
    weir_runtime::cli::run(p, &config(&state, &[])?, None).await?;
    assert_eq!(read_all(&output), ["all\t0:60", "all\t60000:60"]);
    let e = {
        let mut p = Pipeline::new("minutes-queried");
        p.source(FileSource::lines(&input))
            .key_by(|_| "all".to_owned())
            .window(Windows::tumbling(Duration::from_secs(10)))
            .count()
            .queryable(&ValueDescriptor::<u64>::new("window"))
            .map(|w: Windowed<u64>| w.value)
            .sink(FileSink::tsv(tmp.path().join("out-2")));
        weir_runtime::cli::run(p, &config(&tmp.path().join("state-2"), &[])?, None)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(e.contains("follows a window or a join"), "{e}");
    Ok(())
}

/// Words counted per word, then keyed again by first letter and counted
/// per letter: the second tally runs on the worker of the letter.
fn letters(p: &mut Pipeline, input: &Path, output: &Path) {
    p.source(FileSource::lines(input))
        .flat_map(|l: String| {
            l.split_ascii_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .key_with(|w| (w, ()))
        .process(Tally {
            stored: Stored::Number,
        })
        .key_by(|word, _count| word.chars().take(1).collect::<String>())
        .map(|_count| ())
        .process(Tally {
            stored: Stored::Number,
        })
        .sink(FileSink::tsv(output));
}

/// Each letter's tallies in the output, sorted.
fn tallies(output: &Path) -> std::collections::BTreeMap<String, Vec<u64>> {
    let mut by_letter = std::collections::BTreeMap::<String, Vec<u64>>::new();
    for line in read_all(output) {
        let (letter, n) = line.split_once('\t').expect("letter<TAB>tally");
        by_letter
            .entry(letter.to_owned())
            .or_default()
            .push(n.parse().expect("a tally"));
    }
    by_letter.values_mut().for_each(|t| t.sort_unstable());
    by_letter
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_by_after_a_processor_keeps_state_by_the_new_key_and_resumes_both_layers(
) -> Result<()> {
    let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
    let (input, output, state) = (
        tmp.path().join("in"),
        tmp.path().join("out"),
        tmp.path().join("state"),
    );
    let words = |from: usize, n: usize| -> String {
        (from..from + n)
            .map(|i| format!("{}{}\n", ['a', 'b', 'c', 'd', 'e'][i % 5], i % 37))
            .collect()
    };
    write_input(
        &input,
        &[("a.txt", &words(0, 500)), ("b.txt", &words(7, 300))],
    );
    let run = |parallelism: &str| {
        let mut p = Pipeline::new("letters");
        letters(&mut p, &input, &output);
        let config = config(&state, &[("parallelism", parallelism)]);
        async move { weir_runtime::cli::run(p, &config?, None).await }
    };
    run("2").await?;
    let expected = |total: usize| -> Vec<u64> { (1..=total as u64).collect() };
    let got = tallies(&output);
    assert_eq!(got.len(), 5);
    assert!(got.values().all(|t| *t == expected(160)), "{got:?}");
    // Each worker of the second layer writes its own output.
    assert!(output.join("part-layer1-worker-0").is_file());

    // More input, and three workers now: both layers go on from the
    // checkpoint, their key groups spread over the new workers.
    std::fs::write(input.join("a.txt"), words(0, 500) + &words(500, 250))
        .map_err(|e| Error::io("write", "a", e))?;
    let s = run("3").await?;
    assert_eq!(s.records_read, 250);
    let got = tallies(&output);
    assert!(got.values().all(|t| *t == expected(210)), "{got:?}");

    // The first processor's state is keyed by word, not by the new key.
    let mut p = Pipeline::new("letters-queried");
    p.source(FileSource::lines(&input))
        .key_with(|w: String| (w, ()))
        .process(Tally {
            stored: Stored::Number,
        })
        .key_by(|word, _count| word.chars().take(1).collect::<String>())
        .queryable(&TALLY)
        .sink(FileSink::tsv(tmp.path().join("out-2")));
    let e = weir_runtime::cli::run(p, &config(&tmp.path().join("state-2"), &[])?, None)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("follows a `key_by`"), "{e}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_after_a_second_exchange_close_on_the_watermark_that_follows_their_input(
) -> Result<()> {
    use std::time::Duration;
    use weir_core::window::{Windowed, Windows};
    let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
    let (input, output, state) = (
        tmp.path().join("in"),
        tmp.path().join("out"),
        tmp.path().join("state"),
    );
    // One event a second for two minutes, on three pages, in two files.
    let events = |range: std::ops::Range<i64>| -> String {
        range
            .map(|s| format!("{} p{}\n", s * 1000, s % 3))
            .collect()
    };
    write_input(
        &input,
        &[("a.txt", &events(0..60)), ("b.txt", &events(60..120))],
    );
    let mut p = Pipeline::new("per-page-then-all");
    p.source(FileSource::lines(&input))
        .event_time(
            |l: &String| {
                l.split(' ')
                    .next()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0)
            },
            0,
        )
        .key_by(|l: &String| l.split(' ').nth(1).unwrap_or("").to_owned())
        .window(Windows::tumbling(Duration::from_secs(10)))
        .count()
        .key_by(|_page, _count| "all".to_owned())
        .map(|w: Windowed<u64>| w.value)
        .window(Windows::tumbling(Duration::from_secs(30)))
        .reduce(|a, b| a + b)
        .map(|w: Windowed<u64>| format!("{}:{}", w.start, w.value))
        .sink(FileSink::tsv(&output));
    weir_runtime::cli::run(
        p,
        &config(&state, &[("parallelism", "2"), ("watermark.idle_ms", "0")])?,
        None,
    )
    .await?;
    // Every per-page count reached the window after the exchange before the
    // watermark that closed it: none was late, each window once.
    assert_eq!(
        read_all(&output),
        [
            "all\t0:30",
            "all\t30000:30",
            "all\t60000:30",
            "all\t90000:30"
        ]
    );
    Ok(())
}
