//! No exchange: an unkeyed pipeline's task writes straight to its own sink
//! output, which its barrier flushes.

use weir_core::{Record, Result};

use super::Exchange;
use crate::stage::{FlushedSink, SinkStage};

/// Writes records straight to the task's sink output.
pub(crate) struct Direct<T> {
    pub(crate) sink: SinkStage<Record<(), T>>,
}

impl<T: Send + 'static> Exchange<T> for Direct<T> {
    fn push(&mut self, record: Record<(), T>) -> Result<()> {
        self.sink.write(&record)
    }

    fn watermark(&mut self, _watermark: i64) -> Result<()> {
        Ok(())
    }

    fn flush_pending(&mut self) -> Result<()> {
        Ok(())
    }

    fn barrier(&mut self, _epoch: u64) -> Result<Vec<FlushedSink>> {
        Ok(vec![self.sink.flushed()?])
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}
