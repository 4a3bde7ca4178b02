//! The README's first command, `dev/demo`, end to end on a smaller input:
//! it generates words, runs the word count as they arrive with the status
//! page on, kills it with `kill -9` part-way, restarts it, and its own
//! independent count (awk) must find every count exactly once; then it
//! counts page views per window of event time, which awk must agree with.

use std::process::Command;

#[test]
fn the_demo_kills_and_restarts_the_word_count_and_finds_every_count_exactly_once() {
    let work = tempfile::tempdir().expect("tempdir");
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../dev/demo"))
        .env("WEIRDEV_DEMO_DIR", work.path())
        .env("WEIRDEV_DEMO_WORDS", "400000")
        // The binary this test run built (features and all): never rebuilt
        // under the other tests' feet.
        .env("WEIRDEV_DEMO_BIN", env!("CARGO_BIN_EXE_wordcount"))
        .env(
            "WEIRDEV_DEMO_PV_BIN",
            env!("CARGO_BIN_EXE_page_views_files"),
        )
        .output()
        .expect("dev/demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for line in [
        "status page: http://127.0.0.1:",
        "killed pid",
        "400000 output lines",
        "every count exactly once",
        "million words/s",
        "awk agrees: every window once",
    ] {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}\n{stderr}");
    }
}
