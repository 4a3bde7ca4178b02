//! An instance's membership of the group that shares a source's tasks
//! among the instances of one application (a Kafka consumer group,
//! ARCHITECTURE §7).

use std::any::Any;
use std::sync::{Arc, OnceLock};

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

    /// The group's name (a Kafka consumer group's id), for operators.
    fn group(&self) -> String {
        String::new()
    }

    /// The group's generation this member is in now, where the group
    /// counts them (a Kafka consumer group does, at every rebalance).
    fn generation(&self) -> Option<i32> {
        None
    }

    /// The connector's own type, for the commit point of the same system
    /// (a Kafka transaction reads the consumer's group metadata from it).
    fn as_any(&self) -> &dyn Any;
}

/// A shared [`Membership`].
pub type Member = Arc<dyn Membership>;

/// The HTTP address this process serves on (`http.listen`), which the
/// groups it joins tell their other members (an instance is one process).
static ADVERTISED: OnceLock<String> = OnceLock::new();

/// Tells the groups this process joins from now on that it serves HTTP
/// (status, queries) at `address`; the first address told stays.
pub fn advertise(address: &str) {
    let _ = ADVERTISED.set(address.to_owned());
}

/// The HTTP address this process advertises, if it serves one.
pub fn advertised() -> Option<&'static str> {
    ADVERTISED.get().map(String::as_str)
}

/// The client id of weir instance `instance` in a group:
/// `weir-<instance>`, then `@<address>` when it serves HTTP.
pub fn client_id(instance: &str) -> String {
    match advertised() {
        Some(address) => format!("weir-{instance}@{address}"),
        None => format!("weir-{instance}"),
    }
}

/// One member of a source's group as `offsets show` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberInfo {
    /// The id the group gave it.
    pub member: String,
    /// Its client id (see [`client_id`] for a weir instance).
    pub client: String,
    /// The host it connected from.
    pub host: String,
    /// The tasks (input partitions) it holds.
    pub tasks: Vec<String>,
}

impl GroupMemberInfo {
    /// The weir instance it is, by its client id.
    pub fn instance(&self) -> Option<&str> {
        let rest = self.client.strip_prefix("weir-")?;
        Some(rest.split_once('@').map_or(rest, |(id, _)| id))
    }

    /// The HTTP address it serves its status and queries on, when it says:
    /// the host it connects from where it listens on every interface.
    pub fn http(&self) -> Option<String> {
        let (_, address) = self.client.strip_prefix("weir-")?.split_once('@')?;
        let (ip, port) = address.rsplit_once(':')?;
        if ip == "0.0.0.0" || ip == "[::]" {
            let host = self.host.trim_start_matches('/');
            return Some(if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            });
        }
        Some(address.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(client: &str, host: &str) -> GroupMemberInfo {
        GroupMemberInfo {
            member: "m".into(),
            client: client.into(),
            host: host.into(),
            tasks: Vec::new(),
        }
    }

    #[test]
    fn a_members_client_id_names_its_instance_and_http_address() {
        let plain = member("weir-abc", "/10.0.0.7");
        assert_eq!((plain.instance(), plain.http()), (Some("abc"), None));
        let served = member("weir-abc@127.0.0.1:9464", "/127.0.0.1");
        assert_eq!(served.instance(), Some("abc"));
        assert_eq!(served.http().as_deref(), Some("127.0.0.1:9464"));
        // Listening everywhere: reached at the host the broker sees.
        let wildcard = member("weir-abc@0.0.0.0:9464", "/10.0.0.7");
        assert_eq!(wildcard.http().as_deref(), Some("10.0.0.7:9464"));
        let other = member("console-consumer", "/10.0.0.7");
        assert_eq!((other.instance(), other.http()), (None, None));
    }
}
