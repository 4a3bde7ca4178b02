//! Every instance of an application is a member of its consumer group,
//! named by the instance id its state directory keeps, against the real
//! broker that `dev/kafka` runs; Kafka's own `kafka-consumer-groups` and
//! `kafka-transactions` are the witnesses. Exactly-once instances share
//! the application's partitions and the shards of its keyed state, and
//! hand them over on rebalances; a local-mode application runs as one
//! instance: a second one is refused whatever its state directory, and a
//! consumer that takes its partitions stops it. A restart after `kill -9`
//! takes its own place back at once.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::kafka::{
    bootstrap, committed_counts, dev_kafka, first_part, group_members, input_topic, produce, tool,
    unique, wait_for_group_at_end, wait_for_members, wordcount_idle, GroupMember, Parts, BIN,
};
use common::KillOnDrop;

/// `kafka_to_files` (local mode) reading `topic` as application `app`,
/// bounded by `--until-idle-ms` when `idle_ms` is given.
fn to_files(topic: &str, app: &str, out: &Path, state: &Path, idle_ms: Option<u64>) -> Command {
    let mut c = Command::new(BIN);
    c.arg("run")
        .args(["--brokers", bootstrap(), "--input-topic", topic])
        .args([
            "--application-id",
            app,
            "--set",
            "checkpoint.interval_ms=50",
        ])
        .arg("--output")
        .arg(out)
        .arg("--state")
        .arg(state)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    if let Some(ms) = idle_ms {
        c.args(["--until-idle-ms", &ms.to_string()]);
    }
    c
}

/// The instance id `state` keeps.
fn instance_of(state: &Path) -> String {
    std::fs::read_to_string(state.join("instance"))
        .expect("the state directory's instance id")
        .trim()
        .to_owned()
}

fn refused(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    err
}

/// One member per instance, named `<app>-<instance id>` with client id
/// `weir-<instance id>`, holding every partition (as `offsets show` says
/// too); a second local-mode instance on another state directory is
/// refused naming the first, and creates nothing, and an exactly-once one
/// is refused at its join; `kill -9` and a restart on the
/// same directory takes the dead member's place at once (no wait for its
/// session to time out) and finishes exactly once; a clean stop leaves the
/// group. The transactions of an exactly-once instance are named
/// `<app>-<instance id>`.
#[test]
fn an_application_runs_as_one_member_per_instance_and_a_restart_takes_its_place_back() {
    let d = common::dirs(1, 200_000, 171);
    let (topic, _) = input_topic(&d);
    let app = unique("group-app");
    let first = common::spawn(to_files(&topic, &app, &d.output, &d.state, None));
    let mut first = KillOnDrop(first);
    let members = wait_for_members(&app, &mut first, |m| m.len() == 1 && m[0].partitions == 4);
    let id = instance_of(&d.state);
    assert_eq!(
        members,
        vec![GroupMember {
            instance: format!("{app}-{id}"),
            client: format!("weir-{id}"),
            partitions: 4,
        }]
    );

    // `offsets show` names the owner of every partition and the members.
    let mut show = Command::new(BIN);
    show.args([
        "offsets",
        "show",
        "--brokers",
        bootstrap(),
        "--input-topic",
        &topic,
    ])
    .args(["--application-id", &app, "--output"])
    .arg(&d.output)
    .arg("--state")
    .arg(&d.state);
    let shown = show.output().expect("offsets show");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{text}");
    let owned = text
        .lines()
        .filter(|l| l.starts_with(&topic) && l.ends_with(&format!("weir-{id}")))
        .count();
    assert_eq!(owned, 4, "{text}");
    assert!(
        text.lines().any(|l| l.starts_with(&format!("{app}-{id}-"))
            && l.contains(&format!("weir-{id}"))
            && l.ends_with(
                &(0..4)
                    .map(|p| format!("{topic}-{p}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
        "{text}"
    );

    let other_state = d.state.with_file_name("state-2");
    let other_out = d.output.with_file_name("output-2");
    let err = refused(&mut to_files(
        &topic,
        &app,
        &other_out,
        &other_state,
        Some(500),
    ));
    assert!(
        err.contains("refused") && err.contains(&format!("weir-{id}")),
        "{err}"
    );
    let counts = create_output_topic();
    assert!(
        !other_state.exists() && !other_out.exists(),
        "a refused instance created its state or output directory"
    );
    // An exactly-once instance of the same application would share out
    // the partitions with another assignor: refused at its join, and the
    // first keeps everything.
    let err = refused(&mut wordcount_idle(
        &topic,
        &counts,
        &app,
        &d.state.with_file_name("state-eos-beside"),
        Some(500),
    ));
    assert!(
        err.contains("another assignor") && err.contains("--application-id"),
        "{err}"
    );
    wait_for_members(&app, &mut first, |m| m.len() == 1 && m[0].partitions == 4);

    // A restart on the same directory replaces its dead member at once: were
    // it a new member, the dead one would hold the partitions for its
    // session, and the run would be refused.
    let _ = first.0.kill();
    let _ = first.0.wait();
    common::run_ok(&mut to_files(&topic, &app, &d.output, &d.state, Some(1500)));
    assert_eq!(instance_of(&d.state), id, "the instance id changed");
    common::verify_exactly_once(&d.input, &d.output);
    assert_eq!(
        group_members(&app),
        Vec::new(),
        "a clean stop left a member"
    );

    // Exactly-once: the instance's transactions carry its id.
    let eos_app = unique("group-eos");
    let eos_state = d.state.with_file_name("state-eos");
    common::run_ok(&mut wordcount_idle(
        &topic,
        &counts,
        &eos_app,
        &eos_state,
        Some(1000),
    ));
    let listed = tool(
        &[
            "kafka-transactions",
            "--bootstrap-server",
            bootstrap(),
            "list",
        ],
        None,
    );
    let txn = format!("{eos_app}-{}", instance_of(&eos_state));
    assert!(
        listed
            .lines()
            .any(|l| l.split_whitespace().next() == Some(&txn)),
        "no transactional id {txn} in:\n{listed}"
    );
}

/// A consumer of another kind that joins the group and keeps partitions
/// (Kafka's console consumer) stops the running instance, naming why, and
/// nothing it read after that is committed: once the consumer left, a
/// restart finishes the input exactly once.
#[test]
fn a_consumer_that_takes_partitions_mid_run_stops_the_instance_with_nothing_doubled() {
    let d = common::dirs(2, 100_000, 172);
    let files = common::input_files(&d);
    let topic = common::kafka::create_topic("group-taken", 4);
    produce(&topic, &files[0]);
    let app = unique("group-taken");
    let log = d.state.with_file_name("first.log");
    let mut cmd = to_files(&topic, &app, &d.output, &d.state, None);
    cmd.stderr(std::fs::File::create(&log).expect("log file"));
    let mut first = KillOnDrop(cmd.stdout(Stdio::null()).spawn().expect("spawn"));
    wait_for_members(&app, &mut first, |m| m.len() == 1 && m[0].partitions == 4);
    let mut console = KillOnDrop(
        Command::new(dev_kafka())
            .args(["tool", "kafka-console-consumer", "--bootstrap-server"])
            .args([bootstrap(), "--topic", &topic, "--group", &app])
            .args([
                "--consumer-property",
                "partition.assignment.strategy=org.apache.kafka.clients.consumer.CooperativeStickyAssignor",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the console consumer"),
    );
    wait_for_members(&app, &mut first, |m| m.len() == 2);
    // The instance notices at its next commit (of the records that arrive
    // now) and gives the partitions time to come back before it stops.
    produce(&topic, &files[1]);
    let status = first.0.wait().expect("wait");
    let err = std::fs::read_to_string(&log).expect("log");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("taken from this instance") && err.contains("another consumer"),
        "{err}"
    );
    let pid = console.0.id().to_string();
    common::run_ok(Command::new("kill").args(["-TERM", &pid]));
    let _ = console.0.wait();
    common::run_ok(&mut to_files(&topic, &app, &d.output, &d.state, Some(1500)));
    common::verify_exactly_once(&d.input, &d.output);
}

fn create_output_topic() -> String {
    common::kafka::create_topic("group-counts", 4)
}

/// The partitions an exactly-once word count's member holds when it holds
/// everything: the input's 4 and the 8 shards of its repartition topic
/// (`key_groups=16`: one changelog partition per key group, up to 8).
const ALL_PARTITIONS: usize = 12;

/// An exactly-once word count instance of `app` on `state`, running until
/// stopped, its log in `log` beside `state` (shown if the test fails).
fn instance(
    input: &str,
    output: &str,
    app: &str,
    state: &Path,
    log: &str,
) -> (KillOnDrop, common::LogOnFailure) {
    instance_with(input, output, app, state, log, &[])
}

/// [`instance`], with more variables in its environment.
fn instance_with(
    input: &str,
    output: &str,
    app: &str,
    state: &Path,
    log: &str,
    env: &[(&str, &str)],
) -> (KillOnDrop, common::LogOnFailure) {
    let log = state.with_file_name(log);
    let mut cmd = wordcount_idle(input, output, app, state, None);
    cmd.stderr(std::fs::File::create(&log).expect("log file"))
        .env("RUST_LOG", "info")
        .envs(env.iter().copied());
    (
        KillOnDrop(cmd.stdout(Stdio::null()).spawn().expect("spawn")),
        common::LogOnFailure(log),
    )
}

/// Stops `p` with SIGTERM and checks that it exits 0.
fn stop_cleanly(p: &mut KillOnDrop) {
    let pid = p.0.id().to_string();
    common::run_ok(Command::new("kill").args(["-TERM", &pid]));
    assert!(p.0.wait().expect("wait").success());
}

/// Two exactly-once instances, each on its own state directory, share one
/// application: the second joins while the first has transactions open,
/// each holds input partitions or shards (`kafka-consumer-groups` is the
/// witness), records whose key group the other instance holds go through
/// `<app>-repartition` inside the epoch's transaction, and a clean stop
/// (SIGTERM) of one hands everything to the other at once. Read
/// `read_committed`, every count is there exactly once.
#[test]
fn two_instances_share_an_application_and_hand_over_on_a_clean_stop_exactly_once() {
    const WORDS: usize = 150_000;
    let d = common::dirs(3, WORDS, 174);
    let Parts {
        files,
        input,
        output,
        app,
    } = first_part(&d, "group-share");
    // Both serve HTTP: the broker's view is checked against the first's
    // metrics, and each answers queries of the key groups it holds.
    // Every checkpoint is retained, so that the second instance, however
    // few epochs it commits, has one to be refused a replay from.
    let served = |state: &Path, log: &str| {
        let env = [
            ("WEIR_HTTP__LISTEN", "127.0.0.1:0"),
            ("WEIR_CHECKPOINT__RETAIN_EVERY", "1"),
        ];
        instance_with(&input, &output, &app, state, log, &env)
    };
    let (mut first, _first_log) = served(&d.state, "first.log");
    let metrics = common::http::serving(&d.state.with_file_name("first.log"), &mut first.0);
    wait_for_members(&app, &mut first, |m| {
        m.len() == 1 && m[0].partitions == ALL_PARTITIONS
    });
    let second_state = d.state.with_file_name("state-2");
    let (mut second, _second_log) = served(&second_state, "second.log");
    let second_http = common::http::serving(&d.state.with_file_name("second.log"), &mut second.0);
    let shared = wait_for_members(&app, &mut second, |m| {
        m.len() == 2 && m.iter().all(|m| m.partitions > 0)
    });
    assert_eq!(
        shared.iter().map(|m| m.partitions).sum::<usize>(),
        ALL_PARTITIONS,
        "{shared:?}"
    );
    produce(&input, &files[1]);
    wait_for_group_at_end(&app, &input, &mut first);
    // The group moved tasks from the first (a rebalance it counted), and
    // the input partitions it holds (range: 2 of 4) are read to their last
    // stable offset; those it handed over left its metrics.
    let scraped = common::http::scrape_until(metrics, &mut first.0, "its lag at 0", |s| {
        let held = s
            .samples
            .iter()
            .filter(|m| m.metric == "weir_consumer_lag_records")
            .filter(|m| m.labels.get("topic") == Some(&input))
            .count();
        held == 2
            && common::http::total(s, "weir_consumer_lag_records", Some(("topic", &input))) == 0.0
    });
    assert!(common::http::total(&scraped, "weir_rebalances_total", None) >= 1.0);
    // Its log shows the rebalance as a span: the generation it moved to,
    // and the tasks held after it.
    let log = std::fs::read_to_string(d.state.with_file_name("first.log")).expect("log");
    assert!(
        log.lines().any(|l| l.contains("rebalance{")
            && l.contains("generation=")
            && l.contains("rebalanced: this instance holds 2 task(s)")),
        "no rebalance span in the log: {log}"
    );
    assert!(
        common::http::total(
            &scraped,
            "weir_checkpoints_total",
            Some(("result", "committed"))
        ) > 0.0
    );
    let forwarded = common::kafka::group_offsets(&app, &format!("{app}-repartition"));
    assert!(
        forwarded.values().any(|(_, end)| *end > 0),
        "nothing went through the repartition topic: {forwarded:?}"
    );
    // Queried by word, the first answers the committed counts of the key
    // groups it holds, and sends the others to the instance that holds
    // them, by the address it advertises in the group: which answers them.
    let so_far = common::expected_counts_of(&[&files[0], &files[1]]);
    let mut words: Vec<&String> = so_far.keys().collect();
    words.sort();
    let (mut here, mut elsewhere) = (0, 0);
    let committed_count = |body: &str, word: &str| {
        let value: serde_json::Value = serde_json::from_str(body).expect("JSON");
        let n = value["value"].as_u64().expect("a count");
        assert!(n > 0 && n <= so_far[word], "{word}: {body}");
    };
    for word in words.iter().step_by(words.len() / 40) {
        let path = format!("/api/state/count/{word}");
        let (code, body) = common::http::get(metrics, &path);
        match code {
            200 => {
                committed_count(&body, word);
                here += 1;
            }
            404 if body.contains("another instance") => {
                // The group names the holder: the second instance, at its address.
                let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
                assert_eq!(
                    answer["owner"]["instance"],
                    instance_of(&second_state),
                    "{body}"
                );
                assert_eq!(
                    answer["owner"]["address"],
                    second_http.to_string(),
                    "{body}"
                );
                let (code, body) = common::http::get(second_http, &path);
                assert_eq!(code, 200, "{word} at the second: {body}");
                committed_count(&body, word);
                elsewhere += 1;
            }
            _ => panic!("{word}: {code} {body}"),
        }
    }
    assert!(
        here > 0 && elsewhere > 0,
        "{here} here, {elsewhere} elsewhere"
    );
    // The second's status shows the group as the broker describes it:
    // both instances, each with its tasks and the address it serves on.
    let status = common::http::status_until(second_http, &mut second.0, "both members", |s| {
        s["group"]["members"].as_array().is_some_and(|m| {
            m.len() == 2
                && m.iter()
                    .all(|m| m["tasks"].as_array().is_some_and(|t| !t.is_empty()))
        })
    });
    let group = &status["group"];
    assert_eq!(group["id"], app.as_str(), "{group}");
    assert!(
        group["generation"].as_i64().is_some_and(|g| g >= 1),
        "{group}"
    );
    let members = group["members"].as_array().expect("members");
    for (state, address, this) in [
        (&d.state, metrics.to_string(), false),
        (&second_state, second_http.to_string(), true),
    ] {
        let m = members
            .iter()
            .find(|m| m["instance"] == instance_of(state).as_str())
            .unwrap_or_else(|| panic!("{} is not listed: {group}", state.display()));
        assert_eq!(m["address"], address.as_str(), "{group}");
        assert_eq!(m["this"], this, "{group}");
    }
    stop_cleanly(&mut second);
    wait_for_members(&app, &mut first, |m| {
        m.len() == 1 && m[0].partitions == ALL_PARTITIONS
    });
    produce(&input, &files[2]);
    wait_for_group_at_end(&app, &input, &mut first);
    stop_cleanly(&mut first);
    let expected = common::expected_counts(&d.input);
    let records = common::verify_counts(&expected, committed_counts(&output));
    assert_eq!(records, WORDS as u64);

    // The second instance's state is only its shards': a new timeline
    // from it (a replay, a reset that keeps the state) would lose the
    // others' counts, and is refused with nothing moved.
    let ended = common::kafka::group_offsets(&app, &input);
    let with_state = |args: &[&str]| {
        let mut c = Command::new(common::kafka::WC_BIN);
        c.args(args)
            .args(["--brokers", bootstrap(), "--input-topic", &input])
            .args(["--output-topic", &output, "--application-id", &app])
            .args(["--set", "key_groups=16", "--state"])
            .arg(&second_state);
        c
    };
    let err = refused(&mut with_state(&[
        "offsets",
        "reset",
        "--to-earliest",
        "--keep-state",
    ]));
    assert!(
        err.contains("holds only part of the application's keyed state")
            && err.contains("--reset-state"),
        "{err}"
    );
    let checkpoint = common::first_retained(&second_state);
    let list = common::cli_output(&["checkpoints", "list", "--state"], &second_state);
    assert!(list.contains(" shards"), "{list}");
    let err = refused(&mut with_state(&["replay", "--from", &checkpoint]));
    assert!(
        err.contains(&format!("replay refused: checkpoint {checkpoint} of"))
            && err.contains("holds only part"),
        "{err}"
    );
    assert_eq!(common::kafka::group_offsets(&app, &input), ended);
}

/// An exactly-once instance stopped (SIGSTOP) past its session timeout
/// loses its place: another instance, on a state directory of its own,
/// takes every partition and shard once the group has let it go, restores
/// the state from the changelog and reads on from the group's offsets.
/// Continued (SIGCONT), the first commits nothing of what it held (it lost
/// its membership, and the offsets of any commit it tried would carry a
/// generation the group no longer knows), joins again and shares the
/// application; `read_committed`, every count is there exactly once.
#[test]
fn an_instance_stopped_past_its_session_is_replaced_and_commits_nothing_once_continued() {
    const WORDS: usize = 100_000;
    let d = common::dirs(2, WORDS, 173);
    let Parts {
        files,
        input,
        output,
        app,
    } = first_part(&d, "group-stop");
    let log = d.state.with_file_name("first.log");
    let _trace = common::LogOnFailure(log.clone());
    let mut cmd = wordcount_idle(&input, &output, &app, &d.state, None);
    cmd.stderr(std::fs::File::create(&log).expect("log file"))
        .env("RUST_LOG", "info,weir_connectors=debug")
        .env("WEIR_HTTP__LISTEN", "127.0.0.1:0");
    let mut first = KillOnDrop(cmd.stdout(Stdio::null()).spawn().expect("spawn"));
    let metrics = common::http::serving(&log, &mut first.0);
    wait_for_group_at_end(&app, &input, &mut first);
    let pid = first.0.id().to_string();
    common::run_ok(Command::new("kill").args(["-STOP", &pid]));
    // The group's coordinator lets the silent member go after its session.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !group_members(&app).is_empty() {
        assert!(Instant::now() < deadline, "the stopped member never left");
        std::thread::sleep(Duration::from_millis(500));
    }
    let second_state = d.state.with_file_name("state-2");
    let second_log = d.state.with_file_name("second.log");
    let _second_trace = common::LogOnFailure(second_log.clone());
    let mut cmd = wordcount_idle(&input, &output, &app, &second_state, None);
    cmd.stderr(std::fs::File::create(&second_log).expect("log file"));
    let mut second = KillOnDrop(cmd.stdout(Stdio::null()).spawn().expect("spawn"));
    wait_for_members(&app, &mut second, |m| {
        m.len() == 1 && m[0].partitions == ALL_PARTITIONS
    });
    produce(&input, &files[1]);
    common::run_ok(Command::new("kill").args(["-CONT", &pid]));
    wait_for_members(&app, &mut first, |m| {
        m.len() == 2 && m.iter().all(|m| m.partitions > 0)
    });
    wait_for_group_at_end(&app, &input, &mut second);
    let scraped = common::http::scrape(metrics);
    stop_cleanly(&mut first);
    stop_cleanly(&mut second);
    // Its commits were refused: by its lost membership, or by the fencing
    // of its transactions when the second took its tasks over. Its
    // metrics count the aborted epoch, and the fencing where it was one.
    let err = std::fs::read_to_string(&log).expect("log");
    let lost = err.contains("membership of the consumer group was lost");
    let fenced = err.contains("its open transaction was aborted while it was away");
    assert!(lost || fenced, "{err}");
    let total = |name, label| common::http::total(&scraped, name, label);
    assert!(total("weir_checkpoints_total", Some(("result", "aborted"))) >= 1.0);
    assert_eq!(
        total("weir_producer_fenced_total", None) >= 1.0,
        fenced,
        "{err}"
    );
    let expected = common::expected_counts(&d.input);
    let records = common::verify_counts(&expected, committed_counts(&output));
    assert_eq!(records, WORDS as u64);
}

/// After `kill -9` of one of two exactly-once instances, the survivor takes
/// over the dead one's partitions and shards once the group let it go (its
/// session, 6 s), restores their state from the changelog, and finishes
/// the input: `read_committed`, every count is there exactly once. The
/// survivor aborts the dead instance's open transaction (fenced through
/// its transactional id) instead of waiting for the broker's timeout;
/// nothing it had not committed shows.
#[test]
fn the_survivor_of_two_instances_takes_over_after_kill_9_exactly_once() {
    const WORDS: usize = 150_000;
    let d = common::dirs(3, WORDS, 175);
    let Parts {
        files,
        input,
        output,
        app,
    } = first_part(&d, "group-failover");
    let spawn = |state: &Path, log: &str| instance(&input, &output, &app, state, log);
    let (mut first, _first_log) = spawn(&d.state, "first.log");
    let second_state = d.state.with_file_name("state-2");
    let (mut second, _second_log) = spawn(&second_state, "second.log");
    wait_for_members(&app, &mut first, |m| {
        m.len() == 2 && m.iter().all(|m| m.partitions > 0)
    });
    // Killed while it reads the second part, transactions open.
    produce(&input, &files[1]);
    let _ = second.0.kill();
    let _ = second.0.wait();
    let killed = Instant::now();
    wait_for_members(&app, &mut first, |m| {
        m.len() == 1 && m[0].partitions == ALL_PARTITIONS
    });
    produce(&input, &files[2]);
    wait_for_group_at_end(&app, &input, &mut first);
    eprintln!(
        "the survivor held everything and finished the input {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    stop_cleanly(&mut first);
    let expected = common::expected_counts(&d.input);
    let records = common::verify_counts(&expected, committed_counts(&output));
    assert_eq!(records, WORDS as u64);
}

/// A rebalance while an instance restores: the first instance builds the
/// state alone and stops; a second, on an empty state directory, holds
/// everything and restores every shard from the changelog (slowed by the
/// `restore-batch` point, 600 ms a batch of 10,000 records); a third joins
/// while that restore is under way, and the group asks the restoring
/// instance for tasks. It finishes the restore, commits and hands them over
/// (a task never changes hands mid-epoch), the two share the application,
/// and `read_committed`, every count is there exactly once.
#[cfg(feature = "failpoints")]
#[test]
fn a_rebalance_while_an_instance_restores_moves_its_tasks_exactly_once() {
    const WORDS: usize = 600_000;
    let d = common::dirs(2, WORDS, 178);
    let Parts {
        files,
        input,
        output,
        app,
    } = first_part(&d, "group-restore");
    let spawn = |state: &Path, log: &str| instance(&input, &output, &app, state, log);
    let (mut first, _first_log) = spawn(&d.state, "first.log");
    wait_for_group_at_end(&app, &input, &mut first);
    stop_cleanly(&mut first);
    let second_state = d.state.with_file_name("state-2");
    let (mut second, _second_log) = instance_with(
        &input,
        &output,
        &app,
        &second_state,
        "second.log",
        &[
            ("FAILPOINTS", "restore-batch=sleep(600)"),
            ("WEIR_HTTP__LISTEN", "127.0.0.1:0"),
        ],
    );
    let second_log = second_state.with_file_name("second.log");
    let restored = "rolled the state forward from the changelog";
    // The restore shows: its progress in the metrics and the status, and
    // the instance is not ready. More than two batches left (offsets count
    // transaction markers too): the restore lasts beyond the next looks.
    let addr = common::http::serving(&second_log, &mut second.0);
    common::http::scrape_until(addr, &mut second.0, "restoring", |s| {
        common::http::total(s, "weir_restore_remaining_records", None) > 20_000.0
            && common::http::total(s, "weir_restore_records_total", None) > 0.0
    });
    let (code, body) = common::http::get(addr, "/ready");
    assert_eq!(code, 503, "{body}");
    let (code, body) = common::http::get(addr, "/api/state/count/w1");
    assert!(code == 503 && body.contains("restoring"), "{code} {body}");
    let (_, body) = common::http::get(addr, "/api/status");
    let status: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(status["phase"], "restoring", "{body}");
    assert!(status["restore"]["done"].as_u64() > Some(0), "{body}");
    // It holds every task and restores them.
    wait_for_log(&second_log, "weir_runtime::instance: running", &mut second);
    let third_state = d.state.with_file_name("state-3");
    let (mut third, _third_log) = spawn(&third_state, "third.log");
    let shared = wait_for_members(&app, &mut third, |m| {
        m.len() == 2 && m.iter().all(|m| m.partitions > 0)
    });
    assert_eq!(
        shared.iter().map(|m| m.partitions).sum::<usize>(),
        ALL_PARTITIONS,
        "{shared:?}"
    );
    let log = std::fs::read_to_string(&second_log).expect("second's log");
    let at = |line: &str| {
        log.find(line)
            .unwrap_or_else(|| panic!("no `{line}` in:\n{log}"))
    };
    assert!(
        at("the consumer group asks for tasks this instance holds") < at(restored),
        "the group asked for tasks only after the restore (make the state larger):\n{log}"
    );
    let done = common::http::scrape_until(addr, &mut second.0, "restored", |s| {
        common::http::total(s, "weir_restore_remaining_records", None) == 0.0
    });
    assert!(common::http::total(&done, "weir_restore_records_total", None) > 20_000.0);
    produce(&input, &files[1]);
    wait_for_group_at_end(&app, &input, &mut third);
    stop_cleanly(&mut second);
    stop_cleanly(&mut third);
    let expected = common::expected_counts(&d.input);
    let records = common::verify_counts(&expected, committed_counts(&output));
    assert_eq!(records, WORDS as u64);
}

/// Waits until `log` has a line containing `text`, while `child` runs.
#[cfg(feature = "failpoints")]
fn wait_for_log(log: &Path, text: &str, child: &mut KillOnDrop) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = std::fs::read_to_string(log).unwrap_or_default();
        if now.contains(text) {
            return;
        }
        assert!(
            child.0.try_wait().expect("poll").is_none(),
            "the instance exited before its log said `{text}`"
        );
        assert!(Instant::now() < deadline, "no `{text}` in:\n{now}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An instance whose `key_groups` differs from the one the application's
/// instances committed with is refused before it commits anything: a key
/// would fall in another key group in each, and both would keep its state.
#[test]
fn an_instance_with_other_key_groups_is_refused_before_it_commits() {
    let d = common::dirs(1, 20_000, 177);
    let Parts {
        input, output, app, ..
    } = first_part(&d, "group-key-groups");
    common::assert_success(
        &wordcount_idle(&input, &output, &app, &d.state, Some(1500))
            .output()
            .expect("run"),
    );
    let before = common::kafka::group_offsets(&app, &input);
    let other = d.state.with_file_name("state-2");
    let mut cmd = wordcount_idle(&input, &output, &app, &other, Some(1500));
    cmd.args(["--set", "key_groups=32"]);
    let err = refused(&mut cmd);
    assert!(
        err.contains("key_groups differs") && err.contains("--set key_groups=16"),
        "{err}"
    );
    assert_eq!(common::kafka::group_offsets(&app, &input), before);
    let expected = common::expected_counts(&d.input);
    let records = common::verify_counts(&expected, committed_counts(&output));
    assert_eq!(records, 20_000);
}
