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
/// source (a renamed file resumes under its new name). A task that had
/// reached the end of a bounded input is read again from there: input
/// appended since is not missed.
///
/// At-most-once saves each task's read position, synced, before it
/// processes what it read: newer than the checkpoint, and never to be read
/// again. It goes through the same matching, so that a rotated file's
/// read position follows the file, never its old name.
pub(crate) fn resume_points(
    env: &JobEnv,
    source: &dyn SourceAdmin,
    tasks: &[String],
) -> Result<BTreeMap<String, Resume>> {
    let checkpointed = env.manifest.sources.iter().map(|(task, p)| {
        let resume = Resume {
            position: p.position,
            identity: p.identity.clone(),
        };
        (task.clone(), resume)
    });
    let mut recorded: Vec<(String, Resume)> = Vec::new();
    if env.config.guarantee == Guarantee::AtMostOnce {
        recorded.extend(env.store.read_positions()?);
    }
    for (task, resume) in checkpointed {
        // The same input's read position is at least as far (one saved
        // before read positions named their input is taken to be of it);
        // another input under the same name (rotated since) keeps its own.
        let read = recorded
            .iter_mut()
            .find(|(t, r)| *t == task && (r.identity.is_none() || r.identity == resume.identity));
        match read {
            Some((_, read)) => {
                read.position = read.position.max(resume.position);
                read.identity = resume.identity;
            }
            None => recorded.push((task, resume)),
        }
    }
    source.resume_points(tasks, &recorded)
}
