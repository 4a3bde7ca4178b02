//! The source side of recovery: every source task resumes from its
//! checkpointed position, in the input the checkpoint read.

use std::collections::BTreeMap;

use weir_core::source::Resume;
use weir_core::Result;

use crate::config::Guarantee;
use crate::plan::JobEnv;
use crate::stage::SourceAdmin;

/// Where every task resumes, and in which input (the source refuses
/// another): what the checkpoint recorded, matched to today's tasks by the
/// source (a renamed file resumes under its new name).
pub(crate) fn resume_points(
    env: &JobEnv,
    source: &dyn SourceAdmin,
    tasks: &[String],
) -> Result<BTreeMap<String, Resume>> {
    let recorded = env
        .manifest
        .sources
        .iter()
        .map(|(task, p)| {
            let resume = Resume {
                position: p.position,
                identity: p.identity.clone(),
            };
            (task.clone(), resume)
        })
        .collect();
    source.resume_points(tasks, &recorded)
}

/// Where task `task` resumes, from [`resume_points`]. A task that had
/// reached the end of a bounded input is read again from there: input
/// appended since is not missed.
pub(crate) fn start_position(
    env: &JobEnv,
    task: &str,
    resumes: &BTreeMap<String, Resume>,
) -> Result<Option<Resume>> {
    let mut from = resumes.get(task).cloned();
    if env.config.guarantee == Guarantee::AtMostOnce {
        if let Some(read) = env.store.read_position(task)? {
            let from = from.get_or_insert_with(Resume::default);
            from.position = from.position.max(read);
        }
    }
    Ok(from)
}
