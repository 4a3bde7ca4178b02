//! Clicks attributed to the impressions of the same ad shown to the same
//! user close to them in time: a stream-stream join within a window of
//! event time, a left join, so that every click is written, with
//! `"impression_id": null` when no impression was near enough.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir::prelude::*;
use weir::sink::Sink;

/// A user clicked an ad (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Click {
    /// The click's id.
    pub click_id: String,
    /// Which ad.
    pub ad: String,
    /// Who.
    pub user: String,
    /// When, in ms since the Unix epoch: its event time.
    pub ts: i64,
}

/// An ad was shown to a user (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Impression {
    /// The impression's id.
    pub impression_id: String,
    /// Which ad.
    pub ad: String,
    /// To whom.
    pub user: String,
    /// When, in ms since the Unix epoch: its event time.
    pub ts: i64,
}

/// A click with an impression near it, or with none (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributed {
    /// The click's id.
    pub click_id: String,
    /// The impression's id; `None` (`null`) when none was within the window.
    pub impression_id: Option<String>,
    /// Which ad.
    pub ad: String,
    /// Who.
    pub user: String,
    /// The click's time.
    pub click_ts: i64,
    /// The impression's time, if there is one.
    pub impression_ts: Option<i64>,
}

/// How far out of order (ms) the records of one file may come.
pub const MAX_DELAY_MS: i64 = 5_000;

/// The event time of a click or an impression.
pub fn event_time(e: &Either<Click, Impression>) -> i64 {
    match e {
        Either::Left(c) => c.ts,
        Either::Right(i) => i.ts,
    }
}

/// The key both sides meet by: the ad and the user.
pub fn ad_and_user(e: &Either<Click, Impression>) -> (String, String) {
    match e {
        Either::Left(c) => (c.ad.clone(), c.user.clone()),
        Either::Right(i) => (i.ad.clone(), i.user.clone()),
    }
}

/// A click and one impression near it, or none.
pub fn attribute(_key: &(String, String), click: &Click, shown: Option<&Impression>) -> Attributed {
    Attributed {
        click_id: click.click_id.clone(),
        impression_id: shown.map(|i| i.impression_id.clone()),
        ad: click.ad.clone(),
        user: click.user.clone(),
        click_ts: click.ts,
        impression_ts: shown.map(|i| i.ts),
    }
}

/// Clicks under `clicks` and impressions under `impressions` (one JSON
/// value per line), keyed by ad and user through one exchange, each click
/// joined with every impression of its ad and user at most `window` apart
/// (or with none), written as JSON lines to `sink`.
pub fn pipeline<K>(p: &mut Pipeline, clicks: &Path, impressions: &Path, window: Duration, sink: K)
where
    K: Sink<Record<(String, String), String>>,
{
    let source = Union::new(
        ("clicks", FileSource::json::<Click>(clicks)),
        ("impressions", FileSource::json::<Impression>(impressions)),
    );
    p.source(source)
        .event_time(event_time, MAX_DELAY_MS)
        .key_with(|e| (ad_and_user(&e), e))
        .join_window(JoinWindows::within(window), JoinKind::Left, attribute)
        .map(|a: Attributed| serde_json::to_string(&a).unwrap_or_default())
        .sink(sink);
}
