//! The HTTP server of a running pipeline (`http.listen`), as a scraper and
//! a probe see it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// The address the run's log says it serves on.
pub fn serving(log: &Path, child: &mut Child) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(addr) = text
            .split("serving http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
        {
            return addr.parse().expect("an address");
        }
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the run exited: {text}"
        );
        assert!(Instant::now() < deadline, "no address logged: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET path`: the status code and the body.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent
        .get(&format!("http://{addr}{path}"))
        .call()
        .expect("an answer");
    let code = response.status().as_u16();
    let body = response.body_mut().read_to_string().expect("a body");
    (code, body)
}

/// The metrics, parsed as the Prometheus text format.
pub fn scrape(addr: SocketAddr) -> prometheus_parse::Scrape {
    let (code, body) = get(addr, "/metrics");
    assert_eq!(code, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text")
}

/// The sum of every sample of `name` (whatever its labels) whose labels
/// include `label` when given.
pub fn total(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => 0.0,
        })
        .sum()
}

/// Looks with `look` until `ready` holds of what it sees, within a minute,
/// while `child` runs; `shown` says what it saw last when it never does.
fn look_until<T>(
    child: &mut Child,
    what: &str,
    mut look: impl FnMut() -> T,
    ready: impl Fn(&T) -> bool,
    shown: impl Fn(&T) -> String,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = look();
        if ready(&seen) {
            return seen;
        }
        assert!(child.try_wait().expect("poll").is_none(), "the run exited");
        assert!(Instant::now() < deadline, "never {what}: {}", shown(&seen));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Scrapes until `ready` holds, within a minute.
pub fn scrape_until(
    addr: SocketAddr,
    child: &mut Child,
    what: &str,
    ready: impl Fn(&prometheus_parse::Scrape) -> bool,
) -> prometheus_parse::Scrape {
    look_until(
        child,
        what,
        || scrape(addr),
        ready,
        |s| format!("{:?}", s.samples),
    )
}

/// Reads `/api/status` until `ready` holds of it, within a minute.
pub fn status_until(
    addr: SocketAddr,
    child: &mut Child,
    what: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let status = || {
        let (code, body) = get(addr, "/api/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).expect("status JSON")
    };
    look_until(child, what, status, ready, ToString::to_string)
}
