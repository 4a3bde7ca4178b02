//! The manifest: what a checkpoint records (ARCHITECTURE §2).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::Guarantee;

/// A source task's checkpointed position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePosition {
    /// Where to resume reading.
    pub position: u64,
    /// Whether the task's bounded input was fully read.
    pub finished: bool,
    /// Which input the position is in (a file's identity), if the source
    /// records one; a resume in another input is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

/// One checkpoint: epoch, positions, and the pipeline it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Pipeline name.
    pub pipeline: String,
    /// Hash of the pipeline's topology and key groups; a state directory
    /// is refused by a pipeline with another fingerprint.
    pub fingerprint: String,
    /// The topology the fingerprint was computed from, for error messages.
    pub topology: String,
    /// Every declared store, `node/name` -> its signature (`value<u64>`):
    /// a restart on state written with other types is refused, naming the
    /// store and both types.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub states: BTreeMap<String, String>,
    /// Epoch number; also the checkpoint id.
    pub epoch: u64,
    /// Wall-clock time of the commit, milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Number of key groups.
    pub key_groups: u16,
    /// Guarantee the epoch ran with.
    pub guarantee: Guarantee,
    /// Timeline: incremented by each replay, so the two never mix.
    pub generation: u64,
    /// The retained checkpoint this timeline was replayed from, if any.
    pub replayed_from: Option<u64>,
    /// Per source task.
    pub sources: BTreeMap<String, SourcePosition>,
    /// Per sink output: committed length.
    pub sinks: BTreeMap<String, u64>,
    /// Kafka mode: per key group, the changelog position up to which the
    /// state here is known to hold every committed change.
    #[serde(default)]
    pub changelog: BTreeMap<u16, u64>,
    /// Kafka mode: a new timeline (replay, `offsets reset`) must first be
    /// written to the changelog from the local state, with the positions.
    #[serde(default)]
    pub reseed: bool,
    /// Kafka mode, shared: per local shard that another instance holds,
    /// since when (milliseconds since the Unix epoch); its state is
    /// dropped once away for `moved_state_keep_ms`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub away: BTreeMap<u16, i64>,
    /// Kafka mode, shared: set when the run that committed this held only
    /// some of the application's shards (other instances held the rest).
    /// This state is then not the whole application's, and a new timeline
    /// from it (a replay, a reset that keeps the state) is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialState>,
}

/// The shards of an application's keyed state that a state directory
/// held at a commit, when not all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialState {
    /// The shards held.
    pub held: Vec<u16>,
    /// How many shards the application has.
    pub of: u16,
}

impl PartialState {
    /// The partial state of a run holding `held` of `of` shards; `None`
    /// when it holds them all.
    pub fn of_run(held: &BTreeSet<u16>, of: u16) -> Option<Self> {
        (0..of).any(|s| !held.contains(&s)).then(|| PartialState {
            held: held.iter().copied().collect(),
            of,
        })
    }

    /// Why a new timeline from this state is refused, for `what` (the
    /// start of an error message), with the way out `fix`.
    pub fn refusal(&self, what: &str, fix: &str) -> String {
        format!(
            "{what} holds only part of the application's keyed state: its instance held {} of its {} shards ({:?}), other instances of the application held the rest, and a new timeline starts from this state alone, so the other shards' state would be lost or stale. {fix}",
            self.held.len(),
            self.of,
            self.held
        )
    }
}

impl Manifest {
    /// The manifest of a pipeline that has committed nothing yet.
    pub fn empty(pipeline: &str, fingerprint: &str, topology: &str, key_groups: u16) -> Self {
        Manifest {
            pipeline: pipeline.to_owned(),
            fingerprint: fingerprint.to_owned(),
            topology: topology.to_owned(),
            states: BTreeMap::new(),
            epoch: 0,
            time_ms: 0,
            key_groups,
            guarantee: Guarantee::ExactlyOnce,
            generation: 0,
            replayed_from: None,
            sources: BTreeMap::new(),
            sinks: BTreeMap::new(),
            changelog: BTreeMap::new(),
            reseed: false,
            away: BTreeMap::new(),
            partial: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_holding_every_shard_is_whole_and_older_manifests_read_as_whole() {
        let all: BTreeSet<u16> = (0..4).collect();
        assert_eq!(PartialState::of_run(&all, 4), None);
        let some: BTreeSet<u16> = [1, 3].into_iter().collect();
        let partial = PartialState::of_run(&some, 4).expect("partial");
        assert_eq!((partial.held.as_slice(), partial.of), (&[1, 3][..], 4));
        let why = partial.refusal("replay refused: checkpoint 7", "Do this.");
        assert!(why.contains("held 2 of its 4 shards ([1, 3])") && why.ends_with("Do this."));

        // A manifest written before the field existed, and one without it
        // written now, read as the whole state.
        let whole = Manifest::empty("p", "f", "t", 4);
        let json = serde_json::to_string(&whole).expect("json");
        assert!(!json.contains("partial"), "{json}");
        let read: Manifest = serde_json::from_str(&json).expect("read");
        assert_eq!(read.partial, None);
    }
}
