//! Child processes: spawned with their output in log files, stopped by
//! their process id, their peak RSS sampled from `/proc/PID/status`.
//!
//! Not `wait4`'s `ru_maxrss`: a child's maximum there includes the
//! harness's own resident set at the fork (the child's memory map is the
//! parent's until `exec`), so every small child would report at least the
//! harness's size. `VmHWM` is the high-water mark of the program's own
//! memory map, which starts at `exec`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running child; killed with SIGKILL if dropped while still running.
pub(crate) struct Proc {
    pub(crate) name: String,
    child: Child,
    pub(crate) started: Instant,
    pub(crate) log: PathBuf,
    reaped: Option<Exit>,
    rss: RssSampler,
}

/// Samples a process's `VmHWM` every few milliseconds on a thread of its
/// own until stopped; the last sample before the process ends is its peak
/// (the high-water mark only rises).
struct RssSampler {
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (peak, st) = (peak_kib.clone(), stop.clone());
        let path = format!("/proc/{pid}/status");
        let thread = std::thread::spawn(move || {
            // The pid stays ours until the harness reaps it, which happens
            // only after `stop`: no other process can be sampled by mistake.
            while !st.load(Ordering::Relaxed) {
                if let Some(kib) = std::fs::read_to_string(&path)
                    .ok()
                    .as_deref()
                    .and_then(vm_hwm_kib)
                {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        RssSampler {
            peak_kib,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the peak in MiB.
    fn finish(&mut self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak_kib.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

/// The `VmHWM:` line of a `/proc/PID/status` text, in KiB (absent for a
/// process that has exited and awaits reaping).
fn vm_hwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// How a child ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exit {
    /// Exit code, or `None` when a signal ended it.
    pub(crate) code: Option<i32>,
    /// Peak resident set size in MiB.
    pub(crate) peak_rss_mb: f64,
    /// From spawn to reaping.
    pub(crate) elapsed: Duration,
    /// CPU time, user and system, of the process and its threads: less
    /// disturbed by the machine's other load than `elapsed`.
    pub(crate) cpu: Duration,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub(crate) fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Proc> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let started = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        let rss = RssSampler::start(child.id());
        Ok(Proc {
            name: name.to_owned(),
            rss,
            child,
            started,
            log: log.to_owned(),
            reaped: None,
        })
    }

    fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Reaps the child if it has ended (`block`: wait until it has).
    fn reap(&mut self, block: bool) -> Result<Option<Exit>> {
        if let Some(e) = self.reaped {
            return Ok(Some(e));
        }
        let mut status = 0;
        let flags = libc::WNOWAIT | libc::WEXITED | if block { 0 } else { libc::WNOHANG };
        // First wait without reaping, so that the pid cannot be reused while
        // the sampler may still read its /proc entry.
        // SAFETY: an all-zero siginfo is a valid value to be overwritten.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: the pointer is to a live local; the pid is our child's.
        let r = unsafe { libc::waitid(libc::P_PID, self.pid() as libc::id_t, &mut info, flags) };
        if r < 0 {
            bail!(
                "waitid on {} failed: {}",
                self.name,
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: waitid filled `info` (or left it zeroed: no child ended).
        if unsafe { info.si_pid() } == 0 {
            return Ok(None);
        }
        let peak_rss_mb = self.rss.finish();
        // SAFETY: an all-zero rusage is a valid value to be overwritten.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: the pid is our ended, not yet reaped child; the pointers
        // are to live locals.
        let r = unsafe { libc::wait4(self.pid(), &mut status, 0, &mut usage) };
        if r == 0 {
            return Ok(None);
        }
        if r < 0 {
            bail!(
                "wait4 on {} failed: {}",
                self.name,
                std::io::Error::last_os_error()
            );
        }
        let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        let time = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec.max(0) as u64)
                + Duration::from_micros(t.tv_usec.max(0) as u64)
        };
        let exit = Exit {
            code,
            peak_rss_mb,
            elapsed: self.started.elapsed(),
            cpu: time(usage.ru_utime) + time(usage.ru_stime),
        };
        self.reaped = Some(exit);
        Ok(Some(exit))
    }

    /// Waits for it to end by itself, at most `timeout`.
    pub(crate) fn wait(&mut self, timeout: Duration) -> Result<Exit> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.reap(false)? {
                return Ok(e);
            }
            if Instant::now() > deadline {
                self.kill()?;
                bail!(
                    "{} did not finish within {timeout:?}; killed (log: {})",
                    self.name,
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits up to `grace` before SIGKILL.
    pub(crate) fn stop(&mut self, grace: Duration) -> Result<Exit> {
        if let Some(e) = self.reaped {
            return Ok(e);
        }
        // SAFETY: signalling our own, not yet reaped child.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(e) = self.reap(false)? {
                return Ok(e);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "bench: {} ignored SIGTERM for {grace:?}; killing it",
            self.name
        );
        self.kill()
    }

    /// SIGKILL (`kill -9`) and reap.
    pub(crate) fn kill(&mut self) -> Result<Exit> {
        if let Some(e) = self.reaped {
            return Ok(e);
        }
        // SAFETY: signalling our own, not yet reaped child.
        unsafe { libc::kill(self.pid(), libc::SIGKILL) };
        match self.reap(true)? {
            Some(e) => Ok(e),
            None => bail!("{} could not be reaped", self.name),
        }
    }

    /// Fails, with the end of its log, unless it is still running.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        if let Some(e) = self.reap(false)? {
            bail!(
                "{} exited early ({:?}); its log ends with:\n{}",
                self.name,
                e.code,
                tail(&self.log, 30)
            );
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            let _ = self.kill();
        }
    }
}

/// The last `n` lines of a file.
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The value of `key=` in the last log line containing `marker`.
pub(crate) fn log_field(path: &Path, marker: &str, key: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().rev().find(|l| l.contains(marker))?;
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    let value: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    value.parse().ok()
}
