//! `offsets show` and `offsets reset`.

use clap::ArgMatches;
use weir_core::source::ResetTo;
use weir_core::{Error, Result};

use super::output::outln;
use super::{state_dir, App, Build};
use crate::instance::{check_fingerprint, identity, refuse_if_read_elsewhere, Signature};
use crate::recovery::changelog::Fence;
use crate::store::{self, Store};

impl App {
    pub(super) fn offsets_show(&self, m: &ArgMatches, build: &Build<'_>) -> Result<()> {
        let (config, pipeline) = self.load(m, build)?;
        let dir = state_dir(&config)?;
        let manifest = match store::open_read_only(&dir) {
            Ok(ro) => ro.manifest()?,
            Err(_) => None,
        };
        if let Some(m) = &manifest {
            check_fingerprint(m, &Signature::of(&pipeline), &dir)?;
        }
        let job = pipeline.into_job()?.job;
        let source = job.source();
        let offsets = source.offsets()?;
        let members = source.members()?;
        let owner = |task: &str| {
            members
                .iter()
                .find(|m| m.tasks.iter().any(|t| t == task))
                .map_or("-", |m| m.client.as_str())
        };
        outln!(
            "{:<28} {:>14} {:>16} {:>14} {:>10}  {}",
            "TASK",
            "CHECKPOINTED",
            "GROUP-COMMITTED",
            "END",
            "LAG",
            "OWNER"
        );
        let show = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        for t in offsets {
            let chk = manifest
                .as_ref()
                .and_then(|m| m.sources.get(&t.task))
                .map(|p| p.position);
            let lag = t.end.map(|e| e.saturating_sub(chk.unwrap_or(0)));
            outln!(
                "{:<28} {:>14} {:>16} {:>14} {:>10}  {}",
                t.task,
                show(chk),
                show(t.committed),
                show(t.end),
                show(lag),
                owner(&t.task)
            );
        }
        if !members.is_empty() {
            outln!("");
            outln!(
                "{:<28} {:<24} {:<18} {}",
                "MEMBER",
                "CLIENT",
                "HOST",
                "TASKS"
            );
            for m in &members {
                outln!(
                    "{:<28} {:<24} {:<18} {}",
                    m.member,
                    m.client,
                    m.host,
                    if m.tasks.is_empty() {
                        "-".to_owned()
                    } else {
                        m.tasks.join(",")
                    }
                );
            }
        }
        Ok(())
    }

    pub(super) fn offsets_reset(&self, m: &ArgMatches, build: &Build<'_>) -> Result<()> {
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
            ResetTo::Timestamp(parse_datetime(t)?)
        };
        let (config, pipeline) = self.load(m, build)?;
        let dir = state_dir(&config)?;
        let signature = Signature::of(&pipeline);
        let built = pipeline.into_job()?;
        let job = built.job;
        // Refused while an instance runs: one elsewhere reads the input as
        // a member of the application's group; one on this directory holds
        // its lock, which opening the live state takes.
        refuse_if_read_elsewhere(&*job.source(), "offsets reset", identity::peek(&dir)?)?;
        let store = Store::open(&dir)?;
        let current = match store.manifest()? {
            Some(m) => {
                check_fingerprint(&m, &signature, &dir)?;
                m
            }
            None => signature.empty_manifest(config.runtime().key_groups),
        };
        if let (Some(partial), false) = (&current.partial, wipe) {
            return Err(Error::Config(partial.refusal(
                &format!("offsets reset --keep-state refused: {}", dir.display()),
                "Reset with --reset-state instead (the state is rebuilt from the new positions), or first run this instance alone until it holds every shard (with the others stopped, e.g. `run --until-idle-ms 1000`: it restores them from the changelog), then reset with --keep-state",
            )));
        }
        // And while a transaction left open holds positions: its commit
        // would land over the reset. This directory's own writer is fenced
        // too: its lock is held here, so no process of it runs.
        if let Some(commit) = &built.commit {
            Fence {
                own: "",
                fence: &|id| commit.fence_instance(id),
            }
            .settle(&*job.source(), "offsets reset")?;
        }
        let positions = job.source().resolve(to)?;
        let mut next = current.clone();
        next.epoch = current.epoch + 1;
        next.time_ms = store::now_ms();
        next.generation = current.generation + 1;
        next.replayed_from = None;
        // What is kept is the whole application's state (see above), or nothing.
        next.partial = None;
        // Kafka mode: a new timeline in the changelog, from the kept state.
        next.changelog.clear();
        next.away.clear();
        next.reseed = true;
        for (task, pos) in &positions {
            next.sources.insert(
                task.clone(),
                crate::manifest::SourcePosition {
                    position: *pos,
                    finished: false,
                    // Whatever input is there now is the one to read.
                    identity: None,
                },
            );
        }
        store.reset(&next, wipe)?;
        // Before anything is printed: a closed pipe must not skip it.
        if let Err(e) = job.source().publish(&positions) {
            tracing::warn!(
                "the reset is committed, but copying it to the source's own record failed: {e}"
            );
        }
        outln!("{:<28} {:>14} {:>14}", "TASK", "FROM", "TO");
        for (task, pos) in &positions {
            let from = current
                .sources
                .get(task)
                .map_or_else(|| "-".to_owned(), |p| p.position.to_string());
            outln!("{task:<28} {from:>14} {pos:>14}");
        }
        outln!(
            "{}",
            if wipe {
                "state: wiped (keyed state and timers); it is rebuilt from the new positions"
            } else {
                "state: kept; input read again is counted again"
            }
        );
        Ok(())
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 time with its zone:
/// `Z` (UTC) or an offset such as `+01:00`. A time without a zone is
/// refused rather than taken as UTC silently.
fn parse_datetime(t: &str) -> Result<i64> {
    let t = t.trim();
    let example = "e.g. 2026-11-25T10:00:00Z (UTC) or 2026-11-25T11:00:00+01:00";
    let (local, offset_s) = if let Some(local) = t.strip_suffix(['Z', 'z']) {
        (local, 0i64)
    } else {
        let split = t.len().checked_sub(6).filter(|&i| t.is_char_boundary(i));
        let zone = split.map(|i| (&t[..i], &t[i..]));
        match zone {
            Some((local, zone))
                if (zone.starts_with('+') || zone.starts_with('-'))
                    && zone.as_bytes().get(3) == Some(&b':') =>
            {
                let hours: i64 = zone[1..3].parse().map_err(|_| bad_zone(t, example))?;
                let minutes: i64 = zone[4..6].parse().map_err(|_| bad_zone(t, example))?;
                let sign = if zone.starts_with('-') { -1 } else { 1 };
                (local, sign * (hours * 3600 + minutes * 60))
            }
            _ => {
                return Err(Error::Config(format!(
                    "--to-datetime {t} has no time zone; say which: append Z for UTC or an offset, {example}"
                )))
            }
        }
    };
    let when = humantime::parse_rfc3339_weak(local)
        .map_err(|e| Error::Config(format!("--to-datetime {t}: {e}; use RFC 3339, {example}")))?;
    let ms = when
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| Error::Config(format!("--to-datetime {t} is before 1970")))?
        .as_millis() as i64;
    Ok(ms - offset_s * 1000)
}

fn bad_zone(t: &str, example: &str) -> Error {
    Error::Config(format!(
        "--to-datetime {t}: the time zone offset is not +hh:mm or -hh:mm; {example}"
    ))
}

#[cfg(test)]
mod tests {
    use super::parse_datetime;

    #[test]
    fn a_datetime_needs_its_zone() {
        let utc = parse_datetime("2026-11-25T10:00:00Z").expect("utc");
        assert_eq!(parse_datetime("2026-11-25T11:00:00+01:00").ok(), Some(utc));
        assert_eq!(parse_datetime("2026-11-25T08:30:00-01:30").ok(), Some(utc));
        let e = parse_datetime("2026-11-25T10:00:00").expect_err("no zone");
        assert!(e.to_string().contains("no time zone"), "{e}");
    }
}
