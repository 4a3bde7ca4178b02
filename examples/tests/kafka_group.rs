//! Every instance of an application is a member of its consumer group,
//! named by the instance id its state directory keeps, against the real
//! broker that `dev/kafka` runs; Kafka's own `kafka-consumer-groups` and
//! `kafka-transactions` are the witnesses. An application runs as one
//! instance: a second one is refused whatever its state directory, a
//! consumer that takes its partitions stops it, and a restart after
//! `kill -9` takes its own place back at once.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::kafka::{
    bootstrap, dev_kafka, group_members, input_topic, tool, unique, wait_for_members,
    wordcount_idle, GroupMember, BIN,
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
/// too); a second instance on
/// another state directory, in local mode or exactly-once, is refused
/// naming the first, and creates nothing; `kill -9` and a restart on the
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
    let err = refused(&mut wordcount_idle(
        &topic,
        &counts,
        &app,
        &other_state,
        Some(500),
    ));
    assert!(
        err.contains("refused") && err.contains(&format!("weir-{id}")),
        "{err}"
    );
    assert!(
        !other_state.exists() && !other_out.exists(),
        "a refused instance created its state or output directory"
    );

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
    common::kafka::produce(&topic, &files[0]);
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
    common::kafka::produce(&topic, &files[1]);
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
