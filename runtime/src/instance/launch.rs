//! Launching a plan: recovery (the commit point first, then the sinks, then
//! the sources), the workers and source threads, and the coordinator until
//! the run ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use weir_core::keygroup::owned_range;
use weir_core::source::{DeadLetter, Forwarded};
use weir_core::{Codec, Error, Key, Result};

use crate::checkpoint::{Commit, Control, Coordinator, Retention, RunSummary};
use crate::exchange::{
    release_points, Backlog, Direct, Exchange, InMemory, Remote, Shard, ShardReader, Waits,
};
use crate::failpoints::{self, crash_point};
use crate::plan::{tasks_of, DirectJob, Job, JobEnv, KeyedJob};
use crate::recovery::{open_commit, resume_points, SinkRecovery};
use crate::stage::{BoxFuture, Metrics, SinkStage, SourceAdmin, StageInit};
use crate::task::layer::{Opened, OpenedLayer, WorkerEnv};
use crate::task::source::{spawn_source, Shared, SourceTask};
use crate::task::{Event, Events};

fn shared(
    env: &JobEnv,
    control: &Arc<Control>,
    commit: &dyn Commit,
    events: &Events,
    metrics: &Arc<Metrics>,
) -> Arc<Shared> {
    Arc::new(Shared {
        control: control.clone(),
        events: events.clone(),
        store: env.store.clone(),
        metrics: metrics.clone(),
        batch: env.config.batch_size,
        policy: env.config.on_bad_input,
        guarantee: env.config.guarantee,
        start_epoch: env.manifest.epoch,
        advisory: !commit.commits_group_offsets(),
        idle_after: (env.config.watermark.idle_ms > 0)
            .then(|| Duration::from_millis(env.config.watermark.idle_ms)),
    })
}

/// Opens each source task's dead-letter output, if the pipeline has one.
fn dead_letters(
    env: &JobEnv,
    tasks: &[String],
    truncate: &(dyn Fn(&str) -> Option<u64> + Sync),
) -> Result<Vec<Option<SinkStage<DeadLetter>>>> {
    tasks
        .iter()
        .enumerate()
        .map(|(i, task)| {
            let init = StageInit {
                task: task.clone(),
                worker: i,
                next_layer: None,
                groups: Vec::new(),
                key_groups: env.manifest.key_groups,
                truncate_to: truncate,
                settings: env.settings.clone(),
                layer: 0,
                remote: None,
                waits: None,
            };
            env.dead_letter.as_ref().map(|open| open(&init)).transpose()
        })
        .collect()
}

/// The source's tasks and the recovered commit point (see
/// [`open_commit`]): asked at once, as they are independent round trips
/// to the brokers. A failure to list the tasks is the one reported.
async fn tasks_and_commit(
    env: &mut JobEnv,
    admin: Arc<dyn SourceAdmin>,
) -> Result<(Vec<String>, Arc<dyn Commit>)> {
    let lister = admin.clone();
    let listing = tokio::task::spawn_blocking(move || tasks_of(&*lister));
    let listed = |joined: std::result::Result<Result<Vec<String>>, tokio::task::JoinError>| {
        joined.map_err(|e| Error::State(format!("listing the source's tasks failed: {e}")))?
    };
    if env.manifest.epoch == 0 {
        // Nothing committed yet: a missing input must not leave a changelog
        // (or anything else) behind, so the tasks are listed first.
        let tasks = listed(listing.await)?;
        return Ok((tasks, open_commit(env, admin).await?));
    }
    let commit = open_commit(env, admin).await;
    let tasks = listed(listing.await)?;
    Ok((tasks, commit?))
}

/// The coordinator of a run of `sources` source tasks and `workers` workers.
fn coordinator(
    env: &JobEnv,
    control: &Arc<Control>,
    commit: Arc<dyn Commit>,
    sources: usize,
    workers: usize,
    metrics: &Arc<Metrics>,
) -> Coordinator {
    Coordinator::new(
        &env.config,
        control.clone(),
        commit,
        Retention::new(env.store.clone(), &env.config.checkpoint),
        sources,
        workers,
        metrics.clone(),
        env.shutdown.clone(),
        env.manifest.epoch,
    )
    .with_member(env.member.clone())
    .with_progress(env.bounded)
}

impl<K: Key, T: Send + 'static, V: Codec + Send + 'static> Job for KeyedJob<K, T, V> {
    fn source(&self) -> Arc<dyn SourceAdmin> {
        self.side.clone()
    }

    fn keyed(&self) -> bool {
        true
    }

    fn run(&self, mut env: JobEnv) -> BoxFuture<'static, Result<RunSummary>> {
        let (side, split, tail) = (self.side.clone(), self.split.clone(), self.tail.clone());
        let layers = self.layers.clone();
        Box::pin(async move {
            let (listed, commit) = tasks_and_commit(&mut env, side.clone()).await?;
            let tasks = env.holdings.filter(listed.clone());
            let shards = env.holdings.shards.clone();
            // Holding every task and every shard, this instance is the
            // application's only one, and nobody forwards records to it: a
            // shard is read only up to its end, and not at all when nothing
            // is left there (one instance runs as fast as it would alone).
            let drain = tasks.len() == listed.len()
                && shards
                    .as_ref()
                    .is_some_and(|s| s.held.len() == usize::from(s.count));
            // Where each held shard ends now: its backlog, delivered
            // before anything of this run's own (see `Backlog`).
            let ends: BTreeMap<String, u64> = match &shards {
                Some(s) if !s.held.is_empty() => {
                    let (lister, held) = (side.clone(), s.held.iter().copied().collect::<Vec<_>>());
                    let ends = tokio::task::spawn_blocking(move || lister.shard_ends(&held))
                        .await
                        .map_err(|e| {
                            Error::State(format!("reading the shards' ends failed: {e}"))
                        })??;
                    ends.into_iter().map(|(n, end)| (s.task(n), end)).collect()
                }
                _ => BTreeMap::new(),
            };
            let held_shards: Vec<u16> = match &shards {
                Some(s) if drain => s
                    .held
                    .iter()
                    .copied()
                    .filter(|&n| {
                        let task = s.task(n);
                        let from = env.manifest.sources.get(&task).map_or(0, |p| p.position);
                        ends.get(&task).is_none_or(|end| *end > from)
                    })
                    .collect(),
                Some(s) => s.held.iter().copied().collect(),
                None => Vec::new(),
            };
            let sources = tasks.len() + held_shards.len();
            let workers = env.config.parallelism;
            // Where each shard read ends its backlog, for the workers after
            // a further exchange, which reach it as a source after the
            // layer before's workers (see `Held`).
            let from = |task: &str| env.manifest.sources.get(task).map_or(0, |p| p.position);
            let waits = match &shards {
                Some(s) => Waits {
                    count: s.count,
                    shards: held_shards
                        .iter()
                        .enumerate()
                        .map(|(j, &n)| {
                            let task = s.task(n);
                            let at = ends.get(&task).copied().unwrap_or(0).max(from(&task));
                            (n, (workers + j, at))
                        })
                        .collect(),
                },
                None => Waits::default(),
            };
            let key_groups = env.manifest.key_groups;
            let control = Arc::new(Control::new(env.manifest.epoch));
            let (events, mut rx) = mpsc::unbounded_channel();
            let metrics = Arc::new(Metrics::default());

            // What the run's shards held at its start comes first.
            let backlog = Backlog::new();
            // Records of shards held elsewhere go there, through exchange
            // `exchange`.
            let point = env.commit.clone();
            let remote_to = |exchange: u8| -> Result<Remote> {
                let (Some(s), Some(point)) = (&shards, &point) else {
                    return Err(Error::State(
                        "instances share keyed state only through a transactional commit point"
                            .into(),
                    ));
                };
                Ok(Remote::new(
                    s,
                    key_groups,
                    point.forwarder(&s.topic)?,
                    exchange,
                ))
            };
            let remote_to = shards.is_some().then_some(&remote_to);

            // Recovery, in order: sinks truncate, then sources seek.
            let mut handles = Vec::new();
            let recovery = SinkRecovery::new(&env);
            let truncate = |id: &str| recovery.truncate_to(id);
            // Of the workers of layer `layer`; `next_layer` is set by the caller.
            let inits = |layer: usize| {
                (0..workers)
                    .map(|w| StageInit {
                        task: match layer {
                            0 => format!("worker-{w}"),
                            n => format!("layer{n}-worker-{w}"),
                        },
                        worker: w,
                        next_layer: None,
                        groups: owned_range(w, workers, key_groups)
                            .filter(|g| env.holdings.holds_group(*g))
                            .collect(),
                        key_groups,
                        truncate_to: &truncate,
                        settings: env.settings.clone(),
                        layer: layer as u8,
                        remote: remote_to.map(|r| r as _),
                        waits: Some(&waits),
                    })
                    .collect::<Vec<_>>()
            };
            // The last layer first: each exchange reaches the layer after it.
            let batch = env.config.batch_size;
            let mut opened: Vec<Box<dyn OpenedLayer>> = Vec::new();
            for (n, layer) in layers.iter().enumerate().rev() {
                let inits = reaching(inits(n + 1), opened.last().map(|l| &**l));
                let layer = layer.open(&inits, &env.named, batch)?;
                drop(inits);
                opened.push(layer);
            }
            let inits = reaching(inits(0), opened.last().map(|l| &**l));
            let first = Opened::open(&tail, &inits, &env.named, batch, |_| None)?;
            drop(inits);
            let mut letters = dead_letters(&env, &tasks, &truncate)?.into_iter();
            recovery.discard_unopened()?;
            crash_point(failpoints::MID_RECOVERY);
            let cache_bytes = env.config.cache_mb.saturating_mul(1 << 20);
            let txs = first.senders().to_vec();
            let worker_env = WorkerEnv {
                db: env.store.db(),
                cache_bytes,
                events: events.clone(),
                policy: env.config.on_bad_input,
                metrics: metrics.clone(),
                released: control.watch_released(),
                overlaps: commit.overlaps(),
                requested: control.watch_requested(),
                start_epoch: env.manifest.epoch,
            };
            // Each input's own watermark only when every task is here:
            // records of another instance's tasks come through shards,
            // whose reads say nothing of them.
            let inputs = match held_shards.is_empty() && tasks.len() == listed.len() {
                true => tasks.iter().map(|t| Some(side.input_of(t))).collect(),
                false => vec![None; sources],
            };
            // A shard's records of each exchange go to the workers after it.
            let mut shard_outputs = Vec::new();
            if let Some(s) = &shards {
                for (j, &shard) in held_shards.iter().enumerate() {
                    let task = s.task(shard);
                    let mut to: Vec<Box<dyn Exchange<Forwarded>>> =
                        vec![Box::new(first.inlet(tasks.len() + j, key_groups, &task))];
                    for layer in opened.iter().rev() {
                        to.push(layer.inlet(workers + j, key_groups, &task));
                    }
                    shard_outputs.push(Shard { to, task });
                }
            }
            handles.extend(first.spawn(inputs, !layers.is_empty(), &worker_env));
            let last = opened.len();
            for (n, layer) in opened.into_iter().rev().enumerate() {
                let sources = workers + held_shards.len();
                handles.extend(layer.spawn(sources, n + 1 < last, &worker_env));
            }
            drop(worker_env);
            let shared = shared(&env, &control, &*commit, &events, &metrics);
            let mut threads = Vec::new();
            let resumes = resume_points(&env, &*side, &tasks)?;
            // A source task's records of shards held elsewhere go there.
            let remote = || -> Result<Option<Remote>> {
                match (&shards, remote_to) {
                    (Some(s), Some(to)) if s.held.len() < usize::from(s.count) => to(0).map(Some),
                    _ => Ok(None),
                }
            };
            // Every shard is counted in the backlog before any is read.
            let mut shard_tasks = Vec::new();
            for (&shard, output) in held_shards.iter().zip(shard_outputs) {
                let Some(s) = &shards else { break };
                let task = s.task(shard);
                let from = env.manifest.sources.get(&task).map(|p| p.position);
                // Where records an earlier run held wait for (see `Held`).
                let groups = (0..key_groups).filter(|g| g % s.count.max(1) == shard);
                let points = match layers.is_empty() {
                    true => Default::default(),
                    false => release_points(&env.store.db(), groups, from.unwrap_or(0))?,
                };
                let reader = ShardReader::new(
                    side.open_shard(shard, from, drain)?,
                    ends.get(&task).copied(),
                    &backlog,
                    points,
                );
                shard_tasks.push(SourceTask {
                    task,
                    reader: Box::new(reader),
                    output: Box::new(output),
                    finished: false,
                    watermark_delay: side.watermark_delay(),
                    dead_letter: None,
                    after: None,
                });
            }
            for t in shard_tasks {
                threads.push(spawn_source(t, shared.clone())?);
            }
            backlog.check();
            for (i, task) in tasks.iter().enumerate() {
                let exchange = InMemory::new(
                    i,
                    split.clone(),
                    txs.clone(),
                    env.config.batch_size,
                    key_groups,
                )
                .with_remote(remote()?);
                let t = SourceTask {
                    task: task.clone(),
                    reader: side.open(task, resumes.get(task))?,
                    output: Box::new(exchange),
                    finished: false,
                    watermark_delay: side.watermark_delay(),
                    dead_letter: letters.next().flatten(),
                    after: (!backlog.is_read()).then(|| backlog.clone()),
                };
                threads.push(spawn_source(t, shared.clone())?);
            }
            drop(txs);
            drop(events);
            let all_workers = workers * (1 + layers.len());
            let coordinator = coordinator(&env, &control, commit, sources, all_workers, &metrics);
            let result = coordinator.run(&mut rx, env.manifest.clone()).await;
            control.shutdown();
            finish_threads(threads).await;
            if result.is_ok() {
                for h in handles {
                    h.done
                        .await
                        .map_err(|e| Error::State(format!("a worker panicked: {e}")))?;
                }
                // A worker's error at close arrives after the coordinator stopped.
                if let Ok(Event::Failed(e)) = rx.try_recv() {
                    return Err(e);
                }
            } else {
                for h in &handles {
                    h.stop.abort();
                }
                // Gone before the run returns: a retry in this process
                // opens the store their state caches hold.
                for h in handles {
                    let _ = h.done.await;
                }
            }
            result
        })
    }
}

impl<T: Send + 'static> Job for DirectJob<T> {
    fn source(&self) -> Arc<dyn SourceAdmin> {
        self.side.clone()
    }

    fn keyed(&self) -> bool {
        false
    }

    fn run(&self, mut env: JobEnv) -> BoxFuture<'static, Result<RunSummary>> {
        let (side, open_sink) = (self.side.clone(), self.open_sink.clone());
        Box::pin(async move {
            if let Some((name, _)) = env.named.first() {
                return Err(Error::Config(format!(
                    "the named sink `{name}` is written by processors, and this pipeline has none; add a `key_by` and a `process`, or drop the named sink"
                )));
            }
            let (tasks, commit) = tasks_and_commit(&mut env, side.clone()).await?;
            let tasks = env.holdings.filter(tasks);
            let control = Arc::new(Control::new(env.manifest.epoch));
            let (events, mut rx) = mpsc::unbounded_channel();
            let metrics = Arc::new(Metrics::default());
            let recovery = SinkRecovery::new(&env);
            let truncate = |id: &str| recovery.truncate_to(id);
            let mut sinks = Vec::new();
            for (i, task) in tasks.iter().enumerate() {
                let init = StageInit {
                    task: task.clone(),
                    worker: i,
                    next_layer: None,
                    groups: Vec::new(),
                    key_groups: env.manifest.key_groups,
                    truncate_to: &truncate,
                    settings: env.settings.clone(),
                    layer: 0,
                    remote: None,
                    waits: None,
                };
                sinks.push(open_sink(&init)?);
            }
            let mut letters = dead_letters(&env, &tasks, &truncate)?.into_iter();
            recovery.discard_unopened()?;
            crash_point(failpoints::MID_RECOVERY);
            let shared = shared(&env, &control, &*commit, &events, &metrics);
            let mut threads = Vec::new();
            let resumes = resume_points(&env, &*side, &tasks)?;
            for (task, sink) in tasks.iter().zip(sinks) {
                let t = SourceTask {
                    task: task.clone(),
                    reader: side.open(task, resumes.get(task))?,
                    output: Box::new(Direct { sink }),
                    finished: false,
                    watermark_delay: None,
                    dead_letter: letters.next().flatten(),
                    after: None,
                };
                threads.push(spawn_source(t, shared.clone())?);
            }
            drop(events);
            let coordinator = coordinator(&env, &control, commit, tasks.len(), 0, &metrics);
            let result = coordinator.run(&mut rx, env.manifest.clone()).await;
            control.shutdown();
            finish_threads(threads).await;
            result
        })
    }
}

/// `inits` of workers whose exchange reaches the layer `next`, if any.
fn reaching<'a>(
    mut inits: Vec<StageInit<'a>>,
    next: Option<&'a dyn OpenedLayer>,
) -> Vec<StageInit<'a>> {
    for init in &mut inits {
        init.next_layer = next.map(|l| l.next_layer());
    }
    inits
}

async fn finish_threads(threads: Vec<std::thread::JoinHandle<()>>) {
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
}
