//! An instance's membership of the group that shares a source's tasks
//! among the instances of one application (a Kafka consumer group,
//! ARCHITECTURE §7).

use std::any::Any;
use std::sync::Arc;

use crate::Result;

/// Whether the tasks a run holds are still its own (see
/// [`Membership::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// The group left this instance every task the run holds, and gave it
    /// nothing new.
    Steady,
    /// The group moved tasks (asks for some the run holds, or gave this
    /// instance more): commit the open epoch as the run's last, and start
    /// a run over what the group assigns then.
    Moved,
}

/// What a source's group says about this instance while it runs. Made by
/// [`Source::join`](crate::source::Source::join); a run takes what the
/// group assigns ([`hold`](Self::hold)), asks before every commit whether
/// it still holds it ([`check`](Self::check)), and lets it go when it ends
/// ([`release`](Self::release)). The instance leaves the group when it
/// stops.
pub trait Membership: Send + Sync + 'static {
    /// The tasks the group assigns to this instance now.
    fn assigned(&self) -> Vec<String>;

    /// Takes the tasks assigned now as the ones a run works on, and
    /// returns them. Until [`release`](Self::release), a rebalance that
    /// asks for one of them waits (for a while) for the run to commit and
    /// end: a task never changes hands mid-epoch.
    fn hold(&self) -> Vec<String>;

    /// Whether the run may commit what it read from the tasks it holds.
    /// An instance that runs an application alone blocks for a while when
    /// a task was taken away, as it may come back (a newcomer that refuses
    /// to run beside it leaves at once).
    ///
    /// # Errors
    /// [`Error::Aborted`](crate::Error::Aborted) when this member lost its
    /// place (a session that expired, a rebalance it missed): redo the
    /// epoch after joining again. [`Error::InUse`](crate::Error::InUse)
    /// when a task of an instance that runs alone stays with another
    /// member: stop. [`Error::Fenced`](crate::Error::Fenced) once another
    /// instance with the same identity took this one's place: stop.
    fn check(&self) -> Result<Holding>;

    /// Whether the group moved tasks since [`hold`](Self::hold): the run
    /// ends its epoch early. Does not block.
    fn moved(&self) -> bool;

    /// The run that held tasks ended (committed or not): a rebalance
    /// waiting for them goes on.
    fn release(&self);

    /// Whether another run may hold tasks through this membership: it was
    /// neither lost, fenced nor left (else the instance joins again).
    fn usable(&self) -> bool;

    /// After the run's commits were refused as fenced: whether, within
    /// `within`, the group says that another process joined with this
    /// instance's identity (a copy of its state directory: stop). If not,
    /// the fencing was another instance's takeover of tasks this one held
    /// while it was away, and it may join again.
    fn fenced_by_twin(&self, within: std::time::Duration) -> bool;

    /// Leaves the group at once, so that its tasks go to the other members
    /// without waiting for a session timeout (a clean stop).
    fn leave(&self);

    /// The connector's own type, for the commit point of the same system
    /// (a Kafka transaction reads the consumer's group metadata from it).
    fn as_any(&self) -> &dyn Any;
}

/// A shared [`Membership`].
pub type Member = Arc<dyn Membership>;

/// One member of a source's group as `offsets show` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberInfo {
    /// The id the group gave it.
    pub member: String,
    /// Its client id (`weir-<instance-id>` for a weir instance).
    pub client: String,
    /// The host it connected from.
    pub host: String,
    /// The tasks (input partitions) it holds.
    pub tasks: Vec<String>,
}
