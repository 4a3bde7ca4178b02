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
    /// Times the consumer group moved tasks and the instance went on with
    /// what it assigned next (each such run ends with a commit).
    pub handovers: u64,
    /// Per committed epoch: from the moment every task acknowledged its
    /// barrier (the epoch's writes are handed over) to the commit being
    /// durable. The checkpoint's own cost.
    pub commit_times: crate::Histogram,
    /// Per committed epoch: from the barrier's request to every task's
    /// acknowledgement, i.e. how long the records queued before the barrier
    /// took to be processed.
    pub align_times: crate::Histogram,
}

impl RunSummary {
    /// Adds a later run of the same process (after a handover) to this one.
    pub(crate) fn absorb(&mut self, later: RunSummary) {
        self.commits += later.commits;
        self.last_epoch = self.last_epoch.max(later.last_epoch);
        self.records_read += later.records_read;
        self.skipped += later.skipped;
        self.handovers += later.handovers;
        self.commit_times.merge(&later.commit_times);
        self.align_times.merge(&later.align_times);
    }
}
