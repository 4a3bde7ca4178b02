//! An instance's membership of the group that shares a source's tasks
//! among the instances of one application (a Kafka consumer group,
//! ARCHITECTURE §7).

use std::any::Any;
use std::sync::Arc;

use crate::Result;

/// What a source's group says about this instance while it runs. Made by
/// [`Source::join`](crate::source::Source::join); the runtime asks it
/// before every commit, and leaves the group when the run ends.
pub trait Membership: Send + Sync + 'static {
    /// The tasks the group assigns to this instance now.
    fn assigned(&self) -> Vec<String>;

    /// Whether this instance may still commit what it read from every
    /// task it was assigned when it joined. Blocking for a while when a
    /// task was taken away, as it may come back (a newcomer that refuses
    /// to run beside this instance leaves at once).
    ///
    /// # Errors
    /// [`Error::Aborted`](crate::Error::Aborted) when this member lost its
    /// place (a session that expired, a rebalance it missed): redo the
    /// epoch after joining again. [`Error::InUse`](crate::Error::InUse)
    /// when a task stays with another member: stop.
    /// [`Error::Fenced`](crate::Error::Fenced) once another instance with
    /// the same identity took this one's place: stop.
    fn check(&self) -> Result<()>;

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
