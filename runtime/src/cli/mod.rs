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

use clap::{Arg, ArgAction, ArgMatches, Command};
use weir_core::{Error, Result};

use crate::{Config, Pipeline};

mod logging;
mod offsets;
#[cfg(feature = "otel")]
mod otel;
mod output;
mod run;
mod views;

pub use run::run;

type Build<'a> = dyn Fn(&Config, &mut Pipeline) -> Result<()> + 'a;

/// A pipeline binary: its name, its own options, and how it builds its pipeline.
pub struct App {
    name: String,
    about: String,
    options: Vec<(&'static str, &'static str)>,
    /// Configuration keys of the binary's own that have no flag.
    settings: Vec<(&'static str, &'static str)>,
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
            settings: Vec::new(),
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

    /// Declares the configuration key `NAME` (set in the config file, in
    /// `WEIR_NAME`, or with `--set NAME=VALUE`), read with [`Config::get`].
    /// Keys neither declared nor the runtime's are refused as typos.
    pub fn setting(mut self, name: &'static str, help: &'static str) -> Self {
        self.settings.push((name, help));
        self
    }

    /// The configuration keys this binary declares, as they are spelled in
    /// the configuration.
    fn app_keys(&self) -> Vec<String> {
        self.options
            .iter()
            .chain(&self.settings)
            .map(|(name, _)| name.replace('-', "_"))
            .collect()
    }

    /// The configuration keys, for `run --help`.
    fn keys_help(&self) -> String {
        use crate::config::keys::RUNTIME_KEYS;
        let mut text = String::from(
            "Configuration keys (--config FILE, WEIR_KEY with __ for dots, --set key=value, in rising priority):\n",
        );
        for k in RUNTIME_KEYS {
            text.push_str(&format!(
                "  {:<26} {} (default: {})\n",
                k.key, k.meaning, k.default
            ));
        }
        text.push_str(&format!(
            "  {:<26} Kafka client properties, passed to librdkafka\n",
            "kafka.<property>"
        ));
        for (name, help) in &self.settings {
            text.push_str(&format!("  {name:<26} {help}\n"));
        }
        text.push_str(
            "`config show` prints the effective configuration and where each value came from.",
        );
        text
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
                    .after_help(self.keys_help())
                    .args(run_args.clone()),
            )
            .subcommand(
                Command::new("config")
                    .about("the configuration")
                    .subcommand_required(true)
                    .subcommand(
                        Command::new("show")
                            .about("print the effective configuration and where each value came from")
                            .after_help(self.keys_help())
                            .args(run_args.clone()),
                    ),
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
                        Command::new("get")
                            .about("print the committed value of a key of a queryable state, as JSON, read-only")
                            .arg(
                                Arg::new("store")
                                    .long("store")
                                    .value_name("NAME")
                                    .required(true)
                                    .help("the state, as the pipeline declares it queryable"),
                            )
                            .arg(
                                Arg::new("key")
                                    .long("key")
                                    .value_name("KEY")
                                    .required(true)
                                    .help("the key, as JSON (42, \"a b\") or as plain text for a string"),
                            )
                            .args(run_args.clone()),
                    )
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
        let _logging = logging::init(&self.name);
        let matches = self.command().get_matches();
        match self.dispatch(&matches, &build) {
            Ok(()) => ExitCode::SUCCESS,
            // A listing piped into `head`: its reader has what it wanted.
            Err(e) if output::is_closed_pipe(&e) => ExitCode::SUCCESS,
            Err(e) => {
                output::error_line(format_args!("error: {e}"));
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
            Some(("config", sub)) => match sub.subcommand() {
                Some(("show", s)) => self.config_show(s),
                _ => Err(Error::Config("unknown config command; see --help".into())),
            },
            Some(("checkpoints", sub)) => match sub.subcommand() {
                Some(("list", s)) => views::list(&state_arg(s)?),
                Some(("inspect", s)) => views::inspect(&state_arg(s)?, s.get_one::<String>("id")),
                _ => Err(Error::Config(
                    "unknown checkpoints command; see --help".into(),
                )),
            },
            Some(("state", sub)) => match sub.subcommand() {
                Some(("get", s)) => self.state_get(s, build),
                Some(("dump", s)) => views::dump(
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
        let config = self.config(m)?;
        let mut pipeline = Pipeline::new(&self.name);
        build(&config, &mut pipeline)?;
        Ok((config, pipeline))
    }

    /// `config show`: every key set, its value, and where it came from.
    fn config_show(&self, m: &ArgMatches) -> Result<()> {
        let config = self.config(m)?;
        for (key, value, from) in config.effective()? {
            output::outln!("{key} = {value}  # {from}");
        }
        Ok(())
    }

    /// The configuration of a `run`-like command.
    fn config(&self, m: &ArgMatches) -> Result<Config> {
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
        let config = Config::load(
            m.get_one::<String>("config").map(Path::new),
            &overrides,
            &self.app_keys(),
        )?;
        logging::set_format(config.runtime().log.format);
        Ok(config)
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
