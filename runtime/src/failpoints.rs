//! Every named crash point of the commit and recovery paths, in one place.
//!
//! Compiled in only with the `failpoints` feature. A test arms one with the
//! environment variable `FAILPOINTS`, e.g. `FAILPOINTS=after-state-batch=return`
//! (or `2*off->return` to pass it twice first); when it triggers, the process
//! aborts on the spot, as a power cut or `kill -9` would stop it.

/// After the epoch's sink output is flushed and fsynced, before the commit
/// batch. Recovery must truncate that output (I1, I2).
pub const AFTER_SINK_FLUSH: &str = "after-sink-flush";
/// After the commit batch is written, before anything else (retained
/// checkpoint, next epoch). Recovery must resume exactly there (I1).
pub const AFTER_STATE_BATCH: &str = "after-state-batch";
/// Kafka mode: the epoch's output, changelog and offsets are in the open
/// transaction, which has not committed. Recovery: it is aborted, and the
/// epoch is redone from the previous offsets.
pub const BEFORE_TXN_COMMIT: &str = "before-txn-commit";
/// Kafka mode: the transaction committed, RocksDB has not applied the
/// epoch. Recovery rolls the state forward from the changelog.
pub const AFTER_TXN_COMMIT: &str = "after-txn-commit";
/// In the middle of recovery: after the sinks were truncated, before the
/// sources are opened; in Kafka mode, after part of the changelog was
/// applied. Running recovery again must end in the same place (I3).
pub const MID_RECOVERY: &str = "mid-recovery";
/// During replay, after the restored state was prepared, before it replaces
/// the live state (I3 for replay).
pub const MID_REPLAY: &str = "mid-replay";

/// While a complete replay replaces the live state: after the old state is
/// removed, before the new one is renamed into place. The next start must
/// finish the swap, never start empty (I3).
pub const MID_REPLAY_SWAP: &str = "mid-replay-swap";

/// Kafka mode: after each batch of changelog records a restore applies.
/// Not a crash point: armed with a delay (`restore-batch=sleep(500)`), it
/// stretches a restore so that a test can rebalance in the middle of one.
pub const RESTORE_BATCH: &str = "restore-batch";

/// All crash points, for documentation and tests.
pub const ALL: &[&str] = &[
    AFTER_SINK_FLUSH,
    BEFORE_TXN_COMMIT,
    AFTER_TXN_COMMIT,
    AFTER_STATE_BATCH,
    MID_RECOVERY,
    MID_REPLAY,
    MID_REPLAY_SWAP,
];

/// Aborts the process if crash point `name` is armed (a no-op without the
/// `failpoints` feature).
#[inline]
pub fn crash_point(name: &str) {
    #[cfg(feature = "failpoints")]
    fail::fail_point!(name, |_| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "weir: crash point `{name}` reached: aborting"
        );
        std::process::abort()
    });
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// Waits at point `name` if it is armed with `sleep(ms)` (a no-op without
/// the `failpoints` feature).
#[inline]
pub fn pause_point(name: &str) {
    #[cfg(feature = "failpoints")]
    fail::fail_point!(name);
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}
