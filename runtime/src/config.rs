//! Configuration: TOML file, `WEIR_*` environment variables and `--set`
//! overrides, in rising priority (ARCHITECTURE §5a).
//!
//! Runtime keys (all optional):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `state` | required | state directory (RocksDB, retained checkpoints) |
//! | `guarantee` | `exactly-once` | or `at-least-once`, `at-most-once` |
//! | `checkpoint.interval_ms` | 1000 | epoch length |
//! | `checkpoint.retain_every` | 10 | every K-th checkpoint is retained for replay |
//! | `checkpoint.retain_count` | 5 | how many retained checkpoints are kept |
//! | `on_bad_input` | `fail` | or `skip` (log line + counter) |
//! | `parallelism` | cores | keyed workers in this instance |
//! | `key_groups` | 128 | fixed at the first run of a state directory |
//! | `batch_size` | 1024 | records per exchange batch |
//! | `cache_mb` | 16 | keyed-state write-back cache, MiB per worker (clean entries are dropped above it; an epoch's writes stay until committed, and an epoch ends early once they fill half of it) |
//!
//! Environment variables nest with `__`: `WEIR_CHECKPOINT__INTERVAL_MS=100`.

use std::path::PathBuf;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
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
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            state: None,
            guarantee: Guarantee::default(),
            checkpoint: CheckpointConfig::default(),
            on_bad_input: OnBadInput::default(),
            parallelism: std::thread::available_parallelism().map_or(2, usize::from),
            key_groups: weir_core::keygroup::DEFAULT_KEY_GROUPS,
            batch_size: 1024,
            cache_mb: 16,
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

/// Parses a `--set` value as TOML (number, bool, array...), else as a string.
fn parse_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

impl Config {
    /// Merges, in rising priority: the TOML `file`, `WEIR_*` environment
    /// variables, then `overrides` (`key=value`, dotted keys nest).
    pub fn load(file: Option<&std::path::Path>, overrides: &[(String, String)]) -> Result<Self> {
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
        for (k, v) in overrides {
            figment = figment.merge(Serialized::global(k.as_str(), parse_value(v)));
        }
        Self::from_figment(figment)
    }

    fn from_figment(figment: Figment) -> Result<Self> {
        let runtime: RuntimeConfig = figment.extract().map_err(|e| {
            Error::Config(format!(
                "{e}; see the runtime keys in `weir_runtime::config`"
            ))
        })?;
        if runtime.checkpoint.interval_ms == 0 {
            return Err(Error::Config(
                "checkpoint.interval_ms must be at least 1".into(),
            ));
        }
        // Above 16384 a map entry's key could collide with the `meta/`
        // keys (both start with `m`).
        if runtime.key_groups == 0 || runtime.key_groups > MAX_KEY_GROUPS {
            return Err(Error::Config(format!(
                "key_groups must be between 1 and {MAX_KEY_GROUPS}, not {}",
                runtime.key_groups
            )));
        }
        if runtime.parallelism == 0 || runtime.parallelism > usize::from(runtime.key_groups) {
            return Err(Error::Config(format!(
                "parallelism must be between 1 and key_groups ({}), not {}",
                runtime.key_groups, runtime.parallelism
            )));
        }
        if runtime.batch_size == 0 {
            return Err(Error::Config("batch_size must be at least 1".into()));
        }
        if runtime.cache_mb == 0 {
            return Err(Error::Config(
                "cache_mb must be at least 1 (MiB of keyed-state cache per worker)".into(),
            ));
        }
        Ok(Config { figment, runtime })
    }

    /// The same configuration with one more override.
    pub fn with(&self, key: &str, value: &str) -> Result<Self> {
        Self::from_figment(
            self.figment
                .clone()
                .merge(Serialized::global(key, parse_value(value))),
        )
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
        self.figment
            .extract_inner(key)
            .map_err(|e| Error::Config(format!("`{key}`: {e}")))
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
        use figment::value::Value;
        let Ok(value) = self.figment.find_value(key) else {
            return Ok(None);
        };
        let text = match value {
            Value::String(_, s) => s,
            Value::Num(_, n) => match n.to_i128() {
                Some(i) => i.to_string(),
                None => n.to_f64().map_or_else(String::new, |f| f.to_string()),
            },
            Value::Bool(_, b) => b.to_string(),
            other => {
                return Err(Error::Config(format!(
                    "`{key}` must be a single value, not {other:?}"
                )))
            }
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
        fn walk(
            prefix: &str,
            v: &Value,
            out: &mut std::collections::BTreeMap<String, String>,
        ) -> Result<()> {
            match v {
                Value::Dict(_, d) => {
                    for (k, v) in d {
                        let name = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        walk(&name, v, out)?;
                    }
                }
                Value::String(_, s) => {
                    out.insert(prefix.to_owned(), s.clone());
                }
                Value::Num(_, n) => {
                    let text = match n.to_i128() {
                        Some(i) => i.to_string(),
                        None => n.to_f64().map_or_else(String::new, |f| f.to_string()),
                    };
                    out.insert(prefix.to_owned(), text);
                }
                Value::Bool(_, b) => {
                    out.insert(prefix.to_owned(), b.to_string());
                }
                other => {
                    return Err(Error::Config(format!(
                        "`{prefix}` must be a string, number or boolean, not {other:?}"
                    )))
                }
            }
            Ok(())
        }
        let mut out = std::collections::BTreeMap::new();
        if let Ok(v) = self.figment.find_value(key) {
            walk("", &v, &mut out)?;
        }
        Ok(out)
    }

    /// A required path setting.
    pub fn path(&self, key: &str) -> Result<PathBuf> {
        self.get::<String>(key).map(PathBuf::from)
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
        let e = Config::load(None, &[("guarantee".into(), "maybe-once".into())]);
        assert!(matches!(e, Err(Error::Config(m)) if m.contains("maybe-once")));
    }
}
