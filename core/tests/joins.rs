//! The stream-table join through the `TestDriver`: in event time, inner
//! and left, with deletes, whatever order the two sides come in, and
//! across a crash.

use weir_core::join::{JoinInput, JoinKind, TableJoin};
use weir_core::prelude::*;
use weir_core::testing::TestDriver;

type Input = JoinInput<u64, String>;

/// What the tests join with: `order:name` (`-` without a name).
type Named = fn(&String, u64, Option<&String>) -> String;

fn named(_k: &String, order: u64, name: Option<&String>) -> String {
    format!("{order}:{}", name.map_or("-", String::as_str))
}

fn join(kind: JoinKind) -> TableJoin<String, u64, String, String, Named> {
    TableJoin::new(kind, named as Named)
}

fn k(s: &str) -> String {
    s.to_owned()
}

fn table(v: &str) -> Input {
    JoinInput::Table(Some(v.to_owned()))
}

fn outputs<P: Processor<Out = String> + Clone>(d: &TestDriver<P>) -> Vec<String> {
    d.output().iter().map(|r| r.value.clone()).collect()
}

#[tokio::test]
async fn each_order_meets_the_table_as_it_was_at_its_time_whatever_the_order_read() -> Result<()> {
    let mut d = TestDriver::new(join(JoinKind::Left)).await?;
    // The order of time 15 is read before the update of time 10 it must see.
    d.pipe_at(k("c1"), table("ann"), 5).await?;
    d.pipe_at(k("c1"), JoinInput::Stream(1), 15).await?;
    d.pipe_at(k("c1"), table("anne"), 10).await?;
    d.pipe_at(k("c1"), table("annie"), 20).await?;
    d.pipe_at(k("c1"), JoinInput::Stream(2), 7).await?;
    d.pipe_at(k("c2"), JoinInput::Stream(3), 8).await?;
    assert!(d.output().is_empty(), "nothing before the watermark passes");
    d.advance_watermark(16).await?;
    let mut got = outputs(&d);
    got.sort();
    assert_eq!(got, ["1:anne", "2:ann", "3:-"]);
    d.advance_watermark(i64::MAX).await?;
    assert_eq!(outputs(&d).len(), 3);
    Ok(())
}

#[tokio::test]
async fn an_inner_join_drops_orders_without_a_value_and_a_tombstone_deletes() -> Result<()> {
    let mut d = TestDriver::new(join(JoinKind::Inner)).await?;
    d.pipe_at(k("c1"), table("ann"), 1).await?;
    d.pipe_at(k("c1"), JoinInput::Table(None), 10).await?;
    d.pipe_at(k("c1"), JoinInput::Stream(1), 5).await?;
    d.pipe_at(k("c1"), JoinInput::Stream(2), 12).await?;
    d.pipe_at(k("c9"), JoinInput::Stream(3), 12).await?;
    d.advance_watermark(100).await?;
    assert_eq!(outputs(&d), ["1:ann"]);
    Ok(())
}

#[tokio::test]
async fn waiting_orders_and_versions_survive_a_crash_and_old_versions_go() -> Result<()> {
    let mut d = TestDriver::new(join(JoinKind::Left)).await?;
    d.pipe_at(k("c1"), table("v1"), 1).await?;
    d.pipe_at(k("c1"), JoinInput::Stream(1), 5).await?;
    d.checkpoint();
    d.pipe_at(k("c1"), table("v2"), 3).await?;
    d.crash_and_restore().await?;
    // The update of time 3 was lost with its epoch, and is read again.
    d.pipe_at(k("c1"), table("v2"), 3).await?;
    d.pipe_at(k("c1"), table("v3"), 8).await?;
    d.advance_watermark(6).await?;
    assert_eq!(outputs(&d), ["1:v2"]);
    // Once nothing waits, what the watermark passed is down to one version.
    d.advance_watermark(50).await?;
    d.pipe_at(k("c1"), table("v4"), 60).await?;
    let versions = d
        .value(
            &k("c1"),
            &ValueDescriptor::<Vec<(i64, Option<String>)>>::new("table"),
        )?
        .unwrap_or_default();
    let times: Vec<i64> = versions.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, [8, 60]);
    Ok(())
}

#[tokio::test]
async fn with_the_tables_input_known_an_order_it_has_passed_is_joined_at_once() -> Result<()> {
    let mut d = TestDriver::new(join(JoinKind::Left).table_from(1)).await?;
    d.pipe_at(k("c1"), table("ann"), 1).await?;
    d.pipe_at(k("c1"), table("annie"), 20).await?;
    // The table's input has been read to 10; the stream's is behind.
    d.advance_input_watermark(1, 10).await?;
    d.pipe_at(k("c1"), JoinInput::Stream(1), 5).await?;
    d.pipe_at(k("c1"), JoinInput::Stream(2), 10).await?;
    assert_eq!(
        outputs(&d),
        ["1:ann", "2:ann"],
        "joined before the watermark"
    );
    // Past the table's watermark: waits, and meets the update of 20 once
    // the table's input passes it, whatever the watermark.
    d.pipe_at(k("c1"), JoinInput::Stream(3), 25).await?;
    d.pipe_at(k("c1"), JoinInput::Stream(4), 40).await?;
    assert_eq!(outputs(&d).len(), 2);
    d.advance_input_watermark(1, 30).await?;
    assert_eq!(outputs(&d), ["1:ann", "2:ann", "3:annie"]);
    d.advance_watermark(50).await?;
    assert_eq!(outputs(&d), ["1:ann", "2:ann", "3:annie", "4:annie"]);
    // Without `table_from`, the same order waits for the watermark.
    let mut d = TestDriver::new(join(JoinKind::Left)).await?;
    d.pipe_at(k("c1"), table("ann"), 1).await?;
    d.advance_input_watermark(1, 10).await?;
    d.pipe_at(k("c1"), JoinInput::Stream(1), 5).await?;
    assert!(d.output().is_empty());
    Ok(())
}

mod windowed {
    //! The stream-stream join within a window of event time.

    use std::time::Duration;

    use weir_core::join::{JoinKind, JoinWindows, WindowJoin};
    use weir_core::prelude::*;
    use weir_core::testing::TestDriver;
    use weir_core::Either;

    /// A click (left) and an impression (right), by their ids.
    type In = Either<u32, u32>;

    /// `click:impression` (`-` without one).
    type Pair = fn(&String, &u32, Option<&u32>) -> String;

    fn pair(_k: &String, click: &u32, impression: Option<&u32>) -> String {
        format!(
            "{click}:{}",
            impression.map_or("-".to_owned(), u32::to_string)
        )
    }

    fn join(kind: JoinKind, window_ms: u64) -> WindowJoin<String, u32, u32, String, Pair> {
        let windows = JoinWindows::within(Duration::from_millis(window_ms));
        WindowJoin::new(kind, windows, pair as Pair)
    }

    fn click(id: u32) -> In {
        Either::Left(id)
    }

    fn impression(id: u32) -> In {
        Either::Right(id)
    }

    fn k(s: &str) -> String {
        s.to_owned()
    }

    fn sorted<P: Processor<Out = String> + Clone>(d: &TestDriver<P>) -> Vec<String> {
        let mut got: Vec<String> = d.output().iter().map(|r| r.value.clone()).collect();
        got.sort();
        got
    }

    #[tokio::test]
    async fn every_pair_within_the_window_is_joined_once_whichever_side_comes_first() -> Result<()>
    {
        let mut d = TestDriver::new(join(JoinKind::Inner, 10)).await?;
        d.pipe_at(k("a"), impression(1), 100).await?;
        d.pipe_at(k("a"), click(1), 105).await?; // meets 1
        d.pipe_at(k("a"), click(2), 95).await?; // meets 1 (5 apart)
        d.pipe_at(k("a"), impression(2), 111).await?; // meets click 1 (6 apart), not 2 (16)
        d.pipe_at(k("a"), click(3), 130).await?; // nothing within 10
        d.pipe_at(k("b"), impression(3), 105).await?; // another key
        assert_eq!(sorted(&d), ["1:1", "1:2", "2:1"]);
        // The pair's time is the later of the two.
        let at: Vec<Option<i64>> = d.output().iter().map(|r| r.timestamp).collect();
        assert_eq!(at, [Some(105), Some(100), Some(111)]);
        // Once the watermark passes every window, the state is empty.
        d.advance_watermark(i64::MAX).await?;
        assert_eq!(sorted(&d).len(), 3);
        assert_eq!(d.state_entries(), 0);
        Ok(())
    }

    #[tokio::test]
    async fn a_left_join_emits_a_lone_left_record_once_its_window_and_grace_are_past() -> Result<()>
    {
        let windows =
            JoinWindows::within(Duration::from_millis(10)).grace(Duration::from_millis(5));
        let mut d = TestDriver::new(WindowJoin::new(JoinKind::Left, windows, pair as Pair)).await?;
        d.pipe_at(k("a"), click(1), 100).await?;
        d.pipe_at(k("a"), click(2), 200).await?;
        d.pipe_at(k("a"), impression(7), 205).await?;
        assert_eq!(sorted(&d), ["2:7"]);
        // Click 1 could still meet an impression of time 110 until the
        // watermark passes 110 + 5.
        d.advance_watermark(115).await?;
        assert_eq!(sorted(&d), ["2:7"]);
        d.advance_watermark(116).await?;
        assert_eq!(sorted(&d), ["1:-", "2:7"]);
        // Later than the grace: its partners may be gone, so it is dropped.
        d.pipe_at(k("a"), impression(8), 100).await?;
        assert_eq!(d.late_records(), 1);
        d.advance_watermark(i64::MAX).await?;
        assert_eq!(sorted(&d), ["1:-", "2:7"]);
        Ok(())
    }

    #[tokio::test]
    async fn at_the_end_of_the_input_a_record_whose_window_never_closes_is_done_too() -> Result<()>
    {
        let windows = JoinWindows::within(Duration::from_millis(10)).grace(Duration::MAX);
        let mut d = TestDriver::new(WindowJoin::new(JoinKind::Left, windows, pair as Pair)).await?;
        d.pipe_at(k("a"), click(1), 100).await?;
        d.pipe_at(k("a"), impression(2), 500).await?;
        d.advance_watermark(1_000_000).await?;
        assert!(
            d.output().is_empty(),
            "the grace never ends before the input"
        );
        d.advance_watermark(i64::MAX).await?;
        assert_eq!(sorted(&d), ["1:-"]);
        assert_eq!(d.state_entries(), 0);
        Ok(())
    }

    #[tokio::test]
    async fn waiting_records_survive_a_crash_and_pair_once() -> Result<()> {
        let mut d = TestDriver::new(join(JoinKind::Left, 10)).await?;
        d.pipe_at(k("a"), click(1), 100).await?;
        d.pipe_at(k("a"), impression(1), 104).await?;
        d.checkpoint();
        d.pipe_at(k("a"), impression(2), 108).await?;
        d.crash_and_restore().await?;
        // The epoch after the checkpoint is lost, and read again.
        d.pipe_at(k("a"), impression(2), 108).await?;
        d.pipe_at(k("a"), click(2), 112).await?;
        d.advance_watermark(i64::MAX).await?;
        // What the lost epoch emitted is gone with it: each pair once.
        assert_eq!(sorted(&d), ["1:1", "1:2", "2:1", "2:2"]);
        Ok(())
    }
}
