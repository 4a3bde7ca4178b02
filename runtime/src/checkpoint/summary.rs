//! What a run reports at its end.

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Checkpoints committed by this run.
    pub commits: u64,
    /// The last committed epoch.
    pub last_epoch: u64,
    /// Records read from the sources.
    pub records_read: u64,
    /// Records skipped by the bad-input policy.
    pub skipped: u64,
    /// Per committed epoch: from the moment every task acknowledged its
    /// barrier (the epoch's writes are handed over) to the commit being
    /// durable. The checkpoint's own cost.
    pub commit_times: crate::Histogram,
    /// Per committed epoch: from the barrier's request to every task's
    /// acknowledgement, i.e. how long the records queued before the barrier
    /// took to be processed.
    pub align_times: crate::Histogram,
}
