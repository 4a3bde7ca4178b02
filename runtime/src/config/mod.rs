//! Configuration: TOML file, `WEIR_*` environment variables and `--set`
//! overrides, in rising priority (ARCHITECTURE §5a).
//!
//! The runtime keys are listed in [`keys`] (and by `run --help`, with
//! their defaults); `[kafka]` passes client properties through to
//! librdkafka. Any other key must be an option or setting the binary
//! declares ([`App::option`](crate::cli::App::option),
//! [`App::setting`](crate::cli::App::setting)): a typo is refused, naming
//! the nearest known key, never silently ignored.
//!
//! Environment variables nest with `__`: `WEIR_CHECKPOINT__INTERVAL_MS=100`.

use std::path::PathBuf;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;

pub(crate) mod keys;
mod origin;

use origin::{explain, parse_value, CommandLine};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use weir_core::{Error, Result};

/// The delivery guarantee (ARCHITECTURE §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// Output, state and positions commit atomically; recovery rewinds output.
    #[default]
    ExactlyOnce,
    /// Output is never rewound: after a crash, the records since the last
    /// checkpoint are processed again and their output appears twice.
    AtLeastOnce,
    /// Input positions are committed as records are read, before they are
    /// processed: after a crash, records read since the last checkpoint are
    /// skipped, never repeated.
    AtMostOnce,
}

impl std::fmt::Display for Guarantee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Guarantee::ExactlyOnce => "exactly-once",
            Guarantee::AtLeastOnce => "at-least-once",
            Guarantee::AtMostOnce => "at-most-once",
        })
    }
}

/// The most key groups a pipeline may have.
pub const MAX_KEY_GROUPS: u16 = 16_384;

/// The longest epoch: a day.
const MAX_INTERVAL_MS: u64 = 86_400_000;

/// The largest exchange batch.
const MAX_BATCH_SIZE: usize = 65_536;

/// The largest keyed-state cache per worker, MiB.
const MAX_CACHE_MB: usize = 65_536;

/// What to do with a record that cannot be decoded or that a processor fails on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OnBadInput {
    /// Stop the pipeline with the error; nothing of the open epoch commits.
    #[default]
    Fail,
    /// Log the record's position and the error, count it, and go on.
    Skip,
    /// Write an undecodable record to the pipeline's dead-letter sink
    /// (inside the epoch's commit, like any output), log and count it, and
    /// go on; a processor's failure is skipped as with `skip`.
    DeadLetter,
}

/// Checkpoint settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Epoch length in milliseconds.
    pub interval_ms: u64,
    /// Every K-th checkpoint is retained for replay (0: none).
    pub retain_every: u64,
    /// How many retained checkpoints are kept.
    pub retain_count: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            interval_ms: 1000,
            retain_every: 10,
            retain_count: 5,
        }
    }
}

/// Event-time watermark settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatermarkConfig {
    /// A source task (an input partition or file) caught up with its input
    /// and without records for this long stops holding the watermark back
    /// (0: never), as Flink's idleness does.
    pub idle_ms: u64,
}

impl Default for WatermarkConfig {
    fn default() -> Self {
        WatermarkConfig { idle_ms: 5000 }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable text (the default).
    #[default]
    Text,
    /// One JSON object per line, with the spans it happened in.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Text or JSON lines.
    pub format: LogFormat,
}

/// The HTTP server of an instance (ARCHITECTURE §10).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Where to serve metrics, health and status; off when unset.
    pub listen: Option<String>,
}

impl HttpConfig {
    /// The address to listen on, if the server is on.
    ///
    /// # Errors
    /// When `listen` is not an address and port.
    pub fn address(&self) -> Result<Option<std::net::SocketAddr>> {
        self.listen
            .as_deref()
            .map(|a| {
                a.trim().parse().map_err(|e| {
                    Error::Config(format!(
                        "`http.listen` takes an address and port such as 127.0.0.1:9464 (port 0 picks a free one), not {a:?} ({e})"
                    ))
                })
            })
            .transpose()
    }
}

/// The runtime's own settings, read from the merged configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeConfig {
    /// State directory.
    pub state: Option<PathBuf>,
    /// Delivery guarantee.
    pub guarantee: Guarantee,
    /// Checkpoint settings.
    pub checkpoint: CheckpointConfig,
    /// Event-time watermarks.
    pub watermark: WatermarkConfig,
    /// Bad-input policy.
    pub on_bad_input: OnBadInput,
    /// Keyed workers in this instance.
    pub parallelism: usize,
    /// Number of key groups.
    pub key_groups: u16,
    /// Records per exchange batch.
    pub batch_size: usize,
    /// Write-back cache size per worker, in MiB.
    pub cache_mb: usize,
    /// Kafka mode, shared: how long the local state of a shard that
    /// another instance holds is kept, to be rolled forward if it comes
    /// back; keep it below the changelog's `delete.retention.ms`.
    pub moved_state_keep_ms: u64,
    /// The HTTP server (metrics, health, status); off by default.
    pub http: HttpConfig,
    /// Logging.
    pub log: LogConfig,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            state: None,
            guarantee: Guarantee::default(),
            checkpoint: CheckpointConfig::default(),
            watermark: WatermarkConfig::default(),
            on_bad_input: OnBadInput::default(),
            parallelism: std::thread::available_parallelism().map_or(2, usize::from),
            key_groups: weir_core::keygroup::DEFAULT_KEY_GROUPS,
            batch_size: 1024,
            cache_mb: 16,
            moved_state_keep_ms: 12 * 60 * 60 * 1000,
            http: HttpConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// The merged configuration of one invocation: runtime settings plus any
/// pipeline-specific keys (`input`, `output`, ...).
#[derive(Clone)]
pub struct Config {
    figment: Figment,
    runtime: RuntimeConfig,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("runtime", &self.runtime)
            .finish()
    }
}

impl Config {
    /// Merges, in rising priority: the TOML `file`, `WEIR_*` environment
    /// variables, then `overrides` (`key=value`, dotted keys nest).
    ///
    /// # Errors
    /// A missing file, a key that is neither a runtime key nor one of
    /// `app_keys` (the binary's own; dotted keys below them are allowed) nor
    /// under `kafka`, or a runtime value out of its range: each named with
    /// where it came from.
    pub fn load(
        file: Option<&std::path::Path>,
        overrides: &[(String, String)],
        app_keys: &[String],
    ) -> Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(RuntimeConfig::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(Error::Config(format!(
                    "config file {} does not exist; pass an existing TOML file to --config",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("WEIR_").split("__"));
        figment = figment.merge(CommandLine(
            overrides
                .iter()
                .map(|(k, v)| (k.clone(), parse_value(v)))
                .collect(),
        ));
        keys::check_known(&figment, app_keys)?;
        Self::from_figment(figment)
    }

    fn from_figment(figment: Figment) -> Result<Self> {
        let runtime: RuntimeConfig = figment
            .extract()
            .map_err(|e| Error::Config(explain(&figment, e)))?;
        let out_of_range = |key: &str| {
            let takes = keys::runtime_key(key).map_or("", |k| k.takes);
            let value = figment
                .find_value(key)
                .ok()
                .and_then(|v| serde_json::to_string(&v).ok())
                .unwrap_or_default();
            Err(Error::Config(format!(
                "`{key}` ({}) takes {takes}, not {value}",
                origin::origin(&figment, key),
            )))
        };
        let rc = &runtime;
        if rc.checkpoint.interval_ms == 0 || rc.checkpoint.interval_ms > MAX_INTERVAL_MS {
            return out_of_range("checkpoint.interval_ms");
        }
        // Above 16384 a map entry's key could collide with the `meta/`
        // keys (both start with `m`).
        if rc.key_groups == 0 || rc.key_groups > MAX_KEY_GROUPS {
            return out_of_range("key_groups");
        }
        if rc.parallelism == 0 || rc.parallelism > usize::from(rc.key_groups) {
            return out_of_range("parallelism");
        }
        // One read of a batch is one step of the exchange: a huge batch
        // would swallow a whole input into one epoch.
        if rc.batch_size == 0 || rc.batch_size > MAX_BATCH_SIZE {
            return out_of_range("batch_size");
        }
        if rc.cache_mb == 0 || rc.cache_mb > MAX_CACHE_MB {
            return out_of_range("cache_mb");
        }
        if rc.http.address().is_err() {
            return out_of_range("http.listen");
        }
        Ok(Config { figment, runtime })
    }

    /// Every key set, with its value and where it came from (`config show`):
    /// `(key, value, origin)`.
    pub fn effective(&self) -> Result<Vec<(String, String, String)>> {
        let dict: figment::value::Dict = self
            .figment
            .extract()
            .map_err(|e| Error::Config(explain(&self.figment, e)))?;
        Ok(keys::leaves(&dict)
            .into_iter()
            .map(|(key, value)| {
                let text = match &value {
                    figment::value::Value::String(_, s) => format!("{s:?}"),
                    other => serde_json::to_string(other).unwrap_or_else(|_| format!("{other:?}")),
                };
                let from = origin::origin(&self.figment, &key);
                (key, text, from)
            })
            .collect())
    }

    /// Every key set and its value as text (a string as it is, anything
    /// else as JSON): what processors read when they open (see
    /// [`OpenContext::setting`](weir_core::OpenContext::setting)).
    ///
    /// # Errors
    /// When the merged configuration cannot be read.
    pub fn settings(&self) -> Result<std::collections::BTreeMap<String, String>> {
        let dict: figment::value::Dict = self
            .figment
            .extract()
            .map_err(|e| Error::Config(explain(&self.figment, e)))?;
        Ok(keys::leaves(&dict)
            .into_iter()
            .map(|(key, value)| {
                let text = match &value {
                    figment::value::Value::String(_, s) => s.clone(),
                    other => serde_json::to_string(other).unwrap_or_else(|_| format!("{other:?}")),
                };
                (key, text)
            })
            .collect())
    }

    /// The runtime's settings.
    pub fn runtime(&self) -> &RuntimeConfig {
        &self.runtime
    }

    /// A required pipeline setting, deserialized.
    ///
    /// # Errors
    /// When missing or of the wrong type, naming the key and how to set it.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T> {
        if !self.figment.contains(key) {
            return Err(Error::Config(format!(
                "`{key}` is not set; pass --{} VALUE, --set {key}=VALUE, or WEIR_{}",
                key.replace('_', "-"),
                key.to_uppercase().replace('.', "__")
            )));
        }
        self.figment.extract_inner(key).map_err(|mut e| {
            if e.path.is_empty() {
                e.path = key.split('.').map(str::to_owned).collect();
            }
            Error::Config(explain(&self.figment, e))
        })
    }

    /// An optional pipeline setting.
    pub fn get_opt<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        if self.figment.contains(key) {
            self.get(key).map(Some)
        } else {
            Ok(None)
        }
    }

    /// An optional setting parsed from its text (`FromStr`), whether it was
    /// given as a string (`--gap-ms 100`) or a number (`gap_ms = 100`).
    pub fn parse<T>(&self, key: &str) -> Result<Option<T>>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        let Ok(value) = self.figment.find_value(key) else {
            return Ok(None);
        };
        let Some(text) = scalar_text(&value) else {
            return Err(Error::Config(format!(
                "`{key}` must be a single value, not {value:?}"
            )));
        };
        text.trim()
            .parse()
            .map(Some)
            .map_err(|e| Error::Config(format!("`{key}` = {text:?}: {e}")))
    }

    /// The table `key` flattened to `dotted.name -> text`, for pass-through
    /// client properties: `[kafka]` with `"socket.timeout.ms" = 1000`, or
    /// `--set kafka.socket.timeout.ms=1000`, both give `socket.timeout.ms`.
    pub fn flat_table(&self, key: &str) -> Result<std::collections::BTreeMap<String, String>> {
        use figment::value::Value;
        let leaves = match self.figment.find_value(key) {
            Ok(Value::Dict(_, dict)) => {
                let mut leaves = Vec::new();
                keys::walk("", &dict, &|_| true, &mut leaves);
                leaves
            }
            Ok(value) => vec![(String::new(), value)],
            Err(_) => Vec::new(),
        };
        leaves
            .into_iter()
            .map(|(name, value)| match scalar_text(&value) {
                Some(text) => Ok((name, text)),
                None => Err(Error::Config(format!(
                    "`{name}` must be a string, number or boolean, not {value:?}"
                ))),
            })
            .collect()
    }

    /// A required path setting.
    pub fn path(&self, key: &str) -> Result<PathBuf> {
        self.get::<String>(key).map(PathBuf::from)
    }
}

/// A single value as text (whole numbers exactly, up to `u128::MAX`);
/// `None` for a table or a list.
fn scalar_text(value: &figment::value::Value) -> Option<String> {
    use figment::value::Value;
    match value {
        Value::String(_, s) => Some(s.clone()),
        Value::Num(_, n) => Some(
            n.to_u128()
                .map(|u| u.to_string())
                .or_else(|| n.to_i128().map(|i| i.to_string()))
                .or_else(|| n.to_f64().map(|f| f.to_string()))
                .unwrap_or_default(),
        ),
        Value::Bool(_, b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_nest_and_win_over_the_file() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
        let file = dir.path().join("weir.toml");
        std::fs::write(
            &file,
            "input = \"a\"\n[checkpoint]\ninterval_ms = 500\nretain_every = 3\n",
        )
        .map_err(|e| Error::io("write", file.display(), e))?;
        let cfg = Config::load(
            Some(&file),
            &[("checkpoint.interval_ms".into(), "20".into())],
            &["input".into(), "output".into()],
        )?;
        assert_eq!(cfg.runtime().checkpoint.interval_ms, 20);
        assert_eq!(cfg.runtime().checkpoint.retain_every, 3);
        assert_eq!(cfg.path("input")?, PathBuf::from("a"));
        let missing = cfg.path("output");
        assert!(matches!(missing, Err(Error::Config(m)) if m.contains("--output")));
        Ok(())
    }

    #[test]
    fn client_properties_flatten_from_file_and_overrides() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
        let file = dir.path().join("weir.toml");
        std::fs::write(&file, "[kafka]\n\"linger.ms\" = 5\n")
            .map_err(|e| Error::io("write", file.display(), e))?;
        let cfg = Config::load(
            Some(&file),
            &[("kafka.socket.timeout.ms".into(), "1000".into())],
            &[],
        )?;
        let props = cfg.flat_table("kafka")?;
        assert_eq!(props.get("linger.ms").map(String::as_str), Some("5"));
        assert_eq!(
            props.get("socket.timeout.ms").map(String::as_str),
            Some("1000")
        );
        Ok(())
    }

    #[test]
    fn rejects_bad_values_with_the_key_named() {
        let e = Config::load(None, &[("guarantee".into(), "maybe-once".into())], &[]);
        assert!(matches!(e, Err(Error::Config(m)) if m.contains("maybe-once")));
    }

    fn refusal(file: Option<&str>, set: &[(&str, &str)]) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("weir.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).expect("write");
        }
        let set: Vec<(String, String)> = set
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        match Config::load(file.map(|_| path.as_path()), &set, &["input".into()]) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn unknown_keys_are_refused_naming_the_nearest_and_where_they_came_from() {
        let e = refusal(Some("gaurantee = \"at-most-once\"\n"), &[]);
        assert!(
            e.contains("`gaurantee`") && e.contains("weir.toml") && e.contains("`guarantee`"),
            "{e}"
        );
        let e = refusal(None, &[("nosuchkey", "5")]);
        assert!(
            e.contains("`nosuchkey`") && e.contains("command line"),
            "{e}"
        );
        let e = refusal(None, &[("checkpoint.interval", "5")]);
        assert!(e.contains("`checkpoint.interval_ms`"), "{e}");
    }

    #[test]
    fn bad_values_are_named_in_words_without_source_locations_or_type_names() {
        for (key, value, says) in [
            ("checkpoint.interval_ms", "soon", "the text \"soon\""),
            ("checkpoint.interval_ms", "0", "not 0"),
            (
                "checkpoint.interval_ms",
                "18446744073709551615",
                "not 18446744073709551615",
            ),
            ("parallelism", "-1", "the number -1"),
            ("batch_size", "1000000000", "from 1 to 65536"),
            ("key_groups", "70000", "from 1 to 16384"),
            (
                "guarantee",
                "maybe-once",
                "exactly-once, at-least-once or at-most-once",
            ),
        ] {
            let e = refusal(None, &[(key, value)]);
            assert!(
                e.contains(&format!("`{key}`")) && e.contains(says),
                "{key}={value}: {e}"
            );
            for leak in [".rs:", "toml::", "u64", "usize", "u16", "Serialized"] {
                assert!(!e.contains(leak), "{key}={value}: {e}");
            }
        }
    }
}
