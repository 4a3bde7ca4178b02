//! A Prometheus stand-in for workload 2's served run: it finds the address
//! the run logs (`serving http://ADDR/...`) and scrapes `/metrics` at a
//! fixed interval until stopped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Scrapes a run's `/metrics` on a thread of its own.
pub(crate) struct Scraper {
    stop: Arc<AtomicBool>,
    scrapes: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

/// The address in the run's log, once it is there.
fn address(log: &PathBuf) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let rest = text.split("serving http://").nth(1)?;
    Some(rest.split('/').next()?.to_owned())
}

impl Scraper {
    /// Starts scraping the run that logs to `log`, every `every`.
    pub(crate) fn start(log: PathBuf, every: Duration) -> Scraper {
        let stop = Arc::new(AtomicBool::new(false));
        let scrapes = Arc::new(AtomicU64::new(0));
        let (stopped, count) = (stop.clone(), scrapes.clone());
        let thread = std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(5)))
                .build()
                .into();
            let mut addr = None;
            while !stopped.load(Ordering::Relaxed) {
                match &addr {
                    None => {
                        addr = address(&log);
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Some(a) => {
                        let got = agent
                            .get(&format!("http://{a}/metrics"))
                            .call()
                            .and_then(|mut r| r.body_mut().read_to_string());
                        if got.is_ok() {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                std::thread::sleep(every);
            }
        });
        Scraper {
            stop,
            scrapes,
            thread,
        }
    }

    /// Stops it; how many scrapes succeeded.
    pub(crate) fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.scrapes.load(Ordering::Relaxed)
    }
}
