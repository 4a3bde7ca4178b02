//! The change stream of a topic of keyed updates: each update with the
//! value it replaced, in each key's order.

use serde::{Deserialize, Serialize};
use weir::prelude::*;
use weir::sink::Sink;
use weir::source::Source;

/// One update of a key: the value it replaced (`None` for the key's first,
/// or after a delete) and the new one (`None` for a delete).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The value the update replaced.
    pub old: Option<String>,
    /// The value it put.
    pub new: Option<String>,
}

/// Each key's latest value.
pub const LATEST: ValueDescriptor<String> = ValueDescriptor::new("latest");

/// Keeps each key's latest value and emits every update as a [`Change`]:
/// what it reports depends on the order of a key's updates, which must be
/// the order they were written in.
#[derive(Clone, Debug, Default)]
pub struct Changes;

impl Processor for Changes {
    type Key = String;
    type In = Option<String>;
    type Out = Change;

    fn declare(&self, d: &mut Declarations) {
        d.state(&LATEST);
    }

    async fn process(
        &mut self,
        rec: Record<String, Option<String>>,
        ctx: &mut Context<'_, Self>,
    ) -> Result<()> {
        let mut latest = ctx.state(&LATEST)?;
        let old = latest.get()?;
        match &rec.value {
            Some(new) => latest.put(new)?,
            None => latest.clear(),
        }
        ctx.emit(
            rec.key,
            Change {
                old,
                new: rec.value,
            },
        );
        Ok(())
    }
}

/// The change stream pipeline: keyed updates from `source` (records
/// without a key are skipped: they update nothing), keyed through the
/// exchange, each written to `sink` as the key's [`Change`]. The latest
/// values can be queried by key (`/api/state/latest/KEY`).
pub fn pipeline<S, K>(p: &mut Pipeline, source: S, sink: K)
where
    S: Source<Item = KafkaRecord<String, String>>,
    K: Sink<Record<String, Change>>,
{
    p.source(source)
        .flat_map(|r: KafkaRecord<String, String>| Some((r.key?, r.value)))
        .key_with(|(key, value)| (key, value))
        .process(Changes)
        .queryable(&LATEST)
        .sink(sink);
}

#[cfg(test)]
mod tests {
    use weir::testing::TestDriver;

    use super::*;

    #[tokio::test]
    async fn each_update_reports_the_value_it_replaced_and_a_delete_forgets_it() {
        let mut d = TestDriver::new(Changes).await.expect("driver");
        for value in [Some("a"), Some("b"), None, Some("c")] {
            d.pipe("k".to_owned(), value.map(str::to_owned))
                .await
                .expect("pipe");
        }
        let changes: Vec<_> = d.output().into_iter().map(|r| r.value.clone()).collect();
        let change = |old: Option<&str>, new: Option<&str>| Change {
            old: old.map(str::to_owned),
            new: new.map(str::to_owned),
        };
        assert_eq!(
            changes,
            [
                change(None, Some("a")),
                change(Some("a"), Some("b")),
                change(Some("b"), None),
                change(None, Some("c")),
            ]
        );
    }
}
