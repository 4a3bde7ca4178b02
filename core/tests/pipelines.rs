//! Multi-stage pipelines through the `PipelineDriver`, without a broker:
//! keyed again between processors, a window after a window, a join and
//! then an aggregate, each across a crash.

use std::time::Duration;

use weir_core::join::{JoinKind, JoinWindows, WindowJoin};
use weir_core::prelude::*;
use weir_core::testing::Chain;
use weir_core::window::{Accumulate, Count, Emit, Reduce, WindowOperator, Windowed, Windows};
use weir_core::Either;

/// Counts per key; emits each record's running count.
#[derive(Clone)]
struct Tally;

const N: ValueDescriptor<u64> = ValueDescriptor::new("n");

impl Processor for Tally {
    type Key = String;
    type In = ();
    type Out = u64;

    fn declare(&self, d: &mut Declarations) {
        d.state(&N);
    }

    async fn process(&mut self, r: Record<String, ()>, ctx: &mut Context<'_, Self>) -> Result<()> {
        let mut n = ctx.state(&N)?;
        let count = n.get()?.unwrap_or(0) + 1;
        n.put(&count)?;
        ctx.emit(r.key, count);
        Ok(())
    }
}

fn s(text: &str) -> String {
    text.to_owned()
}

#[tokio::test]
async fn a_count_keyed_again_counts_per_new_key_and_a_crash_forgets_the_epoch_in_both() -> Result<()>
{
    let mut d = Chain::<String, ()>::new()
        .process(Tally)?
        .key_with(|word: String, _count| (word[..1].to_owned(), ()))
        .process(Tally)?
        .start()
        .await?;
    for word in ["ab", "ac", "ab", "bd"] {
        d.pipe(s(word), ()).await?;
    }
    d.checkpoint();
    d.pipe(s("ab"), ()).await?;
    d.pipe(s("bd"), ()).await?;
    assert_eq!(d.value(0, &s("ab"), &N)?, Some(3));
    d.crash_and_restore().await?;
    // The epoch after the checkpoint is gone, in both processors.
    assert_eq!(d.value(0, &s("ab"), &N)?, Some(2));
    assert_eq!(d.value(1, &s("a"), &N)?, Some(3));
    assert_eq!(d.value(1, &s("b"), &N)?, Some(1));
    // Read again, it is counted once.
    d.pipe(s("ab"), ()).await?;
    d.pipe(s("bd"), ()).await?;
    let out: Vec<(String, u64)> = d.output().into_iter().map(|r| (r.key, r.value)).collect();
    assert_eq!(
        out,
        [
            (s("a"), 1),
            (s("a"), 2),
            (s("a"), 3),
            (s("b"), 1),
            (s("a"), 4),
            (s("b"), 2)
        ]
    );
    assert!(
        d.value(2, &s("a"), &N).is_err(),
        "there is no third processor"
    );
    Ok(())
}

#[tokio::test]
async fn a_window_after_a_window_takes_what_the_first_emitted_before_its_watermark() -> Result<()> {
    let tens = WindowOperator::new(
        Windows::tumbling(Duration::from_secs(10)),
        Accumulate::new(Count),
        Emit::Final,
        None,
    );
    let minutes = WindowOperator::new(
        Windows::tumbling(Duration::from_secs(60)),
        Accumulate::new(Reduce::new(|a: u64, b: u64| a + b)),
        Emit::Final,
        None,
    );
    let mut d = Chain::<String, ()>::new()
        .process(tens)?
        .key_with(|_page: String, w: Windowed<u64>| (s("all"), w.value))
        .process(minutes)?
        .map(|w: Windowed<u64>| (w.start, w.value))
        .start()
        .await?;
    // Two pages, an event each per second, for two minutes.
    for sec in 0..120i64 {
        let page = if sec % 2 == 0 { "p0" } else { "p1" };
        d.pipe_at(s(page), (), sec * 1000).await?;
        if sec == 70 {
            d.advance_watermark(65_000).await?;
            d.checkpoint();
        }
    }
    // A crash loses what came after the checkpoint; it is read again.
    d.crash_and_restore().await?;
    for sec in 71..120i64 {
        let page = if sec % 2 == 0 { "p0" } else { "p1" };
        d.pipe_at(s(page), (), sec * 1000).await?;
    }
    d.advance_watermark(i64::MAX).await?;
    let out: Vec<(i64, u64)> = d.output().into_iter().map(|r| r.value).collect();
    assert_eq!(out, [(0, 60), (60_000, 60)]);
    assert_eq!(d.late_records(), 0);
    assert_eq!(d.state_entries(), 0, "every window is cleared");
    Ok(())
}

#[tokio::test]
async fn a_windowed_join_then_a_count_per_ad_across_a_crash() -> Result<()> {
    type Pair = fn(&String, &u32, Option<&u32>) -> bool;
    fn matched(_user: &String, _click: &u32, shown: Option<&u32>) -> bool {
        shown.is_some()
    }
    let join = WindowJoin::new(
        JoinKind::Left,
        JoinWindows::within(Duration::from_millis(100)),
        matched as Pair,
    );
    // Clicks (left, by ad) and impressions (right, by ad), joined per
    // user; then how many clicks per user had an impression near them.
    let mut d = Chain::<String, Either<u32, u32>>::new()
        .process(join)?
        .key_with(|user: String, matched: bool| (format!("{user}:{matched}"), ()))
        .process(Tally)?
        .start()
        .await?;
    d.pipe_at(s("u1"), Either::Right(7), 1_000).await?;
    d.pipe_at(s("u1"), Either::Left(7), 1_050).await?;
    d.pipe_at(s("u2"), Either::Left(8), 1_060).await?;
    d.checkpoint();
    d.pipe_at(s("u1"), Either::Left(9), 1_090).await?;
    d.crash_and_restore().await?;
    d.pipe_at(s("u1"), Either::Left(9), 1_090).await?;
    d.pipe_at(s("u2"), Either::Left(10), 5_000).await?;
    d.advance_watermark(i64::MAX).await?;
    assert_eq!(d.value(1, &s("u1:true"), &N)?, Some(2));
    assert_eq!(d.value(1, &s("u2:false"), &N)?, Some(2));
    assert_eq!(d.output().len(), 4);
    Ok(())
}
