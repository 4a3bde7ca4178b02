//! Windows through the `TestDriver`: tumbling, hopping, session and
//! processing-time windows, grace and late output, the two emit modes,
//! and window state across a crash.

use std::time::Duration;

use weir_core::prelude::*;
use weir_core::testing::TestDriver;
use weir_core::window::{
    Accumulate, Count, Emit, Reduce, SessionOperator, Sessions, WindowFunction, WindowOperator,
    WindowState, Windowed, Windows,
};

const LATE: OutputTag<String, u64> = OutputTag::new("late");

fn k(s: &str) -> String {
    s.to_owned()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

type Counting = WindowOperator<String, u64, Accumulate<Count>>;

fn counting(windows: Windows, emit: Emit, late: bool) -> Counting {
    WindowOperator::new(windows, Accumulate::new(Count), emit, late.then_some(LATE))
}

/// `(key, start, end, value)` of every record emitted so far.
fn results<T: Clone>(
    d: &TestDriver<impl Processor<Key = String, Out = Windowed<T>> + Clone>,
) -> Vec<(String, i64, i64, T)> {
    d.output()
        .iter()
        .map(|r| {
            (
                r.key.clone(),
                r.value.start,
                r.value.end,
                r.value.value.clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_tumbling_window_emits_once_when_the_watermark_passes_its_end_plus_grace() -> Result<()> {
    let w = Windows::tumbling(secs(60)).grace(secs(5));
    let mut d = TestDriver::new(counting(w, Emit::Final, true)).await?;
    d.pipe_at(k("home"), 1, 1_000).await?;
    d.pipe_at(k("home"), 1, 59_999).await?;
    d.pipe_at(k("cart"), 1, 30_000).await?;
    d.pipe_at(k("home"), 1, 60_000).await?;
    d.advance_watermark(64_999).await?;
    assert!(d.output().is_empty(), "within the grace, nothing is final");
    // Out of order, but within the grace: still counted.
    d.pipe_at(k("home"), 1, 59_000).await?;
    d.advance_watermark(65_000).await?;
    let mut got = results(&d);
    got.sort();
    assert_eq!(got, [(k("cart"), 0, 60_000, 1), (k("home"), 0, 60_000, 3)]);
    assert_eq!(
        d.output()[0].timestamp,
        Some(59_999),
        "stamped with the window's last ms"
    );
    // Later than the grace: to the late output, and the window stays closed.
    d.pipe_at(k("home"), 7, 10_000).await?;
    let late: Vec<(String, u64)> = d
        .side_output(&LATE)
        .iter()
        .map(|r| (r.key.clone(), r.value))
        .collect();
    assert_eq!(late, [(k("home"), 7)]);
    d.advance_watermark(i64::MAX).await?;
    let mut got = results(&d);
    got.sort();
    assert_eq!(
        got,
        [
            (k("cart"), 0, 60_000, 1),
            (k("home"), 0, 60_000, 3),
            (k("home"), 60_000, 120_000, 1)
        ]
    );
    Ok(())
}

#[tokio::test]
async fn late_records_without_a_late_output_are_counted() -> Result<()> {
    let mut d = TestDriver::new(counting(Windows::tumbling(secs(10)), Emit::Final, false)).await?;
    d.advance_watermark(20_000).await?;
    d.pipe_at(k("a"), 1, 5_000).await?;
    assert!(d.output().is_empty());
    assert_eq!(d.late_records(), 1);
    Ok(())
}

#[tokio::test]
async fn hopping_windows_count_a_record_in_each_window_that_holds_it() -> Result<()> {
    let w = Windows::hopping(secs(30), secs(10));
    let mut d = TestDriver::new(counting(w, Emit::Final, false)).await?;
    d.pipe_at(k("a"), 1, 25_000).await?;
    d.pipe_at(k("a"), 1, 31_000).await?;
    d.advance_watermark(i64::MAX).await?;
    let mut got = results(&d);
    got.sort();
    assert_eq!(
        got,
        [
            (k("a"), 0, 30_000, 1),
            (k("a"), 10_000, 40_000, 2),
            (k("a"), 20_000, 50_000, 2),
            (k("a"), 30_000, 60_000, 1),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn every_update_emits_the_result_so_far_and_nothing_at_the_close() -> Result<()> {
    let w = Windows::tumbling(secs(10));
    let op = WindowOperator::new(
        w,
        Accumulate::new(Reduce::new(|a: u64, b| a.max(b))),
        Emit::EveryUpdate,
        None,
    );
    let mut d = TestDriver::new(op).await?;
    for (v, ts) in [(3, 1_000), (9, 2_000), (4, 3_000)] {
        d.pipe_at(k("a"), v, ts).await?;
    }
    d.advance_watermark(i64::MAX).await?;
    let maxima: Vec<u64> = results(&d).into_iter().map(|(_, _, _, v)| v).collect();
    assert_eq!(maxima, [3, 9, 9]);
    Ok(())
}

#[tokio::test]
async fn window_state_is_rolled_back_with_its_epoch_and_restored_with_the_checkpoint() -> Result<()>
{
    let mut d = TestDriver::new(counting(Windows::tumbling(secs(10)), Emit::Final, false)).await?;
    d.pipe_at(k("a"), 1, 1_000).await?;
    d.pipe_at(k("a"), 1, 2_000).await?;
    d.checkpoint();
    d.pipe_at(k("a"), 1, 3_000).await?;
    d.crash_and_restore().await?;
    d.pipe_at(k("a"), 1, 4_000).await?;
    d.advance_watermark(10_000).await?;
    assert_eq!(results(&d), [(k("a"), 0, 10_000, 3)]);
    d.checkpoint();
    // The fired window's timer and state are gone: nothing fires again.
    d.crash_and_restore().await?;
    d.advance_watermark(i64::MAX).await?;
    assert_eq!(results(&d).len(), 1);
    Ok(())
}

#[tokio::test]
async fn processing_time_windows_close_by_the_wall_clock() -> Result<()> {
    let w = Windows::tumbling(secs(10)).processing_time();
    let mut d = TestDriver::new(counting(w, Emit::Final, false)).await?;
    d.advance_processing_time(1_000).await?;
    d.pipe(k("a"), 1).await?;
    d.advance_processing_time(9_999).await?;
    d.pipe(k("a"), 1).await?;
    assert!(d.output().is_empty());
    d.advance_processing_time(10_000).await?;
    assert_eq!(results(&d), [(k("a"), 0, 10_000, 2)]);
    Ok(())
}

#[tokio::test]
async fn sessions_merge_when_a_record_bridges_them() -> Result<()> {
    let s = Sessions::with_gap(secs(10));
    let op = SessionOperator::new(s, Count, Emit::Final, Some(LATE));
    let mut d = TestDriver::new(op).await?;
    d.pipe_at(k("u"), 1, 0).await?;
    d.pipe_at(k("u"), 1, 18_000).await?;
    d.pipe_at(k("v"), 1, 5_000).await?;
    // Within 10 s of both: the two sessions of `u` are one.
    d.pipe_at(k("u"), 1, 9_000).await?;
    d.advance_watermark(27_999).await?;
    assert_eq!(results(&d), [(k("v"), 5_000, 15_000, 1)]);
    d.advance_watermark(28_000).await?;
    assert_eq!(results(&d)[1], (k("u"), 0, 28_000, 3));
    d.pipe_at(k("u"), 1, 17_000).await?;
    assert_eq!(d.side_output(&LATE).len(), 1, "its session had closed");
    Ok(())
}

const VIEWS: ValueDescriptor<u64> = ValueDescriptor::new("views");
const USERS: MapDescriptor<String, ()> = MapDescriptor::new("users");

/// Views and distinct users per window, with stores of its own.
#[derive(Clone)]
struct ViewsAndUsers;

impl WindowFunction<String, String> for ViewsAndUsers {
    type Out = (u64, u64);

    fn declare(&self, d: &mut Declarations) {
        d.state(&VIEWS).state(&USERS);
    }

    fn add(&self, user: String, w: &mut WindowState<'_>) -> Result<()> {
        let mut views = w.state(&VIEWS)?;
        let n = views.get()?.unwrap_or(0) + 1;
        views.put(&n)?;
        w.state(&USERS)?.put(&user, &())
    }

    fn result(&self, _page: &String, w: &mut WindowState<'_>) -> Result<(u64, u64)> {
        let views = w.state(&VIEWS)?.get()?.unwrap_or(0);
        let users = w.state(&USERS)?.iter()?.count() as u64;
        Ok((views, users))
    }
}

#[tokio::test]
async fn a_window_function_keeps_stores_per_window_and_they_are_cleared_at_the_close() -> Result<()>
{
    let op = WindowOperator::new(
        Windows::tumbling(secs(10)),
        ViewsAndUsers,
        Emit::Final,
        None,
    );
    let mut d = TestDriver::new(op).await?;
    for (user, ts) in [
        ("ann", 1_000),
        ("bob", 2_000),
        ("ann", 3_000),
        ("ann", 11_000),
    ] {
        d.pipe_at(k("home"), k(user), ts).await?;
    }
    d.advance_watermark(i64::MAX).await?;
    assert_eq!(
        results(&d),
        [
            (k("home"), 0, 10_000, (3, 2)),
            (k("home"), 10_000, 20_000, (1, 1))
        ]
    );
    assert_eq!(
        d.state_entries(),
        0,
        "every window's stores and timers are gone"
    );
    Ok(())
}

#[tokio::test]
async fn a_record_inside_an_open_session_is_not_late_though_its_own_gap_has_passed() -> Result<()> {
    let op = SessionOperator::new(
        Sessions::with_gap(Duration::from_millis(10)),
        Count,
        Emit::Final,
        Some(LATE),
    );
    let mut d = TestDriver::new(op).await?;
    for t in [50, 58, 66, 74, 82, 90, 100] {
        d.pipe_at(k("u"), 1, t).await?;
    }
    d.advance_watermark(95).await?;
    // 60 + 10 <= 95, but the session [50, 100] is open until 110.
    d.pipe_at(k("u"), 1, 60).await?;
    assert!(d.side_output(&LATE).is_empty());
    d.advance_watermark(i64::MAX).await?;
    assert_eq!(results(&d), [(k("u"), 50, 110, 8)]);
    Ok(())
}

#[tokio::test]
async fn an_event_time_out_of_range_is_a_record_error() -> Result<()> {
    let mut d = TestDriver::new(counting(Windows::tumbling(secs(10)), Emit::Final, false)).await?;
    let e = d
        .pipe_at(k("a"), 1, i64::MAX - 5)
        .await
        .expect_err("refused");
    assert!(
        e.is_record_error() && e.to_string().contains("out of range"),
        "{e}"
    );
    Ok(())
}
