//! The word count processor.

use weir_core::prelude::*;

/// Counts occurrences per word; emits the running count of each occurrence.
#[derive(Clone, Debug, Default)]
pub struct WordCount;

impl Processor for WordCount {
    type Key = String;
    type In = ();
    type Out = u64;

    async fn process(
        &mut self,
        rec: Record<String, ()>,
        ctx: &mut Context<'_, Self>,
    ) -> Result<()> {
        let mut count = ctx.value_state::<u64>("count")?;
        let n = count.get()?.unwrap_or(0) + 1;
        count.put(&n)?;
        ctx.emit(rec.key, n);
        Ok(())
    }
}
