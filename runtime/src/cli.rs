//! The command line every pipeline binary shares (ARCHITECTURE §5a):
//! `run`, `checkpoints list`, `checkpoints inspect`, `replay --from`,
//! `state dump`.
//!
//! ```no_run
//! use weir_runtime::prelude::*;
//! fn main() -> std::process::ExitCode {
//!     App::new("copy")
//!         .option("input", "directory of input files")
//!         .run(|cfg, p| {
//!             let _input = cfg.path("input")?;
//!             // p.source(...).sink(...);
//!             Ok(())
//!         })
//! }
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Arg, ArgAction, ArgMatches, Command};
use weir_core::source::ResetTo;
use weir_core::{Codec, Error, Result};

use crate::executor::{JobEnv, RunSummary};
use crate::manifest::Manifest;
use crate::store::{self, Store};
use crate::{Config, Pipeline};

type Build<'a> = dyn Fn(&Config, &mut Pipeline) -> Result<()> + 'a;

/// A pipeline binary: its name, its own options, and how it builds its pipeline.
pub struct App {
    name: String,
    about: String,
    options: Vec<(&'static str, &'static str)>,
}

/// Runs the pipeline binary `name` with the options `--input` and `--output`.
pub fn main(name: &str, build: impl Fn(&Config, &mut Pipeline) -> Result<()>) -> ExitCode {
    App::new(name)
        .option("input", "where the input is read from")
        .option("output", "where the output is written")
        .run(build)
}

impl App {
    /// A binary for the pipeline called `name`.
    pub fn new(name: &str) -> Self {
        App {
            name: name.to_owned(),
            about: format!("the weir pipeline `{name}`"),
            options: Vec::new(),
        }
    }

    /// One line shown at the top of `--help`.
    pub fn about(mut self, about: &str) -> Self {
        self.about = about.to_owned();
        self
    }

    /// Declares `--NAME VALUE` for `run` and `replay`; it sets config key
    /// `NAME` (dashes become underscores), read with [`Config::get`].
    pub fn option(mut self, name: &'static str, help: &'static str) -> Self {
        self.options.push((name, help));
        self
    }

    fn command(&self) -> Command {
        let state = || {
            Arg::new("state")
                .long("state")
                .value_name("DIR")
                .help("state directory (RocksDB and retained checkpoints)")
        };
        let mut run_args = vec![
            state(),
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .help("TOML configuration file"),
            Arg::new("set")
                .long("set")
                .value_name("KEY=VALUE")
                .action(ArgAction::Append)
                .help("override a configuration key, e.g. checkpoint.interval_ms=100"),
        ];
        for (name, help) in &self.options {
            run_args.push(Arg::new(*name).long(*name).value_name("VALUE").help(*help));
        }
        let read_state = || state().required(true);
        Command::new(self.name.clone())
            .about(self.about.clone())
            .subcommand_required(true)
            .arg_required_else_help(true)
            .subcommand(
                Command::new("run")
                    .about("run the pipeline (resumes from the last checkpoint)")
                    .args(run_args.clone()),
            )
            .subcommand(
                Command::new("replay")
                    .about("restore a retained checkpoint's state and positions, then run on")
                    .arg(
                        Arg::new("from")
                            .long("from")
                            .value_name("ID")
                            .required(true)
                            .value_parser(clap::value_parser!(u64))
                            .help("checkpoint id, from `checkpoints list`"),
                    )
                    .args(run_args.clone()),
            )
            .subcommand(
                Command::new("offsets")
                    .about("input positions per task: show, or reset while no instance runs")
                    .subcommand_required(true)
                    .subcommand(
                        Command::new("show")
                            .about("per task: checkpointed position, group-committed offset, end, lag")
                            .args(run_args.clone()),
                    )
                    .subcommand(
                        Command::new("reset")
                            .about("move the input positions (refused while an instance runs)")
                            .arg(Arg::new("to-earliest").long("to-earliest").action(ArgAction::SetTrue).help("the start of every input"))
                            .arg(Arg::new("to-latest").long("to-latest").action(ArgAction::SetTrue).help("the end of every input: skip what is there"))
                            .arg(
                                Arg::new("to-offset")
                                    .long("to-offset")
                                    .value_name("N")
                                    .value_parser(clap::value_parser!(u64))
                                    .help("position N of every task"),
                            )
                            .arg(
                                Arg::new("to-datetime")
                                    .long("to-datetime")
                                    .value_name("T")
                                    .help("the first record at or after T (RFC 3339, e.g. 2026-11-25T10:00:00Z)"),
                            )
                            .group(
                                clap::ArgGroup::new("to")
                                    .args(["to-earliest", "to-latest", "to-offset", "to-datetime"])
                                    .required(true),
                            )
                            .arg(Arg::new("keep-state").long("keep-state").action(ArgAction::SetTrue).help("keep the state (counts stay, inputs re-read are counted again)"))
                            .arg(Arg::new("reset-state").long("reset-state").action(ArgAction::SetTrue).help("wipe the keyed state and timers (state restarts from the new positions)"))
                            .args(run_args.clone()),
                    ),
            )
            .subcommand(
                Command::new("checkpoints")
                    .about("retained checkpoints")
                    .subcommand_required(true)
                    .subcommand(
                        Command::new("list")
                            .about("list retained checkpoints")
                            .arg(read_state()),
                    )
                    .subcommand(
                        Command::new("inspect")
                            .about("show a checkpoint's manifest (`latest` for the live one)")
                            .arg(Arg::new("id").required(true).value_name("ID"))
                            .arg(read_state()),
                    ),
            )
            .subcommand(
                Command::new("state")
                    .about("debugging views of the state")
                    .subcommand_required(true)
                    .subcommand(
                        Command::new("dump")
                            .about("list keyed state entries, read-only")
                            .arg(read_state())
                            .arg(
                                Arg::new("store")
                                    .long("store")
                                    .value_name("NAME")
                                    .help("only the state called NAME"),
                            )
                            .arg(
                                Arg::new("limit")
                                    .long("limit")
                                    .value_name("N")
                                    .value_parser(clap::value_parser!(usize))
                                    .help("at most N entries"),
                            ),
                    ),
            )
    }

    /// Parses the command line, runs the command, and returns the exit code:
    /// 0 on success (bounded input done, or clean shutdown), 1 on error.
    pub fn run(self, build: impl Fn(&Config, &mut Pipeline) -> Result<()>) -> ExitCode {
        bound_malloc_arenas();
        #[cfg(feature = "failpoints")]
        let _failpoints = fail::FailScenario::setup();
        init_tracing();
        let matches = self.command().get_matches();
        match self.dispatch(&matches, &build) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }

    fn dispatch(&self, m: &ArgMatches, build: &Build<'_>) -> Result<()> {
        match m.subcommand() {
            Some(("run", sub)) => self.run_cmd(sub, build, None),
            Some(("replay", sub)) => {
                let from = sub.get_one::<u64>("from").copied();
                self.run_cmd(sub, build, from)
            }
            Some(("offsets", sub)) => match sub.subcommand() {
                Some(("show", s)) => self.offsets_show(s, build),
                Some(("reset", s)) => self.offsets_reset(s, build),
                _ => Err(Error::Config("unknown offsets command; see --help".into())),
            },
            Some(("checkpoints", sub)) => match sub.subcommand() {
                Some(("list", s)) => list(&state_arg(s)?),
                Some(("inspect", s)) => inspect(&state_arg(s)?, s.get_one::<String>("id")),
                _ => Err(Error::Config(
                    "unknown checkpoints command; see --help".into(),
                )),
            },
            Some(("state", sub)) => match sub.subcommand() {
                Some(("dump", s)) => dump(
                    &state_arg(s)?,
                    s.get_one::<String>("store").map(String::as_str),
                    s.get_one::<usize>("limit").copied(),
                ),
                _ => Err(Error::Config("unknown state command; see --help".into())),
            },
            _ => Err(Error::Config("unknown command; see --help".into())),
        }
    }

    /// The configuration and the built pipeline of a `run`-like command.
    fn load(&self, m: &ArgMatches, build: &Build<'_>) -> Result<(Config, Pipeline)> {
        let mut overrides = Vec::new();
        for kv in m.get_many::<String>("set").into_iter().flatten() {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                Error::Config(format!(
                    "--set {kv}: expected KEY=VALUE, e.g. --set checkpoint.interval_ms=100"
                ))
            })?;
            overrides.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        if let Some(s) = m.get_one::<String>("state") {
            overrides.push(("state".into(), toml_string(s)));
        }
        for (name, _) in &self.options {
            if let Some(v) = m.get_one::<String>(name) {
                overrides.push((name.replace('-', "_"), toml_string(v)));
            }
        }
        let config = Config::load(m.get_one::<String>("config").map(Path::new), &overrides)?;
        let mut pipeline = Pipeline::new(&self.name);
        build(&config, &mut pipeline)?;
        Ok((config, pipeline))
    }

    fn offsets_show(&self, m: &ArgMatches, build: &Build<'_>) -> Result<()> {
        let (config, pipeline) = self.load(m, build)?;
        let dir = state_dir(&config)?;
        let manifest = match store::open_read_only(&dir) {
            Ok(ro) => ro.manifest()?,
            Err(_) => None,
        };
        if let Some(m) = &manifest {
            check_fingerprint(m, &pipeline, &dir)?;
        }
        let job = pipeline.into_job()?.job;
        let offsets = job.source().offsets()?;
        println!(
            "{:<28} {:>14} {:>16} {:>14} {:>10}",
            "TASK", "CHECKPOINTED", "GROUP-COMMITTED", "END", "LAG"
        );
        let show = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        for t in offsets {
            let chk = manifest
                .as_ref()
                .and_then(|m| m.sources.get(&t.task))
                .map(|p| p.position);
            let lag = t.end.map(|e| e.saturating_sub(chk.unwrap_or(0)));
            println!(
                "{:<28} {:>14} {:>16} {:>14} {:>10}",
                t.task,
                show(chk),
                show(t.committed),
                show(t.end),
                show(lag)
            );
        }
        Ok(())
    }

    fn offsets_reset(&self, m: &ArgMatches, build: &Build<'_>) -> Result<()> {
        let wipe = match (m.get_flag("keep-state"), m.get_flag("reset-state")) {
            (true, false) => false,
            (false, true) => true,
            _ => {
                return Err(Error::Config(
                    "say what happens to the state: --keep-state keeps it (the counts stay, and input read again is counted again), --reset-state wipes keyed state and timers (the state is rebuilt from the new positions); output already written stays either way"
                        .into(),
                ))
            }
        };
        let to = if m.get_flag("to-earliest") {
            ResetTo::Earliest
        } else if m.get_flag("to-latest") {
            ResetTo::Latest
        } else if let Some(n) = m.get_one::<u64>("to-offset") {
            ResetTo::Offset(*n)
        } else {
            let t = m
                .get_one::<String>("to-datetime")
                .map(String::as_str)
                .unwrap_or_default();
            let when = humantime::parse_rfc3339_weak(t).map_err(|e| {
                Error::Config(format!(
                    "--to-datetime {t}: {e}; use RFC 3339, e.g. 2026-11-25T10:00:00Z"
                ))
            })?;
            let ms = when
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|_| Error::Config(format!("--to-datetime {t} is before 1970")))?
                .as_millis() as i64;
            ResetTo::Timestamp(ms)
        };
        let (config, pipeline) = self.load(m, build)?;
        let dir = state_dir(&config)?;
        // Opening the live state takes its lock: refused while an instance runs.
        let store = Store::open(&dir)?;
        let current = match store.manifest()? {
            Some(m) => {
                check_fingerprint(&m, &pipeline, &dir)?;
                m
            }
            None => Manifest::empty(
                pipeline.name(),
                &pipeline.fingerprint(),
                &pipeline.topology(),
                config.runtime().key_groups,
            ),
        };
        let job = pipeline.into_job()?.job;
        let positions = job.source().resolve(to)?;
        let mut next = current.clone();
        next.epoch = current.epoch + 1;
        next.time_ms = store::now_ms();
        next.generation = current.generation + 1;
        next.replayed_from = None;
        // Kafka mode: a new timeline in the changelog, from the kept state.
        next.changelog.clear();
        next.reseed = true;
        for (task, pos) in &positions {
            next.sources.insert(
                task.clone(),
                crate::manifest::SourcePosition {
                    position: *pos,
                    finished: false,
                },
            );
        }
        store.reset(&next, wipe)?;
        println!("{:<28} {:>14} {:>14}", "TASK", "FROM", "TO");
        for (task, pos) in &positions {
            let from = current
                .sources
                .get(task)
                .map_or_else(|| "-".to_owned(), |p| p.position.to_string());
            println!("{task:<28} {from:>14} {pos:>14}");
        }
        println!(
            "{}",
            if wipe {
                "state: wiped (keyed state and timers); it is rebuilt from the new positions"
            } else {
                "state: kept; input read again is counted again"
            }
        );
        if let Err(e) = job.source().publish(&positions) {
            eprintln!("warning: the reset is committed, but copying it to the source's own record failed: {e}");
        }
        Ok(())
    }

    fn run_cmd(&self, m: &ArgMatches, build: &Build<'_>, replay_from: Option<u64>) -> Result<()> {
        let (config, pipeline) = self.load(m, build)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.runtime().parallelism.max(1))
            .enable_all()
            .build()
            .map_err(|e| Error::io("cannot start the tokio runtime", "", e))?;
        let mut pipeline = Some(pipeline);
        let mut replay_from = replay_from;
        let mut retry = Retry::default();
        let summary = loop {
            let p = match pipeline.take() {
                Some(p) => p,
                None => {
                    let (_, p) = self.load(m, build)?;
                    p
                }
            };
            let mut committed = false;
            match rt.block_on(run_once(p, &config, replay_from, &mut committed)) {
                Ok(summary) => break summary,
                Err(e) => retry.after(e, committed)?,
            }
            // A replay is done once its state is in place: never twice.
            replay_from = None;
        };
        tracing::info!(
            commits = summary.commits,
            epoch = summary.last_epoch,
            records = summary.records_read,
            skipped = summary.skipped,
            commit_p50_ms = summary.commit_times.percentile_ms(0.5),
            commit_p99_ms = summary.commit_times.percentile_ms(0.99),
            commit_max_ms = summary.commit_times.max().as_secs_f64() * 1000.0,
            align_p50_ms = summary.align_times.percentile_ms(0.5),
            align_p99_ms = summary.align_times.percentile_ms(0.99),
            "done"
        );
        Ok(())
    }
}

/// Recovers from aborted epochs (e.g. the broker restarted mid-commit):
/// the run starts over from the last commit point, as after a crash,
/// with a growing pause; errors while the cluster is still away are
/// retried for a while. An incident ends only when a run commits: runs
/// that keep failing without a commit give up after [`RETRY_FOR`], however
/// long each of them took to fail.
#[derive(Default)]
struct Retry {
    since: Option<std::time::Instant>,
    attempts: u32,
}

/// How long a run keeps recovering from aborted epochs before giving up.
const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(120);

impl Retry {
    fn after(&mut self, e: Error, committed: bool) -> Result<()> {
        if committed {
            // The run made progress before this abort: a new incident.
            *self = Retry::default();
        }
        let since = match (&e, self.since) {
            (Error::Aborted(_), None) => *self.since.insert(std::time::Instant::now()),
            (Error::Fenced(_), _) | (_, None) => return Err(e),
            (_, Some(since)) => since,
        };
        if since.elapsed() > RETRY_FOR {
            return Err(e);
        }
        self.attempts += 1;
        let pause = std::time::Duration::from_millis(250 << self.attempts.min(5));
        tracing::warn!(
            attempt = self.attempts,
            "{e}; recovering from the last commit and redoing the epoch in {pause:?}"
        );
        std::thread::sleep(pause);
        Ok(())
    }
}

/// Quotes a command-line value as a TOML string, so that `--input 123`
/// stays the string "123".
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// glibc's malloc, which RocksDB and librdkafka allocate through, gives
/// each thread that allocates an arena of its own (up to 8 per core), and
/// every arena keeps what is freed into it: RocksDB's write batches and
/// memtable blocks, freed on one thread after growing on another, pile up
/// across a dozen arenas. Two arenas keep about 35 MiB less at the peak of
/// a 1 GiB state build (benches/README.md, workload 6). A
/// `MALLOC_ARENA_MAX` in the environment is left to decide.
fn bound_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: `mallopt` only sets a parameter of the allocator, under
        // glibc's own lock. Called first thing in `App::run`, before weir
        // starts a thread, so that no arena beyond the two is made.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn state_dir(config: &Config) -> Result<PathBuf> {
    config.runtime().state.clone().ok_or_else(|| {
        Error::Config("no state directory; pass --state DIR (or set `state` in the config)".into())
    })
}

fn state_arg(m: &ArgMatches) -> Result<PathBuf> {
    m.get_one::<String>("state")
        .map(PathBuf::from)
        .ok_or_else(|| Error::Config("--state DIR is required".into()))
}

fn check_fingerprint(m: &Manifest, pipeline: &Pipeline, dir: &Path) -> Result<()> {
    if m.fingerprint != pipeline.fingerprint() || m.pipeline != pipeline.name() {
        return Err(Error::Config(format!(
            "state directory {} belongs to pipeline `{}` (fingerprint {}: {}), not `{}` (fingerprint {}: {}); pass another --state, or delete it to start over",
            dir.display(),
            m.pipeline,
            m.fingerprint,
            m.topology,
            pipeline.name(),
            pipeline.fingerprint(),
            pipeline.topology()
        )));
    }
    Ok(())
}

/// Runs `pipeline` with `config` until its bounded input is done or a
/// shutdown signal (SIGINT, SIGTERM) arrives; each ends with a commit.
/// With `replay_from`, first restores that retained checkpoint.
pub async fn run(
    pipeline: Pipeline,
    config: &Config,
    replay_from: Option<u64>,
) -> Result<RunSummary> {
    run_once(pipeline, config, replay_from, &mut false).await
}

/// [`run`], also telling whether the run committed any checkpoint before
/// it failed (so that a retry knows a new incident from the same one).
async fn run_once(
    pipeline: Pipeline,
    config: &Config,
    replay_from: Option<u64>,
    committed: &mut bool,
) -> Result<RunSummary> {
    let rc = config.runtime().clone();
    let dir = rc.state.clone().ok_or_else(|| {
        Error::Config("no state directory; pass --state DIR (or set `state` in the config)".into())
    })?;
    if let Some(id) = replay_from {
        let chk = store::list_checkpoints(&dir)?
            .into_iter()
            .find(|m| m.epoch == id);
        if let Some(m) = &chk {
            check_fingerprint(m, &pipeline, &dir)?;
        }
        let m = Store::replay(&dir, id)?;
        tracing::info!(
            from = id,
            epoch = m.epoch,
            generation = m.generation,
            "replaying from checkpoint {id}"
        );
    }
    let store = Arc::new(Store::open(&dir)?);
    let manifest = match store.manifest()? {
        Some(m) => {
            check_fingerprint(&m, &pipeline, &dir)?;
            if m.key_groups != rc.key_groups {
                return Err(Error::Config(format!(
                    "key_groups is fixed when a state directory is created: {} in {}, but {} is configured; set key_groups = {} or use a new --state",
                    m.key_groups,
                    dir.display(),
                    rc.key_groups,
                    m.key_groups
                )));
            }
            tracing::info!(epoch = m.epoch, "recovering from checkpoint {}", m.epoch);
            m
        }
        None => Manifest::empty(
            pipeline.name(),
            &pipeline.fingerprint(),
            &pipeline.topology(),
            rc.key_groups,
        ),
    };
    let built = pipeline.into_job()?;
    if rc.on_bad_input == crate::OnBadInput::DeadLetter && built.dead_letter.is_none() {
        return Err(Error::Config(
            "on_bad_input = \"dead-letter\", but this pipeline has no dead-letter sink; declare one (Pipeline::dead_letter, e.g. through the binary's --dead-letter-topic option) or choose fail or skip".into(),
        ));
    }
    let (tx, shutdown) = tokio::sync::watch::channel(false);
    let signals = tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        let _ = tx.send(true);
    });
    let start_epoch = manifest.epoch;
    let progress = Arc::clone(&store);
    let result = built
        .job
        .run(JobEnv {
            named: built.named,
            commit: built.commit,
            dead_letter: built.dead_letter,
            store,
            manifest,
            config: rc,
            shutdown,
        })
        .await;
    signals.abort();
    if result.is_err() {
        *committed = matches!(progress.manifest(), Ok(Some(m)) if m.epoch > start_epoch);
    }
    result
}

fn format_time(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn list(dir: &Path) -> Result<()> {
    let all = store::list_checkpoints(dir)?;
    if all.is_empty() {
        println!(
            "no retained checkpoints in {} (every checkpoint.retain_every-th checkpoint is retained)",
            dir.display()
        );
        return Ok(());
    }
    println!(
        "{:>8}  {:<20}  {:>10}  {:>7}  {:>5}",
        "ID", "TIME (UTC)", "GENERATION", "SOURCES", "SINKS"
    );
    for m in all {
        println!(
            "{:>8}  {:<20}  {:>10}  {:>7}  {:>5}",
            m.epoch,
            format_time(m.time_ms),
            m.generation,
            m.sources.len(),
            m.sinks.len()
        );
    }
    Ok(())
}

fn inspect(dir: &Path, id: Option<&String>) -> Result<()> {
    let m = match id.map(String::as_str) {
        None | Some("latest") => store::open_read_only(dir)?.manifest()?.ok_or_else(|| {
            Error::Config(format!("{} has no committed checkpoint yet", dir.display()))
        })?,
        Some(id) => {
            let want: u64 = id.parse().map_err(|_| {
                Error::Config(format!(
                    "checkpoint id `{id}` is not a number; see `checkpoints list`"
                ))
            })?;
            store::list_checkpoints(dir)?
                .into_iter()
                .find(|m| m.epoch == want)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "no retained checkpoint {want} in {}; see `checkpoints list`",
                        dir.display()
                    ))
                })?
        }
    };
    println!(
        "checkpoint {}  (pipeline {}, generation {}, {})",
        m.epoch,
        m.pipeline,
        m.generation,
        format_time(m.time_ms)
    );
    println!("guarantee   {}", m.guarantee);
    if let Some(from) = m.replayed_from {
        println!("replayed from checkpoint {from}");
    }
    println!("sources:");
    for (task, p) in &m.sources {
        println!(
            "  {task}\tposition {}{}",
            p.position,
            if p.finished { " (finished)" } else { "" }
        );
    }
    println!("sinks:");
    for (id, len) in &m.sinks {
        println!("  {id}\tcommitted length {len}");
    }
    Ok(())
}

/// Renders bytes as a bincode string when they are one, else as hex.
fn render(bytes: &[u8]) -> String {
    if let Ok(s) = String::decode(bytes) {
        if !s.chars().any(char::is_control) {
            return format!("{s:?}");
        }
    }
    if let Ok(n) = u64::decode(bytes) {
        return format!("{n}");
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn dump(dir: &Path, only: Option<&str>, limit: Option<usize>) -> Result<()> {
    let ro = store::open_read_only(dir)?;
    let mut shown = 0usize;
    println!("GROUP\tNODE\tSTATE\tKEY\tVALUE");
    ro.for_each_state(|k, v| {
        if limit.is_some_and(|l| shown >= l) {
            return false;
        }
        // k | group:2 | node:2 | name_len:1 | name | key_len:4 | key [| map key]
        if k.len() >= 6
            && (k[0] == weir_core::state::KEYED_TAG || k[0] == weir_core::state::MAP_TAG)
        {
            let group = u16::from_be_bytes([k[1], k[2]]);
            let node = u16::from_be_bytes([k[3], k[4]]);
            let nlen = usize::from(k[5]);
            let Some(name) = k.get(6..6 + nlen) else {
                return true;
            };
            let name = String::from_utf8_lossy(name);
            if only.is_some_and(|o| o != name) {
                return true;
            }
            let rest = &k[(6 + nlen).min(k.len())..];
            let (key, map_key) = match rest.get(..4) {
                Some(l) => {
                    let len = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
                    let key = rest.get(4..4 + len).unwrap_or(&[]);
                    (key, rest.get(4 + len..).unwrap_or(&[]))
                }
                None => (rest, &[][..]),
            };
            let key = if map_key.is_empty() {
                render(key)
            } else {
                format!("{}[{}]", render(key), render(map_key))
            };
            println!("{group}\t{node}\t{name}\t{key}\t{}", render(v));
            shown += 1;
        } else if k.first() == Some(&weir_core::state::TIMER_TAG) && only.is_none() {
            println!(
                "{}\t-\t(timer)\t{}\t",
                weir_core::state::group_of(k).unwrap_or(0),
                render(&k[5..])
            );
            shown += 1;
        }
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aborted() -> Error {
        Error::Aborted("the transaction was aborted".into())
    }

    /// An incident that began longer than [`RETRY_FOR`] ago, three retries in.
    fn incident_past_its_limit() -> Retry {
        let long_ago = std::time::Instant::now()
            .checked_sub(RETRY_FOR + std::time::Duration::from_secs(1))
            .expect("the clock is past RETRY_FOR");
        Retry {
            since: Some(long_ago),
            attempts: 3,
        }
    }

    #[test]
    fn runs_failing_without_a_commit_give_up_however_long_each_took() {
        let mut retry = incident_past_its_limit();
        // Before, a run that took longer than RETRY_FOR / 4 to fail counted
        // as a new incident, so a run wedged for 30 s at a time retried forever.
        assert!(matches!(
            retry.after(aborted(), false),
            Err(Error::Aborted(_))
        ));
    }

    #[test]
    fn a_commit_before_the_abort_starts_a_new_incident() {
        let mut retry = incident_past_its_limit();
        assert!(retry.after(aborted(), true).is_ok());
        assert_eq!(retry.attempts, 1);
        assert!(retry.since.is_some_and(|s| s.elapsed() < RETRY_FOR));
    }

    #[test]
    fn fencing_and_errors_outside_an_incident_are_not_retried() {
        let mut retry = Retry::default();
        assert!(retry
            .after(Error::Fenced("a newer instance".into()), false)
            .is_err());
        assert!(retry
            .after(Error::Config("no such topic".into()), false)
            .is_err());
    }
}
