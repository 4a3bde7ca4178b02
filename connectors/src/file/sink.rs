//! The line sink: one file per task, appended, fsynced at each commit and
//! truncated to its committed length on recovery, in a directory held by
//! one run at a time.

use std::fmt::Display;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use weir_core::sink::{Flushed, Sink, SinkWriter};
use weir_core::{Error, Record, Result};

use super::lock::{self, DirLock};
use super::BUFFER;
use crate::text::push_display;

/// How a [`FileSink`] renders a record as one line.
pub trait LineFormat<T>: Send + Sync + 'static {
    /// Short name for the fingerprint.
    fn name(&self) -> &'static str;
    /// Appends `item` and its newline to `out`.
    fn write(&self, item: &T, out: &mut Vec<u8>);
}

/// `key<TAB>value`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tsv;

impl<K: Display + 'static, V: Display + 'static> LineFormat<Record<K, V>> for Tsv {
    fn name(&self) -> &'static str {
        "tsv"
    }
    fn write(&self, r: &Record<K, V>, out: &mut Vec<u8>) {
        push_display(&r.key, out);
        out.push(b'\t');
        push_display(&r.value, out);
        out.push(b'\n');
    }
}

/// `value`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lines;

impl<K: 'static, V: Display + 'static> LineFormat<Record<K, V>> for Lines {
    fn name(&self) -> &'static str {
        "lines"
    }
    fn write(&self, r: &Record<K, V>, out: &mut Vec<u8>) {
        push_display(&r.value, out);
        out.push(b'\n');
    }
}

/// Writes one file per task, `DIR/part-<task>`, one line per record.
pub struct FileSink<F> {
    dir: PathBuf,
    format: F,
}

impl FileSink<Tsv> {
    /// `key<TAB>value` lines under `dir`.
    pub fn tsv(dir: impl Into<PathBuf>) -> Self {
        FileSink {
            dir: dir.into(),
            format: Tsv,
        }
    }
}

impl FileSink<Lines> {
    /// `value` lines under `dir`.
    pub fn lines(dir: impl Into<PathBuf>) -> Self {
        FileSink {
            dir: dir.into(),
            format: Lines,
        }
    }
}

impl<F> FileSink<F> {
    fn path_of(&self, task: &str) -> PathBuf {
        self.dir.join(format!("part-{task}"))
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("cannot fsync directory", dir.display(), e))
}

impl<T: 'static, F: LineFormat<T> + Clone> Sink<T> for FileSink<F> {
    fn describe(&self) -> String {
        format!("file-{}", self.format.name())
    }

    fn id(&self, task: &str) -> String {
        // Relative, so that the same output directory reached by another
        // path (another working directory) keeps its committed length.
        format!("part-{task}")
    }

    fn open(&self, task: &str, truncate_to: Option<u64>) -> Result<Box<dyn SinkWriter<T>>> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io("cannot create output directory", self.dir.display(), e))?;
        // Before anything is truncated: a second run on this directory
        // must not touch the first one's output.
        let lock = lock::hold(&self.dir)?;
        let path = self.path_of(task);
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("cannot open output file", path.display(), e))?;
        if let Some(committed) = truncate_to {
            truncate(&file, &path, committed)?;
        }
        let end = file
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::io("cannot seek in", path.display(), e))?;
        if !existed {
            sync_dir(&self.dir)?;
        }
        let sync_handle = file
            .try_clone()
            .map_err(|e| Error::io("cannot reopen", path.display(), e))?;
        Ok(Box::new(FileWriter {
            path,
            file,
            buf: Vec::with_capacity(BUFFER),
            written: end,
            sync_handle: Arc::new(sync_handle),
            format: self.format.clone(),
            _lock: lock,
            _t: PhantomData,
        }))
    }

    fn discard_uncommitted(&self, id: &str, committed: u64) -> Result<()> {
        if Path::new(id).file_name().and_then(|n| n.to_str()) != Some(id) {
            return Err(Error::State(format!(
                "the checkpoint names the output `{id}`, which is not a file name; the state directory is damaged"
            )));
        }
        let path = self.dir.join(id);
        if !self.dir.is_dir() || !path.exists() {
            // Removed with its input (a retention job): nothing to discard.
            if committed > 0 {
                tracing::warn!(file = %path.display(), committed, "an output no task of this run writes is gone; nothing of it to discard");
            }
            return Ok(());
        }
        let _lock = lock::hold(&self.dir)?;
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("cannot open output file", path.display(), e))?;
        truncate(&file, &path, committed)
    }

    fn location(&self) -> Option<PathBuf> {
        Some(self.dir.clone())
    }
}

fn changed_outside(path: &Path, len: u64, committed: u64) -> Error {
    Error::State(format!(
        "output file {} is {len} bytes, shorter than its committed length {committed}: it was changed outside weir; restore it, or start over with a new --state and --output",
        path.display()
    ))
}

/// Exactly-once recovery: discards what `file` holds past `committed`.
fn truncate(file: &File, path: &Path, committed: u64) -> Result<()> {
    let len = file
        .metadata()
        .map_err(|e| Error::io("cannot stat", path.display(), e))?
        .len();
    if len < committed {
        return Err(changed_outside(path, len, committed));
    }
    if len > committed {
        tracing::info!(file = %path.display(), from = len, to = committed, "discarding uncommitted output");
        file.set_len(committed)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io("cannot truncate", path.display(), e))?;
    }
    Ok(())
}

struct FileWriter<T, F> {
    path: PathBuf,
    file: File,
    /// Lines not yet written to `file`: each record is formatted straight
    /// into it (one copy of its bytes, written out a megabyte at a time).
    buf: Vec<u8>,
    /// Bytes written to `file`: its logical length, less `buf`.
    written: u64,
    sync_handle: Arc<File>,
    format: F,
    /// The run's hold on the output directory.
    _lock: Arc<DirLock>,
    _t: PhantomData<fn(&T)>,
}

impl<T, F> FileWriter<T, F> {
    fn write_out(&mut self) -> Result<()> {
        self.file
            .write_all(&self.buf)
            .map_err(|e| Error::io("cannot write", self.path.display(), e))?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

impl<T: 'static, F: LineFormat<T>> SinkWriter<T> for FileWriter<T, F> {
    fn write(&mut self, item: &T) -> Result<()> {
        self.format.write(item, &mut self.buf);
        // Written out before a line can outgrow the buffer's capacity.
        if self.buf.len() >= BUFFER - BUFFER / 16 {
            self.write_out()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<Flushed> {
        self.write_out()?;
        let file = self.sync_handle.clone();
        let path = self.path.clone();
        Ok(Flushed {
            position: Some(self.written),
            sync: Some(Box::new(move || {
                file.sync_data()
                    .map_err(|e| Error::io("cannot fsync", path.display(), e))
            })),
        })
    }
}
