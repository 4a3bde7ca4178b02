//! One process's life as an instance of the application: admission checks,
//! opening the state, recovery and the run ([`launch`]), retries after an
//! aborted epoch ([`Retry`]), and the signals that end it cleanly.

pub(crate) mod admission;
pub(crate) mod identity;
mod launch;
mod retry;
mod signals;

pub(crate) use admission::{check_fingerprint, refuse_if_read_elsewhere, Signature};
pub(crate) use retry::Retry;
pub(crate) use signals::shutdown_signals;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;
use weir_core::group::Member;
use weir_core::{Error, Result, Settings};

use crate::checkpoint::RunSummary;
use crate::manifest::PartialState;
use crate::observe::{query, status, Phase, METRICS};
use crate::plan::{Built, Holdings, JobEnv, Shards};
use crate::recovery::moved;
use crate::store::{self, Store};
use crate::{Config, Guarantee, Pipeline, RuntimeConfig};

/// This process's place in its application's consumer group, kept across
/// the runs and retries of one process: a retry after an aborted epoch
/// goes on as the same member, where leaving and joining again would move
/// the application's tasks twice. Left when the process is done.
#[derive(Default)]
pub(crate) struct Membership(Option<Member>);

impl Membership {
    /// Leaves the group, if joined.
    pub(crate) async fn leave(&mut self) {
        if let Some(member) = self.0.take() {
            // Its tasks go to the other members at once.
            let _ = tokio::task::spawn_blocking(move || member.leave()).await;
        }
    }
}

/// Whether instances of this pipeline share its tasks: an exactly-once
/// pipeline that commits through transactions, whose every commit the
/// group fences by generation. Any other runs as one instance.
fn shares_tasks(built: &Built, rc: &RuntimeConfig) -> bool {
    built.commit.is_some() && rc.guarantee == Guarantee::ExactlyOnce
}

/// [`run`], also telling whether the run committed any checkpoint before
/// it failed (so that a retry knows a new incident from the same one).
/// `membership` is the process's place in the group, joined on first use.
pub(crate) async fn run_once(
    pipeline: Pipeline,
    config: &Config,
    replay_from: Option<u64>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    committed: &mut bool,
    membership: &mut Membership,
) -> Result<RunSummary> {
    let rc = config.runtime().clone();
    let dir = rc.state.clone().ok_or_else(|| {
        Error::Config("no state directory; pass --state DIR (or set `state` in the config)".into())
    })?;
    let signature = Signature::of(&pipeline);
    let settings: Arc<dyn Settings> = Arc::new(config.settings()?);
    let name = pipeline.name().to_owned();
    let queryables = pipeline.queryables().to_vec();
    let built = pipeline.into_job()?;
    match (rc.on_bad_input, built.dead_letter.is_some()) {
        (crate::OnBadInput::DeadLetter, false) => return Err(Error::Config(
            "on_bad_input = \"dead-letter\", but this pipeline has no dead-letter sink; declare one (Pipeline::dead_letter, e.g. through the binary's --dead-letter-topic option) or choose fail or skip".into(),
        )),
        (policy @ (crate::OnBadInput::Fail | crate::OnBadInput::Skip), true) => {
            return Err(Error::Config(format!(
                "this pipeline has a dead-letter sink (e.g. --dead-letter-topic), but on_bad_input is `{}`, so nothing would ever reach it; set on_bad_input=dead-letter to use it, or drop it",
                if policy == crate::OnBadInput::Fail { "fail" } else { "skip" }
            )))
        }
        _ => {}
    }
    if let (Some(commit), Guarantee::ExactlyOnce) = (&built.commit, rc.guarantee) {
        commit.admits(Duration::from_millis(rc.checkpoint.interval_ms))?;
    }
    let shared = shares_tasks(&built, &rc);
    let source = built.job.source();
    // Before anything is touched (a replay rewrites the state directory).
    // Instances that share the tasks run beside each other; a replay
    // rewinds the application, and waits for all of them to stop.
    if !shared || replay_from.is_some() {
        refuse_if_read_elsewhere(
            &*source,
            if replay_from.is_some() {
                "replay"
            } else {
                "run"
            },
            identity::peek(&dir)?,
        )?;
    }
    if let Some(id) = replay_from {
        let chk = store::list_checkpoints(&dir)?
            .into_iter()
            .find(|m| m.epoch == id);
        if let Some(m) = &chk {
            check_fingerprint(m, &signature, &dir)?;
            if let Some(partial) = &m.partial {
                return Err(Error::Config(partial.refusal(
                    &format!("replay refused: checkpoint {id} of {}", dir.display()),
                    "Replay a checkpoint taken while one instance held every shard (run one instance alone, e.g. with --until-idle-ms, and it restores every shard from the changelog), or rewind the input with `offsets reset --reset-state`, which rebuilds the state from the new positions",
                )));
            }
        }
        let m = Store::replay(&dir, id)?;
        tracing::info!(
            from = id,
            epoch = m.epoch,
            generation = m.generation,
            "replaying from checkpoint {id}"
        );
    }
    let store_exists = dir.join("db").is_dir();
    if !store_exists {
        // A first run: an input or output that is not there must not leave
        // a state directory (or anything else) behind.
        built.job.tasks()?;
        for sink in &built.sinks {
            (sink.check)()?;
        }
    }
    let store = Arc::new(Store::open(&dir)?);
    let recovered = store.manifest()?;
    let instance = identity::load_or_create(&dir, recovered.is_some())?;
    status::identify(&name, signature.topology(), &instance);
    let _served = query::serve(&queryables, store.clone(), source.clone(), rc.key_groups);
    let mut manifest = match recovered {
        Some(m) => {
            check_fingerprint(&m, &signature, &dir)?;
            if m.key_groups != rc.key_groups {
                return Err(Error::Config(format!(
                    "key_groups is fixed when a state directory is created: {} in {}, but {} is configured; set key_groups = {} or use a new --state",
                    m.key_groups,
                    dir.display(),
                    rc.key_groups,
                    m.key_groups
                )));
            }
            tracing::info!(epoch = m.epoch, "recovering from checkpoint {}", m.epoch);
            m
        }
        None => signature.empty_manifest(rc.key_groups),
    };
    let start_epoch = manifest.epoch;
    let shards = match (&built.commit, shared && built.job.keyed()) {
        (Some(commit), true) => {
            prepare_shards(commit.clone(), source.clone(), rc.key_groups).await?
        }
        _ => None,
    };
    let mut total = RunSummary {
        last_epoch: start_epoch,
        ..RunSummary::default()
    };
    let result = async {
        // From a run that handed tasks over to the next run's start.
        let mut rebalance = tracing::Span::none();
        loop {
            let member = join(membership, &source, &instance, shared)
                .instrument(rebalance.clone())
                .await?;
            if shared {
                let (admin, span) = (source.clone(), rebalance.clone());
                blocking(move || span.in_scope(|| admission::refuse_strangers(&*admin))).await?;
            }
            if let Some(m) = &member {
                show_group(m, &source, &instance);
            }
            let holdings = match &member {
                Some(m) if shared => Holdings::of(m.hold(), shards.as_ref()),
                Some(m) => {
                    m.hold();
                    Holdings::default()
                }
                None => Holdings::default(),
            };
            if let (Some(m), false) = (&member, rebalance.is_none()) {
                let held = holdings
                    .tasks
                    .as_ref()
                    .map_or_else(|| m.assigned().len(), BTreeSet::len);
                rebalance.record("held", held);
                // The consumer's metadata waits on librdkafka's thread.
                let of = m.clone();
                if let Ok(Some(g)) = tokio::task::spawn_blocking(move || of.generation()).await {
                    rebalance.record("generation", g);
                }
                tracing::info!(parent: &rebalance, "rebalanced: this instance holds {held} task(s)");
            }
            // Closed: the next run starts.
            drop(std::mem::replace(&mut rebalance, tracing::Span::none()));
            let result = if holdings.is_empty() {
                // Holding no shard, this state is none of the application's.
                if let Some(s) = &shards {
                    let none = PartialState::of_run(&Default::default(), s.count);
                    moved::note_held(&store, &mut manifest, none)?;
                }
                status::enter(Phase::Running, Some(0));
                query::hold(Some(holdings.clone()));
                idle(member.as_ref(), source.until_idle(), shutdown.clone()).await
            } else {
                let span = tracing::info_span!(
                    "run",
                    tasks = ?holdings.tasks,
                    shards = ?holdings.shards.as_ref().map(|s| &s.held)
                );
                tracing::info!(parent: &span, "running");
                // Recovery first; the coordinator says when the tasks run.
                status::enter(Phase::Restoring, None);
                query::hold(Some(holdings.clone()));
                built
                    .job
                    .run(JobEnv {
                        named: built.named.clone(),
                        commit: built.commit.clone(),
                        dead_letter: built.dead_letter.clone(),
                        sinks: built.sinks.clone(),
                        store: store.clone(),
                        manifest: manifest.clone(),
                        config: rc.clone(),
                        settings: settings.clone(),
                        shutdown: shutdown.clone(),
                        instance: instance.clone(),
                        member: member.clone(),
                        holdings,
                        bounded: source.bounded(),
                    })
                    .instrument(span)
                    .await
            };
            query::hold(None);
            if let Some(m) = &member {
                m.release();
            }
            let summary = result?;
            let assigned = member.as_ref().map_or(0, |m| m.assigned().len());
            if summary.handovers > 0 {
                METRICS.rebalances.inc();
                status::rebalanced(assigned);
            }
            let again = summary.handovers > 0 && !*shutdown.borrow();
            if again {
                rebalance = tracing::info_span!(
                    "rebalance",
                    assigned,
                    held = tracing::field::Empty,
                    generation = tracing::field::Empty
                );
            }
            total.absorb(summary);
            if !again {
                return Ok(());
            }
            if let Some(m) = store.manifest()? {
                manifest = m;
            }
        }
    }
    .await;
    if matches!(result, Err(Error::Fenced(_))) {
        METRICS.fenced.inc();
    }
    let result = match result {
        Err(Error::Fenced(why)) if shared => taken_over(why, membership).await,
        other => other,
    };
    match result {
        Ok(()) => Ok(total),
        Err(e) => {
            *committed = matches!(store.manifest(), Ok(Some(m)) if m.epoch > start_epoch);
            if !matches!(e, Error::Aborted(_)) {
                membership.leave().await;
            }
            Err(e)
        }
    }
}

/// A run of a sharing instance whose commits were fenced: a stop when
/// another process took this instance's identity, else an aborted epoch
/// (while it was away, the instance that took its tasks over, or the
/// broker's transaction timeout, aborted its open transaction), after
/// which it joins again.
async fn taken_over(why: String, membership: &Membership) -> Result<()> {
    let Some(member) = membership.0.clone() else {
        return Err(Error::Fenced(why));
    };
    let twin = tokio::task::spawn_blocking(move || member.fenced_by_twin(TWIN_WAIT))
        .await
        .unwrap_or(true);
    Err(if twin {
        Error::Fenced(why)
    } else {
        tracing::debug!("fenced: {why}");
        Error::Aborted(
            "this instance's commits were fenced, and no other process holds its identity: its open transaction was aborted while it was away (stopped, paused or cut off), by the instance that took over its tasks or by the broker once transaction.timeout.ms passed; it joins the group again and redoes the epoch".into(),
        )
    })
}

/// How long a fenced instance waits at the least for the group to say
/// whether another process took its identity (the group tells a replaced
/// static member at its next heartbeat).
const TWIN_WAIT: Duration = Duration::from_secs(3);

/// Runs `f` off the async runtime.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> Result<R> + Send + 'static) -> Result<R> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::State(format!("a blocking task failed: {e}")))?
}

/// The shards of keyed state among the application's instances, their
/// changelog and repartition topic made ready; `None` when the commit
/// point keeps the state of one instance.
async fn prepare_shards(
    commit: Arc<dyn weir_core::commit::CommitPoint>,
    source: Arc<dyn crate::stage::SourceAdmin>,
    key_groups: u16,
) -> Result<Option<Shards>> {
    blocking(move || {
        let Some(count) = commit.shards(key_groups)? else {
            return Ok(None);
        };
        Ok(source.repartition(count)?.map(|topic| Shards {
            topic,
            count,
            held: Default::default(),
        }))
    })
    .await
}

/// Tells the status what the group is now, off the run's path (describing
/// the group is a round trip to the broker, and reading the generation
/// waits on librdkafka): again every half second, for ten seconds at most,
/// until the broker lists every member with tasks, as it may answer in the
/// middle of a rebalance. A later call, or the member's end, stops it.
fn show_group(member: &Member, source: &Arc<dyn crate::stage::SourceAdmin>, instance: &str) {
    static LATEST: AtomicU64 = AtomicU64::new(0);
    let ask = LATEST.fetch_add(1, Ordering::Relaxed) + 1;
    let (member, source, instance) = (member.clone(), source.clone(), instance.to_owned());
    // A thread of its own: a describe that hangs holds up no runtime, nor
    // the process's exit.
    let spawned = std::thread::Builder::new()
        .name("weir-group-view".into())
        .spawn(move || {
            for _ in 0..20 {
                if LATEST.load(Ordering::Relaxed) != ask || !member.usable() {
                    return;
                }
                let asked_ms = store::now_ms();
                let generation = member.generation();
                let (members, error) = match source.members() {
                    Ok(members) => (members, None),
                    Err(e) => (Vec::new(), Some(e.to_string())),
                };
                let members: Vec<_> = members
                    .into_iter()
                    .map(|m| status::MemberView {
                        this: m.instance() == Some(instance.as_str()),
                        instance: m.instance().map(str::to_owned),
                        address: m.http(),
                        host: m.host,
                        tasks: m.tasks,
                    })
                    .collect();
                let settled = error.is_none()
                    && members.iter().any(|m| m.this)
                    && members.iter().all(|m| !m.tasks.is_empty());
                status::group(status::GroupView {
                    id: member.group(),
                    generation,
                    time_ms: asked_ms,
                    members,
                    error,
                });
                if settled {
                    return;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
    if let Err(e) = spawned {
        tracing::debug!("cannot start the thread that reads the group for the status: {e}");
    }
}

/// The process's member of the group, joined (and admitted) unless it
/// already is one that can go on.
async fn join(
    membership: &mut Membership,
    source: &Arc<dyn crate::stage::SourceAdmin>,
    instance: &str,
    shared: bool,
) -> Result<Option<Member>> {
    if let Some(m) = &membership.0 {
        if m.usable() {
            return Ok(Some(m.clone()));
        }
        membership.leave().await;
    }
    let (source, id) = (source.clone(), instance.to_owned());
    let member = blocking(move || admission::join_group(&*source, &id, shared)).await?;
    membership.0.clone_from(&member);
    Ok(member)
}

/// Waits, holding nothing, until the group gives this instance something
/// (a run that ends in a handover), a shutdown is asked for, or, in a
/// bounded run, `until_idle` passed.
async fn idle(
    member: Option<&Member>,
    until_idle: Option<Duration>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<RunSummary> {
    tracing::info!(
        "the consumer group gave this instance nothing to hold; waiting for a rebalance"
    );
    let ends = until_idle.map(|d| tokio::time::Instant::now() + d);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        if *shutdown.borrow() {
            return Ok(RunSummary::default());
        }
        if ends.is_some_and(|t| tokio::time::Instant::now() >= t) {
            tracing::info!("nothing to hold for the bounded run's idle time; ending");
            return Ok(RunSummary::default());
        }
        if let Some(m) = member {
            m.check()?;
            if !m.assigned().is_empty() {
                return Ok(RunSummary {
                    handovers: 1,
                    ..RunSummary::default()
                });
            }
        }
        tokio::select! {
            _ = tick.tick() => {}
            r = shutdown.changed() => if r.is_err() {
                return Ok(RunSummary::default());
            },
        }
    }
}
