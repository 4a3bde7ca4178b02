//! Read-only views of a state directory: `checkpoints list`,
//! `checkpoints inspect`, `state get` and `state dump`.

use std::path::Path;

use clap::ArgMatches;
use weir_core::{Codec, Error, Result};

use super::output::outln;
use super::{state_dir, App, Build};
use crate::instance::{check_fingerprint, Signature};
use crate::observe::query;
use crate::store;

impl App {
    /// `state get`: the committed value of a key of a queryable state, as
    /// JSON on standard output.
    pub(super) fn state_get(&self, m: &ArgMatches, build: &Build<'_>) -> Result<()> {
        let (config, pipeline) = self.load(m, build)?;
        let dir = state_dir(&config)?;
        if let Some(manifest) = store::open_read_only(&dir)?.manifest()? {
            check_fingerprint(&manifest, &Signature::of(&pipeline), &dir)?;
        }
        let (Some(name), Some(key)) = (m.get_one::<String>("store"), m.get_one::<String>("key"))
        else {
            return Err(Error::Config(
                "state get needs --store NAME and --key KEY".into(),
            ));
        };
        match query::get_offline(pipeline.queryables(), &dir, name, key)? {
            Some(found) => {
                outln!("{}", found.value);
                Ok(())
            }
            None => Err(Error::User(format!(
                "`{key}` has no committed value in state `{name}` of {}",
                dir.display()
            ))),
        }
    }
}

fn format_time(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

pub(super) fn list(dir: &Path) -> Result<()> {
    store::check_state_dir(dir)?;
    let all = store::list_checkpoints(dir)?;
    if all.is_empty() {
        outln!(
            "no retained checkpoints in {} (every checkpoint.retain_every-th checkpoint is retained)",
            dir.display()
        );
        return Ok(());
    }
    outln!(
        "{:>8}  {:<20}  {:>10}  {:>7}  {:>5}  STATE",
        "ID",
        "TIME (UTC)",
        "GENERATION",
        "SOURCES",
        "SINKS"
    );
    for m in all {
        // A shared application's instance may hold only some shards: a
        // checkpoint of it cannot be replayed.
        let state = m.partial.as_ref().map_or_else(
            || "whole".to_owned(),
            |p| format!("{}/{} shards", p.held.len(), p.of),
        );
        outln!(
            "{:>8}  {:<20}  {:>10}  {:>7}  {:>5}  {state}",
            m.epoch,
            format_time(m.time_ms),
            m.generation,
            m.sources.len(),
            m.sinks.len()
        );
    }
    Ok(())
}

pub(super) fn inspect(dir: &Path, id: Option<&String>) -> Result<()> {
    store::check_state_dir(dir)?;
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
    outln!(
        "checkpoint {}  (pipeline {}, generation {}, {})",
        m.epoch,
        m.pipeline,
        m.generation,
        format_time(m.time_ms)
    );
    outln!("guarantee   {}", m.guarantee);
    if let Some(from) = m.replayed_from {
        outln!("replayed from checkpoint {from}");
    }
    if let Some(p) = &m.partial {
        outln!(
            "state       shards {:?} of {} (other instances held the rest)",
            p.held,
            p.of
        );
    }
    outln!("sources:");
    for (task, p) in &m.sources {
        outln!(
            "  {task}\tposition {}{}",
            p.position,
            if p.finished { " (finished)" } else { "" }
        );
    }
    outln!("sinks:");
    for (id, len) in &m.sinks {
        outln!("  {id}\tcommitted length {len}");
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

pub(super) fn dump(dir: &Path, only: Option<&str>, limit: Option<usize>) -> Result<()> {
    let ro = store::open_read_only(dir)?;
    let mut shown = 0usize;
    // The states seen, to name them when `only` names none of them.
    let mut names = std::collections::BTreeSet::new();
    let mut failed: Option<Error> = None;
    // The header comes with the first entry: a state that is not there
    // gets its error alone.
    let mut header = only.is_none();
    if header {
        super::output::line(format_args!("GROUP\tNODE\tSTATE\tKEY\tVALUE"))?;
    }
    let mut line = |text: std::fmt::Arguments<'_>| {
        let written = if header {
            Ok(())
        } else {
            header = true;
            super::output::line(format_args!("GROUP\tNODE\tSTATE\tKEY\tVALUE"))
        };
        match written.and_then(|()| super::output::line(text)) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    };
    ro.for_each_state(|k, v| {
        if limit.is_some_and(|l| shown >= l) {
            return false;
        }
        // k | group:2 | node:2 | name_len:1 | name | key_len:4 | key [| map key]
        use weir_core::state::{has_expiry, ttl, KEYED_TAG, KEYED_TTL_TAG, MAP_TAG, MAP_TTL_TAG};
        if k.len() >= 6 && [KEYED_TAG, MAP_TAG, KEYED_TTL_TAG, MAP_TTL_TAG].contains(&k[0]) {
            // A value of a store with a time to live starts with its expiry.
            let v = if has_expiry(k) { ttl::payload(v) } else { v };
            let group = u16::from_be_bytes([k[1], k[2]]);
            let node = u16::from_be_bytes([k[3], k[4]]);
            let nlen = usize::from(k[5]);
            let Some(name) = k.get(6..6 + nlen) else {
                return true;
            };
            let name = String::from_utf8_lossy(name);
            if only.is_some_and(|o| o != name) {
                if names.len() < 100 {
                    names.insert(name.into_owned());
                }
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
            shown += 1;
            line(format_args!(
                "{group}\t{node}\t{name}\t{key}\t{}",
                render(v)
            ))
        } else if k.first() == Some(&weir_core::state::TIMER_TAG) && only.is_none() {
            shown += 1;
            line(format_args!(
                "{}\t-\t(timer)\t{}\t",
                weir_core::state::group_of(k).unwrap_or(0),
                render(&k[5..])
            ))
        } else {
            true
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if let Some(name) = only {
        if shown == 0 {
            let known: Vec<&str> = names.iter().map(String::as_str).collect();
            return Err(Error::Config(format!(
                "no state called `{name}` in {}; {}",
                dir.display(),
                if known.is_empty() {
                    "it holds no keyed state at all".to_owned()
                } else {
                    format!("its states are: {}", known.join(", "))
                }
            )));
        }
    }
    Ok(())
}
