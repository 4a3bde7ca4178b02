//! What a run, a replay or an offsets reset checks before it touches
//! anything: the state directory belongs to this pipeline, and nobody else
//! reads its input as this application.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use weir_core::group::Member;
use weir_core::{Error, Result};

use crate::manifest::Manifest;
use crate::plan::tasks_of;
use crate::stage::SourceAdmin;
use crate::Pipeline;

/// Refuses `what` (a run, a replay, an offsets reset) while anyone else
/// reads the pipeline's input as this application: two readers of one
/// partition would double its output, and moving offsets under a running
/// instance would make it count its input twice.
///
/// `own` is the instance id of the state directory, whose member, left
/// behind by a process that died, is this instance's own place.
pub(crate) fn refuse_if_read_elsewhere(
    source: &dyn SourceAdmin,
    what: &str,
    own: Option<String>,
) -> Result<()> {
    let readers = source.active_readers(own.as_deref())?;
    if readers.is_empty() {
        return Ok(());
    }
    Err(Error::InUse(format!(
        "{what} refused: the input is being read as this application by {}, another instance of it or another consumer in its group; two readers of one partition would double the output. Stop them first (`kafka-consumer-groups --describe --members --group GROUP` lists them); a member of a process that died leaves the group after its session timeout",
        readers.join(", ")
    )))
}

/// What a state directory is checked against: the pipeline's name,
/// fingerprint and topology.
pub(crate) struct Signature {
    name: String,
    fingerprint: String,
    topology: String,
    /// The declared stores (see [`Pipeline::schema`]).
    states: BTreeMap<String, String>,
}

impl Signature {
    pub(crate) fn of(pipeline: &Pipeline) -> Self {
        Signature {
            name: pipeline.name().to_owned(),
            fingerprint: pipeline.fingerprint(),
            topology: pipeline.topology(),
            states: pipeline.schema(),
        }
    }

    /// The pipeline's operators, source first, joined by ` -> `.
    pub(crate) fn topology(&self) -> &str {
        &self.topology
    }

    /// The manifest of this pipeline before its first commit.
    pub(crate) fn empty_manifest(&self, key_groups: u16) -> Manifest {
        let mut m = Manifest::empty(&self.name, &self.fingerprint, &self.topology, key_groups);
        m.states = self.states.clone();
        m
    }

    /// Refuses state whose stores `was` records with other types than
    /// this pipeline declares them, naming the first such store.
    fn check_states(&self, was: &BTreeMap<String, String>, dir: &Path) -> Result<()> {
        for (store, now) in &self.states {
            let Some(then) = was.get(store).filter(|then| *then != now) else {
                continue;
            };
            let name = store.split_once('/').map_or(store.as_str(), |(_, n)| n);
            return Err(Error::Config(format!(
                "state directory {} holds the store `{name}` as {then}, but this version of `{}` declares it as {now}: its entries would be read as the wrong type. Run the version that wrote it; or start this one on a new --state (in Kafka mode, with a new --application-id, or after `offsets reset --reset-state`)",
                dir.display(),
                self.name
            )));
        }
        Ok(())
    }
}

/// Refuses a state directory written by another pipeline, or by another
/// version of this one.
pub(crate) fn check_fingerprint(m: &Manifest, pipeline: &Signature, dir: &Path) -> Result<()> {
    if m.fingerprint == pipeline.fingerprint && m.pipeline == pipeline.name {
        return Ok(());
    }
    if m.pipeline == pipeline.name {
        pipeline.check_states(&m.states, dir)?;
    }
    // Before `follow` left the fingerprint, a following file source was
    // `file-lines(follow)`: the same topology.
    if m.pipeline == pipeline.name
        && m.topology.replace("file-lines(follow)", "file-lines") == pipeline.topology
    {
        return Ok(());
    }
    let (was, now) = (
        format!("fingerprint {}: {}", m.fingerprint, m.topology),
        format!(
            "fingerprint {}: {}",
            pipeline.fingerprint, pipeline.topology
        ),
    );
    Err(Error::Config(if m.pipeline == pipeline.name {
        format!(
            "state directory {} was written by another version of `{}` ({was}), whose operators differ from this one's ({now}): its state would be read by the wrong operators. Run the version that wrote it, or give this version a --state of its own",
            dir.display(),
            m.pipeline
        )
    } else {
        format!(
            "state directory {} belongs to pipeline `{}` ({was}), not `{}` ({now}): its state would be read by the wrong operators. Run `{}` on it, or pass this pipeline a --state of its own",
            dir.display(),
            m.pipeline,
            pipeline.name,
            m.pipeline
        )
    }))
}

/// Joins the group that shares the source's tasks among the application's
/// instances, as instance `instance`. With `shared`, the instances share
/// the tasks (ARCHITECTURE §7) and any share is admitted. Without, the
/// pipeline runs as one instance (its commit point is local, or it is not
/// exactly-once): the run is refused unless the group gave this instance
/// every task, as two instances reading one partition would double its
/// output. Blocking.
pub(crate) fn join_group(
    source: &dyn SourceAdmin,
    instance: &str,
    shared: bool,
) -> Result<Option<Member>> {
    let Some(member) = source.join(instance, shared)? else {
        return Ok(None);
    };
    if shared {
        return Ok(Some(member));
    }
    let admitted = member.check().and_then(|_| {
        let tasks = tasks_of(source)?;
        let assigned: BTreeSet<String> = member.assigned().into_iter().collect();
        let missing: Vec<&String> = tasks.iter().filter(|t| !assigned.contains(*t)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let others = source
            .active_readers(Some(instance))
            .map(|r| r.join(", "))
            .unwrap_or_else(|e| format!("members the group cannot describe now: {e}"));
        Err(Error::InUse(format!(
            "run refused: another instance of this application joined its consumer group first ({others}) and holds {} of the input's {} partitions; this pipeline runs as one instance (its checkpoints are local, or it is not exactly-once), and a second one reading the same partitions would double the output. Stop the other instance first, or give this pipeline its own --application-id",
            missing.len(),
            tasks.len()
        )))
    });
    match admitted {
        Ok(()) => Ok(Some(member)),
        Err(e) => {
            member.leave();
            Err(e)
        }
    }
}

/// Refuses to run while the group has a member that is not an instance of
/// this application (a consumer started with its group id): it would take
/// tasks and commit nothing of them, or read them twice. Blocking.
pub(crate) fn refuse_strangers(source: &dyn SourceAdmin) -> Result<()> {
    let strangers: Vec<String> = source
        .members()?
        .into_iter()
        .filter(|m| m.instance().is_none())
        .map(|m| {
            format!(
                "member `{}` (client `{}` on {})",
                m.member, m.client, m.host
            )
        })
        .collect();
    if strangers.is_empty() {
        return Ok(());
    }
    Err(Error::InUse(format!(
        "run refused: the application's consumer group has members that are not instances of it: {}. Their share of the input would be read outside the application's transactions; stop them (`kafka-consumer-groups --describe --members --group GROUP` lists them)",
        strangers.join(", ")
    )))
}
