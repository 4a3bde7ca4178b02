//! Retries after an aborted epoch: the run starts over from the last
//! commit point, as after a crash.

use weir_core::{Error, Result};

/// Recovers from aborted epochs (e.g. the broker restarted mid-commit):
/// the run starts over from the last commit point, as after a crash,
/// with a growing pause; errors while the cluster is still away are
/// retried for a while. An incident ends only when a run commits: runs
/// that keep failing without a commit give up after [`RETRY_FOR`], however
/// long each of them took to fail.
#[derive(Default)]
pub(crate) struct Retry {
    since: Option<std::time::Instant>,
    attempts: u32,
}

/// How long a run keeps recovering from aborted epochs before giving up.
const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(120);

impl Retry {
    /// After the run failed with `e` (having committed since the last
    /// failure, or not): `Ok` with the pause to make before it starts over.
    pub(crate) fn after(&mut self, e: Error, committed: bool) -> Result<std::time::Duration> {
        if committed {
            // The run made progress before this abort: a new incident.
            *self = Retry::default();
        }
        let since = match (&e, self.since) {
            (Error::Aborted(_), None) => *self.since.insert(std::time::Instant::now()),
            // Replaced, or refused beside another instance: nothing to wait out.
            (Error::Fenced(_) | Error::InUse(_), _) | (_, None) => return Err(e),
            (_, Some(since)) => since,
        };
        if since.elapsed() > RETRY_FOR {
            return Err(e);
        }
        self.attempts += 1;
        let pause = std::time::Duration::from_millis(250 << self.attempts.min(5));
        tracing::warn!(
            attempt = self.attempts,
            "{e}; recovering from the last commit and redoing the epoch in {pause:?}"
        );
        Ok(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aborted() -> Error {
        Error::Aborted("the transaction was aborted".into())
    }

    /// An incident that began longer than [`RETRY_FOR`] ago, three retries in.
    fn incident_past_its_limit() -> Retry {
        let long_ago = std::time::Instant::now()
            .checked_sub(RETRY_FOR + std::time::Duration::from_secs(1))
            .expect("the clock is past RETRY_FOR");
        Retry {
            since: Some(long_ago),
            attempts: 3,
        }
    }

    #[test]
    fn runs_failing_without_a_commit_give_up_however_long_each_took() {
        let mut retry = incident_past_its_limit();
        // Before, a run that took longer than RETRY_FOR / 4 to fail counted
        // as a new incident, so a run wedged for 30 s at a time retried forever.
        assert!(matches!(
            retry.after(aborted(), false),
            Err(Error::Aborted(_))
        ));
    }

    #[test]
    fn a_commit_before_the_abort_starts_a_new_incident() {
        let mut retry = incident_past_its_limit();
        assert!(retry.after(aborted(), true).is_ok());
        assert_eq!(retry.attempts, 1);
        assert!(retry.since.is_some_and(|s| s.elapsed() < RETRY_FOR));
    }

    #[test]
    fn fencing_and_errors_outside_an_incident_are_not_retried() {
        let mut retry = Retry::default();
        assert!(retry
            .after(Error::Fenced("a newer instance".into()), false)
            .is_err());
        assert!(retry
            .after(Error::Config("no such topic".into()), false)
            .is_err());
    }

    #[test]
    fn a_refusal_beside_another_instance_ends_an_incident() {
        // The instance lost its place in the group, and the instance that
        // took it keeps it: the run that starts over is refused, for good.
        let mut retry = Retry::default();
        assert!(retry.after(aborted(), false).is_ok());
        assert!(matches!(
            retry.after(Error::InUse("another instance".into()), false),
            Err(Error::InUse(_))
        ));
    }
}
