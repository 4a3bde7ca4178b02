//! This instance's membership of its application's consumer group
//! (ARCHITECTURE §7): one consumer per instance, subscribed to the input
//! topic (and the repartition topic) with a static identity, whose group
//! generation every commit of the instance's positions carries.
//!
//! Why the classic protocol and not KIP-848's
//! `group.protocol=consumer`: a process killed with `kill -9` and restarted
//! on its state directory must take its own place back at once. Under the
//! classic protocol a static member (`group.instance.id`) that joins again
//! replaces its dead self immediately and keeps its partitions; under
//! KIP-848 the broker refuses the same instance id with
//! `UNRELEASED_INSTANCE_ID` until the dead member's session times out
//! (45 s at the least), and a dynamic member's partitions stay with the
//! dead member for as long.
//!
//! Which assignor: instances that share tasks use `range`, which balances
//! each topic on its own. Each holds its share of the input and its share
//! of the shards, so that each reads and splits its part of the input.
//! `cooperative-sticky` balances only the number of partitions over both
//! topics together, and keeps what each member had: an instance that
//! started alone kept every input partition, and the one that joined got
//! only shards (half as many input records read per instance as it could).
//! `range` is eager, so every rebalance has every member hand over and
//! take back its tasks (each commits its open epoch first, as on any
//! revocation). A rebalance comes only when an instance joins or leaves for
//! good: a static member restarted within its session takes its place
//! back without one. Workload 7 measured both (benches/README.md). An
//! instance that runs alone (local mode, or not exactly-once) keeps
//! `cooperative-sticky`: a second instance that tries to join and is
//! refused must take nothing from it, not even for a moment.
//!
//! The member's own fetching is paused: the instance's tasks read through
//! consumers of their own, from the positions its checkpoint holds.

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance,
};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, TopicPartitionList};
use weir_core::group::{Holding, Membership};
use weir_core::{Error, Result};

use super::client::{client_config, kafka_error, with_defaults, KafkaSettings};

/// Defaults of the member that a `[kafka]` property may override: a dead
/// instance's partitions move on after 6 s without a heartbeat (the
/// broker's smallest allowed session by default; Kafka's own default is
/// 45 s).
const MEMBER_DEFAULTS: &[(&str, &str)] = &[
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "1000"),
];

/// The assignor of a member that shares tasks with other instances, or
/// runs alone (see the module's documentation).
fn assignor(shared: bool) -> &'static str {
    if shared {
        "range"
    } else {
        "cooperative-sticky"
    }
}

/// How long a joining instance waits for the group to assign it partitions.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the member is polled: it serves rebalances and heartbeats.
const POLL: Duration = Duration::from_millis(100);

/// How long a commit waits for partitions taken by a newcomer to come
/// back: another weir instance refuses to run beside this one and leaves
/// at once (two rebalances, a second or two).
const REGAIN: Duration = Duration::from_secs(10);

/// What the group has told this member so far. Tasks are named
/// `<topic>-<partition>`, as the source names them.
#[derive(Default)]
struct Seen {
    /// The partitions assigned now.
    assigned: BTreeSet<String>,
    /// Those a run holds (see [`Membership::hold`]).
    held: BTreeSet<String>,
    /// A run holds tasks: a revocation of some waits for it to end.
    holding: bool,
    /// Shared mode: the group moved tasks since the run took them.
    moved: bool,
    /// Shared mode: the run held tasks past the handover's time, and the
    /// group moved them anyway; none of its commits may land any more.
    forfeited: Option<String>,
    /// Alone: partitions were taken away, and why.
    revoked: Option<String>,
    /// The assignment was lost (a session that expired, a rebalance missed).
    lost: Option<String>,
    /// Another instance with this instance's id took its place.
    fenced: Option<String>,
    /// The group's members share out partitions with another assignor.
    refused: Option<String>,
    /// The revocation under way is of a lost assignment.
    losing: bool,
    /// `leave` was called, or the membership was lost: revocations from
    /// now on are expected.
    leaving: bool,
}

struct Shared {
    /// The topics subscribed to: the input, and the repartition topic.
    topics: Vec<String>,
    /// The instance shares the application's tasks with other instances.
    shared: bool,
    seen: Mutex<Seen>,
    changed: Condvar,
}

impl Shared {
    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the group's next word, or a poll's time.
    fn wait<'a>(&self, seen: MutexGuard<'a, Seen>) -> MutexGuard<'a, Seen> {
        self.changed
            .wait_timeout(seen, POLL)
            .unwrap_or_else(|p| p.into_inner())
            .0
    }

    /// The tasks of `tpl` among the subscribed topics.
    fn tasks(&self, tpl: &TopicPartitionList) -> Vec<String> {
        tpl.elements()
            .iter()
            .filter(|e| self.topics.iter().any(|t| t == e.topic()))
            .map(|e| format!("{}-{}", e.topic(), e.partition()))
            .collect()
    }
}

/// How long a rebalance waits for the run that holds a task it asks for to
/// commit and end. Past it the rebalance goes on, and the run may commit
/// nothing more (see [`Seen::forfeited`]): its epoch is redone by the
/// task's next holder.
const HANDOVER: Duration = Duration::from_secs(30);

/// The member consumer's context: records the group's decisions.
struct MemberContext(Arc<Shared>);

impl ClientContext for MemberContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::InconsistentGroupProtocol) {
            let shared = &self.0;
            let mut seen = shared.seen();
            if seen.refused.is_none() {
                seen.refused = Some(format!(
                    "the members of this application's consumer group share out its partitions with another assignor than this instance's `{}`: an instance of another kind runs under this application id (a local-mode or not exactly-once pipeline, or an earlier weir, which used `cooperative-sticky` for all; the broker says: {reason}); stop it (`kafka-consumer-groups --describe --members --group GROUP` lists the members), or give this pipeline its own --application-id",
                    assignor(shared.shared)
                ));
                shared.changed.notify_all();
            }
            return;
        }
        tracing::warn!("kafka (group member): {error}: {reason}");
    }
}

impl ConsumerContext for MemberContext {
    /// Whether a revocation means the assignment was lost is known only
    /// before the partitions are unassigned. A task the run holds is
    /// handed over only after the run committed and let it go: until this
    /// returns, the group's generation stays the one the run commits with.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let shared = &self.0;
        let lost = consumer.assignment_lost();
        let mut seen = shared.seen();
        seen.losing = lost;
        if !shared.shared || lost || seen.leaving {
            return;
        }
        let asked = shared.tasks(tpl);
        // No run that starts from now on may take them, even before they
        // are unassigned.
        for t in &asked {
            seen.assigned.remove(t);
        }
        if !asked.iter().any(|t| seen.held.contains(t)) {
            return;
        }
        seen.moved = true;
        shared.changed.notify_all();
        tracing::info!(tasks = ?asked, "the consumer group asks for tasks this instance holds: committing the open epoch first");
        let deadline = Instant::now() + HANDOVER;
        while seen.holding && asked.iter().any(|t| seen.held.contains(t)) {
            if Instant::now() >= deadline {
                let why = format!(
                    "the run did not hand tasks {asked:?} over within {} s of the group asking for them; the group moved them anyway, so the run commits nothing more and their open epoch is redone by their next holder",
                    HANDOVER.as_secs()
                );
                tracing::warn!("{why}");
                seen.forfeited.get_or_insert(why);
                break;
            }
            seen = shared.wait(seen);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let shared = &self.0;
        let mut seen = shared.seen();
        match rebalance {
            Rebalance::Assign(tpl) => {
                // The tasks read through consumers of their own.
                if let Err(e) = consumer.pause(tpl) {
                    tracing::warn!("kafka: cannot pause the group member's partitions: {e}");
                }
                let given = shared.tasks(tpl);
                if seen.holding && given.iter().any(|t| !seen.held.contains(t)) {
                    seen.moved = true;
                }
                seen.assigned.extend(given);
                tracing::debug!(assigned = ?seen.assigned, "the consumer group assigned partitions");
            }
            Rebalance::Revoke(tpl) => {
                let gone = shared.tasks(tpl);
                for t in &gone {
                    seen.assigned.remove(t);
                }
                let losing = std::mem::take(&mut seen.losing);
                if !gone.is_empty() && !seen.leaving {
                    let what = format!("partitions {gone:?} were taken from this instance");
                    if losing {
                        seen.lost.get_or_insert(format!(
                            "{what}: its membership of the consumer group was lost (a session that timed out, or a rebalance it missed)"
                        ));
                    } else if !shared.shared {
                        seen.revoked.get_or_insert(format!(
                            "{what} and given to another member of its consumer group"
                        ));
                    }
                }
            }
            Rebalance::Error(e) => tracing::warn!("kafka: consumer group rebalance failed: {e}"),
        }
        shared.changed.notify_all();
    }
}

/// One instance's member of its application's consumer group.
pub(crate) struct KafkaMember {
    consumer: Arc<BaseConsumer<MemberContext>>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    poller: Mutex<Option<JoinHandle<()>>>,
    group: String,
    instance: String,
    brokers: String,
    /// The member's heartbeat interval.
    heartbeat: Duration,
}

/// What a member joins as.
pub(crate) struct JoinAs<'a> {
    /// The consumer group (the application id).
    pub(crate) group: &'a str,
    /// The topics to subscribe to: the input, then the repartition topic.
    pub(crate) topics: Vec<String>,
    /// The instance's persistent id.
    pub(crate) instance: &'a str,
    /// The partitions of `topics` in all.
    pub(crate) partitions: usize,
    /// Shares the tasks with other instances (see [`Seen::moved`]).
    pub(crate) shared: bool,
}

impl KafkaMember {
    /// Joins as `at` says, and waits until the member holds all of its
    /// partitions or `others` says the group has another member besides
    /// it (the caller decides what a partial assignment means).
    pub(crate) fn join(
        settings: &KafkaSettings,
        at: &JoinAs<'_>,
        others: &dyn Fn() -> Result<bool>,
    ) -> Result<Arc<KafkaMember>> {
        let shared = Arc::new(Shared {
            topics: at.topics.clone(),
            shared: at.shared,
            seen: Mutex::new(Seen::default()),
            changed: Condvar::new(),
        });
        let mut config = client_config(
            settings,
            &[
                ("group.id", at.group),
                ("group.instance.id", &static_id(at.group, at.instance)),
                ("group.protocol", "classic"),
                ("partition.assignment.strategy", assignor(at.shared)),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("isolation.level", "read_committed"),
            ],
        )
        .map(|c| with_defaults(c, MEMBER_DEFAULTS))?;
        // Named so that `kafka-consumer-groups --describe --members` tells
        // the instances apart, whatever client.id the [kafka] table sets.
        config.set("client.id", weir_core::group::client_id(at.instance));
        let consumer: BaseConsumer<MemberContext> = config
            .create_with_context(MemberContext(shared.clone()))
            .map_err(|e| kafka_error("cannot create a consumer", &settings.brokers, e))?;
        let topics: Vec<&str> = at.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| kafka_error("cannot join the consumer group", &settings.brokers, e))?;
        let consumer = Arc::new(consumer);
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (consumer, shared, stop) = (consumer.clone(), shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("weir-group-member".into())
                .spawn(move || poll_loop(&consumer, &shared, &stop))
                .map_err(|e| Error::State(format!("cannot spawn the group member's thread: {e}")))?
        };
        let member = Arc::new(KafkaMember {
            consumer,
            shared,
            stop,
            poller: Mutex::new(Some(poller)),
            group: at.group.to_owned(),
            instance: at.instance.to_owned(),
            brokers: settings.brokers.clone(),
            heartbeat: heartbeat_of(settings),
        });
        member.await_assignment(at.partitions, others)?;
        Ok(member)
    }

    /// Waits until this member holds `partitions` partitions, or `others`
    /// says another member of the group holds some.
    fn await_assignment(&self, partitions: usize, others: &dyn Fn() -> Result<bool>) -> Result<()> {
        let deadline = Instant::now() + JOIN_TIMEOUT;
        let mut described = Instant::now();
        let mut seen = self.shared.seen();
        loop {
            if let Some(why) = &seen.fenced {
                return Err(Error::Fenced(why.clone()));
            }
            if let Some(why) = &seen.refused {
                return Err(Error::InUse(why.clone()));
            }
            if seen.assigned.len() >= partitions {
                return Ok(());
            }
            if described.elapsed() >= Duration::from_secs(1) {
                drop(seen);
                described = Instant::now();
                if others()? {
                    return Ok(());
                }
                seen = self.shared.seen();
                continue;
            }
            if Instant::now() >= deadline {
                return Err(Error::Aborted(format!(
                    "consumer group `{}` on {} assigned this instance no partitions within {} s; is the group coordinator up?",
                    self.group,
                    self.brokers,
                    JOIN_TIMEOUT.as_secs()
                )));
            }
            seen = self.shared.wait(seen);
        }
    }

    /// The consumer's group metadata now (member id and generation), for a
    /// transaction's offsets: read at every commit, never cached.
    pub(crate) fn group_metadata(&self) -> Result<ConsumerGroupMetadata> {
        self.consumer.group_metadata().ok_or_else(|| {
            Error::State(format!(
                "the member of consumer group `{}` has no group metadata",
                self.group
            ))
        })
    }

    /// Copies `offsets` to the group as this member (advisory).
    pub(crate) fn commit(&self, offsets: &TopicPartitionList, mode: CommitMode) -> Result<()> {
        self.consumer
            .commit(offsets, mode)
            .map_err(|e| kafka_error("cannot commit the group's offsets", &self.brokers, e))
    }

    /// Waits, polling on, until the group no longer lists this instance:
    /// the LeaveGroup goes out once librdkafka has unassigned, and a
    /// process that exits before the broker has it would leave its member
    /// listed for a session, refusing an instance started on another state
    /// directory right after a clean stop.
    fn await_departure(&self, deadline: Instant) {
        if self.shared.seen().fenced.is_some() {
            // The member listed under this id is the process that took it.
            return;
        }
        let own = static_id(&self.group, &self.instance);
        loop {
            let listed = match self.consumer.fetch_group_list(Some(&self.group), POLL * 10) {
                Ok(groups) => groups
                    .groups()
                    .iter()
                    .filter(|g| g.name() == self.group)
                    .flat_map(|g| g.members())
                    .any(|m| is_instance(m.id(), m.client_id(), &own, &self.instance)),
                Err(e) => {
                    tracing::debug!("kafka: cannot describe the consumer group on leaving: {e}");
                    true
                }
            };
            if !listed {
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    "consumer group `{}` still lists this instance after it left; its partitions move on when its session times out",
                    self.group
                );
                return;
            }
            let seen = self.shared.seen();
            drop(self.shared.wait(seen));
        }
    }

    fn stop_polling(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let poller = self.poller.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = poller {
            let _ = t.join();
        }
    }
}

/// Polls the member until told to stop: rebalances are served here.
fn poll_loop(consumer: &BaseConsumer<MemberContext>, shared: &Shared, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(POLL) {
            // A record fetched before its partition was paused: the task
            // reading that partition has it.
            None | Some(Ok(_)) => {}
            Some(Err(KafkaError::MessageConsumptionFatal(code)))
            | Some(Err(KafkaError::MessageConsumption(
                code @ RDKafkaErrorCode::FencedInstanceId,
            ))) => {
                let mut seen = shared.seen();
                seen.fenced.get_or_insert(format!(
                    "another process joined the consumer group as this instance ({code}): the state directory is in use elsewhere (a copy of it, or the same one on a shared disk)"
                ));
                shared.changed.notify_all();
            }
            Some(Err(e)) => tracing::debug!("kafka (group member): {e}"),
        }
        let lost = {
            let mut seen = shared.seen();
            let lost = seen.lost.is_some() && !seen.leaving;
            seen.leaving |= lost;
            lost
        };
        if lost {
            // Not back into the group behind the run's back: the run
            // aborts its epoch at its next commit, and joins again (and
            // passes admission again) only when it starts over. Until
            // then, whoever took the partitions keeps them.
            consumer.unsubscribe();
        }
        if let Some((code, reason)) = consumer.client().fatal_error() {
            let mut seen = shared.seen();
            if seen.fenced.is_none() {
                seen.fenced = Some(format!(
                    "the consumer group member failed for good ({code}: {reason}); another process may have joined as this instance"
                ));
                shared.changed.notify_all();
            }
        }
    }
}

impl Membership for KafkaMember {
    fn assigned(&self) -> Vec<String> {
        self.shared.seen().assigned.iter().cloned().collect()
    }

    fn group(&self) -> String {
        self.group.clone()
    }

    fn generation(&self) -> Option<i32> {
        use rdkafka::bindings as rd;
        let client = self.consumer.client().native_ptr();
        // SAFETY: the client lives as long as `self.consumer`; the metadata
        // is a copy of the consumer's, destroyed before returning. (The
        // crate's `ConsumerGroupMetadata` hides the generation.)
        let generation = unsafe {
            let meta = rd::rd_kafka_consumer_group_metadata(client);
            if meta.is_null() {
                return None;
            }
            let generation = rd::rd_kafka_consumer_group_metadata_generation_id(meta);
            rd::rd_kafka_consumer_group_metadata_destroy(meta);
            generation
        };
        // -1 before the member first joined.
        (generation >= 0).then_some(generation)
    }

    fn hold(&self) -> Vec<String> {
        let mut seen = self.shared.seen();
        seen.held = seen.assigned.clone();
        seen.holding = true;
        seen.moved = false;
        seen.forfeited = None;
        seen.revoked = None;
        seen.held.iter().cloned().collect()
    }

    fn check(&self) -> Result<Holding> {
        let deadline = Instant::now() + REGAIN;
        let mut seen = self.shared.seen();
        loop {
            if let Some(why) = &seen.fenced {
                return Err(Error::Fenced(why.clone()));
            }
            if let Some(why) = &seen.lost {
                return Err(Error::Aborted(why.clone()));
            }
            if self.shared.shared {
                if let Some(why) = &seen.forfeited {
                    return Err(Error::Aborted(why.clone()));
                }
                return Ok(if seen.moved {
                    Holding::Moved
                } else {
                    Holding::Steady
                });
            }
            let Some(why) = &seen.revoked else {
                return Ok(Holding::Steady);
            };
            if seen.held.is_subset(&seen.assigned) {
                tracing::info!("the partitions a newcomer to the consumer group was given came back to this instance");
                seen.revoked = None;
                return Ok(Holding::Steady);
            }
            if Instant::now() >= deadline {
                return Err(Error::InUse(format!(
                    "{why}, and stayed there for {} s: another consumer reads this application's input. This pipeline runs as one instance; stop the other consumer (`kafka-consumer-groups --describe --members --group {}` lists the group's members)",
                    REGAIN.as_secs(),
                    self.group
                )));
            }
            seen = self.shared.wait(seen);
        }
    }

    fn moved(&self) -> bool {
        self.shared.seen().moved
    }

    fn release(&self) {
        let mut seen = self.shared.seen();
        seen.held.clear();
        seen.holding = false;
        self.shared.changed.notify_all();
    }

    fn usable(&self) -> bool {
        let seen = self.shared.seen();
        seen.fenced.is_none() && seen.lost.is_none() && !seen.leaving
    }

    fn fenced_by_twin(&self, within: Duration) -> bool {
        // The group tells a replaced static member at its next heartbeat.
        let deadline = Instant::now() + within.max(self.heartbeat * 3);
        let mut seen = self.shared.seen();
        loop {
            if seen.fenced.is_some() {
                return true;
            }
            // A lost place: another instance took the tasks over.
            if seen.lost.is_some() || Instant::now() >= deadline {
                return false;
            }
            seen = self.shared.wait(seen);
        }
    }

    fn leave(&self) {
        self.release();
        self.shared.seen().leaving = true;
        // Unsubscribing sends the LeaveGroup that closing a static member
        // does not: its partitions move on now, not after its session.
        self.consumer.unsubscribe();
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut seen = self.shared.seen();
        while !seen.assigned.is_empty() && Instant::now() < deadline {
            seen = self.shared.wait(seen);
        }
        drop(seen);
        self.await_departure(Instant::now() + Duration::from_secs(3));
        self.stop_polling();
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for KafkaMember {
    fn drop(&mut self) {
        self.stop_polling();
    }
}

/// The member's heartbeat interval: `heartbeat.interval.ms` of the
/// `[kafka]` table, or weir's default.
fn heartbeat_of(settings: &KafkaSettings) -> Duration {
    let default = MEMBER_DEFAULTS
        .iter()
        .find(|(k, _)| *k == "heartbeat.interval.ms")
        .map_or("1000", |(_, v)| v);
    let ms = settings
        .properties
        .get("heartbeat.interval.ms")
        .map_or(default, String::as_str);
    Duration::from_millis(ms.parse().unwrap_or(1000))
}

/// The member's `group.instance.id`: the application's group and the
/// instance's id.
pub(crate) fn static_id(group: &str, instance: &str) -> String {
    format!("{group}-{instance}")
}

/// The metadata of a position committed by instance `instance`, which
/// runs with `key_groups` key groups: who to fence when a transaction that
/// commits the position stays pending, and what every instance of the
/// application must agree on.
pub(crate) fn committer(instance: &str, key_groups: u16) -> String {
    format!("weir:{instance};key_groups={key_groups}")
}

/// The instance that committed a position, and the key groups it ran with
/// if it says, from its metadata (see [`committer`]).
pub(crate) fn committer_of(metadata: &str) -> Option<(&str, Option<u16>)> {
    let rest = metadata.strip_prefix("weir:")?;
    let (id, fields) = rest.split_once(';').unwrap_or((rest, ""));
    let key_groups = fields
        .split(';')
        .find_map(|f| f.strip_prefix("key_groups="))
        .and_then(|n| n.parse().ok());
    (!id.is_empty()).then_some((id, key_groups))
}

/// Whether a listed member (its member id and client id) is instance
/// `instance`, whose static id is `own`: the broker names a static member
/// `<group.instance.id>-<uuid>`.
pub(crate) fn is_instance(member_id: &str, client: &str, own: &str, instance: &str) -> bool {
    member_id
        .strip_prefix(own)
        .is_some_and(|rest| rest.starts_with('-'))
        && client
            .strip_prefix("weir-")
            .is_some_and(|rest| rest.split_once('@').map_or(rest, |(id, _)| id) == instance)
}

/// The partitions of `topic` in a member's assignment as a consumer group
/// lists it (the consumer protocol's `ConsumerProtocolAssignment`, after
/// its version); none when it cannot be read (a member of another kind).
pub(crate) fn assigned_partitions(raw: &[u8], topic: &str) -> Vec<i32> {
    use bytes::Buf;
    use kafka_protocol::messages::ConsumerProtocolAssignment;
    use kafka_protocol::protocol::Decodable;
    let mut bytes = bytes::Bytes::copy_from_slice(raw);
    if bytes.remaining() < 2 {
        return Vec::new();
    }
    let version = bytes.get_i16();
    match ConsumerProtocolAssignment::decode(&mut bytes, version.clamp(0, 3)) {
        Ok(a) => a
            .assigned_partitions
            .into_iter()
            .filter(|tp| tp.topic.as_str() == topic)
            .flat_map(|tp| tp.partitions)
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assignment_is_read_as_the_consumer_protocol_writes_it() {
        // Version 1; topics "t" [0, 3] and "u" [1]; no user data.
        let raw: &[u8] = &[
            0, 1, 0, 0, 0, 2, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 1, b'u', 0, 0, 0,
            1, 0, 0, 0, 1, 255, 255, 255, 255,
        ];
        assert_eq!(assigned_partitions(raw, "t"), vec![0, 3]);
        assert_eq!(assigned_partitions(raw, "u"), vec![1]);
        assert_eq!(assigned_partitions(raw, "v"), Vec::<i32>::new());
        assert_eq!(assigned_partitions(&raw[..5], "t"), Vec::<i32>::new());
        assert_eq!(assigned_partitions(&[], "t"), Vec::<i32>::new());
    }

    #[test]
    fn a_position_names_its_committer_and_key_groups() {
        assert_eq!(committer_of(&committer("abc", 16)), Some(("abc", Some(16))));
        // As instances before key_groups was recorded wrote it.
        assert_eq!(committer_of("weir:abc"), Some(("abc", None)));
        assert_eq!(committer_of("weir:"), None);
        assert_eq!(committer_of("something else"), None);
    }

    #[test]
    fn an_instance_is_known_by_its_static_id_and_client_id() {
        let own = static_id("app", "abc");
        assert!(is_instance("app-abc-5f0c", "weir-abc", &own, "abc"));
        assert!(is_instance(
            "app-abc-5f0c",
            "weir-abc@127.0.0.1:9464",
            &own,
            "abc"
        ));
        assert!(!is_instance("app-abcd-5f0c", "weir-abcd", &own, "abc"));
        assert!(!is_instance(
            "app-abc-5f0c",
            "console-consumer",
            &own,
            "abc"
        ));
    }
}
