//! The runtime's configuration keys, and the check that every key given
//! (in the file, in `WEIR_*`, with `--set`) is one of them or an option the
//! binary declares: a typo is refused, naming the nearest known key.

use figment::value::{Dict, Value};
use weir_core::{Error, Result};

use super::origin::origin;

/// One runtime key, as `run --help` and `config show` describe it.
pub(crate) struct KeyDoc {
    /// Dotted name.
    pub(crate) key: &'static str,
    /// Its default, in words.
    pub(crate) default: &'static str,
    /// What it takes, for error messages.
    pub(crate) takes: &'static str,
    /// What it does.
    pub(crate) meaning: &'static str,
}

/// Every runtime key (ARCHITECTURE §5a); `kafka.*` passes through to librdkafka.
pub(crate) const RUNTIME_KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "state",
        default: "(required)",
        takes: "a directory",
        meaning: "state directory: RocksDB and retained checkpoints",
    },
    KeyDoc {
        key: "guarantee",
        default: "exactly-once",
        takes: "exactly-once, at-least-once or at-most-once",
        meaning: "the delivery guarantee",
    },
    KeyDoc {
        key: "checkpoint.interval_ms",
        default: "1000",
        takes: "a whole number of milliseconds from 1 to 86400000 (a day)",
        meaning: "epoch length",
    },
    KeyDoc {
        key: "checkpoint.retain_every",
        default: "10",
        takes: "a whole number (0: retain none)",
        meaning: "every K-th checkpoint is retained for replay",
    },
    KeyDoc {
        key: "checkpoint.retain_count",
        default: "5",
        takes: "a whole number",
        meaning: "how many retained checkpoints are kept",
    },
    KeyDoc {
        key: "watermark.idle_ms",
        default: "5000",
        takes: "a whole number of milliseconds (0: never)",
        meaning: "a source task (input partition or file) that has read its input to the end and had no record for this long stops holding the event-time watermark back",
    },
    KeyDoc {
        key: "on_bad_input",
        default: "fail",
        takes: "fail, skip or dead-letter",
        meaning: "what an undecodable record or a processor's failure does",
    },
    KeyDoc {
        key: "parallelism",
        default: "the number of cores",
        takes: "a whole number from 1 to key_groups",
        meaning: "keyed workers in this instance",
    },
    KeyDoc {
        key: "key_groups",
        default: "128",
        takes: "a whole number from 1 to 16384",
        meaning: "key groups, fixed when a state directory is created",
    },
    KeyDoc {
        key: "batch_size",
        default: "1024",
        takes: "a whole number from 1 to 65536",
        meaning: "records per exchange batch",
    },
    KeyDoc {
        key: "cache_mb",
        default: "16",
        takes: "a whole number of MiB from 1 to 65536",
        meaning: "keyed-state cache per worker; an epoch ends once its writes fill half",
    },
    KeyDoc {
        key: "moved_state_keep_ms",
        default: "43200000 (12 h)",
        takes: "a whole number of milliseconds, below the changelog's delete.retention.ms (a day by default)",
        meaning: "how long an instance keeps the state of a shard another instance took, to roll it forward if it comes back",
    },
    KeyDoc {
        key: "log.format",
        default: "text",
        takes: "text or json",
        meaning: "log lines as text, or one JSON object per line for log shippers",
    },
    KeyDoc {
        key: "http.listen",
        default: "(off)",
        takes: "an address and port such as 127.0.0.1:9464 (port 0 picks a free one)",
        meaning: "serve /metrics, /healthz, /ready and the status page there",
    },
];

/// The table whose keys pass through to the Kafka clients unchecked here
/// (librdkafka checks them).
pub(crate) const PASS_THROUGH: &str = "kafka";

/// The runtime key `key`, if it is one.
pub(crate) fn runtime_key(key: &str) -> Option<&'static KeyDoc> {
    RUNTIME_KEYS.iter().find(|k| k.key == key)
}

/// Every leaf of `dict` as `(dotted.key, value)`; the pass-through table
/// counts as one leaf.
pub(crate) fn leaves(dict: &Dict) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    walk("", dict, &|key| key != PASS_THROUGH, &mut out);
    out
}

/// Collects the leaves of `dict` below `prefix` into `out`, descending into
/// the tables whose dotted key `descend` accepts.
pub(crate) fn walk(
    prefix: &str,
    dict: &Dict,
    descend: &dyn Fn(&str) -> bool,
    out: &mut Vec<(String, Value)>,
) {
    for (k, v) in dict {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Dict(_, d) if descend(&key) => walk(&key, d, descend, out),
            _ => out.push((key, v.clone())),
        }
    }
}

/// Refuses any key that is neither a runtime key nor under one of
/// `app_keys` (the binary's own options and settings) nor `kafka.*`.
pub(crate) fn check_known(figment: &figment::Figment, app_keys: &[String]) -> Result<()> {
    let dict: Dict = figment
        .extract()
        .map_err(|e| Error::Config(format!("the configuration cannot be read: {e}")))?;
    for (key, _) in leaves(&dict) {
        let known = key == PASS_THROUGH
            || runtime_key(&key).is_some()
            || app_keys
                .iter()
                .any(|a| key == *a || key.starts_with(&format!("{a}.")));
        if known {
            continue;
        }
        let from = origin(figment, &key);
        let hint = match nearest(&key, app_keys) {
            Some(near) => format!("did you mean `{near}`?"),
            None => "it is neither a runtime key nor an option of this binary;".to_owned(),
        };
        return Err(Error::Config(format!(
            "unknown configuration key `{key}` ({from}): {hint} `run --help` lists every key"
        )));
    }
    Ok(())
}

/// The known key closest to `key`, if one is close enough to be a typo.
fn nearest(key: &str, app_keys: &[String]) -> Option<String> {
    let candidates = RUNTIME_KEYS
        .iter()
        .map(|k| k.key.to_owned())
        .chain(app_keys.iter().cloned())
        .chain(std::iter::once(format!("{PASS_THROUGH}.<property>")));
    let (best, score) = candidates
        .map(|c| {
            // The last part alone, too: `interval_ms` for `checkpoint.interval_ms`.
            let tail = c.rsplit('.').next().unwrap_or(&c).to_owned();
            let score = strsim::jaro_winkler(key, &c).max(strsim::jaro_winkler(key, &tail));
            (c, score)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    (score >= 0.8).then_some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_key() {
        let app = vec!["input".to_owned(), "output".to_owned()];
        assert_eq!(nearest("gaurantee", &app).as_deref(), Some("guarantee"));
        assert_eq!(
            nearest("interval_ms", &app).as_deref(),
            Some("checkpoint.interval_ms")
        );
        assert_eq!(
            nearest("checkpoint.intervall_ms", &app).as_deref(),
            Some("checkpoint.interval_ms")
        );
        assert_eq!(nearest("ouptut", &app).as_deref(), Some("output"));
        assert_eq!(nearest("nosuchkey", &app), None);
    }
}
