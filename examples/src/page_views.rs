//! Page views per page and tumbling window of event time: how many views,
//! and how many distinct users (exactly), written once per window when the
//! watermark passes its end plus the grace period.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir::prelude::*;
use weir::sink::Sink;

/// One view of a page, as the input carries it (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageView {
    /// The page viewed.
    pub page: String,
    /// Who viewed it.
    pub user: String,
    /// When, in ms since the Unix epoch: the event time.
    pub ts: i64,
}

/// A window's result for one page (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageStats {
    /// The page.
    pub page: String,
    /// First millisecond of the window.
    pub window_start: i64,
    /// End of the window (exclusive).
    pub window_end: i64,
    /// Views in the window.
    pub views: u64,
    /// Distinct users among them.
    pub users: u64,
}

impl fmt::Display for PageStats {
    /// As one line of JSON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let json = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&json)
    }
}

impl fmt::Display for PageView {
    /// As one line of JSON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let json = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&json)
    }
}

/// Views later than their window's grace: the page, and the view.
pub const LATE: OutputTag<String, PageView> = OutputTag::new("late");

/// A window's views so far.
const VIEWS: ValueDescriptor<u64> = ValueDescriptor::new("views");
/// The users seen in a window: a map, so that a view reads and writes one
/// entry, never the whole set.
const USERS: MapDescriptor<String, ()> = MapDescriptor::new("users");
/// How many of them there are.
const DISTINCT: ValueDescriptor<u64> = ValueDescriptor::new("distinct");

/// Counts views and distinct users per page and window.
#[derive(Debug, Clone, Copy, Default)]
pub struct ViewsAndUsers;

impl WindowFunction<String, PageView> for ViewsAndUsers {
    type Out = PageStats;

    fn declare(&self, d: &mut Declarations) {
        d.state(&VIEWS).state(&USERS).state(&DISTINCT);
    }

    fn add(&self, view: PageView, w: &mut WindowState<'_>) -> Result<()> {
        let mut views = w.state(&VIEWS)?;
        let n = views.get()?.unwrap_or(0) + 1;
        views.put(&n)?;
        let mut users = w.state(&USERS)?;
        if !users.contains(&view.user)? {
            users.put(&view.user, &())?;
            let mut distinct = w.state(&DISTINCT)?;
            let d = distinct.get()?.unwrap_or(0) + 1;
            distinct.put(&d)?;
        }
        Ok(())
    }

    fn result(&self, page: &String, w: &mut WindowState<'_>) -> Result<PageStats> {
        Ok(PageStats {
            page: page.clone(),
            window_start: w.start(),
            window_end: w.end(),
            views: w.state(&VIEWS)?.get()?.unwrap_or(0),
            users: w.state(&DISTINCT)?.get()?.unwrap_or(0),
        })
    }
}

/// How the windows are cut.
#[derive(Debug, Clone, Copy)]
pub struct Windowing {
    /// The windows' size.
    pub window: Duration,
    /// How long after its end a window still takes views.
    pub grace: Duration,
    /// Whether late views go to the [`LATE`] side output (else they are
    /// counted in `weir_late_records_total`).
    pub late_output: bool,
}

/// The pipeline after its source: `views`, stamped with their `ts`,
/// keyed by page, counted per tumbling window, and each window's
/// [`PageStats`] written to `sink` under its page. The caller gives
/// [`LATE`] its sink when `w.late_output` is set.
pub fn pipeline<K>(views: Stream<'_, PageView>, w: Windowing, sink: K)
where
    K: Sink<Record<String, PageStats>>,
{
    let windowed = views
        .event_time(|v: &PageView| v.ts, 0)
        .key_by(|v: &PageView| v.page.clone())
        .window(Windows::tumbling(w.window).grace(w.grace));
    let windowed = match w.late_output {
        true => windowed.late(&LATE),
        false => windowed,
    };
    windowed
        .apply(ViewsAndUsers)
        .map(|stats: Windowed<PageStats>| stats.value)
        .sink(sink);
}
