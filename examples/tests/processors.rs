//! The example processors under `TestDriver` (and `Chain`, for those
//! keyed again between them): no disk, no binary.

use weir::testing::{Chain, TestDriver};
use weir::{CompactString, Result};
use weir_examples::sessions::{Session, Sessionizer};
use weir_examples::top_words::{first_letter, Top, TopWords, TOP};
use weir_examples::wordcount::{WordCount, COUNT};

fn w(s: &str) -> String {
    s.to_owned()
}

/// A word count key.
fn c(s: &str) -> CompactString {
    CompactString::from(s)
}

#[tokio::test]
async fn wordcount_counts_per_key_and_forgets_an_uncommitted_epoch() -> Result<()> {
    let mut d = TestDriver::new(WordCount).await?;
    for word in ["a", "b", "a"] {
        d.pipe(c(word), ()).await?;
    }
    d.checkpoint();
    d.pipe(c("a"), ()).await?;
    assert_eq!(d.value(&c("a"), &COUNT)?, Some(3));
    d.crash_and_restore().await?;
    assert_eq!(d.value(&c("a"), &COUNT)?, Some(2), "the open epoch is gone");
    let outputs: Vec<(CompactString, u64)> = d
        .output()
        .iter()
        .map(|r| (r.key.clone(), r.value))
        .collect();
    assert_eq!(outputs, vec![(c("a"), 1), (c("b"), 1), (c("a"), 2)]);
    d.pipe(c("a"), ()).await?;
    assert_eq!(
        d.output().last().map(|r| r.value),
        Some(3),
        "counting resumes from the checkpoint"
    );
    Ok(())
}

fn event(ts: i64, user: &str) -> String {
    format!("{ts} {user} click")
}

#[tokio::test]
async fn sessions_close_when_the_watermark_passes_the_gap() -> Result<()> {
    let mut d = TestDriver::new(Sessionizer { gap_ms: 100 }).await?;
    d.pipe_at(w("u"), event(1000, "u"), 1000).await?;
    d.pipe_at(w("u"), event(1050, "u"), 1050).await?;
    d.pipe_at(w("v"), event(1060, "v"), 1060).await?;
    assert_eq!(d.advance_watermark(1149).await?, 0, "u's gap ends at 1150");
    assert_eq!(d.advance_watermark(1150).await?, 1);
    let closed: Vec<(String, Session)> = d
        .output()
        .iter()
        .map(|r| (r.key.clone(), r.value.clone()))
        .collect();
    assert_eq!(
        closed,
        vec![(
            w("u"),
            Session {
                start: 1000,
                end: 1050,
                events: 2
            }
        )]
    );
    d.pipe_at(w("u"), event(1300, "u"), 1300).await?;
    assert_eq!(
        d.advance_watermark(i64::MAX).await?,
        2,
        "v's and u's second session"
    );
    assert_eq!(d.output().len(), 3);
    Ok(())
}

#[tokio::test]
async fn a_timer_of_an_uncommitted_epoch_is_forgotten_and_a_committed_one_fires_once() -> Result<()>
{
    let mut d = TestDriver::new(Sessionizer { gap_ms: 10 }).await?;
    d.pipe_at(w("u"), event(100, "u"), 100).await?;
    d.checkpoint();
    d.pipe_at(w("x"), event(105, "x"), 105).await?;
    d.crash_and_restore().await?;
    // x's timer was never committed; u's was, and survives the restart.
    assert_eq!(d.advance_watermark(1000).await?, 1);
    assert_eq!(d.output()[0].key, "u");
    d.checkpoint();
    d.crash_and_restore().await?;
    assert_eq!(
        d.advance_watermark(2000).await?,
        0,
        "fired timers stay fired"
    );
    Ok(())
}

#[tokio::test]
async fn a_bad_event_line_is_an_error_the_policy_can_skip() -> Result<()> {
    let mut d = TestDriver::new(Sessionizer { gap_ms: 10 }).await?;
    let e = d
        .pipe_at(w("u"), "not a timestamp".to_owned(), i64::MIN)
        .await
        .err()
        .map(|e| (e.is_record_error(), e.to_string()));
    assert!(matches!(e, Some((true, m)) if m.contains("not a timestamp")));
    Ok(())
}

#[tokio::test]
async fn an_event_after_its_session_would_have_closed_goes_to_the_late_sink() -> Result<()> {
    let mut d = TestDriver::new(Sessionizer { gap_ms: 100 }).await?;
    d.pipe_at(w("u"), event(1000, "u"), 1000).await?;
    d.advance_watermark(1200).await?;
    d.pipe_at(w("u"), event(1050, "u"), 1050).await?;
    d.pipe_at(w("u"), event(1150, "u"), 1150).await?;
    let late = d.side_output(&weir_examples::sessions::LATE);
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].value, event(1050, "u"));
    d.advance_watermark(i64::MAX).await?;
    let sessions: Vec<i64> = d.output().iter().map(|r| r.value.start).collect();
    assert_eq!(sessions, vec![1000, 1150], "the late event joined nothing");
    Ok(())
}

#[tokio::test]
async fn top_words_keeps_each_letters_most_frequent_words_across_a_crash() -> Result<()> {
    let mut d = Chain::<CompactString, ()>::new()
        .process(WordCount)?
        .key_with(|word: CompactString, n| (first_letter(&word), (word, n)))
        .process(TopWords { n: 2 })?
        .start()
        .await?;
    for word in ["ant", "axe", "bee", "ant", "apple"] {
        d.pipe(c(word), ()).await?;
    }
    d.checkpoint();
    d.pipe(c("axe"), ()).await?;
    d.pipe(c("axe"), ()).await?;
    d.crash_and_restore().await?;
    // The two `axe` after the checkpoint are forgotten by both processors.
    assert_eq!(d.value(0, &c("axe"), &COUNT)?, Some(1));
    let top = |d: &mut weir::testing::PipelineDriver<_, _, _, _>| d.value(1, &'a', &TOP);
    assert_eq!(
        top(&mut d)?.map(|t: Top| t.to_string()),
        Some("ant=2 apple=1".to_owned())
    );
    d.pipe(c("axe"), ()).await?;
    d.pipe(c("axe"), ()).await?;
    assert_eq!(
        top(&mut d)?.map(|t: Top| t.to_string()),
        Some("axe=3 ant=2".to_owned())
    );
    // Each change of a letter's list was emitted once, in order.
    let lists: Vec<String> = d
        .output()
        .iter()
        .filter(|r| r.key == 'a')
        .map(|r| r.value.to_string())
        .collect();
    assert_eq!(
        lists,
        [
            "ant=1",
            "ant=1 axe=1",
            "ant=2 axe=1",
            "ant=2 apple=1",
            "ant=2 axe=2",
            "axe=3 ant=2"
        ]
    );
    Ok(())
}
