//! The manifest: what a checkpoint records (ARCHITECTURE §2).

use std::collections::BTreeMap;

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
}

impl Manifest {
    /// The manifest of a pipeline that has committed nothing yet.
    pub fn empty(pipeline: &str, fingerprint: &str, topology: &str, key_groups: u16) -> Self {
        Manifest {
            pipeline: pipeline.to_owned(),
            fingerprint: fingerprint.to_owned(),
            topology: topology.to_owned(),
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
        }
    }
}
