//! One run at a time per output directory: an exclusive `flock` on the
//! directory itself (no lock file among the output), held while any writer
//! of the run is open, and released by the kernel when the process dies,
//! `kill -9` included.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use weir_core::{Error, Result};

/// A held lock on an output directory; released when the last clone drops.
#[derive(Debug)]
pub(crate) struct DirLock {
    _dir: File,
}

/// The directories this process holds, so that the writers of one run (one
/// per task) share one lock: two `flock`s of one process on one directory
/// would refuse each other.
static HELD: Mutex<Vec<(PathBuf, Weak<DirLock>)>> = Mutex::new(Vec::new());

/// Takes (or shares, within this process) the lock on `dir`, which exists.
///
/// # Errors
/// [`Error::InUse`] naming the process that holds it.
pub(crate) fn hold(dir: &Path) -> Result<Arc<DirLock>> {
    let canon = dir
        .canonicalize()
        .map_err(|e| Error::io("cannot resolve output directory", dir.display(), e))?;
    let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
    held.retain(|(_, lock)| lock.strong_count() > 0);
    if let Some(lock) = held
        .iter()
        .find(|(path, _)| *path == canon)
        .and_then(|(_, lock)| lock.upgrade())
    {
        return Ok(lock);
    }
    let file = File::open(&canon)
        .map_err(|e| Error::io("cannot open output directory", canon.display(), e))?;
    let mut attempts = 0;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                let (pid, who) = holder(&file).unzip();
                // This process's own lock, whose last writer is being
                // dropped right now (its count is zero, its descriptor not
                // yet closed): it goes in a moment.
                if pid == Some(std::process::id()) && attempts < 100 {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
                return Err(Error::InUse(format!(
                    "output directory {} is being written by {}; two runs on one output would lose and double records: stop that run first, or pass another --output",
                    canon.display(),
                    who.unwrap_or_else(|| "another run".to_owned())
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(
                    "cannot lock output directory",
                    canon.display(),
                    e,
                ))
            }
        }
    }
    let lock = Arc::new(DirLock { _dir: file });
    held.push((canon, Arc::downgrade(&lock)));
    Ok(lock)
}

/// The process holding the `flock` on `file`, from `/proc/locks`: its pid,
/// and the pid with its command line in words.
fn holder(file: &File) -> Option<(u32, String)> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().ok()?;
    let dev = meta.dev();
    // Linux's encoding of a device number (see makedev(3)).
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let wanted = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let at = fields.iter().position(|f| *f == wanted)?;
        (fields.get(1) == Some(&"FLOCK") && !fields.contains(&"->"))
            .then(|| fields.get(at.checked_sub(1)?)?.parse::<u32>().ok())
            .flatten()
    })?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut cmd: String = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    if cmd.len() > 300 {
        let mut end = 300;
        while !cmd.is_char_boundary(end) {
            end -= 1;
        }
        cmd.truncate(end);
        cmd.push_str(" ...");
    }
    Some((
        pid,
        if cmd.is_empty() {
            format!("process {pid}")
        } else {
            format!("process {pid} (`{cmd}`)")
        },
    ))
}
