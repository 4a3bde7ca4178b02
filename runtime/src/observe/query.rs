//! Interactive queries of committed state (ARCHITECTURE §10): the value
//! state a pipeline declares queryable ([`KeyedStream::queryable`]), read
//! by key from the running instance (`/api/state/{store}/{key}`) or from a
//! stopped state directory (`state get`). Only committed values are read:
//! RocksDB holds nothing a checkpoint has not committed.
//!
//! [`KeyedStream::queryable`]: crate::pipeline::KeyedStream::queryable

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::Serialize;
use weir_core::keygroup::key_group;
use weir_core::state::{keyed_key, ttl, KEYED_TAG, KEYED_TTL_TAG};
use weir_core::{Error, Result};

use super::status::{self, Phase};
use crate::plan::Holdings;
use crate::stage::SourceAdmin;
use crate::store::Store;

/// Parses a key as a URL or the command line gives it, and encodes it as
/// the exchange does.
pub(crate) type KeyParser = dyn Fn(&str) -> std::result::Result<Vec<u8>, String> + Send + Sync;
/// Decodes a stored value to JSON.
pub(crate) type ValueDecoder =
    dyn Fn(&[u8]) -> std::result::Result<serde_json::Value, String> + Send + Sync;

/// A value state that can be read by key.
pub(crate) struct Queryable {
    /// The state's name, as its processor names it.
    pub(crate) name: &'static str,
    /// The processor that keeps it.
    pub(crate) node: u16,
    pub(crate) key: Box<KeyParser>,
    pub(crate) value: Box<ValueDecoder>,
    /// Its values start with their expiry (a store with a time to live).
    pub(crate) expires: bool,
}

impl Queryable {
    /// The key group and the state key of `key`.
    fn locate(&self, key: &str, key_groups: u16) -> Result<(u16, Vec<u8>)> {
        let encoded = (self.key)(key).map_err(|e| {
            Error::Config(format!(
                "`{key}` is not a key of state `{}`: {e}; give the key as JSON, or as plain text for a string",
                self.name
            ))
        })?;
        let group = key_group(&encoded, key_groups);
        let tag = if self.expires {
            KEYED_TTL_TAG
        } else {
            KEYED_TAG
        };
        let state_key = keyed_key(tag, group, self.node, self.name, &encoded)?;
        Ok((group, state_key))
    }

    /// A stored value as JSON; `None` when it has expired.
    fn decode(&self, bytes: &[u8]) -> std::result::Result<Option<serde_json::Value>, String> {
        if !self.expires {
            return (self.value)(bytes).map(Some);
        }
        if ttl::expired(bytes, crate::store::now_ms()) {
            return Ok(None);
        }
        (self.value)(ttl::payload(bytes)).map(Some)
    }
}

/// A committed value, as a query answers it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Found {
    /// The state's name.
    pub(crate) store: String,
    /// The key asked for.
    pub(crate) key: String,
    /// The committed value, as JSON.
    pub(crate) value: serde_json::Value,
    /// The key group the key is in.
    pub(crate) key_group: u16,
    /// The epoch of the checkpoint the value was committed with.
    pub(crate) epoch: u64,
}

/// The instance that holds a key group, as the consumer group names it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Owner {
    /// Its instance id.
    pub(crate) instance: Option<String>,
    /// The address it serves HTTP on (status, queries), when it does.
    pub(crate) address: Option<String>,
    /// The host it connects from.
    pub(crate) host: String,
}

/// What a query of a running instance gets.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The committed value.
    Found(Found),
    /// No committed value for the key (in `epoch`).
    Missing { key_group: u16, epoch: u64 },
    /// Another instance holds the key's group (in `shard`): the one the
    /// consumer group names, when it does.
    Elsewhere {
        key_group: u16,
        shard: u16,
        owner: Option<Owner>,
    },
    /// The instance is restoring or between runs: ask again.
    Unavailable { phase: Phase },
    /// No state of that name is queryable: which are.
    NoStore(String),
    /// The key is not one of the state's keys: why.
    BadKey(String),
    /// Reading the state failed.
    Failed(String),
}

/// What the running instance serves queries from.
struct Serving {
    queryables: Vec<Arc<Queryable>>,
    store: Option<Arc<Store>>,
    /// Where the group says who holds which shard.
    source: Option<Arc<dyn SourceAdmin>>,
    key_groups: u16,
    /// What the run holds; `None` between runs.
    holdings: Option<Holdings>,
}

/// A query reads under the read lock, from its checks to its last byte; a
/// run changes what it holds only under the write lock, and a store is let
/// go under it. A new run enters `Restoring` before it holds anything
/// (`instance::run_once`), and its coordinator enters `Running` only once
/// recovery is done; a query reads only in `Running` or `Stopping`, with
/// holdings set. So no query reads a key group a new run is restoring, nor
/// a store that is being closed.
static SERVING: RwLock<Serving> = RwLock::new(Serving {
    queryables: Vec::new(),
    store: None,
    source: None,
    key_groups: 1,
    holdings: None,
});

fn reading() -> RwLockReadGuard<'static, Serving> {
    SERVING.read().unwrap_or_else(|p| p.into_inner())
}

fn changing() -> RwLockWriteGuard<'static, Serving> {
    SERVING.write().unwrap_or_else(|p| p.into_inner())
}

/// Queries are served from `store`, of `queryables`, until the guard
/// drops: then the store is let go (waiting out a query that reads it), so
/// that a retry of the run can open it again.
#[must_use = "queries are served only while the guard lives"]
pub(crate) struct Served(());

pub(crate) fn serve(
    queryables: &[Arc<Queryable>],
    store: Arc<Store>,
    source: Arc<dyn SourceAdmin>,
    key_groups: u16,
) -> Served {
    let mut s = changing();
    s.queryables = queryables.to_vec();
    s.store = Some(store);
    s.source = Some(source);
    s.key_groups = key_groups;
    s.holdings = None;
    Served(())
}

impl Drop for Served {
    fn drop(&mut self) {
        let mut s = changing();
        s.store = None;
        s.source = None;
        s.holdings = None;
    }
}

/// A run holds `holdings` (`None`: the run ended). Waits out the queries
/// that read what the run held before.
pub(crate) fn hold(holdings: Option<Holdings>) {
    changing().holdings = holdings;
}

/// Reads `key` of state `store` on the running instance.
pub(crate) fn query(store: &str, key: &str) -> Answer {
    let s = reading();
    let Some(queryable) = s.queryables.iter().find(|q| q.name == store) else {
        return Answer::NoStore(unknown(store, &s.queryables));
    };
    let (group, state_key) = match queryable.locate(key, s.key_groups) {
        Ok(located) => located,
        Err(e) => return Answer::BadKey(e.to_string()),
    };
    let phase = status::snapshot_phase();
    let (Some(db), Some(holdings), Phase::Running | Phase::Stopping) =
        (&s.store, &s.holdings, phase)
    else {
        return Answer::Unavailable { phase };
    };
    if let Some(shards) = holdings.shards.as_ref().filter(|sh| !sh.holds_group(group)) {
        let shard = shards.of_group(group);
        let task = shards.task(shard);
        let source = s.source.clone();
        // Asking the group takes a round trip: not under the lock.
        drop(s);
        let owner = source
            .and_then(|s| s.members().ok())
            .and_then(|members| members.into_iter().find(|m| m.tasks.contains(&task)))
            .map(|m| Owner {
                instance: m.instance().map(str::to_owned),
                address: m.http(),
                host: m.host,
            });
        return Answer::Elsewhere {
            key_group: group,
            shard,
            owner,
        };
    }
    match db.read_committed(&state_key) {
        Ok((Some(bytes), epoch)) => match queryable.decode(&bytes) {
            Ok(None) => Answer::Missing {
                key_group: group,
                epoch,
            },
            Ok(Some(value)) => Answer::Found(Found {
                store: store.to_owned(),
                key: key.to_owned(),
                value,
                key_group: group,
                epoch,
            }),
            Err(e) => Answer::Failed(format!(
                "the value of `{key}` in `{store}` is unreadable: {e}"
            )),
        },
        Ok((None, epoch)) => Answer::Missing {
            key_group: group,
            epoch,
        },
        Err(e) => Answer::Failed(e.to_string()),
    }
}

/// Reads `key` of state `store` from a stopped state directory's committed
/// state: `None` when the key has no value.
pub(crate) fn get_offline(
    queryables: &[Arc<Queryable>],
    dir: &std::path::Path,
    store: &str,
    key: &str,
) -> Result<Option<Found>> {
    let Some(q) = queryables.iter().find(|q| q.name == store) else {
        return Err(Error::Config(unknown(store, queryables)));
    };
    let ro = crate::store::open_read_only(dir)?;
    let manifest = ro.manifest()?.ok_or_else(|| {
        Error::Config(format!(
            "{} has committed nothing yet: no state to read",
            dir.display()
        ))
    })?;
    let (group, state_key) = q.locate(key, manifest.key_groups)?;
    if let Some(partial) = &manifest.partial {
        let shard = group % partial.of.max(1);
        if !partial.held.contains(&shard) {
            return Err(Error::Config(format!(
                "`{key}` is in key group {group}, of shard {shard}, which {} does not hold: its instance held shards {:?} of the application's {}; read it from the state directory of the instance that holds shard {shard}, or ask that instance (GET /api/state/{store}/...)",
                dir.display(),
                partial.held,
                partial.of
            )));
        }
    }
    let (bytes, epoch) = ro.read_committed(&state_key)?;
    let value = bytes
        .map(|b| q.decode(&b))
        .transpose()
        .map_err(|e| {
            Error::State(format!(
                "the value of `{key}` in `{store}` is unreadable: {e}"
            ))
        })?
        .flatten();
    value
        .map(|value| {
            Ok(Found {
                store: store.to_owned(),
                key: key.to_owned(),
                value,
                key_group: group,
                epoch,
            })
        })
        .transpose()
}

fn unknown(store: &str, queryables: &[Arc<Queryable>]) -> String {
    if queryables.is_empty() {
        return format!(
            "no state of this pipeline is queryable, `{store}` neither; declare it with `.queryable::<T>(\"{store}\")` after its processor"
        );
    }
    let names: Vec<&str> = queryables.iter().map(|q| q.name).collect();
    format!(
        "no queryable state is called `{store}`; the queryable ones: {}",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::source::{Resume, Source, SourceReader};

    /// A source of nothing: queries ask it only who holds a shard.
    struct Nothing;

    impl Source for Nothing {
        type Item = ();

        fn describe(&self) -> String {
            "nothing".into()
        }

        fn tasks(&self) -> Result<Vec<String>> {
            Ok(Vec::new())
        }

        fn open(&self, _: &str, _: Option<&Resume>) -> Result<Box<dyn SourceReader<()>>> {
            Err(Error::Config("nothing to read".into()))
        }
    }

    /// A run that ends (say fenced, to be retried in the same process)
    /// lets its store go: the retry opens it again.
    #[test]
    fn a_served_store_is_let_go_when_the_run_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path()).expect("open"));
        let count = Arc::new(Queryable {
            name: "count",
            node: 0,
            key: Box::new(|k| Ok(k.as_bytes().to_vec())),
            value: Box::new(|_| Ok(serde_json::Value::Null)),
            expires: false,
        });
        let served = serve(
            &[count],
            store.clone(),
            Arc::new(crate::stage::BaseSide(Nothing)),
            4,
        );
        hold(Some(Holdings::default()));
        status::enter(Phase::Running, Some(0));
        assert!(matches!(query("count", "w1"), Answer::Missing { .. }));
        assert_eq!(Arc::strong_count(&store), 2);
        drop(served);
        assert_eq!(Arc::strong_count(&store), 1);
        assert!(matches!(query("count", "w1"), Answer::Unavailable { .. }));
        drop(store);
        Store::open(dir.path()).expect("the retry opens the store again");
    }
}
