//! [`OpenContext`]: what a processor learns when it opens.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::state::Declarations;
use crate::{Error, Result};

/// The pipeline's configuration, as processors read it when they open
/// (every key the binary was given: file, environment, `--set`, flags).
pub trait Settings: Send + Sync {
    /// The value of `key` (dotted, e.g. `window_ms` or `checkpoint.interval_ms`)
    /// as text, if set.
    fn setting(&self, key: &str) -> Option<String>;
}

impl Settings for BTreeMap<String, String> {
    fn setting(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

/// What [`Processor::open`](crate::Processor::open) is given: where the
/// processor runs, what it declared, and the configuration.
pub struct OpenContext<'a> {
    pub(crate) task: &'a str,
    pub(crate) groups: &'a [u16],
    pub(crate) key_groups: u16,
    pub(crate) now: i64,
    pub(crate) declared: &'a Declarations,
    pub(crate) settings: &'a dyn Settings,
}

impl<'a> OpenContext<'a> {
    /// A context for a worker called `task` holding key groups `groups` of
    /// `key_groups`, at processing time `now`.
    pub fn new(
        task: &'a str,
        groups: &'a [u16],
        key_groups: u16,
        now: i64,
        declared: &'a Declarations,
        settings: &'a dyn Settings,
    ) -> Self {
        OpenContext {
            task,
            groups,
            key_groups,
            now,
            declared,
            settings,
        }
    }

    /// The worker this instance of the processor runs in.
    pub fn task(&self) -> &str {
        self.task
    }

    /// The key groups whose records (and state and timers) it gets in this run.
    pub fn groups(&self) -> &[u16] {
        self.groups
    }

    /// How many key groups the pipeline has.
    pub fn key_groups(&self) -> u16 {
        self.key_groups
    }

    /// The processing time (ms since the Unix epoch).
    pub fn now(&self) -> i64 {
        self.now
    }

    /// What the processor declared (see [`Processor::declare`](crate::Processor::declare)).
    pub fn declared(&self) -> &Declarations {
        self.declared
    }

    /// The configuration value of `key`, as text.
    pub fn setting(&self, key: &str) -> Option<String> {
        self.settings.setting(key)
    }

    /// The configuration value of `key`, parsed.
    ///
    /// # Errors
    /// If it is set but does not parse, naming the key and the value.
    pub fn parse<T: FromStr>(&self, key: &str) -> Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        match self.settings.setting(key) {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|e| {
                Error::Config(format!(
                    "`{key}` = `{text}` does not parse: {e}; fix the value"
                ))
            }),
        }
    }
}
